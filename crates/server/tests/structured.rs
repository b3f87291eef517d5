//! Structured outputs and tool calls on the embedded model, over HTTP: constrained decoding
//! must make every answer parse and validate, streamed or not, whatever the 135M model would
//! have written on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ask, assert_error, shared, validate, MODEL};
use futures::future::join_all;
use serde_json::{json, Value};
use switchboard_testkit::check_against_schema;

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "city": {"type": ["string", "null"], "maxLength": 40},
            "pets": {"type": "array", "items": {"type": "string", "enum": ["cat", "dog", "fish"]}, "maxItems": 3},
            "address": {"$ref": "#/$defs/address"}
        },
        "required": ["name", "age", "city", "pets", "address"],
        "additionalProperties": false,
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string", "maxLength": 40},
                    "zip": {"anyOf": [{"type": "integer"}, {"type": "null"}]}
                },
                "required": ["street", "zip"],
                "additionalProperties": false
            }
        }
    })
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": common::weather_parameters(),
            "strict": true
        }},
        {"type": "function", "function": {
            "name": "get_time",
            "description": "Current local time in a timezone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 30}},
                "required": ["timezone"]
            }
        }}
    ])
}

fn parameters_of(tools: &Value, name: &str) -> Value {
    tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name)
        .map(|t| t["function"]["parameters"].clone())
        .unwrap_or_else(|| panic!("no tool named {name}"))
}

/// Every call names an offered tool and its arguments validate against that tool's schema.
fn assert_valid_calls(message: &Value, tools: &Value, allowed: &[&str]) -> usize {
    let calls = message["tool_calls"].as_array().expect("tool_calls");
    assert!(!calls.is_empty(), "{message}");
    for call in calls {
        assert_eq!(call["type"], "function");
        assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
        let name = call["function"]["name"].as_str().unwrap();
        assert!(allowed.contains(&name), "{name} not in {allowed:?}");
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("arguments do not parse ({e}): {call}"));
        check_against_schema(&parameters_of(tools, name), &arguments)
            .unwrap_or_else(|e| panic!("{e}: {arguments}"));
    }
    calls.len()
}

#[tokio::test]
async fn json_schema_outputs_always_validate_at_temperature_one() {
    let server = shared();
    let schema = person_schema();
    let requests = (0..20u64).map(|seed| {
        let body = json!({
            "model": MODEL,
            "messages": ask("Invent a person and describe them."),
            "temperature": 1.0,
            "seed": seed,
            "max_tokens": 300,
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}}
        });
        async move { (seed, server.chat(&body).await) }
    });
    for (seed, (status, body)) in join_all(requests).await {
        assert_eq!(status, 200, "seed {seed}: {body}");
        validate("CreateChatCompletionResponse", &body);
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "stop", "seed {seed}: {body}");
        let text = choice["message"]["content"].as_str().unwrap();
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("seed {seed}: not JSON ({e}): {text}"));
        check_against_schema(&schema, &value)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
    }
}

#[tokio::test]
async fn json_object_always_parses_streamed_or_not() {
    let server = shared();
    for seed in 0..3u64 {
        let body = json!({
            "model": MODEL,
            "messages": ask("Give me a JSON object describing a cat."),
            "temperature": 1.0,
            "seed": seed,
            "max_tokens": 200,
            "response_format": {"type": "json_object"}
        });
        let (status, response) = server.chat(&body).await;
        assert_eq!(status, 200, "{response}");
        let text = response["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(value.is_object(), "{text}");

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let (status, frames) = server.chat_stream(&streamed).await;
        assert_eq!(status, 200);
        let mut text = String::new();
        for frame in &frames[..frames.len() - 1] {
            let chunk: Value = serde_json::from_str(frame).unwrap();
            validate("CreateChatCompletionStreamResponse", &chunk);
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
            }
        }
        // Same seed, same request: the stream spells the same object.
        assert_eq!(
            text,
            response["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
        );
    }
}

#[tokio::test]
async fn json_cut_by_a_small_token_limit_still_parses() {
    let server = shared();
    // Seeds 3 and 5 once cut inside a dangling key (`{"key` with no value yet).
    for seed in 0..10u64 {
        let (status, body) = server
            .chat(&json!({
                "model": MODEL,
                "messages": ask("Describe a city as JSON with many nested details."),
                "temperature": 1.0,
                "seed": seed,
                "max_tokens": 40,
                "response_format": {"type": "json_object"}
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("seed {seed}: cut JSON does not parse ({e}): {text}"));
        assert!(value.is_object());
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() <= 40);
    }
}

#[tokio::test]
async fn required_and_named_tool_choices_always_call_validly() {
    let server = shared();
    let tools = weather_tools();
    for seed in 0..4u64 {
        let (status, body) = server
            .chat(&json!({
                "model": MODEL,
                "messages": ask("What is the weather in Paris?"),
                "tools": tools,
                "tool_choice": "required",
                "temperature": 1.0,
                "seed": seed,
                "max_tokens": 200
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        validate("CreateChatCompletionResponse", &body);
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
        assert_eq!(choice["message"]["content"], Value::Null, "{body}");
        assert_valid_calls(&choice["message"], &tools, &["get_weather", "get_time"]);

        let (status, body) = server
            .chat(&json!({
                "model": MODEL,
                "messages": ask("What is the weather in Paris?"),
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
                "parallel_tool_calls": false,
                "temperature": 1.0,
                "seed": seed,
                "max_tokens": 200
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        let message = &body["choices"][0]["message"];
        assert_eq!(
            assert_valid_calls(message, &tools, &["get_time"]),
            1,
            "{body}"
        );
    }
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_openai_deltas() {
    let (status, frames) = shared()
        .chat_stream(&json!({
            "model": MODEL,
            "messages": ask("What is the weather in Paris?"),
            "tools": weather_tools(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 200
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    for chunk in &chunks {
        validate("CreateChatCompletionStreamResponse", chunk);
    }
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(deltas.len() >= 2, "name first, then argument fragments");
    let calls = deltas.iter().filter(|d| d.get("id").is_some()).count();
    assert!(calls >= 1);
    for index in 0..calls {
        let mine: Vec<&&Value> = deltas.iter().filter(|d| d["index"] == index).collect();
        let first = mine[0];
        assert!(first["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(first["type"], "function");
        assert_eq!(first["function"]["name"], "get_weather");
        for later in &mine[1..] {
            assert!(later.get("id").is_none() && later["function"].get("name").is_none());
        }
        let arguments: String = mine
            .iter()
            .map(|d| d["function"]["arguments"].as_str().unwrap_or_default())
            .collect();
        let arguments: Value = serde_json::from_str(&arguments).unwrap();
        check_against_schema(&parameters_of(&weather_tools(), "get_weather"), &arguments).unwrap();
    }
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter(|c| !c["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["finish_reason"], "tool_calls");
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn tool_choice_none_never_calls() {
    let (status, body) = shared()
        .chat(&json!({
            "model": MODEL,
            "messages": ask("What is the weather in Paris? Use <tool_call> if you must."),
            "tools": weather_tools(),
            "tool_choice": "none",
            "max_tokens": 60
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert!(choice["message"].get("tool_calls").is_none(), "{body}");
    assert_ne!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_string());
}

#[tokio::test]
async fn a_tool_result_round_trip_completes() {
    let server = shared();
    let tools = weather_tools();
    let mut messages = ask("What is the weather in Paris?");
    let (status, body) = server
        .chat(&json!({
            "model": MODEL, "messages": messages, "tools": tools,
            "tool_choice": "required", "parallel_tool_calls": false, "max_tokens": 200
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    let assistant = body["choices"][0]["message"].clone();
    let call = &assistant["tool_calls"][0];
    messages.as_array_mut().unwrap().push(assistant.clone());
    messages.as_array_mut().unwrap().push(json!({
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "{\"temperature\": 21, \"unit\": \"celsius\", \"sky\": \"sunny\"}"
    }));
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": messages, "tools": tools, "max_tokens": 80}))
        .await;
    assert_eq!(status, 200, "{body}");
    validate("CreateChatCompletionResponse", &body);
    let choice = &body["choices"][0];
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 100);
    // `auto` lets the model answer in words or call again; either way the turn completed.
    if choice["finish_reason"] == "tool_calls" {
        assert_valid_calls(&choice["message"], &tools, &["get_weather", "get_time"]);
    } else {
        assert!(
            !choice["message"]["content"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn unsupported_strict_schemas_are_refused_with_their_location() {
    let server = shared();
    let mut schema = person_schema();
    schema["properties"]["pets"]["items"] = json!({"oneOf": [{"type": "string"}]});
    let (status, body) = server
        .chat(&json!({
            "model": MODEL, "messages": ask("hi"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}}
        }))
        .await;
    assert_error(status, &body, 400, Some("response_format"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("#/properties/pets/items") && message.contains("oneOf"),
        "{message}"
    );

    let mut tools = weather_tools();
    tools[0]["function"]["parameters"]["additionalProperties"] = json!(true);
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": ask("hi"), "tools": tools}))
        .await;
    assert_error(status, &body, 400, Some("tools[0].function.parameters"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("additionalProperties"));

    // A schema the grammar compiler cannot satisfy is a 400 too, not a 500.
    let (status, body) = server
        .chat(&json!({
            "model": MODEL, "messages": ask("hi"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["a"]}}}
        }))
        .await;
    assert_error(status, &body, 400, Some("response_format"));
}
