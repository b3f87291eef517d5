//! Canonical request → an OpenAI Chat Completions request body, for any server that speaks
//! that wire (OpenAI, vLLM, SGLang, llama.cpp's server, Ollama, OpenRouter, Switchboard). The
//! upstream is always asked to stream, with usage, so usage is known whatever the client asked
//! and a non-streaming answer is the fold of the same events.

use serde_json::{json, Map, Value};
use switchboard_model::{
    ContentPart, Error, ErrorKind, Family, Item, MediaSource, OutputFormat, Request, RequestField,
    Role, Sealed, Tool, ToolChoice, WebSearch,
};

/// What the Chat Completions wire cannot carry, refused before anything is sent: a file by
/// URL (its `file` part takes only `file_id` or inline `file_data`; images by URL are fine).
///
/// # Errors
/// An unsupported-input error naming the conversation.
pub fn refuse_unsendable(request: &Request) -> Result<(), Error> {
    let file_by_url = request.items.iter().any(|item| {
        matches!(item, Item::Message { parts, .. } if parts.iter().any(|part| {
            matches!(part, ContentPart::File { .. })
                && matches!(part.media_source(), Some(MediaSource::Url(_)))
        }))
    });
    if file_by_url {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "This model's provider does not accept files by URL; send the file's bytes as \
             file_data instead.",
        )
        .with_field(RequestField::Conversation));
    }
    Ok(())
}

/// The body for `POST {base_url}/chat/completions`, naming `upstream_model`.
#[must_use]
pub fn encode_request(request: &Request, upstream_model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), upstream_model.into());
    body.insert("messages".into(), Value::Array(messages(&request.items)));
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|Tool::Function(tool)| {
                let mut function = Map::new();
                function.insert("name".into(), tool.name.clone().into());
                if let Some(description) = &tool.description {
                    function.insert("description".into(), description.clone().into());
                }
                if let Some(parameters) = &tool.parameters {
                    function.insert("parameters".into(), parameters.clone());
                }
                if tool.strict {
                    function.insert("strict".into(), true.into());
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let choice = match &request.tool_choice {
            ToolChoice::None => json!("none"),
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
        if !request.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), false.into());
        }
    }
    match &request.output_format {
        OutputFormat::Text => {}
        OutputFormat::JsonObject => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        OutputFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut spec = Map::new();
            spec.insert("name".into(), name.clone().into());
            if let Some(description) = description {
                spec.insert("description".into(), description.clone().into());
            }
            spec.insert("schema".into(), schema.clone());
            spec.insert("strict".into(), (*strict).into());
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": spec}),
            );
        }
    }
    let sampling = &request.sampling;
    // Defaults are left out: some servers refuse sampling parameters for some models.
    if (sampling.temperature - 1.0).abs() > f32::EPSILON {
        body.insert("temperature".into(), json!(sampling.temperature));
    }
    if (sampling.top_p - 1.0).abs() > f32::EPSILON {
        body.insert("top_p".into(), json!(sampling.top_p));
    }
    // Not OpenAI's own parameter, but vLLM, SGLang, llama.cpp and Ollama take it by this name.
    if let Some(top_k) = sampling.top_k {
        body.insert("top_k".into(), top_k.into());
    }
    if sampling.n > 1 {
        body.insert("n".into(), sampling.n.into());
    }
    if let Some(seed) = sampling.seed {
        // Sent back as the signed value the client gave (the canonical seed wraps it).
        #[allow(clippy::cast_possible_wrap)]
        body.insert("seed".into(), (seed as i64).into());
    }
    if !sampling.stop.is_empty() {
        body.insert("stop".into(), json!(sampling.stop));
    }
    if sampling.presence_penalty != 0.0 {
        body.insert("presence_penalty".into(), json!(sampling.presence_penalty));
    }
    if sampling.frequency_penalty != 0.0 {
        body.insert(
            "frequency_penalty".into(),
            json!(sampling.frequency_penalty),
        );
    }
    if !sampling.logit_bias.is_empty() {
        let bias: Map<String, Value> = sampling
            .logit_bias
            .iter()
            .map(|(token, bias)| (token.to_string(), json!(bias)))
            .collect();
        body.insert("logit_bias".into(), Value::Object(bias));
    }
    if sampling.logprobs {
        body.insert("logprobs".into(), true.into());
        if sampling.top_logprobs > 0 {
            body.insert("top_logprobs".into(), sampling.top_logprobs.into());
        }
    }
    if let Some(max) = sampling.max_output_tokens {
        body.insert("max_completion_tokens".into(), max.into());
    }
    if let Some(effort) = request.reasoning_effort {
        body.insert("reasoning_effort".into(), effort.as_str().into());
    }
    if let Some(user) = &request.user {
        body.insert("user".into(), user.clone().into());
    }
    if let Some(search) = &request.web_search {
        body.insert("web_search_options".into(), web_search_options(search));
    }
    body.insert("stream".into(), true.into());
    body.insert("stream_options".into(), json!({"include_usage": true}));
    Value::Object(body)
}

/// The conversation as Chat Completions messages: calls join the assistant message before
/// them, results become `tool` messages. Earlier reasoning goes back only where an
/// OpenAI-compatible server made it: as the `reasoning_details` it sent, on the assistant
/// message that follows (plain reasoning text has no place on the wire, and strict servers
/// refuse fields they do not know). Developer messages go as `system`, which every compatible
/// server knows.
fn messages(items: &[Item]) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::with_capacity(items.len());
    let mut pending_details: Vec<Value> = Vec::new();
    for item in items {
        // Details wait for the assistant turn they belong to; any other turn in between means
        // there is none.
        let in_assistant_turn = matches!(
            item,
            Item::Message {
                role: Role::Assistant,
                ..
            } | Item::FunctionCall { .. }
                | Item::Reasoning { .. }
        );
        if !in_assistant_turn {
            pending_details.clear();
        }
        match item {
            Item::Message { role, parts, name } => {
                let role_name = match role {
                    Role::System | Role::Developer => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                let mut message = Map::new();
                message.insert("role".into(), role_name.into());
                if *role == Role::Assistant {
                    assistant_content(parts, &mut message);
                } else {
                    message.insert("content".into(), content(parts));
                }
                if let Some(name) = name {
                    message.insert("name".into(), name.clone().into());
                }
                if *role == Role::Assistant && !pending_details.is_empty() {
                    let details = std::mem::take(&mut pending_details);
                    message.insert("reasoning_details".into(), Value::Array(details));
                }
                messages.push(Value::Object(message));
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                signature,
            } => {
                let call = json!({"id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": arguments}});
                if let Some(data) = Sealed::for_family(signature.as_ref(), Family::OpenAi) {
                    pending_details.push(json!({"type": "reasoning.encrypted", "id": call_id,
                                                "data": data, "format": Family::OpenAi.format()}));
                }
                let open = messages
                    .last_mut()
                    .filter(|last| last["role"] == "assistant")
                    .and_then(Value::as_object_mut);
                let assistant = match open {
                    Some(assistant) => assistant,
                    None => {
                        messages.push(json!({"role": "assistant", "content": null}));
                        let Some(Value::Object(created)) = messages.last_mut() else {
                            continue;
                        };
                        created
                    }
                };
                match assistant.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        assistant.insert("tool_calls".into(), json!([call]));
                    }
                }
                if !pending_details.is_empty() {
                    let details = assistant
                        .entry("reasoning_details")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(details) = details {
                        details.append(&mut pending_details);
                    }
                }
            }
            Item::FunctionOutput {
                call_id, output, ..
            } => messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output})),
            Item::Reasoning {
                text,
                signature,
                encrypted,
                ..
            } => {
                let format = Family::OpenAi.format();
                if let Some(signature) = Sealed::for_family(signature.as_ref(), Family::OpenAi) {
                    pending_details.push(json!({"type": "reasoning.text", "text": text,
                                                "signature": signature, "format": format}));
                }
                if let Some(data) = Sealed::for_family(encrypted.as_ref(), Family::OpenAi) {
                    pending_details.push(json!({"type": "reasoning.encrypted", "data": data,
                                                "format": format}));
                }
            }
        }
    }
    messages
}

/// A string when the content is one text part (what every server accepts), else parts.
fn content(parts: &[ContentPart]) -> Value {
    if let [ContentPart::Text(text)] = parts {
        return text.clone().into();
    }
    Value::Array(parts.iter().filter_map(part).collect())
}

fn assistant_content(parts: &[ContentPart], message: &mut Map<String, Value>) {
    let mut text = String::new();
    let mut refusal = None;
    for part in parts {
        match part {
            ContentPart::Text(piece) => text.push_str(piece),
            ContentPart::Refusal(piece) => refusal = Some(piece.clone()),
            _ => {}
        }
    }
    message.insert(
        "content".into(),
        if text.is_empty() && refusal.is_some() {
            Value::Null
        } else {
            text.into()
        },
    );
    if let Some(refusal) = refusal {
        message.insert("refusal".into(), refusal.into());
    }
}

fn part(part: &ContentPart) -> Option<Value> {
    Some(match part {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Refusal(_) => return None,
        ContentPart::Image { url, detail } => {
            let mut image = json!({"url": url});
            if let Some(detail) = detail {
                image["detail"] = detail.clone().into();
            }
            json!({"type": "image_url", "image_url": image})
        }
        ContentPart::Audio { data, format } => {
            json!({"type": "input_audio", "input_audio": {"data": data, "format": format}})
        }
        ContentPart::File {
            file_id,
            filename,
            data,
        } => {
            let mut file = Map::new();
            if let Some(id) = file_id {
                file.insert("file_id".into(), id.clone().into());
            }
            if let Some(name) = filename {
                file.insert("filename".into(), name.clone().into());
            }
            if let Some(data) = data {
                file.insert("file_data".into(), data.clone().into());
            }
            json!({"type": "file", "file": file})
        }
    })
}

/// `web_search_options` for a model that searches natively: the context size, the location in
/// Chat's nested shape, and the domain filter in the Responses tool's shape (which OpenAI-family
/// models accept here too).
fn web_search_options(search: &WebSearch) -> Value {
    let mut options = Map::new();
    if let Some(size) = &search.context_size {
        options.insert("search_context_size".into(), size.clone().into());
    }
    if let Some(location) = search.user_location.as_ref().and_then(crate::flat_location) {
        let mut approximate = location;
        if let Some(fields) = approximate.as_object_mut() {
            fields.remove("type");
        }
        options.insert(
            "user_location".into(),
            json!({"type": "approximate", "approximate": approximate}),
        );
    }
    if !search.allowed_domains.is_empty() {
        options.insert(
            "filters".into(),
            json!({"allowed_domains": search.allowed_domains}),
        );
    }
    Value::Object(options)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use switchboard_model::{
        ContentPart, FunctionTool, Item, Request, Role, Sampling, Tool, ToolChoice,
    };

    use super::encode_request;

    /// A model that searches natively gets the search options in Chat's shape (the location
    /// nested under `approximate`, whichever shape the client used).
    #[test]
    fn web_search_options_reach_a_model_that_searches() {
        let mut request = Request::text("m", vec![Item::text(Role::User, "news?")]);
        assert!(encode_request(&request, "up")
            .get("web_search_options")
            .is_none());
        request.web_search = Some(switchboard_model::WebSearch {
            context_size: Some("high".into()),
            user_location: Some(json!({"type": "approximate", "city": "Oslo", "country": "NO"})),
            allowed_domains: vec!["nrk.no".into()],
            blocked_domains: vec![],
        });
        assert_eq!(
            encode_request(&request, "up")["web_search_options"],
            json!({"search_context_size": "high",
                   "user_location": {"type": "approximate",
                                     "approximate": {"city": "Oslo", "country": "NO"}},
                   "filters": {"allowed_domains": ["nrk.no"]}})
        );
    }

    #[test]
    fn files_by_url_are_refused_before_sending() {
        let file = |data: &str| {
            Request::text(
                "m",
                vec![Item::Message {
                    role: Role::User,
                    name: None,
                    parts: vec![ContentPart::File {
                        file_id: None,
                        filename: Some("a.pdf".into()),
                        data: Some(data.into()),
                    }],
                }],
            )
        };
        let error = super::refuse_unsendable(&file("https://example.com/a.pdf")).unwrap_err();
        assert_eq!(error.kind, switchboard_model::ErrorKind::Unsupported);
        assert!(error.message.contains("file_data"), "{}", error.message);
        assert!(super::refuse_unsendable(&file("data:application/pdf;base64,JVBERi0=")).is_ok());
    }

    #[test]
    fn a_tool_loop_becomes_chat_messages() {
        let mut request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::Developer, "Be brief."),
                Item::text(Role::User, "Weather in Oslo?"),
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
            description: None,
            parameters: Some(json!({"type": "object"})),
            strict: false,
        })];
        request.tool_choice = ToolChoice::Function("weather".into());
        request.parallel_tool_calls = false;
        request.sampling = Sampling {
            temperature: 0.0,
            max_output_tokens: Some(50),
            seed: Some(u64::MAX),
            ..Sampling::default()
        };
        let body = encode_request(&request, "gpt-4o-mini");
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Oslo?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
                ],
                "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
                "parallel_tool_calls": false,
                "temperature": 0.0,
                "seed": -1,
                "max_completion_tokens": 50,
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn reasoning_details_go_back_only_where_they_came_from() {
        use switchboard_model::{Family, Sealed};
        let reasoning = |family, text: &str| Item::Reasoning {
            id: None,
            text: text.into(),
            summary: Vec::new(),
            signature: Some(Sealed::new(family, format!("sig-{text}"))),
            encrypted: None,
        };
        let request = Request::text(
            "catalog-id",
            vec![
                Item::text(Role::User, "Hi"),
                reasoning(Family::Anthropic, "claude"),
                reasoning(Family::OpenAi, "compat"),
                Item::FunctionCall {
                    call_id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                    signature: Some(Sealed::new(Family::OpenAi, "call-sig")),
                },
                Item::FunctionOutput {
                    call_id: "call_1".into(),
                    output: "ok".into(),
                    is_error: false,
                },
                // Reasoning followed by no assistant turn goes nowhere.
                reasoning(Family::OpenAi, "orphan"),
                Item::text(Role::User, "Thanks"),
            ],
        );
        let body = encode_request(&request, "m");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(
            messages[1]["reasoning_details"],
            json!([
                {"type": "reasoning.text", "text": "compat", "signature": "sig-compat",
                 "format": "openai-responses-v1"},
                {"type": "reasoning.encrypted", "id": "call_1", "data": "call-sig",
                 "format": "openai-responses-v1"}
            ])
        );
        assert!(!body.to_string().contains("orphan"));
        assert!(!body.to_string().contains("claude"));
    }
}
