//! Several nodes sharing one Redis for their rate limits: a real `redis-server` on loopback
//! with a throwaway directory (scripts/test.sh installs Debian's package when it is missing),
//! two Switchboard nodes, and the server-wide limit of N requests a minute holding across both:
//! 3N requests spread over them get exactly N answers; without Redis a request gets a retryable
//! 503, never an unchecked answer. And usage rows wait out a Postgres outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

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
    tokio::time::sleep(switchboard_testkit::wait_for_a_fresh_minute()).await;
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

/// Postgres goes away for a while: requests are still answered (a configured key needs no
/// store, a managed key seen lately works as last seen, an unknown one gets a retryable 503),
/// their usage rows wait in the writer, and all of them are written once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_wait_out_a_postgres_outage() {
    let Some(mut postgres) = switchboard_testkit::servers::Postgres::start() else {
        return;
    };
    let mut catalog = Catalog::default();
    catalog.add(common::fake_entry(
        "m",
        common::answer_ok(None),
        Pricing::default(),
    ));
    let admin = "sk-admin-outage";
    let base = common::serve_gateway_on(
        Gateway::new(catalog, ApiKeys::new(["sk-outage"]).with_admin_key(admin)),
        ServerConfig::default(),
        Some(postgres.url.clone()),
    );
    let created: serde_json::Value = common::client()
        .post(format!("{base}/v1/account/keys"))
        .bearer_auth(admin)
        .json(&json!({"name": "managed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let managed = created["key"].as_str().unwrap().to_owned();
    let ask = |key: String| {
        let url = format!("{base}/v1/chat/completions");
        async move {
            common::client()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(ask("sk-outage".into()).await, 200);
    assert_eq!(ask(managed.clone()).await, 200);
    postgres.stop();
    for _ in 0..3 {
        assert_eq!(ask("sk-outage".into()).await, 200);
    }
    // Past the look-up cache: the managed key works as last seen; an unseen one cannot be
    // checked.
    tokio::time::sleep(switchboard_server::accounts::CACHE_TTL).await;
    assert_eq!(ask(managed).await, 200);
    assert_eq!(ask(format!("sk-sb-{}", "x".repeat(40))).await, 503);
    postgres.resume();
    let store = switchboard_store::Store::connect(&postgres.url)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (total, ..) = store.activity(0).await.unwrap();
        if total.requests == 6 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 6 rows after the outage",
            total.requests
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node that started with no keys turns authentication on once a key exists in the store it
/// shares (made by another node, or with `switchboard keys create`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_elsewhere_turns_authentication_on() {
    let Some(postgres) = switchboard_testkit::servers::Postgres::start() else {
        return;
    };
    let mut catalog = Catalog::default();
    catalog.add(common::fake_entry(
        "m",
        common::answer_ok(None),
        Pricing::default(),
    ));
    let base = common::serve_gateway_on(
        Gateway::new(catalog, ApiKeys::default()),
        ServerConfig::default(),
        Some(postgres.url.clone()),
    );
    let keyless = || async {
        common::client()
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(keyless().await, 200);
    let store = switchboard_store::Store::connect(&postgres.url)
        .await
        .unwrap();
    store
        .create_key(&switchboard_store::KeyRecord {
            id: "key_elsewhere".into(),
            name: "made elsewhere".into(),
            digest: switchboard_gateway::key_digest("sk-sb-elsewhere"),
            hint: "sk-sb-…here".into(),
            created_at: 1_700_000_000,
            expires_at: None,
            is_enabled: true,
            credit_limit_micros: None,
            limits: switchboard_store::RateLimits::default(),
            models: None,
            owner: None,
            deleted: false,
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while keyless().await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "still open 5 s after a key was made"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
