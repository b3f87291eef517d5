//! OpenAI Chat Completions stream chunks → canonical events: a pure state machine, fed one
//! decoded `data:` payload at a time and tested without sockets.
//!
//! It reads what compatible servers send: `delta.content`, reasoning under `reasoning_content`
//! (vLLM, DeepSeek), `reasoning` (OpenRouter, Ollama) or `reasoning_details` text entries,
//! tool-call fragments (id and name first, then arguments), `logprobs.content`,
//! `finish_reason`, and the usage chunk (with cached and reasoning tokens).

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use switchboard_model::{
    Annotation, Error, ErrorKind, Event, Family, FinishReason, Sealed, TokenLogprob, TopLogprob,
    Usage,
};

/// The state of one upstream stream.
#[derive(Default)]
pub struct ChunkDecoder {
    /// (choice, call index) of the tool calls already started.
    started_calls: HashSet<(u32, u32)>,
    finished: HashSet<u32>,
    seen_choices: HashSet<u32>,
    usage: Option<Usage>,
    calls_made: u32,
    /// Which (choice, call index) each started call's id names.
    call_ids: HashMap<String, (u32, u32)>,
}

impl ChunkDecoder {
    /// The events one chunk carries.
    ///
    /// # Errors
    /// An upstream error object sent inside the stream.
    pub fn push(&mut self, chunk: &Value) -> Result<Vec<Event>, Error> {
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream reported an error in its stream");
            return Err(Error::new(
                ErrorKind::Upstream,
                format!("The upstream failed mid-stream: {message}"),
            ));
        }
        let mut events = Vec::new();
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            self.choice(choice, &mut events);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_of(usage));
        }
        Ok(events)
    }

    fn choice(&mut self, choice: &Value, events: &mut Vec<Event>) {
        #[allow(clippy::cast_possible_truncation)]
        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
        self.seen_choices.insert(index);
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for key in ["reasoning_content", "reasoning"] {
            if let Some(text) = delta.get(key).and_then(Value::as_str) {
                if !text.is_empty() {
                    events.push(Event::ReasoningDelta {
                        choice: index,
                        text: text.to_owned(),
                    });
                }
            }
        }
        let text_streamed_apart =
            delta.get("reasoning_content").is_some() || delta.get("reasoning").is_some();
        for detail in delta
            .get("reasoning_details")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            self.detail(index, detail, text_streamed_apart, events);
        }
        let logprobs = logprobs_of(choice);
        let text = delta.get("content").and_then(Value::as_str).unwrap_or("");
        if !text.is_empty() || !logprobs.is_empty() {
            events.push(Event::TextDelta {
                choice: index,
                text: text.to_owned(),
                logprobs,
            });
        }
        if let Some(refusal) = delta.get("refusal").and_then(Value::as_str) {
            if !refusal.is_empty() {
                events.push(Event::RefusalDelta {
                    choice: index,
                    text: refusal.to_owned(),
                });
            }
        }
        for annotation in delta
            .get("annotations")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            if let Some(annotation) = annotation_of(annotation) {
                events.push(Event::Annotation {
                    choice: index,
                    annotation,
                });
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            self.call(index, call, events);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            if self.finished.insert(index) {
                events.push(Event::Finished {
                    choice: index,
                    reason: finish_reason(reason),
                    stop_sequence: None,
                });
            }
        }
    }

    /// One `reasoning_details` entry (OpenRouter's shape, also NagaAI's): text streams as
    /// reasoning (unless the same text came in `reasoning_content`), a signature ends the
    /// block, an encrypted entry is an opaque block — or, when its `id` is a tool call's, that
    /// call's signature.
    fn detail(
        &mut self,
        choice: u32,
        detail: &Value,
        text_streamed_apart: bool,
        events: &mut Vec<Event>,
    ) {
        let field = |key: &str| detail.get(key).and_then(Value::as_str);
        let family = field("format")
            .and_then(Family::from_format)
            .unwrap_or(Family::OpenAi);
        match field("type") {
            Some("reasoning.text" | "reasoning.summary") => {
                let text = field("text").or_else(|| field("summary")).unwrap_or("");
                if !text.is_empty() && !text_streamed_apart {
                    events.push(Event::ReasoningDelta {
                        choice,
                        text: text.to_owned(),
                    });
                }
                if let Some(signature) = field("signature").filter(|s| !s.is_empty()) {
                    events.push(Event::ReasoningEnd {
                        choice,
                        signature: Some(Sealed::new(family, signature)),
                        encrypted: None,
                    });
                }
            }
            Some("reasoning.encrypted") => {
                let Some(data) = field("data").filter(|d| !d.is_empty()) else {
                    return;
                };
                let sealed = Sealed::new(family, data);
                match field("id").and_then(|id| self.call_ids.get(id)) {
                    Some(&(call_choice, index)) if call_choice == choice => {
                        events.push(Event::ToolCallSignature {
                            choice,
                            index,
                            signature: sealed,
                        });
                    }
                    _ => events.push(Event::ReasoningEnd {
                        choice,
                        signature: None,
                        encrypted: Some(sealed),
                    }),
                }
            }
            _ => {}
        }
    }

    fn call(&mut self, choice: u32, call: &Value, events: &mut Vec<Event>) {
        #[allow(clippy::cast_possible_truncation)]
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
        let function = call.get("function").unwrap_or(&Value::Null);
        if !self.started_calls.contains(&(choice, index)) {
            let name = function.get("name").and_then(Value::as_str).unwrap_or("");
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() && id.is_empty() {
                return;
            }
            self.calls_made += 1;
            let id = if id.is_empty() {
                // Some servers leave ids out; the client still needs one to answer the call.
                format!("call_{choice}_{index}_{}", self.calls_made)
            } else {
                id.to_owned()
            };
            self.started_calls.insert((choice, index));
            self.call_ids.insert(id.clone(), (choice, index));
            events.push(Event::ToolCallStart {
                choice,
                index,
                id,
                name: name.to_owned(),
            });
        }
        if let Some(fragment) = function.get("arguments").and_then(Value::as_str) {
            if !fragment.is_empty() {
                events.push(Event::ToolCallArguments {
                    choice,
                    index,
                    fragment: fragment.to_owned(),
                });
            }
        }
    }

    /// The closing events once the upstream said `[DONE]`: a finish for any choice the
    /// upstream left open, then usage (zeros if the upstream sent none).
    #[must_use]
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut open: Vec<u32> = self
            .seen_choices
            .difference(&self.finished)
            .copied()
            .collect();
        open.sort_unstable();
        for choice in open {
            self.finished.insert(choice);
            events.push(Event::Finished {
                choice,
                reason: FinishReason::Stop,
                stop_sequence: None,
            });
        }
        events.push(Event::Usage(self.usage.take().unwrap_or_default()));
        events
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// The count at `path` in `value`; 0 when absent or out of range.
pub(crate) fn count(value: &Value, path: &[&str]) -> u32 {
    let mut node = value;
    for key in path {
        node = node.get(key).unwrap_or(&Value::Null);
    }
    node.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn usage_of(usage: &Value) -> Usage {
    Usage {
        prompt_tokens: count(usage, &["prompt_tokens"]),
        completion_tokens: count(usage, &["completion_tokens"]),
        cached_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
        cache_write_tokens: count(usage, &["prompt_tokens_details", "cache_write_tokens"]),
        reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
        // Chat Completions reports no search count, even for models that search.
        web_search_requests: 0,
    }
}

/// A `url_citation` annotation, in Chat's nested shape or the flat one some servers send.
fn annotation_of(annotation: &Value) -> Option<Annotation> {
    if annotation.get("type").and_then(Value::as_str) != Some("url_citation") {
        return None;
    }
    let body = annotation.get("url_citation").unwrap_or(annotation);
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(Annotation::UrlCitation {
        url: text("url")?,
        title: text("title").unwrap_or_default(),
        start_index: count(body, &["start_index"]),
        end_index: count(body, &["end_index"]),
    })
}

fn logprobs_of(choice: &Value) -> Vec<TokenLogprob> {
    let Some(entries) = choice
        .get("logprobs")
        .and_then(|l| l.get("content"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    #[allow(clippy::cast_possible_truncation)]
    let logprob =
        |entry: &Value| entry.get("logprob").and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let token = |entry: &Value| {
        let text = entry
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let bytes = entry
            .get("bytes")
            .and_then(Value::as_array)
            .map(|bytes| {
                bytes
                    .iter()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect()
            })
            .unwrap_or_else(|| text.as_bytes().to_vec());
        (text, bytes)
    };
    entries
        .iter()
        .map(|entry| {
            let (text, bytes) = token(entry);
            let top = entry
                .get("top_logprobs")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|alternative| {
                    let (token, bytes) = token(alternative);
                    TopLogprob {
                        token,
                        bytes,
                        logprob: logprob(alternative),
                    }
                })
                .collect();
            TokenLogprob {
                token: text,
                bytes,
                logprob: logprob(entry),
                top,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn text_reasoning_calls_finish_and_usage() {
        let mut decoder = ChunkDecoder::default();
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "Think."}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}}),
        ];
        let mut events = Vec::new();
        for chunk in &chunks {
            events.extend(decoder.push(chunk).unwrap());
        }
        events.extend(decoder.finish());
        assert_eq!(
            events,
            vec![
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Think.".into()
                },
                Event::TextDelta {
                    choice: 0,
                    text: "Hi".into(),
                    logprobs: Vec::new()
                },
                Event::ToolCallStart {
                    choice: 0,
                    index: 0,
                    id: "call_a".into(),
                    name: "f".into()
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "{\"a\":".into()
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "1}".into()
                },
                Event::Finished {
                    choice: 0,
                    reason: FinishReason::ToolCalls,
                    stop_sequence: None,
                },
                Event::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 4,
                    cached_tokens: 2,
                    reasoning_tokens: 1,
                    cache_write_tokens: 0,
                    web_search_requests: 0,
                }),
            ]
        );
    }

    #[test]
    fn open_choices_are_closed_and_errors_surface() {
        let mut decoder = ChunkDecoder::default();
        let events = decoder
            .push(&json!({"choices": [{"index": 1, "delta": {"reasoning": "r"}}, {"index": 0, "delta": {"content": "x",
                "logprobs": null}, "logprobs": {"content": [{"token": "x", "logprob": -0.5, "bytes": [120],
                "top_logprobs": [{"token": "y", "logprob": -1.0, "bytes": [121]}]}]}}]}))
            .unwrap();
        assert_eq!(events.len(), 2);
        let Event::TextDelta { logprobs, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(logprobs[0].top[0].token, "y");
        let closing = decoder.finish();
        assert_eq!(closing.len(), 3, "{closing:?}");
        assert!(matches!(closing[2], Event::Usage(_)));
        let error = decoder
            .push(&json!({"error": {"message": "overloaded", "type": "server_error"}}))
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Upstream);
    }

    #[test]
    fn reasoning_details_refusals_and_citations() {
        let mut decoder = ChunkDecoder::default();
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"reasoning_details": [
                {"type": "reasoning.text", "text": "Hm.", "signature": "s1", "format": "anthropic-claude-v1"}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a",
                "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning_details": [
                {"type": "reasoning.encrypted", "id": "call_a", "data": "ts", "format": "google-gemini-v1"},
                {"type": "reasoning.encrypted", "data": "blob"}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"refusal": "No.", "annotations": [
                {"type": "url_citation", "url_citation": {"url": "https://e.x", "title": "E",
                 "start_index": 1, "end_index": 3}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                             "prompt_tokens_details": {"cache_write_tokens": 5}}}),
        ];
        let mut events = Vec::new();
        for chunk in &chunks {
            events.extend(decoder.push(chunk).unwrap());
        }
        events.extend(decoder.finish());
        assert_eq!(
            events[..2],
            [
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Hm.".into()
                },
                Event::ReasoningEnd {
                    choice: 0,
                    signature: Some(Sealed::new(Family::Anthropic, "s1")),
                    encrypted: None
                },
            ]
        );
        assert_eq!(
            events[4..8],
            [
                Event::ToolCallSignature {
                    choice: 0,
                    index: 0,
                    signature: Sealed::new(Family::Gemini, "ts")
                },
                Event::ReasoningEnd {
                    choice: 0,
                    signature: None,
                    encrypted: Some(Sealed::new(Family::OpenAi, "blob"))
                },
                Event::RefusalDelta {
                    choice: 0,
                    text: "No.".into()
                },
                Event::Annotation {
                    choice: 0,
                    annotation: Annotation::UrlCitation {
                        url: "https://e.x".into(),
                        title: "E".into(),
                        start_index: 1,
                        end_index: 3
                    }
                },
            ]
        );
        let Some(Event::Usage(usage)) = events.last() else {
            panic!("no usage")
        };
        assert_eq!(usage.cache_write_tokens, 5);
    }
}
