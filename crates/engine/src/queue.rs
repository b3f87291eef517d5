//! The bounded queue between submitting threads and the scheduler. Unlike a channel, it lets
//! go of requests whose client is gone: they leave the queue before a new request is counted
//! against its capacity, and the scheduler never admits them. The scheduler takes the head
//! only when it fits (the KV budget), so requests are admitted in arrival order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the queue needs to know of a waiting request.
pub(crate) trait Waiting {
    /// Whether the client stopped listening (its event receiver was dropped).
    fn abandoned(&self) -> bool;
}

pub(crate) struct JobQueue<J> {
    state: Mutex<State<J>>,
    ready: Condvar,
    capacity: usize,
}

struct State<J> {
    jobs: VecDeque<J>,
    closed: bool,
}

/// Why a job was not queued.
pub(crate) enum Refused<J> {
    Full(J),
    Closed(J),
}

impl<J: Waiting> JobQueue<J> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A panic elsewhere cannot leave the queue half-updated: every update is one call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Jobs waiting (abandoned ones not yet dropped included).
    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Queues a job unless the queue is full of requests whose clients are still waiting.
    pub(crate) fn push(&self, job: J) -> Result<(), Refused<J>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed(job));
        }
        state.jobs.retain(|waiting| !waiting.abandoned());
        if state.jobs.len() >= self.capacity {
            return Err(Refused::Full(job));
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Takes the head of the queue if `fits` accepts it; abandoned jobs at the head are
    /// dropped on the way. `wait` bounds how long to wait for a job to arrive.
    /// `None` when there is nothing (yet) or the head does not fit; `Err` once closed and empty.
    pub(crate) fn pop_if(
        &self,
        wait: Option<Duration>,
        fits: impl Fn(&J) -> bool,
    ) -> Result<Option<J>, ()> {
        let mut state = self.lock();
        loop {
            while state.jobs.front().is_some_and(Waiting::abandoned) {
                state.jobs.pop_front();
            }
            match state.jobs.front() {
                Some(head) if fits(head) => return Ok(state.jobs.pop_front()),
                Some(_) => return Ok(None),
                None if state.closed => return Err(()),
                None => {}
            }
            let Some(wait) = wait else {
                return Ok(None);
            };
            let (next, timeout) = self
                .ready
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && state.jobs.is_empty() && !state.closed {
                return Ok(None);
            }
        }
    }

    /// No more jobs will come; the scheduler ends once it has finished what it holds.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A counting semaphore for blocking threads: bounds how many prompts are tokenized at once.
pub(crate) struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

pub(crate) struct Permit<'a>(&'a Permits);

impl Permits {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    struct Fake(u32, Arc<AtomicBool>);

    impl Waiting for Fake {
        fn abandoned(&self) -> bool {
            self.1.load(Ordering::Relaxed)
        }
    }

    fn job(id: u32) -> (Fake, Arc<AtomicBool>) {
        let gone = Arc::new(AtomicBool::new(false));
        (Fake(id, Arc::clone(&gone)), gone)
    }

    #[test]
    fn abandoned_jobs_give_back_their_places() {
        let queue = JobQueue::new(2);
        let (a, a_gone) = job(1);
        let (b, _) = job(2);
        assert!(queue.push(a).is_ok());
        assert!(queue.push(b).is_ok());
        let (c, _) = job(3);
        let Err(Refused::Full(c)) = queue.push(c) else {
            panic!("a full queue refuses")
        };
        a_gone.store(true, Ordering::Relaxed);
        assert!(queue.push(c).is_ok(), "the abandoned job's place is free");
        let first = queue.pop_if(None, |_| true).ok().flatten().map(|j| j.0);
        assert_eq!(first, Some(2));
    }

    #[test]
    fn the_head_waits_until_it_fits_and_nothing_overtakes_it() {
        let queue = JobQueue::new(4);
        let (big, _) = job(100);
        let (small, _) = job(1);
        assert!(queue.push(big).is_ok());
        assert!(queue.push(small).is_ok());
        let fits = |budget: u32| move |j: &Fake| j.0 <= budget;
        assert!(matches!(queue.pop_if(None, fits(10)), Ok(None)));
        let head = queue.pop_if(None, fits(100)).ok().flatten().map(|j| j.0);
        assert_eq!(head, Some(100));
        queue.close();
        assert!(matches!(queue.pop_if(None, fits(10)), Ok(Some(_))));
        assert!(queue
            .pop_if(Some(Duration::from_millis(1)), fits(10))
            .is_err());
    }
}
