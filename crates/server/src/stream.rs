//! The SSE pump every streaming surface shares: it pulls canonical events from the provider,
//! hands each to the surface's [`FrameEncoder`] and writes the frames it returns, then lets the
//! encoder close the stream with how the generation ended (completed, or the error that ended
//! it). Dropping the body (a client that went away) drops the event stream, which cancels the
//! generation.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use switchboard_gateway::EventStream;
use switchboard_model::{Error, Event};

/// One surface's encoding of an event stream into SSE frames.
pub(crate) trait FrameEncoder: Send + 'static {
    /// Frames for one event.
    fn push(&mut self, event: &Event) -> Vec<String>;

    /// The closing frames, once the events ended: `Ok` when the generation completed, or the
    /// error that ended it.
    fn end(&mut self, outcome: Result<(), Error>) -> BoxFuture<'_, Vec<String>>;

    /// A frame to send after this long without events, so clients and proxies that time out
    /// idle streams keep waiting (Anthropic's `ping`); `None` sends nothing.
    fn keepalive(&self) -> Option<(std::time::Duration, String)> {
        None
    }
}

struct Pump<E> {
    events: EventStream,
    encoder: E,
    frames: VecDeque<String>,
    ended: bool,
}

/// A `text/event-stream` response that starts with `initial` frames.
pub(crate) fn sse_response<E: FrameEncoder>(
    events: EventStream,
    initial: Vec<String>,
    encoder: E,
) -> Response {
    let pump = Pump {
        events,
        encoder,
        frames: initial.into(),
        ended: false,
    };
    let stream = futures::stream::unfold(pump, |mut pump| async move {
        loop {
            if let Some(frame) = pump.frames.pop_front() {
                return Some((Ok::<_, Infallible>(frame), pump));
            }
            if pump.ended {
                return None;
            }
            let next = match pump.encoder.keepalive() {
                None => pump.events.next().await,
                Some((idle, frame)) => match tokio::time::timeout(idle, pump.events.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        pump.frames.push_back(frame);
                        continue;
                    }
                },
            };
            let outcome = match next {
                Some(Ok(Event::Done)) | None => Ok(()),
                Some(Ok(event)) => {
                    let frames = pump.encoder.push(&event);
                    pump.frames.extend(frames);
                    continue;
                }
                Some(Err(error)) => {
                    tracing::warn!(message = %error.message, "stream ended with an error");
                    Err(error)
                }
            };
            pump.ended = true;
            let frames = pump.encoder.end(outcome).await;
            pump.frames.extend(frames);
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
