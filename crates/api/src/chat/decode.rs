//! Decoding and validating a Chat Completions request body into a [`ChatRequest`].
//!
//! Shapes follow `CreateChatCompletionRequest` in the OpenAI spec. Errors mirror OpenAI's: each
//! names the offending `param` in the surface's own path syntax (`messages[0].content`,
//! `tools[1].function.name`) and, for ranges, the bound and the value received. Unknown fields
//! are rejected at every level, as OpenAI does (`Unknown parameter: 'messages[0].foo'.`), except
//! what a client echoing a response message back sends (`annotations`, and `parsed` /
//! `parsed_arguments` from the SDKs' `parse` helpers). A JSON `null` for an optional field means
//! "not given".
//!
//! This module does not check the catalog (model existence, capabilities, context window) and
//! does not apply defaults that depend on the model; the gateway does.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::reasoning::{decode_details, ReasoningDetail};
use switchboard_model::{
    ContentPart, Error, FunctionTool, Item, OutputFormat, ReasoningEffort, Request, RequestField,
    Role, Sampling, Tool, ToolChoice, WebSearch,
};

use crate::wire::{
    bounded_decimal, bounded_integer, check_inert_fields, check_name, check_tool_choice,
    decode_metadata, from_value, invalid_type, known_keys, missing, one_of, optional_enum,
    parse_object, required_model, type_field, WirePromptCacheOptions, WireRefusalPart,
    WireTextPart,
};

/// A decoded Chat Completions request: the canonical request plus what only this surface's
/// transport cares about.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub request: Request,
    /// Answer with SSE chunks instead of one body.
    pub stream: bool,
    /// `stream_options.include_usage`: end the stream with a usage chunk.
    pub include_usage: bool,
    /// `service_tier` as asked (validated against the spec's values); informational only.
    pub service_tier: Option<String>,
    /// `store`: whether the caller asked for the completion to be stored.
    pub store: bool,
}

/// Decodes and validates a request body.
///
/// # Errors
/// An [`ErrorKind::InvalidRequest`] (or [`ErrorKind::Unsupported`] for deprecated or unsupported
/// features) naming the offending `param`.
pub fn decode_chat_request(body: &[u8]) -> Result<ChatRequest, Error> {
    let value = parse_object(body, KNOWN_PARAMS)?;
    let wire: WireRequest = from_value(value, "")?;
    wire.into_chat_request()
}

/// This surface's name for each request field that may need a capability.
#[must_use]
pub fn param_name(field: RequestField) -> String {
    match field {
        RequestField::Tools => "tools".into(),
        RequestField::ToolParameters(index) => format!("tools[{index}].function.parameters"),
        RequestField::Conversation => "messages".into(),
        RequestField::OutputFormat => "response_format".into(),
        RequestField::ReasoningEffort => "reasoning_effort".into(),
        RequestField::WebSearch => "web_search_options".into(),
        RequestField::OutputModalities => "modalities".into(),
        RequestField::Choices => "n".into(),
        RequestField::LogitBias => "logit_bias".into(),
        RequestField::Logprobs => "logprobs".into(),
        RequestField::StopSequences => "stop".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes. Everything optional is an `Option` so that `null` and absence mean the same.

/// Every top-level parameter of `CreateChatCompletionRequest`; anything else is rejected.
const KNOWN_PARAMS: &[&str] = &[
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// The top level. Fields without effect here (`verbosity`, the prompt cache hints,
/// `safety_identifier`) are still typed and checked.
#[derive(Deserialize)]
struct WireRequest {
    verbosity: Option<String>,
    prompt_cache_key: Option<String>,
    prompt_cache_retention: Option<String>,
    prompt_cache_options: Option<WirePromptCacheOptions>,
    safety_identifier: Option<String>,
    model: Option<String>,
    messages: Option<Vec<Value>>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<WireStreamOptions>,
    reasoning_effort: Option<String>,
    web_search_options: Option<WireWebSearch>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<i64>,
    seed: Option<i64>,
    stop: Option<Value>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    logit_bias: Option<Map<String, Value>>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    user: Option<String>,
    metadata: Option<Map<String, Value>>,
    store: Option<bool>,
    service_tier: Option<String>,
    modalities: Option<Vec<String>>,
    prediction: Option<Value>,
    audio: Option<Value>,
    function_call: Option<Value>,
    functions: Option<Value>,
    moderation: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStreamOptions {
    include_usage: Option<bool>,
    /// Accepted and ignored: we never add obfuscation padding.
    include_obfuscation: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWebSearch {
    search_context_size: Option<String>,
    user_location: Option<Value>,
    /// The Responses `web_search` tool's filters, which OpenAI-family models take here too.
    filters: Option<WireSearchFilters>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSearchFilters {
    allowed_domains: Option<Vec<String>>,
}

/// System, developer and user messages (the role is read before this is decoded).
#[derive(Deserialize)]
struct WireContentMessage {
    content: Option<Value>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireAssistantMessage {
    content: Option<Value>,
    refusal: Option<String>,
    name: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
    function_call: Option<Value>,
    reasoning_details: Option<Vec<ReasoningDetail>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunctionCall {
    name: String,
    arguments: String,
    /// Set by the SDKs' `parse` helpers on a response; ignored when sent back.
    #[serde(default, rename = "parsed_arguments")]
    _parsed_arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireToolMessage {
    content: Option<Value>,
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct WireImagePart {
    image_url: WireImageUrl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireImageUrl {
    url: String,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct WireAudioPart {
    input_audio: WireInputAudio,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInputAudio {
    data: String,
    format: String,
}

#[derive(Deserialize)]
struct WireFilePart {
    file: WireFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFile {
    file_id: Option<String>,
    file_data: Option<String>,
    filename: Option<String>,
}

#[derive(Deserialize)]
struct WireFunctionToolDef {
    function: Option<WireFunctionDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunctionDef {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct WireNamedToolChoice {
    function: Option<WireFunctionName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunctionName {
    name: String,
}

#[derive(Deserialize)]
struct WireJsonSchemaFormat {
    json_schema: Option<WireJsonSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireJsonSchema {
    name: String,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Wire → canonical.

impl WireRequest {
    fn into_chat_request(self) -> Result<ChatRequest, Error> {
        reject_deprecated("functions", self.functions.as_ref(), "tools")?;
        reject_deprecated("function_call", self.function_call.as_ref(), "tool_choice")?;
        if self.moderation.is_some() {
            return Err(Error::unsupported(
                "moderation",
                "The 'moderation' parameter is not supported by this server.",
            )
            .with_code("unsupported_parameter"));
        }

        self.check_inert_fields()?;
        let model = required_model(self.model)?;

        let messages = self.messages.ok_or_else(|| missing("messages"))?;
        if messages.is_empty() {
            return Err(Error::invalid(
                "messages",
                "Invalid 'messages': empty array. 'messages' must contain at least one message.",
            ));
        }
        let mut items = Vec::new();
        let mut answerable_calls = None;
        for (index, message) in messages.into_iter().enumerate() {
            decode_message(
                message,
                &format!("messages[{index}]"),
                &mut items,
                &mut answerable_calls,
            )?;
        }

        let stream = self.stream.unwrap_or(false);
        let include_usage = match self.stream_options {
            None => false,
            Some(_) if !stream => {
                return Err(Error::invalid(
                    "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                ))
            }
            Some(options)
                if options
                    .include_obfuscation
                    .as_ref()
                    .is_some_and(|v| !v.is_boolean() && !v.is_null()) =>
            {
                return Err(invalid_type(
                    "stream_options.include_obfuscation",
                    "a boolean",
                    options.include_obfuscation.as_ref().unwrap_or(&Value::Null),
                ))
            }
            Some(options) => options.include_usage.unwrap_or(false),
        };

        let tools = match self.tools {
            None => Vec::new(),
            Some(tools) => tools
                .into_iter()
                .enumerate()
                .map(|(index, tool)| decode_tool(tool, &format!("tools[{index}]")))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let tool_choice = decode_tool_choice(self.tool_choice, &tools)?;

        let (extra_output_modalities, wants_audio) = decode_modalities(self.modalities)?;
        match (&self.audio, wants_audio) {
            (Some(Value::Object(_)), true) | (None, false) => {}
            (None, true) => {
                return Err(Error::invalid(
                    "audio",
                    "Missing required parameter: 'audio'. Audio output requested with \
                     'modalities' requires the 'audio' parameter.",
                ))
            }
            (Some(Value::Object(_)), false) => {
                return Err(Error::invalid(
                    "audio",
                    "Invalid 'audio': the 'audio' parameter is only allowed when 'modalities' \
                     includes 'audio'.",
                ))
            }
            (Some(other), _) => return Err(invalid_type("audio", "an object", other)),
        }
        if let Some(prediction) = &self.prediction {
            // Predicted outputs only speed up generation; the output is the same without them.
            if !prediction.is_object() {
                return Err(invalid_type("prediction", "an object", prediction));
            }
        }

        let sampling = Sampling {
            temperature: bounded_decimal("temperature", self.temperature, 0.0, 2.0)?.unwrap_or(1.0),
            top_p: bounded_decimal("top_p", self.top_p, 0.0, 1.0)?.unwrap_or(1.0),
            top_k: None,
            // Wrapping negative seeds into u64 keeps every i64 seed distinct and deterministic.
            #[allow(clippy::cast_sign_loss)]
            seed: self.seed.map(|seed| seed as u64),
            presence_penalty: bounded_decimal(
                "presence_penalty",
                self.presence_penalty,
                -2.0,
                2.0,
            )?
            .unwrap_or(0.0),
            frequency_penalty: bounded_decimal(
                "frequency_penalty",
                self.frequency_penalty,
                -2.0,
                2.0,
            )?
            .unwrap_or(0.0),
            logit_bias: decode_logit_bias(self.logit_bias)?,
            stop: decode_stop(self.stop)?,
            max_output_tokens: decode_max_tokens(self.max_tokens, self.max_completion_tokens)?,
            n: bounded_integer("n", self.n, 1, 128)?.unwrap_or(1),
            logprobs: self.logprobs.unwrap_or(false),
            top_logprobs: decode_top_logprobs(self.top_logprobs, self.logprobs)?,
        };

        let request = Request {
            model,
            items,
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
            tools,
            tool_choice,
            output_format: decode_response_format(self.response_format)?,
            sampling,
            reasoning_effort: decode_reasoning_effort(self.reasoning_effort)?,
            reasoning_budget: None,
            web_search: decode_web_search(self.web_search_options)?,
            extra_output_modalities,
            user: self.user,
            metadata: decode_metadata(self.metadata)?,
            cache_marks: Vec::new(),
            anthropic_beta: Vec::new(),
            service_tier: None,
            request_id: None,
        };
        Ok(ChatRequest {
            request,
            stream,
            include_usage,
            service_tier: decode_service_tier(self.service_tier)?,
            store: self.store.unwrap_or(false),
        })
    }
}

impl WireRequest {
    /// Fields accepted without effect still have OpenAI's types and values.
    fn check_inert_fields(&self) -> Result<(), Error> {
        optional_enum(
            "verbosity",
            self.verbosity.as_ref(),
            &["low", "medium", "high"],
        )?;
        check_inert_fields(
            self.safety_identifier.as_ref(),
            self.prompt_cache_key.as_ref(),
            self.prompt_cache_retention.as_ref(),
            self.prompt_cache_options.as_ref(),
        )?;
        Ok(())
    }
}

fn reject_deprecated(param: &str, value: Option<&Value>, instead: &str) -> Result<(), Error> {
    match value {
        None => Ok(()),
        Some(_) => Err(Error::unsupported(
            param,
            format!(
                "The '{param}' parameter is deprecated and not supported; use '{instead}' instead."
            ),
        )
        .with_code("unsupported_parameter")),
    }
}

/// Which content part types a role may send.
#[derive(Clone, Copy)]
enum PartSet {
    /// system, developer, tool
    TextOnly,
    User,
    Assistant,
}

impl PartSet {
    fn allows(self, kind: &str) -> bool {
        match self {
            Self::TextOnly => kind == "text",
            Self::User => matches!(kind, "text" | "image_url" | "input_audio" | "file"),
            Self::Assistant => matches!(kind, "text" | "refusal"),
        }
    }

    fn supported(self) -> &'static str {
        match self {
            Self::TextOnly => "'text'",
            Self::User => "'text', 'image_url', 'input_audio', and 'file'",
            Self::Assistant => "'text' and 'refusal'",
        }
    }
}

/// The fields each role's message may carry. An assistant message may also carry what the
/// official SDKs put on a response message and send back when a client appends it as is:
/// `annotations`, `parsed` from `chat.completions.parse`, and the `reasoning_content` our own
/// responses carry for reasoning models (ignored: its text is not owed to any provider). Its
/// `reasoning_details` are decoded: providers that made them need them back.
fn message_keys(role: &str) -> &'static [&'static str] {
    match role {
        "assistant" => &[
            "role",
            "content",
            "refusal",
            "name",
            "audio",
            "tool_calls",
            "function_call",
            "annotations",
            "parsed",
            "reasoning_content",
            "reasoning_details",
        ],
        // LangChain names the tool on its tool messages; OpenAI accepts that.
        "tool" => &["role", "content", "tool_call_id", "name"],
        _ => &["role", "content", "name"],
    }
}

/// Decodes one message. `answerable_calls` holds the ids of the tool calls that tool messages
/// may answer now: those of the latest assistant message, until another role intervenes.
fn decode_message(
    message: Value,
    prefix: &str,
    items: &mut Vec<Item>,
    answerable_calls: &mut Option<Vec<String>>,
) -> Result<(), Error> {
    let Value::Object(fields) = &message else {
        return Err(invalid_type(prefix, "an object", &message));
    };
    let role_param = format!("{prefix}.role");
    let role = match fields.get("role") {
        None | Some(Value::Null) => return Err(missing(&role_param)),
        Some(Value::String(role)) => role.clone(),
        Some(other) => return Err(invalid_type(&role_param, "a string", other)),
    };
    let content_param = format!("{prefix}.content");
    if matches!(
        role.as_str(),
        "system" | "developer" | "user" | "assistant" | "tool"
    ) {
        known_keys(&message, prefix, message_keys(&role))?;
    }
    if role != "tool" {
        *answerable_calls = None;
    }
    match role.as_str() {
        "system" | "developer" | "user" => {
            let (role, set) = match role.as_str() {
                "system" => (Role::System, PartSet::TextOnly),
                "developer" => (Role::Developer, PartSet::TextOnly),
                _ => (Role::User, PartSet::User),
            };
            let wire: WireContentMessage = from_value(message, prefix)?;
            let content = wire.content.ok_or_else(|| missing(&content_param))?;
            let parts = decode_content(content, &content_param, set)?;
            items.push(Item::Message {
                role,
                parts,
                name: wire.name,
            });
        }
        "assistant" => {
            let wire: WireAssistantMessage = from_value(message, prefix)?;
            if wire.function_call.is_some() {
                return Err(Error::unsupported(
                    format!("{prefix}.function_call"),
                    "'function_call' on assistant messages is deprecated and not supported; \
                     use 'tool_calls' instead.",
                )
                .with_code("unsupported_parameter"));
            }
            let tool_calls = wire.tool_calls.unwrap_or_default();
            let mut parts = match wire.content {
                Some(content) => decode_content(content, &content_param, PartSet::Assistant)?,
                None => Vec::new(),
            };
            if let Some(refusal) = wire.refusal {
                parts.push(ContentPart::Refusal(refusal));
            }
            if !tool_calls.is_empty() {
                // `"content": ""` alongside tool calls carries nothing.
                parts.retain(|part| !matches!(part, ContentPart::Text(text) if text.is_empty()));
            } else if parts.is_empty() {
                return Err(missing(&content_param));
            }
            let call_ids: Vec<String> = tool_calls.iter().map(|call| call.id.clone()).collect();
            let (reasoning, mut call_signatures) =
                decode_details(wire.reasoning_details.unwrap_or_default(), &call_ids);
            items.extend(reasoning);
            if !parts.is_empty() {
                items.push(Item::Message {
                    role: Role::Assistant,
                    parts,
                    name: wire.name,
                });
            }
            let mut ids = Vec::with_capacity(tool_calls.len());
            for (index, call) in tool_calls.into_iter().enumerate() {
                ids.push(call.id.clone());
                match call.kind.as_deref() {
                    None | Some("function") => {}
                    Some(other) => {
                        return Err(Error::unsupported(
                            format!("{prefix}.tool_calls[{index}].type"),
                            format!("Invalid value: '{other}'. Supported values are: 'function'."),
                        )
                        .with_code("unsupported_value"))
                    }
                }
                let signature = call_signatures
                    .iter()
                    .position(|(id, _)| *id == call.id)
                    .map(|at| call_signatures.swap_remove(at).1);
                items.push(Item::FunctionCall {
                    call_id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                    signature,
                });
            }
            if !ids.is_empty() {
                *answerable_calls = Some(ids);
            }
        }
        "tool" => {
            let wire: WireToolMessage = from_value(message, prefix)?;
            let call_id = wire
                .tool_call_id
                .ok_or_else(|| missing(&format!("{prefix}.tool_call_id")))?;
            let content = wire.content.ok_or_else(|| missing(&content_param))?;
            let output = decode_content(content, &content_param, PartSet::TextOnly)?
                .into_iter()
                .filter_map(|part| match part {
                    ContentPart::Text(text) => Some(text),
                    _ => None,
                })
                .collect::<String>();
            // OpenAI's wording, its misspelling included: clients match on it.
            let Some(answerable) = answerable_calls.as_ref() else {
                return Err(Error::invalid(
                    role_param,
                    "Invalid parameter: messages with role 'tool' must be a response to a \
                     preceeding message with 'tool_calls'.",
                ));
            };
            if !answerable.contains(&call_id) {
                return Err(Error::invalid(
                    format!("{prefix}.tool_call_id"),
                    format!(
                        "Invalid parameter: 'tool_call_id' of '{call_id}' not found in \
                         'tool_calls' of previous message."
                    ),
                ));
            }
            items.push(Item::FunctionOutput {
                call_id,
                output,
                is_error: false,
            });
        }
        "function" => {
            return Err(Error::unsupported(
                role_param,
                "The 'function' role is deprecated and not supported; use 'tool' messages \
                 with 'tool_call_id' instead.",
            )
            .with_code("unsupported_value"))
        }
        other => {
            return Err(Error::invalid(
                role_param,
                format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', \
                     'user', 'tool', and 'developer'."
                ),
            ))
        }
    }
    Ok(())
}

fn decode_content(content: Value, param: &str, set: PartSet) -> Result<Vec<ContentPart>, Error> {
    match content {
        Value::String(text) => Ok(vec![ContentPart::Text(text)]),
        Value::Array(parts) if parts.is_empty() => Err(Error::invalid(
            param,
            format!(
                "Invalid '{param}': empty array. Expected an array with minimum length 1, but \
                 got an empty array instead."
            ),
        )),
        Value::Array(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| decode_part(part, &format!("{param}[{index}]"), set))
            .collect(),
        other => Err(invalid_type(
            param,
            "a string or an array of content parts",
            &other,
        )),
    }
}

fn decode_part(part: Value, prefix: &str, set: PartSet) -> Result<ContentPart, Error> {
    let kind = type_field(&part, prefix)?;
    if !set.allows(&kind) {
        return Err(Error::invalid(
            format!("{prefix}.type"),
            format!(
                "Invalid value: '{kind}'. Supported values are: {}.",
                set.supported()
            ),
        ));
    }
    // Each part carries its payload under a key named as its type (`text`, `image_url`, …).
    let keys: &[&str] = if kind == "refusal" {
        &["type", "refusal"]
    } else {
        &["type", kind.as_str(), "prompt_cache_breakpoint"]
    };
    known_keys(&part, prefix, keys)?;
    Ok(match kind.as_str() {
        "text" => ContentPart::Text(from_value::<WireTextPart>(part, prefix)?.text),
        "refusal" => ContentPart::Refusal(from_value::<WireRefusalPart>(part, prefix)?.refusal),
        "image_url" => {
            let image = from_value::<WireImagePart>(part, prefix)?.image_url;
            if let Some(detail) = &image.detail {
                one_of(
                    &format!("{prefix}.image_url.detail"),
                    detail,
                    &["auto", "low", "high"],
                )?;
            }
            ContentPart::Image {
                url: image.url,
                detail: image.detail,
            }
        }
        "input_audio" => {
            let audio = from_value::<WireAudioPart>(part, prefix)?.input_audio;
            one_of(
                &format!("{prefix}.input_audio.format"),
                &audio.format,
                &["wav", "mp3"],
            )?;
            ContentPart::Audio {
                data: audio.data,
                format: audio.format,
            }
        }
        _ => {
            let file = from_value::<WireFilePart>(part, prefix)?.file;
            if file.file_id.is_none() && file.file_data.is_none() {
                return Err(Error::invalid(
                    format!("{prefix}.file"),
                    format!(
                        "Invalid '{prefix}.file': one of 'file_id' or 'file_data' is required."
                    ),
                ));
            }
            ContentPart::File {
                file_id: file.file_id,
                filename: file.filename,
                data: file.file_data,
            }
        }
    })
}

fn decode_tool(tool: Value, prefix: &str) -> Result<Tool, Error> {
    let kind = type_field(&tool, prefix)?;
    match kind.as_str() {
        "function" => {}
        "custom" => {
            return Err(Error::unsupported(
                format!("{prefix}.type"),
                format!(
                    "Invalid value: 'custom'. Supported values are: 'function'. ('{prefix}.type')"
                ),
            )
            .with_code("unsupported_value"))
        }
        other => {
            return Err(Error::invalid(
                format!("{prefix}.type"),
                format!("Invalid value: '{other}'. Supported values are: 'function'."),
            ))
        }
    }
    known_keys(&tool, prefix, &["type", "function"])?;
    let function = from_value::<WireFunctionToolDef>(tool, prefix)?
        .function
        .ok_or_else(|| missing(&format!("{prefix}.function")))?;
    check_name(&format!("{prefix}.function.name"), &function.name)?;
    if let Some(parameters) = &function.parameters {
        if !parameters.is_object() {
            return Err(invalid_type(
                &format!("{prefix}.function.parameters"),
                "an object",
                parameters,
            ));
        }
    }
    Ok(Tool::Function(FunctionTool {
        name: function.name,
        description: function.description,
        parameters: function.parameters,
        strict: function.strict.unwrap_or(false),
    }))
}

fn decode_tool_choice(choice: Option<Value>, tools: &[Tool]) -> Result<ToolChoice, Error> {
    let default = if tools.is_empty() {
        ToolChoice::None
    } else {
        ToolChoice::Auto
    };
    let choice = match choice {
        None => return Ok(default),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(Error::invalid(
                    "tool_choice",
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'none', 'auto', and \
                         'required'."
                    ),
                ))
            }
        },
        Some(object @ Value::Object(_)) => {
            let kind = type_field(&object, "tool_choice")?;
            match kind.as_str() {
                "function" => {}
                "allowed_tools" | "custom" => {
                    return Err(Error::unsupported(
                        "tool_choice.type",
                        format!("Invalid value: '{kind}'. Supported values are: 'function'."),
                    )
                    .with_code("unsupported_value"))
                }
                other => {
                    return Err(Error::invalid(
                        "tool_choice.type",
                        format!("Invalid value: '{other}'. Supported values are: 'function'."),
                    ))
                }
            }
            known_keys(&object, "tool_choice", &["type", "function"])?;
            let name = from_value::<WireNamedToolChoice>(object, "tool_choice")?
                .function
                .ok_or_else(|| missing("tool_choice.function"))?
                .name;
            ToolChoice::Function(name)
        }
        Some(other) => {
            return Err(invalid_type("tool_choice", "a string or an object", &other));
        }
    };
    // `none`/`auto` without tools are harmless, and some clients always send them.
    check_tool_choice(choice, tools, |name| {
        (
            "tool_choice",
            format!(
                "Invalid value for 'tool_choice': function '{name}' is not one of the provided \
                 'tools'."
            ),
        )
    })
}

fn decode_response_format(format: Option<Value>) -> Result<OutputFormat, Error> {
    let Some(format) = format else {
        return Ok(OutputFormat::Text);
    };
    if !format.is_object() {
        return Err(invalid_type("response_format", "an object", &format));
    }
    let kind = type_field(&format, "response_format")?;
    let keys: &[&str] = if kind == "json_schema" {
        &["type", "json_schema"]
    } else {
        &["type"]
    };
    known_keys(&format, "response_format", keys)?;
    match kind.as_str() {
        "text" => Ok(OutputFormat::Text),
        "json_object" => Ok(OutputFormat::JsonObject),
        "json_schema" => {
            let spec = from_value::<WireJsonSchemaFormat>(format, "response_format")?
                .json_schema
                .ok_or_else(|| missing("response_format.json_schema"))?;
            check_name("response_format.json_schema.name", &spec.name)?;
            let schema = match spec.schema {
                None => Value::Object(Map::new()),
                Some(schema @ Value::Object(_)) => schema,
                Some(other) => {
                    return Err(invalid_type(
                        "response_format.json_schema.schema",
                        "an object",
                        &other,
                    ))
                }
            };
            Ok(OutputFormat::JsonSchema {
                name: spec.name,
                description: spec.description,
                schema,
                strict: spec.strict.unwrap_or(false),
            })
        }
        other => Err(Error::invalid(
            "response_format.type",
            format!(
                "Invalid value: '{other}'. Supported values are: 'text', 'json_object', and \
                 'json_schema'."
            ),
        )),
    }
}

/// `none` means no reasoning; the spec's `xhigh` and `max` map to our highest level.
fn decode_reasoning_effort(effort: Option<String>) -> Result<Option<ReasoningEffort>, Error> {
    let Some(effort) = effort else {
        return Ok(None);
    };
    Ok(match effort.as_str() {
        "none" => None,
        "minimal" => Some(ReasoningEffort::Minimal),
        "low" => Some(ReasoningEffort::Low),
        "medium" => Some(ReasoningEffort::Medium),
        "high" | "xhigh" | "max" => Some(ReasoningEffort::High),
        other => {
            return Err(Error::invalid(
                "reasoning_effort",
                format!(
                    "Invalid value: '{other}'. Supported values are: 'none', 'minimal', 'low', \
                     'medium', 'high', 'xhigh', and 'max'."
                ),
            ))
        }
    })
}

fn decode_web_search(options: Option<WireWebSearch>) -> Result<Option<WebSearch>, Error> {
    let Some(options) = options else {
        return Ok(None);
    };
    if let Some(size) = &options.search_context_size {
        one_of(
            "web_search_options.search_context_size",
            size,
            &["low", "medium", "high"],
        )?;
    }
    if let Some(location) = &options.user_location {
        if !location.is_object() {
            return Err(invalid_type(
                "web_search_options.user_location",
                "an object",
                location,
            ));
        }
    }
    Ok(Some(WebSearch {
        context_size: options.search_context_size,
        user_location: options.user_location,
        allowed_domains: options
            .filters
            .and_then(|filters| filters.allowed_domains)
            .unwrap_or_default(),
        blocked_domains: Vec::new(),
    }))
}

/// Returns the non-text modalities and whether audio output was asked for.
fn decode_modalities(modalities: Option<Vec<String>>) -> Result<(Vec<String>, bool), Error> {
    let mut extra = Vec::new();
    for (index, modality) in modalities.unwrap_or_default().into_iter().enumerate() {
        match modality.as_str() {
            "text" => {}
            "audio" => {
                if !extra.contains(&modality) {
                    extra.push(modality);
                }
            }
            other => {
                return Err(Error::invalid(
                    format!("modalities[{index}]"),
                    format!("Invalid value: '{other}'. Supported values are: 'text' and 'audio'."),
                ))
            }
        }
    }
    let wants_audio = !extra.is_empty();
    Ok((extra, wants_audio))
}

fn decode_stop(stop: Option<Value>) -> Result<Vec<String>, Error> {
    match stop {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(if text.is_empty() {
            Vec::new()
        } else {
            vec![text]
        }),
        Some(Value::Array(items)) => {
            if items.len() > 4 {
                return Err(Error::invalid(
                    "stop",
                    format!(
                        "Invalid 'stop': array too long. Expected an array with maximum length \
                         4, but got an array with length {} instead.",
                        items.len()
                    ),
                ));
            }
            let mut stops = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(text) if text.is_empty() => {}
                    Value::String(text) => stops.push(text),
                    other => {
                        return Err(invalid_type(&format!("stop[{index}]"), "a string", &other))
                    }
                }
            }
            Ok(stops)
        }
        Some(other) => Err(invalid_type(
            "stop",
            "a string or an array of strings",
            &other,
        )),
    }
}

fn decode_max_tokens(
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
) -> Result<Option<u32>, Error> {
    let legacy = bounded_integer("max_tokens", max_tokens, 1, i64::from(u32::MAX))?;
    let current = bounded_integer(
        "max_completion_tokens",
        max_completion_tokens,
        1,
        i64::from(u32::MAX),
    )?;
    Ok(current.or(legacy))
}

fn decode_top_logprobs(top: Option<i64>, logprobs: Option<bool>) -> Result<u8, Error> {
    let top: u8 = bounded_integer("top_logprobs", top, 0, 20)?.unwrap_or(0);
    if top > 0 && logprobs != Some(true) {
        return Err(Error::invalid(
            "top_logprobs",
            "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
        ));
    }
    Ok(top)
}

fn decode_logit_bias(bias: Option<Map<String, Value>>) -> Result<Vec<(u32, f32)>, Error> {
    let mut out = Vec::new();
    for (key, value) in bias.unwrap_or_default() {
        let Ok(token) = key.parse::<u32>() else {
            return Err(Error::invalid(
                "logit_bias",
                format!(
                    "Invalid key in 'logit_bias': '{key}'. Keys must be token ids (non-negative \
                     integers)."
                ),
            ));
        };
        let Some(number) = value.as_f64() else {
            return Err(invalid_type(
                &format!("logit_bias.{key}"),
                "a number",
                &value,
            ));
        };
        if !(-100.0..=100.0).contains(&number) {
            return Err(Error::invalid(
                "logit_bias",
                format!(
                    "Invalid 'logit_bias': value for token {key} is out of range. Expected a \
                     value between -100 and 100, but got {number} instead."
                ),
            ));
        }
        #[allow(clippy::cast_possible_truncation)]
        out.push((token, number as f32));
    }
    Ok(out)
}

fn decode_service_tier(tier: Option<String>) -> Result<Option<String>, Error> {
    if let Some(tier) = &tier {
        one_of(
            "service_tier",
            tier,
            &["auto", "default", "flex", "scale", "priority", "fast"],
        )?;
    }
    Ok(tier)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
