//! Several nodes sharing one Redis for their rate limits: a real `redis-server` on loopback
//! with a throwaway directory (scripts/test.sh installs Debian's package when it is missing),
//! two Switchboard nodes, and the server-wide limit of N requests a minute holding across both:
//! 3N requests spread over them get exactly N answers; without Redis a request gets a retryable
//! 503, never an unchecked answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard_gateway::{ApiKeys, Catalog, Gateway, KeyLimits, Pricing};
use switchboard_server::ServerConfig;

fn node(redis_url: &str, per_minute: u32) -> String {
    let mut catalog = Catalog::default();
    catalog.add(common::fake_entry(
        "m",
        common::answer_ok(None),
        Pricing::default(),
    ));
    let config = ServerConfig {
        redis_url: Some(redis_url.to_owned()),
        global_limits: KeyLimits {
            requests_per_minute: Some(per_minute),
            ..KeyLimits::default()
        },
        ..ServerConfig::default()
    };
    common::serve_gateway(Gateway::new(catalog, ApiKeys::new(["sk-shared"])), config)
}

#[tokio::test]
async fn the_server_wide_limit_holds_across_nodes_sharing_redis() {
    let Some(redis) = switchboard_testkit::servers::Redis::start() else {
        return;
    };
    const N: usize = 5;
    let nodes = [node(&redis.url, 5), node(&redis.url, 5)];
    // The window is the UTC minute: start well inside one.
    let into_minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    let mut answered = 0;
    let mut refused = 0;
    for i in 0..3 * N {
        let response = common::client()
            .post(format!("{}/v1/chat/completions", nodes[i % 2]))
            .bearer_auth("sk-shared")
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => answered += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((answered, refused), (N, 2 * N));

    // Without Redis the limits cannot be checked: a retryable 503, never an unlimited answer.
    drop(redis);
    let response = common::client()
        .post(format!("{}/v1/chat/completions", nodes[0]))
        .bearer_auth("sk-shared")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}
