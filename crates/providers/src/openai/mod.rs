//! Any server that speaks OpenAI's Chat Completions wire as an upstream provider: OpenAI
//! itself, vLLM, SGLang, llama.cpp's server, Ollama, OpenRouter, another Switchboard.
//!
//! `request.rs` encodes the canonical request, `stream.rs` decodes the chunks; this module
//! sends it (through [`crate::http`]) and turns upstream failures into canonical errors that
//! say whose fault they are.

pub mod request;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use switchboard_model::{Error, ErrorKind, Event, Request};

pub use crate::http::Timeouts;
use crate::http::{self, SseDecoder, UpstreamConfig};
use crate::{EventStream, Provider};
pub use request::encode_request;
pub use stream::ChunkDecoder;

/// One configured OpenAI-compatible upstream.
pub type OpenAiConfig = UpstreamConfig;

pub struct OpenAiProvider {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// # Errors
    /// When the HTTP client cannot be built (the TLS set-up failed).
    pub fn new(config: OpenAiConfig) -> Result<Self, Error> {
        let client = http::client(&config.timeouts)?;
        Ok(Self { config, client })
    }

    async fn start(&self, request: Arc<Request>) -> Result<EventStream, Error> {
        request::refuse_unsendable(&request)?;
        let body = encode_request(&request, &request.model);
        let decoder = Chunks {
            name: self.config.name.clone(),
            decoder: ChunkDecoder::default(),
        };
        post_stream(
            &self.config,
            &self.client,
            "chat/completions",
            &body,
            request.request_id.as_deref(),
            decoder,
        )
        .await
    }
}

/// Posts `body` to `{base_url}/{path}` with OpenAI's Bearer authentication and decodes the
/// SSE answer with `decoder`; errors worded by [`status_error`]. Both OpenAI wires (Chat
/// Completions and Responses) go through here.
pub(crate) async fn post_stream(
    config: &UpstreamConfig,
    client: &reqwest::Client,
    path: &str,
    body: &Value,
    request_id: Option<&str>,
    decoder: impl SseDecoder,
) -> Result<EventStream, Error> {
    let mut call = config.post(client, path, body, request_id);
    if let Some(key) = &config.api_key {
        call = call.bearer_auth(key);
    }
    http::stream(config, call, decoder, status_error).await
}

impl Provider for OpenAiProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        Box::pin(self.start(request))
    }
}

/// The chunk decoder on the SSE framing: every `data:` is a chunk, `[DONE]` ends the stream.
struct Chunks {
    name: String,
    decoder: ChunkDecoder,
}

impl SseDecoder for Chunks {
    fn event(&mut self, _name: &str, data: &str) -> Result<Vec<Event>, Error> {
        if data == "[DONE]" {
            let mut events = self.decoder.finish();
            events.push(Event::Done);
            return Ok(events);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|_| http::upstream(&self.name, "sent a chunk that is not JSON"))?;
        self.decoder.push(&chunk)
    }

    fn end(&mut self) -> Result<Vec<Event>, Error> {
        Err(http::upstream(
            &self.name,
            "closed the stream before it finished",
        ))
    }
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
        404 => client_fault(ErrorKind::NotFound),
        413 => client_fault(ErrorKind::PayloadTooLarge),
        _ => http::common_status_error(name, status, retry_after)
            .unwrap_or_else(|| client_fault(ErrorKind::InvalidRequest)),
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
        assert_eq!(limited.kind, ErrorKind::RateLimited);
        assert!(limited.retryable);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(2)));
        let down = status_error("up", 503, None, "<html>bad gateway</html>");
        assert_eq!(down.kind, ErrorKind::Upstream);
        assert!(down.retryable);
    }
}
