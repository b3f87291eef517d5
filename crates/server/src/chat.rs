//! `POST /v1/chat/completions`: decode, hand to the gateway, and either fold the events into
//! one body or encode them as SSE chunks as they come. Dropping the response body (a client
//! that disconnected) drops the event stream, which cancels the generation.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchboard_api::{decode_chat_request, encode_chat_completion, sse, ChatStreamEncoder};
use switchboard_gateway::EventStream;
use switchboard_model::{Completion, Error, Event};

use crate::{body_error, unix_now, ApiError, AppState};

pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let decoded = decode_chat_request(&body)?;
    let request = decoded.request;
    let gateway = state.gateway.clone();
    // Rendering and tokenizing a long prompt is CPU work; keep it off the async workers.
    let (events, request) = tokio::task::spawn_blocking(move || {
        let events = gateway.generate(&request, switchboard_api::chat::param_name);
        (events, request)
    })
    .await
    .map_err(|err| Error::internal(format!("generation task failed: {err}")))?;
    let events = events?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let logprobs = request.sampling.logprobs;
    if decoded.stream {
        let encoder = ChatStreamEncoder::new(
            id,
            created,
            request.model,
            request.sampling.n,
            decoded.include_usage,
            logprobs,
        );
        Ok(stream_response(events, encoder))
    } else {
        let completion = fold(events).await?;
        let body = encode_chat_completion(&id, created, &request.model, &completion, logprobs);
        Ok(Json(body).into_response())
    }
}

async fn fold(mut events: EventStream) -> Result<Completion, Error> {
    let mut completion = Completion::default();
    let mut complete = false;
    while let Some(event) = events.next().await {
        complete |= matches!(event, Event::Usage(_));
        completion.push(event);
    }
    if complete {
        Ok(completion)
    } else {
        Err(Error::internal("the generation ended unexpectedly"))
    }
}

struct StreamState {
    events: EventStream,
    encoder: ChatStreamEncoder,
    frames: VecDeque<String>,
    complete: bool,
    ended: bool,
}

fn stream_response(events: EventStream, encoder: ChatStreamEncoder) -> Response {
    let state = StreamState {
        events,
        encoder,
        frames: VecDeque::new(),
        complete: false,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(frame) = state.frames.pop_front() {
                return Some((Ok::<_, Infallible>(frame), state));
            }
            if state.ended {
                return None;
            }
            match state.events.next().await {
                Some(event) => {
                    state.complete |= matches!(event, Event::Usage(_));
                    let chunks = state.encoder.push(&event);
                    state.frames.extend(chunks.iter().map(sse::data_frame));
                }
                None => {
                    state.ended = true;
                    if state.complete {
                        state.frames.push_back(sse::DONE_FRAME.to_owned());
                    } else {
                        let err = Error::internal("the generation ended unexpectedly");
                        tracing::error!("stream ended before the generation completed");
                        state
                            .frames
                            .push_back(sse::data_frame(&switchboard_api::ErrorBody::from(&err)));
                    }
                }
            }
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
