//! Canonical events → Anthropic Messages stream events, and the fold of those events into the
//! non-streamed message body, so the two answers can never disagree.
//!
//! Blocks are emitted in the order the model produced them (`thinking`, `text`, `tool_use`),
//! each opened by `content_block_start` and closed by `content_block_stop` before the next one
//! opens. Opaque values from other provider families (Gemini's thought signatures, OpenAI's
//! encrypted reasoning) travel in this server's envelopes: as a `thinking` block's `signature`,
//! or as a `redacted_thinking` block's `data` (a tool call's signature names its call), so a
//! client replaying its content blocks unchanged gives every provider back what it sent.

use serde_json::{json, Map, Value};
use switchboard_model::{
    Annotation, Error, ErrorKind, Event, Family, FinishReason, Sealed, SearchCall, Usage,
};

use crate::sealed::Envelope;

/// The block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its index among the choice's calls.
    ToolUse(u32),
}

/// Turns one generation's canonical events into Messages stream events (JSON objects with a
/// `type`). Only choice 0 exists on this surface.
#[derive(Debug)]
pub struct MessagesStreamEncoder {
    id: String,
    model: String,
    next_index: u32,
    open: Option<(u32, Open)>,
    /// Block index of each tool call, by the call's index.
    call_blocks: Vec<(u32, u32, String)>,
    /// Tool-call signatures, emitted as `redacted_thinking` envelopes once the content ends.
    call_signatures: Vec<(String, Sealed)>,
    /// Characters of text streamed so far, for the spans citations cite.
    text: String,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<String>,
    usage: Usage,
    /// Web searches shown so far (numbering their block ids).
    searches: u32,
}

impl MessagesStreamEncoder {
    #[must_use]
    pub fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            next_index: 0,
            open: None,
            call_blocks: Vec::new(),
            call_signatures: Vec::new(),
            searches: 0,
            text: String::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default(),
        }
    }

    /// The first event of every stream.
    #[must_use]
    pub fn start(&self) -> Value {
        json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
    }

    /// The events one canonical event becomes.
    pub fn push(&mut self, event: &Event) -> Vec<Value> {
        let mut out = Vec::new();
        match event {
            Event::TextDelta {
                choice: 0, text, ..
            }
            | Event::RefusalDelta { choice: 0, text } => {
                if text.is_empty() {
                    return out;
                }
                let index = self.ensure(Open::Text, &mut out);
                self.text.push_str(text);
                out.push(delta(index, json!({"type": "text_delta", "text": text})));
            }
            Event::ReasoningDelta { choice: 0, text } => {
                if text.is_empty() {
                    return out;
                }
                let index = self.ensure(Open::Thinking, &mut out);
                out.push(delta(
                    index,
                    json!({"type": "thinking_delta", "thinking": text}),
                ));
            }
            Event::ReasoningEnd {
                choice: 0,
                signature,
                encrypted,
            } => self.reasoning_end(signature.as_ref(), encrypted.as_ref(), &mut out),
            Event::Annotation {
                choice: 0,
                annotation:
                    Annotation::UrlCitation {
                        url,
                        title,
                        start_index,
                        end_index,
                    },
            } => {
                let index = self.ensure(Open::Text, &mut out);
                let cited: String = self
                    .text
                    .chars()
                    .skip(*start_index as usize)
                    .take(end_index.saturating_sub(*start_index) as usize)
                    .collect();
                out.push(delta(
                    index,
                    json!({"type": "citations_delta", "citation": {
                        "type": "web_search_result_location", "url": url, "title": title,
                        "cited_text": cited, "encrypted_index": ""}}),
                ));
            }
            Event::ToolCallStart {
                choice: 0,
                index: call,
                id,
                name,
            } => {
                self.close(&mut out);
                let block = self.next_index;
                self.next_index += 1;
                let id = tool_use_id(id);
                self.call_blocks.push((*call, block, id.clone()));
                self.open = Some((block, Open::ToolUse(*call)));
                out.push(json!({"type": "content_block_start", "index": block,
                    "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
            }
            Event::ToolCallArguments {
                choice: 0,
                index: call,
                fragment,
            } => {
                if let Some(&(_, block, _)) = self.call_blocks.iter().find(|(c, ..)| c == call) {
                    if !fragment.is_empty() {
                        out.push(delta(
                            block,
                            json!({"type": "input_json_delta", "partial_json": fragment}),
                        ));
                    }
                }
            }
            Event::ToolCallSignature {
                choice: 0,
                index: call,
                signature,
            } => {
                if let Some((_, _, id)) = self.call_blocks.iter().find(|(c, ..)| c == call) {
                    self.call_signatures.push((id.clone(), signature.clone()));
                }
            }
            Event::Finished {
                choice: 0,
                reason,
                stop_sequence,
            } => {
                self.close(&mut out);
                for (call_id, signature) in std::mem::take(&mut self.call_signatures) {
                    let envelope = Envelope {
                        signature: Some(signature),
                        encrypted: None,
                        call_id: Some(call_id),
                    };
                    if let Some(data) = envelope.seal() {
                        self.whole_block(
                            json!({"type": "redacted_thinking", "data": data}),
                            &mut out,
                        );
                    }
                }
                self.stop_reason = Some(stop_reason(*reason, stop_sequence.is_some()));
                self.stop_sequence.clone_from(stop_sequence);
            }
            Event::Usage(usage) => self.usage = *usage,
            Event::WebSearch(call) => self.web_search(call, &mut out),
            _ => {}
        }
        out
    }

    /// A search that already ran, as the web search server tool shows one: its
    /// `server_tool_use` block (the query streamed as the input) and the
    /// `web_search_tool_result` block with the pages it returned.
    fn web_search(&mut self, call: &SearchCall, out: &mut Vec<Value>) {
        self.close(out);
        self.searches += 1;
        let id = format!(
            "srvtoolu_{}{}",
            self.id.strip_prefix("msg_").unwrap_or(&self.id),
            self.searches
        );
        let block = self.next_index;
        self.next_index += 1;
        out.push(
            json!({"type": "content_block_start", "index": block, "content_block":
            {"type": "server_tool_use", "id": id, "name": "web_search", "input": {}}}),
        );
        out.push(delta(
            block,
            json!({"type": "input_json_delta",
                   "partial_json": json!({"query": call.query}).to_string()}),
        ));
        out.push(json!({"type": "content_block_stop", "index": block}));
        let results: Vec<Value> = call
            .sources
            .iter()
            .map(|source| {
                json!({"type": "web_search_result", "url": source.url, "title": source.title,
                       "encrypted_content": opaque_source(&source.url), "page_age": null})
            })
            .collect();
        self.whole_block(
            json!({"type": "web_search_tool_result", "tool_use_id": id, "content": results}),
            out,
        );
    }

    /// The closing events of a completed generation.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.close(&mut out);
        let usage = &self.usage;
        out.push(json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"),
                      "stop_sequence": self.stop_sequence},
            "usage": usage_json(usage)}));
        out.push(json!({"type": "message_stop"}));
        out
    }

    /// The block of `kind` to append to, opening it (and closing another) when needed.
    fn ensure(&mut self, kind: Open, out: &mut Vec<Value>) -> u32 {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        let block = match kind {
            Open::Text => json!({"type": "text", "text": ""}),
            _ => json!({"type": "thinking", "thinking": "", "signature": ""}),
        };
        out.push(json!({"type": "content_block_start", "index": index, "content_block": block}));
        index
    }

    fn close(&mut self, out: &mut Vec<Value>) {
        if let Some((index, _)) = self.open.take() {
            out.push(json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// A block that arrives whole (`redacted_thinking`).
    fn whole_block(&mut self, block: Value, out: &mut Vec<Value>) {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push(json!({"type": "content_block_start", "index": index, "content_block": block}));
        out.push(json!({"type": "content_block_stop", "index": index}));
    }

    fn reasoning_end(
        &mut self,
        signature: Option<&Sealed>,
        encrypted: Option<&Sealed>,
        out: &mut Vec<Value>,
    ) {
        let thinking_open = matches!(self.open, Some((_, Open::Thinking)));
        if let Some(signature) = signature {
            let index = self.ensure(Open::Thinking, out);
            let shown = match signature.family {
                Family::Anthropic => Some(signature.value.clone()),
                _ => Envelope {
                    signature: Some(signature.clone()),
                    ..Envelope::default()
                }
                .seal(),
            };
            if let Some(shown) = shown {
                out.push(delta(
                    index,
                    json!({"type": "signature_delta", "signature": shown}),
                ));
            }
        }
        if signature.is_some() || thinking_open {
            self.close(out);
        }
        if let Some(encrypted) = encrypted {
            let data = match encrypted.family {
                Family::Anthropic => Some(encrypted.value.clone()),
                _ => Envelope {
                    encrypted: Some(encrypted.clone()),
                    ..Envelope::default()
                }
                .seal(),
            };
            if let Some(data) = data {
                self.whole_block(json!({"type": "redacted_thinking", "data": data}), out);
            }
        }
    }
}

fn delta(index: u32, delta: Value) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": delta})
}

/// Tool-call ids in Anthropic's style; ids that are already are kept, so a conversation with
/// a Claude upstream sees its own ids.
fn tool_use_id(id: &str) -> String {
    if id.starts_with("toolu_") {
        id.to_owned()
    } else {
        format!("toolu_{}", id.strip_prefix("call_").unwrap_or(id))
    }
}

/// This API's stop reason for a canonical finish reason.
#[must_use]
pub fn stop_reason(reason: FinishReason, stopped_by_sequence: bool) -> &'static str {
    match reason {
        FinishReason::Stop if stopped_by_sequence => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter | FinishReason::Refusal => "refusal",
        FinishReason::PauseTurn => "pause_turn",
    }
}

/// Canonical usage counts the whole prompt; this API counts cache reads and writes apart, and
/// server tool calls under `server_tool_use`.
fn usage_json(usage: &Usage) -> Value {
    let uncached = usage
        .prompt_tokens
        .saturating_sub(usage.cached_tokens)
        .saturating_sub(usage.cache_write_tokens);
    let mut value = json!({"input_tokens": uncached, "output_tokens": usage.completion_tokens,
           "cache_creation_input_tokens": usage.cache_write_tokens,
           "cache_read_input_tokens": usage.cached_tokens});
    if usage.web_search_requests > 0 {
        value["server_tool_use"] = json!({"web_search_requests": usage.web_search_requests});
    }
    value
}

/// The `encrypted_content` of a search result: opaque to clients, which send it back
/// unchanged (this server does not read it back).
fn opaque_source(url: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
}

/// Folds stream events into the message they describe, as Anthropic's SDKs accumulate them.
#[derive(Debug, Default)]
pub struct MessageFold {
    message: Map<String, Value>,
    /// Unparsed `input_json_delta` text per block index.
    json: Vec<(u64, String)>,
}

impl MessageFold {
    pub fn push(&mut self, event: &Value) {
        match event["type"].as_str() {
            Some("message_start") => {
                if let Value::Object(message) = &event["message"] {
                    self.message = message.clone();
                }
            }
            Some("content_block_start") => {
                if let Some(Value::Array(content)) = self.message.get_mut("content") {
                    content.push(event["content_block"].clone());
                }
            }
            Some("content_block_delta") => self.delta(event),
            Some("content_block_stop") => {
                let index = event["index"].as_u64().unwrap_or(0);
                if let Some(at) = self.json.iter().position(|(i, _)| *i == index) {
                    let (_, text) = self.json.remove(at);
                    let input = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
                    if let Some(block) = self.block(index) {
                        block["input"] = input;
                    }
                }
            }
            Some("message_delta") => {
                for key in ["stop_reason", "stop_sequence"] {
                    self.message.insert(key.into(), event["delta"][key].clone());
                }
                self.message.insert("usage".into(), event["usage"].clone());
            }
            _ => {}
        }
    }

    fn block(&mut self, index: u64) -> Option<&mut Value> {
        match self.message.get_mut("content") {
            Some(Value::Array(content)) => {
                usize::try_from(index).ok().and_then(|i| content.get_mut(i))
            }
            _ => None,
        }
    }

    fn delta(&mut self, event: &Value) {
        let index = event["index"].as_u64().unwrap_or(0);
        let delta = &event["delta"];
        if delta["type"] == "input_json_delta" {
            let fragment = delta["partial_json"].as_str().unwrap_or_default();
            match self.json.iter_mut().find(|(i, _)| *i == index) {
                Some((_, text)) => text.push_str(fragment),
                None => self.json.push((index, fragment.to_owned())),
            }
            return;
        }
        let Some(block) = self.block(index) else {
            return;
        };
        let append = |block: &mut Value, key: &str, text: &str| {
            let joined = format!("{}{text}", block[key].as_str().unwrap_or_default());
            block[key] = joined.into();
        };
        match delta["type"].as_str() {
            Some("text_delta") => append(block, "text", delta["text"].as_str().unwrap_or_default()),
            Some("thinking_delta") => {
                append(
                    block,
                    "thinking",
                    delta["thinking"].as_str().unwrap_or_default(),
                );
            }
            Some("signature_delta") => {
                block["signature"] = delta["signature"].clone();
            }
            Some("citations_delta") => {
                if !block["citations"].is_array() {
                    block["citations"] = json!([]);
                }
                if let Some(citations) = block["citations"].as_array_mut() {
                    citations.push(delta["citation"].clone());
                }
            }
            _ => {}
        }
    }

    /// The message body.
    #[must_use]
    pub fn finish(self) -> Value {
        Value::Object(self.message)
    }
}

/// This API's `error.type` for an error kind.
#[must_use]
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::Unsupported | ErrorKind::ContextLengthExceeded => {
            "invalid_request_error"
        }
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::RequestTimeout => "timeout_error",
        ErrorKind::ModelNotFound | ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::InsufficientQuota => "billing_error",
        ErrorKind::Internal | ErrorKind::Upstream => "api_error",
    }
}

/// The error body (and the stream's `error` event): `{"type": "error", "error": {...}}`.
#[must_use]
pub fn error_body(error: &Error, request_id: Option<&str>) -> Value {
    let message = if error.kind == ErrorKind::Internal {
        "Internal server error"
    } else {
        error.message.as_str()
    };
    let mut body = json!({"type": "error",
        "error": {"type": error_type(error.kind), "message": message}});
    if let Some(id) = request_id {
        body["request_id"] = id.into();
    }
    body
}
