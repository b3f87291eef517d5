//! Load, behind a flag (`SWITCHBOARD_LOAD_TEST=1 cargo test -p switchboard-server --test load`):
//! 1,000 concurrent short requests from 10 managed keys against a fake provider, on one node
//! (SQLite) and spread over two nodes sharing Postgres and Redis. Every request is answered,
//! and the usage rows — one per request, none lost or duplicated — sum to exactly what was
//! served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};
use switchboard_gateway::{ApiKeys, Catalog, Gateway, Pricing};
use switchboard_model::Usage;
use switchboard_server::ServerConfig;

const REQUESTS: usize = 1_000;
const KEYS: usize = 10;

fn load_test_wanted() -> bool {
    if std::env::var("SWITCHBOARD_LOAD_TEST").is_err() {
        eprintln!("skipping: set SWITCHBOARD_LOAD_TEST=1 to run the load test");
        return false;
    }
    true
}

const ADMIN: &str = "sk-admin-load";

/// A node serving the priced fake model `fast`, on `store` (private when `None`).
fn node(store: Option<String>, redis: Option<String>) -> String {
    let script = common::answer_ok(Some(Usage {
        prompt_tokens: 7,
        completion_tokens: 3,
        ..Usage::default()
    }));
    let mut catalog = Catalog::default();
    catalog.add(common::fake_entry(
        "fast",
        script,
        Pricing {
            input_per_million: 1.0,
            cached_input_per_million: None,
            output_per_million: 2.0,
            per_web_search: None,
        },
    ));
    let config = ServerConfig {
        redis_url: redis,
        ..ServerConfig::default()
    };
    common::serve_gateway_on(
        Gateway::new(catalog, ApiKeys::new::<_, &str>([]).with_admin_key(ADMIN)),
        config,
        store,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_leave_a_thousand_usage_rows() {
    if !load_test_wanted() {
        return;
    }
    load(&[node(None, None)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_and_redis_leave_a_thousand_usage_rows() {
    if !load_test_wanted() {
        return;
    }
    let Some(postgres) = switchboard_testkit::servers::Postgres::start() else {
        return;
    };
    let Some(redis) = switchboard_testkit::servers::Redis::start() else {
        return;
    };
    let nodes = [
        node(Some(postgres.url.clone()), Some(redis.url.clone())),
        node(Some(postgres.url.clone()), Some(redis.url.clone())),
    ];
    load(&nodes).await;
}

/// 1,000 requests from 10 keys (made on the first node), spread over `nodes`.
async fn load(nodes: &[String]) {
    let client = common::client();
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let created: Value = client
            .post(format!("{}/v1/account/keys", nodes[0]))
            .bearer_auth(ADMIN)
            // Limits and a credit no request reaches, so every admission runs them.
            .json(&json!({"name": format!("load-{i}"), "credit_limit": 100.0,
                          "rate_limit": {"requests_per_minute": 10_000, "max_concurrent": 1_000}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            let key = keys[i % KEYS].clone();
            let url = format!("{}/v1/chat/completions", nodes[i % nodes.len()]);
            tokio::spawn(async move {
                let body = json!({"model": "fast", "stream": i % 2 == 0,
                                  "messages": [{"role": "user", "content": "hi"}]});
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let _ = response.bytes().await.unwrap();
                status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    eprintln!(
        "{REQUESTS} requests over {} node(s) in {elapsed:?}",
        nodes.len()
    );
    // Rows are written within the batch window.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let activity: Value = client
        .get(format!(
            "{}/v1/account/activity?days=1",
            nodes[nodes.len() - 1]
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total = &activity["total_stats"];
    assert_eq!(total["total_requests"], REQUESTS, "{activity}");
    assert_eq!(total["total_input_tokens"], 7 * REQUESTS);
    assert_eq!(total["total_output_tokens"], 3 * REQUESTS);
    // 7 × $1/M + 3 × $2/M = 13 micro-USD a request.
    assert_eq!(
        total["total_cost"],
        format!("{:.6}", 13.0 * REQUESTS as f64 / 1e6)
    );
    let per_key = activity["api_key_usage"].as_array().unwrap();
    assert_eq!(per_key.len(), KEYS);
    assert!(
        per_key
            .iter()
            .all(|k| k["request_count"] == REQUESTS / KEYS),
        "{activity}"
    );
}
