//! Gemini as an upstream, end to end: Switchboard in front of an in-process fake that speaks
//! `streamGenerateContent?alt=sse` (whole `GenerateContentResponse` chunks, no end marker,
//! thought parts, thought signatures, Google error bodies) and enforces what the real API
//! enforces for thinking models: the thought signature it issued on a function call must come
//! back on that call. Each test checks what the client got and what the fake received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::sse_data;
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Route};
use switchboard_model::Capability;
use switchboard_providers::fetch::{parse_allow, FetchPolicy};
use switchboard_providers::gemini::GeminiProvider;
use switchboard_providers::http::{Timeouts, UpstreamConfig};
use switchboard_server::ServerConfig;

/// The thought signatures the fake issues: base64, as the real API's are (the SDK decodes them).
const ISSUED: [&str; 2] = ["c2lnLWNhbGwtMQ==", "c2lnLXBhcmFsbGVs"];

/// The path's action (`model:method`), the `x-goog-api-key` header and the body.
type Received = (String, Option<String>, Value);

#[derive(Clone, Default)]
struct Fake {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Fake {
    fn last_body(&self) -> Value {
        self.received.lock().unwrap().last().unwrap().2.clone()
    }
}

fn stream(chunks: &[Value]) -> Response {
    let text: String = chunks
        .iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect();
    ([("content-type", "text/event-stream")], text).into_response()
}

fn error(status: u16, name: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": {"code": status, "message": message, "status": name}})),
    )
        .into_response()
}

fn candidate(parts: Value, finish: Option<&str>) -> Value {
    let mut candidate = json!({"index": 0, "content": {"role": "model", "parts": parts}});
    if let Some(finish) = finish {
        candidate["finishReason"] = finish.into();
    }
    json!({"candidates": [candidate], "modelVersion": "gemini-fake", "responseId": "r1"})
}

fn usage(mut chunk: Value) -> Value {
    chunk["usageMetadata"] = json!({"promptTokenCount": 20, "candidatesTokenCount": 6,
        "thoughtsTokenCount": 40, "cachedContentTokenCount": 8, "totalTokenCount": 66});
    chunk
}

async fn generate(
    State(fake): State<Fake>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let key = headers
        .get("x-goog-api-key")
        .map(|v| v.to_str().unwrap().to_owned());
    fake.received
        .lock()
        .unwrap()
        .push((action.clone(), key.clone(), body.clone()));
    let Some((model, "streamGenerateContent")) = action.split_once(':') else {
        return error(404, "NOT_FOUND", "unknown method");
    };
    if key.is_none() {
        return error(403, "PERMISSION_DENIED", "no key");
    }
    let contents = body["contents"].as_array().unwrap();
    // Thinking models refuse a function-call turn whose first call lacks the signature they
    // issued, and a call turn not answered by as many function responses in the next turn.
    for (turn, content) in contents
        .iter()
        .enumerate()
        .filter(|(_, c)| c["role"] == "model")
    {
        let calls: Vec<&Value> = content["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.get("functionCall").is_some())
            .collect();
        if calls.first().is_some_and(|first| {
            !ISSUED.contains(&first["thoughtSignature"].as_str().unwrap_or(""))
        }) {
            return error(
                400,
                "INVALID_ARGUMENT",
                "Function call is missing a thought_signature in functionCall parts.",
            );
        }
        let answers = contents.get(turn + 1).map_or(0, |next| {
            next["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p.get("functionResponse").is_some())
                .count()
        });
        if !calls.is_empty() && answers != calls.len() {
            return error(
                400,
                "INVALID_ARGUMENT",
                "Please ensure that the number of function response parts is equal to the \
                 number of function call parts of the function call turn.",
            );
        }
    }
    let answered = contents
        .last()
        .and_then(|c| c["parts"].as_array())
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    match model {
        "gemini-think" if answered => stream(&[
            candidate(
                json!([{"text": "It is sunny", "thoughtSignature": "c2lnLWFuc3dlcg=="}]),
                None,
            ),
            usage(candidate(json!([{"text": " in Oslo."}]), Some("STOP"))),
        ]),
        "gemini-think" => stream(&[
            candidate(
                json!([{"text": "Looking up the weather.", "thought": true}]),
                None,
            ),
            usage(candidate(
                json!([{"functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                        "thoughtSignature": ISSUED[0]}]),
                Some("STOP"),
            )),
        ]),
        "gemini-parallel" if answered => stream(&[usage(candidate(
            json!([{"text": "Sunny in Oslo, rain in Bergen."}]),
            Some("STOP"),
        ))]),
        // Parallel calls: the signature rides on the first call only, as Gemini sends them.
        "gemini-parallel" => stream(&[usage(candidate(
            json!([{"functionCall": {"name": "weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": ISSUED[1]},
                   {"functionCall": {"name": "weather", "args": {"city": "Bergen"}}}]),
            Some("STOP"),
        ))]),
        "gemini-echo" => stream(&[
            candidate(json!([{"text": "A one-page "}]), None),
            usage(candidate(json!([{"text": "PDF."}]), Some("STOP"))),
        ]),
        "gemini-json" => stream(&[usage(candidate(
            json!([{"text": "{\"city\": \"Oslo\", \"celsius\": 21}"}]),
            Some("STOP"),
        ))]),
        // Grounding with Google Search: the answer in two chunks, the grounding with the last.
        "gemini-search" => {
            let asked = body["tools"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t.get("googleSearch").is_some()));
            if !asked {
                return error(400, "INVALID_ARGUMENT", "the fake expected googleSearch");
            }
            let mut last = candidate(json!([{"text": "in 2031."}]), Some("STOP"));
            last["candidates"][0]["groundingMetadata"] = json!({
                "webSearchQueries": ["zorblat founding year"],
                "groundingChunks": [{"web": {"uri": "https://vertexaisearch.example/grounding/1",
                                             "title": "zorblat.example"}}],
                "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 27,
                                                   "text": "Zorblat was founded in 2031."},
                                       "groundingChunkIndices": [0], "confidenceScores": [0.9]}],
                "searchEntryPoint": {"renderedContent": "<div></div>"}
            });
            stream(&[
                candidate(json!([{"text": "Zorblat was founded "}]), None),
                usage(last),
            ])
        }
        "gemini-unsafe" => stream(&[candidate(json!([]), Some("SAFETY"))]),
        "gemini-cut" => stream(&[candidate(json!([{"text": "Partial"}]), None)]),
        "gemini-busy" => error(503, "UNAVAILABLE", "The model is overloaded."),
        _ => error(404, "NOT_FOUND", &format!("models/{model} is not found")),
    }
}

/// Switchboard over the fake; the fake's address also serves an image for media URLs.
async fn gateway() -> (String, Fake, String) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1beta/models/{action}", post(generate))
        .route(
            "/sky.png",
            axum::routing::get(|| async { b"\x89PNG\r\n\x1a\nsky".to_vec() }),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let media_from_loopback = FetchPolicy {
        allow: parse_allow(&["127.0.0.1".into()]).unwrap(),
        ..FetchPolicy::default()
    };
    let provider: Arc<dyn switchboard_gateway::Provider> = Arc::new(
        GeminiProvider::new(
            UpstreamConfig {
                name: "gm".into(),
                base_url: format!("http://{address}"),
                api_key: Some("goog-key".into()),
                headers: Vec::new(),
                timeouts: Timeouts {
                    first_byte: Duration::from_secs(2),
                    ..Timeouts::default()
                },
            },
            media_from_loopback,
        )
        .unwrap(),
    );
    let mut catalog = Catalog::default();
    for (id, model) in [
        ("g-think", "gemini-think"),
        ("g-json", "gemini-json"),
        ("g-unsafe", "gemini-unsafe"),
        ("g-cut", "gemini-cut"),
        ("g-busy", "gemini-busy"),
        ("g-parallel", "gemini-parallel"),
        ("g-echo", "gemini-echo"),
        ("g-search", "gemini-search"),
    ] {
        catalog.add(CatalogEntry {
            id: id.into(),
            owned_by: "gm".into(),
            created: 1_700_000_000,
            context_window: 1_000_000,
            capabilities: vec![
                Capability::Tools,
                Capability::JsonSchema,
                Capability::Reasoning,
                Capability::Vision,
                Capability::AudioInput,
                Capability::Files,
                // Gemini grounds its answers with Google Search natively.
                Capability::WebSearch,
            ],
            pricing: Pricing::default(),
            routes: vec![Route::new("gm", Arc::clone(&provider), model, 0)],
        });
    }
    let base = common::serve_catalog(catalog, &[], ServerConfig::default());
    (base, fake, address.to_string())
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[tokio::test]
async fn a_thinking_tool_loop_keeps_gemini_signatures_on_both_surfaces() {
    let (base, fake, _) = gateway().await;
    let first = json!({"model": "g-think", "reasoning_effort": "medium", "tools": tools(),
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &first).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = body["choices"][0]["message"].clone();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["reasoning_content"], "Looking up the weather.");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    let details = message["reasoning_details"].as_array().unwrap();
    assert!(
        details.iter().any(|d| d["type"] == "reasoning.encrypted"
            && d["data"] == ISSUED[0]
            && d["id"] == message["tool_calls"][0]["id"]
            && d["format"] == "google-gemini-v1"),
        "{details:?}"
    );
    assert_eq!(body["usage"]["completion_tokens"], 46);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        40
    );
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    let (action, key, sent) = fake.received.lock().unwrap()[0].clone();
    assert_eq!(action, "gemini-think:streamGenerateContent");
    assert_eq!(key.as_deref(), Some("goog-key"));
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}})
    );
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );

    // Chat: the assistant message goes back as the SDK returned it.
    let call_id = message["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    let second = json!({"model": "g-think", "reasoning_effort": "medium", "tools": tools(),
        "messages": [first["messages"][0].clone(), message,
                     {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &second).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It is sunny in Oslo."
    );
    let sent = fake.last_body();
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "weather", "response": {"output": "sunny"}})
    );

    // Responses, streamed: the replayed output items carry the signature back.
    let tools_flat = json!([{"type": "function", "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let request = json!({"model": "g-think", "reasoning": {"effort": "medium"}, "stream": true,
        "include": ["reasoning.encrypted_content"], "tools": tools_flat, "input": "Weather?"});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &request).await;
    assert_eq!(status, 200, "{text}");
    let mut output = Vec::new();
    for data in text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|line| line.strip_prefix("data: ")))
        .filter(|data| *data != "[DONE]")
    {
        let event: Value = serde_json::from_str(data).unwrap();
        common::validate("ResponseStreamEvent", &event);
        if event["type"] == "response.completed" {
            output = event["response"]["output"].as_array().unwrap().clone();
        }
    }
    let call = output
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    let mut input = vec![json!({"role": "user", "content": "Weather?"})];
    input.extend(output.iter().cloned());
    input.push(
        json!({"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}),
    );
    let next = json!({"model": "g-think", "reasoning": {"effort": "medium"}, "tools": request["tools"],
        "input": input});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &next).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let answer = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .unwrap()
        .clone();
    assert_eq!(answer["content"][0]["text"], "It is sunny in Oslo.");
}

#[tokio::test]
async fn json_safety_and_failures() {
    let (base, fake, _) = gateway().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"},
        "celsius": {"type": "integer"}}, "required": ["city", "celsius"]});
    let request = json!({"model": "g-json", "messages": [{"role": "user", "content": "JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{text}");
    let sent = fake.last_body();
    assert_eq!(
        sent["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(sent["generationConfig"]["responseJsonSchema"], schema);

    let mut refused = request.clone();
    refused["response_format"]["json_schema"]["schema"]["properties"]["city"]["pattern"] =
        json!("^O");
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &refused).await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["param"], "response_format");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("pattern"));

    let ask = |model: &str| {
        json!({"model": model, "stream": true,
        "messages": [{"role": "user", "content": "x"}]})
    };
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &ask("g-unsafe")).await;
    assert_eq!(status, 200, "{text}");
    let frames = sse_data(&text);
    let finish: Vec<Value> = frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str::<Value>(f).unwrap())
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "content_filter");

    // A body that ends before a finish reason is a failure, reported after the first byte.
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &ask("g-cut")).await;
    assert_eq!(status, 200);
    let frames = sse_data(&text);
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert!(last.get("error").is_some(), "{last}");

    let (status, _, text) = common::post_raw(
        &base,
        "/v1/chat/completions",
        &json!({"model": "g-busy", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 503, "{text}");
}

#[tokio::test]
async fn media_urls_are_fetched_inline_and_private_ones_refused() {
    let (base, fake, address) = gateway().await;
    let ask = |url: &str| {
        json!({"model": "g-json", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let (status, _, text) = common::post_raw(
        &base,
        "/v1/chat/completions",
        &ask(&format!("http://{address}/sky.png")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        fake.last_body()["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgpza3k="}})
    );
    let calls = fake.received.lock().unwrap().len();
    for blocked in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://[::1]/a.png",
    ] {
        let (status, _, text) =
            common::post_raw(&base, "/v1/chat/completions", &ask(blocked)).await;
        assert_eq!(status, 400, "{blocked}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["code"], "media_url_blocked");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("private or reserved"));
    }
    assert_eq!(
        fake.received.lock().unwrap().len(),
        calls,
        "nothing blocked reached Gemini"
    );
}

#[tokio::test]
async fn parallel_calls_are_answered_in_one_turn_with_the_first_calls_signature() {
    let (base, fake, _) = gateway().await;
    let first = json!({"model": "g-parallel", "tools": tools(),
        "messages": [{"role": "user", "content": "Weather in Oslo and Bergen?"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &first).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = body["choices"][0]["message"].clone();
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{message}");
    assert_ne!(calls[0]["id"], calls[1]["id"], "each call has its own id");
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Bergen\"}");

    let mut replay = message.clone();
    replay.as_object_mut().unwrap().remove("refusal");
    let second = json!({"model": "g-parallel", "tools": tools(),
        "messages": [first["messages"][0].clone(), replay,
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "rain"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &second).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Sunny in Oslo, rain in Bergen."
    );
    let sent = fake.last_body();
    let model_turn = sent["contents"][1]["parts"].as_array().unwrap();
    assert_eq!(model_turn.len(), 2);
    assert_eq!(model_turn[0]["thoughtSignature"], ISSUED[1]);
    assert!(
        model_turn[1].get("thoughtSignature").is_none(),
        "{model_turn:?}"
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}},
            {"functionResponse": {"name": "weather", "response": {"output": "rain"}}}]})
    );
}

#[tokio::test]
async fn pdfs_and_a_non_streamed_response() {
    let (base, fake, _) = gateway().await;
    let pdf = "JVBERi0xLjQK";
    let request = json!({"model": "g-echo", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Summarise."},
        {"type": "input_file", "filename": "report.pdf",
         "file_data": format!("data:application/pdf;base64,{pdf}")}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/responses", &request).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &body);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["content"][0]["text"], "A one-page PDF.");
    assert_eq!(body["usage"]["input_tokens"], 20);
    assert_eq!(
        body["usage"]["output_tokens_details"]["reasoning_tokens"],
        40
    );
    assert_eq!(
        fake.last_body()["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "application/pdf", "data": pdf}})
    );

    // Chat's file part, with a bare base64 payload typed by its name.
    let chat = json!({"model": "g-echo", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise."},
        {"type": "file", "file": {"filename": "report.pdf", "file_data": pdf}}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        fake.last_body()["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "application/pdf", "data": pdf}})
    );
}

#[tokio::test]
async fn the_fake_speaks_geminis_wire() {
    let (_, _, address) = gateway().await;
    common::run_sdk_script_against("gemini_fake_check.py", &format!("http://{address}")).await;
}

/// Anthropic's wire in front of Gemini: a thinking tool loop in which the call's thought
/// signature leaves as a block the client keeps and comes back to Gemini on its call, and a
/// failed tool result reaches Gemini under `error`.
#[tokio::test]
async fn the_messages_surface_runs_a_thinking_tool_loop_on_gemini() {
    let (base, fake, _) = gateway().await;
    let tools = json!([{"name": "weather", "input_schema": {"type": "object",
        "properties": {"city": {"type": "string"}}}}]);
    let first = json!({"model": "g-think", "max_tokens": 2048, "tools": tools,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &first).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "tool_use");
    let content = body["content"].as_array().unwrap().clone();
    let kinds: Vec<&str> = content
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["thinking", "tool_use", "redacted_thinking"],
        "{body}"
    );
    assert_eq!(content[0]["thinking"], "Looking up the weather.");
    let call_id = content[1]["id"].as_str().unwrap();
    assert!(call_id.starts_with("toolu_"), "{call_id}");
    assert_eq!(content[1]["input"], json!({"city": "Oslo"}));
    assert!(content[2]["data"].as_str().unwrap().starts_with("swb1_"));
    // Anthropic counts cache reads apart from input: 20 prompt tokens, 8 of them cached.
    assert_eq!(body["usage"]["input_tokens"], 12);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(body["usage"]["output_tokens"], 46);
    let sent = fake.last_body();
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 2048);

    // The client sends the assistant turn back as it got it, and says the tool failed.
    let second = json!({"model": "g-think", "max_tokens": 2048, "tools": tools, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [first["messages"][0].clone(),
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                "content": "weather service down", "is_error": true}]}]});
    let (status, _, text) = common::post_raw(&base, "/v1/messages", &second).await;
    assert_eq!(status, 200, "{text}");
    let events = common::named_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let said: String = events
        .iter()
        .filter(|(_, e)| e["delta"]["type"] == "text_delta")
        .map(|(_, e)| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(said, "It is sunny in Oslo.");
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let sent = fake.last_body();
    let turns = sent["contents"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{sent}");
    let call = turns[1]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    assert_eq!(call["thoughtSignature"], ISSUED[0]);
    assert_eq!(
        turns[2]["parts"][0]["functionResponse"]["response"],
        json!({"error": "weather service down"})
    );
}

/// Grounding with Google Search on every surface: the fake is asked with `googleSearch`, and
/// the grounding supports become citations over the cited text, the queries a search.
#[tokio::test]
async fn gemini_grounds_its_answer_with_google_search() {
    let (base, fake, _) = gateway().await;
    let question = json!([{"role": "user", "content": "When was Zorblat founded?"}]);
    let (status, _, text) = common::post_raw(
        &base,
        "/v1/chat/completions",
        &json!({"model": "g-search", "messages": question, "web_search_options": {}}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Zorblat was founded in 2031.");
    let citation = &message["annotations"][0]["url_citation"];
    assert_eq!(
        citation["url"],
        "https://vertexaisearch.example/grounding/1"
    );
    assert_eq!(
        (
            citation["start_index"].as_u64(),
            citation["end_index"].as_u64()
        ),
        (Some(0), Some(28))
    );
    assert_eq!(fake.last_body()["tools"], json!([{"googleSearch": {}}]));

    let (status, _, text) = common::post_raw(&base, "/v1/responses",
        &json!({"model": "g-search", "input": "When was Zorblat founded?", "tools": [{"type": "web_search"}]})).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    let kinds = common::types_of(&response["output"]);
    assert_eq!(kinds, ["message", "web_search_call"], "{response}");
    assert_eq!(
        response["output"][1]["action"]["query"],
        "zorblat founding year"
    );
    assert_eq!(
        response["output"][0]["content"][0]["annotations"][0]["end_index"],
        28
    );

    let (status, _, text) = common::post_raw(
        &base,
        "/v1/messages",
        &json!({"model": "g-search", "max_tokens": 100, "messages": question,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        message["content"][0]["citations"][0]["cited_text"],
        "Zorblat was founded in 2031."
    );
    assert_eq!(
        message["usage"]["server_tool_use"]["web_search_requests"],
        1
    );
    // Gemini cannot keep to domains: said before any call.
    let calls = fake.received.lock().unwrap().len();
    let (status, _, text) = common::post_raw(
        &base,
        "/v1/chat/completions",
        &json!({"model": "g-search", "messages": question,
                "web_search_options": {"filters": {"allowed_domains": ["zorblat.example"]}}}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(fake.received.lock().unwrap().len(), calls);
}
