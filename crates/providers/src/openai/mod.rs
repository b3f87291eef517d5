//! Any server that speaks OpenAI's Chat Completions wire as an upstream provider: OpenAI
//! itself, vLLM, SGLang, llama.cpp's server, Ollama, OpenRouter, another Switchboard.
//!
//! `request.rs` encodes the canonical request, `stream.rs` decodes the chunks; this module is
//! the HTTP exchange: one pooled client per provider, the key from the operator's environment,
//! timeouts for connecting, the first byte, each gap between chunks and the whole answer, and
//! upstream failures turned into canonical errors that say whose fault they are. `generate`
//! returns only once the first chunk has arrived, so everything that fails before the first
//! byte can still be retried or sent to another route.

pub mod request;
pub mod stream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::Value;
use switchboard_model::{Error, ErrorKind, Event, Request};
use tokio::time::{timeout, Instant};

use crate::{EventStream, Provider};
pub use request::encode_request;
pub use stream::ChunkDecoder;

/// How long each part of an upstream exchange may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the first chunk (the upstream's queue and prefill).
    pub first_byte: Duration,
    /// Between two chunks.
    pub idle: Duration,
    /// The whole answer.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(1800),
        }
    }
}

/// One configured upstream.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The operator's name for it (`oai`), used in errors and logs.
    pub name: String,
    /// The API root as the official SDK's `base_url` takes it (`…/v1`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; never logged, never in an error.
    pub api_key: Option<String>,
    /// Extra headers sent with every request (`HTTP-Referer`, `X-Title`…).
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
}

pub struct OpenAiProvider {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// # Errors
    /// When the HTTP client cannot be built (the TLS set-up failed).
    pub fn new(config: OpenAiConfig) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| Error::internal(format!("HTTP client: {err}")))?;
        Ok(Self { config, client })
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    async fn start(&self, request: Arc<Request>) -> Result<EventStream, Error> {
        let name = &self.config.name;
        let body = encode_request(&request, &request.model);
        let mut call = self
            .client
            .post(self.url())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = &self.config.api_key {
            call = call.bearer_auth(key);
        }
        for (header, value) in &self.config.headers {
            call = call.header(header, value);
        }
        if let Some(id) = &request.request_id {
            call = call.header("x-request-id", id);
        }
        let timeouts = self.config.timeouts;
        let deadline = Instant::now() + timeouts.total;
        let response = match timeout(timeouts.first_byte, call.send()).await {
            Err(_) => return Err(unreachable(name, "did not answer in time")),
            Ok(Err(err)) => {
                let what = if err.is_connect() {
                    "could not be reached"
                } else {
                    "failed while sending the request"
                };
                tracing::warn!(provider = %name, error = %err, "upstream request failed");
                return Err(unreachable(name, what));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = timeout(timeouts.idle, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(status_error(name, status.as_u16(), retry_after, &text));
        }
        let mut events = Box::pin(response.bytes_stream().eventsource());
        let mut pump = Pump {
            name: name.clone(),
            decoder: ChunkDecoder::default(),
            pending: VecDeque::new(),
            done: false,
            idle: timeouts.idle,
            deadline,
        };
        // Wait for the first chunk that carries something, so a failure before it can still
        // be retried or routed elsewhere.
        while pump.pending.is_empty() && !pump.done {
            let limit = timeouts.first_byte;
            match timeout(limit, events.next()).await {
                Err(_) => return Err(unreachable(name, "sent no data in time")),
                Ok(item) => {
                    if let Err(error) = pump.absorb(item) {
                        return Err(error.retryable(None));
                    }
                }
            }
        }
        let stream = futures::stream::unfold((pump, events), |(mut pump, mut events)| async move {
            loop {
                if let Some(item) = pump.pending.pop_front() {
                    return Some((item, (pump, events)));
                }
                if pump.done {
                    return None;
                }
                let limit = pump
                    .idle
                    .min(pump.deadline.saturating_duration_since(Instant::now()));
                let item = match timeout(limit, events.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        pump.done = true;
                        return Some((
                            Err(Error::new(
                                ErrorKind::Upstream,
                                format!("The upstream provider '{}' stopped sending.", pump.name),
                            )),
                            (pump, events),
                        ));
                    }
                };
                if let Err(error) = pump.absorb(item) {
                    pump.done = true;
                    return Some((Err(error), (pump, events)));
                }
            }
        });
        Ok(EventStream::new(stream))
    }
}

impl Provider for OpenAiProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        Box::pin(self.start(request))
    }
}

/// Decoded chunks waiting to be handed out, and whether the upstream has finished.
struct Pump {
    name: String,
    decoder: ChunkDecoder,
    pending: VecDeque<Result<Event, Error>>,
    done: bool,
    idle: Duration,
    deadline: Instant,
}

type SseItem =
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>;

impl Pump {
    /// Takes in one SSE item (or the end of the byte stream).
    fn absorb(&mut self, item: Option<SseItem>) -> Result<(), Error> {
        let malformed = |what: &str| {
            Error::new(
                ErrorKind::Upstream,
                format!("The upstream provider '{}' {what}.", self.name),
            )
        };
        match item {
            None => Err(malformed("closed the stream before it finished")),
            Some(Err(err)) => {
                tracing::warn!(provider = %self.name, error = %err, "upstream stream failed");
                Err(malformed("broke off the stream"))
            }
            Some(Ok(event)) => {
                let data = event.data.trim();
                if data.is_empty() {
                    return Ok(());
                }
                if data == "[DONE]" {
                    self.pending
                        .extend(self.decoder.finish().into_iter().map(Ok));
                    self.pending.push_back(Ok(Event::Done));
                    self.done = true;
                    return Ok(());
                }
                let chunk: Value = serde_json::from_str(data)
                    .map_err(|_| malformed("sent a chunk that is not JSON"))?;
                let events = self.decoder.push(&chunk)?;
                self.pending.extend(events.into_iter().map(Ok));
                Ok(())
            }
        }
    }
}

/// The upstream could not be reached or did not answer: retry, then fall back.
fn unreachable(name: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Upstream,
        format!("The upstream provider '{name}' {what}."),
    )
    .retryable(None)
}

/// An upstream error status in canonical terms: the client's fault keeps the upstream's words
/// (naming the provider); the operator's problems are 502s that reveal nothing secret.
fn status_error(name: &str, status: u16, retry_after: Option<Duration>, body: &str) -> Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let upstream_message = error
        .and_then(|e| e.get("message").or(Some(e)))
        .and_then(Value::as_str)
        .map_or_else(|| body.chars().take(300).collect::<String>(), str::to_owned);
    let field = |key: &str| {
        error
            .and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (param, code) = (field("param"), field("code"));
    let client_fault = |kind: ErrorKind| {
        let mut error = Error::new(
            kind,
            format!("The upstream provider '{name}' refused the request: {upstream_message}"),
        );
        error.param = param.clone();
        error.code = code.clone();
        error
    };
    match status {
        // Too long for the upstream's window: the same canonical error as the engine's, so
        // `truncation: auto` and clients' handling work alike on every provider.
        400 if code.as_deref() == Some("context_length_exceeded") => {
            client_fault(ErrorKind::ContextLengthExceeded)
        }
        400 | 422 => client_fault(ErrorKind::InvalidRequest),
        404 => client_fault(ErrorKind::NotFound),
        413 => client_fault(ErrorKind::PayloadTooLarge),
        401 | 403 => Error::new(
            ErrorKind::Upstream,
            format!("The upstream provider '{name}' refused this server's credentials ({status})."),
        ),
        429 => Error::new(
            ErrorKind::Overloaded,
            format!("The upstream provider '{name}' is rate limiting requests."),
        )
        .retryable(retry_after),
        408 | 409 | 500..=599 => Error::new(
            ErrorKind::Upstream,
            format!("The upstream provider '{name}' failed ({status})."),
        )
        .retryable(retry_after),
        _ => Error::new(
            ErrorKind::Upstream,
            format!(
                "The upstream provider '{name}' answered with an unexpected status ({status})."
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_model::ErrorKind;

    use super::status_error;

    #[test]
    fn upstream_statuses_say_whose_fault_they_are() {
        let body = r#"{"error": {"message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
        let too_long = status_error("up", 400, None, body);
        assert_eq!(too_long.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(too_long.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(too_long.param.as_deref(), Some("messages"));
        assert!(too_long.message.contains("'up'"));
        let bad = status_error("up", 422, None, r#"{"error": {"message": "nope"}}"#);
        assert_eq!(bad.kind, ErrorKind::InvalidRequest);
        assert!(!bad.retryable);
        let key = status_error(
            "up",
            401,
            None,
            r#"{"error": {"message": "Incorrect API key sk-abc"}}"#,
        );
        assert_eq!(key.kind, ErrorKind::Upstream);
        assert!(!key.message.contains("sk-abc"));
        let limited = status_error("up", 429, Some(Duration::from_secs(2)), "");
        assert_eq!(limited.kind, ErrorKind::Overloaded);
        assert!(limited.retryable);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(2)));
        let down = status_error("up", 503, None, "<html>bad gateway</html>");
        assert_eq!(down.kind, ErrorKind::Upstream);
        assert!(down.retryable);
    }
}
