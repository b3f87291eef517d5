//! The Anthropic Messages surface on the embedded model: Anthropic's Python SDK end to end,
//! and the wire itself (event names and order, error bodies and statuses on these paths only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};
use switchboard_engine::EngineConfig;
use switchboard_server::ServerConfig;

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": common::MODEL, "max_tokens": 12, "temperature": 0,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn anthropic_sdk_on_the_local_model() {
    let server = common::start(
        EngineConfig::default(),
        &["sk-test"],
        ServerConfig::default(),
    );
    common::run_sdk_script_against("sdk_messages.py", &format!("{}/v1", server.base)).await;
}

#[tokio::test]
async fn the_stream_is_named_events_in_order() {
    let server = common::shared();
    let (status, headers, text) =
        common::post_raw(&server.base, "/v1/messages", &ask(json!({"stream": true}))).await;
    assert_eq!(status, 200, "{text}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut names = Vec::new();
    for (name, data) in common::named_events(&text) {
        assert_eq!(data["type"], name, "{data}");
        names.push(name);
    }
    assert_eq!(names[..2], ["message_start", "ping"]);
    assert_eq!(names[2], "content_block_start");
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(names.iter().filter(|n| *n == "message_stop").count(), 1);
}

#[tokio::test]
async fn count_tokens_is_exact_on_the_local_model() {
    let server = common::shared();
    let (status, _, text) = common::post_raw(&server.base, "/v1/messages", &ask(json!({}))).await;
    assert_eq!(status, 200, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let mut count = ask(json!({}));
    for generation_only in ["max_tokens", "temperature"] {
        count.as_object_mut().unwrap().remove(generation_only);
    }
    let (status, headers, text) =
        common::post_raw(&server.base, "/v1/messages/count_tokens", &count).await;
    assert_eq!(status, 200, "{text}");
    let counted: Value = serde_json::from_str(&text).unwrap();
    let usage = &created["usage"];
    let prompt = usage["input_tokens"].as_u64().unwrap()
        + usage["cache_read_input_tokens"].as_u64().unwrap()
        + usage["cache_creation_input_tokens"].as_u64().unwrap();
    assert_eq!(counted["input_tokens"], prompt);
    assert_eq!(headers["x-switchboard-token-count"], "exact");
}

#[tokio::test]
async fn errors_on_these_paths_speak_anthropic_and_elsewhere_openai() {
    let server = common::shared();
    let mut no_max = ask(json!({}));
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let (status, headers, text) = common::post_raw(&server.base, "/v1/messages", &no_max).await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"],
        json!({"type": "invalid_request_error", "message": "max_tokens: Field required"})
    );
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(headers["request-id"], headers["x-request-id"]);

    let (status, _, text) =
        common::post_raw(&server.base, "/v1/messages", &ask(json!({"model": "nope"}))).await;
    assert_eq!(status, 404, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");

    let (status, _, text) =
        common::post_raw(&server.base, "/v1/messages/batches", &ask(json!({}))).await;
    assert_eq!(status, 404, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");

    // A capability the model lacks is a 400 in this dialect, naming the field.
    let image = ask(json!({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]}]}));
    let (status, _, text) = common::post_raw(&server.base, "/v1/messages", &image).await;
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );

    let (status, _, text) = common::post_raw(
        &server.base,
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
}

#[tokio::test]
async fn keys_are_read_from_x_api_key_with_anthropic_errors() {
    let server = common::start(
        EngineConfig::default(),
        &["sk-test"],
        ServerConfig::default(),
    );
    let client = common::client();
    let url = format!("{}/v1/messages", server.base);
    let response = client
        .post(&url)
        .json(&ask(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let response = client
        .post(&url)
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&ask(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
