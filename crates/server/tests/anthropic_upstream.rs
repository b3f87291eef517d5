//! Anthropic as an upstream, end to end: Switchboard in front of an in-process fake that speaks
//! the Messages wire (named SSE events, thinking with signatures, tool use, citations, error
//! bodies, 529 overloaded, an `error` event mid-stream) and enforces what the real API
//! enforces (alternating turns, `max_tokens`, thinking blocks replayed before a tool use).
//! Each test checks what the client got and what the fake received; the fake itself is
//! checked with Anthropic's Python SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::sse_data;
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Route};
use switchboard_model::Capability;
use switchboard_providers::anthropic::{
    AnthropicConfig, AnthropicProvider, StructuredOutputs, ThinkingMode,
};
use switchboard_providers::http::{Timeouts, UpstreamConfig};
use switchboard_server::ServerConfig;

/// Headers and body of one request the fake received.
#[derive(Clone, Debug)]
struct Received {
    api_key: Option<String>,
    version: Option<String>,
    beta: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Fake {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Fake {
    fn last(&self) -> Received {
        self.received.lock().unwrap().last().cloned().unwrap()
    }
}

fn frame(event: &Value) -> String {
    format!(
        "event: {}\ndata: {event}\n\n",
        event["type"].as_str().unwrap()
    )
}

fn stream(events: &[Value]) -> Response {
    let text: String = events.iter().map(frame).collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(
            json!({"type": "error", "error": {"type": kind, "message": message},
                          "request_id": "req_fake"}),
        ),
    )
        .into_response()
}

fn start(input_tokens: u32) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
        "role": "assistant", "content": [], "model": "claude-fake", "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": input_tokens,
        "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 1}}})
}

fn text_block(index: u32, text: &str) -> Vec<Value> {
    vec![
        json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        json!({"type": "content_block_stop", "index": index}),
    ]
}

fn end(reason: &str, sequence: Option<&str>, output_tokens: u32) -> Vec<Value> {
    vec![
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
               "usage": {"output_tokens": output_tokens}}),
        json!({"type": "message_stop"}),
    ]
}

/// The checks the real API makes that matter here.
fn refuse(body: &Value) -> Option<Response> {
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ));
    }
    let messages = body["messages"].as_array()?;
    let mut previous = "assistant";
    for message in messages {
        let role = message["role"].as_str().unwrap_or("");
        if role == previous {
            return Some(error(
                400,
                "invalid_request_error",
                "messages: roles must alternate between \"user\" and \"assistant\"",
            ));
        }
        previous = if role == "user" { "user" } else { "assistant" };
    }
    let thinking = body["thinking"]["type"] == "enabled";
    if thinking {
        let budget = body["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 || budget >= body["max_tokens"].as_u64().unwrap() {
            return Some(error(
                400,
                "invalid_request_error",
                "thinking.budget_tokens: out of range",
            ));
        }
        if body.get("temperature").is_some() {
            return Some(error(
                400,
                "invalid_request_error",
                "temperature may only be set to 1 when thinking is enabled",
            ));
        }
        for message in messages.iter().filter(|m| m["role"] == "assistant") {
            let content = message["content"].as_array()?;
            let uses_tool = content.iter().any(|block| block["type"] == "tool_use");
            let first = &content[0];
            if uses_tool
                && !(first["type"] == "thinking"
                    && first["signature"] == "sig-issued-1"
                    && first["thinking"] == "The user wants Oslo's weather.")
            {
                return Some(error(
                    400,
                    "invalid_request_error",
                    "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but \
                     found `tool_use`. When `thinking` is enabled, a final `assistant` message \
                     must start with a thinking block.",
                ));
            }
        }
    }
    None
}

async fn messages(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    fake.received.lock().unwrap().push(Received {
        api_key: header("x-api-key"),
        version: header("anthropic-version"),
        beta: header("anthropic-beta"),
        body: body.clone(),
    });
    if header("x-api-key").is_none() {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if let Some(refused) = refuse(&body) {
        return refused;
    }
    let answered_tool = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
    match body["model"].as_str().unwrap() {
        "claude-think" if answered_tool => {
            let mut events = vec![start(40)];
            events.extend(text_block(0, "It is sunny in Oslo."));
            events.extend(end("end_turn", None, 9));
            stream(&events)
        }
        "claude-think" => {
            let mut events = vec![
                start(20),
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "thinking_delta", "thinking": "The user wants "}}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "thinking_delta", "thinking": "Oslo's weather."}}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "signature_delta", "signature": "sig-issued-1"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "ping"}),
            ];
            events.extend(text_block(1, "Checking."));
            events.extend([
                json!({"type": "content_block_start", "index": 2, "content_block":
                       {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2,
                       "delta": {"type": "input_json_delta", "partial_json": ""}}),
                json!({"type": "content_block_delta", "index": 2,
                       "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
                json!({"type": "content_block_delta", "index": 2,
                       "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
                json!({"type": "content_block_stop", "index": 2}),
            ]);
            events.extend(end("tool_use", None, 30));
            stream(&events)
        }
        "claude-json" => {
            if body["tool_choice"]["type"] != "tool" {
                return error(400, "invalid_request_error", "expected a forced tool");
            }
            let mut events = vec![
                start(8),
                json!({"type": "content_block_start", "index": 0, "content_block":
                       {"type": "tool_use", "id": "toolu_j", "name": body["tool_choice"]["name"], "input": {}}}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo\", "}}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": "\"celsius\": 21}"}}),
                json!({"type": "content_block_stop", "index": 0}),
            ];
            events.extend(end("tool_use", None, 12));
            stream(&events)
        }
        "claude-cite" => {
            let mut events = vec![
                start(3),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": []}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta",
                       "citation": {"type": "web_search_result_location", "url": "https://example.com/oslo",
                                    "title": "Oslo", "cited_text": "Oslo is sunny", "encrypted_index": "Eo8"}}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sunny"}}),
                json!({"type": "content_block_stop", "index": 0}),
            ];
            events.extend(end("stop_sequence", Some("END"), 2));
            stream(&events)
        }
        // The web search server tool, as the API streams a search: the query as input JSON,
        // the results block whole, then text blocks with their citations.
        "claude-search" => {
            let asked = body["tools"].as_array().is_some_and(|tools| {
                tools
                    .iter()
                    .any(|t| t["type"] == "web_search_20250305" && t["name"] == "web_search")
            });
            if !asked {
                return error(
                    400,
                    "invalid_request_error",
                    "the fake expected the web search tool",
                );
            }
            let mut events = vec![
                start(30),
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "server_tool_use", "id": "srvtoolu_01A", "name": "web_search", "input": {}}}),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"Zorblat founding\"}"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block":
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01A", "content": [
                        {"type": "web_search_result", "url": "https://zorblat.example/history",
                         "title": "History of Zorblat", "encrypted_content": "EqgfCioIARgBIiQ3", "page_age": "May 1, 2040"},
                        {"type": "web_search_result", "url": "https://zorblat.example/food",
                         "title": "Zorblat food", "encrypted_content": "EqgfCioIARgBIiQ4", "page_age": null}]}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Here is what I found. "}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": "", "citations": []}}),
                json!({"type": "content_block_delta", "index": 3, "delta": {"type": "citations_delta",
                    "citation": {"type": "web_search_result_location", "url": "https://zorblat.example/history",
                                 "title": "History of Zorblat", "cited_text": "The town of Zorblat was founded in 2031.",
                                 "encrypted_index": "Eo8BCioIAhgBIiQ"}}}),
                json!({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "Zorblat was founded in 2031."}}),
                json!({"type": "content_block_stop", "index": 3}),
            ];
            events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 25, "server_tool_use": {"web_search_requests": 1}}}));
            events.push(json!({"type": "message_stop"}));
            stream(&events)
        }
        "claude-parallel" if answered_tool => {
            // The API wants every tool_use of the previous turn answered in this one message.
            let results: Vec<&str> = body["messages"].as_array().unwrap().last().unwrap()
                ["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str())
                .collect();
            if results != ["toolu_oslo", "toolu_bergen"] {
                return error(
                    400,
                    "invalid_request_error",
                    "messages: `tool_use` ids were found without `tool_result` blocks immediately after",
                );
            }
            let mut events = vec![start(30)];
            events.extend(text_block(0, "Sunny in Oslo, rain in Bergen."));
            events.extend(end("end_turn", None, 8));
            stream(&events)
        }
        "claude-parallel" => {
            let mut events = vec![start(12)];
            for (index, (id, city)) in
                [(0, ("toolu_oslo", "Oslo")), (1, ("toolu_bergen", "Bergen"))]
            {
                events.extend([
                    json!({"type": "content_block_start", "index": index, "content_block":
                           {"type": "tool_use", "id": id, "name": "weather", "input": {}}}),
                    json!({"type": "content_block_delta", "index": index, "delta":
                           {"type": "input_json_delta", "partial_json": format!("{{\"city\": \"{city}\"}}")}}),
                    json!({"type": "content_block_stop", "index": index}),
                ]);
            }
            events.extend(end("tool_use", None, 20));
            stream(&events)
        }
        "claude-echo" => {
            let mut events = vec![start(4)];
            events.extend(text_block(0, "A one-page PDF."));
            events.extend(end("end_turn", None, 5));
            stream(&events)
        }
        "claude-overloaded" => error(529, "overloaded_error", "Overloaded"),
        "claude-limited" => error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        ),
        "claude-bad" => error(
            400,
            "invalid_request_error",
            "messages.0.content: text content blocks must be non-empty",
        ),
        "claude-midfail" => {
            let mut events = vec![start(3)];
            events.extend(text_block(0, "Partial"));
            events.push(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
            stream(&events)
        }
        other => error(404, "not_found_error", &format!("model: {other}")),
    }
}

/// Anthropic's token count: refuses generation-only fields, as the API does.
async fn count_tokens(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    fake.received.lock().unwrap().push(Received {
        api_key: headers
            .get("x-api-key")
            .map(|v| v.to_str().unwrap().to_owned()),
        version: headers
            .get("anthropic-version")
            .map(|v| v.to_str().unwrap().to_owned()),
        beta: headers
            .get("anthropic-beta")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: body.clone(),
    });
    if let Some(extra) = ["max_tokens", "stream", "temperature"]
        .iter()
        .find(|k| body.get(**k).is_some())
    {
        return error(
            400,
            "invalid_request_error",
            &format!("{extra}: Extra inputs are not permitted"),
        );
    }
    axum::Json(json!({"input_tokens": 42})).into_response()
}

async fn fake_anthropic() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}"), fake)
}

async fn gateway() -> (String, Fake) {
    let (root, fake) = fake_anthropic().await;
    let provider = Arc::new(
        AnthropicProvider::new(AnthropicConfig {
            upstream: UpstreamConfig {
                name: "claude".into(),
                base_url: root.clone(),
                api_key: Some("sk-ant-test".into()),
                headers: Vec::new(),
                timeouts: Timeouts {
                    first_byte: Duration::from_secs(2),
                    ..Timeouts::default()
                },
            },
            structured_outputs: StructuredOutputs::ForcedTool,
            thinking: ThinkingMode::Budget,
        })
        .unwrap(),
    );
    let mut catalog = Catalog::default();
    for (id, model) in [
        ("c-think", "claude-think"),
        ("c-json", "claude-json"),
        ("c-cite", "claude-cite"),
        ("c-bad", "claude-bad"),
        ("c-midfail", "claude-midfail"),
        ("c-busy", "claude-overloaded"),
        ("c-parallel", "claude-parallel"),
        ("c-echo", "claude-echo"),
        ("c-search", "claude-search"),
        // Named as upstream, so one SDK script can check the fake and the gateway alike.
        ("claude-think", "claude-think"),
        ("claude-overloaded", "claude-overloaded"),
        ("claude-limited", "claude-limited"),
    ] {
        let provider: Arc<dyn switchboard_gateway::Provider> = provider.clone();
        catalog.add(CatalogEntry {
            id: id.into(),
            owned_by: "claude".into(),
            created: 1_700_000_000,
            context_window: 200_000,
            capabilities: vec![
                Capability::Tools,
                Capability::JsonSchema,
                Capability::JsonObject,
                Capability::Reasoning,
                Capability::Vision,
                Capability::Files,
                // Claude searches natively: the gateway passes the search to it.
                Capability::WebSearch,
            ],
            pricing: Pricing::default(),
            routes: vec![Route::new("claude", provider, model, 0)],
        });
    }
    let base = common::serve_catalog(catalog, &[], ServerConfig::default());
    (base, fake)
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[tokio::test]
async fn a_thinking_tool_loop_over_chat_completions() {
    let (base, fake) = gateway().await;
    let first = json!({"model": "c-think", "reasoning_effort": "low", "tools": weather_tool(),
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [
                         {"type": "text", "text": "Weather here?"},
                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &first).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = &body["choices"][0]["message"];
    assert_eq!(body["model"], "c-think");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], "Checking.");
    assert_eq!(
        message["reasoning_content"],
        "The user wants Oslo's weather."
    );
    assert_eq!(
        message["reasoning_details"],
        json!([{"type": "reasoning.text", "text": "The user wants Oslo's weather.",
                "signature": "sig-issued-1", "format": "anthropic-claude-v1", "index": 0}])
    );
    assert_eq!(message["tool_calls"][0]["id"], "toolu_01");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\": \"Oslo\"}"
    );
    // Input counts are summed as OpenAI's prompt_tokens counts cached tokens.
    assert_eq!(body["usage"]["prompt_tokens"], 27);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cache_write_tokens"],
        2
    );
    assert_eq!(body["usage"]["completion_tokens"], 30);

    let received = fake.last();
    assert_eq!(received.api_key.as_deref(), Some("sk-ant-test"));
    assert_eq!(received.version.as_deref(), Some("2023-06-01"));
    let sent = received.body;
    assert_eq!(sent["model"], "claude-think");
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(
        sent["max_tokens"],
        4096 + 4096,
        "an unknown model's default, plus the thinking budget"
    );
    assert_eq!(sent["stream"], true);
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    // The client sends the assistant message back as the SDK gives it, with the tool's result:
    // the fake (like the API) refuses the turn unless the signed thinking block comes first.
    let mut replay = message.clone();
    replay.as_object_mut().unwrap().remove("refusal");
    let second = json!({"model": "c-think", "reasoning_effort": "low", "tools": weather_tool(),
        "messages": [{"role": "system", "content": "Be brief."}, first["messages"][1].clone(), replay,
                     {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &second).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It is sunny in Oslo."
    );
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"][1]["content"],
        json!([{"type": "thinking", "thinking": "The user wants Oslo's weather.", "signature": "sig-issued-1"},
               {"type": "text", "text": "Checking."},
               {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Oslo"}}])
    );
    assert_eq!(
        sent["messages"][2]["content"],
        json!([{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}])
    );
}

#[tokio::test]
async fn a_thinking_tool_loop_over_the_responses_api_streamed() {
    let (base, fake) = gateway().await;
    let first = json!({"model": "c-think", "reasoning": {"effort": "low"}, "stream": true,
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "function", "name": "weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "input": "Weather in Oslo?"});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &first).await;
    assert_eq!(status, 200, "{text}");
    // Responses frames carry an `event:` line before their data.
    let frames: Vec<String> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|line| line.strip_prefix("data: ")))
        .map(str::to_owned)
        .collect();
    let mut completed = None;
    for frame in &frames {
        if frame == "[DONE]" {
            continue;
        }
        let event: Value = serde_json::from_str(frame).unwrap();
        common::validate("ResponseStreamEvent", &event);
        if event["type"] == "response.completed" {
            completed = Some(event["response"].clone());
        }
    }
    let response = completed.expect("response.completed");
    let output = response["output"].as_array().unwrap().clone();
    let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call"]);
    assert!(output[0]["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("swb1_"));

    // Replaying the output items unchanged is all a client has to do.
    let mut input = vec![json!({"role": "user", "content": "Weather in Oslo?"})];
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": "toolu_01", "output": "sunny"}));
    let second = json!({"model": "c-think", "reasoning": {"effort": "low"}, "input": input,
        "tools": first["tools"].clone()});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &second).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "It is sunny in Oslo."
    );
    let sent = fake.last().body;
    assert_eq!(
        sent["messages"][1]["content"][0]["signature"],
        "sig-issued-1"
    );
}

#[tokio::test]
async fn json_schema_answers_citations_and_stop_sequences() {
    let (base, fake) = gateway().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"},
        "celsius": {"type": "integer"}}, "required": ["city", "celsius"], "additionalProperties": false});
    let request = json!({"model": "c-json", "messages": [{"role": "user", "content": "Weather as JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": true}}});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let content: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"city": "Oslo", "celsius": 21}));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"]["tool_calls"].is_null());
    let sent = fake.last().body;
    assert_eq!(sent["tools"][0]["input_schema"], schema);

    let streamed = json!({"model": "c-cite", "stream": true, "stop": ["END"],
        "messages": [{"role": "user", "content": "Weather?"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200, "{text}");
    let mut annotations = Vec::new();
    for frame in sse_data(&text).iter().filter(|f| *f != "[DONE]") {
        let chunk: Value = serde_json::from_str(frame).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        if let Some(found) = chunk["choices"][0]["delta"]["annotations"].as_array() {
            annotations.extend(found.iter().cloned());
        }
    }
    assert_eq!(
        annotations,
        [
            json!({"type": "url_citation", "url_citation": {"url": "https://example.com/oslo",
                "title": "Oslo", "start_index": 0, "end_index": 5}})
        ]
    );
    assert_eq!(fake.last().body["stop_sequences"], json!(["END"]));
}

#[tokio::test]
async fn anthropic_errors_in_openai_shapes() {
    let (base, _fake) = gateway().await;
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &ask("c-bad")).await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'claude'") && message.contains("non-empty"),
        "{message}"
    );

    let (status, headers, text) =
        common::post_raw(&base, "/v1/chat/completions", &ask("c-busy")).await;
    assert_eq!(status, 503, "{text}");
    assert!(headers.get("retry-after").is_some());

    let mut many = ask("c-think");
    many["n"] = json!(2);
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &many).await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["param"], "n");

    // After the first byte, an upstream error ends the stream with an error frame.
    let mut streamed = ask("c-midfail");
    streamed["stream"] = json!(true);
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    let frames = sse_data(&text);
    assert_ne!(frames.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{last}"
    );
}

#[tokio::test]
async fn the_fake_speaks_anthropics_wire() {
    let (root, _fake) = fake_anthropic().await;
    common::run_sdk_script_against("anthropic_fake_check.py", &format!("{root}/v1")).await;
}

#[tokio::test]
async fn parallel_tool_calls_are_answered_in_one_turn() {
    let (base, fake) = gateway().await;
    let first = json!({"model": "c-parallel", "tools": weather_tool(),
        "messages": [{"role": "user", "content": "Weather in Oslo and Bergen?"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &first).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = body["choices"][0]["message"].clone();
    let calls = message["tool_calls"].as_array().unwrap();
    let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toolu_oslo", "toolu_bergen"]);
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\": \"Bergen\"}");
    assert_eq!(
        fake.last().body.get("tool_choice"),
        Some(&json!({"type": "auto"}))
    );

    // Two tool messages in a row become one user turn with both results, in order.
    let mut replay = message.clone();
    replay.as_object_mut().unwrap().remove("refusal");
    let second = json!({"model": "c-parallel", "tools": weather_tool(),
        "messages": [first["messages"][0].clone(), replay,
            {"role": "tool", "tool_call_id": "toolu_oslo", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_bergen", "content": "rain"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &second).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Sunny in Oslo, rain in Bergen."
    );
    assert_eq!(
        fake.last().body["messages"][2]["content"],
        json!([{"type": "tool_result", "tool_use_id": "toolu_oslo", "content": "sunny"},
               {"type": "tool_result", "tool_use_id": "toolu_bergen", "content": "rain"}])
    );

    // parallel_tool_calls: false reaches Claude as disable_parallel_tool_use.
    let mut serial = first.clone();
    serial["parallel_tool_calls"] = json!(false);
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &serial).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        fake.last().body["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[tokio::test]
async fn pdf_documents_reach_claude_as_document_blocks() {
    let (base, fake) = gateway().await;
    let pdf = "JVBERi0xLjQK";
    let chat = json!({"model": "c-echo", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise."},
        {"type": "file", "file": {"filename": "report.pdf",
            "file_data": format!("data:application/pdf;base64,{pdf}")}}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "A one-page PDF.");
    assert_eq!(
        fake.last().body["messages"][0]["content"][1],
        json!({"type": "document", "source": {"type": "base64",
            "media_type": "application/pdf", "data": pdf}, "title": "report.pdf"})
    );

    // The Responses API's input_file, by URL: Claude fetches documents itself.
    let responses = json!({"model": "c-echo", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Summarise."},
        {"type": "input_file", "file_url": "https://example.com/report.pdf"}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &responses).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &body);
    assert_eq!(body["output"][0]["content"][0]["text"], "A one-page PDF.");
    assert_eq!(
        fake.last().body["messages"][0]["content"][1],
        json!({"type": "document", "source": {"type": "url",
            "url": "https://example.com/report.pdf"}})
    );
}

#[tokio::test]
async fn the_messages_surface_speaks_anthropics_wire_over_claude() {
    let (base, _fake) = gateway().await;
    common::run_sdk_script_against("anthropic_fake_check.py", &format!("{base}/v1")).await;
}

#[tokio::test]
async fn the_messages_surface_reaches_claude_with_nothing_lost() {
    let (base, fake) = gateway().await;
    let cached = json!({"type": "ephemeral", "ttl": "1h"});
    let first = json!({"model": "c-think", "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": cached}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-7"}, "service_tier": "standard_only",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Weather in Oslo?"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
             "title": "brief.pdf", "cache_control": cached}]}]});
    let response = common::client()
        .post(format!("{base}/v1/messages"))
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(
        message["content"],
        json!([{"type": "thinking", "thinking": "The user wants Oslo's weather.", "signature": "sig-issued-1"},
               {"type": "text", "text": "Checking."},
               {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Oslo"}}])
    );
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 20, "output_tokens": 30, "cache_read_input_tokens": 5,
               "cache_creation_input_tokens": 2})
    );
    let received = fake.last();
    assert_eq!(
        received.beta.as_deref(),
        Some("interleaved-thinking-2025-05-14")
    );
    let sent = received.body;
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
    assert_eq!(sent["max_tokens"], 3000);
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief.", "cache_control": cached}])
    );
    assert_eq!(
        sent["tools"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(sent["metadata"], json!({"user_id": "u-7"}));
    assert_eq!(sent["service_tier"], "standard_only");
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
               "title": "brief.pdf", "cache_control": cached})
    );

    // The content goes back unchanged with the tool's result; the fake checks the signature.
    let mut second = first.clone();
    second["messages"] = json!([first["messages"][0].clone(),
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}]}]);
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &second).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["content"][0]["text"], "It is sunny in Oslo.");
    assert_eq!(
        fake.last().body["messages"][1]["content"],
        message["content"]
    );

    // Without thinking, top_k reaches Claude; count_tokens is Claude's own count.
    let plain = json!({"model": "c-echo", "max_tokens": 50, "top_k": 5,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &plain).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fake.last().body["top_k"], 5);
    let (status, headers, text) = common::post_raw(
        &base,
        "/v1/messages/count_tokens",
        &json!({"model": "c-echo", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"input_tokens": 42})
    );
    assert_eq!(headers["x-switchboard-token-count"], "exact");

    // Upstream failures in this dialect: 529 overloaded, 429 rate limited.
    for (model, status_code, kind) in [
        ("c-busy", 529, "overloaded_error"),
        ("claude-limited", 429, "rate_limit_error"),
    ] {
        let (status, _, text) = common::post_raw(
            &base,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(status, status_code, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["type"], kind, "{body}");
    }
}

/// A Claude model that searches natively: the gateway sends Anthropic's web search server tool
/// (with the request's domain filter and location) and shows Claude's own search and citations
/// on every surface; no gateway search runs.
#[tokio::test]
async fn claude_searches_natively_on_every_surface() {
    let (base, fake) = gateway().await;
    let location = json!({"type": "approximate", "approximate": {"city": "Oslo", "country": "NO"}});
    let chat = json!({"model": "c-search", "messages": [{"role": "user", "content": "When was Zorblat founded?"}],
        "web_search_options": {"user_location": location, "filters": {"allowed_domains": ["zorblat.example"]}}});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = &body["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert_eq!(
        content,
        "Here is what I found. Zorblat was founded in 2031."
    );
    let annotation = &message["annotations"][0]["url_citation"];
    assert_eq!(annotation["url"], "https://zorblat.example/history");
    let (start, end) = (
        usize::try_from(annotation["start_index"].as_u64().unwrap()).unwrap(),
        usize::try_from(annotation["end_index"].as_u64().unwrap()).unwrap(),
    );
    let cited: String = content.chars().skip(start).take(end - start).collect();
    assert_eq!(cited, "Zorblat was founded in 2031.");
    let sent = fake.last().body;
    let tools = sent["tools"].as_array().unwrap();
    assert_eq!(
        tools.last().unwrap(),
        &json!({"type": "web_search_20250305", "name": "web_search",
                "allowed_domains": ["zorblat.example"],
                "user_location": {"type": "approximate", "city": "Oslo", "country": "NO"}})
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    let responses = json!({"model": "c-search", "input": "When was Zorblat founded?",
        "tools": [{"type": "web_search"}], "include": ["web_search_call.action.sources"]});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &responses).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &body);
    assert_eq!(body["output"][0]["type"], "web_search_call");
    assert_eq!(body["output"][0]["action"]["query"], "Zorblat founding");
    assert_eq!(
        body["output"][0]["action"]["sources"],
        json!([{"type": "url", "url": "https://zorblat.example/history"},
               {"type": "url", "url": "https://zorblat.example/food"}])
    );
    assert_eq!(
        body["output"][1]["content"][0]["annotations"][0]["url"],
        "https://zorblat.example/history"
    );

    let messages = json!({"model": "c-search", "max_tokens": 300,
        "messages": [{"role": "user", "content": "When was Zorblat founded?"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "blocked_domains": ["spam.test"]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &messages).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let kinds = common::types_of(&body["content"]);
    assert_eq!(
        kinds,
        ["server_tool_use", "web_search_tool_result", "text"],
        "{body}"
    );
    assert_eq!(
        body["content"][0]["input"],
        json!({"query": "Zorblat founding"})
    );
    assert_eq!(
        body["content"][2]["citations"][0]["cited_text"],
        "Zorblat was founded in 2031."
    );
    assert_eq!(body["usage"]["server_tool_use"]["web_search_requests"], 1);
    assert_eq!(
        fake.last().body["tools"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["blocked_domains"],
        json!(["spam.test"])
    );
}
