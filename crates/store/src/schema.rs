//! The schema, one version at a time, oldest first. A database records the versions applied to
//! it (`schema_migrations`) and every missing one is applied at start, so a database made by any
//! earlier release is brought up to date. Postgres applies them under an advisory lock, so
//! nodes starting together against one database apply each version once.

use sqlx::Row;

use crate::{on_backend, Dialect, Store, StoreError};

/// Written for SQLite; Postgres takes the same text with `INTEGER` widened to `BIGINT` (SQLite's
/// integers are all 64-bit, Postgres' `INTEGER` is 32).
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
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
    (
        // Each key's spend as a running total, kept with the rows (one read per credit check,
        // however many rows a key has), from the rows already there.
        4,
        "CREATE TABLE key_spend (
            key         TEXT PRIMARY KEY NOT NULL,
            cost_micros INTEGER NOT NULL
        );
        INSERT INTO key_spend (key, cost_micros)
            SELECT key, CAST(SUM(cost_micros) AS INTEGER) FROM usage GROUP BY key",
    ),
    (
        // Provider calls per request (retries and fallbacks show as more than one).
        5,
        "ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    ),
    (
        // Who a managed key belongs to.
        6,
        "ALTER TABLE api_keys ADD COLUMN owner TEXT",
    ),
];

/// The lock Postgres nodes take while migrating (any constant; this one spells "switchbd").
const MIGRATION_LOCK: i64 = 0x7377_6974_6368_6264;

fn migration_sql(dialect: Dialect, sql: &str) -> String {
    match dialect {
        Dialect::Sqlite => sql.to_owned(),
        Dialect::Postgres => sql.replace("INTEGER", "BIGINT"),
    }
}

impl Store {
    /// Applies every migration the database lacks, all in one transaction.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        on_backend!(self, |pool, dialect| {
            let mut transaction = pool.begin().await?;
            if dialect == Dialect::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *transaction)
                    .await?;
            }
            sqlx::raw_sql(&migration_sql(
                dialect,
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    INTEGER PRIMARY KEY NOT NULL,
                    applied_at INTEGER NOT NULL
                )",
            ))
            .execute(&mut *transaction)
            .await?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *transaction)
                .await?
                .iter()
                .map(|row| row.try_get("version"))
                .collect::<Result<_, _>>()?;
            let record =
                dialect.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)");
            for (version, sql) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                sqlx::raw_sql(&migration_sql(dialect, sql))
                    .execute(&mut *transaction)
                    .await?;
                sqlx::query(&record)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        });
        Ok(())
    }

    /// The versions applied, oldest first.
    ///
    /// # Errors
    /// On database failure.
    pub async fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, |pool, _dialect| {
            let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(pool)
                .await?;
            rows.iter().map(|row| Ok(row.try_get("version")?)).collect()
        })
    }
}
