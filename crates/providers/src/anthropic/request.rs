//! Canonical request → Anthropic Messages request body (`POST {base_url}/v1/messages`).
//!
//! System and developer messages become the top-level `system`; consecutive turns of one role
//! are merged (the API wants them alternating); tool results are `tool_result` blocks opening
//! the next user turn; reasoning that Claude made goes back as `thinking` /
//! `redacted_thinking` blocks with their signatures, unchanged (tool loops with thinking fail
//! upstream otherwise); reasoning any other provider made is dropped.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::turns::{call_arguments, Turns};
use switchboard_model::{
    CacheTarget, ContentPart, Error, ErrorKind, Family, Item, MediaSource, OutputFormat,
    ReasoningEffort, Request, RequestField, Role, Sealed, Tool, ToolChoice, WebSearch,
};

/// The name of the tool a JSON answer is forced through on models without native structured
/// outputs; its input is the answer.
pub const JSON_TOOL: &str = "json_answer";

/// What the decoder must know about how the request was encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub body: Value,
    /// The answer is the input of [`JSON_TOOL`]: its `tool_use` block is text, not a call.
    pub json_through_tool: bool,
}

/// How to ask for structured output on this upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StructuredOutputs {
    /// Anthropic's structured outputs (`output_config.format`), for models that have them.
    Native,
    /// A forced tool whose input schema is the answer's schema (every tool-capable model).
    #[default]
    ForcedTool,
}

/// How reasoning effort is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThinkingMode {
    /// `thinking: {type: "enabled", budget_tokens}` from [`thinking_budget`] (every thinking
    /// model up to the 4.5 generation).
    #[default]
    Budget,
    /// `thinking: {type: "adaptive"}` with `output_config.effort` (the newer models, where
    /// fixed budgets are deprecated or refused).
    Adaptive,
}

/// Thinking budgets per reasoning effort, in tokens (Anthropic's minimum is 1,024). Each is
/// capped below the request's `max_tokens`, which bounds thinking and answer together.
#[must_use]
pub fn thinking_budget(effort: ReasoningEffort) -> u32 {
    match effort {
        ReasoningEffort::Minimal => 1_024,
        ReasoningEffort::Low => 4_096,
        ReasoningEffort::Medium => 12_288,
        ReasoningEffort::High => 32_768,
    }
}

pub const MIN_THINKING_BUDGET: u32 = 1_024;

/// `max_tokens` for models this table does not know, when the client gives none; thinking
/// budgets come on top.
pub const UNKNOWN_MODEL_MAX_TOKENS: u32 = 4_096;

/// The model family's documented output limit, which is `max_tokens` when the client gives
/// none (Anthropic requires it).
#[must_use]
pub fn documented_max_tokens(model: &str) -> Option<u32> {
    let model = model.to_ascii_lowercase();
    // Longest prefixes first: `claude-opus-4-5` must not match `claude-opus-4`.
    let table: &[(&str, u32)] = &[
        ("claude-opus-4-6", 128_000),
        ("claude-opus-4-7", 128_000),
        ("claude-opus-4-8", 128_000),
        ("claude-sonnet-4-6", 128_000),
        ("claude-opus-4-5", 64_000),
        ("claude-opus-4", 32_000),
        ("claude-sonnet-4", 64_000),
        ("claude-haiku-4", 64_000),
        ("claude-3-7-sonnet", 64_000),
        ("claude-3-5-sonnet", 8_192),
        ("claude-3-5-haiku", 8_192),
        ("claude-3-haiku", 4_096),
        ("claude-3-opus", 4_096),
    ];
    table
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, limit)| *limit)
}

/// Encodes `request` for `upstream_model`.
///
/// # Errors
/// What Anthropic cannot do as asked: several choices, logprobs, logit bias, audio input,
/// provider file ids, tool arguments that are not a JSON object.
pub fn encode_request(
    request: &Request,
    upstream_model: &str,
    structured: StructuredOutputs,
    thinking_mode: ThinkingMode,
) -> Result<Encoded, Error> {
    refuse_unsupported(request)?;
    let sampling = &request.sampling;
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    let max_tokens = match (
        sampling.max_output_tokens,
        documented_max_tokens(upstream_model),
    ) {
        (Some(asked), _) => asked,
        (None, Some(limit)) => limit,
        (None, None) => {
            UNKNOWN_MODEL_MAX_TOKENS
                + request
                    .reasoning_budget
                    .or(request.reasoning_effort.map(thinking_budget))
                    .unwrap_or(0)
        }
    };
    body.insert("max_tokens".into(), max_tokens.into());
    let (system, messages) = conversation(request)?;
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));

    // Anthropic refuses thinking with a forced tool; the forced tool (the client's, or the one
    // a JSON answer goes through) wins, as it is what the answer's shape depends on.
    let forces_tool = matches!(
        request.tool_choice,
        ToolChoice::Required | ToolChoice::Function(_)
    ) && !request.tools.is_empty();
    let json_via_tool =
        request.output_format != OutputFormat::Text && structured == StructuredOutputs::ForcedTool;
    let effort = request
        .reasoning_effort
        .filter(|_| !forces_tool && !json_via_tool);
    let mut output_config = Map::new();
    let thinking = match (effort, thinking_mode) {
        (None, _) => false,
        (Some(effort), ThinkingMode::Budget) => {
            let budget = request
                .reasoning_budget
                .unwrap_or_else(|| thinking_budget(effort))
                .min(max_tokens.saturating_sub(1));
            if budget >= MIN_THINKING_BUDGET {
                body.insert(
                    "thinking".into(),
                    json!({"type": "enabled", "budget_tokens": budget}),
                );
            }
            budget >= MIN_THINKING_BUDGET
        }
        (Some(effort), ThinkingMode::Adaptive) => {
            body.insert("thinking".into(), json!({"type": "adaptive"}));
            let level = match effort {
                ReasoningEffort::Minimal | ReasoningEffort::Low => "low",
                ReasoningEffort::Medium => "medium",
                ReasoningEffort::High => "high",
            };
            output_config.insert("effort".into(), level.into());
            true
        }
    };
    // Anthropic's temperature runs 0..1 (OpenAI's 0..2), newer models refuse temperature and
    // top_p together, and thinking allows neither a temperature nor a top_p below 0.95.
    let temperature_set = (sampling.temperature - 1.0).abs() > f32::EPSILON;
    let top_p_set = (sampling.top_p - 1.0).abs() > f32::EPSILON;
    if !thinking && temperature_set {
        body.insert(
            "temperature".into(),
            json!(round(sampling.temperature.clamp(0.0, 1.0))),
        );
    } else if top_p_set && (!thinking || sampling.top_p >= 0.95) {
        body.insert("top_p".into(), json!(round(sampling.top_p)));
    }
    // Thinking refuses a changed top_k as it refuses a changed temperature.
    if let (Some(top_k), false) = (sampling.top_k, thinking) {
        body.insert("top_k".into(), top_k.into());
    }
    if !sampling.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(sampling.stop));
    }
    if let Some(tier) = request
        .service_tier
        .as_deref()
        .filter(|tier| ["auto", "standard_only"].contains(tier))
    {
        body.insert("service_tier".into(), tier.into());
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }

    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .enumerate()
        .map(|(index, tool)| match tool {
            Tool::Function(function) => {
                let mut entry = Map::new();
                entry.insert("name".into(), function.name.clone().into());
                if let Some(description) = &function.description {
                    entry.insert("description".into(), description.clone().into());
                }
                entry.insert(
                    "input_schema".into(),
                    function
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                if let Some(control) = request.cache_control(CacheTarget::Tool(index)) {
                    entry.insert("cache_control".into(), control.clone());
                }
                Value::Object(entry)
            }
        })
        .collect();
    let mut tool_choice = match &request.tool_choice {
        _ if tools.is_empty() => None,
        ToolChoice::Auto => Some(json!({"type": "auto"})),
        ToolChoice::None => Some(json!({"type": "none"})),
        ToolChoice::Required => Some(json!({"type": "any"})),
        ToolChoice::Function(name) => Some(json!({"type": "tool", "name": name})),
    };
    let mut json_through_tool = false;
    match (&request.output_format, structured) {
        (OutputFormat::Text, _) => {}
        (OutputFormat::JsonSchema { schema, .. }, StructuredOutputs::Native) => {
            output_config.insert(
                "format".into(),
                json!({"type": "json_schema", "schema": schema}),
            );
        }
        (OutputFormat::JsonObject, StructuredOutputs::Native) => {
            output_config.insert(
                "format".into(),
                json!({"type": "json_schema", "schema": {"type": "object"}}),
            );
        }
        (format, StructuredOutputs::ForcedTool) => {
            if !tools.is_empty() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "This model answers in JSON through a forced tool call, which cannot be \
                     combined with other tools.",
                )
                .with_field(RequestField::OutputFormat));
            }
            let schema = match format {
                OutputFormat::JsonSchema { schema, .. } => schema.clone(),
                _ => json!({"type": "object"}),
            };
            tools.push(json!({
                "name": JSON_TOOL,
                "description": "Give the answer. Its input is the whole answer, as JSON.",
                "input_schema": schema,
            }));
            tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
            json_through_tool = true;
        }
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    if let Some(search) = &request.web_search {
        if json_through_tool {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "This model answers in JSON through a forced tool call, which cannot be \
                 combined with web search.",
            )
            .with_field(RequestField::WebSearch));
        }
        tools.push(web_search_tool(search));
        tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
    }
    if let Some(mut choice) = tool_choice {
        if !request.parallel_tool_calls && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), choice);
    }
    body.insert("stream".into(), true.into());
    Ok(Encoded {
        body: Value::Object(body),
        json_through_tool,
    })
}

/// Two decimals, so `0.7f32` goes out as `0.7` rather than `0.699999988079071`.
fn round(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

fn refuse_unsupported(request: &Request) -> Result<(), Error> {
    let sampling = &request.sampling;
    let refuse = |field: RequestField, what: &str| {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("Anthropic models do not support {what}."),
        )
        .with_field(field))
    };
    if sampling.n > 1 {
        return refuse(
            RequestField::Choices,
            "more than one choice per request (n > 1)",
        );
    }
    if !sampling.logit_bias.is_empty() {
        return refuse(RequestField::LogitBias, "logit_bias");
    }
    if sampling.logprobs {
        return refuse(RequestField::Logprobs, "log probabilities");
    }
    Ok(())
}

/// The `system` blocks and the alternating `messages`, with the client's cache breakpoints.
fn conversation(request: &Request) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns = Turns::new("content");
    let marked = |mut block: Value, target: CacheTarget| {
        if let Some(control) = request.cache_control(target) {
            block["cache_control"] = control.clone();
        }
        block
    };
    for (index, item) in request.items.iter().enumerate() {
        let part_at = |part: usize| CacheTarget::Part { item: index, part };
        match item {
            Item::Message {
                role: Role::System | Role::Developer,
                parts,
                ..
            } => {
                for (at, part) in parts.iter().enumerate() {
                    if let ContentPart::Text(text) = part {
                        system.push(marked(json!({"type": "text", "text": text}), part_at(at)));
                    }
                }
            }
            Item::Message {
                role: Role::User,
                parts,
                ..
            } => {
                for (at, part) in parts.iter().enumerate() {
                    turns.push("user", marked(user_block(part)?, part_at(at)));
                }
            }
            Item::Message {
                role: Role::Assistant,
                parts,
                ..
            } => {
                for (at, part) in parts.iter().enumerate() {
                    match part {
                        ContentPart::Text(text) | ContentPart::Refusal(text)
                            if !text.is_empty() =>
                        {
                            let block = json!({"type": "text", "text": text});
                            turns.push("assistant", marked(block, part_at(at)));
                        }
                        _ => {}
                    }
                }
            }
            Item::Reasoning {
                text,
                signature,
                encrypted,
                ..
            } => {
                if let Some(signature) = Sealed::for_family(signature.as_ref(), Family::Anthropic) {
                    turns.push(
                        "assistant",
                        json!({"type": "thinking", "thinking": text, "signature": signature}),
                    );
                }
                if let Some(data) = Sealed::for_family(encrypted.as_ref(), Family::Anthropic) {
                    turns.push(
                        "assistant",
                        json!({"type": "redacted_thinking", "data": data}),
                    );
                }
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => {
                let input = call_arguments(call_id, arguments, "Anthropic")?;
                let block =
                    json!({"type": "tool_use", "id": call_id, "name": name, "input": input});
                turns.push("assistant", marked(block, CacheTarget::Item(index)));
            }
            Item::FunctionOutput {
                call_id,
                output,
                is_error,
            } => {
                let mut block =
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": output});
                if *is_error {
                    block["is_error"] = true.into();
                }
                turns.push("user", marked(block, CacheTarget::Item(index)));
            }
        }
    }
    Ok((system, turns.into_turns()))
}

fn user_block(part: &ContentPart) -> Result<Value, Error> {
    let unsupported = |what: &str| {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("Anthropic models do not accept {what}."),
        )
        .with_field(RequestField::Conversation))
    };
    match part {
        ContentPart::Text(text) | ContentPart::Refusal(text) => {
            Ok(json!({"type": "text", "text": text}))
        }
        ContentPart::Image { .. } => match part.media_source() {
            Some(MediaSource::Inline { media_type, base64 }) => Ok(json!({"type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": base64}})),
            Some(MediaSource::Url(url)) => {
                Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
            }
            _ => unsupported("images by file id"),
        },
        ContentPart::File { filename, .. } => {
            let title = filename.as_deref();
            let mut block = match part.media_source() {
                Some(MediaSource::Inline {
                    media_type: "text/plain",
                    base64,
                }) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(base64)
                        .map_err(|_| {
                            Error::invalid_at(
                                RequestField::Conversation,
                                "A text file's data is not valid base64.",
                            )
                        })?;
                    json!({"type": "document", "source": {"type": "text",
                        "media_type": "text/plain", "data": String::from_utf8_lossy(&bytes)}})
                }
                Some(MediaSource::Inline {
                    media_type: "application/pdf",
                    base64,
                }) => json!({"type": "document", "source": {"type": "base64",
                        "media_type": "application/pdf", "data": base64}}),
                Some(MediaSource::Inline { media_type, base64 })
                    if media_type.starts_with("image/") =>
                {
                    return Ok(json!({"type": "image", "source": {"type": "base64",
                        "media_type": media_type, "data": base64}}));
                }
                Some(MediaSource::Url(url)) => {
                    json!({"type": "document", "source": {"type": "url", "url": url}})
                }
                Some(MediaSource::Inline { media_type, .. }) => {
                    return unsupported(&format!("files of type {media_type}"))
                }
                Some(MediaSource::FileId(_)) | None => return unsupported("files by file id"),
            };
            if let Some(title) = title {
                block["title"] = title.into();
            }
            Ok(block)
        }
        ContentPart::Audio { .. } => unsupported("audio input"),
    }
}

/// The web search server tool for a request's search options: domain filters and the
/// approximate location (Chat's nested `approximate` object flattened to Anthropic's shape).
fn web_search_tool(search: &WebSearch) -> Value {
    let mut tool = json!({"type": "web_search_20250305", "name": "web_search"});
    if !search.allowed_domains.is_empty() {
        tool["allowed_domains"] = json!(search.allowed_domains);
    }
    if !search.blocked_domains.is_empty() {
        tool["blocked_domains"] = json!(search.blocked_domains);
    }
    if let Some(location) = search.user_location.as_ref().and_then(crate::flat_location) {
        tool["user_location"] = location;
    }
    tool
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use switchboard_model::{
        ContentPart, Family, FunctionTool, Item, OutputFormat, ReasoningEffort, Request, Role,
        Sealed, Tool, ToolChoice,
    };

    use super::*;

    fn weather() -> Tool {
        Tool::Function(FunctionTool {
            name: "weather".into(),
            description: Some("Weather in a city.".into()),
            parameters: Some(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
            strict: false,
        })
    }

    #[test]
    fn a_thinking_tool_loop_becomes_alternating_turns() {
        let mut request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::System, "Be brief."),
                Item::text(Role::Developer, "Use metric."),
                Item::Message {
                    role: Role::User,
                    parts: vec![
                        ContentPart::Text("Weather here?".into()),
                        ContentPart::Image {
                            url: "data:image/png;base64,iVBOR".into(),
                            detail: None,
                        },
                    ],
                    name: None,
                },
                Item::Reasoning {
                    id: None,
                    text: "Need the tool.".into(),
                    summary: Vec::new(),
                    signature: Some(Sealed::new(Family::Anthropic, "sig")),
                    encrypted: None,
                },
                Item::Reasoning {
                    id: None,
                    text: "Gemini's".into(),
                    summary: Vec::new(),
                    signature: Some(Sealed::new(Family::Gemini, "not-for-claude")),
                    encrypted: None,
                },
                Item::FunctionCall {
                    call_id: "toolu_1".into(),
                    name: "weather".into(),
                    arguments: "{\"city\":\"Oslo\"}".into(),
                    signature: None,
                },
                Item::FunctionOutput {
                    call_id: "toolu_1".into(),
                    output: "sunny".into(),
                    is_error: true,
                },
                Item::text(Role::User, "And tomorrow?"),
            ],
        );
        request.tools = vec![weather()];
        request.parallel_tool_calls = false;
        request.reasoning_effort = Some(ReasoningEffort::Low);
        request.sampling.temperature = 0.3;
        request.sampling.stop = vec!["END".into()];
        request.user = Some("u-1".into());
        let encoded = encode_request(
            &request,
            "claude-sonnet-4-5",
            StructuredOutputs::ForcedTool,
            ThinkingMode::Budget,
        )
        .unwrap();
        assert!(!encoded.json_through_tool);
        assert_eq!(
            encoded.body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 64000,
                "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric."}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "Weather here?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny", "is_error": true},
                        {"type": "text", "text": "And tomorrow?"}]}
                ],
                "thinking": {"type": "enabled", "budget_tokens": 4096},
                "stop_sequences": ["END"],
                "metadata": {"user_id": "u-1"},
                "tools": [{"name": "weather", "description": "Weather in a city.",
                           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
                "stream": true
            })
        );
    }

    #[test]
    fn json_answers_go_through_a_forced_tool_or_natively() {
        let mut request = Request::text("c", vec![Item::text(Role::User, "JSON please")]);
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        request.output_format = OutputFormat::JsonSchema {
            name: "answer".into(),
            description: None,
            schema: schema.clone(),
            strict: true,
        };
        request.reasoning_effort = Some(ReasoningEffort::High);
        request.sampling.max_output_tokens = Some(100);
        let forced = encode_request(
            &request,
            "claude-3-5-haiku-latest",
            StructuredOutputs::ForcedTool,
            ThinkingMode::Budget,
        )
        .unwrap();
        assert!(forced.json_through_tool);
        assert_eq!(
            forced.body["tool_choice"],
            json!({"type": "tool", "name": JSON_TOOL})
        );
        assert_eq!(forced.body["tools"][0]["input_schema"], schema);
        assert!(
            forced.body.get("thinking").is_none(),
            "no thinking with a forced tool"
        );
        let native = encode_request(
            &request,
            "claude-opus-4-6",
            StructuredOutputs::Native,
            ThinkingMode::Adaptive,
        )
        .unwrap();
        assert!(!native.json_through_tool);
        assert_eq!(
            native.body["output_config"],
            json!({"effort": "high", "format": {"type": "json_schema", "schema": schema}})
        );
        assert_eq!(native.body["thinking"], json!({"type": "adaptive"}));
        assert!(native.body.get("tools").is_none());
    }

    #[test]
    fn what_anthropic_cannot_do_is_refused_up_front() {
        let mut request = Request::text("c", vec![Item::text(Role::User, "x")]);
        request.sampling.n = 2;
        let error = encode_request(
            &request,
            "c",
            StructuredOutputs::ForcedTool,
            ThinkingMode::Budget,
        )
        .unwrap_err();
        assert_eq!(error.field, Some(RequestField::Choices));
        let mut request = Request::text("c", vec![Item::text(Role::User, "x")]);
        request.tools = vec![weather()];
        request.tool_choice = ToolChoice::Required;
        request.output_format = OutputFormat::JsonObject;
        let error = encode_request(
            &request,
            "c",
            StructuredOutputs::ForcedTool,
            ThinkingMode::Budget,
        )
        .unwrap_err();
        assert_eq!(error.field, Some(RequestField::OutputFormat));
        let mut request = Request::text(
            "c",
            vec![Item::FunctionCall {
                call_id: "t".into(),
                name: "f".into(),
                arguments: "not json".into(),
                signature: None,
            }],
        );
        request.tools = vec![weather()];
        let error = encode_request(
            &request,
            "c",
            StructuredOutputs::ForcedTool,
            ThinkingMode::Budget,
        )
        .unwrap_err();
        assert_eq!(error.field, Some(RequestField::Conversation));
    }
}
