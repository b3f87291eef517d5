//! What several nodes rely on, checked on both backends: two handles on one database (two
//! nodes) see each other's responses, keys, usage and spend at once. Postgres is a real server
//! (Debian's package, started on loopback with a throwaway data directory).
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::keys::tests::key;
use crate::tests::sample;
use crate::{KeyUpdate, Store, UsageRow};

fn usage(id: &str, key: &str, model: &str, at_ms: u64, cost: i64) -> UsageRow {
    UsageRow {
        id: id.into(),
        at_ms,
        key: key.into(),
        model: model.into(),
        provider: "p".into(),
        surface: "chat".into(),
        prompt_tokens: 10,
        output_tokens: 5,
        cost_micros: cost,
        latency_ms: 12,
        ttft_ms: Some(3),
        status: "completed".into(),
        attempts: 2,
        ..UsageRow::default()
    }
}

async fn two_handles_share_everything(a: &Store, b: &Store) {
    assert_eq!(a.schema_versions().await.unwrap(), [1, 2, 3, 4, 5, 6]);

    // Stored responses: written by one, read by the other, scoped by owner.
    a.put_response(&sample("resp_a", "alice")).await.unwrap();
    assert_eq!(
        b.get_response("resp_a", "alice").await.unwrap(),
        Some(sample("resp_a", "alice"))
    );
    assert_eq!(b.get_response("resp_a", "bob").await.unwrap(), None);
    let mut forged = sample("resp_a", "mallory");
    forged.response = json!({"forged": true});
    b.put_response(&forged).await.unwrap();
    assert_eq!(
        a.get_response("resp_a", "alice")
            .await
            .unwrap()
            .unwrap()
            .response,
        sample("resp_a", "alice").response
    );
    assert!(!b.delete_response("resp_a", "bob").await.unwrap());
    assert!(b.delete_response("resp_a", "alice").await.unwrap());
    assert_eq!(a.get_response("resp_a", "alice").await.unwrap(), None);

    // Keys.
    assert!(!a.has_keys().await.unwrap());
    let mut made = key("key_a", "d1");
    made.expires_at = Some(1_800_000_000);
    a.create_key(&made).await.unwrap();
    assert!(
        b.create_key(&key("key_c", "d1")).await.is_err(),
        "digests are unique"
    );
    assert!(b.has_keys().await.unwrap());
    assert_eq!(b.get_key("key_a").await.unwrap(), Some(made));
    let updated = b
        .update_key(
            "key_a",
            &KeyUpdate {
                is_enabled: Some(false),
                credit_limit_micros: Some(None),
                owner: Some(None),
                secret: Some(("d9".into(), "sk-sb-…9999".into())),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.key_by_digest("d9").await.unwrap(), Some(updated));
    assert!(a.key_by_digest("d1").await.unwrap().is_none());
    assert!(a.delete_key("key_a", 1_700_000_500).await.unwrap());
    assert!(a.list_keys().await.unwrap().is_empty());
    assert!(a.key_by_digest("d9").await.unwrap().unwrap().deleted);

    // Usage: rows once (whichever node writes them), spend kept per key, activity grouped by
    // UTC day, model and key.
    let day = 86_400_000;
    a.record_usage(&[
        usage("r1", "key_a", "m1", day, 100),
        usage("r2", "key_a", "m2", day + 5, 50),
    ])
    .await
    .unwrap();
    b.record_usage(&[
        usage("r1", "key_a", "m1", day, 999),
        usage("r3", "key_b", "m1", 2 * day, 7),
    ])
    .await
    .unwrap();
    assert_eq!(b.spent("key_a").await.unwrap(), 150);
    assert_eq!(b.spent_by_all().await.unwrap(), 157);
    let (total, days, models, keys) = a.activity(0).await.unwrap();
    assert_eq!(
        (total.requests, total.cost_micros, total.input_tokens),
        (3, 157, 30)
    );
    let days: Vec<(&str, u64)> = days
        .iter()
        .map(|g| (g.name.as_str(), g.totals.requests))
        .collect();
    assert_eq!(days, [("1970-01-02", 2), ("1970-01-03", 1)]);
    assert_eq!(
        (models[0].name.as_str(), models[0].totals.requests),
        ("m1", 2)
    );
    assert_eq!(keys[0].name, "key_a");
    let rows = a.usage_of("key_a").await.unwrap();
    assert_eq!(rows[0], usage("r1", "key_a", "m1", day, 100));
}

#[tokio::test]
async fn two_handles_on_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("sb-store-shared-{}", std::process::id()));
    let path = dir.join("shared.db");
    let a = Store::open(&path).await.unwrap();
    let b = Store::open(&path).await.unwrap();
    assert_eq!(a.backend_name(), "sqlite");
    two_handles_share_everything(&a, &b).await;
    drop((a, b));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn two_nodes_on_one_postgres() {
    let Some(postgres) = switchboard_testkit::servers::Postgres::start() else {
        return;
    };
    // Nodes starting together migrate once.
    let (a, b) = tokio::join!(Store::connect(&postgres.url), Store::connect(&postgres.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.backend_name(), "postgres");
    two_handles_share_everything(&a, &b).await;
    drop((a, b));
    // Opening again applies nothing twice.
    let again = Store::connect(&postgres.url).await.unwrap();
    assert_eq!(again.schema_versions().await.unwrap(), [1, 2, 3, 4, 5, 6]);
}
