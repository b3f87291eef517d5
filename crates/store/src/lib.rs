//! Persistence for state the API keeps between requests: stored responses of the Responses API
//! (`store: true`, so `previous_response_id`, retrieval, deletion and input-item listing work)
//! and the API keys managed at run time (`keys.rs`). The schema is versioned (`MIGRATIONS`).
//!
//! The store treats what it keeps as opaque JSON documents owned by a caller identity; it knows
//! no wire format (the Responses surface decides what a document holds) and no HTTP. Every read
//! and delete is scoped by owner, so one API key can never see another's responses: a response
//! stored under another owner is indistinguishable from one that does not exist.
//!
//! SQLite through sqlx is the default backend (one file under `$SWITCHBOARD_HOME`); sqlx also
//! speaks Postgres, which is where a multi-node deployment will go.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

mod keys;
mod usage;

pub use keys::{KeyRecord, KeyUpdate, RateLimits};
pub use usage::{UsageGroup, UsageRow, UsageTotals};

/// Why a store operation failed. Callers report these as internal errors: they are environment
/// failures (disk, corruption), never the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored document is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// One stored response: the documents a surface needs to answer later requests about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    /// Identity of the API key that created it (empty when the server has no keys).
    pub owner: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The response object as returned to the client.
    pub response: Value,
    /// The input items of this request, each with its id (what `input_items` lists).
    pub input_items: Vec<Value>,
    /// Every item a follow-up with `previous_response_id` continues from: the previous
    /// responses' context, this request's input and this response's output, oldest first.
    pub context: Vec<Value>,
}

/// A handle on the database; cheap to clone, safe to share.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies the schema.
    ///
    /// # Errors
    /// When the file cannot be opened or created, or the schema cannot be applied.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
        }
        restrict_to_owner(path).map_err(sqlx::Error::Io)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    /// A private in-memory database, for tests and `--no-store` style set-ups.
    ///
    /// # Errors
    /// When SQLite cannot start.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // Each in-memory connection is its own database: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// Saves a response, replacing one with the same id and owner.
    ///
    /// # Errors
    /// On database failure.
    pub async fn put_response(&self, stored: &StoredResponse) -> Result<(), StoreError> {
        let created_at = i64::try_from(stored.created_at).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO responses (id, owner, created_at, response, input_items, context)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET
                response = excluded.response,
                input_items = excluded.input_items,
                context = excluded.context
             WHERE responses.owner = excluded.owner",
        )
        .bind(&stored.id)
        .bind(&stored.owner)
        .bind(created_at)
        .bind(serde_json::to_string(&stored.response)?)
        .bind(serde_json::to_string(&stored.input_items)?)
        .bind(serde_json::to_string(&stored.context)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The response with this id, if `owner` created it.
    ///
    /// # Errors
    /// On database failure or a corrupt row.
    pub async fn get_response(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner, created_at, response, input_items, context
             FROM responses WHERE id = ?1 AND owner = ?2",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let created_at: i64 = row.try_get("created_at")?;
        let response: String = row.try_get("response")?;
        let input_items: String = row.try_get("input_items")?;
        let context: String = row.try_get("context")?;
        Ok(Some(StoredResponse {
            id: row.try_get("id")?,
            owner: row.try_get("owner")?,
            created_at: u64::try_from(created_at).unwrap_or(0),
            response: serde_json::from_str(&response)?,
            input_items: serde_json::from_str(&input_items)?,
            context: serde_json::from_str(&context)?,
        }))
    }

    /// Deletes the response if `owner` created it; says whether there was one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM responses WHERE id = ?1 AND owner = ?2")
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// The database holds prompts and completions: create it readable by its owner only (SQLite
/// gives its `-wal` and `-shm` files the database's mode), and tighten a file an older version
/// created world-readable.
/// The schema, one version at a time, oldest first. A database records the versions applied
/// to it (`schema_migrations`), and each missing one is applied in its own transaction at
/// start, so a database made by any earlier release is brought up to date.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS responses (
            id          TEXT PRIMARY KEY NOT NULL,
            owner       TEXT NOT NULL,
            created_at  INTEGER NOT NULL,
            response    TEXT NOT NULL,
            input_items TEXT NOT NULL,
            context     TEXT NOT NULL
        )",
    ),
    (
        2,
        "CREATE TABLE api_keys (
            id                  TEXT PRIMARY KEY NOT NULL,
            name                TEXT NOT NULL,
            digest              TEXT NOT NULL UNIQUE,
            hint                TEXT NOT NULL,
            created_at          INTEGER NOT NULL,
            expires_at          INTEGER,
            is_enabled          INTEGER NOT NULL,
            credit_limit_micros INTEGER,
            requests_per_minute INTEGER,
            tokens_per_minute   INTEGER,
            max_concurrent      INTEGER,
            models              TEXT,
            deleted_at          INTEGER
        )",
    ),
    (
        3,
        "CREATE TABLE usage (
            id                 TEXT PRIMARY KEY NOT NULL,
            at_ms              INTEGER NOT NULL,
            key                TEXT NOT NULL,
            model              TEXT NOT NULL,
            provider           TEXT NOT NULL,
            surface            TEXT NOT NULL,
            prompt_tokens      INTEGER NOT NULL,
            cached_tokens      INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens      INTEGER NOT NULL,
            reasoning_tokens   INTEGER NOT NULL,
            searches           INTEGER NOT NULL,
            cost_micros        INTEGER NOT NULL,
            latency_ms         INTEGER NOT NULL,
            ttft_ms            INTEGER,
            status             TEXT NOT NULL
        );
        CREATE INDEX usage_by_key ON usage (key, at_ms);
        CREATE INDEX usage_by_time ON usage (at_ms)",
    ),
];

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get("version"))
        .collect::<Result<_, _>>()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut transaction = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *transaction).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)")
            .bind(version)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
    }
    Ok(())
}

fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn sample(id: &str, owner: &str) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            owner: owner.into(),
            created_at: 1_700_000_000,
            response: json!({"id": id, "object": "response", "output": [{"type": "message"}]}),
            input_items: vec![json!({"id": "msg_1", "type": "message", "role": "user"})],
            context: vec![
                json!({"type": "message", "role": "user"}),
                json!({"type": "message", "role": "assistant"}),
            ],
        }
    }

    #[tokio::test]
    async fn round_trips_and_is_scoped_by_owner() {
        let store = Store::in_memory().await.unwrap();
        store
            .put_response(&sample("resp_a", "alice"))
            .await
            .unwrap();
        let got = store
            .get_response("resp_a", "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, sample("resp_a", "alice"));
        assert_eq!(store.get_response("resp_a", "bob").await.unwrap(), None);
        assert_eq!(store.get_response("resp_b", "alice").await.unwrap(), None);
        assert!(!store.delete_response("resp_a", "bob").await.unwrap());
        assert!(store
            .get_response("resp_a", "alice")
            .await
            .unwrap()
            .is_some());
        assert!(store.delete_response("resp_a", "alice").await.unwrap());
        assert!(!store.delete_response("resp_a", "alice").await.unwrap());
        assert_eq!(store.get_response("resp_a", "alice").await.unwrap(), None);
    }

    #[tokio::test]
    async fn another_owner_cannot_overwrite() {
        let store = Store::in_memory().await.unwrap();
        store
            .put_response(&sample("resp_a", "alice"))
            .await
            .unwrap();
        let mut forged = sample("resp_a", "mallory");
        forged.response = json!({"forged": true});
        store.put_response(&forged).await.unwrap();
        let got = store
            .get_response("resp_a", "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.response, sample("resp_a", "alice").response);
        assert_eq!(store.get_response("resp_a", "mallory").await.unwrap(), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sb-store-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let fresh = dir.join("fresh.db");
        let store = Store::open(&fresh).await.unwrap();
        store.put_response(&sample("resp_m", "")).await.unwrap();
        assert_eq!(mode(&fresh), 0o600);
        let wal = dir.join("fresh.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        drop(store);
        // A file an older version left world-readable is tightened.
        let old = dir.join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&old).await.unwrap());
        assert_eq!(mode(&old), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_database_from_before_versioned_migrations_is_brought_up_to_date() {
        let dir = std::env::temp_dir().join(format!("sb-store-migrate-{}", std::process::id()));
        let path = dir.join("old.db");
        std::fs::create_dir_all(&dir).unwrap();
        {
            // What the first release made: the responses table and nothing else.
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .unwrap();
            sqlx::query(MIGRATIONS[0].1).execute(&pool).await.unwrap();
            pool.close().await;
        }
        let store = Store::open(&path).await.unwrap();
        store.put_response(&sample("resp_old", "")).await.unwrap();
        assert!(!store.has_keys().await.unwrap());
        let versions: Vec<i64> =
            sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get("version"))
                .collect();
        assert_eq!(versions, [1, 2, 3]);
        drop(store);
        // Opening again applies nothing twice.
        assert!(Store::open(&path).await.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_database_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("sb-store-test-{}", std::process::id()));
        let path = dir.join("nested").join("switchboard.db");
        {
            let store = Store::open(&path).await.unwrap();
            store.put_response(&sample("resp_f", "")).await.unwrap();
        }
        let store = Store::open(&path).await.unwrap();
        assert!(store.get_response("resp_f", "").await.unwrap().is_some());
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
