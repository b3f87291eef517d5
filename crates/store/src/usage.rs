//! Usage rows: one per request, whatever its ending, with the cost priced from the catalog.
//! Written in batches off the request path (see the server's recorder); read back as totals for
//! a key's spend and for the activity report.

use sqlx::Row;

use crate::{Store, StoreError};

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
    /// `completed`, `length`, `failed`, `cancelled`, `rejected`.
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

fn totals(row: &sqlx::sqlite::SqliteRow) -> Result<UsageTotals, StoreError> {
    let count = |key: &str| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.try_get::<Option<i64>, _>(key)?.unwrap_or(0)).unwrap_or(0))
    };
    Ok(UsageTotals {
        requests: count("requests")?,
        cost_micros: row.try_get::<Option<i64>, _>("cost")?.unwrap_or(0),
        input_tokens: count("input_tokens")?,
        output_tokens: count("output_tokens")?,
    })
}

const TOTALS: &str = "COUNT(*) AS requests, SUM(cost_micros) AS cost,
    SUM(prompt_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens";

impl Store {
    /// Writes rows in one transaction; a row whose id is already stored is left as it was.
    ///
    /// # Errors
    /// On database failure (then none of the batch is written).
    pub async fn record_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO usage (id, at_ms, key, model, provider, surface, prompt_tokens,
                     cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, searches,
                     cost_micros, latency_ms, ttft_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT(id) DO NOTHING",
            )
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
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// What a key has spent, in micro-USD, over all time.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spent(&self, key: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT SUM(cost_micros) AS cost FROM usage WHERE key = ?1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("cost")?.unwrap_or(0))
    }

    /// What every key together has spent, in micro-USD, over all time.
    ///
    /// # Errors
    /// On database failure.
    pub async fn spent_by_all(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT SUM(cost_micros) AS cost FROM usage")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("cost")?.unwrap_or(0))
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
        let overall = sqlx::query(&format!("SELECT {TOTALS} FROM usage WHERE at_ms >= ?1"))
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        let grouped = |expression: &str, order: &str| {
            format!(
                "SELECT {expression} AS name, {TOTALS} FROM usage WHERE at_ms >= ?1
                 GROUP BY name ORDER BY {order}"
            )
        };
        let mut groups = Vec::new();
        for query in [
            grouped("date(at_ms / 1000, 'unixepoch')", "name"),
            grouped("model", "requests DESC, name"),
            grouped("key", "requests DESC, name"),
        ] {
            let rows = sqlx::query(&query)
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
            groups.push(
                rows.iter()
                    .map(|row| {
                        Ok(UsageGroup {
                            name: row.try_get("name")?,
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
    }

    /// The rows of a key, oldest first (for tests and audits).
    ///
    /// # Errors
    /// On database failure.
    pub async fn usage_of(&self, key: &str) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM usage WHERE key = ?1 ORDER BY at_ms, id")
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let count = |key: &str| -> Result<u32, StoreError> {
                    Ok(u32::try_from(row.try_get::<i64, _>(key)?).unwrap_or(0))
                };
                let millis = |key: &str| -> Result<u64, StoreError> {
                    Ok(u64::try_from(row.try_get::<i64, _>(key)?).unwrap_or(0))
                };
                Ok(UsageRow {
                    id: row.try_get("id")?,
                    at_ms: millis("at_ms")?,
                    key: row.try_get("key")?,
                    model: row.try_get("model")?,
                    provider: row.try_get("provider")?,
                    surface: row.try_get("surface")?,
                    prompt_tokens: count("prompt_tokens")?,
                    cached_tokens: count("cached_tokens")?,
                    cache_write_tokens: count("cache_write_tokens")?,
                    output_tokens: count("output_tokens")?,
                    reasoning_tokens: count("reasoning_tokens")?,
                    searches: count("searches")?,
                    cost_micros: row.try_get("cost_micros")?,
                    latency_ms: millis("latency_ms")?,
                    ttft_ms: row
                        .try_get::<Option<i64>, _>("ttft_ms")?
                        .and_then(|v| u64::try_from(v).ok()),
                    status: row.try_get("status")?,
                })
            })
            .collect()
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
        assert_eq!(store.spent("key_a").await.unwrap(), 150);
        assert_eq!(store.spent("key_z").await.unwrap(), 0);
        let (total, days, models, keys) = store.activity(0).await.unwrap();
        assert_eq!(
            total,
            UsageTotals {
                requests: 3,
                cost_micros: 157,
                input_tokens: 30,
                output_tokens: 15
            }
        );
        assert_eq!(
            days.iter()
                .map(|g| (g.name.as_str(), g.totals.requests))
                .collect::<Vec<_>>(),
            [("1970-01-02", 2), ("1970-01-03", 1)]
        );
        assert_eq!(models[0].name, "m1");
        assert_eq!(models[0].totals.requests, 2);
        assert_eq!(keys[0].name, "key_a");
        let (recent, ..) = store.activity(2 * day).await.unwrap();
        assert_eq!(recent.requests, 1);
        assert_eq!(store.usage_of("key_a").await.unwrap()[0].cost_micros, 100);
    }
}
