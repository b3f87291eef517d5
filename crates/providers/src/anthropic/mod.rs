//! Anthropic's Messages API as an upstream provider.
//!
//! `request.rs` encodes the canonical request, `stream.rs` decodes the stream events; this
//! module sends it (through [`crate::http`]; `x-api-key` and `anthropic-version` headers) and
//! turns Anthropic's error bodies into canonical errors. The upstream is always asked to
//! stream, so one decoder serves streamed and non-streamed clients alike.
//!
//! A JSON answer (`json_schema` / `json_object`) is checked against its schema when the stream
//! ends: a forced tool call is guided by its schema but not guaranteed to match it.

pub mod request;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use switchboard_model::{Error, ErrorKind, Event, OutputFormat, Request};

use crate::http::{self, SseDecoder, UpstreamConfig};
use crate::{EventStream, Provider};
pub use request::{encode_request, StructuredOutputs, ThinkingMode};
pub use stream::MessageDecoder;

/// The API version every request names (the only one Anthropic has published).
pub const API_VERSION: &str = "2023-06-01";

/// One configured Anthropic upstream.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub upstream: UpstreamConfig,
    /// How JSON answers are asked for: natively (`output_config.format`, for models that
    /// have structured outputs) or through a forced tool.
    pub structured_outputs: StructuredOutputs,
    /// How reasoning effort is asked for: thinking budgets, or adaptive thinking with effort.
    pub thinking: ThinkingMode,
}

pub struct AnthropicProvider {
    config: AnthropicConfig,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// # Errors
    /// When the HTTP client cannot be built (the TLS set-up failed).
    pub fn new(config: AnthropicConfig) -> Result<Self, Error> {
        let client = http::client(&config.upstream.timeouts)?;
        Ok(Self { config, client })
    }

    /// A call to `path` with Anthropic's headers: the key, the API version and the client's
    /// beta features.
    fn post(&self, path: &str, body: &Value, request: &Request) -> reqwest::RequestBuilder {
        let upstream = &self.config.upstream;
        let mut call = upstream
            .post(&self.client, path, body, request.request_id.as_deref())
            .header("anthropic-version", API_VERSION);
        if let Some(key) = &upstream.api_key {
            call = call.header("x-api-key", key);
        }
        if !request.anthropic_beta.is_empty() {
            call = call.header("anthropic-beta", request.anthropic_beta.join(","));
        }
        call
    }

    /// The request as this provider's configuration says Claude gets it.
    fn encode(&self, request: &Request) -> Result<request::Encoded, Error> {
        encode_request(
            request,
            &request.model,
            self.config.structured_outputs,
            self.config.thinking,
        )
    }

    async fn start(&self, request: Arc<Request>) -> Result<EventStream, Error> {
        let upstream = &self.config.upstream;
        let encoded = self.encode(&request)?;
        let call = self.post("v1/messages", &encoded.body, &request);
        let schema = match &request.output_format {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(serde_json::json!({"type": "object"})),
            OutputFormat::JsonSchema { schema, .. } => Some(schema.clone()),
        };
        let decoder = Messages {
            name: upstream.name.clone(),
            decoder: MessageDecoder::new(encoded.json_through_tool),
            schema,
            answer: String::new(),
        };
        http::stream(upstream, call, decoder, status_error).await
    }

    /// Anthropic's own count (`POST /v1/messages/count_tokens`), of the request as it would be
    /// sent, without the fields that only shape the generation.
    async fn count(&self, request: Arc<Request>) -> Result<Option<u32>, Error> {
        let upstream = &self.config.upstream;
        let encoded = self.encode(&request)?;
        let mut body = encoded.body;
        if let Some(fields) = body.as_object_mut() {
            for generation_only in [
                "max_tokens",
                "stream",
                "temperature",
                "top_p",
                "top_k",
                "stop_sequences",
                "metadata",
                "service_tier",
            ] {
                fields.remove(generation_only);
            }
        }
        let call = self.post("v1/messages/count_tokens", &body, &request);
        let answer = http::json(upstream, call, status_error).await?;
        let tokens = answer
            .get("input_tokens")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                http::upstream(&upstream.name, "answered a count without input_tokens")
            })?;
        Ok(Some(u32::try_from(tokens).unwrap_or(u32::MAX)))
    }
}

impl Provider for AnthropicProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        Box::pin(self.start(request))
    }

    fn count_tokens(&self, request: Arc<Request>) -> BoxFuture<'_, Result<Option<u32>, Error>> {
        Box::pin(self.count(request))
    }
}

/// The decoder on the SSE framing, checking a JSON answer when it is complete.
struct Messages {
    name: String,
    decoder: MessageDecoder,
    schema: Option<Value>,
    answer: String,
}

impl SseDecoder for Messages {
    fn event(&mut self, name: &str, data: &str) -> Result<Vec<Event>, Error> {
        let value: Value = serde_json::from_str(data)
            .map_err(|_| http::upstream(&self.name, "sent an event that is not JSON"))?;
        let events = self.decoder.push(name, &value)?;
        if let Some(schema) = &self.schema {
            for event in &events {
                match event {
                    Event::TextDelta { text, .. } => self.answer.push_str(text),
                    Event::Finished { reason, .. }
                        if *reason == switchboard_model::FinishReason::Stop =>
                    {
                        check_answer(&self.name, schema, &self.answer)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<Event>, Error> {
        Err(http::upstream(
            &self.name,
            "closed the stream before it finished",
        ))
    }
}

/// A complete JSON answer must parse and match its schema.
fn check_answer(name: &str, schema: &Value, answer: &str) -> Result<(), Error> {
    let parsed: Value = serde_json::from_str(answer)
        .map_err(|_| http::upstream(name, "answered with text that is not the JSON asked for"))?;
    let valid = jsonschema::validator_for(schema)
        .map(|validator| validator.is_valid(&parsed))
        // A schema the validator cannot compile was accepted upstream; trust the upstream.
        .unwrap_or(true);
    if valid {
        Ok(())
    } else {
        Err(http::upstream(
            name,
            "answered with JSON that does not match the requested schema",
        ))
    }
}

/// Anthropic's error body (`{"type": "error", "error": {"type", "message"}}`) in canonical
/// terms: the client's faults keep Anthropic's words (naming the provider); overloaded (529)
/// and rate limits are retried.
fn status_error(name: &str, status: u16, retry_after: Option<Duration>, body: &str) -> Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| body.chars().take(300).collect::<String>(), str::to_owned);
    let client_fault = |kind: ErrorKind| {
        Error::new(
            kind,
            format!("The upstream provider '{name}' refused the request: {message}"),
        )
    };
    match (status, kind) {
        (529, _) | (_, "overloaded_error") => Error::new(
            ErrorKind::Overloaded,
            format!("The upstream provider '{name}' is overloaded."),
        )
        .retryable(retry_after),
        (400, _) if message.contains("prompt is too long") => {
            client_fault(ErrorKind::ContextLengthExceeded).with_code("context_length_exceeded")
        }
        (404, _) => client_fault(ErrorKind::NotFound),
        (413, _) => client_fault(ErrorKind::PayloadTooLarge),
        _ => http::common_status_error(name, status, retry_after)
            .unwrap_or_else(|| client_fault(ErrorKind::InvalidRequest)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use switchboard_model::ErrorKind;

    use super::{check_answer, status_error};

    #[test]
    fn anthropic_statuses_say_whose_fault_they_are() {
        let body = |kind: &str, message: &str| {
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
        };
        let long = status_error(
            "claude",
            400,
            None,
            &body(
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
        );
        assert_eq!(long.kind, ErrorKind::ContextLengthExceeded);
        assert!(long.message.contains("'claude'"));
        let bad = status_error("claude", 400, None, &body("invalid_request_error", "bad"));
        assert_eq!(bad.kind, ErrorKind::InvalidRequest);
        assert!(!bad.retryable);
        let key = status_error(
            "claude",
            401,
            None,
            &body("authentication_error", "invalid x-api-key"),
        );
        assert_eq!(key.kind, ErrorKind::Upstream);
        assert!(!key.message.contains("x-api-key"));
        let busy = status_error(
            "claude",
            529,
            Some(Duration::from_secs(1)),
            &body("overloaded_error", "Overloaded"),
        );
        assert_eq!(busy.kind, ErrorKind::Overloaded);
        assert!(busy.retryable);
        let limited = status_error("claude", 429, None, &body("rate_limit_error", "slow down"));
        assert!(limited.retryable);
        assert_eq!(limited.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn json_answers_are_checked_against_their_schema() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}},
                            "required": ["a"]});
        assert!(check_answer("c", &schema, "{\"a\": 1}").is_ok());
        assert!(check_answer("c", &schema, "{\"a\": \"x\"}").is_err());
        assert!(check_answer("c", &schema, "not json").is_err());
    }
}
