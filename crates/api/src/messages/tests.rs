#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use switchboard_model::{
    Annotation, CacheTarget, ContentPart, ErrorKind, Event, Family, FinishReason, Item,
    OutputFormat, ReasoningEffort, Role, Sealed, ToolChoice, Usage,
};

use super::*;

fn decode(body: &Value) -> MessagesRequest {
    decode_messages_request(body.to_string().as_bytes()).unwrap()
}

fn refused(body: &Value) -> (ErrorKind, String, String) {
    let error = decode_messages_request(body.to_string().as_bytes()).unwrap_err();
    (error.kind, error.param.unwrap_or_default(), error.message)
}

#[test]
fn a_full_request_becomes_the_canonical_model() {
    let body = json!({
        "model": "m", "max_tokens": 2048, "stream": true,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "document", "title": "r.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"},
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig-a"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "sunny"}], "is_error": true},
                {"type": "text", "text": "And now?"}]}],
        "tools": [{"name": "weather", "description": "Weather now",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                   "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 1500},
        "stop_sequences": ["END"], "temperature": 0.5, "top_k": 40,
        "metadata": {"user_id": "u-1"}, "service_tier": "standard_only"
    });
    let decoded = decode(&body);
    assert!(decoded.stream);
    let request = decoded.request;
    assert_eq!(request.model, "m");
    assert_eq!(request.items.len(), 7, "{:#?}", request.items);
    assert_eq!(request.items[0], Item::text(Role::System, "Be brief."));
    let Item::Message {
        role: Role::User,
        parts,
        ..
    } = &request.items[1]
    else {
        panic!("{:?}", request.items[1]);
    };
    assert_eq!(
        parts[1],
        ContentPart::Image {
            url: "data:image/png;base64,iVBO".into(),
            detail: None
        }
    );
    assert_eq!(
        parts[2],
        ContentPart::File {
            file_id: None,
            filename: Some("r.pdf".into()),
            data: Some("data:application/pdf;base64,JVBE".into())
        }
    );
    assert_eq!(
        parts[3],
        ContentPart::File {
            file_id: None,
            filename: None,
            data: Some("data:text/plain;base64,aGk=".into())
        }
    );
    assert_eq!(
        request.items[2],
        Item::Reasoning {
            id: None,
            text: "Hmm.".into(),
            summary: Vec::new(),
            signature: Some(Sealed::new(Family::Anthropic, "sig-a")),
            encrypted: None
        }
    );
    assert_eq!(request.items[3], Item::text(Role::Assistant, "Checking."));
    assert_eq!(
        request.items[4],
        Item::FunctionCall {
            call_id: "toolu_1".into(),
            name: "weather".into(),
            arguments: "{\"city\":\"Oslo\"}".into(),
            signature: None
        }
    );
    assert_eq!(
        request.items[5],
        Item::FunctionOutput {
            call_id: "toolu_1".into(),
            output: "sunny".into(),
            is_error: true,
        }
    );
    assert_eq!(request.items[6], Item::text(Role::User, "And now?"));
    assert_eq!(
        request.cache_control(CacheTarget::Part { item: 0, part: 0 }),
        Some(&json!({"type": "ephemeral"}))
    );
    assert_eq!(
        request.cache_control(CacheTarget::Part { item: 1, part: 3 }),
        Some(&json!({"type": "ephemeral", "ttl": "1h"}))
    );
    assert_eq!(
        request.cache_control(CacheTarget::Tool(0)),
        Some(&json!({"type": "ephemeral"}))
    );
    assert_eq!(request.tool_choice, ToolChoice::Required);
    assert!(!request.parallel_tool_calls);
    assert_eq!(request.reasoning_effort, Some(ReasoningEffort::Low));
    assert_eq!(request.reasoning_budget, Some(1500));
    assert_eq!(request.sampling.max_output_tokens, Some(2048));
    assert_eq!(request.sampling.stop, vec!["END".to_owned()]);
    assert!((request.sampling.temperature - 0.5).abs() < f32::EPSILON);
    assert_eq!(request.sampling.top_k, Some(40));
    assert_eq!(request.user.as_deref(), Some("u-1"));
    assert_eq!(request.service_tier.as_deref(), Some("standard_only"));
}

#[test]
fn adaptive_thinking_and_structured_output() {
    let request = decode(&json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium",
            "format": {"type": "json_schema", "schema": {"type": "object"}}}}))
    .request;
    assert_eq!(request.reasoning_effort, Some(ReasoningEffort::Medium));
    assert_eq!(request.reasoning_budget, None);
    assert!(matches!(
        request.output_format,
        OutputFormat::JsonSchema { .. }
    ));
    let none = decode(&json!({"model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "disabled"},
        "tool_choice": {"type": "none"},
        "tools": [{"name": "t", "input_schema": {"type": "object"}}]}))
    .request;
    assert_eq!(none.reasoning_effort, None);
    assert_eq!(none.tool_choice, ToolChoice::None);
}

#[test]
fn bad_requests_name_the_path_in_this_apis_words() {
    let base =
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let mut no_max = base.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let cases = [
        (
            no_max,
            ErrorKind::InvalidRequest,
            "max_tokens",
            "max_tokens: Field required",
        ),
        (
            with("max_tokens", json!(0)),
            ErrorKind::InvalidRequest,
            "max_tokens",
            "greater than or equal to 1",
        ),
        (
            with("bogus", json!(1)),
            ErrorKind::InvalidRequest,
            "bogus",
            "Extra inputs are not permitted",
        ),
        (
            with("temperature", json!(1.5)),
            ErrorKind::InvalidRequest,
            "temperature",
            "between 0 and 1",
        ),
        (
            with("messages", json!([{"role": "system", "content": "x"}])),
            ErrorKind::InvalidRequest,
            "messages.0.role",
            "'user' or 'assistant'",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "video"}]}]),
            ),
            ErrorKind::InvalidRequest,
            "messages.0.content.0.type",
            "does not match",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]),
            ),
            ErrorKind::InvalidRequest,
            "messages.0.content.0.type",
            "assistant messages",
        ),
        (
            with("messages", json!([])),
            ErrorKind::InvalidRequest,
            "messages",
            "at least one",
        ),
        (
            with(
                "tools",
                json!([{"type": "code_execution_20250522", "name": "code_execution"}]),
            ),
            ErrorKind::Unsupported,
            "tools.0.type",
            "code_execution_20250522",
        ),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "search"}]),
            ),
            ErrorKind::InvalidRequest,
            "tools.0.name",
            "web_search",
        ),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 0}]),
            ),
            ErrorKind::InvalidRequest,
            "tools.0.max_uses",
            "greater than or equal to 1",
        ),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search",
                        "allowed_domains": ["a.test"], "blocked_domains": ["b.test"]}]),
            ),
            ErrorKind::InvalidRequest,
            "tools.0",
            "cannot both",
        ),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search", "filters": {}}]),
            ),
            ErrorKind::InvalidRequest,
            "tools.0.filters",
            "Extra inputs",
        ),
        (
            with(
                "tools",
                json!([{"name": "t", "input_schema": {"type": "string"}}]),
            ),
            ErrorKind::InvalidRequest,
            "tools.0.input_schema.type",
            "'object'",
        ),
        (
            with("tool_choice", json!({"type": "tool", "name": "nope"})),
            ErrorKind::InvalidRequest,
            "tool_choice.name",
            "not found",
        ),
        (
            with("thinking", json!({"type": "enabled", "budget_tokens": 512})),
            ErrorKind::InvalidRequest,
            "thinking.budget_tokens",
            "greater than or equal to 1024",
        ),
        (
            with(
                "thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            ErrorKind::InvalidRequest,
            "thinking.budget_tokens",
            "must be greater",
        ),
        (
            with("stop_sequences", json!(["  "])),
            ErrorKind::InvalidRequest,
            "stop_sequences.0",
            "non-whitespace",
        ),
        (
            with("metadata", json!({"session": "x"})),
            ErrorKind::InvalidRequest,
            "metadata.session",
            "Extra inputs",
        ),
        (
            with("system", json!([{"type": "image"}])),
            ErrorKind::InvalidRequest,
            "system.0.type",
            "'text'",
        ),
        (
            with("mcp_servers", json!([{}])),
            ErrorKind::Unsupported,
            "mcp_servers",
            "MCP",
        ),
    ];
    for (body, kind, param, fragment) in cases {
        let (got_kind, got_param, message) = refused(&body);
        assert_eq!(
            (got_kind, got_param.as_str()),
            (kind, param),
            "{body}: {message}"
        );
        assert!(message.contains(fragment), "{body}: {message}");
        assert!(message.starts_with(param), "{message}");
    }
    let error = decode_messages_request(b"{not json").unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
}

#[test]
fn count_tokens_takes_no_max_tokens() {
    let request = decode_count_tokens(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(request.items, vec![Item::text(Role::User, "hi")]);
    assert!(decode_count_tokens(
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes()
    )
    .is_err());
}

fn encode_all(events: &[Event]) -> Vec<Value> {
    let mut encoder = MessagesStreamEncoder::new("msg_1".into(), "m".into());
    let mut out = vec![encoder.start()];
    for event in events {
        out.extend(encoder.push(event));
    }
    out.extend(encoder.finish());
    out
}

fn fold(events: &[Value]) -> Value {
    let mut fold = MessageFold::default();
    for event in events {
        fold.push(event);
    }
    fold.finish()
}

#[test]
fn blocks_stream_in_order_with_indexes_and_one_message_stop() {
    let events = encode_all(&[
        Event::ReasoningDelta {
            choice: 0,
            text: "Let me ".into(),
        },
        Event::ReasoningDelta {
            choice: 0,
            text: "think.".into(),
        },
        Event::ReasoningEnd {
            choice: 0,
            signature: Some(Sealed::new(Family::Anthropic, "sig-1")),
            encrypted: None,
        },
        Event::TextDelta {
            choice: 0,
            text: "Checking.".into(),
            logprobs: Vec::new(),
        },
        Event::ToolCallStart {
            choice: 0,
            index: 0,
            id: "call_a".into(),
            name: "weather".into(),
        },
        Event::ToolCallArguments {
            choice: 0,
            index: 0,
            fragment: "{\"city\":".into(),
        },
        Event::ToolCallArguments {
            choice: 0,
            index: 0,
            fragment: "\"Oslo\"}".into(),
        },
        Event::ToolCallStart {
            choice: 0,
            index: 1,
            id: "toolu_b".into(),
            name: "weather".into(),
        },
        Event::ToolCallArguments {
            choice: 0,
            index: 1,
            fragment: "{}".into(),
        },
        Event::Finished {
            choice: 0,
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
        Event::Usage(Usage {
            web_search_requests: 0,
            prompt_tokens: 30,
            completion_tokens: 12,
            cached_tokens: 8,
            cache_write_tokens: 2,
            reasoning_tokens: 4,
        }),
        Event::Done,
    ]);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(kinds.iter().filter(|k| **k == "message_stop").count(), 1);
    // Every block's events carry its index; indexes count up from 0 without gaps.
    let starts: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, [0, 1, 2, 3]);
    assert_eq!(
        events[4]["delta"],
        json!({"type": "signature_delta", "signature": "sig-1"})
    );
    assert_eq!(
        events[16],
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"input_tokens": 20, "output_tokens": 12,
                         "cache_creation_input_tokens": 2, "cache_read_input_tokens": 8}})
    );
    let message = fold(&events);
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}
        ])
    );
    assert_eq!(message["id"], "msg_1");
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["usage"]["input_tokens"], 20);
}

#[test]
fn stop_reasons_map_every_finish() {
    let cases = [
        (FinishReason::Stop, None, "end_turn"),
        (FinishReason::Stop, Some("END"), "stop_sequence"),
        (FinishReason::Length, None, "max_tokens"),
        (FinishReason::ToolCalls, None, "tool_use"),
        (FinishReason::PauseTurn, None, "pause_turn"),
        (FinishReason::Refusal, None, "refusal"),
        (FinishReason::ContentFilter, None, "refusal"),
    ];
    for (reason, sequence, expected) in cases {
        let events = encode_all(&[
            Event::TextDelta {
                choice: 0,
                text: "x".into(),
                logprobs: Vec::new(),
            },
            Event::Finished {
                choice: 0,
                reason,
                stop_sequence: sequence.map(str::to_owned),
            },
        ]);
        let message = fold(&events);
        assert_eq!(message["stop_reason"], expected);
        assert_eq!(message["stop_sequence"], json!(sequence));
    }
}

#[test]
fn foreign_signatures_round_trip_through_content_blocks() {
    let gemini = Sealed::new(Family::Gemini, "c2ln");
    let openai = Sealed::new(Family::OpenAi, "gAAA");
    let events = encode_all(&[
        Event::ReasoningDelta {
            choice: 0,
            text: "Thinking.".into(),
        },
        Event::ReasoningEnd {
            choice: 0,
            signature: None,
            encrypted: Some(openai.clone()),
        },
        Event::ToolCallStart {
            choice: 0,
            index: 0,
            id: "call_1".into(),
            name: "weather".into(),
        },
        Event::ToolCallArguments {
            choice: 0,
            index: 0,
            fragment: "{}".into(),
        },
        Event::ToolCallSignature {
            choice: 0,
            index: 0,
            signature: gemini.clone(),
        },
        Event::Finished {
            choice: 0,
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        },
    ]);
    let message = fold(&events);
    let content = message["content"].as_array().unwrap();
    let kinds: Vec<&str> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "thinking",
            "redacted_thinking",
            "tool_use",
            "redacted_thinking"
        ]
    );
    // The client sends the content back unchanged; each value returns to its family.
    let replay = json!({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]});
    let items = decode(&replay).request.items;
    assert!(
        items.iter().any(|item| matches!(item,
        Item::Reasoning { encrypted: Some(sealed), .. } if *sealed == openai)),
        "{items:#?}"
    );
    assert!(
        items.iter().any(|item| matches!(item,
        Item::FunctionCall { call_id, signature: Some(sealed), .. }
            if call_id == "toolu_1" && *sealed == gemini)),
        "{items:#?}"
    );
}

#[test]
fn citations_and_refusals() {
    let events = encode_all(&[
        Event::TextDelta {
            choice: 0,
            text: "Oslo is sunny.".into(),
            logprobs: Vec::new(),
        },
        Event::Annotation {
            choice: 0,
            annotation: Annotation::UrlCitation {
                url: "https://example.com".into(),
                title: "Ex".into(),
                start_index: 0,
                end_index: 4,
            },
        },
        Event::Finished {
            choice: 0,
            reason: FinishReason::Stop,
            stop_sequence: None,
        },
    ]);
    let message = fold(&events);
    assert_eq!(
        message["content"][0]["citations"][0]["url"],
        "https://example.com"
    );
    assert_eq!(message["content"][0]["citations"][0]["cited_text"], "Oslo");
}

#[test]
fn errors_speak_anthropics_shape() {
    let error = switchboard_model::Error::new(ErrorKind::Overloaded, "Busy.");
    assert_eq!(
        error_body(&error, Some("req_1")),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Busy."},
               "request_id": "req_1"})
    );
    let hidden = switchboard_model::Error::internal("secret detail");
    assert_eq!(
        error_body(&hidden, None)["error"]["message"],
        "Internal server error"
    );
}
