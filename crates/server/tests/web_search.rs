//! Gateway-run web search end to end: Switchboard in front of a fake SearXNG (its JSON results
//! API on loopback, plus a failing and a slow variant) and a fake OpenAI-compatible upstream
//! that cannot search. Each test checks what the client got (annotations whose urls are the
//! search's results and whose indexes cut the cited text, spec-valid bodies and chunks) and
//! what the fakes received (the query, the numbered sources in the model's context).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{assert_error, client, sse_data};
use serde_json::{json, Value};
use switchboard_gateway::search::{Brave, PageReader, SearchBackend, Searxng, WebSearch};
use switchboard_gateway::{ApiKeys, Catalog, CatalogEntry, Gateway, Pricing, Route};
use switchboard_model::Capability;
use switchboard_providers::openai::{OpenAiConfig, OpenAiProvider, Timeouts};
use switchboard_server::ServerConfig;

const QUESTION: &str = "When was the town of Zorblat founded, and who is its mayor?";
const ANSWER_PIECES: [&str; 4] = [
    "Zorblat was founded in 2031 [",
    "1]. Its mayor",
    " is Mira Quell [2].",
    " Nothing else is known [7].",
];

/// Query parameters of one request to a fake backend.
type Params = HashMap<String, String>;
/// One request to the fake Brave API: its parameters and `X-Subscription-Token`.
type BraveCall = (Params, Option<String>);

/// What the fakes received: the search queries and the upstream's request bodies.
#[derive(Clone, Default)]
struct Received {
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
    upstream: Arc<Mutex<Vec<Value>>>,
    /// What the fake Brave API got: its query parameters and `X-Subscription-Token`.
    brave: Arc<Mutex<Vec<BraveCall>>>,
}

async fn search(
    State(received): State<Received>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    received.queries.lock().unwrap().push(query.clone());
    Json(json!({
        "query": query.get("q"),
        "number_of_results": 3,
        "results": [
            {"url": "https://zorblat.example/history", "title": "History of Zorblat",
             "content": "The town of Zorblat was founded in 2031.", "engine": "fake", "score": 1.0},
            {"url": "https://zorblat.example/council", "title": "Zorblat town council",
             "content": "Mira Quell has been mayor of Zorblat since 2040.", "engine": "fake"},
            {"url": "mailto:someone@zorblat.example", "title": "Not a page", "content": "x"}
        ],
        "answers": [], "suggestions": [], "unresponsive_engines": []
    }))
    .into_response()
}

/// Brave's Web Search API shape (`web.results[]` with `description`, highlighted with tags).
async fn brave_search(
    State(received): State<Received>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = headers
        .get("x-subscription-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    received.brave.lock().unwrap().push((query.clone(), token));
    Json(json!({
        "type": "search",
        "query": {"original": query.get("q")},
        "web": {"type": "search", "results": [
            {"type": "search_result", "title": "History of <strong>Zorblat</strong>",
             "url": "https://zorblat.example/history",
             "description": "The town of <strong>Zorblat</strong> was founded in 2031."},
            {"type": "search_result", "title": "Zorblat town council",
             "url": "https://zorblat.example/council",
             "description": "Mira Quell has been mayor of Zorblat since 2040."}
        ]}
    }))
    .into_response()
}

async fn broken_search() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "engine exploded").into_response()
}

async fn slow_search() -> Response {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Json(json!({"results": []})).into_response()
}

/// The model `searcher-model` chooses its own search: first a `web_search` call with its own
/// query, then, once the results are in the conversation, an answer citing them.
fn searcher_turn(body: &Value) -> Response {
    let answered = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool");
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
               "model": "searcher-model", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks = vec![];
    let client_tool = body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["function"]["name"] == "get_weather"));
    if client_tool && !answered {
        chunks.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Zorblat\"}"}}]}),
            Value::Null,
        ));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    } else if answered {
        for piece in [
            "Zorblat was founded in 2031 [1",
            "]. Its mayor is Mira Quell [2].",
        ] {
            chunks.push(chunk(json!({"content": piece}), Value::Null));
        }
        chunks.push(chunk(json!({}), json!("stop")));
    } else {
        chunks.push(chunk(
            json!({"content": "Let me look that up."}),
            Value::Null,
        ));
        chunks.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_s1", "type": "function",
                    "function": {"name": "web_search", "arguments": "{\"query\": \"zorblat history\"}"}}]}),
            Value::Null,
        ));
        chunks.push(chunk(json!({}), json!("tool_calls")));
    }
    let usage = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
        "model": "searcher-model", "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}});
    chunks.push(usage);
    let mut text = String::new();
    for chunk in chunks {
        text.push_str(&format!("data: {chunk}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], text).into_response()
}

async fn completions(State(received): State<Received>, Json(body): Json<Value>) -> Response {
    received.upstream.lock().unwrap().push(body.clone());
    if body["model"] == "searcher-model" {
        return searcher_turn(&body);
    }
    if body["stream"] == true {
        let mut text = String::new();
        for piece in ANSWER_PIECES {
            let chunk = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1,
                "model": "upstream", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            text.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1,
            "model": "upstream", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        text.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        return ([("content-type", "text/event-stream")], text).into_response();
    }
    Json(json!({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "upstream",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": ANSWER_PIECES.concat()}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    }))
    .into_response()
}

/// Starts both fakes on one loopback port: `/search` (good), `/broken/search`,
/// `/slow/search`, `/v1/chat/completions`.
async fn fakes() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/search", get(search))
        .route("/broken/search", get(broken_search))
        .route("/slow/search", get(slow_search))
        .route("/brave/res/v1/web/search", get(brave_search))
        .route("/v1/chat/completions", post(completions))
        .with_state(received.clone());
    (common::spawn_app(app).await, received)
}

/// Switchboard with the upstream model `plain` (no native search) and, when `search_path`
/// is given, gateway-run search on the fake SearXNG under that path.
fn switchboard(base: &str, search_path: Option<&str>) -> String {
    let backend = search_path.map(|path| {
        Arc::new(Searxng::new(&format!("{base}{path}"), Duration::from_secs(1)).unwrap())
            as Arc<dyn SearchBackend>
    });
    switchboard_with(base, backend)
}

fn switchboard_with(base: &str, backend: Option<Arc<dyn SearchBackend>>) -> String {
    let provider = OpenAiProvider::new(OpenAiConfig {
        name: "up".into(),
        base_url: format!("{base}/v1"),
        api_key: Some("sk-up".into()),
        headers: vec![],
        timeouts: Timeouts::default(),
    })
    .unwrap();
    let provider: Arc<dyn switchboard_gateway::Provider> = Arc::new(provider);
    let mut catalog = Catalog::default();
    // `plain` cannot call tools, so the gateway searches for it; `searcher` can, so it is
    // given the `web_search` function and chooses its own query.
    for (id, upstream, capabilities) in [
        ("plain", "upstream-model", vec![]),
        ("searcher", "searcher-model", vec![Capability::Tools]),
    ] {
        catalog.add(CatalogEntry {
            id: id.into(),
            owned_by: "up".into(),
            created: 1_700_000_000,
            context_window: 128_000,
            capabilities,
            pricing: Pricing::default(),
            routes: vec![Route::new("up", Arc::clone(&provider), upstream, 1)],
        });
    }
    let mut gateway = Gateway::new(catalog, ApiKeys::new::<_, &str>([]));
    if let Some(backend) = backend {
        gateway = gateway.with_web_search(WebSearch::new(backend, 5));
    }
    common::serve_gateway(gateway, ServerConfig::default())
}

fn request(stream: bool) -> Value {
    json!({"model": "plain", "stream": stream, "messages": common::user(QUESTION),
           "web_search_options": {"search_context_size": "low"}})
}

/// The annotations' (url, title, cited text) against the content they index.
fn cited(content: &str, annotations: &[Value]) -> Vec<(String, String, String)> {
    let chars: Vec<char> = content.chars().collect();
    annotations
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "url_citation");
            let c = &a["url_citation"];
            let (start, end) = (
                usize::try_from(c["start_index"].as_u64().unwrap()).unwrap(),
                usize::try_from(c["end_index"].as_u64().unwrap()).unwrap(),
            );
            (
                c["url"].as_str().unwrap().to_owned(),
                c["title"].as_str().unwrap().to_owned(),
                chars[start..end].iter().collect(),
            )
        })
        .collect()
}

fn expected_citations() -> Vec<(String, String, String)> {
    vec![
        (
            "https://zorblat.example/history".into(),
            "History of Zorblat".into(),
            "Zorblat was founded in 2031 [1]".into(),
        ),
        (
            "https://zorblat.example/council".into(),
            "Zorblat town council".into(),
            "Its mayor is Mira Quell [2]".into(),
        ),
    ]
}

/// The search got the question, and the upstream got the numbered sources just before it
/// (the snippet, cut to the `low` context size) and no search request of its own.
fn assert_fakes_received(received: &Received) {
    let queries = received.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(queries[0]["q"], QUESTION);
    assert_eq!(queries[0]["format"], "json");
    let bodies = received.upstream.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert!(body.get("web_search_options").is_none(), "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{body}");
    assert_eq!(messages[0]["role"], "system");
    let sources = messages[0]["content"].as_str().unwrap();
    assert!(sources.contains("[1] History of Zorblat\nURL: https://zorblat.example/history\nThe town of Zorblat was founded in 2031."), "{sources}");
    assert!(
        sources.contains("[2] Zorblat town council\nURL: https://zorblat.example/council"),
        "{sources}"
    );
    assert!(
        !sources.contains("mailto:"),
        "only web pages are sources: {sources}"
    );
    assert_eq!(messages[1], json!({"role": "user", "content": QUESTION}));
}

#[tokio::test]
async fn a_model_without_search_answers_with_citations_of_the_gateways_search() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let (status, body) = call(&server, &request(false)).await;
    assert_eq!(status, 200, "{body}");
    common::validate("CreateChatCompletionResponse", &body);
    let message = &body["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert_eq!(content, ANSWER_PIECES.concat());
    // `[7]` names no returned source, so it annotates nothing.
    assert_eq!(
        cited(content, message["annotations"].as_array().unwrap()),
        expected_citations()
    );
    assert_fakes_received(&received);
}

#[tokio::test]
async fn streamed_citations_arrive_in_delta_annotations() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let (status, text) = post_json(format!("{server}/v1/chat/completions"), &request(true)).await;
    assert_eq!(status, 200, "{text}");
    let mut content = String::new();
    let mut annotations = Vec::new();
    for data in sse_data(&text) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        let delta = &chunk["choices"][0]["delta"];
        if let Some(piece) = delta["content"].as_str() {
            content.push_str(piece);
        }
        if let Some(list) = delta["annotations"].as_array() {
            annotations.extend(list.iter().cloned());
        }
    }
    assert_eq!(content, ANSWER_PIECES.concat());
    assert_eq!(cited(&content, &annotations), expected_citations());
    assert_fakes_received(&received);
}

#[tokio::test]
async fn no_backend_failing_and_slow_backends_are_clear_errors() {
    let (base, received) = fakes().await;
    // No backend configured: a 400 that says how to configure one.
    let (status, body) = call(&switchboard(&base, None), &request(false)).await;
    assert_error(status, &body, 400, Some("web_search_options"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[web_search]"),
        "{body}"
    );
    // Without `web_search_options` nothing is searched and nothing annotated.
    let plain = json!({"model": "plain", "messages": common::user(QUESTION)});
    let (status, body) = call(&switchboard(&base, Some("")), &plain).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["annotations"].is_null()
            || body["choices"][0]["message"]["annotations"] == json!([]),
        "{body}"
    );
    assert!(received.queries.lock().unwrap().is_empty());
    // A backend that fails or does not answer in time: 502, and the model is never called.
    received.upstream.lock().unwrap().clear();
    for path in ["/broken", "/slow"] {
        let (status, body) = call(&switchboard(&base, Some(path)), &request(false)).await;
        assert_error(status, &body, 502, None);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("web search backend"),
            "{body}"
        );
    }
    assert!(received.upstream.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_hosted_brave_backend_is_asked_with_its_key() {
    let (base, received) = fakes().await;
    let brave = Brave::new(
        &format!("{base}/brave"),
        "brave-key".into(),
        Duration::from_secs(1),
    )
    .unwrap();
    let server = switchboard_with(&base, Some(Arc::new(brave)));
    let (status, body) = call(&server, &request(false)).await;
    assert_eq!(status, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert_eq!(
        cited(
            message["content"].as_str().unwrap(),
            message["annotations"].as_array().unwrap()
        ),
        expected_citations()
    );
    let brave = received.brave.lock().unwrap().clone();
    assert_eq!(brave.len(), 1);
    assert_eq!(brave[0].0["q"], QUESTION);
    assert_eq!(brave[0].0["count"], "5");
    assert_eq!(brave[0].1.as_deref(), Some("brave-key"));
    // The highlighting tags are gone from what the model reads.
    let sources = received.upstream.lock().unwrap()[0]["messages"][0]["content"].clone();
    assert!(sources.as_str().unwrap().contains("[1] History of Zorblat\nURL: https://zorblat.example/history\nThe town of Zorblat was founded in 2031."), "{sources}");
}

async fn call(server: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{server}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The answer's (url, title, cited text) from Responses-style flat annotations.
fn cited_flat(text: &str, annotations: &[Value]) -> Vec<(String, String, String)> {
    let nested: Vec<Value> = annotations
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "url_citation", "{a}");
            json!({"type": "url_citation", "url_citation": a})
        })
        .collect();
    cited(text, &nested)
}

async fn post_json(url: String, body: &Value) -> (u16, String) {
    let response = client()
        .post(url)
        .header("x-api-key", "unused")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn responses_show_the_search_as_a_web_search_call_and_cite_it() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let body = json!({"model": "plain", "input": QUESTION, "store": true,
                      "tools": [{"type": "web_search", "search_context_size": "low"}],
                      "include": ["web_search_call.action.sources"]});
    let (status, text) = post_json(format!("{server}/v1/responses"), &body).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    let output = response["output"].as_array().unwrap();
    assert_eq!(output.len(), 2, "{response}");
    let call = &output[0];
    assert_eq!(call["type"], "web_search_call");
    assert_eq!(call["status"], "completed");
    assert!(call["id"].as_str().unwrap().starts_with("ws_"), "{call}");
    assert_eq!(call["action"]["type"], "search");
    assert_eq!(call["action"]["query"], QUESTION);
    assert_eq!(
        call["action"]["sources"],
        json!([{"type": "url", "url": "https://zorblat.example/history"},
               {"type": "url", "url": "https://zorblat.example/council"}])
    );
    let part = &output[1]["content"][0];
    assert_eq!(part["type"], "output_text");
    assert_eq!(part["text"], ANSWER_PIECES.concat());
    assert_eq!(
        cited_flat(
            part["text"].as_str().unwrap(),
            part["annotations"].as_array().unwrap()
        ),
        expected_citations()
    );
    assert_eq!(response["tools"][0]["type"], "web_search");
    assert_fakes_received(&received);

    // Continued from the stored response, the earlier search is context, not a new input to the
    // model: a follow-up without the tool searches nothing and reaches the upstream.
    let follow_up = json!({"model": "plain", "input": "Thanks!",
                           "previous_response_id": response["id"]});
    let (status, text) = post_json(format!("{server}/v1/responses"), &follow_up).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(received.queries.lock().unwrap().len(), 1);
    let last = received.upstream.lock().unwrap().last().cloned().unwrap();
    let roles: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{last}");

    // Without `include`, the call shows no sources; streamed, its events come in order.
    let body = json!({"model": "plain", "input": QUESTION, "stream": true,
                      "tools": [{"type": "web_search"}]});
    let (status, text) = post_json(format!("{server}/v1/responses"), &body).await;
    assert_eq!(status, 200, "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            let event: Value = serde_json::from_str(data).unwrap();
            common::validate("ResponseStreamEvent", &event);
            event
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let search: Vec<&str> = kinds.iter().copied().skip(2).take(5).collect();
    assert_eq!(
        search,
        [
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
        ],
        "{kinds:?}"
    );
    assert!(
        events[2]["item"]["action"].get("sources").is_none(),
        "{}",
        events[2]
    );
    let added: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.annotation.added")
        .map(|e| &e["annotation"])
        .collect();
    assert_eq!(added.len(), 2, "{kinds:?}");
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "response.completed");
    assert!(completed["response"]["output"][0]["action"]
        .get("sources")
        .is_none());
}

#[tokio::test]
async fn messages_show_server_tool_blocks_citations_and_the_search_count() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let body = json!({"model": "plain", "max_tokens": 200,
                      "messages": [{"role": "user", "content": QUESTION}],
                      "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]});
    let (status, text) = post_json(format!("{server}/v1/messages"), &body).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    let content = message["content"].as_array().unwrap();
    assert_eq!(content.len(), 3, "{message}");
    assert_eq!(content[0]["type"], "server_tool_use");
    assert_eq!(content[0]["name"], "web_search");
    assert_eq!(content[0]["input"], json!({"query": QUESTION}));
    let id = content[0]["id"].as_str().unwrap();
    assert!(id.starts_with("srvtoolu_"), "{id}");
    assert_eq!(content[1]["type"], "web_search_tool_result");
    assert_eq!(content[1]["tool_use_id"], id);
    let results = content[1]["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["type"], "web_search_result");
    assert_eq!(results[0]["url"], "https://zorblat.example/history");
    assert_eq!(results[0]["title"], "History of Zorblat");
    assert!(results[0]["encrypted_content"].is_string());
    assert_eq!(content[2]["type"], "text");
    assert_eq!(content[2]["text"], ANSWER_PIECES.concat());
    let citations: Vec<(String, String)> = content[2]["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["type"], "web_search_result_location");
            (
                c["url"].as_str().unwrap().to_owned(),
                c["cited_text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        citations,
        expected_citations()
            .into_iter()
            .map(|(url, _, text)| (url, text))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        message["usage"]["server_tool_use"]["web_search_requests"],
        1
    );
    assert_fakes_received(&received);

    // The whole turn sent back as it came (Claude Code does this) decodes: the search blocks are
    // accepted and not replayed to the model.
    let follow_up = json!({"model": "plain", "max_tokens": 50, "messages": [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": "Thanks!"}]});
    let (status, text) = post_json(format!("{server}/v1/messages"), &follow_up).await;
    assert_eq!(status, 200, "{text}");
    let last = received.upstream.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["messages"].as_array().unwrap().len(), 3, "{last}");
    assert_eq!(last["messages"][1]["content"], ANSWER_PIECES.concat());

    // Streamed: the server tool's input arrives as JSON deltas, the result block whole.
    let mut body = body;
    body["stream"] = json!(true);
    let (status, text) = post_json(format!("{server}/v1/messages"), &body).await;
    assert_eq!(status, 200, "{text}");
    let events = common::named_events(&text);
    let starts: Vec<&str> = events
        .iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        ["server_tool_use", "web_search_tool_result", "text"]
    );
    let (_, delta) = events
        .iter()
        .rev()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["server_tool_use"]["web_search_requests"], 1);
}

#[tokio::test]
async fn the_official_sdks_read_searches_and_citations() {
    let (base, _received) = fakes().await;
    let server = switchboard(&base, Some(""));
    common::run_sdk_script_against("sdk_web_search.py", &format!("{server}/v1")).await;
}

/// SearXNG results for the embedded model's test: the answer is in the first only.
async fn local_search(Query(query): Query<HashMap<String, String>>) -> Response {
    assert_eq!(query.get("format").map(String::as_str), Some("json"));
    Json(json!({"results": [
        {"url": "https://zorblat.example/history", "title": "History of Zorblat",
         "content": "The town of Zorblat was founded in 2031 by Mira Quell, who is still its mayor."},
        {"url": "https://zorblat.example/food", "title": "Zorblat food",
         "content": "Zorblat is famous for its purple bread."}
    ]}))
    .into_response()
}

/// The embedded model (greedy) answers a question only the search results can answer, and
/// the answer's sentences that restate a result cite it, streamed and not, on every surface.
#[tokio::test]
async fn the_embedded_model_answers_from_the_search_and_cites_it() {
    let search = common::spawn_app(Router::new().route("/search", get(local_search))).await;
    let engine = switchboard_engine::Engine::load(
        &common::model_path(),
        common::MODEL,
        &switchboard_engine::EngineConfig::default(),
    )
    .unwrap();
    let mut catalog = Catalog::default();
    catalog.add(CatalogEntry::local(engine, 1_700_000_000));
    let backend = Searxng::new(&search, Duration::from_secs(5)).unwrap();
    let gateway = Gateway::new(catalog, ApiKeys::new::<_, &str>([]))
        .with_web_search(WebSearch::new(Arc::new(backend), 5));
    let server = common::serve_gateway(gateway, ServerConfig::default());
    let question = "When was Zorblat founded?";
    let urls = [
        "https://zorblat.example/history",
        "https://zorblat.example/food",
    ];

    let body = json!({"model": common::MODEL, "temperature": 0, "max_tokens": 60,
                      "messages": [{"role": "user", "content": question}],
                      "web_search_options": {}});
    let (status, text) = post_json(format!("{server}/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{text}");
    let completion: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &completion);
    let message = &completion["choices"][0]["message"];
    let content = message["content"].as_str().unwrap();
    assert!(
        content.contains("2031"),
        "the answer comes from the search: {content}"
    );
    let citations = cited(content, message["annotations"].as_array().unwrap());
    assert!(!citations.is_empty(), "{completion}");
    for (url, _, span) in &citations {
        assert!(urls.contains(&url.as_str()), "{url}");
        assert!(content.contains(span.as_str()) && !span.trim().is_empty());
    }
    assert!(
        citations
            .iter()
            .any(|(url, _, span)| url == urls[0] && span.contains("2031")),
        "{citations:?}"
    );

    // Streamed: the same text and the same citations.
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let (status, text) = post_json(format!("{server}/v1/chat/completions"), &stream_body).await;
    assert_eq!(status, 200, "{text}");
    let (mut streamed, mut annotations) = (String::new(), Vec::new());
    for data in sse_data(&text) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        let delta = &chunk["choices"][0]["delta"];
        streamed.push_str(delta["content"].as_str().unwrap_or_default());
        annotations.extend(delta["annotations"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(streamed, content);
    assert_eq!(cited(&streamed, &annotations), citations);

    // Responses and Messages: the same answer with the search shown and cited.
    let body = json!({"model": common::MODEL, "temperature": 0, "max_output_tokens": 60,
                      "input": question, "tools": [{"type": "web_search"}]});
    let (status, text) = post_json(format!("{server}/v1/responses"), &body).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    assert_eq!(response["output"][0]["type"], "web_search_call");
    let part = &response["output"][1]["content"][0];
    assert_eq!(part["text"], content);
    assert_eq!(
        cited_flat(content, part["annotations"].as_array().unwrap()),
        citations
    );

    let body = json!({"model": common::MODEL, "temperature": 0, "max_tokens": 60,
                      "messages": [{"role": "user", "content": question}],
                      "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    let (status, text) = post_json(format!("{server}/v1/messages"), &body).await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    let blocks = message["content"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "server_tool_use");
    assert_eq!(blocks[1]["type"], "web_search_tool_result");
    assert_eq!(blocks[2]["text"], content);
    let cited_texts: Vec<&str> = blocks[2]["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cited_text"].as_str().unwrap())
        .collect();
    assert_eq!(
        cited_texts,
        citations
            .iter()
            .map(|(_, _, span)| span.as_str())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn models_list_the_price_of_a_search() {
    let (base, _received) = fakes().await;
    let backend = Searxng::new(&base, Duration::from_secs(1)).unwrap();
    let mut catalog = Catalog::default();
    let provider = OpenAiProvider::new(OpenAiConfig {
        name: "up".into(),
        base_url: format!("{base}/v1"),
        api_key: None,
        headers: vec![],
        timeouts: Timeouts::default(),
    })
    .unwrap();
    let provider: Arc<dyn switchboard_gateway::Provider> = Arc::new(provider);
    for (id, capabilities, per_web_search) in [
        ("plain", vec![], None),
        ("native", vec![Capability::WebSearch], Some(0.025)),
    ] {
        catalog.add(CatalogEntry {
            id: id.into(),
            owned_by: "up".into(),
            created: 1_700_000_000,
            context_window: 8_000,
            capabilities,
            pricing: Pricing {
                per_web_search,
                ..Pricing::default()
            },
            routes: vec![Route::new("up", provider.clone(), id, 1)],
        });
    }
    let with_search = Gateway::new(catalog, ApiKeys::new::<_, &str>([]))
        .with_web_search(WebSearch::new(Arc::new(backend), 5).with_price(0.004));
    let server = common::serve_gateway(with_search, ServerConfig::default());
    let models: Value = client()
        .get(format!("{server}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let price = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["pricing"]["per_web_search"]
            .clone()
    };
    assert_eq!(price("plain"), json!(0.004));
    assert_eq!(price("native"), json!(0.025));
}

/// Pages behind a SearXNG fake whose results point at them (on loopback): one page holds the
/// answer deep in its HTML, one is a PDF, one never answers, one is a redirect to a private
/// address that is not allowed.
async fn pages_app() -> (String, Arc<Mutex<Vec<String>>>) {
    let fetched: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let search_base = base.clone();
    let log = fetched.clone();
    let app = Router::new()
        .route(
            "/search",
            get(move || {
                let base = search_base.clone();
                async move {
                    Json(json!({"results": [
                        {"url": format!("{base}/pages/history"), "title": "History of Zorblat",
                         "content": "An article about the town."},
                        {"url": format!("{base}/pages/report.pdf"), "title": "Report", "content": "A PDF."},
                        {"url": format!("{base}/pages/slow"), "title": "Slow page", "content": "Slow snippet."},
                        {"url": format!("{base}/pages/elsewhere"), "title": "Moved", "content": "Moved snippet."}
                    ]}))
                }
            }),
        )
        .route(
            "/pages/{name}",
            get(move |axum::extract::Path(name): axum::extract::Path<String>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(name.clone());
                    match name.as_str() {
                        "history" => (
                            [("content-type", "text/html; charset=utf-8")],
                            "<html><head><script>var tracking = 1;</script></head><body>\
                             <nav>Home | About</nav><p>Welcome to the archive.</p>\
                             <p>The town of <b>Zorblat</b> was founded in 2031 by Mira Quell.</p>\
                             <p>Its bread is purple.</p></body></html>",
                        )
                            .into_response(),
                        "report.pdf" => ([("content-type", "application/pdf")], "%PDF-1.4 ...").into_response(),
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            "late".into_response()
                        }
                        _ => (StatusCode::FOUND, [("location", "http://10.255.255.1/secret")]).into_response(),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, fetched)
}

#[tokio::test]
async fn result_pages_are_read_within_the_fetch_rules() {
    let (pages, fetched) = pages_app().await;
    let (base, received) = fakes().await;
    let reader = |allow: &str| PageReader {
        pages: 4,
        policy: switchboard_providers::fetch::FetchPolicy {
            allow: switchboard_providers::fetch::parse_allow(&[allow.to_owned()]).unwrap(),
            max_bytes: 100_000,
            timeout: Duration::from_secs(1),
            max_redirects: 2,
        },
    };
    let sources = |received: &Received| {
        received.upstream.lock().unwrap().last().unwrap()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let started = std::time::Instant::now();
    let backend: Arc<dyn SearchBackend> =
        Arc::new(Searxng::new(&pages, Duration::from_secs(2)).unwrap());
    let gateway = |reader: PageReader| {
        let provider = OpenAiProvider::new(OpenAiConfig {
            name: "up".into(),
            base_url: format!("{base}/v1"),
            api_key: None,
            headers: vec![],
            timeouts: Timeouts::default(),
        })
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.add(CatalogEntry {
            id: "plain".into(),
            owned_by: "up".into(),
            created: 1_700_000_000,
            context_window: 8_000,
            capabilities: vec![],
            pricing: Pricing::default(),
            routes: vec![Route::new("up", Arc::new(provider), "upstream-model", 1)],
        });
        common::serve_gateway(
            Gateway::new(catalog, ApiKeys::new::<_, &str>([]))
                .with_web_search(WebSearch::new(backend.clone(), 5).with_pages(Some(reader))),
            ServerConfig::default(),
        )
    };
    // Loopback allowed (as an operator would allow an intranet): the HTML page is read, its
    // passage about the question shown after the snippet; the PDF, the slow page and the
    // redirect to a private address keep their snippets.
    let (status, body) = call(&gateway(reader("127.0.0.1")), &request(false)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "pages are read at once, within 1 s"
    );
    let shown = sources(&received);
    assert!(
        shown.contains("[1] History of Zorblat\nURL: ")
            && shown.contains("An article about the town.\nFrom the page:\n")
            && shown.contains("The town of Zorblat was founded in 2031 by Mira Quell."),
        "{shown}"
    );
    assert!(!shown.contains("tracking"), "{shown}");
    assert!(
        shown.contains("[2] Report\nURL: ") && shown.contains("A PDF.\n\n[3]"),
        "{shown}"
    );
    assert!(shown.contains("Slow snippet.\n\n[4]"), "{shown}");
    assert!(shown.ends_with("Moved snippet."), "{shown}");
    let mut read: Vec<String> = fetched.lock().unwrap().clone();
    read.sort();
    assert_eq!(read, ["elsewhere", "history", "report.pdf", "slow"]);

    // Without the allow-list, loopback pages are never requested: snippets only.
    fetched.lock().unwrap().clear();
    let (status, body) = call(&gateway(reader("192.0.2.1")), &request(false)).await;
    assert_eq!(status, 200, "{body}");
    assert!(fetched.lock().unwrap().is_empty());
    assert!(!sources(&received).contains("From the page:"));
}

/// A model that can call tools chooses its own query through the `web_search` function the
/// gateway runs; the client sees one answer with the search, its citations and the usage of
/// both turns, on every surface.
#[tokio::test]
async fn a_model_with_tools_chooses_its_own_search() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let chat = json!({"model": "searcher", "messages": common::user(QUESTION), "web_search_options": {},
                      "stream": true, "stream_options": {"include_usage": true}});
    let (status, text) = post_json(format!("{server}/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{text}");
    let (mut content, mut annotations, mut usage, mut finish) =
        (String::new(), vec![], Value::Null, Value::Null);
    for data in sse_data(&text) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        assert!(
            choice["delta"]["tool_calls"].is_null(),
            "the search call stays inside: {chunk}"
        );
        content.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        annotations.extend(
            choice["delta"]["annotations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    assert_eq!(
        content,
        "Let me look that up.\n\nZorblat was founded in 2031 [1]. Its mayor is Mira Quell [2]."
    );
    assert_eq!(finish, "stop");
    assert_eq!(usage["prompt_tokens"], 80, "both turns count: {usage}");
    assert_eq!(usage["completion_tokens"], 20);
    assert_eq!(
        cited(&content, &annotations)
            .into_iter()
            .map(|(url, _, span)| (url, span))
            .collect::<Vec<_>>(),
        [
            (
                "https://zorblat.example/history".to_owned(),
                "Zorblat was founded in 2031 [1]".to_owned()
            ),
            (
                "https://zorblat.example/council".to_owned(),
                "Its mayor is Mira Quell [2]".to_owned()
            ),
        ]
    );
    // The search used the model's query; the model got the function, then the results.
    let queries = received.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0]["q"], "zorblat history");
    let bodies = received.upstream.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["tools"][0]["function"]["name"], "web_search");
    assert!(bodies[0].get("web_search_options").is_none());
    let messages = bodies[1]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "{}", bodies[1]);
    assert_eq!(messages[1]["content"], "Let me look that up.");
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "web_search"
    );
    assert_eq!(
        messages[2]["tool_call_id"],
        messages[1]["tool_calls"][0]["id"]
    );
    let results = messages[2]["content"].as_str().unwrap();
    assert!(
        results.starts_with("[1] History of Zorblat\nURL: https://zorblat.example/history"),
        "{results}"
    );
    assert!(results.contains("[2] Zorblat town council"), "{results}");

    // Responses: the search call item carries the model's query; Messages: the server tool.
    let (status, text) = post_json(
        format!("{server}/v1/responses"),
        &json!({"model": "searcher", "input": QUESTION, "tools": [{"type": "web_search"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    let kinds = common::types_of(&response["output"]);
    assert_eq!(
        kinds,
        ["message", "web_search_call", "message"],
        "{response}"
    );
    assert_eq!(response["output"][1]["action"]["query"], "zorblat history");
    // Each message's annotations index its own text.
    let answer = &response["output"][2]["content"][0];
    assert_eq!(
        cited_flat(
            answer["text"].as_str().unwrap(),
            answer["annotations"].as_array().unwrap()
        )
        .into_iter()
        .map(|(_, _, span)| span)
        .collect::<Vec<_>>(),
        [
            "Zorblat was founded in 2031 [1]",
            "Its mayor is Mira Quell [2]"
        ]
    );

    let (status, text) = post_json(
        format!("{server}/v1/messages"),
        &json!({"model": "searcher", "max_tokens": 100, "messages": [{"role": "user", "content": QUESTION}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let message: Value = serde_json::from_str(&text).unwrap();
    let kinds = common::types_of(&message["content"]);
    assert_eq!(
        kinds,
        ["text", "server_tool_use", "web_search_tool_result", "text"],
        "{message}"
    );
    assert_eq!(message["content"][1]["input"]["query"], "zorblat history");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["usage"]["server_tool_use"]["web_search_requests"],
        1
    );
}

/// The client's own tools still work beside the search function: their calls reach the client
/// as the model made them, and no search runs.
#[tokio::test]
async fn the_clients_own_tool_calls_pass_through_the_search_loop() {
    let (base, received) = fakes().await;
    let server = switchboard(&base, Some(""));
    let body = json!({"model": "searcher", "messages": common::user("Weather in Zorblat?"),
        "web_search_options": {},
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (status, text) = post_json(format!("{server}/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{text}");
    let completion: Value = serde_json::from_str(&text).unwrap();
    common::validate("CreateChatCompletionResponse", &completion);
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\": \"Zorblat\"}");
    assert!(received.queries.lock().unwrap().is_empty());
    let sent = received.upstream.lock().unwrap()[0].clone();
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "web_search"]);
}
