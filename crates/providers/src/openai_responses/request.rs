//! Canonical request → the body of `POST {base_url}/responses` (OpenAI's Responses API).
//!
//! The conversation becomes input items: messages (`input_text`, `input_image`, `input_file`
//! parts; the assistant's as `output_text`), `function_call` and `function_call_output` items,
//! and OpenAI's own earlier reasoning as `reasoning` items with their `encrypted_content` (the
//! request is stateless, `store: false`, and asks for the encrypted reasoning back, so a
//! multi-turn conversation keeps the model's reasoning). Web search is the `web_search` tool.
//! What this API has no field for is refused, naming the parameter (`n` > 1, `stop`,
//! `logit_bias`, log probabilities, audio input), except `seed` and the penalties, which only
//! tune sampling and are not sent (as with Anthropic).

use serde_json::{json, Map, Value};
use switchboard_model::{
    ContentPart, Error, ErrorKind, Family, Item, OutputFormat, Request, RequestField, Role, Sealed,
    Tool, ToolChoice, WebSearch,
};

/// Refuses what the Responses API cannot be asked.
///
/// # Errors
/// `Unsupported` naming the parameter.
pub fn refuse_unsendable(request: &Request) -> Result<(), Error> {
    let sampling = &request.sampling;
    let refuse = |field: RequestField, what: &str| {
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("This model is served through OpenAI's Responses API, which has no {what}."),
        )
        .with_field(field))
    };
    if sampling.n > 1 {
        return refuse(RequestField::Choices, "way to ask for several choices (n)");
    }
    if !sampling.stop.is_empty() {
        return refuse(RequestField::StopSequences, "stop sequences");
    }
    if !sampling.logit_bias.is_empty() {
        return refuse(RequestField::LogitBias, "logit_bias");
    }
    if sampling.logprobs {
        return refuse(
            RequestField::Logprobs,
            "log probabilities through this server",
        );
    }
    let audio = request.items.iter().any(|item| {
        matches!(item, Item::Message { parts, .. }
            if parts.iter().any(|p| matches!(p, ContentPart::Audio { .. })))
    });
    if audio {
        return refuse(RequestField::Conversation, "audio input");
    }
    Ok(())
}

/// The body for `POST {base_url}/responses`, naming `upstream_model`.
#[must_use]
pub fn encode_request(request: &Request, upstream_model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    body.insert("input".into(), Value::Array(input(&request.items)));
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|Tool::Function(function)| {
            let mut tool = json!({"type": "function", "name": function.name,
                                  "strict": function.strict,
                                  "parameters": function.parameters.clone()
                                      .unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(description) = &function.description {
                tool["description"] = description.clone().into();
            }
            tool
        })
        .collect();
    let mut include = vec![Value::from("reasoning.encrypted_content")];
    if let Some(search) = &request.web_search {
        tools.push(web_search_tool(search));
        include.push("web_search_call.action.sources".into());
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        let choice = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "name": name}),
        };
        body.insert("tool_choice".into(), choice);
        body.insert(
            "parallel_tool_calls".into(),
            request.parallel_tool_calls.into(),
        );
    }
    match &request.output_format {
        OutputFormat::Text => {}
        OutputFormat::JsonObject => {
            body.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        OutputFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        } => {
            let mut format = json!({"type": "json_schema", "name": name, "schema": schema,
                                    "strict": strict});
            if let Some(description) = description {
                format["description"] = description.clone().into();
            }
            body.insert("text".into(), json!({"format": format}));
        }
    }
    if let Some(effort) = request.reasoning_effort {
        body.insert(
            "reasoning".into(),
            json!({"effort": effort.as_str(), "summary": "auto"}),
        );
    }
    let sampling = &request.sampling;
    if (sampling.temperature - 1.0).abs() > f32::EPSILON {
        body.insert("temperature".into(), json!(sampling.temperature));
    }
    if (sampling.top_p - 1.0).abs() > f32::EPSILON {
        body.insert("top_p".into(), json!(sampling.top_p));
    }
    if let Some(max) = sampling.max_output_tokens {
        body.insert("max_output_tokens".into(), max.into());
    }
    if let Some(user) = &request.user {
        body.insert("safety_identifier".into(), user.clone().into());
    }
    if let Some(tier) = &request.service_tier {
        body.insert("service_tier".into(), tier.clone().into());
    }
    body.insert("include".into(), Value::Array(include));
    body.insert("store".into(), false.into());
    body.insert("stream".into(), true.into());
    Value::Object(body)
}

/// The `web_search` tool for the request's options.
fn web_search_tool(search: &WebSearch) -> Value {
    let mut tool = json!({"type": "web_search"});
    if let Some(size) = &search.context_size {
        tool["search_context_size"] = size.clone().into();
    }
    if let Some(location) = search.user_location.as_ref().and_then(crate::flat_location) {
        tool["user_location"] = location;
    }
    if !search.allowed_domains.is_empty() {
        tool["filters"] = json!({"allowed_domains": search.allowed_domains});
    }
    tool
}

/// The conversation as input items. Reasoning from another family has no place here and is
/// left out; OpenAI's goes back as it came.
fn input(items: &[Item]) -> Vec<Value> {
    let mut input = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Message { role, parts, .. } => {
                let (role, assistant) = match role {
                    Role::System => ("system", false),
                    Role::Developer => ("developer", false),
                    Role::User => ("user", false),
                    Role::Assistant => ("assistant", true),
                };
                let content: Vec<Value> = parts
                    .iter()
                    .filter_map(|part| content_part(part, assistant))
                    .collect();
                input.push(json!({"type": "message", "role": role, "content": content}));
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => input.push(
                json!({"type": "function_call", "call_id": call_id, "name": name,
                                   "arguments": arguments}),
            ),
            Item::FunctionOutput {
                call_id, output, ..
            } => input.push(json!({"type": "function_call_output", "call_id": call_id,
                                   "output": output})),
            Item::Reasoning {
                id,
                summary,
                encrypted,
                ..
            } => {
                let Some(encrypted) = Sealed::for_family(encrypted.as_ref(), Family::OpenAi) else {
                    continue;
                };
                let summary: Vec<Value> = summary
                    .iter()
                    .map(|text| json!({"type": "summary_text", "text": text}))
                    .collect();
                let (upstream_id, content) = super::open_reasoning(encrypted);
                let id = upstream_id
                    .map(str::to_owned)
                    .or_else(|| id.clone())
                    .unwrap_or_else(|| "rs_switchboard".to_owned());
                input.push(json!({"type": "reasoning", "id": id, "summary": summary,
                                  "encrypted_content": content}));
            }
        }
    }
    input
}

fn content_part(part: &ContentPart, assistant: bool) -> Option<Value> {
    Some(match part {
        ContentPart::Text(text) if assistant => {
            json!({"type": "output_text", "text": text, "annotations": []})
        }
        ContentPart::Text(text) => json!({"type": "input_text", "text": text}),
        ContentPart::Refusal(refusal) if assistant => {
            json!({"type": "refusal", "refusal": refusal})
        }
        ContentPart::Refusal(_) | ContentPart::Audio { .. } => return None,
        ContentPart::Image { url, detail } => json!({"type": "input_image", "image_url": url,
                                                     "detail": detail.as_deref().unwrap_or("auto")}),
        ContentPart::File {
            file_id,
            filename,
            data,
        } => {
            let mut file = json!({"type": "input_file"});
            if let Some(id) = file_id {
                file["file_id"] = id.clone().into();
            }
            if let Some(name) = filename {
                file["filename"] = name.clone().into();
            }
            if let Some(data) = data {
                file["file_data"] = data.clone().into();
            }
            file
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use switchboard_model::{FunctionTool, Sampling};

    use super::*;

    #[test]
    fn a_conversation_with_tools_reasoning_and_search_becomes_input_items() {
        let mut request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::System, "Be brief."),
                Item::text(Role::User, "Weather and news in Oslo?"),
                Item::Reasoning {
                    id: Some("rs_1".into()),
                    text: String::new(),
                    summary: vec!["Look up the weather.".into()],
                    signature: None,
                    encrypted: Some(Sealed::new(Family::OpenAi, "rs_up:gAAAA-enc")),
                },
                Item::Reasoning {
                    id: None,
                    text: "Claude's thought".into(),
                    summary: vec![],
                    signature: Some(Sealed::new(Family::Anthropic, "sig")),
                    encrypted: None,
                },
                Item::FunctionCall {
                    call_id: "call_1".into(),
                    name: "weather".into(),
                    arguments: "{\"city\":\"Oslo\"}".into(),
                    signature: None,
                },
                Item::FunctionOutput {
                    call_id: "call_1".into(),
                    output: "sunny".into(),
                    is_error: false,
                },
            ],
        );
        request.tools = vec![Tool::Function(FunctionTool {
            name: "weather".into(),
            description: Some("Weather now".into()),
            parameters: Some(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
            strict: false,
        })];
        request.web_search = Some(WebSearch {
            context_size: Some("low".into()),
            user_location: Some(
                json!({"type": "approximate", "approximate": {"city": "Oslo", "country": "NO"}}),
            ),
            allowed_domains: vec!["yr.no".into()],
            blocked_domains: vec![],
        });
        request.sampling = Sampling {
            max_output_tokens: Some(100),
            ..Sampling::default()
        };
        let body = encode_request(&request, "gpt-up");
        assert_eq!(body["model"], "gpt-up");
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather and news in Oslo?"}]},
                {"type": "reasoning", "id": "rs_up", "summary": [{"type": "summary_text", "text": "Look up the weather."}],
                 "encrypted_content": "gAAAA-enc"},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
            ])
        );
        assert_eq!(
            body["tools"][1],
            json!({"type": "web_search", "search_context_size": "low",
                   "user_location": {"type": "approximate", "city": "Oslo", "country": "NO"},
                   "filters": {"allowed_domains": ["yr.no"]}})
        );
        assert_eq!(body["tools"][0]["name"], "weather");
        assert_eq!(
            body["include"],
            json!([
                "reasoning.encrypted_content",
                "web_search_call.action.sources"
            ])
        );
        assert_eq!(body["store"], false);
        assert_eq!(body["max_output_tokens"], 100);
        request.sampling.stop = vec!["END".into()];
        let refused = refuse_unsendable(&request).unwrap_err();
        assert_eq!(refused.field, Some(RequestField::StopSequences));
    }
}
