//! Per-key rate limits, in this process: requests per minute, tokens per minute (the prompt's
//! estimate plus `max_tokens` reserved up front, then corrected to what the request really
//! used) and requests at once. Minutes are fixed UTC windows, so each limit resets on the
//! minute; a refusal is a 429 `rate_limit_exceeded` with `Retry-After` and OpenAI's
//! `x-ratelimit-*` headers, which successful answers carry too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use switchboard_gateway::KeyLimits;
use switchboard_model::{Error, ErrorKind};

#[derive(Default, Debug)]
struct Window {
    minute: u64,
    requests: u32,
    tokens: u32,
    running: u32,
}

/// Every key's current window.
#[derive(Default, Debug)]
pub struct Limiter {
    windows: Mutex<HashMap<String, Window>>,
}

/// A request let through: the headers to answer with, and its hold on the key's limits
/// (released when dropped, which the usage tracker does when the request ends).
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

/// One admitted request's share of its key's window.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    key: String,
    minute: u64,
    reserved: u32,
    counts_running: bool,
}

impl Permit {
    /// The request really used `tokens`: the window keeps that instead of the reservation.
    pub fn settle(&mut self, tokens: u32) {
        let mut windows = self.limiter.lock();
        if let Some(window) = windows.get_mut(&self.key) {
            if window.minute == self.minute {
                window.tokens = window
                    .tokens
                    .saturating_sub(self.reserved)
                    .saturating_add(tokens);
            }
        }
        self.reserved = tokens;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.counts_running {
            return;
        }
        let mut windows = self.limiter.lock();
        if let Some(window) = windows.get_mut(&self.key) {
            window.running = window.running.saturating_sub(1);
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request of `key` that may use `tokens`, or refuses it.
    ///
    /// # Errors
    /// `RateLimited` (429) naming the limit, with the wait until it resets, and the headers
    /// the refusal carries.
    pub fn admit(
        self: &Arc<Self>,
        key: &str,
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
        let now = now_seconds();
        let minute = now / 60;
        let reset = 60 - now % 60;
        let mut windows = self.lock();
        let window = windows.entry(key.to_owned()).or_default();
        if window.minute != minute {
            window.minute = minute;
            window.requests = 0;
            window.tokens = 0;
        }
        let refusal = if limits
            .max_concurrent
            .is_some_and(|max| window.running >= max)
        {
            Some((
                "This API key has as many requests running as it may; retry when one ends.",
                1,
            ))
        } else if limits
            .requests_per_minute
            .is_some_and(|max| window.requests >= max)
        {
            Some(("This API key reached its requests-per-minute limit.", reset))
        } else if limits
            .tokens_per_minute
            .is_some_and(|max| window.tokens.saturating_add(tokens) > max && window.tokens > 0)
        {
            Some(("This API key reached its tokens-per-minute limit.", reset))
        } else {
            None
        };
        if let Some((message, wait)) = refusal {
            let headers = headers_for(limits, window, reset);
            let error = Error::new(ErrorKind::RateLimited, message)
                .with_code("rate_limit_exceeded")
                .retryable(Some(std::time::Duration::from_secs(wait)));
            return Err(Box::new(Refusal { error, headers }));
        }
        window.requests += 1;
        window.tokens = window.tokens.saturating_add(tokens);
        let counts_running = limits.max_concurrent.is_some();
        if counts_running {
            window.running += 1;
        }
        let headers = headers_for(limits, window, reset);
        drop(windows);
        Ok(Admission {
            headers,
            permit: Some(Permit {
                limiter: Arc::clone(self),
                key: key.to_owned(),
                minute,
                reserved: tokens,
                counts_running,
            }),
        })
    }
}

/// OpenAI's rate-limit headers for the limits a key has.
fn headers_for(limits: KeyLimits, window: &Window, reset: u64) -> HeaderMap {
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
            max.saturating_sub(window.requests).to_string(),
        );
        put("x-ratelimit-reset-requests", format!("{reset}s"));
    }
    if let Some(max) = limits.tokens_per_minute {
        put("x-ratelimit-limit-tokens", max.to_string());
        put(
            "x-ratelimit-remaining-tokens",
            max.saturating_sub(window.tokens).to_string(),
        );
        put("x-ratelimit-reset-tokens", format!("{reset}s"));
    }
    headers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refuses_past_its_count_and_frees_what_ends() {
        let limiter = Arc::new(Limiter::default());
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            tokens_per_minute: Some(1_000),
            max_concurrent: Some(2),
        };
        let first = limiter.admit("k", limits, 100).unwrap();
        assert_eq!(first.headers["x-ratelimit-remaining-requests"], "2");
        assert_eq!(first.headers["x-ratelimit-remaining-tokens"], "900");
        let second = limiter.admit("k", limits, 100).unwrap();
        let refused = limiter.admit("k", limits, 100).err().unwrap().error;
        assert!(refused.message.contains("running"), "{}", refused.message);
        drop(first);
        let mut third = limiter.admit("k", limits, 100).unwrap().permit.unwrap();
        // The reservation is corrected to what was used.
        third.settle(700);
        drop(third);
        drop(second);
        let Refusal {
            error: refused,
            headers,
        } = *limiter.admit("k", limits, 100).err().unwrap();
        assert_eq!(refused.kind, ErrorKind::RateLimited);
        assert!(refused.message.contains("requests-per-minute"));
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert!(refused.retry_after.is_some());
        // Other keys have windows of their own; a key without limits is never refused.
        let tokens = KeyLimits {
            tokens_per_minute: Some(500),
            ..KeyLimits::default()
        };
        assert!(limiter.admit("t", tokens, 400).is_ok());
        let refused = limiter.admit("t", tokens, 200).err().unwrap().error;
        assert!(refused.message.contains("tokens-per-minute"));
        for _ in 0..10 {
            assert!(limiter.admit("free", KeyLimits::default(), 10_000).is_ok());
        }
    }
}
