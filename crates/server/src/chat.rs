//! `POST /v1/chat/completions`: decode, hand to the gateway, and either fold the events into
//! one body or encode them as SSE chunks as they come. Dropping the response body (a client
//! that disconnected) drops the event stream, which cancels the generation.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use switchboard_api::{decode_chat_request, encode_chat_completion, sse, ChatStreamEncoder};
use switchboard_gateway::{Caller, EventStream};
use switchboard_model::{Completion, Error, Event};

use crate::stream::{sse_response, FrameEncoder};
use crate::{body_error, unix_now, ApiError, AppState, RequestId};

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(slot): Extension<crate::HeaderSlot>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let mut decoded = decode_chat_request(&body)?;
    caller.may_use(&decoded.request.model)?;
    let tracker = crate::usage::admit(
        &state,
        &caller,
        &slot,
        &decoded.request,
        "chat",
        &request_id,
    )
    .await?;
    decoded.request.request_id = Some(request_id);
    let request = Arc::new(decoded.request);
    let events = tracker.follow(
        state
            .gateway
            .generate(Arc::clone(&request), switchboard_api::chat::param_name)
            .await,
    )?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let logprobs = request.sampling.logprobs;
    if decoded.stream {
        let encoder = ChatStreamEncoder::new(
            id,
            created,
            request.model.clone(),
            request.sampling.n,
            decoded.include_usage,
            logprobs,
        );
        Ok(sse_response(events, Vec::new(), encoder))
    } else {
        let completion = fold(events).await?;
        let body = encode_chat_completion(&id, created, &request.model, &completion, logprobs);
        Ok(Json(body).into_response())
    }
}

async fn fold(mut events: EventStream) -> Result<Completion, Error> {
    let mut completion = Completion::default();
    while let Some(event) = events.next().await {
        completion.push(event?);
    }
    Ok(completion)
}

impl FrameEncoder for ChatStreamEncoder {
    fn push(&mut self, event: &Event) -> Vec<String> {
        ChatStreamEncoder::push(self, event)
            .iter()
            .map(sse::data_frame)
            .collect()
    }

    fn end(&mut self, outcome: Result<(), Error>) -> BoxFuture<'_, Vec<String>> {
        let frame = match outcome {
            Ok(()) => sse::DONE_FRAME.to_owned(),
            Err(err) => sse::data_frame(&switchboard_api::ErrorBody::from(&err)),
        };
        Box::pin(std::future::ready(vec![frame]))
    }
}
