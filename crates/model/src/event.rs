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
    /// Reasoning text (a thinking model's `<think>` block), kept apart from the answer.
    ReasoningDelta { choice: u32, text: String },
    /// A tool call began: its position among the choice's calls, its id and the tool's name.
    /// Its arguments follow as `ToolCallArguments` fragments.
    ToolCallStart {
        choice: u32,
        index: u32,
        id: String,
        name: String,
    },
    /// The next fragment of a tool call's arguments (a JSON text once all are joined).
    ToolCallArguments {
        choice: u32,
        index: u32,
        fragment: String,
    },
    /// A choice ended.
    Finished { choice: u32, reason: FinishReason },
    /// Exact token accounting; sent once, after every choice finished.
    Usage(Usage),
    /// The generation completed; nothing follows. A failed generation ends with an error
    /// instead (providers' streams carry `Result<Event, Error>`).
    Done,
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
    pub reasoning: String,
    pub logprobs: Vec<TokenLogprob>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<FinishReason>,
}

/// A complete tool call of a folded completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
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
            Event::ReasoningDelta { choice, text } => {
                self.choice_mut(choice).reasoning.push_str(&text);
            }
            Event::ToolCallStart {
                choice,
                index,
                id,
                name,
            } => {
                let calls = &mut self.choice_mut(choice).tool_calls;
                let index = index as usize;
                if calls.len() <= index {
                    calls.resize_with(index + 1, ToolCall::default);
                }
                calls[index].id = id;
                calls[index].name = name;
            }
            Event::ToolCallArguments {
                choice,
                index,
                fragment,
            } => {
                let calls = &mut self.choice_mut(choice).tool_calls;
                let index = index as usize;
                if calls.len() <= index {
                    calls.resize_with(index + 1, ToolCall::default);
                }
                calls[index].arguments.push_str(&fragment);
            }
            Event::Finished { choice, reason } => {
                self.choice_mut(choice).finish_reason = Some(reason)
            }
            Event::Usage(usage) => self.usage = usage,
            Event::Done => {}
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

    #[test]
    fn fold_joins_tool_call_fragments() {
        let mut completion = Completion::default();
        for event in [
            Event::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_a".into(),
                name: "f".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "{\"x\":".into(),
            },
            Event::ToolCallStart {
                choice: 0,
                index: 1,
                id: "call_b".into(),
                name: "g".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "1}".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 1,
                fragment: "{}".into(),
            },
        ] {
            completion.push(event);
        }
        let calls = &completion.choices[0].tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0],
            ToolCall {
                id: "call_a".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into()
            }
        );
        assert_eq!(calls[1].name, "g");
        assert_eq!(calls[1].arguments, "{}");
    }
}
