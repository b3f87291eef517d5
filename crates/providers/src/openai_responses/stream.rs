//! OpenAI Responses stream events → canonical events: a pure state machine, fed one SSE event
//! at a time and tested without sockets.
//!
//! Output items map by type: a `message`'s `output_text` deltas are text (its
//! `annotation.added` citations become annotations, their indexes moved from the part's text to
//! the whole answer's), `refusal` deltas a refusal; a `reasoning` item's summary and text
//! deltas are reasoning, ended by the item with its `encrypted_content`; a `function_call` is a
//! tool call whose arguments are its deltas; a `web_search_call` is an `Event::WebSearch` with
//! its query and sources when it is done. `response.completed` or `response.incomplete` ends
//! the answer with its usage; `response.failed` and `error` are failures.

use std::collections::HashMap;

use serde_json::Value;
use switchboard_model::{
    Annotation, Error, ErrorKind, Event, Family, FinishReason, Sealed, SearchCall, SearchSource,
    Usage,
};

#[derive(Default)]
pub struct ResponseDecoder {
    /// Function calls by item id: their index among the answer's calls, whether any argument
    /// delta came.
    calls: HashMap<String, (u32, bool)>,
    next_call: u32,
    /// Characters of answer text so far, and where each message item's text started.
    text_chars: u32,
    message_starts: HashMap<String, u32>,
    /// Reasoning items with text streamed (their end is announced when the item is done).
    reasoning_open: bool,
    searches: u32,
    finished: bool,
}

impl ResponseDecoder {
    /// The events one SSE event carries; `Event::Done` after the response ends.
    ///
    /// # Errors
    /// A failed response, an `error` event.
    pub fn push(&mut self, data: &Value) -> Result<Vec<Event>, Error> {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
        let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or("");
        let mut events = Vec::new();
        match kind {
            "response.output_item.added" => self.item_added(data.get("item"), &mut events),
            "response.output_text.delta" => {
                let delta = text("delta");
                if !delta.is_empty() {
                    self.message_starts
                        .entry(text("item_id").to_owned())
                        .or_insert(self.text_chars);
                    self.text_chars = self
                        .text_chars
                        .saturating_add(u32::try_from(delta.chars().count()).unwrap_or(u32::MAX));
                    events.push(Event::TextDelta {
                        choice: 0,
                        text: delta.to_owned(),
                        logprobs: Vec::new(),
                    });
                }
            }
            "response.output_text.annotation.added" => {
                let start = self
                    .message_starts
                    .get(text("item_id"))
                    .copied()
                    .unwrap_or(0);
                if let Some(annotation) = data.get("annotation").and_then(|a| citation(a, start)) {
                    events.push(Event::Annotation {
                        choice: 0,
                        annotation,
                    });
                }
            }
            "response.refusal.delta" if !text("delta").is_empty() => {
                events.push(Event::RefusalDelta {
                    choice: 0,
                    text: text("delta").to_owned(),
                });
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta"
                if !text("delta").is_empty() =>
            {
                self.reasoning_open = true;
                events.push(Event::ReasoningDelta {
                    choice: 0,
                    text: text("delta").to_owned(),
                });
            }
            "response.function_call_arguments.delta" => {
                if let Some((index, sent)) = self.calls.get_mut(text("item_id")) {
                    if !text("delta").is_empty() {
                        *sent = true;
                        events.push(Event::ToolCallArguments {
                            choice: 0,
                            index: *index,
                            fragment: text("delta").to_owned(),
                        });
                    }
                }
            }
            "response.output_item.done" => self.item_done(data.get("item"), &mut events),
            "response.completed" | "response.incomplete" if !self.finished => {
                self.finished = true;
                let response = data.get("response").unwrap_or(&Value::Null);
                events.push(Event::Finished {
                    choice: 0,
                    reason: self.finish_reason(response),
                    stop_sequence: None,
                });
                events.push(Event::Usage(self.usage(response)));
                events.push(Event::Done);
            }
            "response.failed" => {
                let error = data
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .unwrap_or(&Value::Null);
                return Err(failure(error));
            }
            "error" => return Err(failure(data.get("error").unwrap_or(data))),
            // created, in_progress, content parts, the `.done` repeats, search progress.
            _ => {}
        }
        Ok(events)
    }

    fn item_added(&mut self, item: Option<&Value>, events: &mut Vec<Event>) {
        let Some(item) = item else { return };
        let field = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
        if field("type") == "function_call" {
            let index = self.next_call;
            self.next_call += 1;
            self.calls.insert(field("id").to_owned(), (index, false));
            events.push(Event::ToolCallStart {
                choice: 0,
                index,
                id: field("call_id").to_owned(),
                name: field("name").to_owned(),
            });
        }
    }

    fn item_done(&mut self, item: Option<&Value>, events: &mut Vec<Event>) {
        let Some(item) = item else { return };
        let field = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "function_call" => {
                if let Some((index, false)) = self.calls.get(field("id")).copied() {
                    let arguments = match field("arguments") {
                        "" => "{}",
                        whole => whole,
                    };
                    events.push(Event::ToolCallArguments {
                        choice: 0,
                        index,
                        fragment: arguments.to_owned(),
                    });
                }
            }
            "reasoning" => {
                // The item's id travels with its content: the API wants both back.
                let encrypted = item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .map(|e| Sealed::new(Family::OpenAi, super::seal_reasoning(field("id"), e)));
                if self.reasoning_open || encrypted.is_some() {
                    self.reasoning_open = false;
                    events.push(Event::ReasoningEnd {
                        choice: 0,
                        signature: None,
                        encrypted,
                    });
                }
            }
            "web_search_call" => {
                self.searches += 1;
                let action = item.get("action").unwrap_or(&Value::Null);
                let query = action
                    .get("query")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        action
                            .get("queries")
                            .and_then(Value::as_array)
                            .and_then(|q| q.first())
                            .and_then(Value::as_str)
                    })
                    .unwrap_or("");
                let sources = action
                    .get("sources")
                    .and_then(Value::as_array)
                    .map(|sources| {
                        sources
                            .iter()
                            .filter_map(|s| s.get("url").and_then(Value::as_str))
                            .map(|url| SearchSource {
                                url: url.to_owned(),
                                title: url.to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                events.push(Event::WebSearch(SearchCall {
                    query: query.to_owned(),
                    sources,
                }));
            }
            _ => {}
        }
    }

    fn finish_reason(&self, response: &Value) -> FinishReason {
        let incomplete = response
            .get("incomplete_details")
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str);
        match incomplete {
            Some("max_output_tokens") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            _ if self.next_call > 0 => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }

    fn usage(&self, response: &Value) -> Usage {
        let usage = response.get("usage").unwrap_or(&Value::Null);
        let count = |path: &[&str]| crate::openai::stream::count(usage, path);
        Usage {
            prompt_tokens: count(&["input_tokens"]),
            completion_tokens: count(&["output_tokens"]),
            cached_tokens: count(&["input_tokens_details", "cached_tokens"]),
            cache_write_tokens: 0,
            reasoning_tokens: count(&["output_tokens_details", "reasoning_tokens"]),
            web_search_requests: self.searches,
        }
    }

    /// Whether the response ended (`response.completed` or `.incomplete`).
    #[must_use]
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// A `url_citation` annotation, its indexes moved by `start` from the part's text to the
/// answer's.
fn citation(annotation: &Value, start: u32) -> Option<Annotation> {
    if annotation.get("type").and_then(Value::as_str) != Some("url_citation") {
        return None;
    }
    let index = |key: &str| {
        annotation
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    Some(Annotation::UrlCitation {
        url: annotation.get("url")?.as_str()?.to_owned(),
        title: annotation
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        start_index: start.saturating_add(index("start_index")?),
        end_index: start.saturating_add(index("end_index")?),
    })
}

fn failure(error: &Value) -> Error {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the upstream reported an error in its stream");
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    let error = Error::new(
        ErrorKind::Upstream,
        format!("The upstream failed mid-stream: {message}"),
    );
    match code {
        "rate_limit_exceeded" | "server_error" | "server_is_overloaded" => error.retryable(None),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn run(decoder: &mut ResponseDecoder, events: &[Value]) -> Vec<Event> {
        events
            .iter()
            .flat_map(|event| decoder.push(event).unwrap())
            .collect()
    }

    /// A search, encrypted reasoning, a cited answer over two messages, as OpenAI streams
    /// them: every event canonical, citation indexes counted over the whole answer.
    #[test]
    fn searches_reasoning_and_citations() {
        let mut decoder = ResponseDecoder::default();
        let events = run(
            &mut decoder,
            &[
                json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}}),
                json!({"type": "response.output_item.added", "output_index": 0,
                       "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
                json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "delta": "Search first."}),
                json!({"type": "response.output_item.done", "output_index": 0,
                       "item": {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA"}}),
                json!({"type": "response.output_item.added", "output_index": 1,
                       "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"}}),
                json!({"type": "response.web_search_call.completed", "output_index": 1, "item_id": "ws_1"}),
                json!({"type": "response.output_item.done", "output_index": 1,
                       "item": {"type": "web_search_call", "id": "ws_1", "status": "completed",
                                "action": {"type": "search", "query": "zorblat",
                                           "sources": [{"type": "url", "url": "https://z.example/a"}]}}}),
                json!({"type": "response.output_item.added", "output_index": 2,
                       "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
                json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Café. "}),
                json!({"type": "response.output_item.added", "output_index": 3,
                       "item": {"type": "message", "id": "msg_2", "role": "assistant", "content": []}}),
                json!({"type": "response.output_text.delta", "item_id": "msg_2", "delta": "Founded 2031."}),
                json!({"type": "response.output_text.annotation.added", "item_id": "msg_2",
                       "annotation": {"type": "url_citation", "url": "https://z.example/a", "title": "A",
                                      "start_index": 0, "end_index": 13}}),
                json!({"type": "response.completed", "response": {"status": "completed",
                       "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4},
                                 "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 3}}}}),
            ],
        );
        assert_eq!(
            events,
            vec![
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Search first.".into()
                },
                Event::ReasoningEnd {
                    choice: 0,
                    signature: None,
                    encrypted: Some(Sealed::new(Family::OpenAi, "rs_1:gAAAA")),
                },
                Event::WebSearch(SearchCall {
                    query: "zorblat".into(),
                    sources: vec![SearchSource {
                        url: "https://z.example/a".into(),
                        title: "https://z.example/a".into()
                    }],
                }),
                Event::TextDelta {
                    choice: 0,
                    text: "Café. ".into(),
                    logprobs: vec![]
                },
                Event::TextDelta {
                    choice: 0,
                    text: "Founded 2031.".into(),
                    logprobs: vec![]
                },
                Event::Annotation {
                    choice: 0,
                    annotation: Annotation::UrlCitation {
                        url: "https://z.example/a".into(),
                        title: "A".into(),
                        start_index: 6,
                        end_index: 19
                    }
                },
                Event::Finished {
                    choice: 0,
                    reason: FinishReason::Stop,
                    stop_sequence: None
                },
                Event::Usage(Usage {
                    prompt_tokens: 20,
                    completion_tokens: 9,
                    cached_tokens: 4,
                    cache_write_tokens: 0,
                    reasoning_tokens: 3,
                    web_search_requests: 1,
                }),
                Event::Done,
            ]
        );
    }

    #[test]
    fn calls_limits_and_failures() {
        let mut decoder = ResponseDecoder::default();
        let events = run(
            &mut decoder,
            &[
                json!({"type": "response.output_item.added",
                       "item": {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather", "arguments": ""}}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{\"city\":"}),
                json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "\"Oslo\"}"}),
                json!({"type": "response.output_item.done",
                       "item": {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather",
                                "arguments": "{\"city\":\"Oslo\"}"}}),
                json!({"type": "response.output_item.added",
                       "item": {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "time", "arguments": ""}}),
                json!({"type": "response.output_item.done",
                       "item": {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "time", "arguments": ""}}),
                json!({"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 2}}}),
            ],
        );
        assert_eq!(
            events[0],
            Event::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_a".into(),
                name: "weather".into()
            }
        );
        assert_eq!(
            events[3],
            Event::ToolCallStart {
                choice: 0,
                index: 1,
                id: "call_b".into(),
                name: "time".into()
            }
        );
        assert_eq!(
            events[4],
            Event::ToolCallArguments {
                choice: 0,
                index: 1,
                fragment: "{}".into()
            }
        );
        assert_eq!(
            events[5],
            Event::Finished {
                choice: 0,
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            }
        );

        let mut cut = ResponseDecoder::default();
        let events = run(
            &mut cut,
            &[json!({"type": "response.incomplete",
                     "response": {"incomplete_details": {"reason": "max_output_tokens"}}})],
        );
        assert_eq!(
            events[0],
            Event::Finished {
                choice: 0,
                reason: FinishReason::Length,
                stop_sequence: None
            }
        );
        let failed = ResponseDecoder::default()
            .push(&json!({"type": "response.failed",
                          "response": {"error": {"code": "server_error", "message": "boom"}}}))
            .unwrap_err();
        assert!(failed.retryable && failed.message.contains("boom"));
    }
}
