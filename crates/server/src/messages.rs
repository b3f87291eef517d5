//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages surface.
//! Decode, hand to the gateway, and either fold the Messages events into one body or stream
//! them as named SSE events with pings while the model is quiet. Errors on these paths are
//! re-worded in Anthropic's shape by [`anthropic_dialect`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use switchboard_api::messages::{
    decode_count_tokens, decode_messages_request, error_body, param_name, MessageFold,
    MessagesStreamEncoder,
};
use switchboard_gateway::Caller;
use switchboard_model::{Error, Event};

use crate::stream::{sse_response, FrameEncoder};
use crate::{body_error, errors, ApiError, AppState, RequestId};

/// How long a stream may be quiet before a `ping`.
const PING_AFTER: Duration = Duration::from_secs(10);

/// Beta feature names the client asked for, passed to Anthropic upstreams.
fn betas(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(slot): Extension<crate::HeaderSlot>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let mut decoded = decode_messages_request(&body)?;
    caller.may_use(&decoded.request.model)?;
    let tracker = crate::usage::admit(
        &state,
        &caller,
        &slot,
        &decoded.request,
        "messages",
        &request_id,
    )
    .await?;
    decoded.request.request_id = Some(request_id.clone());
    decoded.request.anthropic_beta = betas(&headers);
    let request = Arc::new(decoded.request);
    let mut events = tracker.follow(
        state
            .gateway
            .generate(Arc::clone(&request), param_name)
            .await,
    )?;
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut encoder = MessagesStreamEncoder::new(id, request.model.clone());
    if decoded.stream {
        let initial = vec![frame(&encoder.start()), frame(&json!({"type": "ping"}))];
        return Ok(sse_response(
            events,
            initial,
            MessagesFrames {
                encoder,
                request_id,
            },
        ));
    }
    let mut fold = MessageFold::default();
    fold.push(&encoder.start());
    while let Some(event) = events.next().await {
        let event = event?;
        if matches!(event, Event::Done) {
            break;
        }
        for out in encoder.push(&event) {
            fold.push(&out);
        }
    }
    for out in encoder.finish() {
        fold.push(&out);
    }
    Ok(Json(fold.finish()).into_response())
}

pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let mut request = decode_count_tokens(&body)?;
    caller.may_use(&request.model)?;
    request.request_id = Some(request_id);
    request.anthropic_beta = betas(&headers);
    let count = state
        .gateway
        .count_tokens(Arc::new(request), param_name)
        .await?;
    let mut response = Json(json!({"input_tokens": count.tokens})).into_response();
    // Whether the number is a provider's count or this server's estimate.
    response.headers_mut().insert(
        "x-switchboard-token-count",
        HeaderValue::from_static(if count.exact { "exact" } else { "estimate" }),
    );
    Ok(response)
}

/// A named SSE event, as the Messages API frames them.
fn frame(event: &Value) -> String {
    format!(
        "event: {}\ndata: {event}\n\n",
        event["type"].as_str().unwrap_or("message")
    )
}

struct MessagesFrames {
    encoder: MessagesStreamEncoder,
    request_id: String,
}

impl FrameEncoder for MessagesFrames {
    fn push(&mut self, event: &Event) -> Vec<String> {
        self.encoder.push(event).iter().map(frame).collect()
    }

    fn end(&mut self, outcome: Result<(), Error>) -> BoxFuture<'_, Vec<String>> {
        let frames = match outcome {
            Ok(()) => self.encoder.finish().iter().map(frame).collect(),
            // A failure after the first event ends the stream with an `error` event and no
            // `message_stop`, as the Messages API does.
            Err(error) => vec![frame(&error_body(&error, Some(&self.request_id)))],
        };
        Box::pin(std::future::ready(frames))
    }

    fn keepalive(&self) -> Option<(Duration, String)> {
        Some((PING_AFTER, frame(&json!({"type": "ping"}))))
    }
}

/// On the Messages paths, every error response (whoever produced it: authentication, the body
/// guard, a handler, the router's fallback) is re-worded in Anthropic's error shape and status
/// codes, and the request id is also given as Anthropic's `request-id` header.
pub(crate) async fn anthropic_dialect(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/messages") {
        return next.run(request).await;
    }
    let mut response = next.run(request).await;
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(error) = response.extensions().get::<Error>().cloned() {
        let status = errors::anthropic_status(error.kind);
        let mut reworded =
            (status, Json(error_body(&error, request_id.as_deref()))).into_response();
        for (name, value) in response.headers() {
            if name != axum::http::header::CONTENT_TYPE
                && name != axum::http::header::CONTENT_LENGTH
            {
                reworded.headers_mut().insert(name.clone(), value.clone());
            }
        }
        // The error stays with the answer (the metrics count it).
        reworded.extensions_mut().insert(error);
        response = reworded;
    } else if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let error = Error::new(switchboard_model::ErrorKind::NotFound, "Not found");
        response = (
            StatusCode::NOT_FOUND,
            Json(error_body(&error, request_id.as_deref())),
        )
            .into_response();
        response.extensions_mut().insert(error);
    }
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("request-id", id);
    }
    response
}
