//! Which prompt tokens join a step: the scheduler's fairness policy, kept free of the model so
//! it can be tested on its own.
//!
//! Three rules, so that a long prompt never stalls the others:
//! 1. Prompts are served shortest remaining first, so a short request behind a long one
//!    reaches its first token after the step in flight plus its own short step.
//! 2. A prompt that fits whole in the step's token budget always goes in; while any does, no
//!    partial chunk of a longer prompt rides along (it would make that step as slow as a
//!    long-prompt step).
//! 3. A partial chunk of a long prompt runs only when the running decodes are not owed time:
//!    the wall time of each step that carried a partial chunk alongside decodes is owed back
//!    as decode-only steps before the next chunk. Decoding streams therefore get at least
//!    half the wall time — at least half their idle rate — and the long prompt the rest.

use std::time::Duration;

/// A prompt waiting for prefill: its job index and the tokens it still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub job: usize,
    pub remaining: usize,
}

/// The time-sharing state between decodes and long prefills.
#[derive(Debug, Default)]
pub struct PrefillPolicy {
    /// Wall time the decoding streams are owed before the next partial chunk.
    owed: Duration,
}

/// What one step takes from the prompts, and whether a partial chunk is among them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PromptPlan {
    /// `(job, tokens)` in the order they join the batch.
    pub takes: Vec<(usize, usize)>,
    pub partial: bool,
}

impl PrefillPolicy {
    /// Chooses the prompt tokens of a step. `pending` is in arrival order; `budget` is what
    /// the step has left after its decode rows; `decoding` says whether any stream decodes
    /// in this step. `plan` is cleared and reused (the step allocates nothing).
    pub fn plan(
        &self,
        pending: &mut [Pending],
        budget: usize,
        decoding: bool,
        plan: &mut PromptPlan,
    ) {
        plan.takes.clear();
        plan.partial = false;
        // Stable: equal lengths keep arrival order.
        pending.sort_by_key(|p| p.remaining);
        let mut left = budget;
        for prompt in pending.iter() {
            if prompt.remaining <= left {
                plan.takes.push((prompt.job, prompt.remaining));
                left -= prompt.remaining;
            } else {
                break;
            }
        }
        if !plan.takes.is_empty() {
            return;
        }
        if decoding && !self.owed.is_zero() {
            return;
        }
        // Nothing fits whole: the shortest prompt gets a chunk (at least a token, so no
        // prompt starves when decode rows fill the budget).
        if let Some(prompt) = pending.first() {
            plan.takes
                .push((prompt.job, prompt.remaining.min(left.max(1))));
            plan.partial = true;
        }
    }

    /// Accounts for a step that took `elapsed`: a partial chunk run beside decodes adds its
    /// time to what the decodes are owed; a step without one pays the debt down.
    pub fn record(&mut self, elapsed: Duration, partial: bool, decoding: bool) {
        if !decoding {
            self.owed = Duration::ZERO;
        } else if partial {
            self.owed += elapsed;
        } else {
            self.owed = self.owed.saturating_sub(elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(list: &[(usize, usize)]) -> Vec<Pending> {
        list.iter()
            .map(|&(job, remaining)| Pending { job, remaining })
            .collect()
    }

    #[test]
    fn short_prompts_go_first_and_whole_without_a_partial_chunk() {
        let policy = PrefillPolicy::default();
        let mut plan = PromptPlan::default();
        policy.plan(
            &mut pending(&[(0, 8000), (1, 8), (2, 40)]),
            256,
            false,
            &mut plan,
        );
        assert_eq!(plan.takes, [(1, 8), (2, 40)]);
        assert!(!plan.partial);
        // Alone, the long prompt takes the whole budget.
        policy.plan(&mut pending(&[(0, 8000)]), 256, false, &mut plan);
        assert_eq!(plan.takes, [(0, 256)]);
        assert!(plan.partial);
        // The last chunk of a long prompt is whole.
        policy.plan(&mut pending(&[(0, 100)]), 256, true, &mut plan);
        assert_eq!(plan.takes, [(0, 100)]);
    }

    #[test]
    fn decodes_are_paid_back_the_time_a_chunk_took() {
        let mut policy = PrefillPolicy::default();
        let mut plan = PromptPlan::default();
        let long = || pending(&[(0, 5000)]);
        policy.plan(&mut long(), 250, true, &mut plan);
        assert_eq!(plan.takes, [(0, 250)]);
        policy.record(Duration::from_millis(300), true, true);
        // Decode-only steps until 300 ms of them have run.
        for _ in 0..9 {
            policy.plan(&mut long(), 250, true, &mut plan);
            assert!(plan.takes.is_empty());
            policy.record(Duration::from_millis(30), false, true);
        }
        policy.plan(&mut long(), 250, true, &mut plan);
        assert!(plan.takes.is_empty());
        policy.record(Duration::from_millis(30), false, true);
        policy.plan(&mut long(), 250, true, &mut plan);
        assert_eq!(plan.takes, [(0, 250)]);
        // A short prompt is not held back by the debt.
        policy.record(Duration::from_millis(300), true, true);
        policy.plan(&mut pending(&[(0, 4750), (3, 12)]), 250, true, &mut plan);
        assert_eq!(plan.takes, [(3, 12)]);
        // With nothing decoding there is no one to owe.
        policy.record(Duration::from_millis(10), false, false);
        policy.plan(&mut long(), 256, false, &mut plan);
        assert_eq!(plan.takes, [(0, 256)]);
    }

    #[test]
    fn a_full_budget_still_moves_a_prompt_forward() {
        let policy = PrefillPolicy::default();
        let mut plan = PromptPlan::default();
        policy.plan(&mut pending(&[(0, 30)]), 0, true, &mut plan);
        assert_eq!(plan.takes, [(0, 1)]);
        assert!(plan.partial);
    }
}
