//! What a provider emits while generating, and the fold of those events into one [`Completion`].
//! Streaming surfaces encode events as they come; non-streaming surfaces encode the fold, so the
//! two can never disagree.

/// One step of a generation. Choices are independent; each ends with exactly one `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text appended to a choice, with the logprobs of the tokens that produced it (when asked).
    TextDelta {
        choice: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// A choice ended.
    Finished { choice: u32, reason: FinishReason },
    /// Exact token accounting; sent once, after every choice finished.
    Usage(Usage),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end of turn or a stop sequence.
    Stop,
    /// Hit the output token limit or the context window.
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// The log probability of one generated token and, optionally, its most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from a prefix cache.
    pub cached_tokens: u32,
    pub reasoning_tokens: u32,
}

impl Usage {
    #[must_use]
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The fold of a whole event stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: Option<FinishReason>,
}

impl Completion {
    /// Folds one event in; choices are created on first sight of their index.
    pub fn push(&mut self, event: Event) {
        match event {
            Event::TextDelta {
                choice,
                text,
                logprobs,
            } => {
                let slot = self.choice_mut(choice);
                slot.text.push_str(&text);
                slot.logprobs.extend(logprobs);
            }
            Event::Finished { choice, reason } => {
                self.choice_mut(choice).finish_reason = Some(reason)
            }
            Event::Usage(usage) => self.usage = usage,
        }
    }

    fn choice_mut(&mut self, index: u32) -> &mut Choice {
        let index = index as usize;
        if self.choices.len() <= index {
            self.choices.resize_with(index + 1, Choice::default);
        }
        &mut self.choices[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_choices_apart_and_in_order() {
        let mut completion = Completion::default();
        for event in [
            Event::TextDelta {
                choice: 1,
                text: "b".into(),
                logprobs: vec![],
            },
            Event::TextDelta {
                choice: 0,
                text: "a".into(),
                logprobs: vec![],
            },
            Event::TextDelta {
                choice: 0,
                text: "c".into(),
                logprobs: vec![],
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::Length,
            },
            Event::Finished {
                choice: 1,
                reason: FinishReason::Stop,
            },
            Event::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Usage::default()
            }),
        ] {
            completion.push(event);
        }
        assert_eq!(completion.choices[0].text, "ac");
        assert_eq!(completion.choices[1].text, "b");
        assert_eq!(
            completion.choices[0].finish_reason,
            Some(FinishReason::Length)
        );
        assert_eq!(
            completion.choices[1].finish_reason,
            Some(FinishReason::Stop)
        );
        assert_eq!(completion.usage.total_tokens(), 7);
    }
}
