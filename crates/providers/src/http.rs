//! The HTTP exchange every upstream kind shares: one pooled client per provider, timeouts for
//! connecting, the first byte, each gap between events and the whole answer, and an SSE body
//! pumped through the kind's decoder into an [`EventStream`].
//!
//! [`stream`] returns only once the first event has arrived, so everything that fails before
//! the first byte reaches the client can still be retried or sent to another route.

use std::collections::VecDeque;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use switchboard_model::{Error, ErrorKind, Event};
use tokio::time::{timeout, Instant};

use crate::EventStream;

/// How long each part of an upstream exchange may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the first event (the upstream's queue and prefill).
    pub first_byte: Duration,
    /// Between two events.
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

/// One configured upstream, whatever its kind.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The operator's name for it (`oai`), used in errors and logs.
    pub name: String,
    /// The API root as the provider's official SDK takes it.
    pub base_url: String,
    /// The upstream key; never logged, never in an error.
    pub api_key: Option<String>,
    /// Extra headers sent with every request (`HTTP-Referer`, `anthropic-beta`…).
    pub headers: Vec<(String, String)>,
    pub timeouts: Timeouts,
}

impl UpstreamConfig {
    /// `path` under the API root.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url.trim_end_matches('/'))
    }

    /// A JSON POST to `path` with the operator's extra headers and the request's trace id;
    /// each kind adds its own authentication.
    pub fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
        request_id: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut call = client.post(self.url(path)).json(body);
        for (header, value) in &self.headers {
            call = call.header(header, value);
        }
        if let Some(id) = request_id {
            call = call.header("x-request-id", id);
        }
        call
    }
}

/// The pooled client of one provider.
///
/// # Errors
/// When the HTTP client cannot be built (the TLS set-up failed).
pub fn client(timeouts: &Timeouts) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|err| Error::internal(format!("HTTP client: {err}")))
}

/// A kind's stream decoder, fed one SSE event at a time.
pub trait SseDecoder: Send + 'static {
    /// The events one SSE event (its `event:` name, and its `data:`, never empty) carries;
    /// `Event::Done` among them ends the generation.
    ///
    /// # Errors
    /// An error the upstream reported in its stream, or a body that cannot be read.
    fn event(&mut self, name: &str, data: &str) -> Result<Vec<Event>, Error>;

    /// The body ended. Wires with an explicit last event call that a failure; a wire whose end
    /// is the end of the body (Gemini's) finishes here.
    ///
    /// # Errors
    /// When the body ended before the generation did.
    fn end(&mut self) -> Result<Vec<Event>, Error>;
}

/// Maps an upstream error status and body to a canonical error (each kind has its own).
pub type StatusError = fn(&str, u16, Option<Duration>, &str) -> Error;

/// Sends `call` and pumps its SSE body through `decoder`.
///
/// # Errors
/// Anything that fails before the first event: unreachable, a refusing status, an error event.
pub async fn stream(
    config: &UpstreamConfig,
    call: reqwest::RequestBuilder,
    decoder: impl SseDecoder,
    status_error: StatusError,
) -> Result<EventStream, Error> {
    let name = &config.name;
    let timeouts = config.timeouts;
    let deadline = Instant::now() + timeouts.total;
    let call = call.header(reqwest::header::ACCEPT, "text/event-stream");
    let response = send(config, call, status_error).await?;
    let mut events = Box::pin(response.bytes_stream().eventsource());
    let mut pump = Pump {
        name: name.clone(),
        decoder,
        pending: VecDeque::new(),
        done: false,
        idle: timeouts.idle,
        deadline,
    };
    // Wait for the first event that carries something, so a failure before it can still be
    // retried or routed elsewhere.
    while pump.pending.is_empty() && !pump.done {
        match timeout(timeouts.first_byte, events.next()).await {
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

/// Decoded events waiting to be handed out, and whether the upstream has finished.
struct Pump<D> {
    name: String,
    decoder: D,
    pending: VecDeque<Result<Event, Error>>,
    done: bool,
    idle: Duration,
    deadline: Instant,
}

type SseItem =
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>;

impl<D: SseDecoder> Pump<D> {
    /// Takes in one SSE item (or the end of the byte stream).
    fn absorb(&mut self, item: Option<SseItem>) -> Result<(), Error> {
        let events = match item {
            None => self.decoder.end()?,
            Some(Err(err)) => {
                tracing::warn!(provider = %self.name, error = %err, "upstream stream failed");
                return Err(upstream(&self.name, "broke off the stream"));
            }
            Some(Ok(event)) => {
                let data = event.data.trim();
                // Keep-alives and comments carry no data; no wire means anything by them.
                if data.is_empty() {
                    return Ok(());
                }
                self.decoder.event(&event.event, data)?
            }
        };
        for event in events {
            self.done |= matches!(event, Event::Done);
            self.pending.push_back(Ok(event));
        }
        Ok(())
    }
}

/// A failure of the upstream (the operator's problem, a 502).
/// Sends `call` and returns the response if its status is a success; a failure to reach the
/// provider or an error status becomes the canonical error.
async fn send(
    config: &UpstreamConfig,
    call: reqwest::RequestBuilder,
    status_error: StatusError,
) -> Result<reqwest::Response, Error> {
    let name = &config.name;
    let timeouts = config.timeouts;
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
    Ok(response)
}

/// A non-streamed call that answers one JSON body (token counts).
///
/// # Errors
/// As [`stream`] before its first event, and a body that is not JSON.
pub async fn json(
    config: &UpstreamConfig,
    call: reqwest::RequestBuilder,
    status_error: StatusError,
) -> Result<serde_json::Value, Error> {
    let response = send(config, call, status_error).await?;
    let text = timeout(config.timeouts.idle, response.text())
        .await
        .map_err(|_| unreachable(&config.name, "did not finish its answer in time"))?
        .map_err(|_| unreachable(&config.name, "broke off its answer"))?;
    serde_json::from_str(&text)
        .map_err(|_| upstream(&config.name, "answered with a body that is not JSON"))
}

pub fn upstream(name: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Upstream,
        format!("The upstream provider '{name}' {what}."),
    )
}

/// The upstream could not be reached or did not answer: retry, then fall back.
#[must_use]
pub fn unreachable(name: &str, what: &str) -> Error {
    upstream(name, what).retryable(None)
}

/// The HTTP statuses every kind words alike: credentials (the operator's problem), rate limits
/// and server failures (retried). `None` for the statuses that are the client's fault, which
/// each kind words from its own error body.
#[must_use]
pub fn common_status_error(
    name: &str,
    status: u16,
    retry_after: Option<Duration>,
) -> Option<Error> {
    match status {
        401 | 403 => Some(Error::new(
            ErrorKind::Upstream,
            format!("The upstream provider '{name}' refused this server's credentials ({status})."),
        )),
        429 => Some(
            Error::new(
                ErrorKind::RateLimited,
                format!("The upstream provider '{name}' is rate limiting requests."),
            )
            .retryable(retry_after),
        ),
        408 | 409 | 500..=599 => Some(
            Error::new(
                ErrorKind::Upstream,
                format!("The upstream provider '{name}' failed ({status})."),
            )
            .retryable(retry_after),
        ),
        400..=499 => None,
        _ => Some(Error::new(
            ErrorKind::Upstream,
            format!(
                "The upstream provider '{name}' answered with an unexpected status ({status})."
            ),
        )),
    }
}
