//! A scripted provider, so the gateway and the server can be tested without a model: it
//! refuses, emits events with pauses, fails mid-stream or completes, exactly as told.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use switchboard_model::{Error, Event, Request};

use crate::{EventStream, Provider};

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    Emit(Event),
    Pause(Duration),
    /// End the stream with this error.
    Fail(Error),
    /// End the stream as a completed generation.
    Complete,
}

/// Plays a script for every request; remembers the requests it received.
#[derive(Default)]
pub struct FakeProvider {
    /// Refuse before any event, as a provider that rejects the request does.
    pub refuse: Option<Error>,
    pub script: Vec<Step>,
    received: Mutex<Vec<Arc<Request>>>,
}

impl FakeProvider {
    #[must_use]
    pub fn new(script: Vec<Step>) -> Self {
        Self {
            script,
            ..Self::default()
        }
    }

    /// A provider that refuses every request with `error` before any event.
    #[must_use]
    pub fn refusing(error: Error) -> Self {
        Self {
            refuse: Some(error),
            ..Self::default()
        }
    }

    /// Every request this provider was asked to serve, in order.
    #[must_use]
    pub fn received(&self) -> Vec<Arc<Request>> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Provider for FakeProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let refuse = self.refuse.clone();
        let script = self.script.clone();
        Box::pin(async move {
            if let Some(error) = refuse {
                return Err(error);
            }
            let events = futures::stream::unfold(script.into_iter(), |mut steps| async move {
                loop {
                    match steps.next()? {
                        Step::Pause(duration) => tokio::time::sleep(duration).await,
                        Step::Emit(event) => return Some((Ok(event), steps)),
                        Step::Fail(error) => return Some((Err(error), steps)),
                        Step::Complete => return Some((Ok(Event::Done), steps)),
                    }
                }
            });
            Ok(EventStream::new(events))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use switchboard_model::{ErrorKind, FinishReason, Item, Role};

    use super::*;

    fn request() -> Arc<Request> {
        Arc::new(Request::text("m", vec![Item::text(Role::User, "hi")]))
    }

    #[tokio::test]
    async fn streams_end_explicitly() {
        let text = Event::TextDelta {
            choice: 0,
            text: "hi".into(),
            logprobs: Vec::new(),
        };
        let finished = Event::Finished {
            choice: 0,
            reason: FinishReason::Stop,
            stop_sequence: None,
        };
        let complete = FakeProvider::new(vec![
            Step::Emit(text.clone()),
            Step::Pause(Duration::from_millis(1)),
            Step::Emit(finished),
            Step::Complete,
            Step::Emit(text.clone()),
        ]);
        let mut events = complete.generate(request()).await.unwrap();
        let mut seen = Vec::new();
        while let Some(item) = events.next().await {
            seen.push(item.unwrap());
        }
        assert_eq!(seen.len(), 3, "nothing after Done: {seen:?}");
        assert_eq!(seen.last(), Some(&Event::Done));
        assert_eq!(complete.received().len(), 1);

        // A stream that just stops is a failure, reported once.
        let truncated = FakeProvider::new(vec![Step::Emit(text)]);
        let mut events = truncated.generate(request()).await.unwrap();
        assert!(events.next().await.unwrap().is_ok());
        let end = events.next().await.unwrap().unwrap_err();
        assert_eq!(end.kind, ErrorKind::Internal);
        assert!(events.next().await.is_none());

        let refusing = FakeProvider::refusing(Error::new(ErrorKind::Overloaded, "busy"));
        assert!(refusing.generate(request()).await.is_err());
    }
}
