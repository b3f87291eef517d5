//! The non-streaming `chat.completion` body, encoded from the fold of the event stream, and the
//! wire pieces (logprobs, usage) that the streaming chunks share.
//!
//! Fields the spec marks required-but-nullable (`content`, `refusal`, `logprobs`) are plain
//! `Option`s that serialize as `null`; optional ones are skipped when absent. Nothing here knows
//! how the completion was produced.

use serde::Serialize;
use switchboard_model::{Completion, FinishReason, TokenLogprob, TopLogprob, Usage};

use super::reasoning::{annotation_wire, details_of, ReasoningDetail};

/// What OpenAI reports for tokens it has no real logprob for; also stands in for non-finite
/// values, which JSON cannot carry.
const UNLIKELY_LOGPROB: f32 = -9999.0;

/// The `chat.completion` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: ChatUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatMessage,
    /// `null` unless logprobs were requested.
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// Always `"assistant"`.
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    /// URL citations (`{"type": "url_citation", "url_citation": {…}}`).
    pub annotations: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<WireToolCall>>,
    /// A thinking model's reasoning, under the name other OpenAI-compatible servers use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Reasoning with the provider's signatures, to be sent back unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_details: Option<Vec<ReasoningDetail>>,
}

/// `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireToolCall {
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WireFunction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireFunction {
    pub name: String,
    pub arguments: String,
}

/// `{"content": [...], "refusal": null}`; used by both the body and the chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Option<Vec<ChatTokenLogprob>>,
    pub refusal: Option<Vec<ChatTokenLogprob>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
    pub audio_tokens: u32,
    /// Prompt tokens written to the provider's cache (OpenRouter's name); only when some were.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
    pub audio_tokens: u32,
    pub accepted_prediction_tokens: u32,
    pub rejected_prediction_tokens: u32,
}

/// Encodes a folded completion. With `logprobs_requested`, every choice carries a logprobs
/// object (with an empty `content` list when it produced no tokens); without, `logprobs` is null.
/// `service_tier` is `"default"`; `system_fingerprint` is left for the caller to set.
#[must_use]
pub fn encode_chat_completion(
    id: &str,
    created: u64,
    model: &str,
    completion: &Completion,
    logprobs_requested: bool,
) -> ChatCompletionResponse {
    let choices = completion
        .choices
        .iter()
        .zip(0u32..)
        .map(|(choice, index)| ChatChoice {
            index,
            message: ChatMessage {
                role: "assistant",
                // As OpenAI: a message that only calls tools has `content: null`.
                // and so does a refusal.
                content: ((choice.tool_calls.is_empty() && choice.refusal.is_empty())
                    || !choice.text.is_empty())
                .then(|| choice.text.clone()),
                refusal: (!choice.refusal.is_empty()).then(|| choice.refusal.clone()),
                annotations: choice.annotations.iter().map(annotation_wire).collect(),
                reasoning_content: (!choice.reasoning.is_empty()).then(|| choice.reasoning.clone()),
                reasoning_details: Some(details_of(&choice.reasoning_blocks, &choice.tool_calls))
                    .filter(|details| !details.is_empty()),
                tool_calls: (!choice.tool_calls.is_empty()).then(|| {
                    choice
                        .tool_calls
                        .iter()
                        .map(|call| WireToolCall {
                            id: call.id.clone(),
                            kind: "function",
                            function: WireFunction {
                                name: call.name.clone(),
                                arguments: call.arguments.clone(),
                            },
                        })
                        .collect()
                }),
            },
            logprobs: logprobs_requested.then(|| ChatLogprobs::content(&choice.logprobs)),
            // A choice without a Finished event was cut short by the provider; `stop` is the
            // only value that does not claim a specific cause.
            finish_reason: choice.finish_reason.unwrap_or(FinishReason::Stop).as_str(),
        })
        .collect();
    ChatCompletionResponse {
        id: id.to_owned(),
        object: "chat.completion",
        created,
        model: model.to_owned(),
        choices,
        usage: ChatUsage::from(&completion.usage),
        service_tier: Some("default".to_owned()),
        system_fingerprint: None,
    }
}

impl ChatLogprobs {
    /// Logprobs of content tokens; `refusal` is null since we never produce refusal tokens.
    #[must_use]
    pub fn content(tokens: &[TokenLogprob]) -> Self {
        Self {
            content: Some(tokens.iter().map(ChatTokenLogprob::from).collect()),
            refusal: None,
        }
    }
}

impl From<&TokenLogprob> for ChatTokenLogprob {
    fn from(token: &TokenLogprob) -> Self {
        Self {
            token: token.token.clone(),
            logprob: finite(token.logprob),
            bytes: Some(token.bytes.clone()),
            top_logprobs: token.top.iter().map(ChatTopLogprob::from).collect(),
        }
    }
}

impl From<&TopLogprob> for ChatTopLogprob {
    fn from(top: &TopLogprob) -> Self {
        Self {
            token: top.token.clone(),
            logprob: finite(top.logprob),
            bytes: Some(top.bytes.clone()),
        }
    }
}

impl From<&Usage> for ChatUsage {
    fn from(usage: &Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: usage.cached_tokens,
                audio_tokens: 0,
                cache_write_tokens: usage.cache_write_tokens,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: usage.reasoning_tokens,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// serde_json writes non-finite floats as `null`, which the spec forbids for `logprob`.
fn finite(logprob: f32) -> f32 {
    if logprob.is_finite() {
        logprob
    } else {
        UNLIKELY_LOGPROB
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::{json, Value};
    use switchboard_model::{Choice, Event};
    use switchboard_testkit::validate_or_skip;

    fn token(text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob,
            top: vec![TopLogprob {
                token: text.into(),
                bytes: text.as_bytes().to_vec(),
                logprob,
            }],
        }
    }

    fn encode(completion: &Completion, logprobs: bool) -> Value {
        let body =
            encode_chat_completion("chatcmpl-1", 1_700_000_000, "smollm2", completion, logprobs);
        let value = serde_json::to_value(&body).unwrap();
        validate_or_skip("CreateChatCompletionResponse", &value);
        value
    }

    #[test]
    fn tool_calls_have_null_content_and_finish_reason_tool_calls() {
        let mut completion = Completion::default();
        for event in [
            Event::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_1".into(),
                name: "get_weather".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "{\"city\": \"Paris\"}".into(),
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
        ] {
            completion.push(event);
        }
        let body = encode(&completion, false);
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn plain_completion_has_every_required_field() {
        let mut completion = Completion::default();
        for event in [
            Event::TextDelta {
                choice: 0,
                text: "Hello".into(),
                logprobs: vec![],
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            Event::Usage(Usage {
                web_search_requests: 0,
                prompt_tokens: 5,
                completion_tokens: 1,
                cached_tokens: 2,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            }),
        ] {
            completion.push(event);
        }
        let value = encode(&completion, false);
        assert_eq!(
            value,
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_700_000_000u64,
                "model": "smollm2",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello", "refusal": null, "annotations": []},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": {
                    "prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6,
                    "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0, "audio_tokens": 0,
                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
                    }
                },
                "service_tier": "default"
            })
        );
    }

    #[test]
    fn logprobs_and_two_choices() {
        let completion = Completion {
            searches: Vec::new(),
            choices: vec![
                Choice {
                    text: "Hi".into(),
                    reasoning: String::new(),
                    logprobs: vec![token("Hi", -0.25)],
                    tool_calls: vec![],
                    finish_reason: Some(FinishReason::Length),
                    ..Choice::default()
                },
                Choice {
                    text: String::new(),
                    reasoning: String::new(),
                    logprobs: vec![],
                    tool_calls: vec![],
                    finish_reason: Some(FinishReason::Stop),
                    ..Choice::default()
                },
            ],
            usage: Usage {
                web_search_requests: 0,
                prompt_tokens: 3,
                completion_tokens: 1,
                cached_tokens: 0,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            },
        };
        let value = encode(&completion, true);
        assert_eq!(value["choices"][0]["finish_reason"], "length");
        assert_eq!(value["choices"][1]["index"], 1);
        assert_eq!(
            value["choices"][0]["logprobs"],
            json!({"content": [{
                "token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}]
            }], "refusal": null})
        );
        // Requested but no tokens: an empty list, not null.
        assert_eq!(
            value["choices"][1]["logprobs"],
            json!({"content": [], "refusal": null})
        );
        assert_eq!(value["choices"][1]["message"]["content"], "");
    }

    #[test]
    fn non_finite_logprobs_stay_numbers() {
        let completion = Completion {
            searches: Vec::new(),
            choices: vec![Choice {
                text: "x".into(),
                reasoning: String::new(),
                logprobs: vec![token("x", f32::NEG_INFINITY)],
                tool_calls: vec![],
                finish_reason: Some(FinishReason::Stop),
                ..Choice::default()
            }],
            usage: Usage::default(),
        };
        let value = encode(&completion, true);
        assert_eq!(
            value["choices"][0]["logprobs"]["content"][0]["logprob"],
            -9999.0
        );
    }

    #[test]
    fn system_fingerprint_serializes_when_set() {
        let mut body = encode_chat_completion("c", 1, "m", &Completion::default(), false);
        body.system_fingerprint = Some("fp_local".into());
        let value = serde_json::to_value(&body).unwrap();
        validate_or_skip("CreateChatCompletionResponse", &value);
        assert_eq!(value["system_fingerprint"], "fp_local");
        assert_eq!(value["choices"], json!([]));
    }
}
