//! Decoding and validating a `CreateResponse` body into a [`ResponsesRequest`].
//!
//! Errors name the offending `param` in this surface's own path syntax (`input[2].content[0]`,
//! `text.format.schema`, `tools[0].name`), worded as OpenAI words them. Unknown top-level fields
//! are rejected; unknown fields inside items are ignored. Every input item is also normalized
//! into its stored shape with an id ([`StoredItem`]), which is what `input_items` lists and what
//! a later `previous_response_id` continues from.
//!
//! Not done here: loading a previous response (the server does, then calls
//! [`decode_context`]), and anything that depends on the catalog.

use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_model::{
    ContentPart, Error, FunctionTool, Item, OutputFormat, ReasoningEffort, Request, RequestField,
    Role, Sampling, Sealed, Tool, ToolChoice, WebSearch,
};

use super::items::{
    ItemContent, ReasoningText, StoredItem, SummaryText, UrlSource, WebSearchAction,
};
use crate::sealed::Envelope;
use crate::wire::{
    bounded_decimal, bounded_integer, check_inert_fields, check_name, check_tool_choice,
    decode_metadata, from_value, invalid_type, known_keys, missing, one_of, parse_object,
    required_model, type_field, unsupported_value, WirePromptCacheOptions, WireRefusalPart,
    WireTextPart,
};

/// A decoded `CreateResponse`: the canonical request for this turn plus what only this surface
/// keeps (instructions, the stored shape of the input, storage and streaming switches, and the
/// settings the `response` object echoes).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    /// `items` holds this request's input only; see [`Self::conversation`].
    pub request: Request,
    pub instructions: Option<String>,
    /// The input, normalized, each with an id.
    pub input_items: Vec<StoredItem>,
    pub previous_response_id: Option<String>,
    pub stream: bool,
    pub store: bool,
    /// `truncation: "auto"`: drop the oldest items when the conversation does not fit.
    pub truncation_auto: bool,
    pub reasoning_summary: Option<String>,
    pub verbosity: Option<String>,
    pub service_tier: Option<String>,
    pub max_tool_calls: Option<u32>,
    pub prompt_cache_key: Option<String>,
    pub safety_identifier: Option<String>,
    /// `include: ["reasoning.encrypted_content"]`: reasoning items show the provider's
    /// signatures to the client (the store keeps them either way).
    pub include_encrypted_reasoning: bool,
    /// `include: ["web_search_call.action.sources"]`: web search calls list their sources.
    pub include_search_sources: bool,
}

impl ResponsesRequest {
    /// The whole conversation to generate from: the instructions (as a system message), then the
    /// context carried over from `previous_response_id`, then this request's input. As in
    /// OpenAI's API, instructions of earlier responses are not carried over.
    #[must_use]
    pub fn conversation(&self, previous: Vec<Item>) -> Vec<Item> {
        let mut items = Vec::with_capacity(previous.len() + self.request.items.len() + 1);
        if let Some(instructions) = &self.instructions {
            items.push(Item::text(Role::System, instructions.clone()));
        }
        items.extend(previous);
        items.extend(self.request.items.iter().cloned());
        items
    }

    /// How many leading items of [`Self::conversation`] truncation must keep.
    #[must_use]
    pub fn pinned_items(&self) -> usize {
        usize::from(self.instructions.is_some())
    }
}

/// This surface's name for each request field.
#[must_use]
pub fn param_name(field: RequestField) -> String {
    match field {
        RequestField::Tools | RequestField::WebSearch => "tools".into(),
        RequestField::ToolParameters(index) => format!("tools[{index}].parameters"),
        RequestField::Conversation => "input".into(),
        RequestField::OutputFormat => "text.format".into(),
        RequestField::ReasoningEffort => "reasoning.effort".into(),
        RequestField::OutputModalities => "modalities".into(),
        // Logprobs are asked for with `include` here.
        RequestField::Logprobs => "include".into(),
        // None of these exists on this surface; a request from it never has more than one
        // choice, a logit bias or stop sequences, so these are never at fault here.
        RequestField::Choices => "n".into(),
        RequestField::LogitBias => "logit_bias".into(),
        RequestField::StopSequences => "stop".into(),
    }
}

/// Decodes and validates a request body; `new_id` makes item ids from a prefix (`msg`, `fc`…).
///
/// # Errors
/// An `InvalidRequest` or `Unsupported` error naming the offending `param`.
pub fn decode_responses_request(
    body: &[u8],
    new_id: &mut dyn FnMut(&str) -> String,
) -> Result<ResponsesRequest, Error> {
    let value = parse_object(body, KNOWN_PARAMS)?;
    let wire: WireRequest = from_value(value, "")?;
    wire.into_request(new_id)
}

/// Every tool result must answer a call made earlier in the conversation (this request's
/// input, or the context `previous_response_id` brings), as OpenAI requires.
///
/// # Errors
/// `InvalidRequest` on `input` naming the unanswerable `call_id`.
pub fn check_call_outputs(conversation: &[Item]) -> Result<(), Error> {
    let mut calls = std::collections::HashSet::new();
    for item in conversation {
        match item {
            Item::FunctionCall { call_id, .. } => {
                calls.insert(call_id.as_str());
            }
            Item::FunctionOutput { call_id, .. } if !calls.contains(call_id.as_str()) => {
                return Err(Error::invalid(
                    "input",
                    format!("No tool call found for function call output with call_id {call_id}."),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Turns the stored context of a previous response back into canonical items.
///
/// # Errors
/// When a stored item no longer decodes (a corrupt store); reported as the caller sees fit.
pub fn decode_context(documents: &[Value]) -> Result<Vec<Item>, Error> {
    let mut ids = |_: &str| String::new();
    let mut items = Vec::with_capacity(documents.len());
    let mut call_signatures = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let (item, _) = decode_item(
            document.clone(),
            &format!("context[{index}]"),
            &mut ids,
            &mut call_signatures,
        )?;
        items.extend(item);
    }
    attach_call_signatures(&mut items, call_signatures);
    Ok(items)
}

/// Gives each tool call the signature a reasoning item carried for it (the item comes after
/// the call when the provider sent the signature with the call).
fn attach_call_signatures(items: &mut [Item], signatures: Vec<(String, Sealed)>) {
    for (wanted, sealed) in signatures {
        for item in items.iter_mut() {
            if let Item::FunctionCall {
                call_id, signature, ..
            } = item
            {
                if *call_id == wanted {
                    *signature = Some(sealed);
                    break;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes.

/// Every top-level property of `CreateResponse`; anything else is rejected.
const KNOWN_PARAMS: &[&str] = &[
    "background",
    "context_management",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// `prompt_cache_options` and `prompt_cache_retention` are accepted without effect (the prefix
/// cache is automatic), but typed and checked.
#[derive(Deserialize)]
struct WireRequest {
    prompt_cache_retention: Option<String>,
    prompt_cache_options: Option<WirePromptCacheOptions>,
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<String>,
    previous_response_id: Option<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    text: Option<WireText>,
    reasoning: Option<WireReasoning>,
    max_output_tokens: Option<i64>,
    max_tool_calls: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_logprobs: Option<i64>,
    include: Option<Vec<String>>,
    stream: Option<bool>,
    stream_options: Option<Value>,
    store: Option<bool>,
    truncation: Option<String>,
    metadata: Option<Map<String, Value>>,
    user: Option<String>,
    safety_identifier: Option<String>,
    prompt_cache_key: Option<String>,
    service_tier: Option<String>,
    background: Option<bool>,
    conversation: Option<Value>,
    prompt: Option<Value>,
    moderation: Option<Value>,
    context_management: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireText {
    format: Option<Value>,
    verbosity: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReasoning {
    effort: Option<String>,
    summary: Option<String>,
    generate_summary: Option<String>,
    /// Newer reasoning controls, accepted without effect on a model that does not reason.
    #[serde(default, rename = "context")]
    _context: Option<Value>,
    #[serde(default, rename = "mode")]
    _mode: Option<Value>,
}

#[derive(Deserialize)]
struct WireJsonSchemaFormat {
    name: String,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireFunctionTool {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireWebSearchTool {
    search_context_size: Option<String>,
    user_location: Option<Value>,
    filters: Option<Value>,
}

#[derive(Deserialize)]
struct WireNamedFunction {
    name: String,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    content: Value,
    id: Option<String>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    id: Option<String>,
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct WireFunctionCallOutput {
    id: Option<String>,
    call_id: String,
    output: Value,
}

#[derive(Deserialize)]
struct WireReasoningItem {
    id: Option<String>,
    summary: Option<Vec<WireTextPart>>,
    content: Option<Vec<WireTextPart>>,
    encrypted_content: Option<String>,
}

#[derive(Deserialize)]
struct WireImagePart {
    image_url: Option<String>,
    file_id: Option<String>,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct WireFilePart {
    file_id: Option<String>,
    filename: Option<String>,
    file_data: Option<String>,
    file_url: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Wire → canonical.

impl WireRequest {
    fn into_request(
        self,
        new_id: &mut dyn FnMut(&str) -> String,
    ) -> Result<ResponsesRequest, Error> {
        self.reject_unsupported()?;
        let model = required_model(self.model)?;
        let input = self.input.ok_or_else(|| missing("input"))?;
        let (items, input_items) = decode_input(input, new_id)?;
        if let Some(previous) = &self.previous_response_id {
            if previous.is_empty() {
                return Err(Error::invalid(
                    "previous_response_id",
                    "Invalid 'previous_response_id': empty string.",
                ));
            }
        }

        let stream = self.stream.unwrap_or(false);
        match self.stream_options {
            None | Some(Value::Null) => {}
            Some(_) if !stream => {
                return Err(Error::invalid(
                    "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                ))
            }
            // `include_obfuscation` has nothing to switch: no padding is ever added.
            Some(options @ Value::Object(_)) => {
                known_keys(&options, "stream_options", &["include_obfuscation"])?;
                if let Some(flag) = options.get("include_obfuscation") {
                    if !flag.is_boolean() && !flag.is_null() {
                        return Err(invalid_type(
                            "stream_options.include_obfuscation",
                            "a boolean",
                            flag,
                        ));
                    }
                }
            }
            Some(other) => return Err(invalid_type("stream_options", "an object", &other)),
        }

        let (tools, web_search) = decode_tools(self.tools.unwrap_or_default())?;
        let tool_choice = decode_tool_choice(self.tool_choice, &tools)?;
        let (output_format, verbosity) = decode_text(self.text)?;
        let (reasoning_effort, reasoning_summary) = decode_reasoning(self.reasoning)?;
        let include = self.include.unwrap_or_default();
        decode_include(&include)?;
        let logprobs = include.iter().any(|v| v == "message.output_text.logprobs");
        let include_encrypted_reasoning =
            include.iter().any(|v| v == "reasoning.encrypted_content");
        let include_search_sources = include
            .iter()
            .any(|v| v == "web_search_call.action.sources");
        let top_logprobs: u8 =
            bounded_integer("top_logprobs", self.top_logprobs, 0, 20)?.unwrap_or(0);
        let truncation_auto = match self.truncation.as_deref() {
            None | Some("disabled") => false,
            Some("auto") => true,
            Some(other) => {
                one_of("truncation", other, &["auto", "disabled"])?;
                false
            }
        };
        if let Some(tier) = &self.service_tier {
            one_of(
                "service_tier",
                tier,
                &[
                    "auto",
                    "default",
                    "flex",
                    "scale",
                    "priority",
                    "fast",
                    "ultrafast",
                ],
            )?;
        }
        check_inert_fields(
            self.safety_identifier.as_ref(),
            self.prompt_cache_key.as_ref(),
            self.prompt_cache_retention.as_ref(),
            self.prompt_cache_options.as_ref(),
        )?;

        let sampling = Sampling {
            temperature: bounded_decimal("temperature", self.temperature, 0.0, 2.0)?.unwrap_or(1.0),
            top_p: bounded_decimal("top_p", self.top_p, 0.0, 1.0)?.unwrap_or(1.0),
            top_k: None,
            max_output_tokens: bounded_integer(
                "max_output_tokens",
                self.max_output_tokens,
                16,
                i64::from(u32::MAX),
            )?,
            logprobs,
            top_logprobs: if logprobs { top_logprobs } else { 0 },
            ..Sampling::default()
        };
        let request = Request {
            model,
            items,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            output_format,
            sampling,
            reasoning_effort,
            reasoning_budget: None,
            web_search,
            extra_output_modalities: Vec::new(),
            user: self.user,
            metadata: decode_metadata(self.metadata)?,
            cache_marks: Vec::new(),
            anthropic_beta: Vec::new(),
            service_tier: None,
            request_id: None,
        };
        Ok(ResponsesRequest {
            request,
            instructions: self.instructions,
            input_items,
            previous_response_id: self.previous_response_id,
            stream,
            store: self.store.unwrap_or(true),
            truncation_auto,
            reasoning_summary,
            verbosity,
            service_tier: self.service_tier,
            max_tool_calls: bounded_integer(
                "max_tool_calls",
                self.max_tool_calls,
                1,
                i64::from(u32::MAX),
            )?,
            prompt_cache_key: self.prompt_cache_key,
            safety_identifier: self.safety_identifier,
            include_encrypted_reasoning,
            include_search_sources,
        })
    }

    /// Features of the API that this server does not have; each is a clear 400.
    fn reject_unsupported(&self) -> Result<(), Error> {
        let refused = [
            (
                "background",
                self.background == Some(true),
                "Background responses are",
            ),
            (
                "conversation",
                is_given(self.conversation.as_ref()),
                "Conversations are",
            ),
            (
                "prompt",
                is_given(self.prompt.as_ref()),
                "Stored prompt templates are",
            ),
            (
                "moderation",
                is_given(self.moderation.as_ref()),
                "The 'moderation' parameter is",
            ),
            (
                "context_management",
                is_given(self.context_management.as_ref()),
                "Server-side context management is",
            ),
        ];
        for (param, given, what) in refused {
            if given {
                return Err(Error::unsupported(
                    param,
                    format!("{what} not supported by this server."),
                )
                .with_code("unsupported_parameter"));
            }
        }
        Ok(())
    }
}

fn is_given(value: Option<&Value>) -> bool {
    value.is_some_and(|value| !value.is_null())
}

fn decode_input(
    input: Value,
    new_id: &mut dyn FnMut(&str) -> String,
) -> Result<(Vec<Item>, Vec<StoredItem>), Error> {
    match input {
        Value::String(text) => Ok((
            vec![Item::text(Role::User, text.clone())],
            vec![StoredItem::Message {
                id: new_id("msg"),
                role: "user".into(),
                status: "completed",
                content: vec![ItemContent::InputText { text }],
            }],
        )),
        Value::Array(entries) => {
            if entries.is_empty() {
                return Err(Error::invalid(
                    "input",
                    "Invalid 'input': empty array. Expected an array with minimum length 1, but \
                     got an empty array instead.",
                ));
            }
            let mut items = Vec::with_capacity(entries.len());
            let mut stored = Vec::with_capacity(entries.len());
            let mut call_signatures = Vec::new();
            for (index, entry) in entries.into_iter().enumerate() {
                let (item, record) = decode_item(
                    entry,
                    &format!("input[{index}]"),
                    new_id,
                    &mut call_signatures,
                )?;
                items.extend(item);
                stored.push(record);
            }
            attach_call_signatures(&mut items, call_signatures);
            Ok((items, stored))
        }
        other => Err(invalid_type(
            "input",
            "a string or an array of input items",
            &other,
        )),
    }
}

/// One input item. A message without `type` is an easy input message.
/// Tool-call signatures that reasoning items carry (see [`crate::sealed`]) are collected in
/// `call_signatures`, for [`attach_call_signatures`].
fn decode_item(
    entry: Value,
    prefix: &str,
    new_id: &mut dyn FnMut(&str) -> String,
    call_signatures: &mut Vec<(String, Sealed)>,
) -> Result<(Option<Item>, StoredItem), Error> {
    let Value::Object(fields) = &entry else {
        return Err(invalid_type(prefix, "an object", &entry));
    };
    let kind = match fields.get("type") {
        None | Some(Value::Null) => "message".to_owned(),
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => return Err(invalid_type(&format!("{prefix}.type"), "a string", other)),
    };
    // What each item may carry: its input shape plus what the API puts on the same item in
    // `output` (`id`, `status`…), so a client can send output items back as they came.
    let keys: &[&str] = match kind.as_str() {
        "message" => &["type", "role", "content", "id", "status", "phase"],
        "function_call" => &[
            "type",
            "id",
            "call_id",
            "name",
            "arguments",
            "status",
            "namespace",
            "caller",
        ],
        "function_call_output" => &[
            "type",
            "id",
            "call_id",
            "output",
            "status",
            "name",
            "namespace",
            "caller",
        ],
        "reasoning" => &[
            "type",
            "id",
            "summary",
            "content",
            "encrypted_content",
            "status",
        ],
        "web_search_call" => &["type", "id", "status", "action"],
        _ => &[],
    };
    if !keys.is_empty() {
        known_keys(&entry, prefix, keys)?;
    }
    match kind.as_str() {
        "message" => decode_message(entry, prefix, new_id),
        "function_call" => {
            let call: WireFunctionCall = from_value(entry, prefix)?;
            let id = call.id.unwrap_or_else(|| new_id("fc"));
            Ok((
                Some(Item::FunctionCall {
                    call_id: call.call_id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    signature: None,
                }),
                StoredItem::FunctionCall {
                    id,
                    call_id: call.call_id,
                    name: call.name,
                    arguments: call.arguments,
                    status: "completed",
                },
            ))
        }
        "function_call_output" => {
            let output: WireFunctionCallOutput = from_value(entry, prefix)?;
            let text = function_output_text(output.output, &format!("{prefix}.output"))?;
            let id = output.id.unwrap_or_else(|| new_id("fco"));
            Ok((
                Some(Item::FunctionOutput {
                    call_id: output.call_id.clone(),
                    output: text.clone(),
                    is_error: false,
                }),
                StoredItem::FunctionCallOutput {
                    id,
                    call_id: output.call_id,
                    output: text,
                    status: "completed",
                },
            ))
        }
        "reasoning" => {
            let reasoning: WireReasoningItem = from_value(entry, prefix)?;
            let summary: Vec<String> = reasoning
                .summary
                .unwrap_or_default()
                .into_iter()
                .map(|part| part.text)
                .collect();
            let content: Vec<String> = reasoning
                .content
                .unwrap_or_default()
                .into_iter()
                .map(|part| part.text)
                .collect();
            // The full reasoning when the client has it, else its summary.
            let text = if content.is_empty() {
                summary.join("\n\n")
            } else {
                content.join("")
            };
            let id = reasoning.id.unwrap_or_else(|| new_id("rs"));
            let envelope = reasoning
                .encrypted_content
                .as_deref()
                .map(Envelope::open)
                .unwrap_or_default();
            let item = match envelope {
                Envelope {
                    signature: Some(signature),
                    call_id: Some(call_id),
                    ..
                } => {
                    call_signatures.push((call_id, signature));
                    None
                }
                Envelope {
                    signature,
                    encrypted,
                    ..
                } => (!text.is_empty() || signature.is_some() || encrypted.is_some()).then(|| {
                    Item::Reasoning {
                        id: Some(id.clone()),
                        text,
                        summary: summary.clone(),
                        signature,
                        encrypted,
                    }
                }),
            };
            Ok((
                item,
                StoredItem::Reasoning {
                    id,
                    summary: summary
                        .into_iter()
                        .map(|text| SummaryText {
                            kind: "summary_text",
                            text,
                        })
                        .collect(),
                    content: content.into_iter().map(ReasoningText::new).collect(),
                    encrypted_content: reasoning.encrypted_content,
                    status: None,
                },
            ))
        }
        // A search that ran earlier (an output item sent back, or stored context): kept in the
        // record, while the model sees the answer that cited it, not the search itself.
        "web_search_call" => decode_web_search_call(entry, prefix, new_id),
        "item_reference" => Err(unsupported_value(
            &format!("{prefix}.type"),
            "Invalid value: 'item_reference'. Item references are not supported by this server; \
             send the item itself or use 'previous_response_id'.",
        )),
        other => Err(unsupported_value(
            &format!("{prefix}.type"),
            &format!(
                "Invalid value: '{other}'. Supported values are: 'message', 'function_call', \
                 'function_call_output', 'reasoning', and 'web_search_call'."
            ),
        )),
    }
}

fn decode_message(
    entry: Value,
    prefix: &str,
    new_id: &mut dyn FnMut(&str) -> String,
) -> Result<(Option<Item>, StoredItem), Error> {
    let message: WireMessage = from_value(entry, prefix)?;
    let role = match message.role.as_str() {
        "user" => Role::User,
        "system" => Role::System,
        "developer" => Role::Developer,
        "assistant" => Role::Assistant,
        other => {
            return Err(Error::invalid(
                format!("{prefix}.role"),
                format!(
                    "Invalid value: '{other}'. Supported values are: 'user', 'assistant', \
                     'system', and 'developer'."
                ),
            ))
        }
    };
    let content_param = format!("{prefix}.content");
    let assistant = role == Role::Assistant;
    let (parts, content) = match message.content {
        Value::String(text) => {
            let record = if assistant {
                output_text(text.clone())
            } else {
                ItemContent::InputText { text: text.clone() }
            };
            (vec![ContentPart::Text(text)], vec![record])
        }
        Value::Array(entries) => {
            let mut parts = Vec::with_capacity(entries.len());
            let mut records = Vec::with_capacity(entries.len());
            for (index, entry) in entries.into_iter().enumerate() {
                let (part, record) =
                    decode_part(entry, &format!("{content_param}[{index}]"), assistant)?;
                parts.push(part);
                records.push(record);
            }
            (parts, records)
        }
        other => {
            return Err(invalid_type(
                &content_param,
                "a string or an array of content parts",
                &other,
            ))
        }
    };
    let id = message.id.unwrap_or_else(|| new_id("msg"));
    Ok((
        Some(Item::Message {
            role,
            parts,
            name: None,
        }),
        StoredItem::Message {
            id,
            role: role.as_str().to_owned(),
            status: "completed",
            content,
        },
    ))
}

fn output_text(text: String) -> ItemContent {
    ItemContent::OutputText {
        text,
        annotations: Vec::new(),
        logprobs: Vec::new(),
    }
}

fn decode_part(
    entry: Value,
    prefix: &str,
    assistant: bool,
) -> Result<(ContentPart, ItemContent), Error> {
    let kind = type_field(&entry, prefix)?;
    let allowed: &[&str] = if assistant {
        &["output_text", "refusal"]
    } else {
        &["input_text", "input_image", "input_file"]
    };
    if !allowed.contains(&kind.as_str()) {
        let list = if assistant {
            "'output_text' and 'refusal'"
        } else {
            "'input_text', 'input_image', and 'input_file'"
        };
        return Err(Error::invalid(
            format!("{prefix}.type"),
            format!("Invalid value: '{kind}'. Supported values are: {list}."),
        ));
    }
    let keys: &[&str] = match kind.as_str() {
        "input_text" => &["type", "text", "prompt_cache_breakpoint"],
        "output_text" => &["type", "text", "annotations", "logprobs"],
        "refusal" => &["type", "refusal"],
        "input_image" => &[
            "type",
            "image_url",
            "file_id",
            "detail",
            "prompt_cache_breakpoint",
        ],
        _ => &[
            "type",
            "file_id",
            "filename",
            "file_data",
            "file_url",
            "detail",
            "prompt_cache_breakpoint",
        ],
    };
    known_keys(&entry, prefix, keys)?;
    Ok(match kind.as_str() {
        "input_text" => {
            let text = from_value::<WireTextPart>(entry, prefix)?.text;
            (
                ContentPart::Text(text.clone()),
                ItemContent::InputText { text },
            )
        }
        "output_text" => {
            let text = from_value::<WireTextPart>(entry, prefix)?.text;
            (ContentPart::Text(text.clone()), output_text(text))
        }
        "refusal" => {
            let refusal = from_value::<WireRefusalPart>(entry, prefix)?.refusal;
            (
                ContentPart::Refusal(refusal.clone()),
                ItemContent::Refusal { refusal },
            )
        }
        "input_image" => {
            let image: WireImagePart = from_value(entry, prefix)?;
            let detail = image.detail.unwrap_or_else(|| "auto".to_owned());
            one_of(
                &format!("{prefix}.detail"),
                &detail,
                &["low", "high", "auto", "original"],
            )?;
            let url = match (&image.image_url, &image.file_id) {
                (Some(url), _) => url.clone(),
                (None, Some(file_id)) => file_id.clone(),
                (None, None) => {
                    return Err(Error::invalid(
                        prefix,
                        format!("Invalid '{prefix}': one of 'image_url' or 'file_id' is required."),
                    ))
                }
            };
            (
                ContentPart::Image {
                    url,
                    detail: Some(detail.clone()),
                },
                ItemContent::InputImage {
                    image_url: image.image_url,
                    file_id: image.file_id,
                    detail,
                },
            )
        }
        _ => {
            let file: WireFilePart = from_value(entry, prefix)?;
            if file.file_id.is_none() && file.file_data.is_none() && file.file_url.is_none() {
                return Err(Error::invalid(
                    prefix,
                    format!(
                        "Invalid '{prefix}': one of 'file_id', 'file_data' or 'file_url' is \
                         required."
                    ),
                ));
            }
            (
                ContentPart::File {
                    file_id: file.file_id.clone(),
                    filename: file.filename.clone(),
                    // A URL travels as the file's data: `media_source` tells the two apart.
                    data: file.file_data.clone().or_else(|| file.file_url.clone()),
                },
                ItemContent::InputFile {
                    file_id: file.file_id,
                    filename: file.filename,
                    file_data: file.file_data,
                    file_url: file.file_url,
                },
            )
        }
    })
}

/// A tool result is a string or a list of content parts, of which only text is supported.
fn function_output_text(output: Value, param: &str) -> Result<String, Error> {
    match output {
        Value::String(text) => Ok(text),
        Value::Array(parts) => {
            let mut text = String::new();
            for (index, part) in parts.into_iter().enumerate() {
                let prefix = format!("{param}[{index}]");
                let kind = type_field(&part, &prefix)?;
                if kind != "input_text" {
                    return Err(unsupported_value(
                        &format!("{prefix}.type"),
                        &format!(
                            "Invalid value: '{kind}'. Only 'input_text' parts are supported in \
                             tool outputs."
                        ),
                    ));
                }
                text.push_str(&from_value::<WireTextPart>(part, &prefix)?.text);
            }
            Ok(text)
        }
        other => Err(invalid_type(
            param,
            "a string or an array of content parts",
            &other,
        )),
    }
}

fn decode_tools(tools: Vec<Value>) -> Result<(Vec<Tool>, Option<WebSearch>), Error> {
    let mut functions = Vec::new();
    let mut web_search = None;
    for (index, tool) in tools.into_iter().enumerate() {
        let prefix = format!("tools[{index}]");
        let kind = type_field(&tool, &prefix)?;
        match kind.as_str() {
            "function" => {
                known_keys(
                    &tool,
                    &prefix,
                    &[
                        "type",
                        "name",
                        "description",
                        "parameters",
                        "strict",
                        "defer_loading",
                        "allowed_callers",
                        "output_schema",
                    ],
                )?;
                let function: WireFunctionTool = from_value(tool, &prefix)?;
                check_name(&format!("{prefix}.name"), &function.name)?;
                if let Some(parameters) = &function.parameters {
                    if !parameters.is_object() && !parameters.is_null() {
                        return Err(invalid_type(
                            &format!("{prefix}.parameters"),
                            "an object",
                            parameters,
                        ));
                    }
                }
                if functions
                    .iter()
                    .any(|Tool::Function(existing): &Tool| existing.name == function.name)
                {
                    return Err(Error::invalid(
                        format!("{prefix}.name"),
                        format!(
                            "Invalid '{prefix}.name': duplicate function name '{}'.",
                            function.name
                        ),
                    ));
                }
                let parameters = function.parameters.filter(Value::is_object);
                // OpenAI's rule: with `strict` omitted, a tool is strict when its schema is
                // compatible with strict mode and best-effort otherwise; only an explicit
                // `strict: true` makes an incompatible schema an error (raised below).
                let strict = function.strict.unwrap_or_else(|| {
                    parameters.as_ref().is_none_or(|schema| {
                        switchboard_model::strict::check_strict(schema).is_ok()
                    })
                });
                functions.push(Tool::Function(FunctionTool {
                    name: function.name,
                    description: function.description,
                    parameters,
                    strict,
                }));
            }
            "web_search"
            | "web_search_2025_08_26"
            | "web_search_preview"
            | "web_search_preview_2025_03_11" => {
                known_keys(
                    &tool,
                    &prefix,
                    &[
                        "type",
                        "search_context_size",
                        "user_location",
                        "filters",
                        "external_web_access",
                        "search_content_types",
                    ],
                )?;
                let search: WireWebSearchTool = from_value(tool, &prefix)?;
                if let Some(size) = &search.search_context_size {
                    one_of(
                        &format!("{prefix}.search_context_size"),
                        size,
                        &["low", "medium", "high"],
                    )?;
                }
                web_search = Some(WebSearch {
                    context_size: search.search_context_size,
                    user_location: search.user_location,
                    allowed_domains: allowed_domains(search.filters.as_ref(), &prefix)?,
                    blocked_domains: Vec::new(),
                });
            }
            "file_search"
            | "computer_use_preview"
            | "computer"
            | "mcp"
            | "code_interpreter"
            | "image_generation"
            | "local_shell"
            | "shell"
            | "custom"
            | "apply_patch"
            | "namespace"
            | "tool_search"
            | "programmatic_tool_calling" => {
                return Err(unsupported_value(
                    &format!("{prefix}.type"),
                    &format!(
                        "Invalid value: '{kind}'. This server supports 'function' and \
                         'web_search' tools only."
                    ),
                ))
            }
            other => {
                return Err(Error::invalid(
                    format!("{prefix}.type"),
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'function' and \
                         'web_search'."
                    ),
                ))
            }
        }
    }
    Ok((functions, web_search))
}

fn decode_tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<ToolChoice, Error> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                one_of("tool_choice", other, &["none", "auto", "required"])?;
                ToolChoice::Auto
            }
        },
        Some(object @ Value::Object(_)) => {
            let kind = type_field(&object, "tool_choice")?;
            if kind != "function" {
                return Err(unsupported_value(
                    "tool_choice.type",
                    &format!(
                        "Invalid value: '{kind}'. Supported values are: 'function' (or the \
                         strings 'none', 'auto' and 'required')."
                    ),
                ));
            }
            known_keys(&object, "tool_choice", &["type", "name"])?;
            ToolChoice::Function(from_value::<WireNamedFunction>(object, "tool_choice")?.name)
        }
        Some(other) => return Err(invalid_type("tool_choice", "a string or an object", &other)),
    };
    check_tool_choice(choice, tools, |name| {
        (
            "tool_choice.name",
            format!("Tool choice '{name}' not found in 'tools' parameter."),
        )
    })
}

fn decode_text(text: Option<WireText>) -> Result<(OutputFormat, Option<String>), Error> {
    let Some(text) = text else {
        return Ok((OutputFormat::Text, None));
    };
    if let Some(verbosity) = &text.verbosity {
        one_of("text.verbosity", verbosity, &["low", "medium", "high"])?;
    }
    let format = match text.format {
        None | Some(Value::Null) => OutputFormat::Text,
        Some(format) => {
            let kind = type_field(&format, "text.format")?;
            let keys: &[&str] = if kind == "json_schema" {
                &["type", "name", "description", "schema", "strict"]
            } else {
                &["type"]
            };
            known_keys(&format, "text.format", keys)?;
            match kind.as_str() {
                "text" => OutputFormat::Text,
                "json_object" => OutputFormat::JsonObject,
                "json_schema" => {
                    let spec: WireJsonSchemaFormat = from_value(format, "text.format")?;
                    check_name("text.format.name", &spec.name)?;
                    let schema = match spec.schema {
                        None => return Err(missing("text.format.schema")),
                        Some(schema @ Value::Object(_)) => schema,
                        Some(other) => {
                            return Err(invalid_type("text.format.schema", "an object", &other))
                        }
                    };
                    OutputFormat::JsonSchema {
                        name: spec.name,
                        description: spec.description,
                        schema,
                        strict: spec.strict.unwrap_or(false),
                    }
                }
                other => {
                    return Err(Error::invalid(
                        "text.format.type",
                        format!(
                            "Invalid value: '{other}'. Supported values are: 'text', \
                             'json_object', and 'json_schema'."
                        ),
                    ))
                }
            }
        }
    };
    Ok((format, text.verbosity))
}

fn decode_reasoning(
    reasoning: Option<WireReasoning>,
) -> Result<(Option<ReasoningEffort>, Option<String>), Error> {
    let Some(reasoning) = reasoning else {
        return Ok((None, None));
    };
    let effort = match reasoning.effort.as_deref() {
        None | Some("none") => None,
        Some("minimal") => Some(ReasoningEffort::Minimal),
        Some("low") => Some(ReasoningEffort::Low),
        Some("medium") => Some(ReasoningEffort::Medium),
        Some("high" | "xhigh" | "max") => Some(ReasoningEffort::High),
        Some(other) => {
            one_of(
                "reasoning.effort",
                other,
                &["none", "minimal", "low", "medium", "high", "xhigh", "max"],
            )?;
            None
        }
    };
    let summary = reasoning.summary.or(reasoning.generate_summary);
    if let Some(summary) = &summary {
        one_of(
            "reasoning.summary",
            summary,
            &["auto", "concise", "detailed"],
        )?;
    }
    Ok((effort, summary))
}

/// The `web_search` tool's `filters`: `{"allowed_domains": [...]}` or null.
fn allowed_domains(filters: Option<&Value>, prefix: &str) -> Result<Vec<String>, Error> {
    let path = format!("{prefix}.filters");
    match filters {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(filters @ Value::Object(fields)) => {
            known_keys(filters, &path, &["allowed_domains"])?;
            match fields.get("allowed_domains") {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(i, entry)| {
                        entry.as_str().map(str::to_owned).ok_or_else(|| {
                            invalid_type(&format!("{path}.allowed_domains[{i}]"), "a string", entry)
                        })
                    })
                    .collect(),
                Some(other) => Err(invalid_type(
                    &format!("{path}.allowed_domains"),
                    "an array",
                    other,
                )),
            }
        }
        Some(other) => Err(invalid_type(&path, "an object", other)),
    }
}

/// A `web_search_call` input item: `{id, status, action: {type: "search", query, sources}}`.
fn decode_web_search_call(
    entry: Value,
    prefix: &str,
    new_id: &mut dyn FnMut(&str) -> String,
) -> Result<(Option<Item>, StoredItem), Error> {
    let call: WireWebSearchCall = from_value(entry, prefix)?;
    let action = call.action.unwrap_or_default();
    if let Some(kind) = &action.kind {
        one_of(
            &format!("{prefix}.action.type"),
            kind,
            &["search", "open_page", "find"],
        )?;
    }
    let query = action
        .query
        .or_else(|| action.queries.and_then(|q| q.into_iter().next()))
        .unwrap_or_default();
    let sources = action.sources.map(|sources| {
        sources
            .into_iter()
            .map(|source| UrlSource {
                kind: "url",
                url: source.url,
            })
            .collect()
    });
    Ok((
        None,
        StoredItem::WebSearchCall {
            id: call.id.unwrap_or_else(|| new_id("ws")),
            status: "completed",
            action: WebSearchAction {
                kind: "search",
                query,
                sources,
            },
        },
    ))
}

#[derive(Deserialize)]
struct WireWebSearchCall {
    id: Option<String>,
    action: Option<WireWebSearchAction>,
}

#[derive(Deserialize, Default)]
struct WireWebSearchAction {
    #[serde(rename = "type")]
    kind: Option<String>,
    query: Option<String>,
    queries: Option<Vec<String>>,
    sources: Option<Vec<WireUrlSource>>,
}

#[derive(Deserialize)]
struct WireUrlSource {
    url: String,
}

/// Validates `include`. Logprobs and encrypted reasoning are honoured; the other values name
/// outputs of tools this server does not run, so there is nothing to add for them.
fn decode_include(include: &[String]) -> Result<(), Error> {
    const VALUES: &[&str] = &[
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    ];
    for (index, value) in include.iter().enumerate() {
        one_of(&format!("include[{index}]"), value, VALUES)?;
    }
    Ok(())
}
