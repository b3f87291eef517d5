//! Canonical request → Anthropic Messages request body (`POST {base_url}/v1/messages`).
//!
//! System and developer messages become the top-level `system`; consecutive turns of one role
//! are merged (the API wants them alternating); tool results are `tool_result` blocks opening
//! the next user turn; reasoning that Claude made goes back as `thinking` /
//! `redacted_thinking` blocks with their signatures, unchanged (tool loops with thinking fail
//! upstream otherwise); reasoning any other provider made is dropped.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use switchboard_model::{
    ContentPart, Error, ErrorKind, Family, Item, MediaSource, OutputFormat, ReasoningEffort,
    Request, RequestField, Role, Sealed, Tool, ToolChoice,
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
    /// Anthropic's `output_format` (structured outputs), for models that have it.
    Native,
    /// A forced tool whose input schema is the answer's schema (every tool-capable model).
    #[default]
    ForcedTool,
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

/// `max_tokens` when the client gives none (Anthropic requires it): the model family's
/// documented output limit, or a conservative 4,096 for models this table does not know.
#[must_use]
pub fn default_max_tokens(model: &str) -> u32 {
    let model = model.to_ascii_lowercase();
    let table: &[(&str, u32)] = &[
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
        .map_or(4_096, |(_, limit)| *limit)
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
) -> Result<Encoded, Error> {
    refuse_unsupported(request)?;
    let sampling = &request.sampling;
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    let max_tokens = sampling
        .max_output_tokens
        .unwrap_or_else(|| default_max_tokens(upstream_model));
    body.insert("max_tokens".into(), max_tokens.into());
    let (system, messages) = conversation(&request.items)?;
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));

    let thinking = request
        .reasoning_effort
        .map(|effort| thinking_budget(effort).min(max_tokens.saturating_sub(1)))
        .filter(|budget| *budget >= MIN_THINKING_BUDGET);
    if let Some(budget) = thinking {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    // Anthropic's temperature runs 0..1 (OpenAI's 0..2), newer models refuse temperature and
    // top_p together, and thinking allows neither a temperature nor a top_p below 0.95.
    let temperature_set = (sampling.temperature - 1.0).abs() > f32::EPSILON;
    let top_p_set = (sampling.top_p - 1.0).abs() > f32::EPSILON;
    if thinking.is_none() && temperature_set {
        body.insert(
            "temperature".into(),
            json!(round(sampling.temperature.clamp(0.0, 1.0))),
        );
    } else if top_p_set && (thinking.is_none() || sampling.top_p >= 0.95) {
        body.insert("top_p".into(), json!(round(sampling.top_p)));
    }
    if !sampling.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(sampling.stop));
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }

    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| match tool {
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
            body.insert(
                "output_format".into(),
                json!({"type": "json_schema", "schema": schema}),
            );
        }
        (OutputFormat::JsonObject, StructuredOutputs::Native) => {
            body.insert(
                "output_format".into(),
                json!({"type": "json_schema", "schema": {"type": "object"}}),
            );
        }
        (format, StructuredOutputs::ForcedTool) => {
            if !tools.is_empty() || thinking.is_some() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "This model answers in JSON through a forced tool call, which cannot be \
                     combined with other tools or with reasoning.",
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
        return Err(Error::unsupported(
            "logprobs",
            "Anthropic models do not return log probabilities.",
        ));
    }
    Ok(())
}

/// The `system` blocks and the alternating `messages`.
fn conversation(items: &[Item]) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for item in items {
        match item {
            Item::Message {
                role: Role::System | Role::Developer,
                parts,
                ..
            } => {
                for part in parts {
                    if let ContentPart::Text(text) = part {
                        system.push(json!({"type": "text", "text": text}));
                    }
                }
            }
            Item::Message {
                role: Role::User,
                parts,
                ..
            } => {
                for part in parts {
                    turns.push("user", user_block(part)?);
                }
            }
            Item::Message {
                role: Role::Assistant,
                parts,
                ..
            } => {
                for part in parts {
                    match part {
                        ContentPart::Text(text) | ContentPart::Refusal(text)
                            if !text.is_empty() =>
                        {
                            turns.push("assistant", json!({"type": "text", "text": text}));
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
                let input: Value = if arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(arguments).map_err(|_| {
                        Error::invalid_at(
                            RequestField::Conversation,
                            format!(
                                "The arguments of tool call '{call_id}' are not valid JSON; \
                                 Anthropic models need them as a JSON object."
                            ),
                        )
                    })?
                };
                turns.push(
                    "assistant",
                    json!({"type": "tool_use", "id": call_id, "name": name, "input": input}),
                );
            }
            Item::FunctionOutput { call_id, output } => {
                turns.push(
                    "user",
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": output}),
                );
            }
        }
    }
    Ok((system, turns.messages))
}

/// Messages being built, one per run of same-role blocks.
#[derive(Default)]
struct Turns {
    messages: Vec<Value>,
}

impl Turns {
    fn push(&mut self, role: &str, block: Value) {
        if let Some(last) = self.messages.last_mut() {
            if last["role"] == role {
                if let Some(Value::Array(content)) = last.get_mut("content") {
                    content.push(block);
                    return;
                }
            }
        }
        self.messages
            .push(json!({"role": role, "content": [block]}));
    }
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
