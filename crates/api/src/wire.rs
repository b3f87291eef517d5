//! Validation helpers shared by every surface's decoder: typed decoding that names the failing
//! path, range checks, and errors worded the way OpenAI words them.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_model::{Error, ErrorKind, Tool, ToolChoice};

/// A content part that carries text (`text`, `input_text`, `output_text`).
#[derive(Deserialize)]
pub(crate) struct WireTextPart {
    pub text: String,
}

#[derive(Deserialize)]
pub(crate) struct WireRefusalPart {
    pub refusal: String,
}

/// Parses a body that must be a JSON object whose top-level keys are all in `known`.
pub(crate) fn parse_object(body: &[u8], known: &[&str]) -> Result<Value, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        // Our own words for where the JSON broke, never the parser's.
        let fault = match error.classify() {
            serde_json::error::Category::Eof => "it ends before the JSON is complete",
            serde_json::error::Category::Syntax => "it has a syntax error",
            serde_json::error::Category::Data => "it holds a value JSON cannot represent",
            serde_json::error::Category::Io => "it could not be read",
        };
        Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "We could not parse the JSON body of your request. (HINT: This likely means you \
                 aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
                 but what was sent was not valid JSON: {fault} at line {}, column {}.)",
                error.line(),
                error.column()
            ),
        )
    })?;
    let Value::Object(fields) = &value else {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!(
                "Invalid request body: expected a JSON object, but got {} instead.",
                json_type(&value)
            ),
        ));
    };
    if let Some(unknown) = fields.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(Error::invalid(
            unknown.clone(),
            format!("Unrecognized request argument supplied: {unknown}"),
        ));
    }
    Ok(value)
}

/// `required` and a named function need tools, and the name must be one of them. `unknown`
/// says what to answer for a name that is not (param, message), in the surface's wording.
pub(crate) fn check_tool_choice(
    choice: ToolChoice,
    tools: &[Tool],
    unknown: impl FnOnce(&str) -> (&'static str, String),
) -> Result<ToolChoice, Error> {
    match &choice {
        ToolChoice::Required | ToolChoice::Function(_) if tools.is_empty() => Err(Error::invalid(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are \
             specified.",
        )),
        ToolChoice::Function(name)
            if !tools
                .iter()
                .any(|Tool::Function(function)| &function.name == name) =>
        {
            let (param, message) = unknown(name);
            Err(Error::invalid(param, message))
        }
        _ => Ok(choice),
    }
}

/// `model`: present and not empty.
pub(crate) fn required_model(model: Option<String>) -> Result<String, Error> {
    match model {
        None => Err(missing("model")),
        Some(model) if model.is_empty() => Err(Error::invalid(
            "model",
            "Invalid 'model': empty string. You must provide a model parameter.",
        )),
        Some(model) => Ok(model),
    }
}

/// A value the API defines but this server does not implement.
pub(crate) fn unsupported_value(param: &str, message: &str) -> Error {
    Error::unsupported(param, message).with_code("unsupported_value")
}

/// `metadata`: at most 16 string values, keys up to 64 and values up to 512 characters.
pub(crate) fn decode_metadata(
    metadata: Option<Map<String, Value>>,
) -> Result<Option<Value>, Error> {
    let Some(metadata) = metadata else {
        return Ok(None);
    };
    if metadata.len() > 16 {
        return Err(Error::invalid(
            "metadata",
            format!(
                "Invalid 'metadata': too many properties. Expected an object with at most 16 \
                 properties, but got an object with {} properties instead.",
                metadata.len()
            ),
        ));
    }
    for (key, value) in &metadata {
        if key.chars().count() > 64 {
            return Err(Error::invalid(
                "metadata",
                format!(
                    "Invalid 'metadata': key '{key}' is too long. Expected at most 64 characters."
                ),
            ));
        }
        let param = format!("metadata.{key}");
        let Value::String(text) = value else {
            return Err(invalid_type(&param, "a string", value));
        };
        if text.chars().count() > 512 {
            return Err(Error::invalid(
                param.clone(),
                format!("Invalid '{param}': string too long. Expected at most 512 characters."),
            ));
        }
    }
    Ok(Some(Value::Object(metadata)))
}

/// Deserializes `value`, naming the failing path below `prefix` in the error.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = join_path(prefix, &error.path().to_string());
        let message = error.inner().to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return missing(&join_path(&path, field));
        }
        if let Some((got, expected)) = message
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.split_once(", expected "))
        {
            return Error::invalid(
                path.clone(),
                format!(
                    "Invalid type for '{path}': expected {}, but got {} instead.",
                    friendly_expected(expected),
                    friendly_got(got)
                ),
            );
        }
        if message.starts_with("unknown field `") {
            // The path already ends with the unknown field.
            return unknown_parameter(&path);
        }
        if let Some(number) = message
            .strip_prefix("invalid value: integer `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(number, _)| number)
        {
            return integer_out_of_range(&path, number);
        }
        // Never a library's wording: the path and the expected shape say enough.
        Error::invalid(
            path.clone(),
            format!("Invalid value for '{path}': the value does not have the expected shape."),
        )
    })
}

/// An integer beyond what the field can hold (beyond 64 bits, or negative where it cannot be).
fn integer_out_of_range(param: &str, number: &str) -> Error {
    let (side, relation, bound, code) = if number.starts_with('-') {
        (
            "below minimum",
            ">=",
            i64::MIN.to_string(),
            "integer_below_min_value",
        )
    } else {
        (
            "above maximum",
            "<=",
            i64::MAX.to_string(),
            "integer_above_max_value",
        )
    };
    Error::invalid(
        param,
        format!(
            "Invalid '{param}': integer {side} value. Expected a value {relation} {bound}, but got \
             {number} instead."
        ),
    )
    .with_code(code)
}

/// Rejects keys of the object `value` that are not in `known`, as OpenAI does for nested
/// objects: `Unknown parameter: 'messages[0].content[0].foo'.` Non-objects pass (the typed
/// decoding that follows words their error).
pub(crate) fn known_keys(value: &Value, prefix: &str, known: &[&str]) -> Result<(), Error> {
    let Value::Object(fields) = value else {
        return Ok(());
    };
    match fields.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(unknown_parameter(&join_path(prefix, unknown))),
    }
}

pub(crate) fn unknown_parameter(param: &str) -> Error {
    Error::invalid(param, format!("Unknown parameter: '{param}'.")).with_code("unknown_parameter")
}

/// `prompt_cache_options`, accepted without effect (the prefix cache is automatic).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WirePromptCacheOptions {
    ttl: Option<String>,
    mode: Option<String>,
}

/// The fields both surfaces accept without effect, checked for OpenAI's types, values and
/// lengths all the same.
pub(crate) fn check_inert_fields(
    safety_identifier: Option<&String>,
    prompt_cache_key: Option<&String>,
    prompt_cache_retention: Option<&String>,
    prompt_cache_options: Option<&WirePromptCacheOptions>,
) -> Result<(), Error> {
    optional_max_length("safety_identifier", safety_identifier, 64)?;
    // OpenAI caps cache keys at 64 characters, although its spec states no limit.
    optional_max_length("prompt_cache_key", prompt_cache_key, 64)?;
    optional_enum(
        "prompt_cache_retention",
        prompt_cache_retention,
        &["in_memory", "24h"],
    )?;
    if let Some(options) = prompt_cache_options {
        optional_enum("prompt_cache_options.ttl", options.ttl.as_ref(), &["30m"])?;
        optional_enum(
            "prompt_cache_options.mode",
            options.mode.as_ref(),
            &["implicit", "explicit"],
        )?;
    }
    Ok(())
}

/// An optional string that must be one of `allowed` (a JSON `null` is absence).
pub(crate) fn optional_enum(
    param: &str,
    value: Option<&String>,
    allowed: &[&str],
) -> Result<(), Error> {
    value.map_or(Ok(()), |value| one_of(param, value, allowed))
}

/// An optional string of at most `max` characters.
pub(crate) fn optional_max_length(
    param: &str,
    value: Option<&String>,
    max: usize,
) -> Result<(), Error> {
    match value {
        Some(text) if text.chars().count() > max => Err(Error::invalid(
            param,
            format!(
                "Invalid '{param}': string too long. Expected a string with maximum length \
                 {max}, but got a string with length {} instead.",
                text.chars().count()
            ),
        )
        .with_code("string_above_max_length")),
        _ => Ok(()),
    }
}

/// `prefix` + a serde_path_to_error path (`.` for the root, `a.b`, `[0].c`).
pub(crate) fn join_path(prefix: &str, sub: &str) -> String {
    if sub == "." || sub.is_empty() {
        prefix.to_owned()
    } else if prefix.is_empty() {
        sub.to_owned()
    } else if sub.starts_with('[') {
        format!("{prefix}{sub}")
    } else {
        format!("{prefix}.{sub}")
    }
}

pub(crate) fn friendly_expected(expected: &str) -> &str {
    match expected {
        "f64" | "f32" => "a decimal",
        "i64" | "u64" | "i32" | "u32" | "u8" => "an integer",
        "a sequence" => "an array",
        "a map" | "a JSON object" => "an object",
        "a boolean" | "a string" => expected,
        _ if expected.starts_with("struct ") => "an object",
        _ => expected,
    }
}

pub(crate) fn friendly_got(got: &str) -> &'static str {
    let kind = got.split([' ', '`']).next().unwrap_or(got);
    match kind {
        "string" => "a string",
        "floating" => "a decimal",
        "integer" => "an integer",
        "boolean" => "a boolean",
        "map" => "an object",
        "sequence" => "an array",
        "null" | "unit" => "null",
        _ => "a value of another type",
    }
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn missing(param: &str) -> Error {
    Error::invalid(param, format!("Missing required parameter: '{param}'."))
}

pub(crate) fn invalid_type(param: &str, expected: &str, got: &Value) -> Error {
    Error::invalid(
        param,
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            json_type(got)
        ),
    )
}

/// The `type` discriminator of an object, as a string.
pub(crate) fn type_field(value: &Value, prefix: &str) -> Result<String, Error> {
    let param = format!("{prefix}.type");
    match value {
        Value::Object(fields) => match fields.get("type") {
            None | Some(Value::Null) => Err(missing(&param)),
            Some(Value::String(kind)) => Ok(kind.clone()),
            Some(other) => Err(invalid_type(&param, "a string", other)),
        },
        other => Err(invalid_type(prefix, "an object", other)),
    }
}

pub(crate) fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<(), Error> {
    if allowed.contains(&value) {
        return Ok(());
    }
    let list = match allowed {
        [] => String::new(),
        [one] => format!("'{one}'"),
        [init @ .., last] => format!(
            "{}, and '{last}'",
            init.iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(Error::invalid(
        param,
        format!("Invalid value: '{value}'. Supported values are: {list}."),
    ))
}

/// Function and schema names: `^[a-zA-Z0-9_-]{1,64}$`.
pub(crate) fn check_name(param: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid(
            param,
            format!("Invalid '{param}': empty string. Expected a string with minimum length 1, but got an empty string instead."),
        ));
    }
    if name.len() > 64 {
        return Err(Error::invalid(
            param,
            format!(
                "Invalid '{param}': string too long. Expected a string with maximum length 64, \
                 but got a string with length {} instead.",
                name.len()
            ),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(
            param,
            format!(
                "Invalid '{param}': string does not match pattern. Expected a string that \
                 matches the pattern '^[a-zA-Z0-9_-]+$'."
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::cast_possible_truncation)]
pub(crate) fn bounded_decimal(
    param: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<Option<f32>, Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    check_range(param, "decimal", value, min, max)?;
    Ok(Some(value as f32))
}

pub(crate) fn bounded_integer<T: TryFrom<i64>>(
    param: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
) -> Result<Option<T>, Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    check_range(param, "integer", value, min, max)?;
    T::try_from(value).map(Some).map_err(|_| {
        Error::invalid(
            param,
            format!("Invalid '{param}': {value} is out of range."),
        )
    })
}

/// `min <= value <= max`, worded for a `kind` of number ("decimal", "integer") as OpenAI does.
fn check_range<T: PartialOrd + std::fmt::Display>(
    param: &str,
    kind: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Error> {
    let (side, relation, bound) = if value < min {
        ("below minimum", ">=", min)
    } else if value > max {
        ("above maximum", "<=", max)
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        param,
        format!(
            "Invalid '{param}': {kind} {side} value. Expected a value {relation} {bound}, but got \
             {value} instead."
        ),
    ))
}
