//! Canonical request → Gemini `GenerateContentRequest` (`POST {base_url}/v1beta/models/
//! {model}:streamGenerateContent?alt=sse`).
//!
//! System and developer text becomes `systemInstruction`; turns are `user` / `model` contents
//! (consecutive same-role turns merged); tool results are `functionResponse` parts in a user
//! turn, named after the call they answer. Tool and answer schemas go as real JSON Schema
//! (`parametersJsonSchema`, `responseJsonSchema`) after a check that Gemini can express them:
//! a keyword it cannot is a 400 naming it, never a silent drop.
//!
//! Thought signatures go back only to Gemini, on the part they came with: a tool call's on its
//! `functionCall` part, a reasoning block's on its thought part, and a signature with no text
//! (one Gemini put on an answer part) on the model part that follows it.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::turns::{call_arguments, Turns};
use switchboard_model::{
    ContentPart, Error, ErrorKind, Family, Item, MediaSource, OutputFormat, ReasoningEffort,
    Request, RequestField, Role, Sealed, Tool, ToolChoice,
};

/// The prefix of call ids this gateway made for calls Gemini sent without one; such ids are
/// not sent back (Gemini never saw them).
pub const SYNTHETIC_CALL_PREFIX: &str = "call_gm_";

/// Thinking budgets per effort for models that take budgets (2.5 and earlier).
#[must_use]
pub fn thinking_budget(effort: ReasoningEffort) -> i64 {
    match effort {
        ReasoningEffort::Minimal => 512,
        ReasoningEffort::Low => 2_048,
        ReasoningEffort::Medium => 8_192,
        ReasoningEffort::High => 24_576,
    }
}

/// Gemini 3 models take a thinking level instead; every Gemini 3 model has `low` and `high`.
#[must_use]
pub fn thinking_level(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::Minimal | ReasoningEffort::Low => "low",
        ReasoningEffort::Medium | ReasoningEffort::High => "high",
    }
}

/// The most stop sequences Gemini takes.
pub const MAX_STOP_SEQUENCES: usize = 5;

/// Encodes `request` for `upstream_model`.
///
/// # Errors
/// What Gemini cannot do as asked: logprobs, logit bias, more than five stop sequences, a
/// schema keyword it cannot express, provider file ids, tool arguments that are not JSON.
pub fn encode_request(request: &Request, upstream_model: &str) -> Result<Value, Error> {
    let sampling = &request.sampling;
    if !sampling.logit_bias.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "Gemini models do not support logit_bias.",
        )
        .with_field(RequestField::LogitBias));
    }
    if sampling.logprobs {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "Log probabilities are not available for Gemini models through this server.",
        )
        .with_field(RequestField::Logprobs));
    }
    if sampling.stop.len() > MAX_STOP_SEQUENCES {
        return Err(Error::invalid_at(
            RequestField::StopSequences,
            format!("Gemini models take at most {MAX_STOP_SEQUENCES} stop sequences."),
        ));
    }
    let mut body = Map::new();
    let (system, contents) = conversation(&request.items)?;
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));

    let mut declarations = Vec::new();
    for (index, tool) in request.tools.iter().enumerate() {
        let Tool::Function(function) = tool;
        let mut declaration = Map::new();
        declaration.insert("name".into(), function.name.clone().into());
        if let Some(description) = &function.description {
            declaration.insert("description".into(), description.clone().into());
        }
        if let Some(parameters) = &function.parameters {
            let schema = gemini_schema(parameters).map_err(|message| {
                Error::invalid_at(RequestField::ToolParameters(index), message)
            })?;
            declaration.insert("parametersJsonSchema".into(), schema);
        }
        declarations.push(Value::Object(declaration));
    }
    let mut tools = Vec::new();
    if let Some(search) = &request.web_search {
        if !search.allowed_domains.is_empty() || !search.blocked_domains.is_empty() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "Gemini's grounding with Google Search cannot keep to or leave out domains.",
            )
            .with_field(RequestField::WebSearch));
        }
        tools.push(json!({"googleSearch": {}}));
    }
    if !declarations.is_empty() {
        tools.push(json!({"functionDeclarations": declarations}));
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if !declarations.is_empty() {
        let config = match &request.tool_choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }

    let mut generation = Map::new();
    if (sampling.temperature - 1.0).abs() > f32::EPSILON {
        generation.insert("temperature".into(), json!(round(sampling.temperature)));
    }
    if (sampling.top_p - 1.0).abs() > f32::EPSILON {
        generation.insert("topP".into(), json!(round(sampling.top_p)));
    }
    if let Some(top_k) = sampling.top_k {
        generation.insert("topK".into(), top_k.into());
    }
    if let Some(max) = sampling.max_output_tokens {
        generation.insert("maxOutputTokens".into(), max.into());
    }
    if !sampling.stop.is_empty() {
        generation.insert("stopSequences".into(), json!(sampling.stop));
    }
    if sampling.n > 1 {
        generation.insert("candidateCount".into(), sampling.n.into());
    }
    if let Some(seed) = sampling.seed {
        // Gemini's seed is an int32; larger seeds keep their low bits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        generation.insert("seed".into(), (seed as u32 as i32).into());
    }
    if sampling.presence_penalty != 0.0 {
        generation.insert(
            "presencePenalty".into(),
            json!(round(sampling.presence_penalty)),
        );
    }
    if sampling.frequency_penalty != 0.0 {
        generation.insert(
            "frequencyPenalty".into(),
            json!(round(sampling.frequency_penalty)),
        );
    }
    match &request.output_format {
        OutputFormat::Text => {}
        OutputFormat::JsonObject => {
            generation.insert("responseMimeType".into(), "application/json".into());
        }
        OutputFormat::JsonSchema { schema, .. } => {
            let schema = gemini_schema(schema)
                .map_err(|message| Error::invalid_at(RequestField::OutputFormat, message))?;
            generation.insert("responseMimeType".into(), "application/json".into());
            generation.insert("responseJsonSchema".into(), schema);
        }
    }
    if let Some(effort) = request.reasoning_effort {
        let config = if upstream_model.starts_with("gemini-3") {
            json!({"thinkingLevel": thinking_level(effort), "includeThoughts": true})
        } else {
            let budget = request
                .reasoning_budget
                .map_or_else(|| thinking_budget(effort), i64::from);
            json!({"thinkingBudget": budget, "includeThoughts": true})
        };
        generation.insert("thinkingConfig".into(), config);
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(Value::Object(body))
}

fn round(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

/// Keywords that only annotate a schema: Gemini need not see them.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// The JSON Schema keywords `parametersJsonSchema` / `responseJsonSchema` take.
const SUPPORTED: &[&str] = &[
    "$id",
    "$defs",
    "$ref",
    "$anchor",
    "type",
    "format",
    "title",
    "description",
    "enum",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
    "oneOf",
    "properties",
    "additionalProperties",
    "required",
    "propertyOrdering",
    "nullable",
];

/// `schema` as Gemini takes it: annotations dropped, `const` written as a one-value `enum`,
/// anything else it cannot express refused with its location.
///
/// # Errors
/// The first keyword Gemini cannot express, with where it is.
pub fn gemini_schema(schema: &Value) -> Result<Value, String> {
    convert(schema, "")
}

fn convert(schema: &Value, at: &str) -> Result<Value, String> {
    let Value::Object(fields) = schema else {
        return Ok(schema.clone());
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let here = format!("{at}/{key}");
        match key.as_str() {
            key if ANNOTATIONS.contains(&key) => {}
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "properties" | "$defs" | "definitions" => {
                let Value::Object(children) = value else {
                    return Err(format!("'{here}' must be an object"));
                };
                let mut converted = Map::new();
                for (name, child) in children {
                    converted.insert(name.clone(), convert(child, &format!("{here}/{name}"))?);
                }
                let key = if key == "definitions" { "$defs" } else { key };
                out.insert(key.into(), Value::Object(converted));
            }
            "items" | "additionalProperties" => {
                out.insert(key.clone(), convert(value, &here)?);
            }
            "anyOf" | "oneOf" | "prefixItems" => {
                let Value::Array(options) = value else {
                    return Err(format!("'{here}' must be an array"));
                };
                let converted = options
                    .iter()
                    .enumerate()
                    .map(|(i, option)| convert(option, &format!("{here}/{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(key.clone(), Value::Array(converted));
            }
            key if SUPPORTED.contains(&key) => {
                out.insert(key.into(), value.clone());
            }
            other => {
                let place = if at.is_empty() {
                    "the schema's root"
                } else {
                    at
                };
                return Err(format!(
                    "Gemini models cannot express the JSON Schema keyword '{other}' (at \
                     {place}); remove it or choose another model."
                ));
            }
        }
    }
    Ok(Value::Object(out))
}

/// The `systemInstruction` parts and the `contents`.
fn conversation(items: &[Item]) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut system = Vec::new();
    let mut turns = Turns::new("parts");
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    // A signature Gemini put on an answer part, waiting for that part.
    let mut pending_signature: Option<&str> = None;
    for item in items {
        match item {
            Item::Message {
                role: Role::System | Role::Developer,
                parts,
                ..
            } => {
                for part in parts {
                    if let ContentPart::Text(text) = part {
                        system.push(json!({"text": text}));
                    }
                }
            }
            Item::Message {
                role: Role::User,
                parts,
                ..
            } => {
                pending_signature = None;
                for part in parts {
                    turns.push("user", user_part(part)?);
                }
            }
            Item::Message {
                role: Role::Assistant,
                parts,
                ..
            } => {
                for part in parts {
                    if let ContentPart::Text(text) | ContentPart::Refusal(text) = part {
                        let mut part = json!({"text": text});
                        if let Some(signature) = pending_signature.take() {
                            part["thoughtSignature"] = signature.into();
                        }
                        turns.push("model", part);
                    }
                }
            }
            Item::Reasoning {
                text, signature, ..
            } => {
                let signature = Sealed::for_family(signature.as_ref(), Family::Gemini);
                match (text.is_empty(), signature) {
                    (true, Some(signature)) => pending_signature = Some(signature),
                    (false, Some(signature)) => turns.push(
                        "model",
                        json!({"text": text, "thought": true, "thoughtSignature": signature}),
                    ),
                    // Reasoning Gemini did not sign is not owed to it.
                    (_, None) => {}
                }
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                signature,
            } => {
                call_names.insert(call_id, name);
                let args = call_arguments(call_id, arguments, "Gemini")?;
                let mut call = json!({"name": name, "args": args});
                if !call_id.starts_with(SYNTHETIC_CALL_PREFIX) {
                    call["id"] = call_id.clone().into();
                }
                let mut part = json!({"functionCall": call});
                let signature = Sealed::for_family(signature.as_ref(), Family::Gemini)
                    .or_else(|| pending_signature.take());
                if let Some(signature) = signature {
                    part["thoughtSignature"] = signature.into();
                }
                turns.push("model", part);
            }
            Item::FunctionOutput {
                call_id,
                output,
                is_error,
            } => {
                pending_signature = None;
                let name = call_names.get(call_id.as_str()).copied().unwrap_or("tool");
                // Gemini's documented convention: "output" for a result, "error" for a failure.
                let key = if *is_error { "error" } else { "output" };
                let mut response = json!({"name": name, "response": {key: output}});
                if !call_id.starts_with(SYNTHETIC_CALL_PREFIX) {
                    response["id"] = call_id.clone().into();
                }
                turns.push("user", json!({"functionResponse": response}));
            }
        }
    }
    Ok((system, turns.into_turns()))
}

/// The media type a URL's path suggests, for `fileData` (Gemini wants one).
fn media_type_of_url(url: &str, fallback: &'static str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let table = [
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".webp", "image/webp"),
        (".gif", "image/gif"),
        (".pdf", "application/pdf"),
        (".mp3", "audio/mp3"),
        (".wav", "audio/wav"),
        (".txt", "text/plain"),
    ];
    table
        .iter()
        .find(|(extension, _)| path.ends_with(extension))
        .map_or(fallback, |(_, media_type)| media_type)
}

fn user_part(part: &ContentPart) -> Result<Value, Error> {
    let fallback = match part {
        ContentPart::Image { .. } => "image/jpeg",
        _ => "application/pdf",
    };
    match part {
        ContentPart::Text(text) | ContentPart::Refusal(text) => Ok(json!({"text": text})),
        ContentPart::Audio { data, format } => {
            let media_type = match format.as_str() {
                "mp3" => "audio/mp3",
                _ => "audio/wav",
            };
            Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        ContentPart::Image { .. } | ContentPart::File { .. } => match part.media_source() {
            Some(MediaSource::Inline { media_type, base64 }) => {
                Ok(json!({"inlineData": {"mimeType": media_type, "data": base64}}))
            }
            Some(MediaSource::Url(url)) => Ok(json!({"fileData": {
                "mimeType": media_type_of_url(url, fallback), "fileUri": url}})),
            Some(MediaSource::FileId(_)) | None => Err(Error::new(
                ErrorKind::Unsupported,
                "Gemini models do not accept files by file id through this server.",
            )
            .with_field(RequestField::Conversation)),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use switchboard_model::{FunctionTool, Sampling};

    use super::*;

    #[test]
    fn web_search_asks_for_google_search_grounding() {
        let mut request = Request::text("m", vec![Item::text(Role::User, "news?")]);
        request.web_search = Some(switchboard_model::WebSearch {
            context_size: None,
            user_location: None,
            allowed_domains: vec![],
            blocked_domains: vec![],
        });
        request.tools = vec![Tool::Function(FunctionTool {
            name: "weather".into(),
            description: None,
            parameters: None,
            strict: false,
        })];
        let body = encode_request(&request, "gemini-x").unwrap();
        assert_eq!(body["tools"][0], json!({"googleSearch": {}}));
        assert_eq!(
            body["tools"][1]["functionDeclarations"][0]["name"],
            "weather"
        );
        if let Some(search) = request.web_search.as_mut() {
            search.allowed_domains = vec!["a.test".into()];
        }
        let error = encode_request(&request, "gemini-x").unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unsupported);
        assert_eq!(error.field, Some(RequestField::WebSearch));
    }

    #[test]
    fn a_tool_loop_with_signatures_becomes_contents() {
        let mut request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::System, "Be brief."),
                Item::Message {
                    role: Role::User,
                    parts: vec![
                        ContentPart::Text("Weather?".into()),
                        ContentPart::Image {
                            url: "https://example.com/sky.png".into(),
                            detail: None,
                        },
                        ContentPart::File {
                            file_id: None,
                            filename: Some("a.pdf".into()),
                            data: Some("data:application/pdf;base64,JVBERi0=".into()),
                        },
                    ],
                    name: None,
                },
                Item::Reasoning {
                    id: None,
                    text: "Planning.".into(),
                    summary: Vec::new(),
                    signature: Some(Sealed::new(Family::Gemini, "thought-sig")),
                    encrypted: None,
                },
                Item::Reasoning {
                    id: None,
                    text: "Claude's".into(),
                    summary: Vec::new(),
                    signature: Some(Sealed::new(Family::Anthropic, "x")),
                    encrypted: None,
                },
                Item::FunctionCall {
                    call_id: "call_gm_0_1".into(),
                    name: "weather".into(),
                    arguments: "{\"city\":\"Oslo\"}".into(),
                    signature: Some(Sealed::new(Family::Gemini, "call-sig")),
                },
                Item::FunctionOutput {
                    call_id: "call_gm_0_1".into(),
                    output: "sunny".into(),
                    is_error: false,
                },
                Item::Reasoning {
                    id: None,
                    text: String::new(),
                    summary: Vec::new(),
                    signature: Some(Sealed::new(Family::Gemini, "answer-sig")),
                    encrypted: None,
                },
                Item::text(Role::Assistant, "Sunny."),
            ],
        );
        request.tools = vec![Tool::Function(FunctionTool {
            name: "weather".into(),
            description: None,
            parameters: Some(json!({"$schema": "x", "type": "object",
                "properties": {"city": {"type": "string", "default": "Oslo"}, "unit": {"const": "c"}}})),
            strict: false,
        })];
        request.tool_choice = ToolChoice::Function("weather".into());
        request.reasoning_effort = Some(ReasoningEffort::Medium);
        request.sampling = Sampling {
            temperature: 0.5,
            max_output_tokens: Some(300),
            n: 2,
            stop: vec!["END".into()],
            ..Sampling::default()
        };
        let body = encode_request(&request, "gemini-2.5-flash").unwrap();
        assert_eq!(
            body,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "contents": [
                    {"role": "user", "parts": [
                        {"text": "Weather?"},
                        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/sky.png"}},
                        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]},
                    {"role": "model", "parts": [
                        {"text": "Planning.", "thought": true, "thoughtSignature": "thought-sig"},
                        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "call-sig"}]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}}]},
                    {"role": "model", "parts": [{"text": "Sunny.", "thoughtSignature": "answer-sig"}]}
                ],
                "tools": [{"functionDeclarations": [{"name": "weather", "parametersJsonSchema":
                    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c"]}}}}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
                "generationConfig": {"temperature": 0.5, "maxOutputTokens": 300, "stopSequences": ["END"],
                    "candidateCount": 2, "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true}}
            })
        );
        let gemini3 = encode_request(&request, "gemini-3-pro-preview").unwrap();
        assert_eq!(
            gemini3["generationConfig"]["thinkingConfig"],
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
    }

    #[test]
    fn a_failed_tool_is_reported_under_error() {
        let request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::User, "Weather?"),
                Item::FunctionCall {
                    call_id: "call_1".into(),
                    name: "weather".into(),
                    arguments: "{}".into(),
                    signature: None,
                },
                Item::FunctionOutput {
                    call_id: "call_1".into(),
                    output: "service down".into(),
                    is_error: true,
                },
            ],
        );
        let body = encode_request(&request, "gemini-2.5-flash").unwrap();
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "weather", "id": "call_1", "response": {"error": "service down"}})
        );
    }

    #[test]
    fn keywords_gemini_cannot_express_are_refused_by_place() {
        let mut request = Request::text("c", vec![Item::text(Role::User, "x")]);
        request.output_format = OutputFormat::JsonSchema {
            name: "a".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}),
            strict: true,
        };
        let error = encode_request(&request, "gemini-2.5-flash").unwrap_err();
        assert_eq!(error.field, Some(RequestField::OutputFormat));
        assert!(error.message.contains("'pattern'"), "{}", error.message);
        assert!(
            error.message.contains("/properties/code"),
            "{}",
            error.message
        );
        let mut request = Request::text("c", vec![Item::text(Role::User, "x")]);
        request.sampling.stop = (0..6).map(|i| i.to_string()).collect();
        assert!(encode_request(&request, "g").is_err());
    }
}
