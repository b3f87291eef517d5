//! Anthropic Messages request → canonical [`Request`]. Every documented field is decoded;
//! what Switchboard cannot do yet (server tools, MCP servers, containers) is refused by name,
//! and an unknown field is refused as the Messages API refuses it. Errors name the failing
//! path in the API's own dotted form (`messages.0.content.1.source`).

use serde_json::{Map, Value};
use switchboard_model::{
    CacheMark, CacheTarget, Error, ErrorKind, FunctionTool, OutputFormat, ReasoningEffort, Request,
    RequestField, Tool, ToolChoice, WebSearch,
};

use super::content::{attach_call_signatures, cache_control, Conversation};
use crate::wire::json_type;

/// A decoded `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub request: Request,
    pub stream: bool,
}

/// Top-level fields of a Messages request.
const FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "output_config",
    "cache_control",
    "container",
    "mcp_servers",
    "context_management",
    "inference_geo",
];

/// `count_tokens` takes the request without its generation settings.
const COUNT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "mcp_servers",
    "context_management",
];

/// Where a request field is, in this API's words.
#[must_use]
pub fn param_name(field: RequestField) -> String {
    match field {
        RequestField::Tools | RequestField::WebSearch => "tools".into(),
        RequestField::ToolParameters(index) => format!("tools.{index}.input_schema"),
        RequestField::Conversation | RequestField::OutputModalities => "messages".into(),
        RequestField::OutputFormat => "output_config.format".into(),
        RequestField::ReasoningEffort => "thinking".into(),
        RequestField::StopSequences => "stop_sequences".into(),
        RequestField::Choices => "n".into(),
        RequestField::LogitBias => "logit_bias".into(),
        RequestField::Logprobs => "logprobs".into(),
    }
}

pub(super) fn invalid(path: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid(path, format!("{path}: {message}"))
}

pub(super) fn unsupported(path: &str, message: impl std::fmt::Display) -> Error {
    Error::unsupported(path, format!("{path}: {message}"))
}

pub(super) fn missing(path: &str) -> Error {
    invalid(path, "Field required")
}

pub(super) fn expected(path: &str, what: &str, got: &Value) -> Error {
    invalid(
        path,
        format!("Input should be {what}, not {}", json_type(got)),
    )
}

pub(super) fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Error> {
    value
        .as_object()
        .ok_or_else(|| expected(path, "a valid dictionary", value))
}

pub(super) fn only_fields(
    fields: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<(), Error> {
    match fields.keys().find(|key| !known.contains(&key.as_str())) {
        Some(extra) => Err(invalid(
            &join(path, extra),
            "Extra inputs are not permitted",
        )),
        None => Ok(()),
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn string<'a>(
    fields: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a str, Error> {
    let at = join(path, key);
    match fields.get(key) {
        None | Some(Value::Null) => Err(missing(&at)),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(expected(&at, "a valid string", other)),
    }
}

pub(super) fn optional_string<'a>(
    fields: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a str>, Error> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(expected(&join(path, key), "a valid string", other)),
    }
}

fn optional_bool(fields: &Map<String, Value>, key: &str) -> Result<Option<bool>, Error> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(expected(key, "a valid boolean", other)),
    }
}

fn optional_number(
    fields: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, Error> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            let value = number.as_f64().unwrap_or(f64::NAN);
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    key,
                    format!("Input should be between {min} and {max}, got {value}"),
                ));
            }
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some(value as f32))
        }
        Some(other) => Err(expected(key, "a valid number", other)),
    }
}

fn integer(value: &Value, path: &str, min: u64) -> Result<u32, Error> {
    let Some(number) = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let whole = f as u64;
                whole
            })
    }) else {
        return Err(expected(path, "a valid integer", value));
    };
    if number < min {
        return Err(invalid(
            path,
            format!("Input should be greater than or equal to {min}"),
        ));
    }
    u32::try_from(number).map_err(|_| invalid(path, "Input is too large"))
}

/// Decodes a `POST /v1/messages` body.
///
/// # Errors
/// An invalid-request error naming the failing path; unsupported for what exists in the API
/// but not here yet.
pub fn decode_messages_request(body: &[u8]) -> Result<MessagesRequest, Error> {
    let value = parse(body)?;
    let fields = object(&value, "")?;
    only_fields(fields, "", FIELDS)?;
    let mut request = decode_common(fields)?;
    let max_tokens = match fields.get("max_tokens") {
        None | Some(Value::Null) => return Err(missing("max_tokens")),
        Some(value) => integer(value, "max_tokens", 1)?,
    };
    request.sampling.max_output_tokens = Some(max_tokens);
    if let Some(budget) = request.reasoning_budget {
        if budget >= max_tokens {
            return Err(invalid(
                "thinking.budget_tokens",
                format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens` ({budget}); \
                     got {max_tokens}"
                ),
            ));
        }
    }
    request.sampling.temperature = optional_number(fields, "temperature", 0.0, 1.0)?.unwrap_or(1.0);
    request.sampling.top_p = optional_number(fields, "top_p", 0.0, 1.0)?.unwrap_or(1.0);
    request.sampling.top_k = match fields.get("top_k") {
        None | Some(Value::Null) => None,
        Some(value) => Some(integer(value, "top_k", 0)?).filter(|&k| k > 0),
    };
    request.sampling.stop = decode_stop_sequences(fields.get("stop_sequences"))?;
    request.user = decode_metadata(fields.get("metadata"))?;
    request.service_tier = match optional_string(fields, "", "service_tier")? {
        None => None,
        Some(tier @ ("auto" | "standard_only")) => Some(tier.to_owned()),
        Some(other) => {
            return Err(invalid(
                "service_tier",
                format!("Input should be 'auto' or 'standard_only', got '{other}'"),
            ))
        }
    };
    for refused in ["container", "inference_geo"] {
        if fields.get(refused).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(refused, "is not supported by this server"));
        }
    }
    let stream = optional_bool(fields, "stream")?.unwrap_or(false);
    Ok(MessagesRequest { request, stream })
}

/// Decodes a `POST /v1/messages/count_tokens` body into the request it counts.
///
/// # Errors
/// As [`decode_messages_request`].
pub fn decode_count_tokens(body: &[u8]) -> Result<Request, Error> {
    let value = parse(body)?;
    let fields = object(&value, "")?;
    only_fields(fields, "", COUNT_FIELDS)?;
    decode_common(fields)
}

fn parse(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body).map_err(|error| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "The request body is not valid JSON: line {}, column {}.",
                error.line(),
                error.column()
            ),
        )
    })
}

/// What a Messages request and a count_tokens request share: the model, the conversation,
/// tools, thinking and output format.
fn decode_common(fields: &Map<String, Value>) -> Result<Request, Error> {
    let model = string(fields, "", "model")?;
    if model.is_empty() {
        return Err(invalid("model", "String should have at least 1 character"));
    }
    if fields.get("mcp_servers").is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "mcp_servers",
            "MCP servers are not supported by this server",
        ));
    }
    if fields
        .get("context_management")
        .is_some_and(|v| !v.is_null())
    {
        return Err(unsupported(
            "context_management",
            "context management is not supported by this server",
        ));
    }
    let mut conversation = Conversation::default();
    if let Some(system) = fields.get("system").filter(|v| !v.is_null()) {
        conversation.system(system)?;
    }
    let messages = match fields.get("messages") {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(expected("messages", "a valid list", other)),
    };
    if messages.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    for (index, message) in messages.iter().enumerate() {
        conversation.message(message, &format!("messages.{index}"))?;
    }
    if let Some(control) = fields.get("cache_control").filter(|v| !v.is_null()) {
        object(control, "cache_control")?;
        conversation.mark_last(control.clone());
    }
    let Conversation {
        mut items,
        mut marks,
        call_signatures,
        ..
    } = conversation;
    attach_call_signatures(&mut items, call_signatures);

    let mut request = Request::text(model, items);
    let (tools, tool_marks, web_search) = decode_tools(fields.get("tools"))?;
    marks.extend(tool_marks);
    request.tools = tools;
    request.web_search = web_search;
    request.cache_marks = marks;
    let (choice, parallel) = decode_tool_choice(fields.get("tool_choice"), &request.tools)?;
    request.tool_choice = choice;
    request.parallel_tool_calls = parallel;
    let output_config = match fields.get("output_config") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let config = object(value, "output_config")?;
            only_fields(config, "output_config", &["effort", "format"])?;
            Some(config)
        }
    };
    let effort = output_config
        .map(|config| optional_string(config, "output_config", "effort"))
        .transpose()?
        .flatten();
    (request.reasoning_effort, request.reasoning_budget) =
        decode_thinking(fields.get("thinking"), effort)?;
    if let Some(format) = output_config.and_then(|config| config.get("format")) {
        request.output_format = decode_output_format(format)?;
    }
    Ok(request)
}

/// The request's tools, their cache marks, and the web search server tool if it is there.
fn decode_tools(tools: Option<&Value>) -> Result<DecodedTools, Error> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new(), None)),
        Some(Value::Array(tools)) => tools,
        Some(other) => return Err(expected("tools", "a valid list", other)),
    };
    let mut decoded = Vec::new();
    let mut marks = Vec::new();
    let mut web_search = None;
    for (index, tool) in tools.iter().enumerate() {
        let path = format!("tools.{index}");
        let fields = object(tool, &path)?;
        match optional_string(fields, &path, "type")? {
            None | Some("custom") => {}
            Some(WEB_SEARCH_TOOL) => {
                if web_search.is_some() {
                    return Err(invalid(&path, "the web search tool may be given only once"));
                }
                web_search = Some(decode_web_search_tool(fields, &path)?);
                continue;
            }
            Some(kind) => {
                return Err(unsupported(
                    &join(&path, "type"),
                    format!("the server tool '{kind}' is not supported by this server yet"),
                ))
            }
        }
        only_fields(
            fields,
            &path,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "cache_control",
                "strict",
            ],
        )?;
        let name = string(fields, &path, "name")?;
        crate::wire::check_name(&join(&path, "name"), name).map_err(|_| {
            invalid(
                &join(&path, "name"),
                "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            )
        })?;
        let schema = match fields.get("input_schema") {
            None | Some(Value::Null) => return Err(missing(&join(&path, "input_schema"))),
            Some(schema @ Value::Object(inner)) => {
                if inner.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(invalid(
                        &join(&path, "input_schema.type"),
                        "Input should be 'object'",
                    ));
                }
                schema.clone()
            }
            Some(other) => {
                return Err(expected(
                    &join(&path, "input_schema"),
                    "a valid dictionary",
                    other,
                ))
            }
        };
        if let Some(control) = cache_control(fields, &path)? {
            // The mark's place among the function tools the providers get.
            marks.push(CacheMark {
                target: CacheTarget::Tool(decoded.len()),
                control,
            });
        }
        decoded.push(Tool::Function(FunctionTool {
            name: name.to_owned(),
            description: optional_string(fields, &path, "description")?.map(str::to_owned),
            parameters: Some(schema),
            strict: optional_bool(fields, "strict")
                .map_err(|_| invalid(&join(&path, "strict"), "Input should be a valid boolean"))?
                .unwrap_or(false),
        }));
    }
    Ok((decoded, marks, web_search))
}

fn decode_tool_choice(choice: Option<&Value>, tools: &[Tool]) -> Result<(ToolChoice, bool), Error> {
    let Some(choice) = choice.filter(|v| !v.is_null()) else {
        return Ok((ToolChoice::Auto, true));
    };
    let fields = object(choice, "tool_choice")?;
    let kind = string(fields, "tool_choice", "type")?;
    let known: &[&str] = match kind {
        "tool" => &["type", "name", "disable_parallel_tool_use"],
        "none" => &["type"],
        _ => &["type", "disable_parallel_tool_use"],
    };
    only_fields(fields, "tool_choice", known)?;
    let parallel = !match fields.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(expected(
                "tool_choice.disable_parallel_tool_use",
                "a valid boolean",
                other,
            ))
        }
    };
    let choice = match kind {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => {
            let name = string(fields, "tool_choice", "name")?;
            if !tools.iter().any(|Tool::Function(tool)| tool.name == name) {
                return Err(invalid(
                    "tool_choice.name",
                    format!("Tool '{name}' not found in the provided tools"),
                ));
            }
            ToolChoice::Function(name.to_owned())
        }
        other => {
            return Err(invalid(
                "tool_choice.type",
                format!(
                    "Input tag '{other}' does not match any of the expected tags: 'auto', \
                     'any', 'tool', 'none'"
                ),
            ))
        }
    };
    if matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) && tools.is_empty() {
        return Err(invalid(
            "tool_choice",
            "tool_choice may only be specified while providing tools",
        ));
    }
    Ok((choice, parallel))
}

/// `thinking` (and the adaptive form's `output_config.effort`) as an effort level and, when
/// the client gave one, the exact budget.
fn decode_thinking(
    thinking: Option<&Value>,
    effort: Option<&str>,
) -> Result<(Option<ReasoningEffort>, Option<u32>), Error> {
    let named_effort = |effort: &str| match effort {
        "low" => Ok(ReasoningEffort::Low),
        "medium" => Ok(ReasoningEffort::Medium),
        "high" | "max" => Ok(ReasoningEffort::High),
        other => Err(invalid(
            "output_config.effort",
            format!("Input should be 'low', 'medium', 'high' or 'max', got '{other}'"),
        )),
    };
    let Some(thinking) = thinking.filter(|v| !v.is_null()) else {
        // An effort alone sets how hard an adaptive model works; it asks for no thinking.
        if let Some(effort) = effort {
            named_effort(effort)?;
        }
        return Ok((None, None));
    };
    let fields = object(thinking, "thinking")?;
    match string(fields, "thinking", "type")? {
        "enabled" => {
            only_fields(fields, "thinking", &["type", "budget_tokens", "display"])?;
            let budget = match fields.get("budget_tokens") {
                None | Some(Value::Null) => return Err(missing("thinking.budget_tokens")),
                Some(value) => integer(value, "thinking.budget_tokens", 1024)?,
            };
            let effort = match budget {
                ..=1_024 => ReasoningEffort::Minimal,
                1_025..=4_096 => ReasoningEffort::Low,
                4_097..=12_288 => ReasoningEffort::Medium,
                _ => ReasoningEffort::High,
            };
            Ok((Some(effort), Some(budget)))
        }
        "adaptive" => {
            only_fields(fields, "thinking", &["type", "display"])?;
            Ok((
                Some(effort.map_or(Ok(ReasoningEffort::High), named_effort)?),
                None,
            ))
        }
        "disabled" => {
            only_fields(fields, "thinking", &["type"])?;
            Ok((None, None))
        }
        other => Err(invalid(
            "thinking.type",
            format!(
                "Input tag '{other}' does not match any of the expected tags: 'enabled', \
                 'disabled', 'adaptive'"
            ),
        )),
    }
}

fn decode_output_format(format: &Value) -> Result<OutputFormat, Error> {
    let path = "output_config.format";
    let fields = object(format, path)?;
    only_fields(fields, path, &["type", "schema"])?;
    match string(fields, path, "type")? {
        "json_schema" => match fields.get("schema") {
            Some(schema @ Value::Object(_)) => Ok(OutputFormat::JsonSchema {
                name: "output".into(),
                description: None,
                schema: schema.clone(),
                strict: true,
            }),
            None | Some(Value::Null) => Err(missing("output_config.format.schema")),
            Some(other) => Err(expected(
                "output_config.format.schema",
                "a valid dictionary",
                other,
            )),
        },
        other => Err(invalid(
            "output_config.format.type",
            format!("Input should be 'json_schema', got '{other}'"),
        )),
    }
}

fn decode_stop_sequences(value: Option<&Value>) -> Result<Vec<String>, Error> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries
            .iter()
            .enumerate()
            .map(|(index, entry)| match entry {
                Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
                Value::String(_) => Err(invalid(
                    &format!("stop_sequences.{index}"),
                    "each stop sequence must contain non-whitespace",
                )),
                other => Err(expected(
                    &format!("stop_sequences.{index}"),
                    "a valid string",
                    other,
                )),
            })
            .collect(),
        Some(other) => Err(expected("stop_sequences", "a valid list", other)),
    }
}

fn decode_metadata(value: Option<&Value>) -> Result<Option<String>, Error> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let fields = object(value, "metadata")?;
    only_fields(fields, "metadata", &["user_id"])?;
    let user = optional_string(fields, "metadata", "user_id")?;
    if user.is_some_and(|user| user.len() > 256) {
        return Err(invalid(
            "metadata.user_id",
            "String should have at most 256 characters",
        ));
    }
    Ok(user.map(str::to_owned))
}

/// Function tools, their cache marks, and the web search server tool.
type DecodedTools = (Vec<Tool>, Vec<CacheMark>, Option<WebSearch>);

/// The web search server tool's versioned type.
const WEB_SEARCH_TOOL: &str = "web_search_20250305";

/// `{"type": "web_search_20250305", "name": "web_search", "max_uses", "allowed_domains",
/// "blocked_domains", "user_location"}`.
fn decode_web_search_tool(fields: &Map<String, Value>, path: &str) -> Result<WebSearch, Error> {
    only_fields(
        fields,
        path,
        &[
            "type",
            "name",
            "max_uses",
            "allowed_domains",
            "blocked_domains",
            "user_location",
            "cache_control",
        ],
    )?;
    if string(fields, path, "name")? != "web_search" {
        return Err(invalid(&join(path, "name"), "Input should be 'web_search'"));
    }
    match fields.get("max_uses") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {}
        Some(other) => {
            return Err(expected(
                &join(path, "max_uses"),
                "an integer greater than or equal to 1",
                other,
            ))
        }
    }
    let domains = |key: &str| -> Result<Vec<String>, Error> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    entry.as_str().map(str::to_owned).ok_or_else(|| {
                        expected(&format!("{path}.{key}.{i}"), "a valid string", entry)
                    })
                })
                .collect(),
            Some(other) => Err(expected(&join(path, key), "a valid list", other)),
        }
    };
    let allowed_domains = domains("allowed_domains")?;
    let blocked_domains = domains("blocked_domains")?;
    if !allowed_domains.is_empty() && !blocked_domains.is_empty() {
        return Err(invalid(
            path,
            "allowed_domains and blocked_domains cannot both be given",
        ));
    }
    let user_location = match fields.get("user_location") {
        None | Some(Value::Null) => None,
        Some(location @ Value::Object(_)) => Some(location.clone()),
        Some(other) => {
            return Err(expected(
                &join(path, "user_location"),
                "a valid dictionary",
                other,
            ))
        }
    };
    Ok(WebSearch {
        context_size: None,
        user_location,
        allowed_domains,
        blocked_domains,
    })
}
