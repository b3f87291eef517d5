//! OpenAI's Responses API as an upstream wire (`kind = "openai"`, `api = "responses"`): the
//! way to OpenAI's own web search tool, its `url_citation` annotations and its encrypted
//! reasoning across turns. Errors have the Chat Completions wire's shapes, so both wires send
//! through `openai::post_stream`.
//!
//! `request.rs` encodes the canonical request, `stream.rs` decodes the events; this module
//! sends it (through [`crate::http`]).

pub mod request;
pub mod stream;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use switchboard_model::{Error, Event, Request};

use crate::http::{self, SseDecoder, UpstreamConfig};
use crate::{EventStream, Provider};
pub use request::encode_request;
pub use stream::ResponseDecoder;

pub struct OpenAiResponsesProvider {
    config: UpstreamConfig,
    client: reqwest::Client,
}

impl OpenAiResponsesProvider {
    /// # Errors
    /// When the HTTP client cannot be built (the TLS set-up failed).
    pub fn new(config: UpstreamConfig) -> Result<Self, Error> {
        let client = http::client(&config.timeouts)?;
        Ok(Self { config, client })
    }

    async fn start(&self, request: Arc<Request>) -> Result<EventStream, Error> {
        request::refuse_unsendable(&request)?;
        let body = encode_request(&request, &request.model);
        let decoder = Events {
            name: self.config.name.clone(),
            decoder: ResponseDecoder::default(),
        };
        crate::openai::post_stream(
            &self.config,
            &self.client,
            "responses",
            &body,
            request.request_id.as_deref(),
            decoder,
        )
        .await
    }
}

impl Provider for OpenAiResponsesProvider {
    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        Box::pin(self.start(request))
    }
}

/// A reasoning item's id and encrypted content as one sealed value (`rs_…:content`; the
/// content is URL-safe base64, so the first `:` separates them).
fn seal_reasoning(id: &str, encrypted: &str) -> String {
    if id.is_empty() {
        encrypted.to_owned()
    } else {
        format!("{id}:{encrypted}")
    }
}

/// [`seal_reasoning`] undone: the upstream id, when the value carries one, and the content.
fn open_reasoning(sealed: &str) -> (Option<&str>, &str) {
    match sealed.split_once(':') {
        Some((id, content)) if id.starts_with("rs_") => (Some(id), content),
        _ => (None, sealed),
    }
}

/// The event decoder on the SSE framing: every `data:` is one event object.
struct Events {
    name: String,
    decoder: ResponseDecoder,
}

impl SseDecoder for Events {
    fn event(&mut self, _name: &str, data: &str) -> Result<Vec<Event>, Error> {
        if data == "[DONE]" {
            return Ok(Vec::new());
        }
        let event: Value = serde_json::from_str(data)
            .map_err(|_| http::upstream(&self.name, "sent an event that is not JSON"))?;
        self.decoder.push(&event)
    }

    fn end(&mut self) -> Result<Vec<Event>, Error> {
        if self.decoder.finished() {
            return Ok(Vec::new());
        }
        Err(http::upstream(
            &self.name,
            "closed the stream before it finished",
        ))
    }
}
