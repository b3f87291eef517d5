//! What a provider emits while generating, and the fold of those events into one [`Completion`].
//! Streaming surfaces encode events as they come; non-streaming surfaces encode the fold, so the
//! two can never disagree.

use crate::Sealed;

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
    /// The reasoning block being streamed ended, with the provider's signature over it; or an
    /// opaque block arrived whole (`encrypted`: reasoning the client may not read).
    ReasoningEnd {
        choice: u32,
        signature: Option<Sealed>,
        encrypted: Option<Sealed>,
    },
    /// Text of a refusal, which takes the place of the answer.
    RefusalDelta { choice: u32, text: String },
    /// A citation of a source in the choice's text.
    Annotation { choice: u32, annotation: Annotation },
    /// A web search that ran for this request — by the gateway or natively by the provider —
    /// before the text that cites it.
    WebSearch(SearchCall),
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
    /// The provider's opaque value for a tool call (Gemini's `thoughtSignature`).
    ToolCallSignature {
        choice: u32,
        index: u32,
        signature: Sealed,
    },
    /// A choice ended; `stop_sequence` is the stop string that ended it, when one did.
    Finished {
        choice: u32,
        reason: FinishReason,
        stop_sequence: Option<String>,
    },
    /// Exact token accounting; sent once, after every choice finished.
    Usage(Usage),
    /// The generation completed; nothing follows. A failed generation ends with an error
    /// instead (providers' streams carry `Result<Event, Error>`).
    Done,
}

/// Why a choice ended, keeping the distinctions providers make; surfaces without a word for
/// one use their nearest (`as_str` is Chat Completions' `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Natural end of turn or a stop sequence.
    Stop,
    /// Hit the output token limit or the context window.
    Length,
    ToolCalls,
    /// A safety or policy filter stopped the output.
    ContentFilter,
    /// The model declined to answer (Anthropic's `refusal`).
    Refusal,
    /// The provider paused a long turn that the client should continue (Anthropic's
    /// `pause_turn`, from server tools).
    PauseTurn,
}

impl FinishReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop | Self::PauseTurn => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter | Self::Refusal => "content_filter",
        }
    }
}

/// A citation attached to a choice's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    /// A web source; the indexes cut the cited span out of the choice's text, in characters
    /// (Unicode scalar values), end exclusive.
    UrlCitation {
        url: String,
        title: String,
        start_index: u32,
        end_index: u32,
    },
}

/// One web search: what was asked and the sources it returned (those citations may name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCall {
    pub query: String,
    pub sources: Vec<SearchSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchSource {
    pub url: String,
    pub title: String,
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
    /// Prompt tokens served from a prefix cache (read).
    pub cached_tokens: u32,
    /// Prompt tokens written to a provider's prompt cache (billed differently by some).
    pub cache_write_tokens: u32,
    pub reasoning_tokens: u32,
    /// Web searches run for the request (priced per search, not per token).
    pub web_search_requests: u32,
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
    /// The web searches that ran, in order.
    pub searches: Vec<SearchCall>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    pub text: String,
    /// All reasoning text, joined (what `reasoning_content` shows).
    pub reasoning: String,
    /// The reasoning blocks one by one, with their signatures.
    pub reasoning_blocks: Vec<ReasoningBlock>,
    pub refusal: String,
    pub annotations: Vec<Annotation>,
    pub logprobs: Vec<TokenLogprob>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<FinishReason>,
    pub stop_sequence: Option<String>,
}

/// One reasoning block of a folded completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningBlock {
    pub text: String,
    pub signature: Option<Sealed>,
    pub encrypted: Option<Sealed>,
    /// Whether its `ReasoningEnd` arrived (later text starts a new block).
    pub ended: bool,
}

/// A complete tool call of a folded completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
    pub signature: Option<Sealed>,
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
                let slot = self.choice_mut(choice);
                slot.reasoning.push_str(&text);
                match slot.reasoning_blocks.last_mut() {
                    Some(block) if !block.ended => block.text.push_str(&text),
                    _ => slot.reasoning_blocks.push(ReasoningBlock {
                        text,
                        ..ReasoningBlock::default()
                    }),
                }
            }
            Event::ReasoningEnd {
                choice,
                signature,
                encrypted,
            } => {
                let blocks = &mut self.choice_mut(choice).reasoning_blocks;
                if blocks.last().is_none_or(|block| block.ended) {
                    blocks.push(ReasoningBlock::default());
                }
                if let Some(block) = blocks.last_mut() {
                    block.signature = signature;
                    block.encrypted = encrypted;
                    block.ended = true;
                }
            }
            Event::RefusalDelta { choice, text } => {
                self.choice_mut(choice).refusal.push_str(&text);
            }
            Event::Annotation { choice, annotation } => {
                self.choice_mut(choice).annotations.push(annotation);
            }
            Event::ToolCallSignature {
                choice,
                index,
                signature,
            } => {
                let calls = &mut self.choice_mut(choice).tool_calls;
                let index = index as usize;
                if calls.len() <= index {
                    calls.resize_with(index + 1, ToolCall::default);
                }
                calls[index].signature = Some(signature);
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
            Event::Finished {
                choice,
                reason,
                stop_sequence,
            } => {
                let slot = self.choice_mut(choice);
                slot.finish_reason = Some(reason);
                slot.stop_sequence = stop_sequence;
            }
            Event::Usage(usage) => self.usage = usage,
            Event::WebSearch(call) => self.searches.push(call),
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
                stop_sequence: None,
            },
            Event::Finished {
                choice: 1,
                reason: FinishReason::Stop,
                stop_sequence: Some("END".into()),
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
        assert_eq!(completion.choices[1].stop_sequence.as_deref(), Some("END"));
    }

    #[test]
    fn fold_splits_reasoning_blocks_at_their_ends() {
        use crate::Family;
        let mut completion = Completion::default();
        let signed = |value: &str| Some(Sealed::new(Family::Anthropic, value));
        for event in [
            Event::ReasoningDelta {
                choice: 0,
                text: "first ".into(),
            },
            Event::ReasoningDelta {
                choice: 0,
                text: "thought".into(),
            },
            Event::ReasoningEnd {
                choice: 0,
                signature: signed("sig1"),
                encrypted: None,
            },
            Event::ReasoningEnd {
                choice: 0,
                signature: None,
                encrypted: signed("opaque"),
            },
            Event::ReasoningDelta {
                choice: 0,
                text: "second".into(),
            },
        ] {
            completion.push(event);
        }
        let choice = &completion.choices[0];
        assert_eq!(choice.reasoning, "first thoughtsecond");
        let blocks = &choice.reasoning_blocks;
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].text, "first thought");
        assert_eq!(blocks[0].signature, signed("sig1"));
        assert_eq!(
            (blocks[1].text.as_str(), &blocks[1].encrypted),
            ("", &signed("opaque"))
        );
        assert_eq!(
            (blocks[2].text.as_str(), blocks[2].ended),
            ("second", false)
        );
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
                arguments: "{\"x\":1}".into(),
                signature: None,
            }
        );
        assert_eq!(calls[1].name, "g");
        assert_eq!(calls[1].arguments, "{}");
    }
}
