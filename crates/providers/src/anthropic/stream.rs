//! Anthropic Messages stream events → canonical events: a pure state machine, fed one SSE
//! event (name and JSON data) at a time and tested without sockets.
//!
//! Blocks map by type: `text` → text deltas (its `citations_delta`s become annotations over
//! the block's text), `thinking` → reasoning deltas ended by the block's signature,
//! `redacted_thinking` → an opaque reasoning block, `tool_use` → a tool call whose arguments
//! are the `input_json_delta` fragments (or, for the forced JSON tool, the answer's text).
//! `server_tool_use` (the web search server tool) collects its query, and the
//! `web_search_tool_result` that answers it becomes one `Event::WebSearch` with its pages.
//! `message_delta` carries the stop reason and the output usage (with the searches run);
//! `message_stop` ends it.

use serde_json::Value;
use switchboard_model::{
    Annotation, Error, ErrorKind, Event, Family, FinishReason, Sealed, SearchCall, SearchSource,
    Usage,
};

use super::request::JSON_TOOL;

/// What a content block at an index is.
#[derive(Debug, Clone)]
enum Block {
    Text {
        /// Characters of the answer before this block, and the citations it carries.
        start: u32,
        citations: Vec<(String, String)>,
    },
    Thinking {
        signature: String,
    },
    Call {
        index: u32,
        arguments_sent: bool,
    },
    /// The forced JSON tool's input: the answer's text.
    JsonAnswer,
    /// A web search the server runs: its id and its input's JSON so far.
    Search {
        id: String,
        input: String,
    },
    /// Blocks this decoder has no use for (server tool results…).
    Other,
}

#[derive(Default)]
pub struct MessageDecoder {
    json_through_tool: bool,
    blocks: Vec<(u64, Block)>,
    calls: u32,
    /// Characters of answer text so far (annotation indexes count characters).
    text_chars: u32,
    usage: Usage,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    finished: bool,
    /// Queries of the server's web searches, by their `server_tool_use` id.
    search_queries: Vec<(String, String)>,
}

impl MessageDecoder {
    #[must_use]
    pub fn new(json_through_tool: bool) -> Self {
        Self {
            json_through_tool,
            ..Self::default()
        }
    }

    /// The events one SSE event carries; `Event::Done` after `message_stop`.
    ///
    /// # Errors
    /// An `error` event, or an event that is not what the wire documents.
    pub fn push(&mut self, name: &str, data: &Value) -> Result<Vec<Event>, Error> {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        let mut events = Vec::new();
        match kind.as_str() {
            "message_start" => {
                if let Some(usage) = data.get("message").and_then(|m| m.get("usage")) {
                    self.absorb_usage(usage);
                }
            }
            "content_block_start" => self.block_start(data, &mut events),
            "content_block_delta" => self.block_delta(data, &mut events),
            "content_block_stop" => self.block_stop(data, &mut events),
            "message_delta" => {
                if let Some(delta) = data.get("delta") {
                    if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                        self.stop_reason = Some(reason.to_owned());
                    }
                    if let Some(sequence) = delta.get("stop_sequence").and_then(Value::as_str) {
                        self.stop_sequence = Some(sequence.to_owned());
                    }
                }
                if let Some(usage) = data.get("usage") {
                    self.absorb_usage(usage);
                }
            }
            "message_stop" => {
                events.extend(self.finish());
                events.push(Event::Done);
            }
            "error" => return Err(stream_error(data)),
            // `ping`, and event types added later.
            _ => {}
        }
        Ok(events)
    }

    /// The finish and usage events (once).
    fn finish(&mut self) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let (reason, stop_sequence) = match self.stop_reason.as_deref() {
            Some("max_tokens" | "model_context_window_exceeded") => (FinishReason::Length, None),
            Some("tool_use") if self.json_through_tool => (FinishReason::Stop, None),
            Some("tool_use") => (FinishReason::ToolCalls, None),
            Some("stop_sequence") => (FinishReason::Stop, self.stop_sequence.clone()),
            Some("pause_turn") => (FinishReason::PauseTurn, None),
            Some("refusal") => (FinishReason::Refusal, None),
            _ => (FinishReason::Stop, None),
        };
        vec![
            Event::Finished {
                choice: 0,
                reason,
                stop_sequence,
            },
            Event::Usage(self.usage),
        ]
    }

    /// Usage arrives in `message_start` (input) and `message_delta` (cumulative output, and on
    /// newer servers the input counts again); OpenAI's `prompt_tokens` counts cached tokens
    /// too, so the three input counts are summed.
    fn absorb_usage(&mut self, usage: &Value) {
        let count = |key: &str| {
            usage
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let input = count("input_tokens");
        let read = count("cache_read_input_tokens");
        let write = count("cache_creation_input_tokens");
        if input.is_some() || read.is_some() || write.is_some() {
            let read = read.unwrap_or(self.usage.cached_tokens);
            let write = write.unwrap_or(self.usage.cache_write_tokens);
            let uncached = input.unwrap_or_else(|| {
                self.usage
                    .prompt_tokens
                    .saturating_sub(self.usage.cached_tokens + self.usage.cache_write_tokens)
            });
            self.usage.prompt_tokens = uncached + read + write;
            self.usage.cached_tokens = read;
            self.usage.cache_write_tokens = write;
        }
        if let Some(output) = count("output_tokens") {
            self.usage.completion_tokens = output;
        }
        let searches = usage
            .get("server_tool_use")
            .and_then(|tools| tools.get("web_search_requests"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        if let Some(searches) = searches {
            self.usage.web_search_requests = searches;
        }
    }

    fn block_start(&mut self, data: &Value, events: &mut Vec<Event>) {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let text = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
        let state = match text("type") {
            "text" => {
                let start = self.text_chars;
                self.text(text("text"), events);
                Block::Text {
                    start,
                    citations: Vec::new(),
                }
            }
            "thinking" => {
                if !text("thinking").is_empty() {
                    events.push(Event::ReasoningDelta {
                        choice: 0,
                        text: text("thinking").to_owned(),
                    });
                }
                Block::Thinking {
                    signature: text("signature").to_owned(),
                }
            }
            "redacted_thinking" => {
                events.push(Event::ReasoningEnd {
                    choice: 0,
                    signature: None,
                    encrypted: Some(Sealed::new(Family::Anthropic, text("data"))),
                });
                Block::Other
            }
            "tool_use" if self.json_through_tool && text("name") == JSON_TOOL => Block::JsonAnswer,
            "server_tool_use" if text("name") == "web_search" => Block::Search {
                id: text("id").to_owned(),
                input: block
                    .get("input")
                    .filter(|input| input.as_object().is_some_and(|o| !o.is_empty()))
                    .map(Value::to_string)
                    .unwrap_or_default(),
            },
            "web_search_tool_result" => {
                events.push(Event::WebSearch(self.search_result(block)));
                Block::Other
            }
            "tool_use" => {
                let call = self.calls;
                self.calls += 1;
                events.push(Event::ToolCallStart {
                    choice: 0,
                    index: call,
                    id: text("id").to_owned(),
                    name: text("name").to_owned(),
                });
                Block::Call {
                    index: call,
                    arguments_sent: false,
                }
            }
            _ => Block::Other,
        };
        self.blocks.push((index, state));
    }

    /// A `web_search_tool_result` block: the search its `tool_use_id` names, with the pages it
    /// returned (none when its content is a `web_search_tool_result_error`).
    fn search_result(&self, block: &Value) -> SearchCall {
        let id = block
            .get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let query = self
            .search_queries
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, query)| query.clone())
            .unwrap_or_default();
        let sources = block
            .get("content")
            .and_then(Value::as_array)
            .map(|results| {
                results
                    .iter()
                    .filter(|r| r.get("type").and_then(Value::as_str) == Some("web_search_result"))
                    .filter_map(|r| {
                        let field = |key: &str| r.get(key).and_then(Value::as_str);
                        Some(SearchSource {
                            url: field("url")?.to_owned(),
                            title: field("title").unwrap_or("").to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        SearchCall { query, sources }
    }

    fn block_mut(&mut self, data: &Value) -> Option<&mut Block> {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        self.blocks
            .iter_mut()
            .rev()
            .find(|(at, _)| *at == index)
            .map(|(_, block)| block)
    }

    fn text(&mut self, text: &str, events: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        self.text_chars = self.text_chars.saturating_add(chars);
        events.push(Event::TextDelta {
            choice: 0,
            text: text.to_owned(),
            logprobs: Vec::new(),
        });
    }

    fn block_delta(&mut self, data: &Value, events: &mut Vec<Event>) {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let field = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
        let kind = field("type").to_owned();
        let Some(block) = self.block_mut(data) else {
            return;
        };
        match (kind.as_str(), block) {
            ("text_delta", Block::Text { .. }) => {
                let text = field("text").to_owned();
                self.text(&text, events);
            }
            ("citations_delta", Block::Text { citations, .. }) => {
                let citation = delta.get("citation").unwrap_or(&Value::Null);
                let cited = |key: &str| citation.get(key).and_then(Value::as_str);
                if let Some(url) = cited("url") {
                    citations.push((url.to_owned(), cited("title").unwrap_or("").to_owned()));
                }
            }
            ("thinking_delta", Block::Thinking { .. }) if !field("thinking").is_empty() => {
                events.push(Event::ReasoningDelta {
                    choice: 0,
                    text: field("thinking").to_owned(),
                });
            }
            ("signature_delta", Block::Thinking { signature }) => {
                signature.push_str(field("signature"));
            }
            (
                "input_json_delta",
                Block::Call {
                    index,
                    arguments_sent,
                },
            ) => {
                let fragment = field("partial_json");
                if !fragment.is_empty() {
                    *arguments_sent = true;
                    events.push(Event::ToolCallArguments {
                        choice: 0,
                        index: *index,
                        fragment: fragment.to_owned(),
                    });
                }
            }
            ("input_json_delta", Block::Search { input, .. }) => {
                input.push_str(field("partial_json"));
            }
            ("input_json_delta", Block::JsonAnswer) => {
                let fragment = field("partial_json").to_owned();
                self.text(&fragment, events);
            }
            _ => {}
        }
    }

    fn block_stop(&mut self, data: &Value, events: &mut Vec<Event>) {
        let text_chars = self.text_chars;
        let Some(block) = self.block_mut(data) else {
            return;
        };
        match std::mem::replace(block, Block::Other) {
            Block::Text { start, citations } => {
                for (url, title) in citations {
                    events.push(Event::Annotation {
                        choice: 0,
                        annotation: Annotation::UrlCitation {
                            url,
                            title,
                            start_index: start,
                            end_index: text_chars,
                        },
                    });
                }
            }
            Block::Thinking { signature } => events.push(Event::ReasoningEnd {
                choice: 0,
                signature: (!signature.is_empty())
                    .then(|| Sealed::new(Family::Anthropic, signature)),
                encrypted: None,
            }),
            Block::Search { id, input } => {
                let query = serde_json::from_str::<Value>(&input)
                    .ok()
                    .and_then(|input| {
                        input
                            .get("query")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                self.search_queries.push((id, query));
            }
            // A call without input still has arguments: an empty object.
            Block::Call {
                index,
                arguments_sent: false,
            } => events.push(Event::ToolCallArguments {
                choice: 0,
                index,
                fragment: "{}".to_owned(),
            }),
            _ => {}
        }
    }
}

/// An `error` event: overloaded and rate-limited streams may be retried (when nothing went to
/// the client yet); anything else is the upstream's failure.
fn stream_error(data: &Value) -> Error {
    let error = data.get("error").unwrap_or(data);
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the upstream reported an error in its stream");
    let error = Error::new(
        ErrorKind::Upstream,
        format!("The upstream failed mid-stream ({kind}): {message}"),
    );
    match kind {
        "overloaded_error" | "rate_limit_error" | "api_error" => error.retryable(None),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn run(decoder: &mut MessageDecoder, events: &[Value]) -> Vec<Event> {
        let mut out = Vec::new();
        for event in events {
            let name = event["type"].as_str().unwrap();
            out.extend(decoder.push(name, event).unwrap());
        }
        out
    }

    #[test]
    fn thinking_text_and_a_tool_call() {
        let mut decoder = MessageDecoder::new(false);
        let events = run(
            &mut decoder,
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                    "role": "assistant", "content": [], "model": "claude", "stop_reason": null,
                    "stop_sequence": null, "usage": {"input_tokens": 10, "cache_read_input_tokens": 5,
                    "cache_creation_input_tokens": 2, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Need weather."}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQB"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "ping"}),
                json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "text_delta", "text": "Checking."}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block":
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": ""}}),
                json!({"type": "content_block_delta", "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo\"}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                    "stop_sequence": null}, "usage": {"output_tokens": 42}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(
            events,
            vec![
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Need weather.".into()
                },
                Event::ReasoningEnd {
                    choice: 0,
                    signature: Some(Sealed::new(Family::Anthropic, "EqQB")),
                    encrypted: None
                },
                Event::TextDelta {
                    choice: 0,
                    text: "Checking.".into(),
                    logprobs: vec![]
                },
                Event::ToolCallStart {
                    choice: 0,
                    index: 0,
                    id: "toolu_1".into(),
                    name: "weather".into()
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "{\"city\": \"Oslo\"}".into()
                },
                Event::Finished {
                    choice: 0,
                    reason: FinishReason::ToolCalls,
                    stop_sequence: None
                },
                Event::Usage(Usage {
                    prompt_tokens: 17,
                    completion_tokens: 42,
                    cached_tokens: 5,
                    cache_write_tokens: 2,
                    reasoning_tokens: 0,
                    web_search_requests: 0,
                }),
                Event::Done,
            ]
        );
    }

    /// The web search server tool as Anthropic streams it: the query as input JSON, the result
    /// block whole, then cited text blocks; the usage counts the searches.
    #[test]
    fn server_web_searches_become_search_events() {
        let mut decoder = MessageDecoder::new(false);
        let events = run(
            &mut decoder,
            &[
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"zorb"}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "lat\"}"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block":
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                        {"type": "web_search_result", "url": "https://z.example/a", "title": "A",
                         "encrypted_content": "E1", "page_age": "May 1, 2031"},
                        {"type": "web_search_result", "url": "https://z.example/b", "title": "B",
                         "encrypted_content": "E2"}]}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2,
                    "content_block": {"type": "text", "text": "", "citations": []}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta",
                    "citation": {"type": "web_search_result_location", "url": "https://z.example/a",
                    "title": "A", "cited_text": "founded 2031", "encrypted_index": "I"}}}),
                json!({"type": "content_block_delta", "index": 2,
                    "delta": {"type": "text_delta", "text": "Founded in 2031."}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 20, "server_tool_use": {"web_search_requests": 1}}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(
            events[0],
            Event::WebSearch(SearchCall {
                query: "zorblat".into(),
                sources: vec![
                    SearchSource {
                        url: "https://z.example/a".into(),
                        title: "A".into()
                    },
                    SearchSource {
                        url: "https://z.example/b".into(),
                        title: "B".into()
                    },
                ],
            })
        );
        assert!(matches!(&events[1], Event::TextDelta { text, .. } if text == "Founded in 2031."));
        assert_eq!(
            events[2],
            Event::Annotation {
                choice: 0,
                annotation: Annotation::UrlCitation {
                    url: "https://z.example/a".into(),
                    title: "A".into(),
                    start_index: 0,
                    end_index: 16
                }
            }
        );
        let Some(Event::Usage(usage)) = events.iter().find(|e| matches!(e, Event::Usage(_))) else {
            panic!("no usage: {events:?}");
        };
        assert_eq!(usage.web_search_requests, 1);
        // A failed search still shows, with no pages.
        let mut failed = MessageDecoder::new(false);
        let events = run(
            &mut failed,
            &[
                json!({"type": "content_block_start", "index": 0, "content_block":
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_9", "content":
                    {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}}}),
            ],
        );
        assert_eq!(
            events,
            [Event::WebSearch(SearchCall {
                query: String::new(),
                sources: vec![]
            })]
        );
    }

    #[test]
    fn stop_sequences_refusals_redactions_and_citations() {
        let mut decoder = MessageDecoder::new(false);
        let events = run(
            &mut decoder,
            &[
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 0}}}),
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "redacted_thinking", "data": "ENC"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "text", "text": "Héllo "}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta",
                    "citation": {"type": "web_search_result_location", "url": "https://e.x/a",
                    "title": "A", "cited_text": "…", "encrypted_index": "x"}}}),
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "text_delta", "text": "world"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
                    "stop_sequence": "END"}, "usage": {"output_tokens": 2}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(
            events[0],
            Event::ReasoningEnd {
                choice: 0,
                signature: None,
                encrypted: Some(Sealed::new(Family::Anthropic, "ENC"))
            }
        );
        assert_eq!(
            events[3],
            Event::Annotation {
                choice: 0,
                annotation: Annotation::UrlCitation {
                    url: "https://e.x/a".into(),
                    title: "A".into(),
                    start_index: 0,
                    end_index: 11
                }
            }
        );
        assert_eq!(
            events[4],
            Event::Finished {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: Some("END".into())
            }
        );
        let mut refused = MessageDecoder::new(false);
        let events = run(
            &mut refused,
            &[
                json!({"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 0}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert!(matches!(
            events[0],
            Event::Finished {
                reason: FinishReason::Refusal,
                ..
            }
        ));
    }

    #[test]
    fn the_forced_json_tool_is_the_answer_text() {
        let mut decoder = MessageDecoder::new(true);
        let events = run(
            &mut decoder,
            &[
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(
            events[0],
            Event::TextDelta {
                choice: 0,
                text: "{\"a\": 1}".into(),
                logprobs: vec![]
            }
        );
        assert!(matches!(
            events[1],
            Event::Finished {
                reason: FinishReason::Stop,
                ..
            }
        ));
    }

    #[test]
    fn error_events_fail_the_stream() {
        let mut decoder = MessageDecoder::new(false);
        let error = decoder
            .push(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Upstream);
        assert!(error.retryable);
        assert!(error.message.contains("Overloaded"));
    }
}
