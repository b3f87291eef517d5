//! Two real `switchboard` processes sharing one Postgres (keys, usage, stored responses) and one
//! Redis (rate limits, budgets), both from Debian's packages started on loopback with throwaway
//! data directories, in front of a fake OpenAI-compatible upstream: a key made on one node works
//! on the other, its limit of N requests a minute holds across both (3N requests → N answers),
//! its budget too, a stored response made on one is read on the other, a key disabled on one is
//! refused on the other within seconds, and a node killed mid-stream leaves its usage rows
//! behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Child;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use switchboard_testkit::servers::{Postgres, Redis};

const ADMIN: &str = "sk-admin-cluster-test";

fn chunk(delta: &Value, finish: Option<&str>) -> String {
    let chunk = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1,
        "model": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

/// An OpenAI-compatible upstream: `fast` answers at once (10 prompt and 2 output tokens),
/// `slow` sends a word every 100 ms for 20 seconds.
async fn completions(body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let usage = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1,
        "model": "up", "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    let slow = body["model"] == "slow";
    let parts = futures::stream::unfold(0u32, move |step| {
        let usage = usage.clone();
        async move {
            let text = match step {
                0 => chunk(&json!({"role": "assistant", "content": "ok"}), None),
                1..=200 if slow => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    chunk(&json!({"content": " word"}), None)
                }
                201 => return None,
                _ => {
                    let end = chunk(&json!({}), Some("stop"));
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(format!(
                            "{end}data: {usage}\n\ndata: [DONE]\n\n"
                        ))),
                        201,
                    ));
                }
            };
            Some((Ok(Bytes::from(text)), step + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(parts))
        .unwrap()
}

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(config: &std::path::Path) -> Node {
    let mut command = common::binary();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("SB_CLUSTER_UPSTREAM_KEY", "sk-upstream")
        .env("RUST_LOG", "info");
    let (child, address, _) = common::spawn_server(command, None);
    Node {
        child,
        base: format!("http://{address}"),
    }
}

async fn create_key(node: &Node, body: Value) -> (String, String) {
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/account/keys", node.base))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

async fn chat(node: &Node, key: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", node.base))
        .bearer_auth(key)
        .json(&json!({"model": model, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_keys_limits_budgets_responses_and_usage() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let Some(redis) = Redis::start() else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().route("/v1/chat/completions", post(completions));
        axum::serve(listener, app).await.unwrap();
    });
    let dir = std::env::temp_dir().join(format!("sb-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
admin_key = "{ADMIN}"
store = "{store}"

[engine]
enabled = false

[limits]
redis = "{redis}"

[[providers]]
name = "up"
kind = "openai"
base_url = "{upstream}"
api_key_env = "SB_CLUSTER_UPSTREAM_KEY"

[[models]]
id = "fast"
context_window = 8000
pricing = {{ input = 1000.0, output = 1000.0 }}
routes = [{{ provider = "up", model = "fast" }}]

[[models]]
id = "slow"
context_window = 8000
pricing = {{ input = 1000.0, output = 1000.0 }}
routes = [{{ provider = "up", model = "slow" }}]
"#,
            store = postgres.url,
            redis = redis.url,
        ),
    )
    .unwrap();
    let mut a = start_node(&config);
    let b = start_node(&config);

    // A key made on one node, limited to N requests a minute, used on both.
    const N: usize = 4;
    let (_, limited) = create_key(
        &a,
        json!({"name": "limited", "rate_limit": {"requests_per_minute": N}}),
    )
    .await;
    tokio::time::sleep(switchboard_testkit::wait_for_a_fresh_minute()).await;
    let mut statuses = Vec::new();
    for i in 0..3 * N {
        let node = if i % 2 == 0 { &a } else { &b };
        let response = chat(node, &limited, "fast").await;
        let status = response.status().as_u16();
        if status == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        response.bytes().await.unwrap();
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        N,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2 * N,
        "{statuses:?}"
    );

    // A stored response made on one node is read, and continued, on the other.
    let (plain_id, plain) = create_key(&b, json!({"name": "plain"})).await;
    let client = reqwest::Client::new();
    let made: Value = client
        .post(format!("{}/v1/responses", a.base))
        .bearer_auth(&plain)
        .json(&json!({"model": "fast", "input": "hi", "store": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap();
    let read = client
        .get(format!("{}/v1/responses/{id}", b.base))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["id"], id);
    assert_eq!(read["output"], made["output"]);
    let follow_up = client
        .post(format!("{}/v1/responses", b.base))
        .bearer_auth(&plain)
        .json(&json!({"model": "fast", "input": "and?", "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(follow_up.status(), 200);

    // A key disabled on one node stops working on the other at once: the change is announced
    // through Redis (without it, within the look-up cache's 2 s).
    let disabled = client
        .patch(format!("{}/v1/account/keys/{plain_id}", a.base))
        .bearer_auth(ADMIN)
        .json(&json!({"is_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    let since = std::time::Instant::now();
    loop {
        let status = chat(&b, &plain, "fast").await.status().as_u16();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "still served 1 s after being disabled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A budget spent on one node is spent on the other: $0.012 per request, $0.01 of credit.
    let (_, budgeted) = create_key(&a, json!({"name": "budgeted", "credit_limit": 0.01})).await;
    let first = chat(&a, &budgeted, "fast").await;
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = chat(&b, &budgeted, "fast").await;
    assert_eq!(second.status(), 402);
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_quota");

    // A request running on one node holds its estimated cost ($0.001 a token, `max_tokens` 20:
    // over the $0.01 credit) on both: a second one, elsewhere, is refused while it runs.
    let (_, burst) = create_key(&a, json!({"name": "burst", "credit_limit": 0.01})).await;
    let mut running = client
        .post(format!("{}/v1/chat/completions", a.base))
        .bearer_auth(&burst)
        .json(&json!({"model": "slow", "stream": true, "max_tokens": 20,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 200);
    assert!(running.chunk().await.unwrap().is_some());
    let elsewhere = chat(&b, &burst, "fast").await;
    assert_eq!(elsewhere.status(), 402);
    drop(running);

    // A node killed mid-stream: the rows of what it finished, and of what it was generating,
    // are in the store.
    let (watched_id, watched) = create_key(&a, json!({"name": "watched"})).await;
    for _ in 0..3 {
        chat(&a, &watched, "fast").await.bytes().await.unwrap();
    }
    let mut streaming = chat(&a, &watched, "slow").await;
    assert_eq!(streaming.status(), 200);
    assert!(streaming.chunk().await.unwrap().is_some());
    // Longer than the writer's window (200 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let store = switchboard_store::Store::connect(&postgres.url)
        .await
        .unwrap();
    let rows = store.usage_of(&watched_id).await.unwrap();
    assert!(rows
        .iter()
        .all(|row| row.attempts == 1 && row.provider == "up"));
    let mut statuses: Vec<String> = rows.into_iter().map(|row| row.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        ["completed", "completed", "completed", "in_progress"]
    );

    // The surviving node reports what both did.
    let activity: Value = client
        .get(format!("{}/v1/account/activity?days=1", b.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = |name: &str| {
        activity["api_key_usage"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["api_key_name"] == name)
            .map(|k| k["request_count"].as_u64().unwrap())
    };
    assert_eq!(requests("limited"), Some(3 * N as u64), "{activity}");
    assert!(requests("plain").unwrap() >= 2);
    assert_eq!(requests("watched"), Some(4));
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
