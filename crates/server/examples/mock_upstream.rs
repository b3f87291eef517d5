//! A fast OpenAI-compatible upstream for the gateway benchmark (`bench/gateway.py`): answers
//! every `POST /v1/chat/completions` at once, as one JSON body or as an SSE stream of 20
//! content chunks, a finish chunk, a usage chunk and `[DONE]`, whichever was asked.
//!
//! `cargo run --release -p switchboard-server --example mock_upstream -- 127.0.0.1:9100`

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

const CHUNKS: usize = 20;

fn completion() -> String {
    serde_json::json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "word ".repeat(CHUNKS)}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}
    })
    .to_string()
}

fn stream() -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1,
            "model": "mock", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut text = String::new();
    text.push_str(&format!(
        "data: {}\n\n",
        chunk(
            serde_json::json!({"role": "assistant", "content": ""}),
            None
        )
    ));
    for _ in 0..CHUNKS {
        text.push_str(&format!(
            "data: {}\n\n",
            chunk(serde_json::json!({"content": "word "}), None)
        ));
    }
    text.push_str(&format!(
        "data: {}\n\n",
        chunk(serde_json::json!({}), Some("stop"))
    ));
    text.push_str(&format!(
        "data: {}\n\n",
        serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1,
            "model": "mock", "choices": [],
            "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}})
    ));
    text.push_str("data: [DONE]\n\n");
    text
}

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let completion: &'static str = Box::leak(completion().into_boxed_str());
    let stream: &'static str = Box::leak(stream().into_boxed_str());
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| async move {
            let streaming = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
                .unwrap_or(false);
            let response: Response = if streaming {
                ([("content-type", "text/event-stream")], stream).into_response()
            } else {
                ([("content-type", "application/json")], completion).into_response()
            };
            response
        }),
    );
    let Ok(listener) = tokio::net::TcpListener::bind(&address).await else {
        eprintln!("cannot bind {address}");
        std::process::exit(1);
    };
    eprintln!("mock upstream on {address}");
    if let Err(err) = axum::serve(listener, app).await {
        eprintln!("mock upstream stopped: {err}");
    }
}
