//! The streaming Chat Completions encoder: a pure state machine that turns canonical events into
//! `chat.completion.chunk` objects, one choice per chunk.
//!
//! Per choice it emits a first chunk with `delta: {role: "assistant", content: ""}`, then one
//! chunk per text delta, then exactly one chunk with `finish_reason` and an empty delta. With
//! `include_usage`, every chunk carries `"usage": null` and a final chunk with `choices: []`
//! carries the usage. It does not frame SSE or write the `[DONE]` terminator (see
//! [`crate::sse`]).

use serde::Serialize;
use switchboard_model::{Event, FinishReason, TokenLogprob, Usage};

use serde_json::Value;

use super::encode::{ChatLogprobs, ChatUsage};
use super::reasoning::{annotation_wire, block_details, call_detail, set_index, ReasoningDetail};

/// One `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChunkChoice>,
    /// Absent (outer `None`) unless usage was asked for; then `null` (`Some(None)`) on every
    /// chunk but the last, which carries the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<ChatUsage>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChunkDelta,
    /// `null` unless logprobs were requested and this chunk carries generated text.
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChunkDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Signed or encrypted reasoning, one entry per ended block or signed tool call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_details: Option<Vec<ReasoningDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<Value>>,
}

/// One tool call's piece of a chunk: `index` always; `id`, `type` and the name on its first
/// chunk; argument fragments after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// Encodes one generation's events into chunks. Feed every event to [`push`](Self::push) in
/// order, then call [`finish`](Self::finish) once the event stream ends.
#[derive(Debug, Clone)]
pub struct ChatStreamEncoder {
    id: String,
    created: u64,
    model: String,
    system_fingerprint: Option<String>,
    include_usage: bool,
    logprobs_requested: bool,
    /// Per choice: whether its role chunk went out, and whether its finish chunk did.
    started: Vec<bool>,
    finished: Vec<bool>,
    /// Per choice: the text of the reasoning block being streamed (repeated in its
    /// `reasoning_details` entry when the block ends), how many entries went out, and the
    /// ids of its tool calls (a call's signature names it).
    reasoning_block: Vec<String>,
    details_sent: Vec<usize>,
    call_ids: Vec<Vec<String>>,
    /// Usage that arrived before every choice finished, held so it stays the last chunk.
    held_usage: Option<Usage>,
    usage_sent: bool,
}

impl ChatStreamEncoder {
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        n: u32,
        include_usage: bool,
        logprobs_requested: bool,
    ) -> Self {
        let n = n.max(1) as usize;
        Self {
            id: id.into(),
            created,
            model: model.into(),
            system_fingerprint: None,
            include_usage,
            logprobs_requested,
            started: vec![false; n],
            finished: vec![false; n],
            reasoning_block: vec![String::new(); n],
            details_sent: vec![0; n],
            call_ids: vec![Vec::new(); n],
            held_usage: None,
            usage_sent: false,
        }
    }

    /// Sets the `system_fingerprint` every chunk carries.
    #[must_use]
    pub fn with_system_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.system_fingerprint = Some(fingerprint.into());
        self
    }

    /// The chunks this event produces (possibly none). Events for a choice that already finished
    /// are dropped, so a misbehaving provider cannot break the one-finish-per-choice rule.
    pub fn push(&mut self, event: &Event) -> Vec<ChatCompletionChunk> {
        let mut chunks = Vec::new();
        match event {
            // Chat Completions has no shape for the search itself: only its citations show.
            Event::ReasoningDelta { .. }
            | Event::ReasoningEnd { .. }
            | Event::Usage(_)
            | Event::WebSearch(_) => {}
            Event::TextDelta { choice, .. }
            | Event::RefusalDelta { choice, .. }
            | Event::Annotation { choice, .. }
            | Event::ToolCallStart { choice, .. }
            | Event::ToolCallArguments { choice, .. }
            | Event::ToolCallSignature { choice, .. }
            | Event::Finished { choice, .. } => self.close_reasoning(*choice, &mut chunks),
            Event::Done => {
                for choice in 0..self.reasoning_block.len() {
                    #[allow(clippy::cast_possible_truncation)]
                    self.close_reasoning(choice as u32, &mut chunks);
                }
            }
        }
        match event {
            Event::TextDelta {
                choice,
                text,
                logprobs,
            } => {
                let index = self.slot(*choice);
                if self.finished[index] {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                if !text.is_empty() || !logprobs.is_empty() {
                    chunks.push(self.text_chunk(*choice, text, logprobs));
                }
            }
            Event::ReasoningDelta { choice, text } => {
                let slot = self.slot(*choice);
                if self.finished[slot] || text.is_empty() {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                self.reasoning_block[slot].push_str(text);
                let delta = ChunkDelta {
                    reasoning_content: Some(text.clone()),
                    ..ChunkDelta::default()
                };
                chunks.push(self.chunk(*choice, delta, None, None));
            }
            Event::ReasoningEnd {
                choice,
                signature,
                encrypted,
            } => {
                let slot = self.slot(*choice);
                let text = std::mem::take(&mut self.reasoning_block[slot]);
                if self.finished[slot] || (signature.is_none() && encrypted.is_none()) {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                let details = block_details(&text, signature.as_ref(), encrypted.as_ref());
                chunks.push(self.details_chunk(*choice, details));
            }
            Event::RefusalDelta { choice, text } => {
                let slot = self.slot(*choice);
                if self.finished[slot] || text.is_empty() {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                let delta = ChunkDelta {
                    refusal: Some(text.clone()),
                    ..ChunkDelta::default()
                };
                chunks.push(self.chunk(*choice, delta, None, None));
            }
            Event::Annotation { choice, annotation } => {
                let slot = self.slot(*choice);
                if self.finished[slot] {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                let delta = ChunkDelta {
                    annotations: Some(vec![annotation_wire(annotation)]),
                    ..ChunkDelta::default()
                };
                chunks.push(self.chunk(*choice, delta, None, None));
            }
            Event::ToolCallSignature {
                choice,
                index,
                signature,
            } => {
                let slot = self.slot(*choice);
                let Some(call_id) = self.call_ids[slot].get(*index as usize).cloned() else {
                    return chunks;
                };
                if self.finished[slot] {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                chunks.push(self.details_chunk(*choice, vec![call_detail(&call_id, signature)]));
            }
            Event::ToolCallStart {
                choice,
                index: call,
                id,
                name,
            } => {
                let slot = self.slot(*choice);
                if self.finished[slot] {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                let ids = &mut self.call_ids[slot];
                if ids.len() <= *call as usize {
                    ids.resize(*call as usize + 1, String::new());
                }
                ids[*call as usize].clone_from(id);
                let call = ToolCallDelta {
                    index: *call,
                    id: Some(id.clone()),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(name.clone()),
                        arguments: String::new(),
                    },
                };
                chunks.push(self.tool_chunk(*choice, call));
            }
            Event::ToolCallArguments {
                choice,
                index: call,
                fragment,
            } => {
                let slot = self.slot(*choice);
                if self.finished[slot] || fragment.is_empty() {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                let call = ToolCallDelta {
                    index: *call,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: fragment.clone(),
                    },
                };
                chunks.push(self.tool_chunk(*choice, call));
            }
            Event::Finished { choice, reason, .. } => {
                let index = self.slot(*choice);
                if self.finished[index] {
                    return chunks;
                }
                self.start(*choice, &mut chunks);
                chunks.push(self.finish_chunk(*choice, *reason));
                self.finished[index] = true;
                if self.finished.iter().all(|done| *done) {
                    self.flush_usage(&mut chunks);
                }
            }
            Event::Usage(usage) => {
                self.held_usage = Some(*usage);
                if self.finished.iter().all(|done| *done) {
                    self.flush_usage(&mut chunks);
                }
            }
            Event::WebSearch(_) | Event::Done => {}
        }
        chunks
    }

    /// The reasoning block still open in `choice` ended without a signature (the next kind of
    /// output began): its text goes out as a `reasoning_details` entry of its own.
    fn close_reasoning(&mut self, choice: u32, chunks: &mut Vec<ChatCompletionChunk>) {
        let slot = self.slot(choice);
        if self.reasoning_block[slot].is_empty() || self.finished[slot] {
            return;
        }
        let text = std::mem::take(&mut self.reasoning_block[slot]);
        let details = block_details(&text, None, None);
        chunks.push(self.details_chunk(choice, details));
    }

    /// Chunks still owed when the event stream ends: the usage chunk, if usage arrived while
    /// some choice never finished. Choices that never finished get no invented finish reason.
    pub fn finish(&mut self) -> Vec<ChatCompletionChunk> {
        let mut chunks = Vec::new();
        self.flush_usage(&mut chunks);
        chunks
    }

    fn slot(&mut self, choice: u32) -> usize {
        let index = choice as usize;
        if index >= self.started.len() {
            self.started.resize(index + 1, false);
            self.finished.resize(index + 1, false);
            self.reasoning_block.resize(index + 1, String::new());
            self.details_sent.resize(index + 1, 0);
            self.call_ids.resize(index + 1, Vec::new());
        }
        index
    }

    fn start(&mut self, choice: u32, chunks: &mut Vec<ChatCompletionChunk>) {
        let index = self.slot(choice);
        if !self.started[index] {
            self.started[index] = true;
            let delta = ChunkDelta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..ChunkDelta::default()
            };
            chunks.push(self.chunk(choice, delta, None, None));
        }
    }

    fn text_chunk(
        &self,
        choice: u32,
        text: &str,
        logprobs: &[TokenLogprob],
    ) -> ChatCompletionChunk {
        let delta = ChunkDelta {
            role: None,
            content: Some(text.to_owned()),
            ..ChunkDelta::default()
        };
        let logprobs = self
            .logprobs_requested
            .then(|| ChatLogprobs::content(logprobs));
        self.chunk(choice, delta, logprobs, None)
    }

    fn tool_chunk(&self, choice: u32, call: ToolCallDelta) -> ChatCompletionChunk {
        let delta = ChunkDelta {
            tool_calls: Some(vec![call]),
            ..ChunkDelta::default()
        };
        self.chunk(choice, delta, None, None)
    }

    /// Numbers the entries after those the choice already sent, as one list would be.
    fn details_chunk(
        &mut self,
        choice: u32,
        mut details: Vec<ReasoningDetail>,
    ) -> ChatCompletionChunk {
        let slot = self.slot(choice);
        for detail in &mut details {
            set_index(detail, self.details_sent[slot]);
            self.details_sent[slot] += 1;
        }
        let delta = ChunkDelta {
            reasoning_details: Some(details),
            ..ChunkDelta::default()
        };
        self.chunk(choice, delta, None, None)
    }

    fn finish_chunk(&self, choice: u32, reason: FinishReason) -> ChatCompletionChunk {
        self.chunk(choice, ChunkDelta::default(), None, Some(reason.as_str()))
    }

    fn flush_usage(&mut self, chunks: &mut Vec<ChatCompletionChunk>) {
        if !self.include_usage || self.usage_sent {
            return;
        }
        if let Some(usage) = self.held_usage {
            self.usage_sent = true;
            let mut chunk = self.envelope(Vec::new());
            chunk.usage = Some(Some(ChatUsage::from(&usage)));
            chunks.push(chunk);
        }
    }

    fn chunk(
        &self,
        index: u32,
        delta: ChunkDelta,
        logprobs: Option<ChatLogprobs>,
        finish_reason: Option<&'static str>,
    ) -> ChatCompletionChunk {
        self.envelope(vec![ChunkChoice {
            index,
            delta,
            logprobs,
            finish_reason,
        }])
    }

    fn envelope(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            service_tier: Some("default".to_owned()),
            system_fingerprint: self.system_fingerprint.clone(),
            choices,
            usage: self.include_usage.then_some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::{json, Value};
    use switchboard_model::TopLogprob;
    use switchboard_testkit::validate_or_skip;

    fn text(choice: u32, text: &str) -> Event {
        Event::TextDelta {
            choice,
            text: text.into(),
            logprobs: vec![],
        }
    }

    fn finished(choice: u32, reason: FinishReason) -> Event {
        Event::Finished {
            choice,
            reason,
            stop_sequence: None,
        }
    }

    fn usage() -> Event {
        Event::Usage(Usage {
            web_search_requests: 0,
            prompt_tokens: 4,
            completion_tokens: 3,
            cached_tokens: 1,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        })
    }

    /// Runs the events through a fresh encoder and returns every chunk as validated JSON.
    fn run(encoder: &mut ChatStreamEncoder, events: &[Event]) -> Vec<Value> {
        let mut chunks: Vec<ChatCompletionChunk> =
            events.iter().flat_map(|e| encoder.push(e)).collect();
        chunks.extend(encoder.finish());
        chunks
            .iter()
            .map(|chunk| {
                let value = serde_json::to_value(chunk).unwrap();
                validate_or_skip("CreateChatCompletionStreamResponse", &value);
                assert_eq!(value["id"], "chatcmpl-s");
                assert_eq!(value["object"], "chat.completion.chunk");
                assert_eq!(value["created"], 42);
                assert_eq!(value["model"], "smollm2");
                value
            })
            .collect()
    }

    fn choice_view(chunk: &Value) -> Value {
        let choice = &chunk["choices"][0];
        json!([choice["index"], choice["delta"], choice["finish_reason"]])
    }

    #[test]
    fn single_choice_without_usage() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 1, false, false);
        let chunks = run(
            &mut encoder,
            &[
                text(0, "Hel"),
                text(0, "lo"),
                finished(0, FinishReason::Stop),
                usage(),
            ],
        );
        let views: Vec<Value> = chunks.iter().map(choice_view).collect();
        assert_eq!(
            views,
            vec![
                json!([0, {"role": "assistant", "content": ""}, null]),
                json!([0, {"content": "Hel"}, null]),
                json!([0, {"content": "lo"}, null]),
                json!([0, {}, "stop"]),
            ]
        );
        for chunk in &chunks {
            assert!(chunk.get("usage").is_none(), "{chunk}");
            assert_eq!(chunk["choices"][0]["logprobs"], Value::Null);
        }
    }

    #[test]
    fn two_interleaved_choices_with_usage_last() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 2, true, false);
        let chunks = run(
            &mut encoder,
            &[
                text(0, "a"),
                text(1, "b"),
                text(0, "c"),
                finished(1, FinishReason::Length),
                finished(0, FinishReason::Stop),
                usage(),
            ],
        );
        let (last, rest) = chunks.split_last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 7);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        for chunk in rest {
            assert_eq!(chunk["usage"], Value::Null);
            assert!(chunk.get("usage").is_some());
        }
        let views: Vec<Value> = rest.iter().map(choice_view).collect();
        assert_eq!(
            views,
            vec![
                json!([0, {"role": "assistant", "content": ""}, null]),
                json!([0, {"content": "a"}, null]),
                json!([1, {"role": "assistant", "content": ""}, null]),
                json!([1, {"content": "b"}, null]),
                json!([0, {"content": "c"}, null]),
                json!([1, {}, "length"]),
                json!([0, {}, "stop"]),
            ]
        );
    }

    #[test]
    fn usage_is_held_until_every_choice_finished() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 2, true, false);
        let chunks = run(
            &mut encoder,
            &[
                finished(0, FinishReason::Stop),
                usage(),
                finished(1, FinishReason::Stop),
            ],
        );
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[4]["choices"], json!([]));
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn finish_flushes_usage_of_a_truncated_stream_once() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 2, true, false);
        let chunks = run(
            &mut encoder,
            &[text(0, "x"), finished(0, FinishReason::Stop), usage()],
        );
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 7);
        assert!(encoder.finish().is_empty());
    }

    #[test]
    fn exactly_one_finish_per_choice() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 1, false, false);
        let chunks = run(
            &mut encoder,
            &[
                finished(0, FinishReason::Stop),
                text(0, "late"),
                finished(0, FinishReason::Length),
            ],
        );
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn logprobs_ride_on_text_chunks() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 1, true, true)
            .with_system_fingerprint("fp_x");
        let delta = Event::TextDelta {
            choice: 0,
            text: "Hi".into(),
            logprobs: vec![TokenLogprob {
                token: "Hi".into(),
                bytes: b"Hi".to_vec(),
                logprob: -0.5,
                top: vec![TopLogprob {
                    token: "Hey".into(),
                    bytes: b"Hey".to_vec(),
                    logprob: -1.5,
                }],
            }],
        };
        let chunks = run(
            &mut encoder,
            &[delta, finished(0, FinishReason::Stop), usage()],
        );
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["logprobs"], Value::Null);
        assert_eq!(
            chunks[1]["choices"][0]["logprobs"],
            json!({"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                "top_logprobs": [{"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]}]}],
                "refusal": null})
        );
        assert_eq!(chunks[2]["choices"][0]["logprobs"], Value::Null);
        assert!(chunks.iter().all(|c| c["system_fingerprint"] == "fp_x"));
    }

    #[test]
    fn tool_calls_stream_as_openai_does() {
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 1, true, false);
        let chunks = run(
            &mut encoder,
            &[
                Event::ToolCallStart {
                    choice: 0,
                    index: 0,
                    id: "call_1".into(),
                    name: "get_weather".into(),
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "{\"city\": ".into(),
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "\"Paris\"}".into(),
                },
                finished(0, FinishReason::ToolCalls),
                usage(),
            ],
        );
        assert_eq!(chunks.len(), 6);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}])
        );
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "{\"city\": "}}])
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["choices"], json!([]));
    }

    #[test]
    fn signatures_refusals_and_citations_have_their_own_delta_fields() {
        use switchboard_model::{Annotation, Family, Sealed};
        let mut encoder = ChatStreamEncoder::new("chatcmpl-s", 42, "smollm2", 1, false, false);
        let chunks = run(
            &mut encoder,
            &[
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Hmm.".into(),
                },
                Event::ReasoningEnd {
                    choice: 0,
                    signature: Some(Sealed::new(Family::Anthropic, "sig")),
                    encrypted: None,
                },
                Event::ToolCallStart {
                    choice: 0,
                    index: 0,
                    id: "call_1".into(),
                    name: "f".into(),
                },
                Event::ToolCallSignature {
                    choice: 0,
                    index: 0,
                    signature: Sealed::new(Family::Gemini, "ts"),
                },
                Event::Annotation {
                    choice: 0,
                    annotation: Annotation::UrlCitation {
                        url: "https://example.com".into(),
                        title: "Ex".into(),
                        start_index: 0,
                        end_index: 2,
                    },
                },
                Event::RefusalDelta {
                    choice: 0,
                    text: "No.".into(),
                },
                finished(0, FinishReason::Refusal),
            ],
        );
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[1]["reasoning_content"], "Hmm.");
        assert_eq!(
            deltas[2]["reasoning_details"],
            json!([{"type": "reasoning.text", "text": "Hmm.", "signature": "sig",
                    "format": "anthropic-claude-v1", "index": 0}])
        );
        assert_eq!(
            deltas[4]["reasoning_details"],
            json!([{"type": "reasoning.encrypted", "data": "ts", "id": "call_1",
                    "format": "google-gemini-v1", "index": 1}])
        );
        assert_eq!(
            deltas[5]["annotations"],
            json!([{"type": "url_citation", "url_citation": {"url": "https://example.com",
                    "title": "Ex", "start_index": 0, "end_index": 2}}])
        );
        assert_eq!(deltas[6]["refusal"], "No.");
        assert_eq!(chunks[7]["choices"][0]["finish_reason"], "content_filter");
    }
}
