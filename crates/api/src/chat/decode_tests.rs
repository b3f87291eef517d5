#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;
use switchboard_model::ErrorKind;
use switchboard_testkit::validate_or_skip;

fn base() -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]})
}

/// `base()` with `patch`'s top-level fields set (a `null` patch value sets `null`).
fn with(patch: Value) -> Value {
    let mut body = base();
    for (key, value) in patch.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// Decodes a body the spec also accepts.
fn ok(body: &Value) -> ChatRequest {
    validate_or_skip("CreateChatCompletionRequest", body);
    decode_chat_request(body.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("{body} was rejected: {error:?}"))
}

fn err(body: &Value) -> Error {
    match decode_chat_request(body.to_string().as_bytes()) {
        Ok(request) => panic!("{body} was accepted: {request:?}"),
        Err(error) => error,
    }
}

#[test]
fn minimal_request_gets_defaults() {
    let decoded = ok(&base());
    assert!(!decoded.stream);
    assert!(!decoded.include_usage);
    assert!(!decoded.store);
    assert_eq!(decoded.service_tier, None);
    let expected = Request {
        tool_choice: ToolChoice::None,
        ..Request::text("smollm2", vec![Item::text(Role::User, "Hi")])
    };
    assert_eq!(decoded.request, expected);
}

#[test]
fn malformed_json_and_non_objects() {
    for body in ["{", "", "{\"model\": }"] {
        let error = decode_chat_request(body.as_bytes()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(
            error
                .message
                .starts_with("We could not parse the JSON body of your request."),
            "{}",
            error.message
        );
        assert_eq!(error.param, None);
        // Where it broke, in our words, not the parser's ("EOF while parsing…").
        assert!(
            error.message.contains("at line 1, column"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("EOF"), "{}", error.message);
        assert!(
            !error.message.contains("expected value"),
            "{}",
            error.message
        );
    }
    let error = decode_chat_request(b"[1]").unwrap_err();
    assert_eq!(error.param, None);
    assert!(error.message.contains("an array"), "{}", error.message);
}

#[test]
fn every_message_role_and_part() {
    let body = with(json!({"messages": [
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}], "name": "ops"},
        {"role": "user", "name": "ann", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}},
            {"type": "file", "file": {"file_data": "JVBE", "filename": "a.pdf"}}
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}, {"type": "refusal", "refusal": "no"}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":1}"}},
            {"id": "call_2", "type": "function", "function": {"name": "put", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "", "refusal": "nope", "name": "bot"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "get", "arguments": "{}"}}
        ]}
    ]}));
    let items = ok(&body).request.items;
    assert_eq!(
        items,
        vec![
            Item::text(Role::System, "sys"),
            Item::Message {
                role: Role::Developer,
                parts: vec![ContentPart::Text("dev".into())],
                name: Some("ops".into())
            },
            Item::Message {
                role: Role::User,
                name: Some("ann".into()),
                parts: vec![
                    ContentPart::Text("look".into()),
                    ContentPart::Image {
                        url: "https://x/y.png".into(),
                        detail: Some("low".into())
                    },
                    ContentPart::Image {
                        url: "data:image/png;base64,AAA".into(),
                        detail: None
                    },
                    ContentPart::Audio {
                        data: "UklG".into(),
                        format: "wav".into()
                    },
                    ContentPart::File {
                        file_id: Some("file-1".into()),
                        filename: None,
                        data: None
                    },
                    ContentPart::File {
                        file_id: None,
                        filename: Some("a.pdf".into()),
                        data: Some("JVBE".into())
                    },
                ],
            },
            Item::Message {
                role: Role::Assistant,
                parts: vec![
                    ContentPart::Text("ok".into()),
                    ContentPart::Refusal("no".into())
                ],
                name: None
            },
            Item::FunctionCall {
                call_id: "call_1".into(),
                name: "get".into(),
                arguments: "{\"a\":1}".into(),
                signature: None,
            },
            Item::FunctionCall {
                call_id: "call_2".into(),
                name: "put".into(),
                arguments: "{}".into(),
                signature: None,
            },
            Item::FunctionOutput {
                call_id: "call_1".into(),
                output: "42".into(),
                is_error: false,
            },
            Item::FunctionOutput {
                call_id: "call_2".into(),
                output: "ab".into(),
                is_error: false,
            },
            Item::Message {
                role: Role::Assistant,
                parts: vec![
                    ContentPart::Text(String::new()),
                    ContentPart::Refusal("nope".into())
                ],
                name: Some("bot".into())
            },
            Item::FunctionCall {
                call_id: "call_3".into(),
                name: "get".into(),
                arguments: "{}".into(),
                signature: None,
            },
        ]
    );
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let tool = json!({"type": "function", "function": {"name": "f"}});
    let calls = json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
        "function": {"name": "f", "arguments": "{}"}}]});
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "x", "extra": 1}]}),
            "messages[0].extra",
        ),
        (
            json!({"messages": [{"role": "system", "content": "x", "tool_call_id": "c"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {}}]}]}),
            "messages[0].content[0].cache_control",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "size": 1}}]}]}),
            "messages[0].content[0].image_url.size",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "index": 0,
            "function": {"name": "f", "arguments": "{}"}}]}]}),
            "messages[0].tool_calls[0].index",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}", "x": 1}}]}]}),
            "messages[0].tool_calls[0].function.x",
        ),
        (
            json!({"messages": [calls, {"role": "tool", "tool_call_id": "c", "content": "r", "is_error": true}]}),
            "messages[1].is_error",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}, "strict": true}]}),
            "tools[0].strict",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "input_schema": {}}}]}),
            "tools[0].function.input_schema",
        ),
        (
            json!({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}}),
            "tool_choice.function.x",
        ),
        (
            json!({"response_format": {"type": "json_object", "schema": {}}}),
            "response_format.schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "extra": 1}}}),
            "response_format.json_schema.extra",
        ),
        (
            json!({"stream": true, "stream_options": {"include_usage": true, "chunk": 1}}),
            "stream_options.chunk",
        ),
        (
            json!({"web_search_options": {"size": "low"}}),
            "web_search_options.size",
        ),
        (
            json!({"prompt_cache_options": {"ttl": "30m", "x": 1}}),
            "prompt_cache_options.x",
        ),
    ];
    for (body, param) in cases {
        let error = err(&with(body.clone()));
        assert_eq!(error.param.as_deref(), Some(param), "{body} → {error:?}");
        assert_eq!(error.message, format!("Unknown parameter: '{param}'."));
        assert_eq!(error.code.as_deref(), Some("unknown_parameter"));
    }
    // What a client echoing a response message back sends is accepted: `annotations`, nulls.
    let echoed = json!({"messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "content": "y", "refusal": null, "annotations": [], "audio": null,
         "function_call": null, "tool_calls": null, "parsed": {"a": 1}},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
         "function": {"name": "f", "arguments": "{}", "parsed_arguments": {}}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}, {"role": "user", "content": "z"}]});
    // (Not `ok`: the spec has no `annotations` on request messages, so it would not validate.)
    let echoed = decode_chat_request(with(echoed).to_string().as_bytes());
    assert_eq!(echoed.map(|d| d.request.items.len()), Ok(5));
    // LangChain names the tool on tool messages; OpenAI accepts it.
    let named = json!({"messages": [calls, {"role": "tool", "tool_call_id": "c", "content": "r", "name": "f"}]});
    assert_eq!(ok(&with(named)).request.items.len(), 2);
}

#[test]
fn tool_messages_must_answer_a_preceding_call() {
    let calls = json!({"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    let answer = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "r"});
    let orphan = err(&with(
        json!({"messages": [{"role": "user", "content": "x"}, answer("a")]}),
    ));
    assert_eq!(orphan.param.as_deref(), Some("messages[1].role"));
    assert!(orphan
        .message
        .contains("must be a response to a preceeding message with 'tool_calls'"));
    let first = err(&with(json!({"messages": [answer("a")]})));
    assert_eq!(first.param.as_deref(), Some("messages[0].role"));
    let late = err(&with(
        json!({"messages": [calls, answer("a"), {"role": "user", "content": "x"}, answer("b")]}),
    ));
    assert_eq!(late.param.as_deref(), Some("messages[3].role"));
    let unknown = err(&with(json!({"messages": [calls, answer("z")]})));
    assert_eq!(unknown.param.as_deref(), Some("messages[1].tool_call_id"));
    assert!(unknown
        .message
        .contains("'tool_call_id' of 'z' not found in 'tool_calls'"));
    assert_eq!(
        ok(&with(
            json!({"messages": [calls, answer("a"), answer("b")]})
        ))
        .request
        .items
        .len(),
        4
    );
}

#[test]
fn inert_fields_are_still_typed() {
    let cases = [
        (json!({"verbosity": 5}), "verbosity", "Invalid type for 'verbosity'"),
        (json!({"verbosity": "loud"}), "verbosity", "Invalid value: 'loud'."),
        (json!({"prompt_cache_key": 5}), "prompt_cache_key", "expected a string, but got an integer"),
        (json!({"prompt_cache_key": "k".repeat(65)}), "prompt_cache_key", "string too long"),
        (json!({"safety_identifier": []}), "safety_identifier", "expected a string, but got an array"),
        (json!({"safety_identifier": "s".repeat(65)}), "safety_identifier", "maximum length 64"),
        (json!({"prompt_cache_retention": "forever"}), "prompt_cache_retention", "Invalid value: 'forever'."),
        (json!({"prompt_cache_options": {"ttl": "1h"}}), "prompt_cache_options.ttl", "Invalid value: '1h'."),
        (json!({"stream": true, "stream_options": {"include_obfuscation": "no"}}), "stream_options.include_obfuscation", "expected a boolean"),
        (json!({"max_tokens": 9_223_372_036_854_775_808_u64}), "max_tokens",
         "Invalid 'max_tokens': integer above maximum value. Expected a value <= 9223372036854775807, but got 9223372036854775808 instead."),
        (json!({"seed": 18_446_744_073_709_551_615_u64}), "seed", "integer above maximum value"),
    ];
    for (body, param, message) in cases {
        let error = err(&with(body.clone()));
        assert_eq!(error.param.as_deref(), Some(param), "{body} → {error:?}");
        assert!(error.message.contains(message), "{body}: {}", error.message);
        assert!(
            !error.message.contains("i64") && !error.message.contains("u64"),
            "{}",
            error.message
        );
    }
    ok(&with(
        json!({"verbosity": "low", "prompt_cache_key": "k", "safety_identifier": "s",
        "prompt_cache_retention": "24h", "prompt_cache_options": {"ttl": "30m", "mode": "explicit"},
        "verbosity": null}),
    ));
}

#[test]
fn tools_and_tool_choice() {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
        {"type": "function", "function": {"name": "noop"}}
    ]);
    let decoded = ok(&with(json!({"tools": tools, "parallel_tool_calls": false})));
    assert_eq!(
        decoded.request.tools,
        vec![
            Tool::Function(FunctionTool {
                name: "get_weather".into(),
                description: Some("Weather".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}})
                ),
                strict: true,
            }),
            Tool::Function(FunctionTool {
                name: "noop".into(),
                description: None,
                parameters: None,
                strict: false
            }),
        ]
    );
    assert_eq!(decoded.request.tool_choice, ToolChoice::Auto);
    assert!(!decoded.request.parallel_tool_calls);

    let cases = [
        (json!("none"), ToolChoice::None),
        (json!("auto"), ToolChoice::Auto),
        (json!("required"), ToolChoice::Required),
        (
            json!({"type": "function", "function": {"name": "noop"}}),
            ToolChoice::Function("noop".into()),
        ),
    ];
    for (choice, expected) in cases {
        let decoded = ok(&with(json!({"tools": tools, "tool_choice": choice})));
        assert_eq!(decoded.request.tool_choice, expected, "{choice}");
    }
    let body = with(json!({"tools": tools, "tool_choice": null}));
    let decoded = decode_chat_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(decoded.request.tool_choice, ToolChoice::Auto);
    // Harmless modes without tools are accepted.
    assert_eq!(
        ok(&with(json!({"tool_choice": "auto"})))
            .request
            .tool_choice,
        ToolChoice::Auto
    );
}

#[test]
fn response_formats() {
    let cases = [
        (json!({"type": "text"}), OutputFormat::Text),
        (json!({"type": "json_object"}), OutputFormat::JsonObject),
        (
            json!({"type": "json_schema", "json_schema": {"name": "person", "description": "A person",
                "schema": {"type": "object"}, "strict": true}}),
            OutputFormat::JsonSchema {
                name: "person".into(),
                description: Some("A person".into()),
                schema: json!({"type": "object"}),
                strict: true,
            },
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "any"}}),
            OutputFormat::JsonSchema {
                name: "any".into(),
                description: None,
                schema: json!({}),
                strict: false,
            },
        ),
    ];
    for (format, expected) in cases {
        assert_eq!(
            ok(&with(json!({"response_format": format})))
                .request
                .output_format,
            expected
        );
    }
}

#[test]
fn sampling_fields() {
    let decoded = ok(&with(json!({
        "temperature": 0.5, "top_p": 0.9, "n": 3, "seed": -1, "stop": ["END", "", "\n"],
        "max_tokens": 10, "max_completion_tokens": 20, "presence_penalty": -2, "frequency_penalty": 1.5,
        "logit_bias": {"50256": -100, "7": 3}, "logprobs": true, "top_logprobs": 20
    })));
    let mut sampling = decoded.request.sampling;
    sampling.logit_bias.sort_by_key(|(token, _)| *token);
    assert_eq!(
        sampling,
        Sampling {
            temperature: 0.5,
            top_p: 0.9,
            top_k: None,
            seed: Some(u64::MAX),
            presence_penalty: -2.0,
            frequency_penalty: 1.5,
            logit_bias: vec![(7, 3.0), (50256, -100.0)],
            stop: vec!["END".into(), "\n".into()],
            max_output_tokens: Some(20),
            n: 3,
            logprobs: true,
            top_logprobs: 20,
        }
    );
    let single = ok(&with(json!({"stop": "x", "max_tokens": 7, "seed": 5})));
    assert_eq!(single.request.sampling.stop, vec!["x".to_owned()]);
    assert_eq!(single.request.sampling.max_output_tokens, Some(7));
    assert_eq!(single.request.sampling.seed, Some(5));
    assert!(ok(&with(json!({"stop": ""})))
        .request
        .sampling
        .stop
        .is_empty());
    assert_eq!(
        ok(&with(json!({"temperature": 0})))
            .request
            .sampling
            .temperature,
        0.0
    );
}

#[test]
fn nulls_mean_not_given() {
    let body = with(json!({
        "temperature": null, "top_p": null, "n": null, "seed": null, "stop": null, "max_tokens": null,
        "max_completion_tokens": null, "presence_penalty": null, "frequency_penalty": null,
        "logit_bias": null, "logprobs": null, "top_logprobs": null, "user": null, "metadata": null,
        "store": null, "service_tier": null, "modalities": null, "prediction": null, "audio": null,
        "stream": null, "stream_options": null, "tools": null, "tool_choice": null,
        "parallel_tool_calls": null, "response_format": null, "reasoning_effort": null,
        "function_call": null, "functions": null
    }));
    let decoded = decode_chat_request(body.to_string().as_bytes()).unwrap();
    assert_eq!(decoded, ok(&base()));
}

#[test]
fn stream_options_reasoning_web_search_and_misc() {
    let decoded = ok(&with(
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    ));
    assert!(decoded.stream && decoded.include_usage);
    let decoded = ok(&with(json!({"stream": true})));
    assert!(decoded.stream && !decoded.include_usage);

    for (effort, expected) in [
        ("none", None),
        ("minimal", Some(ReasoningEffort::Minimal)),
        ("low", Some(ReasoningEffort::Low)),
        ("medium", Some(ReasoningEffort::Medium)),
        ("high", Some(ReasoningEffort::High)),
        ("xhigh", Some(ReasoningEffort::High)),
    ] {
        assert_eq!(
            ok(&with(json!({"reasoning_effort": effort})))
                .request
                .reasoning_effort,
            expected
        );
    }

    let location =
        json!({"type": "approximate", "approximate": {"city": "Paris", "country": "FR"}});
    let decoded = ok(&with(
        json!({"web_search_options": {"search_context_size": "high", "user_location": location}}),
    ));
    assert_eq!(
        decoded.request.web_search,
        Some(WebSearch {
            context_size: Some("high".into()),
            user_location: Some(location),
            allowed_domains: vec![],
            blocked_domains: vec![],
        })
    );
    assert_eq!(
        ok(&with(
            json!({"web_search_options": {"filters": {"allowed_domains": ["example.org"]}}})
        ))
        .request
        .web_search
        .map(|w| w.allowed_domains),
        Some(vec!["example.org".to_owned()])
    );
    assert_eq!(
        ok(&with(json!({"web_search_options": {}})))
            .request
            .web_search,
        Some(WebSearch {
            context_size: None,
            user_location: None,
            allowed_domains: vec![],
            blocked_domains: vec![],
        })
    );

    let decoded = ok(&with(json!({
        "user": "u-1", "metadata": {"a": "b"}, "store": true, "service_tier": "flex",
        "modalities": ["text"], "prediction": {"type": "content", "content": "old"},
        "verbosity": "low", "prompt_cache_key": "k", "safety_identifier": "s"
    })));
    assert_eq!(decoded.request.user.as_deref(), Some("u-1"));
    assert_eq!(decoded.request.metadata, Some(json!({"a": "b"})));
    assert!(decoded.store);
    assert_eq!(decoded.service_tier.as_deref(), Some("flex"));
    assert!(decoded.request.extra_output_modalities.is_empty());

    let decoded = ok(&with(
        json!({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}),
    ));
    assert_eq!(
        decoded.request.extra_output_modalities,
        vec!["audio".to_owned()]
    );
}

#[test]
fn errors_name_the_param() {
    let long_name = "x".repeat(65);
    let many_keys: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        // top level
        (json!({"messages": [{"role": "user", "content": "x"}]}), Some("model"), "Missing required parameter: 'model'."),
        (json!({"model": "", "messages": [{"role": "user", "content": "x"}]}), Some("model"), "empty string"),
        (json!({"model": "m"}), Some("messages"), "Missing required parameter: 'messages'."),
        (with(json!({"messages": []})), Some("messages"), "'messages' must contain at least one message."),
        (with(json!({"bogus": 1})), Some("bogus"), "Unrecognized request argument supplied: bogus"),
        (with(json!({"model": 5})), Some("model"), "Invalid type for 'model': expected a string, but got an integer instead."),
        (with(json!({"messages": "hi"})), Some("messages"), "Invalid type for 'messages'"),
        (with(json!({"functions": [{"name": "f"}]})), Some("functions"), "deprecated"),
        (with(json!({"function_call": "auto"})), Some("function_call"), "deprecated"),
        (with(json!({"moderation": {}})), Some("moderation"), "not supported"),
        // messages
        (with(json!({"messages": ["hi"]})), Some("messages[0]"), "expected an object"),
        (with(json!({"messages": [{"content": "x"}]})), Some("messages[0].role"), "Missing required parameter"),
        (with(json!({"messages": [{"role": "robot", "content": "x"}]})), Some("messages[0].role"), "Invalid value: 'robot'."),
        (with(json!({"messages": [{"role": 1, "content": "x"}]})), Some("messages[0].role"), "expected a string"),
        (with(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]})), Some("messages[0].role"), "deprecated"),
        (with(json!({"messages": [{"role": "user"}]})), Some("messages[0].content"), "Missing required parameter: 'messages[0].content'."),
        (with(json!({"messages": [{"role": "user", "content": null}]})), Some("messages[0].content"), "Missing required"),
        (with(json!({"messages": [{"role": "system"}]})), Some("messages[0].content"), "Missing required"),
        (with(json!({"messages": [{"role": "user", "content": 3}]})), Some("messages[0].content"), "Invalid type"),
        (with(json!({"messages": [{"role": "user", "content": []}]})), Some("messages[0].content"), "empty array"),
        (with(json!({"messages": [{"role": "user", "content": "x", "name": 7}]})), Some("messages[0].name"), "expected a string"),
        (with(json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})), Some("messages[0].content[0].type"), "Missing required"),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]})), Some("messages[0].content[0].type"), "Invalid value: 'video'."),
        (with(json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]})), Some("messages[0].content[0].type"), "Supported values are: 'text'."),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "r"}]}]})), Some("messages[0].content[0].type"), "Invalid value: 'refusal'."),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]})), Some("messages[0].content[0].text"), "Missing required"),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})), Some("messages[0].content[0].text"), "expected a string"),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})), Some("messages[0].content[0].image_url.url"), "Missing required"),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]}]})), Some("messages[0].content[0].image_url.detail"), "Invalid value: 'max'."),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "d", "format": "ogg"}}]}]})), Some("messages[0].content[0].input_audio.format"), "Invalid value: 'ogg'."),
        (with(json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "a"}}]}]})), Some("messages[0].content[0].file"), "'file_id' or 'file_data'"),
        (with(json!({"messages": [{"role": "assistant"}]})), Some("messages[0].content"), "Missing required"),
        (with(json!({"messages": [{"role": "assistant", "content": null, "tool_calls": []}]})), Some("messages[0].content"), "Missing required"),
        (with(json!({"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]})), Some("messages[0].function_call"), "deprecated"),
        (with(json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]})), Some("messages[0].tool_calls[0].id"), "Missing required"),
        (with(json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]})), Some("messages[0].tool_calls[0].function.arguments"), "expected a string, but got an object"),
        (with(json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f", "arguments": "{}"}}]}]})), Some("messages[0].tool_calls[0].type"), "Invalid value: 'custom'."),
        (with(json!({"messages": [{"role": "tool", "content": "x"}]})), Some("messages[0].tool_call_id"), "Missing required"),
        (with(json!({"messages": [{"role": "tool", "tool_call_id": "c"}]})), Some("messages[0].content"), "Missing required"),
        (with(json!({"messages": [{"role": "user", "content": "ok"}, {"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]})), Some("messages[1].content[0].type"), "Invalid value"),
        // tools
        (with(json!({"tools": {}})), Some("tools"), "expected an array"),
        (with(json!({"tools": [{"function": {"name": "f"}}]})), Some("tools[0].type"), "Missing required"),
        (with(json!({"tools": [{"type": "custom", "custom": {"name": "f"}}]})), Some("tools[0].type"), "Invalid value: 'custom'."),
        (with(json!({"tools": [{"type": "web_search"}]})), Some("tools[0].type"), "Invalid value: 'web_search'."),
        (with(json!({"tools": [{"type": "function"}]})), Some("tools[0].function"), "Missing required"),
        (with(json!({"tools": [{"type": "function", "function": {}}]})), Some("tools[0].function.name"), "Missing required"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]})), Some("tools[0].function.name"), "does not match pattern"),
        (with(json!({"tools": [{"type": "function", "function": {"name": long_name}}]})), Some("tools[0].function.name"), "string too long"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]})), Some("tools[0].function.parameters"), "expected an object"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]})), Some("tools[0].function.strict"), "expected a boolean"),
        (with(json!({"tool_choice": "sometimes"})), Some("tool_choice"), "Invalid value: 'sometimes'."),
        (with(json!({"tool_choice": "required"})), Some("tool_choice"), "only allowed when 'tools' are specified"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})), Some("tool_choice"), "'g' is not one of the provided"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function"}})), Some("tool_choice.function"), "Missing required"),
        (with(json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "allowed_tools"}})), Some("tool_choice.type"), "Invalid value: 'allowed_tools'."),
        (with(json!({"tool_choice": 1})), Some("tool_choice"), "Invalid type"),
        (with(json!({"parallel_tool_calls": "yes"})), Some("parallel_tool_calls"), "expected a boolean, but got a string"),
        // response_format
        (with(json!({"response_format": "json"})), Some("response_format"), "expected an object"),
        (with(json!({"response_format": {}})), Some("response_format.type"), "Missing required"),
        (with(json!({"response_format": {"type": "grammar"}})), Some("response_format.type"), "Invalid value: 'grammar'."),
        (with(json!({"response_format": {"type": "json_schema"}})), Some("response_format.json_schema"), "Missing required"),
        (with(json!({"response_format": {"type": "json_schema", "json_schema": {}}})), Some("response_format.json_schema.name"), "Missing required"),
        (with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a.b"}}})), Some("response_format.json_schema.name"), "pattern"),
        (with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": true}}})), Some("response_format.json_schema.schema"), "expected an object"),
        // streaming
        (with(json!({"stream_options": {"include_usage": true}})), Some("stream_options"), "only allowed when 'stream' is enabled"),
        (with(json!({"stream": false, "stream_options": {"include_usage": true}})), Some("stream_options"), "only allowed"),
        (with(json!({"stream": "yes"})), Some("stream"), "expected a boolean"),
        (with(json!({"stream": true, "stream_options": {"include_usage": 1}})), Some("stream_options.include_usage"), "expected a boolean"),
        // ranges
        (with(json!({"temperature": 3})), Some("temperature"), "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."),
        (with(json!({"temperature": -0.5})), Some("temperature"), "Expected a value >= 0, but got -0.5 instead."),
        (with(json!({"temperature": "hot"})), Some("temperature"), "Invalid type for 'temperature': expected a decimal, but got a string instead."),
        (with(json!({"top_p": 1.5})), Some("top_p"), "Expected a value <= 1, but got 1.5 instead."),
        (with(json!({"n": 0})), Some("n"), "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead."),
        (with(json!({"n": 129})), Some("n"), "Expected a value <= 128, but got 129 instead."),
        (with(json!({"n": 1.5})), Some("n"), "expected an integer, but got a decimal"),
        (with(json!({"presence_penalty": 2.5})), Some("presence_penalty"), "Expected a value <= 2"),
        (with(json!({"frequency_penalty": -3})), Some("frequency_penalty"), "Expected a value >= -2"),
        (with(json!({"max_tokens": 0})), Some("max_tokens"), "Expected a value >= 1, but got 0 instead."),
        (with(json!({"max_completion_tokens": -5})), Some("max_completion_tokens"), "Expected a value >= 1"),
        (with(json!({"max_completion_tokens": 5_000_000_000u64})), Some("max_completion_tokens"), "Expected a value <= 4294967295"),
        (with(json!({"seed": "x"})), Some("seed"), "expected an integer"),
        (with(json!({"stop": ["a", "b", "c", "d", "e"]})), Some("stop"), "maximum length 4, but got an array with length 5"),
        (with(json!({"stop": [1]})), Some("stop[0]"), "expected a string"),
        (with(json!({"stop": 1})), Some("stop"), "expected a string or an array of strings"),
        (with(json!({"logit_bias": {"abc": 1}})), Some("logit_bias"), "Invalid key in 'logit_bias': 'abc'."),
        (with(json!({"logit_bias": {"-1": 1}})), Some("logit_bias"), "Invalid key"),
        (with(json!({"logit_bias": {"5": 101}})), Some("logit_bias"), "between -100 and 100, but got 101"),
        (with(json!({"logit_bias": {"5": "x"}})), Some("logit_bias.5"), "expected a number"),
        (with(json!({"logit_bias": []})), Some("logit_bias"), "expected an object"),
        (with(json!({"logprobs": "yes"})), Some("logprobs"), "expected a boolean"),
        (with(json!({"top_logprobs": 21, "logprobs": true})), Some("top_logprobs"), "Expected a value <= 20, but got 21"),
        (with(json!({"top_logprobs": -1, "logprobs": true})), Some("top_logprobs"), "Expected a value >= 0"),
        (with(json!({"top_logprobs": 2})), Some("top_logprobs"), "'logprobs' must be set to true"),
        (with(json!({"top_logprobs": 2, "logprobs": false})), Some("top_logprobs"), "'logprobs' must be set to true"),
        // misc
        (with(json!({"reasoning_effort": "extreme"})), Some("reasoning_effort"), "Invalid value: 'extreme'."),
        (with(json!({"web_search_options": {"search_context_size": "huge"}})), Some("web_search_options.search_context_size"), "Invalid value: 'huge'."),
        (with(json!({"web_search_options": {"user_location": "Paris"}})), Some("web_search_options.user_location"), "expected an object"),
        (with(json!({"web_search_options": 1})), Some("web_search_options"), "expected an object"),
        (with(json!({"user": 1})), Some("user"), "expected a string"),
        (with(json!({"metadata": {"a": 1}})), Some("metadata.a"), "expected a string"),
        (with(json!({"metadata": Value::Object(many_keys)})), Some("metadata"), "at most 16 properties"),
        (with(json!({"metadata": {"a": "x".repeat(513)}})), Some("metadata.a"), "string too long"),
        (with(json!({"metadata": {"k".repeat(65): "v"}})), Some("metadata"), "too long"),
        (with(json!({"store": "yes"})), Some("store"), "expected a boolean"),
        (with(json!({"service_tier": "gold"})), Some("service_tier"), "Invalid value: 'gold'."),
        (with(json!({"modalities": ["video"]})), Some("modalities[0]"), "Invalid value: 'video'."),
        (with(json!({"modalities": "text"})), Some("modalities"), "expected an array"),
        (with(json!({"modalities": ["text", "audio"]})), Some("audio"), "Missing required parameter: 'audio'."),
        (with(json!({"audio": {"voice": "alloy", "format": "wav"}})), Some("audio"), "only allowed when 'modalities' includes 'audio'"),
        (with(json!({"modalities": ["audio"], "audio": "alloy"})), Some("audio"), "expected an object"),
        (with(json!({"prediction": "old text"})), Some("prediction"), "expected an object"),
    ];
    for (body, param, message) in cases {
        let error = err(&body);
        assert_eq!(error.param.as_deref(), param, "{body} → {error:?}");
        assert!(
            error.message.contains(message),
            "{body}\n  message: {}\n  wanted: {message}",
            error.message
        );
        assert!(
            matches!(
                error.kind,
                ErrorKind::InvalidRequest | ErrorKind::Unsupported
            ),
            "{error:?}"
        );
    }
}

#[test]
fn deprecated_and_unsupported_features_carry_codes() {
    let error = err(&with(json!({"functions": [{"name": "f"}]})));
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert_eq!(error.code.as_deref(), Some("unsupported_parameter"));
    let error = err(&with(
        json!({"tools": [{"type": "custom", "custom": {"name": "f"}}]}),
    ));
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert_eq!(error.code.as_deref(), Some("unsupported_value"));
}
