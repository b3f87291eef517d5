//! Persistence for state the API keeps between requests: stored responses of the Responses API
//! (`store: true`, so `previous_response_id`, retrieval, deletion and input-item listing work),
//! the API keys managed at run time (`keys.rs`) and the usage rows (`usage.rs`). The schema is
//! versioned (`schema.rs`).
//!
//! The store treats what it keeps as opaque JSON documents owned by a caller identity; it knows
//! no wire format (the Responses surface decides what a document holds) and no HTTP. Every read
//! and delete is scoped by owner, so one API key can never see another's responses: a response
//! stored under another owner is indistinguishable from one that does not exist.
//!
//! Two backends speak the same SQL: SQLite (one file under `$SWITCHBOARD_HOME`, the default) and
//! Postgres (`postgres://…`), which several nodes share so that any node serves any request.
//! Statements are written once with SQLite's numbered placeholders (`?1`) and rewritten to
//! Postgres' (`$1`); the few expressions that differ come from [`Dialect`].

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

#[cfg(test)]
mod contract;
mod keys;
mod schema;
mod usage;

pub use keys::{KeyRecord, KeyUpdate, RateLimits};
pub use usage::{UsageGroup, UsageRow, UsageTotals};

/// Why a store operation failed. Callers report these as internal errors: they are environment
/// failures (disk, corruption, an unreachable database), never the client's doing.
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
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Where SQL differs between the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` (written with SQLite's `?N` placeholders) as this backend takes it.
    fn sql(self, sql: &str) -> Cow<'_, str> {
        match self {
            Self::Sqlite => Cow::Borrowed(sql),
            Self::Postgres => {
                let mut out = String::with_capacity(sql.len());
                let mut chars = sql.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
                        out.push('$');
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// The UTC day (`YYYY-MM-DD`) of a column of Unix milliseconds.
    fn utc_day(self, millis_column: &str) -> String {
        match self {
            Self::Sqlite => format!("date({millis_column} / 1000, 'unixepoch')"),
            Self::Postgres => format!(
                "to_char(to_timestamp({millis_column} / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            ),
        }
    }
}

/// Runs `$body` once for the store's backend, with `$pool` its pool and `$dialect` its
/// [`Dialect`]; the body is the same text for both, compiled once per backend.
macro_rules! on_backend {
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => {
                let $dialect = $crate::Dialect::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                let $dialect = $crate::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// A row's columns as the store's few value types, the same way for both backends.
trait Fields {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn maybe_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

macro_rules! fields_of {
    ($row:ty) => {
        impl Fields for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn maybe_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
fields_of!(SqliteRow);
fields_of!(PgRow);

impl Store {
    /// Opens the store at `location`: a `postgres://` (or `postgresql://`) URL, or else the
    /// path of a SQLite file (an optional `sqlite://` prefix is dropped).
    ///
    /// # Errors
    /// When the database cannot be reached, opened or created, or its schema brought up to date.
    pub async fn connect(location: &str) -> Result<Self, StoreError> {
        if is_postgres(location) {
            // A short wait for a connection: when the database is down, callers fall back (a
            // key as last seen) or answer 503 in seconds rather than hold requests.
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect(location)
                .await?;
            let store = Self {
                backend: Backend::Postgres(pool),
            };
            store.migrate().await?;
            return Ok(store);
        }
        let path = location
            .strip_prefix("sqlite://")
            .or_else(|| location.strip_prefix("sqlite:"))
            .unwrap_or(location);
        Self::open(Path::new(path)).await
    }

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
        Self::with_sqlite(pool).await
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
        Self::with_sqlite(pool).await
    }

    async fn with_sqlite(pool: SqlitePool) -> Result<Self, StoreError> {
        let store = Self {
            backend: Backend::Sqlite(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which backend this is, for logs: `sqlite` or `postgres`.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Saves a response, replacing one with the same id and owner.
    ///
    /// # Errors
    /// On database failure.
    pub async fn put_response(&self, stored: &StoredResponse) -> Result<(), StoreError> {
        let created_at = i64::try_from(stored.created_at).unwrap_or(i64::MAX);
        let response = serde_json::to_string(&stored.response)?;
        let input_items = serde_json::to_string(&stored.input_items)?;
        let context = serde_json::to_string(&stored.context)?;
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql(
                "INSERT INTO responses (id, owner, created_at, response, input_items, context)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET
                    response = excluded.response,
                    input_items = excluded.input_items,
                    context = excluded.context
                 WHERE responses.owner = excluded.owner",
            );
            sqlx::query(&sql)
                .bind(&stored.id)
                .bind(&stored.owner)
                .bind(created_at)
                .bind(&response)
                .bind(&input_items)
                .bind(&context)
                .execute(pool)
                .await?;
        });
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
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql(
                "SELECT id, owner, created_at, response, input_items, context
                 FROM responses WHERE id = ?1 AND owner = ?2",
            );
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(owner)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(stored_response).transpose()
        })
    }

    /// Deletes the response if `owner` created it; says whether there was one.
    ///
    /// # Errors
    /// On database failure.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql("DELETE FROM responses WHERE id = ?1 AND owner = ?2");
            let result = sqlx::query(&sql).bind(id).bind(owner).execute(pool).await?;
            Ok(result.rows_affected() > 0)
        })
    }
}

/// `location` fit for logs and errors: a URL's password replaced by `***`.
#[must_use]
pub fn redacted(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => location.to_owned(),
        },
        None => location.to_owned(),
    }
}

fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

fn stored_response(row: &impl Fields) -> Result<StoredResponse, StoreError> {
    Ok(StoredResponse {
        id: row.text("id")?,
        owner: row.text("owner")?,
        created_at: u64::try_from(row.int("created_at")?).unwrap_or(0),
        response: serde_json::from_str(&row.text("response")?)?,
        input_items: serde_json::from_str(&row.text("input_items")?)?,
        context: serde_json::from_str(&row.text("context")?)?,
    })
}

/// The database holds prompts and completions: create it readable by its owner only (SQLite
/// gives its `-wal` and `-shm` files the database's mode), and tighten a file an older version
/// created world-readable.
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
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    pub(crate) fn sample(id: &str, owner: &str) -> StoredResponse {
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

    #[test]
    fn locations_are_logged_without_passwords() {
        assert_eq!(
            redacted("postgres://sb:hunter2@db.internal:5432/switchboard?sslmode=require"),
            "postgres://sb:***@db.internal:5432/switchboard?sslmode=require"
        );
        assert_eq!(redacted("postgres://sb@db/x"), "postgres://sb@db/x");
        assert_eq!(
            redacted("/var/lib/switchboard.db"),
            "/var/lib/switchboard.db"
        );
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
            sqlx::query(schema::MIGRATIONS[0].1)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = Store::open(&path).await.unwrap();
        store.put_response(&sample("resp_old", "")).await.unwrap();
        assert!(!store.has_keys().await.unwrap());
        assert_eq!(store.schema_versions().await.unwrap(), [1, 2, 3, 4, 5, 6]);
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
