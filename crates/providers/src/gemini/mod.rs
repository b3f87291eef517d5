//! Google's Gemini API (`generateContent`, streamed) as an upstream provider.
//!
//! `request.rs` encodes the canonical request, `stream.rs` decodes the chunks; this module
//! sends it (through [`crate::http`]; `x-goog-api-key`) and turns Google's error bodies
//! (`{"error": {"code", "message", "status"}}`) into canonical errors. The upstream is always
//! asked to stream (`streamGenerateContent?alt=sse`), so one decoder serves streamed and
//! non-streamed clients alike. `base_url` is the API root without a version
//! (`https://generativelanguage.googleapis.com`).

pub mod request;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::Value;
use switchboard_model::{ContentPart, Error, ErrorKind, Event, Item, MediaSource, Request};

use crate::fetch::{fetch, FetchPolicy};
use crate::http::{self, SseDecoder, UpstreamConfig};
use crate::{EventStream, Provider};
pub use request::encode_request;
pub use stream::ContentDecoder;

pub struct GeminiProvider {
    config: UpstreamConfig,
    client: reqwest::Client,
    /// How media URLs are fetched (Gemini takes bytes, not arbitrary URLs).
    fetch: FetchPolicy,
}

impl GeminiProvider {
    /// # Errors
    /// When the HTTP client cannot be built (the TLS set-up failed).
    pub fn new(config: UpstreamConfig, fetch: FetchPolicy) -> Result<Self, Error> {
        let client = http::client(&config.timeouts)?;
        Ok(Self {
            config,
            client,
            fetch,
        })
    }

    async fn start(&self, request: Arc<Request>) -> Result<EventStream, Error> {
        let request = inline_media(request, &self.fetch).await?;
        let body = encode_request(&request, &request.model)?;
        let path = format!(
            "v1beta/models/{}:streamGenerateContent?alt=sse",
            request.model
        );
        let mut call = self
            .config
            .post(&self.client, &path, &body, request.request_id.as_deref());
        if let Some(key) = &self.config.api_key {
            call = call.header("x-goog-api-key", key);
        }
        let decoder = Chunks {
            name: self.config.name.clone(),
            decoder: ContentDecoder::new(request.sampling.n, request.web_search.is_some()),
        };
        http::stream(&self.config, call, decoder, status_error).await
    }
}

/// The request with every http(s) image and file URL replaced by its bytes, fetched under the
/// SSRF rules of [`crate::fetch`].
async fn inline_media(request: Arc<Request>, policy: &FetchPolicy) -> Result<Arc<Request>, Error> {
    let is_url = |part: &ContentPart| matches!(part.media_source(), Some(MediaSource::Url(_)));
    let has_urls = request
        .items
        .iter()
        .any(|item| matches!(item, Item::Message { parts, .. } if parts.iter().any(is_url)));
    if !has_urls {
        return Ok(request);
    }
    let mut request = Arc::unwrap_or_clone(request);
    for item in &mut request.items {
        let Item::Message { parts, .. } = item else {
            continue;
        };
        for part in parts.iter_mut() {
            let Some(MediaSource::Url(url)) = part.media_source() else {
                continue;
            };
            let expected = if matches!(part, ContentPart::Image { .. }) {
                "image"
            } else {
                ""
            };
            let fetched = fetch(url, expected, policy).await?;
            let data_url = format!(
                "data:{};base64,{}",
                fetched.media_type,
                base64::engine::general_purpose::STANDARD.encode(&fetched.bytes)
            );
            match part {
                ContentPart::Image { url, .. } => *url = data_url,
                ContentPart::File { data, .. } => *data = Some(data_url),
                _ => {}
            }
        }
    }
    Ok(Arc::new(request))
}

impl Provider for GeminiProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        Box::pin(self.start(request))
    }
}

struct Chunks {
    name: String,
    decoder: ContentDecoder,
}

impl SseDecoder for Chunks {
    fn event(&mut self, _name: &str, data: &str) -> Result<Vec<Event>, Error> {
        let chunk: Value = serde_json::from_str(data)
            .map_err(|_| http::upstream(&self.name, "sent a chunk that is not JSON"))?;
        self.decoder.push(&chunk)
    }

    fn end(&mut self) -> Result<Vec<Event>, Error> {
        self.decoder
            .end()
            .map_err(|_| http::upstream(&self.name, "closed the stream before it finished"))
    }
}

/// Google's error body in canonical terms. A bad key is a 400 `INVALID_ARGUMENT` with reason
/// `API_KEY_INVALID` there: the operator's problem, not the client's.
fn status_error(name: &str, status: u16, retry_after: Option<Duration>, body: &str) -> Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    // Errors from a stream request may come as a one-element array.
    let error = parsed
        .as_ref()
        .map(|v| v.get(0).unwrap_or(v))
        .and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| body.chars().take(300).collect::<String>(), str::to_owned);
    let status_name = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let client_fault = |kind: ErrorKind| {
        Error::new(
            kind,
            format!("The upstream provider '{name}' refused the request: {message}"),
        )
    };
    if body.contains("API_KEY_INVALID") || status_name == "FAILED_PRECONDITION" {
        return Error::new(
            ErrorKind::Upstream,
            format!("The upstream provider '{name}' refused this server's credentials or account ({status})."),
        );
    }
    match status {
        400 if message.contains("exceeds the maximum number of tokens") => {
            client_fault(ErrorKind::ContextLengthExceeded).with_code("context_length_exceeded")
        }
        404 => client_fault(ErrorKind::NotFound),
        413 => client_fault(ErrorKind::PayloadTooLarge),
        // Google's word for an overloaded model: the same as Anthropic's 529.
        503 => Error::new(
            ErrorKind::Overloaded,
            format!("The upstream provider '{name}' is overloaded."),
        )
        .retryable(retry_after),
        _ => http::common_status_error(name, status, retry_after)
            .unwrap_or_else(|| client_fault(ErrorKind::InvalidRequest)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_model::ErrorKind;

    use super::status_error;

    #[test]
    fn google_statuses_say_whose_fault_they_are() {
        let body = |code: u16, status: &str, message: &str| {
            json!({"error": {"code": code, "message": message, "status": status}}).to_string()
        };
        let bad = status_error("gm", 400, None, &body(400, "INVALID_ARGUMENT", "bad field"));
        assert_eq!(bad.kind, ErrorKind::InvalidRequest);
        assert!(bad.message.contains("bad field"));
        let key = status_error(
            "gm",
            400,
            None,
            &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}})
            .to_string(),
        );
        assert_eq!(key.kind, ErrorKind::Upstream);
        let long = status_error(
            "gm",
            400,
            None,
            &body(400, "INVALID_ARGUMENT", "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576)."),
        );
        assert_eq!(long.kind, ErrorKind::ContextLengthExceeded);
        let busy = status_error("gm", 503, None, &body(503, "UNAVAILABLE", "overloaded"));
        assert!(busy.retryable);
        assert_eq!(busy.kind, ErrorKind::Overloaded);
        let quota = status_error("gm", 429, None, &body(429, "RESOURCE_EXHAUSTED", "quota"));
        assert_eq!(quota.kind, ErrorKind::RateLimited);
    }
}
