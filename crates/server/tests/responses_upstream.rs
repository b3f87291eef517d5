//! OpenAI's Responses API as an upstream wire (`api = "responses"`): Switchboard in front of a
//! fake that streams Responses events — a native web search with its citations, encrypted
//! reasoning, a tool call. Each test checks what the client got and what the fake received,
//! the encrypted reasoning coming back to the fake on the next turn included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{client, sse_data};
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Route};
use switchboard_model::Capability;
use switchboard_providers::http::{Timeouts, UpstreamConfig};
use switchboard_providers::openai_responses::OpenAiResponsesProvider;
use switchboard_server::ServerConfig;

#[derive(Clone, Default)]
struct Fake {
    received: Arc<Mutex<Vec<Value>>>,
}

fn sse(events: &[Value]) -> Response {
    let mut text = String::new();
    for event in events {
        text.push_str(&format!(
            "event: {}\ndata: {event}\n\n",
            event["type"].as_str().unwrap()
        ));
    }
    ([("content-type", "text/event-stream")], text).into_response()
}

async fn responses(State(fake): State<Fake>, Json(body): Json<Value>) -> Response {
    fake.received.lock().unwrap().push(body.clone());
    let searching = body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["type"] == "web_search"));
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_up", "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "reasoning", "id": "rs_up1", "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_up1", "output_index": 0,
               "summary_index": 0, "delta": "Looking it up."}),
        json!({"type": "response.output_item.done", "output_index": 0,
               "item": {"type": "reasoning", "id": "rs_up1", "summary": [{"type": "summary_text", "text": "Looking it up."}],
                        "encrypted_content": "gAAAAABfake-encrypted"}}),
    ];
    if searching {
        events.extend([
            json!({"type": "response.output_item.added", "output_index": 1,
                   "item": {"type": "web_search_call", "id": "ws_up1", "status": "in_progress"}}),
            json!({"type": "response.web_search_call.searching", "output_index": 1, "item_id": "ws_up1"}),
            json!({"type": "response.output_item.done", "output_index": 1,
                   "item": {"type": "web_search_call", "id": "ws_up1", "status": "completed",
                            "action": {"type": "search", "query": "zorblat founded",
                                       "sources": [{"type": "url", "url": "https://zorblat.example/history"}]}}}),
        ]);
    }
    events.extend([
        json!({"type": "response.output_item.added", "output_index": 2,
               "item": {"type": "message", "id": "msg_up1", "role": "assistant", "content": [], "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_up1", "output_index": 2, "content_index": 0,
               "delta": "Zorblat was founded in 2031."}),
    ]);
    if searching {
        events.push(
            json!({"type": "response.output_text.annotation.added", "item_id": "msg_up1",
            "output_index": 2, "content_index": 0, "annotation_index": 0,
            "annotation": {"type": "url_citation", "url": "https://zorblat.example/history",
                           "title": "History of Zorblat", "start_index": 0, "end_index": 28}}),
        );
    }
    events.push(json!({"type": "response.completed", "sequence_number": 9, "response": {
        "id": "resp_up", "status": "completed",
        "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 42}}}));
    sse(&events)
}

async fn switchboard() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1/responses", post(responses))
        .with_state(fake.clone());
    let upstream = common::spawn_app(app).await;
    let provider = OpenAiResponsesProvider::new(UpstreamConfig {
        name: "oai".into(),
        base_url: format!("{upstream}/v1"),
        api_key: Some("sk-up".into()),
        headers: Vec::new(),
        timeouts: Timeouts::default(),
    })
    .unwrap();
    let mut catalog = Catalog::default();
    catalog.add(CatalogEntry {
        id: "gpt-search".into(),
        owned_by: "oai".into(),
        created: 1_700_000_000,
        context_window: 128_000,
        capabilities: vec![
            Capability::Tools,
            Capability::Reasoning,
            Capability::WebSearch,
        ],
        pricing: Pricing::default(),
        routes: vec![Route::new("oai", Arc::new(provider), "gpt-up", 0)],
    });
    (
        common::serve_catalog(catalog, &[], ServerConfig::default()),
        fake,
    )
}

async fn send(url: String, body: &Value) -> (u16, String) {
    let response = client().post(url).json(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn openai_searches_natively_through_the_responses_wire() {
    let (server, fake) = switchboard().await;
    let chat = json!({"model": "gpt-search", "stream": true, "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "When was Zorblat founded?"}],
        "web_search_options": {"search_context_size": "high"}});
    let (status, text) = send(format!("{server}/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{text}");
    let (mut content, mut annotations, mut reasoning) = (String::new(), vec![], String::new());
    for data in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).unwrap();
        common::validate("CreateChatCompletionStreamResponse", &chunk);
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        content.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        reasoning.push_str(
            choice["delta"]["reasoning_content"]
                .as_str()
                .unwrap_or_default(),
        );
        annotations.extend(
            choice["delta"]["annotations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    assert_eq!(content, "Zorblat was founded in 2031.");
    assert_eq!(reasoning, "Looking it up.");
    assert_eq!(annotations.len(), 1);
    assert_eq!(
        annotations[0]["url_citation"]["url"],
        "https://zorblat.example/history"
    );
    assert_eq!(annotations[0]["url_citation"]["end_index"], 28);
    let sent = fake.received.lock().unwrap()[0].clone();
    assert_eq!(sent["model"], "gpt-up");
    assert_eq!(
        sent["tools"],
        json!([{"type": "web_search", "search_context_size": "high"}])
    );
    assert_eq!(
        sent["reasoning"],
        json!({"effort": "low", "summary": "auto"})
    );
    assert_eq!(sent["store"], false);
    assert_eq!(
        sent["include"],
        json!([
            "reasoning.encrypted_content",
            "web_search_call.action.sources"
        ])
    );
    assert_eq!(
        sent["input"],
        json!([{"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "When was Zorblat founded?"}]}])
    );

    // On the Responses surface, stored: the search shows, and the next turn sends the
    // upstream's encrypted reasoning back under its own id.
    let first = json!({"model": "gpt-search", "input": "When was Zorblat founded?", "store": true,
        "tools": [{"type": "web_search"}], "reasoning": {"effort": "low"}});
    let (status, text) = send(format!("{server}/v1/responses"), &first).await;
    assert_eq!(status, 200, "{text}");
    let response: Value = serde_json::from_str(&text).unwrap();
    common::validate("Response", &response);
    let kinds = common::types_of(&response["output"]);
    assert_eq!(
        kinds,
        ["reasoning", "web_search_call", "message"],
        "{response}"
    );
    assert_eq!(response["output"][1]["action"]["query"], "zorblat founded");
    assert_eq!(
        response["output"][2]["content"][0]["annotations"][0]["end_index"],
        28
    );
    assert_eq!(
        response["usage"]["output_tokens_details"]["reasoning_tokens"],
        5
    );
    let next = json!({"model": "gpt-search", "input": "And its mayor?", "previous_response_id": response["id"],
        "reasoning": {"effort": "low"}});
    let (status, text) = send(format!("{server}/v1/responses"), &next).await;
    assert_eq!(status, 200, "{text}");
    let sent = fake.received.lock().unwrap().last().cloned().unwrap();
    let input = sent["input"].as_array().unwrap();
    let kinds = common::types_of(&sent["input"]);
    assert_eq!(
        kinds,
        ["message", "reasoning", "message", "message"],
        "{sent}"
    );
    assert_eq!(input[1]["id"], "rs_up1");
    assert_eq!(input[1]["encrypted_content"], "gAAAAABfake-encrypted");
    assert_eq!(
        input[2]["content"][0],
        json!({"type": "output_text", "text": "Zorblat was founded in 2031.", "annotations": []})
    );
    assert!(
        sent.get("tools").is_none(),
        "no search asked this turn: {sent}"
    );

    // What this wire has no field for is refused before any call.
    let calls = fake.received.lock().unwrap().len();
    let (status, text) = send(
        format!("{server}/v1/chat/completions"),
        &json!({"model": "gpt-search", "messages": [{"role": "user", "content": "hi"}], "stop": ["END"]}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("\"param\":\"stop\""), "{text}");
    assert_eq!(fake.received.lock().unwrap().len(), calls);
}
