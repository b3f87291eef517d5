//! What each managed key has spent, for its credit limit (402 before any provider is called).
//!
//! One node keeps a key's spend as the store's running total (read again at most every
//! [`STORE_REFRESH`]) plus what it recorded since. Nodes sharing Redis (`[limits] redis`) keep
//! one counter per key there instead, which every node adds each request's cost to as it ends
//! and reads before admitting one, so a budget holds across nodes the moment a request ends.
//! The counter is filled from the store when missing and expires after [`REDIS_RESYNC`], so a
//! counter that missed an addition (its key expired meanwhile) is corrected from the rows.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use switchboard_model::Error;
use switchboard_store::Store;

/// How stale a node's own view of a key's stored spend may get.
pub const STORE_REFRESH: Duration = Duration::from_secs(1);
/// How long a key's counter in Redis lives before it is rebuilt from the store.
pub const REDIS_RESYNC: Duration = Duration::from_secs(300);

/// Adds to a key's counter only while it exists (a missing one is rebuilt from the store,
/// which will hold this cost too).
const ADD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
";

struct Seen {
    stored: i64,
    read_at: Instant,
    /// Recorded here since the store was read.
    since: i64,
}

enum Backend {
    Local(Mutex<HashMap<String, Seen>>),
    Redis(redis::aio::ConnectionManager),
}

/// Each key's spend, in micro-USD.
pub struct Budgets {
    store: Store,
    backend: Backend,
}

fn spend_key(key: &str) -> String {
    format!("switchboard:spent:{{{key}}}")
}

fn store_failed(error: switchboard_store::StoreError) -> Error {
    Error::internal(format!("reading the key's spend: {error}"))
}

/// Fails closed, as a retryable 503: the budget cannot be checked.
fn redis_failed(error: &redis::RedisError) -> Error {
    tracing::error!(%error, "reading a key's spend from Redis failed");
    Error::new(
        switchboard_model::ErrorKind::Overloaded,
        "Credit limits cannot be checked right now; retry shortly.",
    )
    .retryable(Some(Duration::from_secs(1)))
}

impl Budgets {
    /// Spend kept by this node.
    #[must_use]
    pub fn local(store: Store) -> Self {
        Self {
            store,
            backend: Backend::Local(Mutex::new(HashMap::new())),
        }
    }

    /// Spend shared through Redis.
    #[must_use]
    pub fn redis(store: Store, connection: redis::aio::ConnectionManager) -> Self {
        Self {
            store,
            backend: Backend::Redis(connection),
        }
    }

    /// What `key` has spent so far.
    ///
    /// # Errors
    /// `Internal` when the store fails, `Overloaded` (503) when Redis does.
    pub async fn spent(&self, key: &str) -> Result<i64, Error> {
        match &self.backend {
            Backend::Local(seen) => {
                let known = {
                    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    seen.get(key)
                        .filter(|s| s.read_at.elapsed() < STORE_REFRESH)
                        .map(|s| s.stored + s.since)
                };
                if let Some(spent) = known {
                    return Ok(spent);
                }
                let stored = self.store.spent(key).await.map_err(store_failed)?;
                seen.lock().unwrap_or_else(PoisonError::into_inner).insert(
                    key.to_owned(),
                    Seen {
                        stored,
                        read_at: Instant::now(),
                        since: 0,
                    },
                );
                Ok(stored)
            }
            Backend::Redis(connection) => {
                let mut connection = connection.clone();
                let counter = spend_key(key);
                let known: Option<i64> = redis::cmd("GET")
                    .arg(&counter)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| redis_failed(&e))?;
                if let Some(spent) = known {
                    return Ok(spent);
                }
                let stored = self.store.spent(key).await.map_err(store_failed)?;
                // Another node may have filled it meanwhile: keep theirs.
                let _: Option<String> = redis::cmd("SET")
                    .arg(&counter)
                    .arg(stored)
                    .arg("NX")
                    .arg("EX")
                    .arg(REDIS_RESYNC.as_secs())
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| redis_failed(&e))?;
                let spent: Option<i64> = redis::cmd("GET")
                    .arg(&counter)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| redis_failed(&e))?;
                Ok(spent.unwrap_or(stored))
            }
        }
    }

    /// A request of `key` ended costing `micros`.
    pub fn add(&self, key: &str, micros: i64) {
        if micros == 0 {
            return;
        }
        match &self.backend {
            Backend::Local(seen) => {
                if let Some(seen) = seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(key)
                {
                    seen.since += micros;
                }
            }
            Backend::Redis(connection) => {
                let mut connection = connection.clone();
                let counter = spend_key(key);
                // Off the request's path; a lost addition is corrected at the next resync.
                tokio::spawn(async move {
                    let added: Result<Option<i64>, _> = redis::Script::new(ADD)
                        .key(counter)
                        .arg(micros)
                        .invoke_async(&mut connection)
                        .await;
                    if let Err(error) = added {
                        tracing::warn!(%error, "adding to a key's spend in Redis failed");
                    }
                });
            }
        }
    }
}
