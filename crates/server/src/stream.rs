//! The SSE pump every streaming surface shares: it pulls canonical events from the provider,
//! hands each to the surface's [`FrameEncoder`] and writes the frames it returns, then lets the
//! encoder close the stream, knowing whether the generation completed. Dropping the body (a
//! client that went away) drops the event stream, which cancels the generation.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use switchboard_gateway::EventStream;
use switchboard_model::Event;

/// One surface's encoding of an event stream into SSE frames.
pub(crate) trait FrameEncoder: Send + 'static {
    /// Frames for one event.
    fn push(&mut self, event: &Event) -> Vec<String>;

    /// The closing frames, once the events ended; `complete` says whether the generation
    /// finished (its usage arrived) or broke off.
    fn end(&mut self, complete: bool) -> BoxFuture<'_, Vec<String>>;
}

struct Pump<E> {
    events: EventStream,
    encoder: E,
    frames: VecDeque<String>,
    complete: bool,
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
        complete: false,
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
            if let Some(event) = pump.events.next().await {
                pump.complete |= matches!(event, Event::Usage(_));
                let frames = pump.encoder.push(&event);
                pump.frames.extend(frames);
                continue;
            }
            pump.ended = true;
            if !pump.complete {
                tracing::error!("stream ended before the generation completed");
            }
            let frames = pump.encoder.end(pump.complete).await;
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
