//! OpenAI-compatible upstreams end to end: Switchboard in front of an in-process fake server
//! that speaks the Chat Completions wire (SSE chunks, error bodies, 429 with `Retry-After`,
//! 503 bursts, a stream that breaks, a slow first byte). Each test checks what the client got
//! and what the fake received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::{assert_error, client, sse_data};
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Provider, Route};
use switchboard_model::Capability;
use switchboard_providers::openai::{OpenAiConfig, OpenAiProvider, Timeouts};
use switchboard_server::ServerConfig;

/// One request the fake upstream received: its `Authorization` header and body.
type Received = (Option<String>, Value);

/// What the fake upstream received, and how often the flaky model was called.
#[derive(Clone, Default)]
struct Upstream {
    received: Arc<Mutex<Vec<Received>>>,
    request_ids: Arc<Mutex<Vec<Option<String>>>>,
    flaky_calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn bodies_for(&self, model: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body["model"] == model)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn sse(chunks: &[Value]) -> String {
    let mut text = String::new();
    for chunk in chunks {
        text.push_str(&format!("data: {chunk}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    text
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "upstream",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn usage_chunk() -> Value {
    json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "upstream",
           "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
           "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}})
}

fn event_stream(text: String) -> Response {
    ([("content-type", "text/event-stream")], text).into_response()
}

fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"message": message, "type": "invalid_request_error",
                                    "param": param, "code": null}}),
        ),
    )
        .into_response()
}

async fn completions(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    upstream.received.lock().unwrap().push((auth, body.clone()));
    upstream.request_ids.lock().unwrap().push(
        headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let good = || {
        event_stream(sse(&[
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "Hmm."}), None),
            chunk(json!({"content": "Hello"}), None),
            chunk(json!({"content": ", world"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(),
        ]))
    };
    match body["model"].as_str().unwrap() {
        "good" => good(),
        "tools" => event_stream(sse(&[
            chunk(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                "function": {"name": "weather", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(),
        ])),
        "down" => error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", None),
        "flaky" => {
            if upstream.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", None)
            } else {
                good()
            }
        }
        "limited" => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "slow down", None);
            response
                .headers_mut()
                .insert("retry-after", "0".parse().unwrap());
            response
        }
        "badkey" => error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided: sk-up",
            None,
        ),
        "badreq" => error(
            StatusCode::BAD_REQUEST,
            "Unsupported value: 'temperature' does not support 0.3 with this model.",
            Some("temperature"),
        ),
        "midfail" => {
            let first = format!("data: {}\n\n", chunk(json!({"content": "Hel"}), None));
            // The first chunk goes out; a moment later the connection drops.
            let parts = futures::stream::unfold(0, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok(Bytes::from(first)), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Some((Err(std::io::Error::other("connection dropped")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(parts))
                .unwrap()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            good()
        }
        other => error(
            StatusCode::NOT_FOUND,
            &format!("no model {other}"),
            Some("model"),
        ),
    }
}

/// Starts the fake upstream on a loopback port; its `/v1` base URL and its record.
async fn fake_upstream() -> (String, Upstream) {
    let upstream = Upstream::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}/v1"), upstream)
}

fn provider(name: &str, base_url: &str) -> Arc<dyn Provider> {
    Arc::new(
        OpenAiProvider::new(OpenAiConfig {
            name: name.into(),
            base_url: base_url.into(),
            api_key: Some("sk-up".into()),
            headers: vec![("X-Title".into(), "switchboard-test".into())],
            timeouts: Timeouts {
                first_byte: Duration::from_secs(1),
                ..Timeouts::default()
            },
        })
        .unwrap(),
    )
}

fn entry(id: &str, routes: Vec<Route>) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        owned_by: routes[0].provider_name.clone(),
        created: 1_700_000_000,
        context_window: 128_000,
        capabilities: vec![
            Capability::Tools,
            Capability::JsonSchema,
            Capability::Reasoning,
            Capability::Vision,
        ],
        pricing: Pricing::default(),
        routes,
    }
}

/// Switchboard over the fake upstream: one catalog entry per behaviour.
async fn gateway() -> (String, Upstream) {
    let (base_url, upstream) = fake_upstream().await;
    let up = provider("up", &base_url);
    let backup = provider("backup", &base_url);
    let route = |provider: &Arc<dyn Provider>, name: &str, model: &str| {
        Route::new(name, Arc::clone(provider), model, 0)
    };
    let mut catalog = Catalog::default();
    for (id, model) in [
        ("m-good", "good"),
        ("m-tools", "tools"),
        ("m-retry", "flaky"),
        ("m-limited", "limited"),
        ("m-badkey", "badkey"),
        ("m-badreq", "badreq"),
        ("m-midfail", "midfail"),
    ] {
        catalog.add(entry(id, vec![route(&up, "up", model)]));
    }
    catalog.add(entry(
        "m-fallback",
        vec![route(&up, "up", "down"), route(&backup, "backup", "good")],
    ));
    catalog.add(entry(
        "m-slow",
        vec![route(&up, "up", "slow"), route(&backup, "backup", "good")],
    ));
    let base = common::serve_catalog(catalog, &[], ServerConfig::default());
    (base, upstream)
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Say hello."}],
           "max_tokens": 20, "temperature": 0.5})
}

#[tokio::test]
async fn chat_completions_through_an_upstream() {
    let (base, upstream) = gateway().await;
    let (status, _, body) = common::post_raw(&base, "/v1/chat/completions", &chat("m-good")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    assert_eq!(body["model"], "m-good", "the client sees our catalog id");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello, world");
    assert_eq!(body["choices"][0]["message"]["reasoning_content"], "Hmm.");
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

    // What the upstream received: its own model name, our key, streaming with usage.
    let received = upstream.received.lock().unwrap()[0].clone();
    assert_eq!(received.0.as_deref(), Some("Bearer sk-up"));
    let sent = received.1;
    assert_eq!(sent["model"], "good");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["max_completion_tokens"], 20);
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}])
    );

    // One id follows the request: ours when the client sent none, the client's otherwise.
    let our_id = upstream.request_ids.lock().unwrap()[0].clone().unwrap();
    assert!(our_id.starts_with("req_"), "{our_id}");
    let response = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-request-id", "trace-42")
        .json(&chat("m-good"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42");
    assert_eq!(
        upstream.request_ids.lock().unwrap()[1].as_deref(),
        Some("trace-42")
    );

    let mut streamed = chat("m-good");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    let frames = sse_data(&text);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let mut content = String::new();
    for frame in &frames[..frames.len() - 1] {
        let chunk: Value = serde_json::from_str(frame).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        assert_eq!(chunk["model"], "m-good");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(piece);
        }
    }
    assert_eq!(content, "Hello, world");
}

#[tokio::test]
async fn tool_calls_and_the_responses_api_through_an_upstream() {
    let (base, upstream) = gateway().await;
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut body = chat("m-tools");
    body["tools"] = tools;
    body["tool_choice"] = json!("required");
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let call_out = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call_out["id"], "call_up");
    assert_eq!(call_out["function"]["arguments"], "{\"city\": \"Oslo\"}");
    let sent = &upstream.bodies_for("tools")[0];
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");

    let responses = json!({"model": "m-good", "input": "Say hello.", "store": false});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &responses).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    assert_eq!(response["status"], "completed");
    assert_eq!(response["model"], "m-good");
    let message = response["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "message")
        .unwrap();
    assert_eq!(message["content"][0]["text"], "Hello, world");
}

#[tokio::test]
async fn failures_before_the_first_byte_are_retried_then_routed_elsewhere() {
    let (base, upstream) = gateway().await;
    // 503, 503, then 200: retried on the same route, invisible to the client.
    let (status, _, body) = common::post_raw(&base, "/v1/chat/completions", &chat("m-retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.bodies_for("flaky").len(), 3);
    // Always 503: three tries, then the backup route.
    let (status, _, body) =
        common::post_raw(&base, "/v1/chat/completions", &chat("m-fallback")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.bodies_for("down").len(), 3);
    // No first byte in time: the next route answers.
    let (status, _, body) = common::post_raw(&base, "/v1/chat/completions", &chat("m-slow")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn upstream_errors_say_whose_fault_they_are() {
    let (base, _) = gateway().await;
    // The client's fault: the upstream's words and param, naming the provider.
    let (status, _, body) =
        common::post_raw(&base, "/v1/chat/completions", &chat("m-badreq")).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 400, Some("temperature"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'up'") && message.contains("does not support"),
        "{message}"
    );
    // The operator's problem: a 502 that reveals no key.
    let (status, _, body) =
        common::post_raw(&base, "/v1/chat/completions", &chat("m-badkey")).await;
    assert!(!body.contains("sk-up"), "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 502, None);
    // Rate limited throughout: a 429 with the upstream's Retry-After for the client.
    let (status, headers, body) =
        common::post_raw(&base, "/v1/chat/completions", &chat("m-limited")).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 429, None);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_failure_after_the_first_byte_ends_the_stream_with_an_error() {
    let (base, upstream) = gateway().await;
    let mut streamed = chat("m-midfail");
    streamed["stream"] = json!(true);
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    let frames = sse_data(&text);
    assert!(text.contains("Hel"), "{text}");
    assert!(!frames.contains(&"[DONE]".to_owned()), "{frames:?}");
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert!(last["error"].is_object(), "{last}");
    // Never retried after the first byte: no text sent twice.
    assert_eq!(upstream.bodies_for("midfail").len(), 1);
    assert_eq!(text.matches("Hel").count(), 1);

    let responses = json!({"model": "m-midfail", "input": "hi", "stream": true, "store": false});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &responses).await;
    assert_eq!(status, 200);
    assert!(text.contains("event: response.failed"), "{text}");
}

/// Switchboard in front of Switchboard: the embedded model served by one instance is an
/// OpenAI-compatible upstream of another, which has no model of its own; the official SDK
/// scripts run against the front one unchanged.
#[tokio::test]
async fn the_official_sdk_through_a_switchboard_upstream() {
    let local = common::shared();
    let upstream = Arc::new(
        OpenAiProvider::new(OpenAiConfig {
            name: "inner".into(),
            base_url: local.url("/v1"),
            api_key: None,
            headers: Vec::new(),
            timeouts: Timeouts::default(),
        })
        .unwrap(),
    );
    let mut front = entry(
        common::MODEL,
        vec![Route::new("inner", upstream, common::MODEL, 0)],
    );
    front.context_window = 8192;
    front.capabilities = vec![
        Capability::Tools,
        Capability::JsonObject,
        Capability::JsonSchema,
    ];
    let mut catalog = Catalog::default();
    catalog.add(front);
    let base = common::serve_catalog(catalog, &[], ServerConfig::default());
    common::run_sdk_script_against("sdk_client.py", &format!("{base}/v1")).await;
    common::run_sdk_script_against("sdk_responses.py", &format!("{base}/v1")).await;
}

/// Anthropic's wire in front of an OpenAI-compatible upstream: the request reaches it as a
/// Chat Completions body, the answer comes back as Messages blocks, and failures in
/// Anthropic's words.
#[tokio::test]
async fn the_messages_surface_through_an_upstream() {
    let (base, upstream) = gateway().await;
    let request = json!({"model": "m-tools", "max_tokens": 300, "system": "Be brief.",
        "stop_sequences": ["END"], "tool_choice": {"type": "any"},
        "tools": [{"name": "weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0",
                "name": "weather", "input": {"city": "Bergen"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0",
                "content": "timeout", "is_error": true}, {"type": "text", "text": "Try Oslo."}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &request).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["model"], "m-tools");
    let call = &body["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert!(call["id"].as_str().unwrap().starts_with("toolu_"), "{call}");
    assert_eq!(call["input"], json!({"city": "Oslo"}));
    assert_eq!(body["usage"]["input_tokens"], 7);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 4);
    assert_eq!(body["usage"]["output_tokens"], 3);
    let sent = &upstream.bodies_for("tools")[0];
    assert_eq!(sent["max_completion_tokens"], 300);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
    );
    assert_eq!(messages[2]["tool_calls"][0]["id"], "toolu_0");
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "toolu_0", "content": "timeout"})
    );
    assert_eq!(messages[4]["role"], "user");

    // Streamed text, then an upstream rate limit and a mid-stream failure in Anthropic's words.
    let ask = |model: &str| {
        json!({"model": model, "max_tokens": 50, "stream": true,
               "messages": [{"role": "user", "content": "Say hello."}]})
    };
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &ask("m-good")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"thinking_delta\""), "{text}");
    assert!(text.contains("\"text\":\"Hello\""), "{text}");
    assert_eq!(text.matches("event: message_stop").count(), 1, "{text}");
    let (status, headers, text) = common::post_raw(&base, "/v1/messages", &ask("m-limited")).await;
    assert_eq!(status, 429, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(headers.contains_key("retry-after"));
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &ask("m-midfail")).await;
    assert_eq!(status, 200);
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("event: message_stop"), "{text}");
}
