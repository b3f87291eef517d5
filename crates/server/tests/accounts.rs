//! Managed API keys over HTTP: the admin key creates, lists, changes, rotates and deletes
//! keys (`/v1/account/keys`, NagaAI's shapes); a managed key authenticates until it is
//! disabled, deleted or expired, and reaches only the models it may use; nothing but the admin
//! key manages keys. Against a fake provider on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};
use switchboard_gateway::{ApiKeys, Catalog, Gateway, Pricing};
use switchboard_model::{Event, FinishReason};
use switchboard_providers::fake::Step;
use switchboard_server::ServerConfig;

const ADMIN: &str = "sk-admin-test";

fn server() -> String {
    server_with(ServerConfig::default())
}

fn server_with(config: ServerConfig) -> String {
    let mut catalog = Catalog::default();
    // `priced` reports usage and has prices; `slow` streams until the client leaves.
    let usage = Event::Usage(switchboard_model::Usage {
        prompt_tokens: 1000,
        completion_tokens: 500,
        ..switchboard_model::Usage::default()
    });
    let text = |t: &str| {
        Step::Emit(Event::TextDelta {
            choice: 0,
            text: t.into(),
            logprobs: vec![],
        })
    };
    let finished = Step::Emit(Event::Finished {
        choice: 0,
        reason: FinishReason::Stop,
        stop_sequence: None,
    });
    for (id, script, pricing) in [
        (
            "priced",
            vec![
                text("ok"),
                finished.clone(),
                Step::Emit(usage),
                Step::Emit(Event::Done),
            ],
            Pricing {
                input_per_million: 2.0,
                cached_input_per_million: None,
                output_per_million: 4.0,
                per_web_search: None,
            },
        ),
        (
            "slow",
            vec![
                text("one two three four "),
                Step::Pause(std::time::Duration::from_secs(5)),
                text("late"),
                finished.clone(),
                Step::Emit(Event::Done),
            ],
            Pricing::default(),
        ),
    ] {
        catalog.add(common::fake_entry(id, script, pricing));
    }
    for id in ["alpha", "beta"] {
        catalog.add(common::fake_entry(
            id,
            common::answer_ok(None),
            Pricing::default(),
        ));
    }
    let keys = ApiKeys::new(["sk-static"]).with_admin_key(ADMIN);
    common::serve_gateway(Gateway::new(catalog, keys), config)
}

async fn call(method: &str, url: String, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = common::client();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PATCH" => client.patch(url),
        _ => client.delete(url),
    };
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn chat(base: &str, key: &str, model: &str) -> (u16, Value) {
    call(
        "POST",
        format!("{base}/v1/chat/completions"),
        Some(key),
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

#[tokio::test]
async fn a_managed_keys_life() {
    let base = server();
    let keys = format!("{base}/v1/account/keys");
    let (status, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(
            json!({"name": "ci", "credit_limit": 12.5, "expires_at": "2099-01-31T00:00:00Z",
                    "rate_limit": {"requests_per_minute": 60, "max_concurrent": 2},
                    "models": ["alpha"], "owner": "ci-team"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["owner"], "ci-team");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("sk-sb-") && secret.len() == 46,
        "{secret}"
    );
    assert!(id.starts_with("key_"));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["credit_limit"], 12.5);
    assert_eq!(created["expires_at"], "2099-01-31T00:00:00Z");
    assert_eq!(created["is_enabled"], true);
    assert_eq!(
        created["rate_limit"],
        json!({"requests_per_minute": 60, "tokens_per_minute": null, "max_concurrent": 2})
    );
    assert_eq!(
        created["hint"],
        format!("sk-sb-…{}", &secret[secret.len() - 4..])
    );

    // The secret appears once: never in the list or a retrieval.
    let (status, listed) = call("GET", keys.clone(), Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    let (_, one) = call("GET", format!("{keys}/{id}"), Some(ADMIN), None).await;
    assert_eq!(one["id"], id.as_str());
    assert!(one.get("key").is_none());

    // The key works, for its models only; the models list shows only those.
    assert_eq!(chat(&base, &secret, "alpha").await.0, 200);
    let (status, body) = chat(&base, &secret, "beta").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
    let (_, models) = call("GET", format!("{base}/v1/models"), Some(&secret), None).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha"]);

    // Only the admin key manages keys; the admin key makes no requests to models.
    for key in [secret.as_str(), "sk-static"] {
        let (status, body) = call("GET", keys.clone(), Some(key), None).await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = call("DELETE", format!("{keys}/{id}"), Some(key), None).await;
        assert_eq!(status, 403);
    }
    assert_eq!(call("GET", keys.clone(), None, None).await.0, 401);
    assert_eq!(
        call("GET", keys.clone(), Some("sk-wrong"), None).await.0,
        401
    );
    assert_eq!(chat(&base, ADMIN, "alpha").await.0, 403);

    // Disabled: 401 at once; enabled again: back.
    let (status, patched) = call(
        "PATCH",
        format!("{keys}/{id}"),
        Some(ADMIN),
        Some(json!({"is_enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["is_enabled"], false);
    let (status, body) = chat(&base, &secret, "alpha").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    call(
        "PATCH",
        format!("{keys}/{id}"),
        Some(ADMIN),
        Some(json!({"is_enabled": true, "models": null})),
    )
    .await;
    assert_eq!(
        chat(&base, &secret, "beta").await.0,
        200,
        "no model list: every model"
    );

    // Rotated: the new secret works, the old one does not; the id stays.
    let (status, rotated) = call(
        "PATCH",
        format!("{keys}/{id}"),
        Some(ADMIN),
        Some(json!({"rotate": true})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["id"], id.as_str());
    assert_eq!(chat(&base, &secret, "alpha").await.0, 401);
    assert_eq!(chat(&base, new_secret, "alpha").await.0, 200);

    // Deleted: gone, and 401.
    let (status, deleted) = call("DELETE", format!("{keys}/{id}"), Some(ADMIN), None).await;
    assert_eq!((status, deleted), (200, json!({"id": id, "deleted": true})));
    assert_eq!(chat(&base, new_secret, "alpha").await.0, 401);
    assert_eq!(
        call("GET", format!("{keys}/{id}"), Some(ADMIN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call("DELETE", format!("{keys}/{id}"), Some(ADMIN), None)
            .await
            .0,
        404
    );
    // Keys from flags keep working beside managed ones.
    assert_eq!(chat(&base, "sk-static", "beta").await.0, 200);
}

#[tokio::test]
async fn bad_key_requests_name_the_field() {
    let base = server();
    let keys = format!("{base}/v1/account/keys");
    for (body, param) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "credit_limit": -1}), "credit_limit"),
        (json!({"name": "x", "credit_limit": "5"}), "credit_limit"),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "expires_at": "next tuesday"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "rate_limit": {"requests_per_minute": 0}}),
            "rate_limit.requests_per_minute",
        ),
        (
            json!({"name": "x", "rate_limit": {"rpm": 5}}),
            "rate_limit.rpm",
        ),
        (json!({"name": "x", "models": ["alpha", 3]}), "models[1]"),
        (json!({"name": "x", "owner": ""}), "owner"),
        (json!({"name": "x", "owner": 7}), "owner"),
        (json!({"name": "x", "team": "me"}), "team"),
    ] {
        let (status, error) = call("POST", keys.clone(), Some(ADMIN), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    let (status, _) = call(
        "PATCH",
        format!("{keys}/key_nope"),
        Some(ADMIN),
        Some(json!({"name": "y"})),
    )
    .await;
    assert_eq!(status, 404);
    // A key that expires: accepted until its time, refused after.
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let soon = humantime::format_rfc3339_seconds(soon).to_string();
    let (status, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "soon", "expires_at": soon})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let secret = created["key"].as_str().unwrap();
    assert_eq!(chat(&base, secret, "alpha").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = chat(&base, secret, "alpha").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // A date alone is midnight UTC.
    let (_, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "d", "expires_at": "2099-12-31"})),
    )
    .await;
    assert_eq!(created["expires_at"], "2099-12-31T00:00:00Z");
}

/// Every request that names a model leaves one usage row, priced from the catalog; a key at its
/// credit limit gets 402 before any provider is called; a client that leaves mid-stream is
/// charged what was generated; the activity report sums the rows.
#[tokio::test]
async fn usage_is_recorded_priced_and_limited() {
    let base = server();
    let keys = format!("{base}/v1/account/keys");
    let (_, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "budget", "credit_limit": 0.01})),
    )
    .await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    // 1000 prompt tokens at $2/M and 500 output at $4/M: $0.004 a request. Two leave $0.008
    // spent, under the limit, so the third runs (and crosses it); the fourth is refused.
    for _ in 0..3 {
        assert_eq!(chat(&base, &secret, "priced").await.0, 200);
    }
    let (status, body) = chat(&base, &secret, "priced").await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    // The Messages surface refuses it in Anthropic's words.
    let refused = common::client()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", &secret)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "priced", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "billing_error", "{body}");

    // A client that leaves mid-stream: the row says cancelled and counts what was generated.
    let (_, other) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "streamer"})),
    )
    .await;
    let streamer = other["key"].as_str().unwrap().to_owned();
    let response = common::client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&streamer)
        .json(&json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    use futures::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    drop(body);
    // A continuation of a response that does not exist is refused before it is admitted: no
    // generation, so no row (it once left a `cancelled` one).
    let (status, missing) = call(
        "POST",
        format!("{base}/v1/responses"),
        Some(&streamer),
        Some(json!({"model": "priced", "input": "and?", "previous_response_id": "resp_none"})),
    )
    .await;
    assert_eq!(status, 400, "{missing}");
    assert_eq!(missing["error"]["code"], "previous_response_not_found");

    // Rows are written within the batch window.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (status, activity) = call(
        "GET",
        format!("{base}/v1/account/activity?days=1"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{activity}");
    assert_eq!(activity["period_days"], 1);
    assert_eq!(activity["total_stats"]["total_requests"], 6, "{activity}");
    assert_eq!(activity["total_stats"]["total_cost"], "0.012000");
    assert_eq!(activity["total_stats"]["total_input_tokens"], 3000);
    assert_eq!(activity["daily_stats"].as_array().unwrap().len(), 1);
    let top = &activity["top_models"][0];
    assert_eq!(
        (top["model_name"].as_str(), top["request_count"].as_u64()),
        (Some("priced"), Some(5))
    );
    let budget = activity["api_key_usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["api_key_id"] == id.as_str())
        .unwrap();
    assert_eq!(budget["api_key_name"], "budget");
    assert_eq!(budget["request_count"], 5);
    assert_eq!(budget["total_cost"], "0.012000");
    let streamed = activity["api_key_usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["api_key_name"] == "streamer")
        .unwrap();
    assert_eq!(streamed["request_count"], 1);
    assert!(
        streamed["total_output_tokens"].as_u64().unwrap() >= 1,
        "{streamed}"
    );
    // The metrics count the same requests (admin key only).
    let metrics = common::client()
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"switchboard_requests_total{model="priced",provider="fake",surface="chat",status="completed"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"status="rejected"} 1"#), "{text}");
    assert!(
        text.contains(r#"switchboard_input_tokens_total{model="priced",provider="fake"} 3000"#),
        "{text}"
    );
    assert!(
        text.contains("switchboard_time_to_first_token_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_cost_usd_total{model="priced",provider="fake"} 0.012"#),
        "{text}"
    );
    // The 402 answered above, the gateway's own time before calling the provider, and the
    // route's calls, read at the scrape.
    assert!(
        text.contains(r#"switchboard_errors_total{status="402",type="insufficient_quota"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"switchboard_gateway_overhead_seconds_count{model="priced",provider="fake"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_upstream_attempts_total{model="priced",provider="fake"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_upstream_circuit_open{model="priced",provider="fake"} 0"#),
        "{text}"
    );
    let as_key = common::client()
        .get(format!("{base}/metrics"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(as_key.status(), 403);
    assert_eq!(
        common::client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Without an account credit the balance is null and the spend is shown.
    let (status, balance) = call(
        "GET",
        format!("{base}/v1/account/balance"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        balance,
        json!({"balance": null, "credit": null, "spent": "0.012000"})
    );
    // Only the admin key reads activity; days are 1 to 30.
    assert_eq!(
        call(
            "GET",
            format!("{base}/v1/account/activity"),
            Some(&secret),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            "GET",
            format!("{base}/v1/account/activity?days=31"),
            Some(ADMIN),
            None
        )
        .await
        .0,
        400
    );
}

/// A key's rate limits: requests per minute and requests at once, each a 429
/// `rate_limit_exceeded` with `Retry-After` and OpenAI's headers, which answers carry too.
#[tokio::test]
async fn rate_limits_are_enforced_per_key() {
    let base = server();
    let keys = format!("{base}/v1/account/keys");
    let (_, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "limited", "rate_limit": {"requests_per_minute": 2, "tokens_per_minute": 100000}})),
    )
    .await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let send = || {
        common::client()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "100000");
    assert!(first.headers()["x-ratelimit-reset-requests"]
        .to_str()
        .unwrap()
        .ends_with('s'));
    // The minute may turn between two requests; then the count starts again.
    let second = send().await.unwrap();
    assert_eq!(second.status(), 200);
    let third = send().await.unwrap();
    if third.status() != 200 {
        assert_eq!(third.status(), 429);
        assert!(third.headers().contains_key("retry-after"));
        assert_eq!(third.headers()["x-ratelimit-remaining-requests"], "0");
        let body: Value = third.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }

    // One request at once: a second while the first streams is refused, then admitted once
    // the first is gone.
    let (_, created) = call(
        "POST",
        keys.clone(),
        Some(ADMIN),
        Some(json!({"name": "single", "rate_limit": {"max_concurrent": 1}})),
    )
    .await;
    let single = created["key"].as_str().unwrap().to_owned();
    let stream = |model: &str| {
        common::client()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&single)
            .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let running = stream("slow").await.unwrap();
    assert_eq!(running.status(), 200);
    let refused = stream("alpha").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    drop(running);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if stream("alpha").await.unwrap().status() == 200 {
            admitted = true;
            break;
        }
    }
    assert!(
        admitted,
        "the slot comes back when the running request ends"
    );
}

/// The server's own limits, per model and over everyone, hold beside each key's.
#[tokio::test]
async fn model_and_global_limits_hold_for_every_key() {
    let at_once = |n| switchboard_gateway::KeyLimits {
        max_concurrent: Some(n),
        ..switchboard_gateway::KeyLimits::default()
    };
    let config = ServerConfig {
        model_limits: [("slow".to_owned(), at_once(2))].into_iter().collect(),
        global_limits: at_once(2),
        ..ServerConfig::default()
    };
    let base = server_with(config);
    let stream = |model: &'static str| {
        common::client()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("sk-static")
            .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let first = stream("slow").await.unwrap();
    assert_eq!(first.status(), 200);
    // Below both limits, another model runs beside it.
    let quick = stream("alpha").await.unwrap();
    assert_eq!(quick.status(), 200);
    let _ = quick.bytes().await.unwrap();
    let second = stream("slow").await.unwrap();
    assert_eq!(second.status(), 200);
    // The model's limit, then everyone's.
    let refused = stream("slow").await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`slow`"),
        "{body}"
    );
    let refused = stream("alpha").await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server"),
        "{body}"
    );
    drop((first, second));
}
