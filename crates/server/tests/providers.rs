//! The provider seam through the whole server, with scripted fake providers instead of a
//! model: a completed stream, a failure before the first event, and a failure mid-stream on
//! both surfaces, and what the provider received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_error, client, sse_data};
use serde_json::{json, Value};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Route};
use switchboard_model::{Capability, Error, ErrorKind, Event, FinishReason, Usage};
use switchboard_providers::fake::{FakeProvider, Step};
use switchboard_server::ServerConfig;

fn text(piece: &str) -> Step {
    Step::Emit(Event::TextDelta {
        choice: 0,
        text: piece.into(),
        logprobs: Vec::new(),
    })
}

fn entry(id: &str, provider: Arc<FakeProvider>) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        owned_by: "fake".into(),
        created: 1_700_000_000,
        context_window: 4096,
        capabilities: vec![Capability::Tools],
        pricing: Pricing::default(),
        routes: vec![Route::new("fake", provider, id, 1)],
    }
}

struct Fakes {
    base: String,
    complete: Arc<FakeProvider>,
}

fn serve() -> Fakes {
    let complete = Arc::new(FakeProvider::new(vec![
        text("Hello"),
        Step::Pause(Duration::from_millis(5)),
        text(", world"),
        Step::Emit(Event::Finished {
            choice: 0,
            reason: FinishReason::Stop,
            stop_sequence: None,
        }),
        Step::Emit(Event::Usage(Usage {
            prompt_tokens: 7,
            completion_tokens: 2,
            ..Usage::default()
        })),
        Step::Complete,
    ]));
    let broken = Arc::new(FakeProvider::new(vec![
        text("Hel"),
        Step::Fail(Error::internal("the upstream connection dropped")),
    ]));
    let busy = Arc::new(FakeProvider::refusing(Error::new(
        ErrorKind::Overloaded,
        "All routes are busy.",
    )));
    let mut catalog = Catalog::default();
    catalog.add(entry("fake-complete", Arc::clone(&complete)));
    catalog.add(entry("fake-broken", broken));
    catalog.add(entry("fake-busy", busy));
    Fakes {
        base: common::serve_catalog(catalog, &[], ServerConfig::default()),
        complete,
    }
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, String) {
    let (status, _, text) = common::post_raw(base, path, body).await;
    (status, text)
}

#[tokio::test]
async fn a_completed_stream_reaches_both_surfaces() {
    let fakes = serve();
    let chat = json!({"model": "fake-complete", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post(&fakes.base, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    common::validate("CreateChatCompletionResponse", &body);
    assert_eq!(body["choices"][0]["message"]["content"], "Hello, world");
    assert_eq!(body["usage"]["prompt_tokens"], 7);

    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (status, text) = post(&fakes.base, "/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));

    let responses = json!({"model": "fake-complete", "input": "hi"});
    let (status, body) = post(&fakes.base, "/v1/responses", &responses).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["content"][0]["text"], "Hello, world");

    // The provider received the canonical request, model id and conversation included.
    let received = fakes.complete.received();
    assert_eq!(received.len(), 3);
    assert!(received
        .iter()
        .all(|request| request.model == "fake-complete"));
    assert_eq!(received[2].items.len(), 1);
}

#[tokio::test]
async fn a_failure_mid_stream_is_reported_never_hidden() {
    let fakes = serve();
    let chat = json!({"model": "fake-broken", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = post(&fakes.base, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200);
    let frames = sse_data(&text);
    assert!(!frames.contains(&"[DONE]".to_owned()), "{frames:?}");
    let last: Value = serde_json::from_str(frames.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{last}");
    assert!(
        text.contains("Hel"),
        "what was generated before the failure was sent: {text}"
    );

    let (status, body) = post(
        &fakes.base,
        "/v1/chat/completions",
        &json!({"model": "fake-broken", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(status, &body, 500, None);

    let responses = json!({"model": "fake-broken", "input": "hi", "stream": true});
    let (status, text) = post(&fakes.base, "/v1/responses", &responses).await;
    assert_eq!(status, 200);
    assert!(text.contains("event: response.failed"), "{text}");
    assert!(!text.contains("event: response.completed"), "{text}");
}

#[tokio::test]
async fn a_refusal_before_the_first_event_is_an_http_status() {
    let fakes = serve();
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "fake-busy", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        ),
        (
            "/v1/responses",
            json!({"model": "fake-busy", "input": "hi"}),
        ),
    ] {
        let response = client()
            .post(format!("{}{path}", fakes.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_error(503, &body, 503, None);
    }
}
