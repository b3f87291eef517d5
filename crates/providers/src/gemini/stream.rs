//! Gemini stream chunks → canonical events: a pure state machine, fed one
//! `GenerateContentResponse` at a time and tested without sockets.
//!
//! Each chunk holds new parts per candidate. Thought parts (`thought: true`) are reasoning;
//! a thought signature on a thought part ends that reasoning block; a signature on an answer
//! part is announced just before the part (see `request.rs` for the way back); a signature on
//! a `functionCall` part belongs to that call. The stream has no end marker: the body ends
//! after the chunk whose candidates all carry a `finishReason`; usage is the last chunk's.
//!
//! Grounding with Google Search reports, with a candidate's last chunk, the queries it ran, the
//! pages (`groundingChunks`) and which segments of the answer each supports
//! (`groundingSupports`): those become annotations over the cited segments, then one
//! `Event::WebSearch`, just before the candidate finishes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchboard_model::{
    Annotation, Error, ErrorKind, Event, Family, FinishReason, Sealed, SearchCall, SearchSource,
    Usage,
};

use super::request::SYNTHETIC_CALL_PREFIX;

#[derive(Default)]
pub struct ContentDecoder {
    /// Choices the request asked for (`candidateCount`).
    choices: u32,
    /// Per candidate: tool calls made so far.
    calls: BTreeMap<u32, u32>,
    finished: BTreeSet<u32>,
    usage: Usage,
    calls_made: u32,
    /// Whether the request asked for grounding with Google Search (only then is the answer's
    /// text kept, to locate the grounding's segments in).
    grounding_asked: bool,
    /// Per candidate: the answer's text so far (grounding segments are located in it), and
    /// the latest grounding metadata.
    texts: BTreeMap<u32, String>,
    grounding: BTreeMap<u32, Value>,
    /// Searches Google ran, over all candidates.
    searches: u32,
}

impl ContentDecoder {
    /// A decoder for `choices` candidates; `grounding_asked` when the request asked for
    /// Google Search.
    #[must_use]
    pub fn new(choices: u32, grounding_asked: bool) -> Self {
        Self {
            choices: choices.max(1),
            grounding_asked,
            ..Self::default()
        }
    }

    /// The events one chunk carries.
    ///
    /// # Errors
    /// An error object in the stream, or a candidate Gemini ended with a malformed call.
    pub fn push(&mut self, chunk: &Value) -> Result<Vec<Event>, Error> {
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream reported an error in its stream");
            let status = error.get("status").and_then(Value::as_str).unwrap_or("");
            let error = Error::new(
                ErrorKind::Upstream,
                format!("The upstream failed mid-stream ({status}): {message}"),
            );
            return Err(match status {
                "UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "INTERNAL" | "DEADLINE_EXCEEDED" => {
                    error.retryable(None)
                }
                _ => error,
            });
        }
        let mut events = Vec::new();
        if let Some(usage) = chunk.get("usageMetadata") {
            self.usage = usage_of(usage);
        }
        let candidates = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if candidates.is_empty() {
            // A blocked prompt has no candidates at all.
            if chunk
                .get("promptFeedback")
                .and_then(|f| f.get("blockReason"))
                .is_some()
            {
                for choice in 0..self.choices {
                    self.finish(choice, FinishReason::ContentFilter, &mut events);
                }
            }
            return Ok(events);
        }
        for candidate in candidates {
            #[allow(clippy::cast_possible_truncation)]
            let choice = candidate.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
            let parts = candidate
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            for part in parts {
                self.part(choice, part, &mut events);
            }
            if let Some(metadata) = candidate.get("groundingMetadata") {
                self.grounding.insert(choice, metadata.clone());
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                let reason = match reason {
                    "STOP" if self.calls.get(&choice).is_some_and(|n| *n > 0) => {
                        FinishReason::ToolCalls
                    }
                    "MAX_TOKENS" => FinishReason::Length,
                    "SAFETY"
                    | "RECITATION"
                    | "BLOCKLIST"
                    | "PROHIBITED_CONTENT"
                    | "SPII"
                    | "IMAGE_SAFETY"
                    | "IMAGE_PROHIBITED_CONTENT"
                    | "IMAGE_RECITATION" => FinishReason::ContentFilter,
                    "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
                        return Err(Error::new(
                            ErrorKind::Upstream,
                            format!("The upstream model ended its answer with {reason}."),
                        ));
                    }
                    _ => FinishReason::Stop,
                };
                self.finish(choice, reason, &mut events);
            }
        }
        Ok(events)
    }

    fn finish(&mut self, choice: u32, reason: FinishReason, events: &mut Vec<Event>) {
        if !self.finished.contains(&choice) {
            if let Some(metadata) = self.grounding.remove(&choice) {
                self.grounded(choice, &metadata, events);
            }
        }
        if self.finished.insert(choice) {
            events.push(Event::Finished {
                choice,
                reason,
                stop_sequence: None,
            });
        }
    }

    fn part(&mut self, choice: u32, part: &Value, events: &mut Vec<Event>) {
        let signature = part
            .get("thoughtSignature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| Sealed::new(Family::Gemini, s));
        let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
        if let Some(call) = part.get("functionCall") {
            let index = *self.calls.entry(choice).or_default();
            self.calls.insert(choice, index + 1);
            self.calls_made += 1;
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map_or_else(
                    || format!("{SYNTHETIC_CALL_PREFIX}{choice}_{}", self.calls_made),
                    str::to_owned,
                );
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = call
                .get("args")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            events.push(Event::ToolCallStart {
                choice,
                index,
                id,
                name: name.to_owned(),
            });
            events.push(Event::ToolCallArguments {
                choice,
                index,
                fragment: args.to_string(),
            });
            if let Some(signature) = signature {
                events.push(Event::ToolCallSignature {
                    choice,
                    index,
                    signature,
                });
            }
            return;
        }
        let Some(text) = part.get("text").and_then(Value::as_str) else {
            return;
        };
        if thought {
            if !text.is_empty() {
                events.push(Event::ReasoningDelta {
                    choice,
                    text: text.to_owned(),
                });
            }
            if signature.is_some() {
                events.push(Event::ReasoningEnd {
                    choice,
                    signature,
                    encrypted: None,
                });
            }
            return;
        }
        if signature.is_some() {
            events.push(Event::ReasoningEnd {
                choice,
                signature,
                encrypted: None,
            });
        }
        if !text.is_empty() {
            if self.grounding_asked {
                self.texts.entry(choice).or_default().push_str(text);
            }
            events.push(Event::TextDelta {
                choice,
                text: text.to_owned(),
                logprobs: Vec::new(),
            });
        }
    }

    /// A candidate's grounding: an annotation per page each supported segment cites, located
    /// by the segment's text (its byte offsets count within a part, and a streamed answer's
    /// parts arrive in pieces), then the search itself.
    fn grounded(&mut self, choice: u32, metadata: &Value, events: &mut Vec<Event>) {
        let list = |key: &str| {
            metadata
                .get(key)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
        };
        let pages: Vec<Option<SearchSource>> = list("groundingChunks")
            .iter()
            .map(|chunk| {
                let web = chunk.get("web")?;
                Some(SearchSource {
                    url: web.get("uri")?.as_str()?.to_owned(),
                    title: web
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                })
            })
            .collect();
        let text = self.texts.get(&choice).map_or("", String::as_str);
        for support in list("groundingSupports") {
            let segment = support.get("segment").unwrap_or(&Value::Null);
            let Some((start, end)) = locate_segment(text, segment) else {
                continue;
            };
            let cited = support
                .get("groundingChunkIndices")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            for index in cited.iter().filter_map(Value::as_u64) {
                let page = usize::try_from(index).ok().and_then(|i| pages.get(i));
                if let Some(Some(page)) = page {
                    events.push(Event::Annotation {
                        choice,
                        annotation: Annotation::UrlCitation {
                            url: page.url.clone(),
                            title: page.title.clone(),
                            start_index: start,
                            end_index: end,
                        },
                    });
                }
            }
        }
        let queries: Vec<&str> = list("webSearchQueries")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let count = u32::try_from(queries.len()).unwrap_or(u32::MAX);
        self.searches = self.searches.saturating_add(count);
        if !queries.is_empty() || pages.iter().any(Option::is_some) {
            events.push(Event::WebSearch(SearchCall {
                query: queries.join(" / "),
                sources: pages.into_iter().flatten().collect(),
            }));
        }
    }

    /// The body ended: complete when every choice finished.
    ///
    /// # Errors
    /// When some choice never finished.
    pub fn end(&mut self) -> Result<Vec<Event>, Error> {
        if (0..self.choices).any(|choice| !self.finished.contains(&choice)) {
            return Err(Error::new(
                ErrorKind::Upstream,
                "The upstream closed the stream before it finished.",
            ));
        }
        let mut usage = self.usage;
        usage.web_search_requests = self.searches;
        Ok(vec![Event::Usage(usage), Event::Done])
    }
}

/// A grounding segment's place in the answer, in characters: where its `text` occurs, the
/// occurrence nearest its byte offset (offsets count within a part, not the whole answer);
/// without text, the byte offsets themselves when they fall on character boundaries.
fn locate_segment(answer: &str, segment: &Value) -> Option<(u32, u32)> {
    let offset = |key: &str| {
        segment
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let hint = offset("startIndex").unwrap_or(0);
    let (start, end) = match segment.get("text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => {
            let start = answer
                .match_indices(text)
                .map(|(at, _)| at)
                .min_by_key(|at| at.abs_diff(hint))?;
            (start, start + text.len())
        }
        _ => {
            let end = offset("endIndex")?;
            if hint >= end || !answer.is_char_boundary(hint) || !answer.is_char_boundary(end) {
                return None;
            }
            (hint, end)
        }
    };
    let chars = |bytes: usize| u32::try_from(answer[..bytes].chars().count()).ok();
    Some((chars(start)?, chars(end)?))
}

/// `candidatesTokenCount` leaves thoughts out; OpenAI's `completion_tokens` counts them.
fn usage_of(usage: &Value) -> Usage {
    let count = |key: &str| {
        usage
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    let thoughts = count("thoughtsTokenCount");
    Usage {
        prompt_tokens: count("promptTokenCount") + count("toolUsePromptTokenCount"),
        completion_tokens: count("candidatesTokenCount") + thoughts,
        cached_tokens: count("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
        // The searches come from the grounding ([`ContentDecoder`] counts them).
        web_search_requests: 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    /// Grounding arrives with the last chunk; its segments are found in the streamed answer
    /// (multi-byte text before them, offsets counted within a part) and cite their pages.
    #[test]
    fn google_search_grounding_becomes_citations_and_a_search() {
        let mut decoder = ContentDecoder::new(1, true);
        let mut events = Vec::new();
        for chunk in [
            json!({"candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"text": "Café notes. Zorblat was "}]}}]}),
            json!({"candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"text": "founded in 2031."}]}, "finishReason": "STOP",
                "groundingMetadata": {
                    "webSearchQueries": ["zorblat founding year"],
                    "groundingChunks": [
                        {"web": {"uri": "https://vertexaisearch.example/r/1", "title": "zorblat.example"}},
                        {"web": {"uri": "https://vertexaisearch.example/r/2", "title": "wiki.example"}}],
                    "groundingSupports": [
                        {"segment": {"startIndex": 0, "endIndex": 28, "text": "Zorblat was founded in 2031."},
                         "groundingChunkIndices": [0, 1]},
                        {"segment": {"startIndex": 0, "endIndex": 9, "text": "not there"},
                         "groundingChunkIndices": [0]}]}}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9}}),
        ] {
            events.extend(decoder.push(&chunk).unwrap());
        }
        events.extend(decoder.end().unwrap());
        let citation = |n: u32, title: &str| Event::Annotation {
            choice: 0,
            annotation: Annotation::UrlCitation {
                url: format!("https://vertexaisearch.example/r/{n}"),
                title: title.into(),
                start_index: 12,
                end_index: 40,
            },
        };
        assert_eq!(events[2], citation(1, "zorblat.example"));
        assert_eq!(events[3], citation(2, "wiki.example"));
        assert_eq!(
            events[4],
            Event::WebSearch(SearchCall {
                query: "zorblat founding year".into(),
                sources: vec![
                    SearchSource {
                        url: "https://vertexaisearch.example/r/1".into(),
                        title: "zorblat.example".into()
                    },
                    SearchSource {
                        url: "https://vertexaisearch.example/r/2".into(),
                        title: "wiki.example".into()
                    },
                ],
            })
        );
        assert!(matches!(events[5], Event::Finished { .. }));
        let Event::Usage(usage) = events[6] else {
            panic!("{events:?}");
        };
        assert_eq!(usage.web_search_requests, 1);
    }

    #[test]
    fn thoughts_calls_signatures_and_usage() {
        let mut decoder = ContentDecoder::new(1, false);
        let mut events = Vec::new();
        for chunk in [
            json!({"candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"text": "Planning the call.", "thought": true}]}}]}),
            json!({"candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "CiIB"},
                {"functionCall": {"id": "fc-2", "name": "time", "args": {}}}]},
                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7,
                    "thoughtsTokenCount": 150, "cachedContentTokenCount": 4, "totalTokenCount": 169}}),
        ] {
            events.extend(decoder.push(&chunk).unwrap());
        }
        events.extend(decoder.end().unwrap());
        assert_eq!(
            events,
            vec![
                Event::ReasoningDelta {
                    choice: 0,
                    text: "Planning the call.".into()
                },
                Event::ToolCallStart {
                    choice: 0,
                    index: 0,
                    id: "call_gm_0_1".into(),
                    name: "weather".into()
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 0,
                    fragment: "{\"city\":\"Oslo\"}".into()
                },
                Event::ToolCallSignature {
                    choice: 0,
                    index: 0,
                    signature: Sealed::new(Family::Gemini, "CiIB")
                },
                Event::ToolCallStart {
                    choice: 0,
                    index: 1,
                    id: "fc-2".into(),
                    name: "time".into()
                },
                Event::ToolCallArguments {
                    choice: 0,
                    index: 1,
                    fragment: "{}".into()
                },
                Event::Finished {
                    choice: 0,
                    reason: FinishReason::ToolCalls,
                    stop_sequence: None
                },
                Event::Usage(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 157,
                    cached_tokens: 4,
                    cache_write_tokens: 0,
                    reasoning_tokens: 150,
                    web_search_requests: 0,
                }),
                Event::Done,
            ]
        );
    }

    #[test]
    fn answer_signatures_safety_blocks_and_errors() {
        let mut decoder = ContentDecoder::new(2, false);
        let events = decoder
            .push(&json!({"candidates": [
                {"index": 0, "content": {"parts": [{"text": "Hi", "thoughtSignature": "sig"}]}, "finishReason": "STOP"},
                {"index": 1, "content": {"parts": []}, "finishReason": "SAFETY"}]}))
            .unwrap();
        assert_eq!(
            events[0],
            Event::ReasoningEnd {
                choice: 0,
                signature: Some(Sealed::new(Family::Gemini, "sig")),
                encrypted: None
            }
        );
        assert!(matches!(
            events[3],
            Event::Finished {
                choice: 1,
                reason: FinishReason::ContentFilter,
                ..
            }
        ));
        assert!(decoder.end().is_ok());

        let mut blocked = ContentDecoder::new(1, false);
        let events = blocked
            .push(&json!({"promptFeedback": {"blockReason": "SAFETY"}}))
            .unwrap();
        assert!(matches!(
            events[0],
            Event::Finished {
                reason: FinishReason::ContentFilter,
                ..
            }
        ));

        let mut unfinished = ContentDecoder::new(1, false);
        unfinished
            .push(&json!({"candidates": [{"index": 0, "content": {"parts": [{"text": "cut"}]}}]}))
            .unwrap();
        assert!(unfinished.end().is_err());
        let error = ContentDecoder::new(1, false)
            .push(
                &json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
            )
            .unwrap_err();
        assert!(error.retryable);
    }
}
