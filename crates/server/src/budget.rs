//! Each managed key's credit: what it has spent, and what the requests it has running hold.
//!
//! A request of a key with a credit limit is admitted only while the key's spend plus the holds
//! of its running requests is under the limit (else 402 before any provider is called), and
//! holds its estimated cost (the prompt's estimate at the input price plus `max_tokens` at the
//! output price) until it ends; then the hold is released and its real cost added. So a burst
//! of requests cannot all start on the same last cent, while one request that starts under the
//! limit always finishes (and is charged in full).
//!
//! One node keeps a key's spend as the store's running total (read again at most every
//! [`STORE_REFRESH`]) plus what it recorded since, and its holds in memory. Nodes sharing Redis
//! (`[limits] redis`) keep one counter per key and its holds there (atomic scripts), so a
//! budget holds across nodes the moment a request starts or ends. The counter is filled from the
//! store when missing and expires after [`REDIS_RESYNC`] (a counter that missed an addition is
//! corrected from the rows); a hold whose node died expires after [`HOLD_TTL`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use switchboard_model::{Error, ErrorKind};
use switchboard_store::Store;

/// How stale a node's own view of a key's stored spend may get.
pub const STORE_REFRESH: Duration = Duration::from_secs(1);
/// How long a key's counter in Redis lives before it is rebuilt from the store.
pub const REDIS_RESYNC: Duration = Duration::from_secs(300);
/// How long a hold lasts in Redis if its node never releases it.
pub const HOLD_TTL: Duration = crate::limits::RUNNING_TTL;

/// Admits a request against a key's spend plus its live holds, and holds its estimate:
/// answers {-1} when the spend counter is missing (the caller fills it and asks again), else
/// {0 or 1 (refused), spend plus holds before this request}.
static RESERVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local limit, estimate, now_ms, deadline, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local spent = redis.call('GET', KEYS[1])
if not spent then return {-1, 0} end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms)
for _, gone in ipairs(expired) do redis.call('HDEL', KEYS[3], gone) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local total = tonumber(spent)
for _, held in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(held) end
if total >= limit then return {1, total} end
if estimate > 0 then
  redis.call('ZADD', KEYS[2], deadline, id)
  redis.call('HSET', KEYS[3], id, estimate)
  redis.call('PEXPIRE', KEYS[2], deadline - now_ms)
  redis.call('PEXPIRE', KEYS[3], deadline - now_ms)
end
return {0, total}
",
    )
});

/// Releases a hold (ARGV[2]) and adds the request's cost (ARGV[1]) to the counter while it
/// exists (a missing one is rebuilt from the store, which will hold it too).
static SETTLE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if tonumber(ARGV[1]) ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 0
",
    )
});

struct Seen {
    stored: i64,
    read_at: Instant,
    /// Recorded here since the store was read.
    since: i64,
}

#[derive(Default)]
struct LocalState {
    seen: HashMap<String, Seen>,
    /// Each key's holds together.
    held: HashMap<String, i64>,
}

enum Backend {
    Local(Mutex<LocalState>),
    Redis(redis::aio::ConnectionManager),
}

/// Each key's spend and holds, in micro-USD.
pub struct Budgets {
    store: Store,
    backend: Backend,
}

/// A running request's hold on its key's credit, given back by [`Budgets::settle`].
#[derive(Debug)]
pub struct CreditHold {
    id: String,
    micros: i64,
}

fn keys_of(key: &str) -> [String; 3] {
    [
        format!("switchboard:spent:{{{key}}}"),
        format!("switchboard:holds:{{{key}}}:deadlines"),
        format!("switchboard:holds:{{{key}}}:amounts"),
    ]
}

fn store_failed(error: switchboard_store::StoreError) -> Error {
    cannot_check(&format!("reading a key's spend failed: {error}"))
}

fn redis_failed(error: &redis::RedisError) -> Error {
    cannot_check(&format!("checking a key's credit in Redis failed: {error}"))
}

/// Fails closed, as a retryable 503: the budget cannot be checked.
fn cannot_check(why: &str) -> Error {
    tracing::error!(why, "a credit limit cannot be checked");
    Error::new(
        ErrorKind::Overloaded,
        "Credit limits cannot be checked right now; retry shortly.",
    )
    .retryable(Some(Duration::from_secs(1)))
}

fn out_of_credit() -> Error {
    Error::new(
        ErrorKind::InsufficientQuota,
        "This API key has used up its credit limit; raise the limit or use another key.",
    )
    .with_code("insufficient_quota")
}

impl Budgets {
    /// Spend and holds kept by this node.
    #[must_use]
    pub fn local(store: Store) -> Self {
        Self {
            store,
            backend: Backend::Local(Mutex::new(LocalState::default())),
        }
    }

    /// Spend and holds shared through Redis.
    #[must_use]
    pub fn redis(store: Store, connection: redis::aio::ConnectionManager) -> Self {
        Self {
            store,
            backend: Backend::Redis(connection),
        }
    }

    /// Admits a request of `key` expected to cost `estimate`, against `limit`, and holds the
    /// estimate until [`Budgets::settle`].
    ///
    /// # Errors
    /// `InsufficientQuota` (402) when the key's spend and holds reach its limit; `Overloaded`
    /// (503, retryable) when the store or Redis fails.
    pub async fn reserve(&self, key: &str, limit: i64, estimate: i64) -> Result<CreditHold, Error> {
        let estimate = estimate.max(0);
        let hold = CreditHold {
            id: uuid::Uuid::new_v4().simple().to_string(),
            micros: estimate,
        };
        match &self.backend {
            Backend::Local(state) => {
                let spent = self.spent_here(state, key).await?;
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                let held = state.held.entry(key.to_owned()).or_default();
                if spent + *held >= limit {
                    return Err(out_of_credit());
                }
                *held += estimate;
                Ok(hold)
            }
            Backend::Redis(connection) => {
                let mut connection = connection.clone();
                let [spent_key, deadlines, amounts] = keys_of(key);
                for attempt in 0..2 {
                    let now = crate::unix_now_ms();
                    let deadline = now + u64::try_from(HOLD_TTL.as_millis()).unwrap_or(0);
                    let (code, _total): (i64, i64) = RESERVE
                        .key(&spent_key)
                        .key(&deadlines)
                        .key(&amounts)
                        .arg(limit)
                        .arg(estimate)
                        .arg(now)
                        .arg(deadline)
                        .arg(&hold.id)
                        .invoke_async(&mut connection)
                        .await
                        .map_err(|e| redis_failed(&e))?;
                    match code {
                        0 => return Ok(hold),
                        1 => return Err(out_of_credit()),
                        _ if attempt == 0 => {
                            let stored = self.store.spent(key).await.map_err(store_failed)?;
                            // Another node may have filled it meanwhile: keep theirs.
                            let _: Option<String> = redis::cmd("SET")
                                .arg(&spent_key)
                                .arg(stored)
                                .arg("NX")
                                .arg("EX")
                                .arg(REDIS_RESYNC.as_secs())
                                .query_async(&mut connection)
                                .await
                                .map_err(|e| redis_failed(&e))?;
                        }
                        _ => {}
                    }
                }
                Err(cannot_check(
                    "the key's spend counter stays missing in Redis",
                ))
            }
        }
    }

    /// This node's view of what `key` has spent (local backend).
    async fn spent_here(&self, state: &Mutex<LocalState>, key: &str) -> Result<i64, Error> {
        let known = {
            let state = state.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .seen
                .get(key)
                .filter(|s| s.read_at.elapsed() < STORE_REFRESH)
                .map(|s| s.stored + s.since)
        };
        if let Some(spent) = known {
            return Ok(spent);
        }
        let stored = self.store.spent(key).await.map_err(store_failed)?;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .insert(
                key.to_owned(),
                Seen {
                    stored,
                    read_at: Instant::now(),
                    since: 0,
                },
            );
        Ok(stored)
    }

    /// A request of `key` that held `hold` ended costing `micros`: the hold is released and the
    /// cost added. (Requests of keys without a credit limit hold nothing and settle nothing:
    /// their spend reaches a budget through the store.)
    pub fn settle(&self, key: &str, hold: CreditHold, micros: i64) {
        match &self.backend {
            Backend::Local(state) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(held) = state.held.get_mut(key) {
                    *held = (*held - hold.micros).max(0);
                }
                if let Some(seen) = state.seen.get_mut(key) {
                    seen.since += micros;
                }
            }
            Backend::Redis(connection) => {
                let mut connection = connection.clone();
                let [spent_key, deadlines, amounts] = keys_of(key);
                let id = hold.id;
                // Off the request's path; a lost addition is corrected at the next resync and a
                // lost release when the hold expires.
                tokio::spawn(async move {
                    let settled: Result<i64, _> = SETTLE
                        .key(spent_key)
                        .key(deadlines)
                        .key(amounts)
                        .arg(micros)
                        .arg(id)
                        .invoke_async(&mut connection)
                        .await;
                    if let Err(error) = settled {
                        tracing::warn!(%error, "settling a key's credit in Redis failed");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Spend 0, limit 100: two requests holding 80 each get in (the second saw 80 < 100), a
    /// third is refused; once the first ends costing 10, one more fits.
    async fn holds_bound_a_burst(budgets: &Budgets) {
        let first = budgets.reserve("key_b", 100, 80).await.unwrap();
        let _second = budgets.reserve("key_b", 100, 80).await.unwrap();
        let refused = budgets.reserve("key_b", 100, 80).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InsufficientQuota);
        budgets.settle("key_b", first, 10);
        // The Redis settlement runs in the background.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match budgets.reserve("key_b", 100, 0).await {
                Err(e) if e.kind == ErrorKind::InsufficientQuota && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => {
                    other.unwrap();
                    break;
                }
            }
        }
    }

    #[tokio::test]
    async fn holds_bound_a_burst_on_one_node() {
        let store = Store::in_memory().await.unwrap();
        holds_bound_a_burst(&Budgets::local(store)).await;
    }

    #[tokio::test]
    async fn holds_bound_a_burst_across_nodes_sharing_redis() {
        let Some(redis) = switchboard_testkit::servers::Redis::start() else {
            return;
        };
        let store = Store::in_memory().await.unwrap();
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
        holds_bound_a_burst(&Budgets::redis(store, connection)).await;
    }
}
