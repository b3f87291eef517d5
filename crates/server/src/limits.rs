//! Rate limits per key, per model and server-wide: requests per minute, tokens per minute (the
//! prompt's estimate plus `max_tokens` reserved up front, then corrected to what the request
//! really used) and requests at once. Minutes are fixed UTC windows, so each limit resets on
//! the minute; a refusal is a 429 `rate_limit_exceeded` with `Retry-After` and OpenAI's
//! `x-ratelimit-*` headers, which successful answers carry too.
//!
//! The counts live in this process, or — with `[limits] redis` — in Redis, where one atomic
//! script checks and counts a request, so the limits hold across every node sharing it. A
//! request at once is an entry with a deadline ([`RUNNING_TTL`]) in a sorted set, so a node
//! that dies mid-request frees its slots when their deadline passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use switchboard_gateway::KeyLimits;
use switchboard_model::{Error, ErrorKind};

/// How long a running request holds its slot in Redis if its node never releases it.
pub const RUNNING_TTL: Duration = Duration::from_secs(600);

#[derive(Default, Debug)]
struct Window {
    minute: u64,
    requests: u32,
    tokens: u32,
    running: u32,
}

enum Backend {
    Local(Mutex<HashMap<String, Window>>),
    Redis(redis::aio::ConnectionManager),
}

/// Every scope's current window, here or in Redis.
pub struct Limiter {
    backend: Backend,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            backend: Backend::Local(Mutex::new(HashMap::new())),
        }
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Local(_) => "Limiter(local)",
            Backend::Redis(_) => "Limiter(redis)",
        })
    }
}

/// A request let through: the headers to answer with, and its hold on the limits (released
/// when dropped, which the usage tracker does when the request ends).
#[derive(Debug)]
pub struct Admission {
    pub headers: HeaderMap,
    pub permit: Option<Permit>,
}

/// A request refused: the 429 and the headers it carries.
#[derive(Debug)]
pub struct Refusal {
    pub error: Error,
    pub headers: HeaderMap,
}

/// One admitted request's share of its scope's window.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    scope: String,
    minute: u64,
    reserved: u32,
    /// Its entry among the scope's running requests, when they are counted.
    running: Option<String>,
}

/// Checks and counts one request atomically: refuses it (1 running, 2 requests, 3 tokens)
/// or counts it; answers the code and the window's requests and tokens afterwards.
static ADMIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local rpm, tpm, conc, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now_ms, deadline, id = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local requests = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local used = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[2]) >= conc then return {1, requests, used} end
end
if rpm > 0 and requests >= rpm then return {2, requests, used} end
if tpm > 0 and used > 0 and used + tokens > tpm then return {3, requests, used} end
redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('HINCRBY', KEYS[1], 't', tokens)
redis.call('EXPIRE', KEYS[1], 120)
if conc > 0 then
  redis.call('ZADD', KEYS[2], deadline, id)
  redis.call('PEXPIRE', KEYS[2], deadline - now_ms)
end
return {0, requests + 1, used + tokens}
",
    )
});

fn window_key(scope: &str, minute: u64) -> String {
    format!("switchboard:limits:{{{scope}}}:{minute}")
}

fn running_key(scope: &str) -> String {
    format!("switchboard:limits:{{{scope}}}:running")
}

impl Limiter {
    /// Limits counted in Redis, shared by every node that uses it.
    #[must_use]
    pub fn redis(connection: redis::aio::ConnectionManager) -> Self {
        Self {
            backend: Backend::Redis(connection),
        }
    }

    fn local(&self) -> Option<std::sync::MutexGuard<'_, HashMap<String, Window>>> {
        match &self.backend {
            Backend::Local(windows) => Some(windows.lock().unwrap_or_else(PoisonError::into_inner)),
            Backend::Redis(_) => None,
        }
    }

    /// Admits a request of `scope` that may use `tokens`, or refuses it.
    ///
    /// # Errors
    /// `RateLimited` (429) naming the limit, with the wait until it resets, and the headers
    /// the refusal carries; `Overloaded` (503, retryable) when Redis fails.
    pub async fn admit(
        self: &Arc<Self>,
        scope: &str,
        limits: KeyLimits,
        tokens: u32,
    ) -> Result<Admission, Box<Refusal>> {
        if limits.requests_per_minute.is_none()
            && limits.tokens_per_minute.is_none()
            && limits.max_concurrent.is_none()
        {
            return Ok(Admission {
                headers: HeaderMap::new(),
                permit: None,
            });
        }
        let now = crate::since_epoch();
        let seconds = now.as_secs();
        let minute = seconds / 60;
        let reset = 60 - seconds % 60;
        let counts_running = limits.max_concurrent.is_some();
        let running_id = counts_running.then(|| uuid::Uuid::new_v4().simple().to_string());
        let (code, requests, used) = match &self.backend {
            Backend::Local(_) => self.admit_here(scope, limits, tokens, minute),
            Backend::Redis(connection) => {
                let mut connection = connection.clone();
                let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
                let deadline = now_ms + u64::try_from(RUNNING_TTL.as_millis()).unwrap_or(0);
                let answer: Result<(u32, u32, u32), redis::RedisError> = ADMIT
                    .key(window_key(scope, minute))
                    .key(running_key(scope))
                    .arg(limits.requests_per_minute.unwrap_or(0))
                    .arg(limits.tokens_per_minute.unwrap_or(0))
                    .arg(limits.max_concurrent.unwrap_or(0))
                    .arg(tokens)
                    .arg(now_ms)
                    .arg(deadline)
                    .arg(running_id.clone().unwrap_or_default())
                    .invoke_async(&mut connection)
                    .await;
                answer.map_err(|e| {
                    // Fail closed, but as a retryable 503: the limits cannot be checked.
                    tracing::error!(error = %e, "the Redis rate limiter failed");
                    Box::new(Refusal {
                        error: Error::new(
                            ErrorKind::Overloaded,
                            "Rate limits cannot be checked right now; retry shortly.",
                        )
                        .retryable(Some(Duration::from_secs(1))),
                        headers: HeaderMap::new(),
                    })
                })?
            }
        };
        let headers = headers_for(limits, requests, used, reset);
        let refusal = match code {
            1 => Some((
                "This API key has as many requests running as it may; retry when one ends.",
                1,
            )),
            2 => Some(("This API key reached its requests-per-minute limit.", reset)),
            3 => Some(("This API key reached its tokens-per-minute limit.", reset)),
            _ => None,
        };
        if let Some((message, wait)) = refusal {
            let error = Error::new(ErrorKind::RateLimited, message)
                .with_code("rate_limit_exceeded")
                .retryable(Some(Duration::from_secs(wait)));
            return Err(Box::new(Refusal { error, headers }));
        }
        Ok(Admission {
            headers,
            permit: Some(Permit {
                limiter: Arc::clone(self),
                scope: scope.to_owned(),
                minute,
                reserved: tokens,
                running: running_id,
            }),
        })
    }

    /// The in-process twin of [`ADMIT`].
    fn admit_here(
        &self,
        scope: &str,
        limits: KeyLimits,
        tokens: u32,
        minute: u64,
    ) -> (u32, u32, u32) {
        let Some(mut windows) = self.local() else {
            return (0, 0, 0);
        };
        let window = windows.entry(scope.to_owned()).or_default();
        if window.minute != minute {
            window.minute = minute;
            window.requests = 0;
            window.tokens = 0;
        }
        let code = if limits
            .max_concurrent
            .is_some_and(|max| window.running >= max)
        {
            1
        } else if limits
            .requests_per_minute
            .is_some_and(|max| window.requests >= max)
        {
            2
        } else if limits
            .tokens_per_minute
            .is_some_and(|max| window.tokens > 0 && window.tokens.saturating_add(tokens) > max)
        {
            3
        } else {
            0
        };
        if code == 0 {
            window.requests += 1;
            window.tokens = window.tokens.saturating_add(tokens);
            if limits.max_concurrent.is_some() {
                window.running += 1;
            }
        }
        (code, window.requests, window.tokens)
    }
}

impl Permit {
    /// The request was refused after this admission (by another scope's limit): it takes
    /// back the request and the tokens it counted.
    pub fn refund(mut self) {
        let tokens = i64::from(self.reserved);
        self.reserved = 0;
        self.adjust(-1, -tokens);
    }

    /// The request really used `tokens`: the window keeps that instead of the reservation.
    pub fn settle(&mut self, tokens: u32) {
        let delta = i64::from(tokens) - i64::from(self.reserved);
        self.reserved = tokens;
        if delta != 0 {
            self.adjust(0, delta);
        }
    }

    /// Moves the counts of this permit's window (here, or in Redis off the request's path).
    fn adjust(&self, requests: i64, tokens: i64) {
        if let Some(mut windows) = self.limiter.local() {
            if let Some(window) = windows
                .get_mut(&self.scope)
                .filter(|window| window.minute == self.minute)
            {
                let shift = |count: u32, by: i64| {
                    u32::try_from((i64::from(count) + by).max(0)).unwrap_or(u32::MAX)
                };
                window.requests = shift(window.requests, requests);
                window.tokens = shift(window.tokens, tokens);
            }
            return;
        }
        if let Backend::Redis(connection) = &self.limiter.backend {
            let mut connection = connection.clone();
            let key = window_key(&self.scope, self.minute);
            spawn(async move {
                let mut pipe = redis::pipe();
                for (field, by) in [("r", requests), ("t", tokens)] {
                    if by != 0 {
                        pipe.cmd("HINCRBY").arg(&key).arg(field).arg(by);
                    }
                }
                let _: Result<(), _> = pipe.query_async(&mut connection).await;
            });
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(id) = self.running.take() else {
            return;
        };
        if let Some(mut windows) = self.limiter.local() {
            if let Some(window) = windows.get_mut(&self.scope) {
                window.running = window.running.saturating_sub(1);
            }
            return;
        }
        if let Backend::Redis(connection) = &self.limiter.backend {
            let mut connection = connection.clone();
            let key = running_key(&self.scope);
            spawn(async move {
                let _: Result<(), _> = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut connection)
                    .await;
            });
        }
    }
}

/// Runs `task` on the current runtime, when there is one (a permit dropped at shutdown leaves
/// its Redis entry to expire).
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// OpenAI's rate-limit headers for the limits a scope has.
fn headers_for(limits: KeyLimits, requests: u32, tokens: u32, reset: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    if let Some(max) = limits.requests_per_minute {
        put("x-ratelimit-limit-requests", max.to_string());
        put(
            "x-ratelimit-remaining-requests",
            max.saturating_sub(requests).to_string(),
        );
        put("x-ratelimit-reset-requests", format!("{reset}s"));
    }
    if let Some(max) = limits.tokens_per_minute {
        put("x-ratelimit-limit-tokens", max.to_string());
        put(
            "x-ratelimit-remaining-tokens",
            max.saturating_sub(tokens).to_string(),
        );
        put("x-ratelimit-reset-tokens", format!("{reset}s"));
    }
    headers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A refund gives back the request and its tokens (in Redis off the request's path, so
    /// the second admission may take a moment there).
    async fn a_refund_gives_back_the_request_and_its_tokens(limiter: Arc<Limiter>) {
        let limits = KeyLimits {
            requests_per_minute: Some(1),
            tokens_per_minute: Some(100),
            max_concurrent: None,
        };
        let permit = limiter
            .admit("k", limits, 60)
            .await
            .unwrap()
            .permit
            .unwrap();
        // Refused by a later scope: as if it never came.
        permit.refund();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let again = loop {
            match limiter.admit("k", limits, 60).await {
                Ok(again) => break again,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(refusal) => panic!("not refunded: {}", refusal.error.message),
            }
        };
        assert_eq!(again.headers["x-ratelimit-remaining-requests"], "0");
        assert_eq!(again.headers["x-ratelimit-remaining-tokens"], "40");
    }

    #[tokio::test]
    async fn a_refund_gives_back_what_it_counted_here() {
        a_refund_gives_back_the_request_and_its_tokens(Arc::new(Limiter::default())).await;
    }

    #[tokio::test]
    async fn a_refund_gives_back_what_it_counted_in_redis() {
        let Some(redis) = switchboard_testkit::servers::Redis::start() else {
            return;
        };
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
        a_refund_gives_back_the_request_and_its_tokens(Arc::new(Limiter::redis(connection))).await;
    }

    #[tokio::test]
    async fn each_limit_refuses_past_its_count_and_frees_what_ends() {
        let limiter = Arc::new(Limiter::default());
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            tokens_per_minute: Some(1_000),
            max_concurrent: Some(2),
        };
        let first = limiter.admit("k", limits, 100).await.unwrap();
        assert_eq!(first.headers["x-ratelimit-remaining-requests"], "2");
        assert_eq!(first.headers["x-ratelimit-remaining-tokens"], "900");
        let second = limiter.admit("k", limits, 100).await.unwrap();
        let refused = limiter.admit("k", limits, 100).await.err().unwrap().error;
        assert!(refused.message.contains("running"), "{}", refused.message);
        drop(first);
        let mut third = limiter
            .admit("k", limits, 100)
            .await
            .unwrap()
            .permit
            .unwrap();
        // The reservation is corrected to what was used.
        third.settle(700);
        drop(third);
        drop(second);
        let Refusal {
            error: refused,
            headers,
        } = *limiter.admit("k", limits, 100).await.err().unwrap();
        assert_eq!(refused.kind, ErrorKind::RateLimited);
        assert!(refused.message.contains("requests-per-minute"));
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert!(refused.retry_after.is_some());
        // Other scopes have windows of their own; a scope without limits is never refused.
        let tokens = KeyLimits {
            tokens_per_minute: Some(500),
            ..KeyLimits::default()
        };
        assert!(limiter.admit("t", tokens, 400).await.is_ok());
        let refused = limiter.admit("t", tokens, 200).await.err().unwrap().error;
        assert!(refused.message.contains("tokens-per-minute"));
        for _ in 0..10 {
            assert!(limiter
                .admit("free", KeyLimits::default(), 10_000)
                .await
                .is_ok());
        }
    }
}
