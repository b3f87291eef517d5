//! Every documented error case over HTTP: status, OpenAI error body (validated against the
//! spec) and the `param` it names. None of these may panic the server or return a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, shared, user, MODEL};
use serde_json::{json, Value};
use switchboard_engine::EngineConfig;
use switchboard_server::ServerConfig;

async fn raw(server: &common::TestServer, body: &str) -> (u16, Value) {
    let response = common::client()
        .post(server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_and_invalid_requests_name_the_param() {
    let server = shared();
    let (status, body) = raw(server, "{not json").await;
    assert_error(status, &body, 400, None);

    let cases: Vec<(Value, &str)> = vec![
        (json!({"messages": user("hi")}), "model"),
        (json!({"model": MODEL}), "messages"),
        (json!({"model": MODEL, "messages": []}), "messages"),
        (
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "temperature": 3}),
            "temperature",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "top_p": 1.5}),
            "top_p",
        ),
        (json!({"model": MODEL, "messages": user("hi"), "n": 0}), "n"),
        (
            json!({"model": MODEL, "messages": user("hi"), "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "presence_penalty": -3}),
            "presence_penalty",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "frequency_penalty": 2.5}),
            "frequency_penalty",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "top_logprobs": 5}),
            "top_logprobs",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "logit_bias": {"abc": 1}}),
            "logit_bias",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "logit_bias": {"5": 101}}),
            "logit_bias",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "logit_bias": {"99999999": 1}}),
            "logit_bias",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "bogus_field": 1}),
            "bogus_field",
        ),
    ];
    for (request, param) in cases {
        let (status, body) = server.chat(&request).await;
        assert_error(status, &body, 400, Some(param));
    }
}

#[tokio::test]
async fn unknown_model_is_404() {
    let (status, body) = shared()
        .chat(&json!({"model": "gpt-17", "messages": user("hi")}))
        .await;
    assert_error(status, &body, 404, None);
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn context_length_exceeded() {
    let (status, body) = shared()
        .chat(&json!({"model": MODEL, "messages": user("hi"), "max_tokens": 9000}))
        .await;
    assert_error(status, &body, 400, Some("messages"));
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let huge = "word ".repeat(9000);
    let (status, body) = shared()
        .chat(&json!({"model": MODEL, "messages": user(&huge)}))
        .await;
    assert_error(status, &body, 400, Some("messages"));
    assert_eq!(body["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn features_of_later_issues_are_refused_not_ignored() {
    let server = shared();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"model": MODEL, "messages": user("hi"), "web_search_options": {}}),
            "web_search_options",
        ),
        (
            json!({"model": MODEL, "messages": user("hi"), "reasoning_effort": "high"}),
            "reasoning_effort",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            "messages",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}),
            "messages",
        ),
    ];
    for (request, param) in cases {
        let (status, body) = server.chat(&request).await;
        assert_error(status, &body, 400, None);
        let named = body["error"]["param"].as_str().unwrap_or_default();
        assert!(
            named.starts_with(param),
            "param {named:?} should name {param}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not support"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let server = common::start(
        EngineConfig::default(),
        &["sk-test-1", "sk-test-2"],
        ServerConfig::default(),
    );
    let client = common::client();
    let url = server.url("/v1/models");
    let response = client.get(&url).send().await.unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 401, None);
    let response = client
        .get(&url)
        .bearer_auth("sk-wrong")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_error(status, &body, 401, None);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(
        client
            .get(&url)
            .bearer_auth("sk-test-2")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(&url)
            .header("x-api-key", "sk-test-1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let response = client
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Health stays open for load balancers.
    assert_eq!(
        client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = common::start(
        EngineConfig::default(),
        &[],
        ServerConfig {
            body_limit: 1024,
            ..ServerConfig::default()
        },
    );
    let big = "x".repeat(4096);
    let (status, body) = server
        .chat(&json!({"model": MODEL, "messages": user(&big)}))
        .await;
    assert_error(status, &body, 413, None);
    let (status, body) = server
        .post("/v1/responses", &json!({"model": MODEL, "input": big}))
        .await;
    assert_error(status, &body, 413, None);
}

#[tokio::test]
async fn full_queue_is_503_with_retry_after() {
    let config = EngineConfig {
        queue_capacity: 1,
        max_sequences: 1,
        ..EngineConfig::default()
    };
    let server = std::sync::Arc::new(common::start(config, &[], ServerConfig::default()));
    let chat = json!({"model": MODEL, "messages": user("Write a long story."), "max_tokens": 60});
    let responses =
        json!({"model": MODEL, "input": "Write a long story.", "max_output_tokens": 60});
    let mut tasks = Vec::new();
    for attempt in 0..6 {
        // Both surfaces share the queue and answer a full one the same way.
        let (path, request) = if attempt % 2 == 0 {
            ("/v1/chat/completions", chat.clone())
        } else {
            ("/v1/responses", responses.clone())
        };
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let response = common::client()
                .post(server.url(path))
                .json(&request)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, response.json::<Value>().await.unwrap())
        }));
    }
    let mut rejected = 0;
    let mut served = 0;
    for task in tasks {
        let (status, retry, body) = task.await.unwrap();
        if status == 200 {
            validate_either(&body);
        }
        match status {
            200 => served += 1,
            503 => {
                rejected += 1;
                assert!(retry.is_some(), "503 must carry Retry-After");
                assert_error(status, &body, 503, None);
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        served >= 1 && rejected >= 1,
        "served {served}, rejected {rejected}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openai_shaped() {
    let server = shared();
    let response = common::client()
        .get(server.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(status, &response.json().await.unwrap(), 404, None);
    // A known path with the wrong method gets the same OpenAI-shaped 404, never an empty 405.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/chat/completions"),
        (reqwest::Method::PUT, "/v1/responses/resp_x"),
        (reqwest::Method::DELETE, "/health"),
    ] {
        let response = common::client()
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_error(status, &body, 404, None);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{method} {path}")), "{message}");
    }
}

fn validate_either(body: &Value) {
    if body["object"] == "response" {
        common::validate("Response", body);
    } else {
        common::validate("CreateChatCompletionResponse", body);
    }
}
