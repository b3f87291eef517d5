//! The provider seam. Every provider — the embedded engine, and the upstream kinds to come —
//! implements [`Provider`]: from a canonical [`Request`] to an [`EventStream`] of
//! `Result<Event, Error>` whose end is explicit. A generation that completed ends with
//! `Ok(Event::Done)`; one that failed ends with `Err(error)`; a stream that simply stops has
//! failed (see [`EventStream::next`]). Errors before the first event (validation, overload,
//! an upstream refusing the request) come back from [`Provider::generate`] itself, so the
//! caller can still answer with an HTTP status, retry or fall back.
//!
//! Providers speak canonical types only; no client wire format reaches them, and none of
//! theirs leaves them.

pub mod anthropic;
pub mod fake;
pub mod fetch;
pub mod gemini;
pub mod http;
pub mod local;
pub mod openai;
pub mod openai_responses;
mod turns;

use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use switchboard_model::{Error, Event, Request};

/// A client's approximate location in the flat shape (`{"type": "approximate", "city",
/// "region", "country", "timezone"}`) that Anthropic's server tool and OpenAI's Responses tool
/// take, from either that shape or Chat's (the fields nested under `approximate`); `None` when
/// it names none of them.
#[must_use]
pub fn flat_location(location: &serde_json::Value) -> Option<serde_json::Value> {
    let fields = location.get("approximate").unwrap_or(location);
    let mut flat = serde_json::Map::new();
    flat.insert("type".into(), "approximate".into());
    for key in ["city", "region", "country", "timezone"] {
        if let Some(value) = fields.get(key).filter(|v| v.is_string()) {
            flat.insert(key.into(), value.clone());
        }
    }
    (flat.len() > 1).then_some(serde_json::Value::Object(flat))
}

/// How routing found the provider serving a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The route: the operator's name for the provider.
    pub route: String,
    /// Attempts that failed before the one that serves (retries and other routes together).
    pub failed_attempts: u32,
    /// Routes given up on before this one.
    pub fallbacks: u32,
    /// When routing first called a provider for this request (the gateway's own work ends
    /// there; from then on it waits on providers).
    pub first_call: std::time::Instant,
}

/// One generation's events. Dropping it cancels the generation.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>,
    ended: bool,
    /// How it is served, once routing chose a route.
    served: Option<Served>,
}

/// What the embedded engine is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Requests waiting for the scheduler.
    pub queued: usize,
    /// Requests in the running batch.
    pub running: usize,
}

impl EventStream {
    #[must_use]
    pub fn new(inner: impl Stream<Item = Result<Event, Error>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(inner),
            ended: false,
            served: None,
        }
    }

    /// Says how this generation is served (routing does; wrappers pass it on).
    #[must_use]
    pub fn served_by(mut self, served: Option<Served>) -> Self {
        self.served = served;
        self
    }

    /// How this generation is served, when routing said.
    #[must_use]
    pub fn served(&self) -> Option<&Served> {
        self.served.as_ref()
    }

    /// The route that serves this generation, when routing named one.
    #[must_use]
    pub fn route(&self) -> Option<&str> {
        self.served.as_ref().map(|s| s.route.as_str())
    }

    /// The next item; `None` after the end (`Ok(Event::Done)` or an `Err`). A provider stream
    /// that stops without either is reported once as an internal error, so a consumer never
    /// mistakes a truncated generation for a complete one.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        if self.ended {
            return None;
        }
        let item = self.inner.next().await.unwrap_or_else(|| {
            Err(Error::internal(
                "the provider's event stream ended without completing",
            ))
        });
        self.ended = matches!(item, Ok(Event::Done) | Err(_));
        Some(item)
    }
}

/// Something that can generate: the embedded engine, an upstream API, a test script.
pub trait Provider: Send + Sync {
    /// Starts generating. The request is shared so a provider may move it to another thread.
    ///
    /// # Errors
    /// Anything that stops the generation before its first event, in canonical terms.
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>>;

    /// The request's prompt size in tokens as this provider counts it, without generating;
    /// `None` where the provider has no way to count.
    ///
    /// # Errors
    /// What stops the count, in canonical terms (a request the provider refuses included).
    fn count_tokens(&self, _request: Arc<Request>) -> BoxFuture<'_, Result<Option<u32>, Error>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Whether the model is worth giving a `web_search` tool to choose its own queries (the
    /// gateway's search loop); otherwise the gateway searches once, for the last user message.
    /// Small local models call tools reliably only when made to, so they are searched for.
    fn chooses_its_own_searches(&self) -> bool {
        true
    }

    /// Its queue and batch, for a provider that has them (the embedded engine).
    fn load(&self) -> Option<Load> {
        None
    }
}
