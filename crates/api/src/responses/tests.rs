#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use switchboard_model::{
    ContentPart, ErrorKind, Event, FinishReason, Item, OutputFormat, RequestField, Role, Tool,
    ToolChoice, Usage,
};
use switchboard_testkit::validate_or_skip;

use super::*;

fn counter() -> impl FnMut(&str) -> String {
    let mut next = 0;
    move |prefix: &str| {
        next += 1;
        format!("{prefix}_{next}")
    }
}

fn decode(body: Value) -> Result<ResponsesRequest, switchboard_model::Error> {
    decode_responses_request(body.to_string().as_bytes(), &mut counter())
}

fn decode_ok(body: Value) -> ResponsesRequest {
    decode(body).unwrap()
}

fn decode_err(body: Value) -> switchboard_model::Error {
    decode(body).unwrap_err()
}

fn encoder(decoded: &ResponsesRequest) -> ResponseEncoder {
    ResponseEncoder::new(
        "resp_1".into(),
        1_700_000_000,
        decoded,
        &decoded.request,
        Box::new(counter()),
    )
}

fn text(value: &str) -> Event {
    Event::TextDelta {
        choice: 0,
        text: value.into(),
        logprobs: vec![],
    }
}

fn usage(prompt: u32, completion: u32) -> Event {
    Event::Usage(Usage {
        web_search_requests: 0,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: 1,
        reasoning_tokens: 0,
        cache_write_tokens: 0,
    })
}

fn events_json(events: &[ResponseStreamEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|event| {
            let value = serde_json::to_value(event).unwrap();
            assert_eq!(value["type"], event.kind());
            validate_or_skip("ResponseStreamEvent", &value);
            value
        })
        .collect()
}

fn run(decoded: &ResponsesRequest, events: &[Event]) -> (Vec<Value>, Value) {
    let mut encoder = encoder(decoded);
    let mut out = encoder.start();
    for event in events {
        out.extend(encoder.push(event));
    }
    out.extend(encoder.finish(1_700_000_005));
    let values = events_json(&out);
    for (index, value) in values.iter().enumerate() {
        assert_eq!(value["sequence_number"], index, "{value}");
    }
    let response = serde_json::to_value(encoder.response()).unwrap();
    validate_or_skip("Response", &response);
    (values, response)
}

fn kinds(values: &[Value]) -> Vec<&str> {
    values.iter().map(|v| v["type"].as_str().unwrap()).collect()
}

#[test]
fn string_input_becomes_one_user_message_with_an_id() {
    let decoded = decode_ok(json!({"model": "m", "input": "Hi"}));
    assert_eq!(decoded.request.items, vec![Item::text(Role::User, "Hi")]);
    assert!(decoded.store, "store defaults to true");
    assert!(!decoded.stream);
    let stored = serde_json::to_value(&decoded.input_items).unwrap();
    assert_eq!(
        stored,
        json!([{"type": "message", "id": "msg_1", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": "Hi"}]}])
    );
    validate_or_skip("ItemResource", &stored[0]);
}

#[test]
fn instructions_come_first_then_previous_context_then_input() {
    let decoded = decode_ok(json!({"model": "m", "input": "Now?", "instructions": "Be brief."}));
    let previous = vec![
        Item::text(Role::User, "Before"),
        Item::text(Role::Assistant, "Reply"),
    ];
    let items = decoded.conversation(previous);
    assert_eq!(
        items,
        vec![
            Item::text(Role::System, "Be brief."),
            Item::text(Role::User, "Before"),
            Item::text(Role::Assistant, "Reply"),
            Item::text(Role::User, "Now?"),
        ]
    );
    assert_eq!(decoded.pinned_items(), 1);
}

#[test]
fn every_input_item_kind() {
    let decoded = decode_ok(json!({"model": "m", "input": [
        {"role": "developer", "content": "Rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": "https://example.com/a.png"}
        ]},
        {"type": "message", "role": "assistant", "id": "msg_keep",
         "content": [{"type": "output_text", "text": "Calling", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]}
    ]}));
    let items = &decoded.request.items;
    assert_eq!(items[0], Item::text(Role::Developer, "Rules"));
    assert_eq!(
        items[1],
        Item::Message {
            role: Role::User,
            parts: vec![
                ContentPart::Text("Look".into()),
                ContentPart::Image {
                    url: "https://example.com/a.png".into(),
                    detail: Some("auto".into())
                }
            ],
            name: None
        }
    );
    assert_eq!(items[2], Item::text(Role::Assistant, "Calling"));
    assert_eq!(
        items[3],
        Item::FunctionCall {
            call_id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
            signature: None,
        }
    );
    assert_eq!(
        items[4],
        Item::FunctionOutput {
            call_id: "call_1".into(),
            output: "42".into(),
            is_error: false,
        }
    );
    assert_eq!(
        items[5],
        Item::Reasoning {
            id: Some("rs_5".into()),
            // Only a summary was sent: it stands for the text too.
            text: "thought".into(),
            summary: vec!["thought".into()],
            signature: None,
            encrypted: None,
        }
    );
    let ids: Vec<&str> = decoded.input_items.iter().map(StoredItem::id).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_keep", "fc_3", "fco_4", "rs_5"]);
    for item in &decoded.input_items {
        validate_or_skip("ItemResource", &item.to_document());
    }
    // Images need a capability; Responses names the `input` parameter for it.
    assert!(decoded
        .request
        .required_capabilities()
        .iter()
        .any(|(_, field)| param_name(*field) == "input"));
}

#[test]
fn stored_items_decode_back_to_the_same_conversation() {
    let decoded = decode_ok(json!({"model": "m", "input": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "ok"}]}
    ]}));
    let documents: Vec<Value> = decoded
        .input_items
        .iter()
        .map(StoredItem::to_document)
        .collect();
    assert_eq!(decode_context(&documents).unwrap(), decoded.request.items);
}

#[test]
fn settings_are_decoded() {
    let decoded = decode_ok(json!({
        "model": "m", "input": "x", "temperature": 0, "top_p": 0.5, "max_output_tokens": 16,
        "store": false, "stream": true, "stream_options": {"include_obfuscation": false},
        "truncation": "auto", "metadata": {"k": "v"}, "user": "u", "parallel_tool_calls": false,
        "include": ["message.output_text.logprobs"], "top_logprobs": 3,
        "reasoning": {"effort": "none", "summary": "auto"}, "text": {"verbosity": "low"},
        "previous_response_id": "resp_0", "service_tier": "auto", "prompt_cache_key": "k",
        "safety_identifier": "s", "max_tool_calls": 2, "prompt_cache_retention": "24h"
    }));
    let sampling = &decoded.request.sampling;
    assert!((sampling.temperature - 0.0).abs() < f32::EPSILON);
    assert!((sampling.top_p - 0.5).abs() < f32::EPSILON);
    assert_eq!(sampling.max_output_tokens, Some(16));
    assert!(sampling.logprobs);
    assert_eq!(sampling.top_logprobs, 3);
    assert!(!decoded.store && decoded.stream && decoded.truncation_auto);
    assert!(!decoded.request.parallel_tool_calls);
    assert_eq!(decoded.request.reasoning_effort, None);
    assert_eq!(decoded.previous_response_id.as_deref(), Some("resp_0"));
    assert_eq!(decoded.request.metadata, Some(json!({"k": "v"})));
}

#[test]
fn tools_formats_and_choices() {
    let decoded = decode_ok(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "get_weather", "description": "d",
                   "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "out", "strict": true,
                            "schema": {"type": "object"}}}
    }));
    let Tool::Function(function) = &decoded.request.tools[0];
    assert_eq!(function.name, "get_weather");
    assert!(
        !function.strict,
        "with `strict` omitted, a schema strict mode cannot take stays best-effort"
    );
    assert_eq!(
        decoded.request.tool_choice,
        ToolChoice::Function("get_weather".into())
    );
    assert!(matches!(
        decoded.request.output_format,
        OutputFormat::JsonSchema { strict: true, .. }
    ));
    let json_object =
        decode_ok(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}));
    assert_eq!(json_object.request.output_format, OutputFormat::JsonObject);
    let searching =
        decode_ok(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}));
    assert!(searching.request.web_search.is_some());
    let (_, field) = searching.request.required_capabilities()[0];
    assert_eq!(
        (field, param_name(field)),
        (RequestField::WebSearch, "tools".to_owned())
    );
}

#[test]
fn errors_name_the_param() {
    let cases = [
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": []}), "input"),
        (json!({"model": "m", "input": 3}), "input"),
        (json!({"model": "m", "input": "x", "bogus": 1}), "bogus"),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
        ),
        (json!({"model": "m", "input": "x", "top_p": -1}), "top_p"),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 8}),
            "max_output_tokens",
        ),
        (
            json!({"model": "m", "input": "x", "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"model": "m", "input": "x", "stream_options": {}}),
            "stream_options",
        ),
        (
            json!({"model": "m", "input": "x", "truncation": "sometimes"}),
            "truncation",
        ),
        (
            json!({"model": "m", "input": "x", "include": ["nope"]}),
            "include[0]",
        ),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"role": "user"}]}),
            "input[0].content",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "bad name"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "spaceship"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            "text.format.schema",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"verbosity": "loud"}}),
            "text.verbosity",
        ),
        (
            json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
            "metadata.k",
        ),
    ];
    for (body, param) in cases {
        let error = decode_err(body.clone());
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{body}: {error:?}");
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
        let wire = serde_json::to_value(crate::ErrorBody::from(&error)).unwrap();
        validate_or_skip("ErrorResponse", &wire);
    }
}

#[test]
fn unsupported_features_are_clear_400s() {
    let cases = [
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "m", "input": "x", "prompt": {"id": "p"}}),
            "prompt",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "computer_call"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "allowed_tools"}}),
            "tool_choice.type",
        ),
    ];
    for (body, param) in cases {
        let error = decode_err(body.clone());
        assert_eq!(error.kind, ErrorKind::Unsupported, "{body}: {error:?}");
        assert_eq!(error.param.as_deref(), Some(param), "{body}");
        assert!(error.code.is_some(), "{body}");
    }
}

#[test]
fn text_answer_streams_every_event_in_order() {
    let decoded = decode_ok(json!({"model": "m", "input": "Hi", "instructions": "Be nice."}));
    let (values, response) = run(
        &decoded,
        &[
            text("Hel"),
            text("lo"),
            Event::Finished {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            usage(5, 2),
        ],
    );
    assert_eq!(
        kinds(&values),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(values[0]["response"]["status"], "in_progress");
    assert_eq!(values[0]["response"]["output"], json!([]));
    assert_eq!(values[4]["item_id"], "msg_1");
    assert_eq!(values[6]["text"], "Hello");
    assert_eq!(values[8]["item"]["status"], "completed");
    assert_eq!(response, values[9]["response"]);
    assert_eq!(response["status"], "completed");
    assert_eq!(response["instructions"], "Be nice.");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(response["usage"]["input_tokens"], 5);
    assert_eq!(response["usage"]["output_tokens"], 2);
    assert_eq!(response["usage"]["total_tokens"], 7);
    assert_eq!(
        response["usage"]["input_tokens_details"]["cached_tokens"],
        1
    );
    assert_eq!(response["completed_at"], 1_700_000_005);
    assert_eq!(response["tool_choice"], "auto");
    assert_eq!(response["text"]["format"]["type"], "text");
}

#[test]
fn length_cut_is_incomplete_with_its_reason() {
    let decoded = decode_ok(json!({"model": "m", "input": "Hi", "max_output_tokens": 16}));
    let (values, response) = run(
        &decoded,
        &[
            text("A long"),
            Event::Finished {
                choice: 0,
                reason: FinishReason::Length,
                stop_sequence: None,
            },
            usage(3, 16),
        ],
    );
    assert_eq!(values.last().unwrap()["type"], "response.incomplete");
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["max_output_tokens"], 16);
}

#[test]
fn tool_calls_become_function_call_items() {
    let decoded = decode_ok(json!({"model": "m", "input": "Weather?",
        "tools": [{"type": "function", "name": "w", "strict": false, "parameters": {"type": "object"}}]}));
    let (values, response) = run(
        &decoded,
        &[
            Event::ReasoningDelta {
                choice: 0,
                text: "think".into(),
            },
            Event::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_a".into(),
                name: "w".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "{\"c\":".into(),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "1}".into(),
            },
            Event::ToolCallStart {
                choice: 0,
                index: 1,
                id: "call_b".into(),
                name: "w".into(),
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
            usage(9, 12),
        ],
    );
    assert_eq!(
        kinds(&values),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(values[11]["arguments"], "{\"c\":1}");
    assert_eq!(values[11]["name"], "w");
    let output = &response["output"];
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["content"][0]["text"], "think");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["call_id"], "call_a");
    assert_eq!(output[1]["arguments"], "{\"c\":1}");
    assert_eq!(output[2]["call_id"], "call_b");
    assert_eq!(output[1]["status"], "completed");
    assert_eq!(response["tools"][0]["name"], "w");
    assert_eq!(response["tools"][0]["strict"], false);
}

#[test]
fn logprobs_ride_on_deltas_and_parts() {
    let decoded = decode_ok(
        json!({"model": "m", "input": "x", "include": ["message.output_text.logprobs"], "top_logprobs": 1}),
    );
    let logprob = switchboard_model::TokenLogprob {
        token: "A".into(),
        bytes: vec![65],
        logprob: -0.5,
        top: vec![switchboard_model::TopLogprob {
            token: "B".into(),
            bytes: vec![66],
            logprob: -1.0,
        }],
    };
    let (values, response) = run(
        &decoded,
        &[
            Event::TextDelta {
                choice: 0,
                text: "A".into(),
                logprobs: vec![logprob],
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            usage(1, 1),
        ],
    );
    assert_eq!(values[4]["logprobs"][0]["token"], "A");
    assert_eq!(values[4]["logprobs"][0]["top_logprobs"][0]["token"], "B");
    let part = &response["output"][0]["content"][0];
    assert_eq!(part["logprobs"][0]["bytes"], json!([65]));
    assert_eq!(part["logprobs"][0]["top_logprobs"][0]["bytes"], json!([66]));
}

#[test]
fn a_stream_without_a_finish_fails() {
    let decoded = decode_ok(json!({"model": "m", "input": "x"}));
    let mut encoder = encoder(&decoded);
    let mut out = encoder.start();
    out.extend(encoder.push(&text("partial")));
    out.extend(encoder.finish(1_700_000_001));
    let values = events_json(&out);
    let last = values.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
}

#[test]
fn input_items_page_in_both_orders() {
    let items: Vec<Value> = (1..=5).map(|n| json!({"id": format!("msg_{n}")})).collect();
    let page = InputItemList::page(&items, Some("2"), None, None).unwrap();
    assert_eq!(page.first_id, "msg_5");
    assert_eq!(page.last_id, "msg_4");
    assert!(page.has_more);
    let next = InputItemList::page(&items, Some("2"), None, Some("msg_4")).unwrap();
    assert_eq!(next.first_id, "msg_3");
    let asc = InputItemList::page(&items, None, Some("asc"), Some("msg_3")).unwrap();
    assert_eq!(asc.data.len(), 2);
    assert_eq!(asc.first_id, "msg_4");
    assert!(!asc.has_more);
    assert_eq!(
        InputItemList::page(&items, Some("0"), None, None)
            .unwrap_err()
            .param
            .as_deref(),
        Some("limit")
    );
    assert_eq!(
        InputItemList::page(&items, None, Some("up"), None)
            .unwrap_err()
            .param
            .as_deref(),
        Some("order")
    );
}

#[test]
fn deleted_response_shape() {
    assert_eq!(
        serde_json::to_value(DeletedResponse::new("resp_1".into())).unwrap(),
        json!({"id": "resp_1", "object": "response", "deleted": true})
    );
}

#[test]
fn canonical_locations_are_worded_for_this_surface() {
    use switchboard_model::Error;
    let schema = Error::invalid_at(RequestField::OutputFormat, "Invalid JSON schema 'x': bad")
        .with_code("invalid_json_schema")
        .locate(param_name);
    assert_eq!(schema.param.as_deref(), Some("text.format"));
    assert_eq!(schema.code.as_deref(), Some("invalid_json_schema"));
    let tool = Error::invalid_at(RequestField::ToolParameters(2), "bad").locate(param_name);
    assert_eq!(tool.param.as_deref(), Some("tools[2].parameters"));
    let chat_tool =
        Error::invalid_at(RequestField::ToolParameters(2), "bad").locate(crate::chat::param_name);
    assert_eq!(
        chat_tool.param.as_deref(),
        Some("tools[2].function.parameters")
    );
    let context = Error::invalid_at(RequestField::Conversation, "too long").locate(param_name);
    assert_eq!(context.param.as_deref(), Some("input"));
    // Logprobs are asked for with `include` here, with `logprobs` on Chat.
    let logprobs = Error::invalid_at(RequestField::Logprobs, "no").locate(param_name);
    assert_eq!(logprobs.param.as_deref(), Some("include"));
    let chat_logprobs =
        Error::invalid_at(RequestField::Logprobs, "no").locate(crate::chat::param_name);
    assert_eq!(chat_logprobs.param.as_deref(), Some("logprobs"));
    // A param a surface set itself is kept.
    let own = Error::invalid("temperature", "bad").locate(param_name);
    assert_eq!(own.param.as_deref(), Some("temperature"));
}

/// Random bodies built from the shapes clients send, some of them wrong: decoding never panics,
/// and every refusal is a client error, never an internal one.
#[test]
fn random_bodies_decode_or_are_refused_cleanly() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % bound as u64).unwrap()
    };
    let atoms = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e30),
        json!(""),
        json!("user"),
        json!("message"),
        json!("function_call"),
        json!("input_text"),
        json!([]),
        json!({}),
    ];
    let keys = [
        "type",
        "role",
        "content",
        "text",
        "name",
        "arguments",
        "call_id",
        "output",
        "format",
        "schema",
        "effort",
        "summary",
        "id",
        "image_url",
        "parameters",
        "strict",
    ];
    let top = [
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "include",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "store",
        "truncation",
        "metadata",
        "parallel_tool_calls",
        "top_logprobs",
        "stream_options",
        "user",
    ];
    fn value(
        next: &mut dyn FnMut(usize) -> usize,
        atoms: &[Value],
        keys: &[&str],
        depth: u32,
    ) -> Value {
        match next(4) {
            0 | 1 if depth < 3 => {
                if next(2) == 0 {
                    Value::Array(
                        (0..next(4))
                            .map(|_| value(next, atoms, keys, depth + 1))
                            .collect(),
                    )
                } else {
                    Value::Object(
                        (0..next(5))
                            .map(|_| {
                                (
                                    keys[next(keys.len())].to_owned(),
                                    value(next, atoms, keys, depth + 1),
                                )
                            })
                            .collect(),
                    )
                }
            }
            _ => atoms[next(atoms.len())].clone(),
        }
    }
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut body = json!({"model": "m", "input": "hi"});
        for _ in 0..=next(3) {
            let key = top[next(top.len())];
            body[key] = value(&mut next, &atoms, &keys, 0);
        }
        match decode(body.clone()) {
            Ok(_) => accepted += 1,
            Err(error) => assert!(
                matches!(
                    error.kind,
                    ErrorKind::InvalidRequest | ErrorKind::Unsupported
                ),
                "{body}: {error:?}"
            ),
        }
    }
    assert!(accepted > 0, "some random bodies are valid");
}

#[test]
fn omitted_strict_is_strict_only_when_the_schema_allows() {
    let strictness = |tool: Value| {
        let decoded = decode_ok(json!({"model": "m", "input": "x", "tools": [tool]}));
        let Tool::Function(function) = &decoded.request.tools[0];
        function.strict
    };
    let compatible = json!({"type": "object", "properties": {"a": {"type": "string"}},
                            "required": ["a"], "additionalProperties": false});
    let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    assert!(strictness(
        json!({"type": "function", "name": "f", "parameters": compatible})
    ));
    assert!(strictness(json!({"type": "function", "name": "f"})));
    // LangChain's bind_tools, Open WebUI and the Vercel AI SDK send exactly this shape.
    assert!(!strictness(
        json!({"type": "function", "name": "f", "parameters": open})
    ));
    assert!(strictness(
        json!({"type": "function", "name": "f", "parameters": open, "strict": true})
    ));
    assert!(!strictness(
        json!({"type": "function", "name": "f", "parameters": compatible, "strict": false})
    ));
}

#[test]
fn unknown_fields_are_refused_where_openai_refuses_them() {
    let cases = [
        (
            json!({"stream": true, "stream_options": {"include_usage": true}}),
            "stream_options.include_usage",
        ),
        (
            json!({"tools": [{"type": "function", "name": "f", "input_schema": {}}]}),
            "tools[0].input_schema",
        ),
        (
            json!({"tools": [{"type": "web_search", "n": 1}]}),
            "tools[0].n",
        ),
        (
            json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "f", "x": 1}}),
            "tool_choice.x",
        ),
        (
            json!({"text": {"format": {"type": "json_object", "schema": {}}}}),
            "text.format.schema",
        ),
        (
            json!({"text": {"format": {"type": "json_schema", "name": "a", "schema": {}, "x": 1}}}),
            "text.format.x",
        ),
        (json!({"text": {"fmt": {}}}), "text.fmt"),
        (
            json!({"reasoning": {"effort": "none", "budget": 5}}),
            "reasoning.budget",
        ),
        (
            json!({"prompt_cache_options": {"ttl": "30m", "x": 1}}),
            "prompt_cache_options.x",
        ),
        (
            json!({"input": [{"role": "user", "content": "x", "foo": 1}]}),
            "input[0].foo",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "x", "cache_control": {}}]}]}),
            "input[0].content[0].cache_control",
        ),
        (
            json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "index": 0}]}),
            "input[0].index",
        ),
    ];
    for (patch, param) in cases {
        let (body, error) = refused_with(&patch);
        assert_eq!(error.param.as_deref(), Some(param), "{body} → {error:?}");
        assert_eq!(error.message, format!("Unknown parameter: '{param}'."));
    }
    // Output items sent back as they came (ids, status, annotations, logprobs) are accepted.
    let echoed = json!({"model": "m", "input": [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}", "status": "completed"},
        {"type": "function_call_output", "call_id": "c", "output": "r"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": null}]});
    assert!(decode_responses_request(echoed.to_string().as_bytes(), &mut |p| p.to_owned()).is_ok());
}

#[test]
fn tool_outputs_must_answer_a_call() {
    let output = Item::FunctionOutput {
        call_id: "c".into(),
        output: "r".into(),
        is_error: false,
    };
    let call = Item::FunctionCall {
        call_id: "c".into(),
        name: "f".into(),
        arguments: "{}".into(),
        signature: None,
    };
    let error = check_call_outputs(&[Item::text(Role::User, "x"), output.clone()]).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("input"));
    assert!(error
        .message
        .contains("No tool call found for function call output with call_id c"));
    assert!(check_call_outputs(&[call, output]).is_ok());
}

#[test]
fn inert_fields_are_typed() {
    for (patch, param) in [
        (json!({"prompt_cache_key": 5}), "prompt_cache_key"),
        (
            json!({"prompt_cache_key": "k".repeat(65)}),
            "prompt_cache_key",
        ),
        (json!({"safety_identifier": []}), "safety_identifier"),
        (
            json!({"prompt_cache_retention": "forever"}),
            "prompt_cache_retention",
        ),
        (json!({"text": {"verbosity": 3}}), "text.verbosity"),
        (
            json!({"max_output_tokens": 9_223_372_036_854_775_808_u64}),
            "max_output_tokens",
        ),
    ] {
        let (body, error) = refused_with(&patch);
        assert_eq!(error.param.as_deref(), Some(param), "{body} → {error:?}");
        assert!(!error.message.contains("i64"), "{}", error.message);
    }
}

/// A minimal request with `patch`'s fields set, which must be refused: the body and the error.
fn refused_with(patch: &Value) -> (Value, switchboard_model::Error) {
    let mut body = json!({"model": "m", "input": "x"});
    for (key, value) in patch.as_object().unwrap() {
        body[key] = value.clone();
    }
    let error =
        decode_responses_request(body.to_string().as_bytes(), &mut |p| p.to_owned()).unwrap_err();
    (body, error)
}

#[test]
fn signed_reasoning_and_call_signatures_round_trip_through_items() {
    use switchboard_model::{Family, Sealed};
    let decoded = decode_ok(json!({"model": "m", "input": "Weather?",
        "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}]}));
    let signed = |family, value: &str| Some(Sealed::new(family, value));
    let (values, response) = run(
        &decoded,
        &[
            Event::ReasoningDelta {
                choice: 0,
                text: "Paris, then.".into(),
            },
            Event::ReasoningEnd {
                choice: 0,
                signature: signed(Family::Anthropic, "sig-1"),
                encrypted: None,
            },
            Event::ReasoningEnd {
                choice: 0,
                signature: None,
                encrypted: signed(Family::Anthropic, "redacted-blob"),
            },
            Event::ToolCallStart {
                choice: 0,
                index: 0,
                id: "call_a".into(),
                name: "w".into(),
            },
            Event::ToolCallSignature {
                choice: 0,
                index: 0,
                signature: Sealed::new(Family::Gemini, "thought-sig"),
            },
            Event::ToolCallArguments {
                choice: 0,
                index: 0,
                fragment: "{}".into(),
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            },
            usage(3, 4),
        ],
    );
    assert_eq!(values.last().unwrap()["type"], "response.completed");
    let output = response["output"].as_array().unwrap();
    let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["reasoning", "reasoning", "function_call", "reasoning"]
    );
    for item in output {
        if item["type"] == "reasoning" {
            assert!(item["encrypted_content"]
                .as_str()
                .unwrap()
                .starts_with("swb1_"));
        }
    }
    // The client replays the output unchanged: each provider gets back what it sent.
    let mut input = vec![json!({"role": "user", "content": "Weather?"})];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "call_a", "output": "sunny"}));
    let replayed = decode_ok(json!({"model": "m", "input": input,
        "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}]}));
    let items = &replayed.request.items;
    assert!(
        matches!(&items[1], Item::Reasoning { text, signature: Some(s), .. }
        if text == "Paris, then." && *s == Sealed::new(Family::Anthropic, "sig-1"))
    );
    assert!(
        matches!(&items[2], Item::Reasoning { encrypted: Some(s), .. }
        if *s == Sealed::new(Family::Anthropic, "redacted-blob"))
    );
    assert!(
        matches!(&items[3], Item::FunctionCall { signature: Some(s), .. }
        if *s == Sealed::new(Family::Gemini, "thought-sig"))
    );
    assert_eq!(
        items.len(),
        5,
        "the call's signature item is not a reasoning item"
    );
}

#[test]
fn refusals_and_citations_stream_as_their_own_events() {
    use switchboard_model::Annotation;
    let decoded = decode_ok(json!({"model": "m", "input": "x"}));
    let (values, response) = run(
        &decoded,
        &[
            text("See [1]."),
            Event::Annotation {
                choice: 0,
                annotation: Annotation::UrlCitation {
                    url: "https://example.com/a".into(),
                    title: "A".into(),
                    start_index: 4,
                    end_index: 7,
                },
            },
            Event::RefusalDelta {
                choice: 0,
                text: "I can't help with that.".into(),
            },
            Event::Finished {
                choice: 0,
                reason: FinishReason::Refusal,
                stop_sequence: None,
            },
            usage(1, 2),
        ],
    );
    let kinds = kinds(&values);
    assert!(kinds.contains(&"response.output_text.annotation.added"));
    assert!(kinds.contains(&"response.refusal.delta"));
    assert!(kinds.contains(&"response.refusal.done"));
    assert_eq!(response["status"], "completed");
    let citation = &response["output"][0]["content"][0]["annotations"][0];
    assert_eq!(
        *citation,
        json!({"type": "url_citation", "url": "https://example.com/a", "title": "A",
               "start_index": 4, "end_index": 7})
    );
    assert_eq!(
        response["output"][1]["content"][0],
        json!({"type": "refusal", "refusal": "I can't help with that."})
    );
}
