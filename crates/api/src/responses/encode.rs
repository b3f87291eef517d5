//! The `response` object and [`ResponseEncoder`], a pure state machine that turns canonical
//! events into the Responses API's semantic stream events while it builds the `response`
//! object itself.
//!
//! Output items are typed by the order of events: text opens a `message` item (one
//! `output_text` part), reasoning text a `reasoning` item, each tool call a `function_call`
//! item; a new kind of event closes the open item. Every item has its own id. A non-streaming
//! request runs the same encoder and returns its final object, so streamed and non-streamed
//! responses cannot disagree. It does not frame SSE (see [`crate::sse::event_frame`]).

use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_model::{
    Annotation, Event, FinishReason, OutputFormat, Request, Sealed, SearchCall, TokenLogprob, Tool,
    ToolChoice, Usage, WebSearch,
};

use crate::sealed::Envelope;

use super::decode::ResponsesRequest;
use super::items::{
    ItemContent, LogProb, ReasoningText, StoredItem, TopLogProb, UrlSource, WebSearchAction,
};

/// The `response` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub completed_at: Option<u64>,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub model: String,
    pub output: Vec<StoredItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub reasoning: ReasoningSettings,
    pub store: bool,
    pub background: bool,
    pub temperature: f32,
    pub top_p: f32,
    pub top_logprobs: u8,
    pub text: TextSettings,
    pub tool_choice: ToolChoiceEcho,
    pub tools: Vec<ToolEcho>,
    pub truncation: &'static str,
    pub max_output_tokens: Option<u32>,
    pub max_tool_calls: Option<u32>,
    pub service_tier: &'static str,
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResponseUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
}

impl ResponseObject {
    /// The response as its client may see it: reasoning items' `encrypted_content` and web
    /// search calls' sources only when the client asked for them with `include` (the store
    /// keeps them for continued conversations either way).
    #[must_use]
    pub fn shown(&self, shown: Shown) -> Self {
        let mut response = self.clone();
        shown.apply_to_response(&mut response);
        response
    }

    /// The concatenated text of every `output_text` part, as the SDKs' `output_text` property.
    #[must_use]
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for item in &self.output {
            if let StoredItem::Message { content, .. } = item {
                for part in content {
                    if let ItemContent::OutputText { text: piece, .. } = part {
                        text.push_str(piece);
                    }
                }
            }
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasoningSettings {
    pub effort: Option<&'static str>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextSettings {
    pub format: FormatEcho,
    pub verbosity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FormatEcho {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        strict: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ToolChoiceEcho {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionToolEcho {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub strict: bool,
}

/// A tool as the response echoes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolEcho {
    Function(FunctionToolEcho),
    /// `{"type": "web_search", "search_context_size", "user_location"}`.
    WebSearch(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InputTokensDetails {
    pub cached_tokens: u32,
    pub cache_write_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

impl From<Usage> for ResponseUsage {
    fn from(usage: Usage) -> Self {
        Self {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: usage.cached_tokens,
                cache_write_tokens: usage.cache_write_tokens,
            },
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: usage.reasoning_tokens,
            },
            total_tokens: usage.total_tokens(),
        }
    }
}

/// The body of `DELETE /v1/responses/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeletedResponse {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

impl DeletedResponse {
    #[must_use]
    pub fn new(id: String) -> Self {
        Self {
            id,
            object: "response",
            deleted: true,
        }
    }
}

/// A content part inside a stream event: a message's part or a reasoning item's text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StreamPart {
    Content(ItemContent),
    Reasoning(ReasoningText),
}

/// The log probability of a token in a delta event (`ResponseLogProb`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaLogProb {
    pub token: String,
    pub logprob: f32,
    pub top_logprobs: Vec<DeltaTopLogProb>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaTopLogProb {
    pub token: String,
    pub logprob: f32,
}

/// One semantic stream event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ResponseStreamEvent {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: ResponseObject,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        sequence_number: u64,
        response: ResponseObject,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: ResponseObject,
    },
    #[serde(rename = "response.incomplete")]
    Incomplete {
        sequence_number: u64,
        response: ResponseObject,
    },
    #[serde(rename = "response.failed")]
    Failed {
        sequence_number: u64,
        response: ResponseObject,
    },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        sequence_number: u64,
        output_index: usize,
        item: StoredItem,
    },
    #[serde(rename = "response.web_search_call.in_progress")]
    WebSearchCallInProgress {
        sequence_number: u64,
        output_index: usize,
        item_id: String,
    },
    #[serde(rename = "response.web_search_call.searching")]
    WebSearchCallSearching {
        sequence_number: u64,
        output_index: usize,
        item_id: String,
    },
    #[serde(rename = "response.web_search_call.completed")]
    WebSearchCallCompleted {
        sequence_number: u64,
        output_index: usize,
        item_id: String,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        sequence_number: u64,
        output_index: usize,
        item: StoredItem,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: StreamPart,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: StreamPart,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
        logprobs: Vec<DeltaLogProb>,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
        logprobs: Vec<DeltaLogProb>,
    },
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.refusal.done")]
    RefusalDone {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        refusal: String,
    },
    #[serde(rename = "response.output_text.annotation.added")]
    AnnotationAdded {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        annotation_index: usize,
        annotation: Value,
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        sequence_number: u64,
        item_id: String,
        output_index: usize,
        name: String,
        arguments: String,
    },
}

impl ResponseStreamEvent {
    /// The event's `type`, which is also its SSE `event:` name.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::OutputItemAdded { .. } => "response.output_item.added",
            Self::OutputItemDone { .. } => "response.output_item.done",
            Self::WebSearchCallInProgress { .. } => "response.web_search_call.in_progress",
            Self::WebSearchCallSearching { .. } => "response.web_search_call.searching",
            Self::WebSearchCallCompleted { .. } => "response.web_search_call.completed",
            Self::ContentPartAdded { .. } => "response.content_part.added",
            Self::ContentPartDone { .. } => "response.content_part.done",
            Self::OutputTextDelta { .. } => "response.output_text.delta",
            Self::OutputTextDone { .. } => "response.output_text.done",
            Self::RefusalDelta { .. } => "response.refusal.delta",
            Self::RefusalDone { .. } => "response.refusal.done",
            Self::AnnotationAdded { .. } => "response.output_text.annotation.added",
            Self::ReasoningTextDelta { .. } => "response.reasoning_text.delta",
            Self::ReasoningTextDone { .. } => "response.reasoning_text.done",
            Self::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
        }
    }
}

/// What `include` lets a client see of the output items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shown {
    /// `reasoning.encrypted_content`.
    pub encrypted_reasoning: bool,
    /// `web_search_call.action.sources`.
    pub search_sources: bool,
}

impl Shown {
    #[must_use]
    pub fn of(decoded: &ResponsesRequest) -> Self {
        Self {
            encrypted_reasoning: decoded.include_encrypted_reasoning,
            search_sources: decoded.include_search_sources,
        }
    }

    fn everything(self) -> bool {
        self.encrypted_reasoning && self.search_sources
    }

    fn apply(self, item: &mut StoredItem) {
        if !self.encrypted_reasoning {
            item.drop_encrypted_content();
        }
        if !self.search_sources {
            item.drop_search_sources();
        }
    }

    fn apply_to_response(self, response: &mut ResponseObject) {
        for item in &mut response.output {
            self.apply(item);
        }
    }
}

/// Makes item ids from a prefix (`msg`, `fc`, `rs`, `ws`); injected so the encoder stays pure.
pub type IdSource = Box<dyn FnMut(&str) -> String + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenItem {
    Message(usize),
    /// A message whose content is a refusal.
    Refusal(usize),
    Reasoning(usize),
    Call(usize),
}

/// Builds one response from one generation's events.
pub struct ResponseEncoder {
    response: ResponseObject,
    next_sequence: u64,
    open: Option<OpenItem>,
    /// Output index of each tool call, by the call's position among the choice's calls.
    calls: Vec<(u32, usize)>,
    /// Tool-call signatures, written out as reasoning items once the calls are complete.
    call_signatures: Vec<(u32, Sealed)>,
    finish: Option<FinishReason>,
    new_id: IdSource,
    /// What events show of the output items (`include`).
    shown: Shown,
    /// Characters of answer text so far, and where each message's text starts among them:
    /// canonical citation indexes count the whole answer, an `output_text` part's its own.
    text_chars: u32,
    message_starts: Vec<(usize, u32)>,
}

impl ResponseEncoder {
    /// `request` is the canonical request as sent to the provider (after any conversation
    /// assembly); `decoded` supplies what only this surface echoes.
    #[must_use]
    pub fn new(
        id: String,
        created_at: u64,
        decoded: &ResponsesRequest,
        request: &Request,
        new_id: IdSource,
    ) -> Self {
        let response = ResponseObject {
            id,
            object: "response",
            created_at,
            status: "in_progress",
            completed_at: None,
            error: None,
            incomplete_details: None,
            instructions: decoded.instructions.clone(),
            model: request.model.clone(),
            output: Vec::new(),
            parallel_tool_calls: request.parallel_tool_calls,
            previous_response_id: decoded.previous_response_id.clone(),
            reasoning: ReasoningSettings {
                effort: request.reasoning_effort.map(effort_name),
                summary: decoded.reasoning_summary.clone(),
            },
            store: decoded.store,
            background: false,
            temperature: request.sampling.temperature,
            top_p: request.sampling.top_p,
            top_logprobs: request.sampling.top_logprobs,
            text: TextSettings {
                format: format_echo(&request.output_format),
                verbosity: decoded
                    .verbosity
                    .clone()
                    .unwrap_or_else(|| "medium".to_owned()),
            },
            tool_choice: tool_choice_echo(&request.tool_choice),
            tools: request
                .tools
                .iter()
                .map(|tool| ToolEcho::Function(tool_echo(tool)))
                .chain(request.web_search.as_ref().map(web_search_echo))
                .collect(),
            truncation: if decoded.truncation_auto {
                "auto"
            } else {
                "disabled"
            },
            max_output_tokens: request.sampling.max_output_tokens,
            max_tool_calls: decoded.max_tool_calls,
            service_tier: "default",
            metadata: match &request.metadata {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            },
            usage: None,
            user: request.user.clone(),
            safety_identifier: decoded.safety_identifier.clone(),
            prompt_cache_key: decoded.prompt_cache_key.clone(),
        };
        Self {
            response,
            next_sequence: 0,
            open: None,
            calls: Vec::new(),
            call_signatures: Vec::new(),
            finish: None,
            shown: Shown::of(decoded),
            new_id,
            text_chars: 0,
            message_starts: Vec::new(),
        }
    }

    /// The response as it stands (complete after [`finish`](Self::finish) or
    /// [`fail`](Self::fail)).
    #[must_use]
    pub fn response(&self) -> &ResponseObject {
        &self.response
    }

    /// The finished response, without a copy.
    #[must_use]
    pub fn into_response(self) -> ResponseObject {
        self.response
    }

    /// Drops `encrypted_content` from the items and responses events carry, unless included.
    fn visible(&self, mut events: Vec<ResponseStreamEvent>) -> Vec<ResponseStreamEvent> {
        if self.shown.everything() {
            return events;
        }
        for event in &mut events {
            match event {
                ResponseStreamEvent::OutputItemAdded { item, .. }
                | ResponseStreamEvent::OutputItemDone { item, .. } => self.shown.apply(item),
                ResponseStreamEvent::Created { response, .. }
                | ResponseStreamEvent::InProgress { response, .. }
                | ResponseStreamEvent::Completed { response, .. }
                | ResponseStreamEvent::Incomplete { response, .. }
                | ResponseStreamEvent::Failed { response, .. } => {
                    self.shown.apply_to_response(response);
                }
                _ => {}
            }
        }
        events
    }

    /// `response.created` and `response.in_progress`, the first two events of every stream.
    pub fn start(&mut self) -> Vec<ResponseStreamEvent> {
        vec![
            ResponseStreamEvent::Created {
                sequence_number: self.sequence(),
                response: self.response.clone(),
            },
            ResponseStreamEvent::InProgress {
                sequence_number: self.sequence(),
                response: self.response.clone(),
            },
        ]
    }

    /// Folds one event in and returns the stream events it produces.
    pub fn push(&mut self, event: &Event) -> Vec<ResponseStreamEvent> {
        let events = self.push_unfiltered(event);
        self.visible(events)
    }

    fn push_unfiltered(&mut self, event: &Event) -> Vec<ResponseStreamEvent> {
        let mut out = Vec::new();
        match event {
            // The Responses API has one answer per request.
            Event::TextDelta { choice, .. }
            | Event::ReasoningDelta { choice, .. }
            | Event::ReasoningEnd { choice, .. }
            | Event::RefusalDelta { choice, .. }
            | Event::Annotation { choice, .. }
            | Event::ToolCallStart { choice, .. }
            | Event::ToolCallArguments { choice, .. }
            | Event::ToolCallSignature { choice, .. }
            | Event::Finished { choice, .. }
                if *choice != 0 => {}
            Event::TextDelta { text, logprobs, .. } => {
                if !text.is_empty() || !logprobs.is_empty() {
                    self.text_delta(text, logprobs, &mut out);
                }
            }
            Event::ReasoningDelta { text, .. } => {
                if !text.is_empty() {
                    self.reasoning_delta(text, &mut out);
                }
            }
            Event::ReasoningEnd {
                signature,
                encrypted,
                ..
            } => self.reasoning_end(signature, encrypted, &mut out),
            Event::RefusalDelta { text, .. } => {
                if !text.is_empty() {
                    self.refusal_delta(text, &mut out);
                }
            }
            Event::Annotation { annotation, .. } => self.annotation(annotation, &mut out),
            Event::ToolCallSignature {
                index, signature, ..
            } => self.call_signatures.push((*index, signature.clone())),
            Event::ToolCallStart {
                index, id, name, ..
            } => {
                let item = StoredItem::FunctionCall {
                    id: (self.new_id)("fc"),
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    status: "in_progress",
                };
                let output_index = self.open_item(item, None, &mut out);
                self.calls.push((*index, output_index));
                self.open = Some(OpenItem::Call(output_index));
            }
            Event::ToolCallArguments {
                index, fragment, ..
            } => {
                let Some(&(_, output_index)) = self.calls.iter().find(|(call, _)| call == index)
                else {
                    return out;
                };
                let item_id = match &mut self.response.output[output_index] {
                    StoredItem::FunctionCall { id, arguments, .. } => {
                        arguments.push_str(fragment);
                        id.clone()
                    }
                    _ => return out,
                };
                if self.open == Some(OpenItem::Call(output_index)) && !fragment.is_empty() {
                    out.push(ResponseStreamEvent::FunctionCallArgumentsDelta {
                        sequence_number: self.sequence(),
                        item_id,
                        output_index,
                        delta: fragment.clone(),
                    });
                }
            }
            Event::Finished { reason, .. } => {
                self.finish = Some(*reason);
                let status = if *reason == FinishReason::Length {
                    "incomplete"
                } else {
                    "completed"
                };
                self.close_open(status, &mut out);
                self.write_call_signatures(&mut out);
            }
            Event::Usage(usage) => self.response.usage = Some(ResponseUsage::from(*usage)),
            Event::WebSearch(call) => self.web_search(call, &mut out),
            Event::Done => {}
        }
        out
    }

    /// A search that already ran: its `web_search_call` item, added and done with the
    /// in-progress, searching and completed events between.
    fn web_search(&mut self, call: &SearchCall, out: &mut Vec<ResponseStreamEvent>) {
        let item_id = (self.new_id)("ws");
        let item = StoredItem::WebSearchCall {
            id: item_id.clone(),
            status: "in_progress",
            action: WebSearchAction {
                kind: "search",
                query: call.query.clone(),
                sources: Some(
                    call.sources
                        .iter()
                        .map(|source| UrlSource {
                            kind: "url",
                            url: source.url.clone(),
                        })
                        .collect(),
                ),
            },
        };
        let output_index = self.open_item(item, None, out);
        let progress = [
            ResponseStreamEvent::WebSearchCallInProgress {
                sequence_number: self.sequence(),
                output_index,
                item_id: item_id.clone(),
            },
            ResponseStreamEvent::WebSearchCallSearching {
                sequence_number: self.sequence(),
                output_index,
                item_id: item_id.clone(),
            },
            ResponseStreamEvent::WebSearchCallCompleted {
                sequence_number: self.sequence(),
                output_index,
                item_id,
            },
        ];
        out.extend(progress);
        if let StoredItem::WebSearchCall { status, .. } = &mut self.response.output[output_index] {
            *status = "completed";
        }
        out.push(ResponseStreamEvent::OutputItemDone {
            sequence_number: self.sequence(),
            output_index,
            item: self.response.output[output_index].clone(),
        });
    }

    /// Ends a generation whose events all arrived: `response.completed`, or
    /// `response.incomplete` when it hit the token limit. Without a finish event it fails.
    pub fn finish(&mut self, now: u64) -> Vec<ResponseStreamEvent> {
        let events = self.finish_unfiltered(now);
        self.visible(events)
    }

    fn finish_unfiltered(&mut self, now: u64) -> Vec<ResponseStreamEvent> {
        let Some(reason) = self.finish else {
            return self.fail_unfiltered("The generation ended unexpectedly.", now);
        };
        let mut out = Vec::new();
        self.close_open("incomplete", &mut out);
        self.response.completed_at = Some(now);
        let incomplete = match reason {
            FinishReason::Stop
            | FinishReason::ToolCalls
            | FinishReason::Refusal
            | FinishReason::PauseTurn => None,
            FinishReason::Length => Some("max_output_tokens"),
            FinishReason::ContentFilter => Some("content_filter"),
        };
        let sequence_number = self.sequence();
        match incomplete {
            None => {
                self.response.status = "completed";
                out.push(ResponseStreamEvent::Completed {
                    sequence_number,
                    response: self.response.clone(),
                });
            }
            Some(reason) => {
                self.response.status = "incomplete";
                self.response.incomplete_details = Some(IncompleteDetails { reason });
                out.push(ResponseStreamEvent::Incomplete {
                    sequence_number,
                    response: self.response.clone(),
                });
            }
        }
        out
    }

    /// Ends the response as failed with a server error (its message is meant for clients).
    pub fn fail(&mut self, message: &str, now: u64) -> Vec<ResponseStreamEvent> {
        let events = self.fail_unfiltered(message, now);
        self.visible(events)
    }

    fn fail_unfiltered(&mut self, message: &str, now: u64) -> Vec<ResponseStreamEvent> {
        let mut out = Vec::new();
        self.close_open("incomplete", &mut out);
        self.response.status = "failed";
        self.response.completed_at = Some(now);
        self.response.error = Some(ResponseError {
            code: "server_error",
            message: message.to_owned(),
        });
        out.push(ResponseStreamEvent::Failed {
            sequence_number: self.sequence(),
            response: self.response.clone(),
        });
        out
    }

    fn sequence(&mut self) -> u64 {
        let number = self.next_sequence;
        self.next_sequence += 1;
        number
    }

    fn text_delta(
        &mut self,
        text: &str,
        logprobs: &[TokenLogprob],
        out: &mut Vec<ResponseStreamEvent>,
    ) {
        let output_index = match self.open {
            Some(OpenItem::Message(index)) => index,
            _ => {
                let item = self.new_message();
                let part = StreamPart::Content(ItemContent::OutputText {
                    text: String::new(),
                    annotations: Vec::new(),
                    logprobs: Vec::new(),
                });
                let index = self.open_item(item, Some(part), out);
                self.open = Some(OpenItem::Message(index));
                self.message_starts.push((index, self.text_chars));
                index
            }
        };
        self.text_chars = self
            .text_chars
            .saturating_add(u32::try_from(text.chars().count()).unwrap_or(u32::MAX));
        let converted: Vec<LogProb> = logprobs.iter().map(output_logprob).collect();
        let delta_logprobs = converted.iter().map(delta_from_output).collect();
        if let StoredItem::Message { content, .. } = &mut self.response.output[output_index] {
            if let Some(ItemContent::OutputText {
                text: so_far,
                logprobs: kept,
                ..
            }) = content.first_mut()
            {
                so_far.push_str(text);
                kept.extend(converted);
            }
        }
        let item_id = self.item_id(output_index);
        out.push(ResponseStreamEvent::OutputTextDelta {
            sequence_number: self.sequence(),
            item_id,
            output_index,
            content_index: 0,
            delta: text.to_owned(),
            logprobs: delta_logprobs,
        });
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<ResponseStreamEvent>) {
        let output_index = match self.open {
            Some(OpenItem::Reasoning(index)) => index,
            _ => {
                let item = self.new_reasoning(None);
                let part = StreamPart::Reasoning(ReasoningText::new(String::new()));
                let index = self.open_item(item, Some(part), out);
                self.open = Some(OpenItem::Reasoning(index));
                index
            }
        };
        if let StoredItem::Reasoning { content, .. } = &mut self.response.output[output_index] {
            if let Some(part) = content.first_mut() {
                part.text.push_str(text);
            }
        }
        let item_id = self.item_id(output_index);
        out.push(ResponseStreamEvent::ReasoningTextDelta {
            sequence_number: self.sequence(),
            item_id,
            output_index,
            content_index: 0,
            delta: text.to_owned(),
        });
    }

    /// Ends the open reasoning item with the provider's signature or payload, sealed into its
    /// `encrypted_content`; a payload without streamed text becomes an item of its own.
    fn reasoning_end(
        &mut self,
        signature: &Option<Sealed>,
        encrypted: &Option<Sealed>,
        out: &mut Vec<ResponseStreamEvent>,
    ) {
        let sealed = Envelope {
            signature: signature.clone(),
            encrypted: encrypted.clone(),
            call_id: None,
        }
        .seal();
        let Some(OpenItem::Reasoning(output_index)) = self.open else {
            if sealed.is_some() {
                self.sealed_reasoning_item(sealed, out);
            }
            return;
        };
        if let StoredItem::Reasoning {
            encrypted_content, ..
        } = &mut self.response.output[output_index]
        {
            *encrypted_content = sealed;
        }
        self.close_open("completed", out);
    }

    /// A reasoning item holding only `encrypted_content`, announced and closed at once.
    fn sealed_reasoning_item(
        &mut self,
        sealed: Option<String>,
        out: &mut Vec<ResponseStreamEvent>,
    ) {
        let item = self.new_reasoning(sealed);
        let index = self.open_item(item, None, out);
        self.open = Some(OpenItem::Reasoning(index));
        self.close_open("completed", out);
    }

    fn new_message(&mut self) -> StoredItem {
        StoredItem::Message {
            id: (self.new_id)("msg"),
            role: "assistant".into(),
            status: "in_progress",
            content: Vec::new(),
        }
    }

    fn new_reasoning(&mut self, encrypted_content: Option<String>) -> StoredItem {
        StoredItem::Reasoning {
            id: (self.new_id)("rs"),
            summary: Vec::new(),
            content: Vec::new(),
            encrypted_content,
            status: Some("in_progress"),
        }
    }

    /// Each tool call's signature as a reasoning item naming the call (see [`Envelope`]).
    fn write_call_signatures(&mut self, out: &mut Vec<ResponseStreamEvent>) {
        for (index, signature) in std::mem::take(&mut self.call_signatures) {
            let Some(&(_, output_index)) = self.calls.iter().find(|(call, _)| *call == index)
            else {
                continue;
            };
            let StoredItem::FunctionCall { call_id, .. } = &self.response.output[output_index]
            else {
                continue;
            };
            let envelope = Envelope {
                signature: Some(signature),
                encrypted: None,
                call_id: Some(call_id.clone()),
            };
            self.sealed_reasoning_item(envelope.seal(), out);
        }
    }

    fn refusal_delta(&mut self, text: &str, out: &mut Vec<ResponseStreamEvent>) {
        let output_index = match self.open {
            Some(OpenItem::Refusal(index)) => index,
            _ => {
                let item = self.new_message();
                let part = StreamPart::Content(ItemContent::Refusal {
                    refusal: String::new(),
                });
                let index = self.open_item(item, Some(part), out);
                self.open = Some(OpenItem::Refusal(index));
                index
            }
        };
        if let StoredItem::Message { content, .. } = &mut self.response.output[output_index] {
            if let Some(ItemContent::Refusal { refusal }) = content.first_mut() {
                refusal.push_str(text);
            }
        }
        let item_id = self.item_id(output_index);
        out.push(ResponseStreamEvent::RefusalDelta {
            sequence_number: self.sequence(),
            item_id,
            output_index,
            content_index: 0,
            delta: text.to_owned(),
        });
    }

    /// Attaches a citation to the message being written (or the last one written).
    fn annotation(&mut self, annotation: &Annotation, out: &mut Vec<ResponseStreamEvent>) {
        let open_message = match self.open {
            Some(OpenItem::Message(index)) => Some(index),
            _ => None,
        };
        let last_message = || {
            self.response
                .output
                .iter()
                .rposition(|item| matches!(item, StoredItem::Message { content, .. } if matches!(content.first(), Some(ItemContent::OutputText { .. }))))
        };
        let output_index = match open_message.or_else(last_message) {
            Some(index) => index,
            None => {
                self.text_delta("", &[], out);
                match self.open {
                    Some(OpenItem::Message(index)) => index,
                    _ => return,
                }
            }
        };
        let start = self
            .message_starts
            .iter()
            .find(|(index, _)| *index == output_index)
            .map_or(0, |(_, start)| *start);
        let Annotation::UrlCitation {
            url,
            title,
            start_index,
            end_index,
        } = annotation;
        let wire = annotation_wire(&Annotation::UrlCitation {
            url: url.clone(),
            title: title.clone(),
            start_index: start_index.saturating_sub(start),
            end_index: end_index.saturating_sub(start),
        });
        let mut annotation_index = 0;
        if let StoredItem::Message { content, .. } = &mut self.response.output[output_index] {
            if let Some(ItemContent::OutputText { annotations, .. }) = content.first_mut() {
                annotation_index = annotations.len();
                annotations.push(wire.clone());
            }
        }
        let item_id = self.item_id(output_index);
        out.push(ResponseStreamEvent::AnnotationAdded {
            sequence_number: self.sequence(),
            item_id,
            output_index,
            content_index: 0,
            annotation_index,
            annotation: wire,
        });
    }

    /// Closes the open item, appends `item` to the output and announces it; with `part`, the
    /// item's first content part is added and announced too. Returns the item's output index.
    fn open_item(
        &mut self,
        item: StoredItem,
        part: Option<StreamPart>,
        out: &mut Vec<ResponseStreamEvent>,
    ) -> usize {
        self.close_open("completed", out);
        let index = self.response.output.len();
        let item_id = item.id().to_owned();
        self.response.output.push(item.clone());
        out.push(ResponseStreamEvent::OutputItemAdded {
            sequence_number: self.sequence(),
            output_index: index,
            item,
        });
        let Some(part) = part else {
            return index;
        };
        match (&mut self.response.output[index], &part) {
            (StoredItem::Message { content, .. }, StreamPart::Content(first)) => {
                content.push(first.clone());
            }
            (StoredItem::Reasoning { content, .. }, StreamPart::Reasoning(first)) => {
                content.push(first.clone());
            }
            _ => {}
        }
        out.push(ResponseStreamEvent::ContentPartAdded {
            sequence_number: self.sequence(),
            item_id,
            output_index: index,
            content_index: 0,
            part,
        });
        index
    }

    /// Closes the open item with `status`, emitting its `.done` events.
    fn close_open(&mut self, status: &'static str, out: &mut Vec<ResponseStreamEvent>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (OpenItem::Message(index)
        | OpenItem::Refusal(index)
        | OpenItem::Reasoning(index)
        | OpenItem::Call(index)) = open;
        let item_id = self.item_id(index);
        let mut done = Vec::new();
        match &mut self.response.output[index] {
            StoredItem::Message {
                status: item_status,
                content,
                ..
            } => {
                *item_status = status;
                if let Some(part) = content.first().cloned() {
                    // The part's own `.done` (its whole text), then the part's.
                    match &part {
                        ItemContent::Refusal { refusal } => {
                            done.push(ResponseStreamEvent::RefusalDone {
                                sequence_number: 0,
                                item_id: item_id.clone(),
                                output_index: index,
                                content_index: 0,
                                refusal: refusal.clone(),
                            });
                        }
                        ItemContent::OutputText { text, logprobs, .. } => {
                            done.push(ResponseStreamEvent::OutputTextDone {
                                sequence_number: 0,
                                item_id: item_id.clone(),
                                output_index: index,
                                content_index: 0,
                                text: text.clone(),
                                logprobs: logprobs.iter().map(delta_from_output).collect(),
                            });
                        }
                        _ => {}
                    }
                    done.push(ResponseStreamEvent::ContentPartDone {
                        sequence_number: 0,
                        item_id,
                        output_index: index,
                        content_index: 0,
                        part: StreamPart::Content(part),
                    });
                }
            }
            StoredItem::Reasoning {
                status: item_status,
                content,
                ..
            } => {
                *item_status = Some(status);
                if let Some(part) = content.first().cloned() {
                    done.push(ResponseStreamEvent::ReasoningTextDone {
                        sequence_number: 0,
                        item_id: item_id.clone(),
                        output_index: index,
                        content_index: 0,
                        text: part.text.clone(),
                    });
                    done.push(ResponseStreamEvent::ContentPartDone {
                        sequence_number: 0,
                        item_id,
                        output_index: index,
                        content_index: 0,
                        part: StreamPart::Reasoning(part),
                    });
                }
            }
            StoredItem::FunctionCall {
                status: item_status,
                name,
                arguments,
                ..
            } => {
                *item_status = status;
                done.push(ResponseStreamEvent::FunctionCallArgumentsDone {
                    sequence_number: 0,
                    item_id,
                    output_index: index,
                    name: name.clone(),
                    arguments: arguments.clone(),
                });
            }
            // Never open: a search call is added and done at once.
            StoredItem::FunctionCallOutput { .. } | StoredItem::WebSearchCall { .. } => {}
        }
        done.push(ResponseStreamEvent::OutputItemDone {
            sequence_number: 0,
            output_index: index,
            item: self.response.output[index].clone(),
        });
        // Numbered once the borrows above are over, in emission order.
        for mut event in done {
            let number = self.sequence();
            set_sequence(&mut event, number);
            out.push(event);
        }
    }

    fn item_id(&self, index: usize) -> String {
        self.response.output[index].id().to_owned()
    }
}

fn set_sequence(event: &mut ResponseStreamEvent, number: u64) {
    match event {
        ResponseStreamEvent::Created {
            sequence_number, ..
        }
        | ResponseStreamEvent::InProgress {
            sequence_number, ..
        }
        | ResponseStreamEvent::Completed {
            sequence_number, ..
        }
        | ResponseStreamEvent::Incomplete {
            sequence_number, ..
        }
        | ResponseStreamEvent::Failed {
            sequence_number, ..
        }
        | ResponseStreamEvent::OutputItemAdded {
            sequence_number, ..
        }
        | ResponseStreamEvent::OutputItemDone {
            sequence_number, ..
        }
        | ResponseStreamEvent::WebSearchCallInProgress {
            sequence_number, ..
        }
        | ResponseStreamEvent::WebSearchCallSearching {
            sequence_number, ..
        }
        | ResponseStreamEvent::WebSearchCallCompleted {
            sequence_number, ..
        }
        | ResponseStreamEvent::ContentPartAdded {
            sequence_number, ..
        }
        | ResponseStreamEvent::ContentPartDone {
            sequence_number, ..
        }
        | ResponseStreamEvent::OutputTextDelta {
            sequence_number, ..
        }
        | ResponseStreamEvent::RefusalDelta {
            sequence_number, ..
        }
        | ResponseStreamEvent::RefusalDone {
            sequence_number, ..
        }
        | ResponseStreamEvent::AnnotationAdded {
            sequence_number, ..
        }
        | ResponseStreamEvent::OutputTextDone {
            sequence_number, ..
        }
        | ResponseStreamEvent::ReasoningTextDelta {
            sequence_number, ..
        }
        | ResponseStreamEvent::ReasoningTextDone {
            sequence_number, ..
        }
        | ResponseStreamEvent::FunctionCallArgumentsDelta {
            sequence_number, ..
        }
        | ResponseStreamEvent::FunctionCallArgumentsDone {
            sequence_number, ..
        } => {
            *sequence_number = number;
        }
    }
}

fn output_logprob(logprob: &TokenLogprob) -> LogProb {
    LogProb {
        token: logprob.token.clone(),
        logprob: logprob.logprob,
        bytes: logprob.bytes.clone(),
        top_logprobs: logprob
            .top
            .iter()
            .map(|top| TopLogProb {
                token: top.token.clone(),
                logprob: top.logprob,
                bytes: top.bytes.clone(),
            })
            .collect(),
    }
}

fn delta_from_output(logprob: &LogProb) -> DeltaLogProb {
    DeltaLogProb {
        token: logprob.token.clone(),
        logprob: logprob.logprob,
        top_logprobs: logprob
            .top_logprobs
            .iter()
            .map(|top| DeltaTopLogProb {
                token: top.token.clone(),
                logprob: top.logprob,
            })
            .collect(),
    }
}

fn effort_name(effort: switchboard_model::ReasoningEffort) -> &'static str {
    use switchboard_model::ReasoningEffort as E;
    match effort {
        E::Minimal => "minimal",
        E::Low => "low",
        E::Medium => "medium",
        E::High => "high",
    }
}

fn format_echo(format: &OutputFormat) -> FormatEcho {
    match format {
        OutputFormat::Text => FormatEcho::Text,
        OutputFormat::JsonObject => FormatEcho::JsonObject,
        OutputFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => FormatEcho::JsonSchema {
            name: name.clone(),
            schema: schema.clone(),
            description: description.clone(),
            strict: *strict,
        },
    }
}

fn tool_choice_echo(choice: &ToolChoice) -> ToolChoiceEcho {
    match choice {
        ToolChoice::None => ToolChoiceEcho::Mode("none"),
        ToolChoice::Auto => ToolChoiceEcho::Mode("auto"),
        ToolChoice::Required => ToolChoiceEcho::Mode("required"),
        ToolChoice::Function(name) => ToolChoiceEcho::Function {
            kind: "function",
            name: name.clone(),
        },
    }
}

fn tool_echo(tool: &Tool) -> FunctionToolEcho {
    let Tool::Function(function) = tool;
    FunctionToolEcho {
        kind: "function",
        name: function.name.clone(),
        description: function.description.clone(),
        parameters: function.parameters.clone(),
        strict: function.strict,
    }
}

/// The `web_search` tool as the response echoes it.
fn web_search_echo(search: &WebSearch) -> ToolEcho {
    let mut tool = Map::new();
    tool.insert("type".into(), Value::from("web_search"));
    tool.insert(
        "search_context_size".into(),
        Value::from(
            search
                .context_size
                .clone()
                .unwrap_or_else(|| "medium".into()),
        ),
    );
    tool.insert(
        "user_location".into(),
        search.user_location.clone().unwrap_or(Value::Null),
    );
    ToolEcho::WebSearch(Value::Object(tool))
}

/// A citation in the Responses API's shape (`url_citation` with the span's indexes).
#[must_use]
pub fn annotation_wire(annotation: &Annotation) -> Value {
    match annotation {
        Annotation::UrlCitation {
            url,
            title,
            start_index,
            end_index,
        } => serde_json::json!({
            "type": "url_citation",
            "url": url,
            "title": title,
            "start_index": start_index,
            "end_index": end_index,
        }),
    }
}
