//! Usage rows: one per request, whatever its ending, with the cost priced from the catalog.
//! Written in batches off the request path (see the server's recorder); read back as totals for
//! a key's spend and for the activity report.

use std::collections::BTreeMap;

use crate::{on_backend, Fields, Store, StoreError};

/// One request's usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// Unique per request (the request id), so a row is never written twice.
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub at_ms: u64,
    /// The managed key's id, or the configured key's owner digest, or empty.
    pub key: String,
    pub model: String,
    /// The route that served it (`local`, a provider name), empty when none did.
    pub provider: String,
    /// `chat`, `responses`, `messages`.
    pub surface: String,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub cache_write_tokens: u32,
    pub output_tokens: u32,
    pub reasoning_tokens: u32,
    pub searches: u32,
    /// USD in millionths.
    pub cost_micros: i64,
    pub latency_ms: u64,
    /// Time to the first generated event; `None` when nothing was generated.
    pub ttft_ms: Option<u64>,
    /// Provider calls made for it: 1, more after retries and fallbacks, 0 when none was
    /// (refused, or every route failed).
    pub attempts: u32,
    /// `completed`, `length`, `failed`, `cancelled`, `rejected`; `in_progress` until the
    /// request's final row replaces it.
    pub status: String,
}

/// Totals over a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    pub cost_micros: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Totals per group (a day, a model, a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub name: String,
    pub totals: UsageTotals,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn totals(row: &impl Fields) -> Result<UsageTotals, StoreError> {
    let count = |key: &str| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.maybe_int(key)?.unwrap_or(0)).unwrap_or(0))
    };
    Ok(UsageTotals {
        requests: count("requests")?,
        cost_micros: row.maybe_int("cost")?.unwrap_or(0),
        input_tokens: count("input_tokens")?,
        output_tokens: count("output_tokens")?,
    })
}

// Postgres sums BIGINTs as NUMERIC: cast back so both backends read an i64.
const TOTALS: &str = "COUNT(*) AS requests, CAST(SUM(cost_micros) AS BIGINT) AS cost,
    CAST(SUM(prompt_tokens) AS BIGINT) AS input_tokens,
    CAST(SUM(output_tokens) AS BIGINT) AS output_tokens";

fn usage_row(row: &impl Fields) -> Result<UsageRow, StoreError> {
    let count =
        |key: &str| -> Result<u32, StoreError> { Ok(u32::try_from(row.int(key)?).unwrap_or(0)) };
    let millis =
        |key: &str| -> Result<u64, StoreError> { Ok(u64::try_from(row.int(key)?).unwrap_or(0)) };
    Ok(UsageRow {
        id: row.text("id")?,
        at_ms: millis("at_ms")?,
        key: row.text("key")?,
        model: row.text("model")?,
        provider: row.text("provider")?,
        surface: row.text("surface")?,
        prompt_tokens: count("prompt_tokens")?,
        cached_tokens: count("cached_tokens")?,
        cache_write_tokens: count("cache_write_tokens")?,
        output_tokens: count("output_tokens")?,
        reasoning_tokens: count("reasoning_tokens")?,
        searches: count("searches")?,
        cost_micros: row.int("cost_micros")?,
        latency_ms: millis("latency_ms")?,
        ttft_ms: row
            .maybe_int("ttft_ms")?
            .and_then(|v| u64::try_from(v).ok()),
        status: row.text("status")?,
        attempts: count("attempts")?,
    })
}

impl Store {
    /// Writes rows in one transaction, and adds the cost of each newly written row to its
    /// key's running total. A row whose id is already stored is left as it was (and not
    /// counted again), unless the stored one is `in_progress`: a request's final row replaces
    /// the row written when it started.
    ///
    /// # Errors
    /// On database failure (then none of the batch is written).
    pub async fn record_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        on_backend!(self, |pool, dialect| {
            let insert = dialect.sql(
                "INSERT INTO usage (id, at_ms, key, model, provider, surface, prompt_tokens,
                     cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, searches,
                     cost_micros, latency_ms, ttft_ms, status, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17)
                 ON CONFLICT(id) DO UPDATE SET
                     provider = excluded.provider, prompt_tokens = excluded.prompt_tokens,
                     cached_tokens = excluded.cached_tokens,
                     cache_write_tokens = excluded.cache_write_tokens,
                     output_tokens = excluded.output_tokens,
                     reasoning_tokens = excluded.reasoning_tokens, searches = excluded.searches,
                     cost_micros = excluded.cost_micros, latency_ms = excluded.latency_ms,
                     ttft_ms = excluded.ttft_ms, status = excluded.status,
                     attempts = excluded.attempts
                 WHERE usage.status = 'in_progress'",
            );
            let add = dialect.sql(
                "INSERT INTO key_spend (key, cost_micros) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET cost_micros = key_spend.cost_micros + excluded.cost_micros",
            );
            // Keys in one order in every transaction, so nodes writing at once cannot deadlock.
            let mut spend: BTreeMap<&str, i64> = BTreeMap::new();
            let mut transaction = pool.begin().await?;
            for row in rows {
                let written = sqlx::query(&insert)
                    .bind(&row.id)
                    .bind(to_i64(row.at_ms))
                    .bind(&row.key)
                    .bind(&row.model)
                    .bind(&row.provider)
                    .bind(&row.surface)
                    .bind(i64::from(row.prompt_tokens))
                    .bind(i64::from(row.cached_tokens))
                    .bind(i64::from(row.cache_write_tokens))
                    .bind(i64::from(row.output_tokens))
                    .bind(i64::from(row.reasoning_tokens))
                    .bind(i64::from(row.searches))
                    .bind(row.cost_micros)
                    .bind(to_i64(row.latency_ms))
                    .bind(row.ttft_ms.map(to_i64))
                    .bind(&row.status)
                    .bind(i64::from(row.attempts))
                    .execute(&mut *transaction)
                    .await?;
                if written.rows_affected() > 0 && row.cost_micros != 0 {
                    *spend.entry(row.key.as_str()).or_default() += row.cost_micros;
                }
            }
            for (key, cost) in spend {
                sqlx::query(&add)
                    .bind(key)
                    .bind(cost)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        });
        Ok(())
    }

    /// What a key has spent, in micro-USD, over all time (as far as its rows are written).
    ///
    /// # Errors
    /// On database failure.
    pub async fn spent(&self, key: &str) -> Result<i64, StoreError> {
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql("SELECT cost_micros FROM key_spend WHERE key = ?1");
            let row = sqlx::query(&sql).bind(key).fetch_optional(pool).await?;
            Ok(match row {
                Some(row) => row.int("cost_micros")?,
                None => 0,
            })
        })
    }

    /// What every key together has spent, in micro-USD, over all time.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spent_by_all(&self) -> Result<i64, StoreError> {
        on_backend!(self, |pool, _dialect| {
            let row = sqlx::query("SELECT CAST(SUM(cost_micros) AS BIGINT) AS cost FROM key_spend")
                .fetch_one(pool)
                .await?;
            Ok(row.maybe_int("cost")?.unwrap_or(0))
        })
    }

    /// Totals since `since_ms` (Unix milliseconds): overall, by UTC day (`YYYY-MM-DD`), by
    /// model (most requests first), by key.
    ///
    /// # Errors
    /// On database failure.
    pub async fn activity(
        &self,
        since_ms: u64,
    ) -> Result<
        (
            UsageTotals,
            Vec<UsageGroup>,
            Vec<UsageGroup>,
            Vec<UsageGroup>,
        ),
        StoreError,
    > {
        let since = to_i64(since_ms);
        on_backend!(self, |pool, dialect| {
            let overall = dialect
                .sql(&format!("SELECT {TOTALS} FROM usage WHERE at_ms >= ?1"))
                .into_owned();
            let overall = sqlx::query(&overall).bind(since).fetch_one(pool).await?;
            let grouped = |expression: &str, order: &str| {
                dialect
                    .sql(&format!(
                        "SELECT {expression} AS name, {TOTALS} FROM usage WHERE at_ms >= ?1
                         GROUP BY name ORDER BY {order}"
                    ))
                    .into_owned()
            };
            let mut groups = Vec::new();
            for query in [
                grouped(&dialect.utc_day("at_ms"), "name"),
                grouped("model", "requests DESC, name"),
                grouped("key", "requests DESC, name"),
            ] {
                let rows = sqlx::query(&query).bind(since).fetch_all(pool).await?;
                groups.push(
                    rows.iter()
                        .map(|row| {
                            Ok(UsageGroup {
                                name: row.text("name")?,
                                totals: totals(row)?,
                            })
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?,
                );
            }
            let keys = groups.pop().unwrap_or_default();
            let models = groups.pop().unwrap_or_default();
            let days = groups.pop().unwrap_or_default();
            Ok((totals(&overall)?, days, models, keys))
        })
    }

    /// The rows of a key, oldest first (for tests and audits).
    ///
    /// # Errors
    /// On database failure.
    pub async fn usage_of(&self, key: &str) -> Result<Vec<UsageRow>, StoreError> {
        on_backend!(self, |pool, dialect| {
            let sql = dialect.sql("SELECT * FROM usage WHERE key = ?1 ORDER BY at_ms, id");
            let rows = sqlx::query(&sql).bind(key).fetch_all(pool).await?;
            rows.iter().map(usage_row).collect()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, key: &str, model: &str, at_ms: u64, cost: i64) -> UsageRow {
        UsageRow {
            id: id.into(),
            at_ms,
            key: key.into(),
            model: model.into(),
            surface: "chat".into(),
            prompt_tokens: 10,
            output_tokens: 5,
            cost_micros: cost,
            status: "completed".into(),
            ..UsageRow::default()
        }
    }

    #[tokio::test]
    async fn rows_are_written_once_and_summed() {
        let store = Store::in_memory().await.unwrap();
        let day = 86_400_000;
        store
            .record_usage(&[
                row("r1", "key_a", "m1", day, 100),
                row("r2", "key_a", "m2", day + 5, 50),
                row("r3", "key_b", "m1", 2 * day, 7),
            ])
            .await
            .unwrap();
        // The same request again (a retried batch) changes nothing.
        store
            .record_usage(&[row("r1", "key_a", "m1", day, 999)])
            .await
            .unwrap();
        // A request's row written when it started is replaced, once, by its final row.
        let mut started = row("r4", "key_c", "m1", day, 0);
        started.status = "in_progress".into();
        store.record_usage(&[started]).await.unwrap();
        assert_eq!(
            store.usage_of("key_c").await.unwrap()[0].status,
            "in_progress"
        );
        store
            .record_usage(&[row("r4", "key_c", "m1", day, 40)])
            .await
            .unwrap();
        store
            .record_usage(&[row("r4", "key_c", "m1", day, 40)])
            .await
            .unwrap();
        assert_eq!(store.spent("key_c").await.unwrap(), 40);
        assert_eq!(
            store.usage_of("key_c").await.unwrap()[0].status,
            "completed"
        );
        assert_eq!(store.spent("key_a").await.unwrap(), 150);
        assert_eq!(store.spent("key_z").await.unwrap(), 0);
        let (total, days, models, keys) = store.activity(0).await.unwrap();
        assert_eq!(
            total,
            UsageTotals {
                requests: 4,
                cost_micros: 197,
                input_tokens: 40,
                output_tokens: 20
            }
        );
        assert_eq!(
            days.iter()
                .map(|g| (g.name.as_str(), g.totals.requests))
                .collect::<Vec<_>>(),
            [("1970-01-02", 3), ("1970-01-03", 1)]
        );
        assert_eq!(models[0].name, "m1");
        assert_eq!(models[0].totals.requests, 3);
        assert_eq!(keys[0].name, "key_a");
        let (recent, ..) = store.activity(2 * day).await.unwrap();
        assert_eq!(recent.requests, 1);
        assert_eq!(store.usage_of("key_a").await.unwrap()[0].cost_micros, 100);
    }
}
