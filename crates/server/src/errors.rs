//! The one table from error kind to HTTP status, plus the response that carries the OpenAI
//! error body. Internal errors are logged here and replaced by a generic message, so no
//! internal detail reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchboard_api::ErrorBody;
use switchboard_model::{Error, ErrorKind};

/// Seconds a client should wait before retrying when the engine queue is full.
const RETRY_AFTER_SECONDS: &str = "1";

#[must_use]
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::Unsupported | ErrorKind::ContextLengthExceeded => {
            StatusCode::BAD_REQUEST
        }
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::ModelNotFound | ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::InsufficientQuota => StatusCode::PAYMENT_REQUIRED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        if err.kind == ErrorKind::Internal {
            tracing::error!(message = %err.message, "internal error");
        }
        let status = status(err.kind);
        let mut response = (status, Json(ErrorBody::from(&err))).into_response();
        // A surface with its own error dialect re-words the response from the error itself.
        response.extensions_mut().insert(err.clone());
        if matches!(err.kind, ErrorKind::Overloaded | ErrorKind::RateLimited) {
            // The upstream's own wait when it named one, else ours.
            let wait = err.retry_after.map_or_else(
                || HeaderValue::from_static(RETRY_AFTER_SECONDS),
                |wait| HeaderValue::from(wait.as_secs().max(1)),
            );
            response.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        response
    }
}

/// The status the Anthropic Messages surface answers an error kind with: Anthropic's own
/// codes, 529 for an overloaded server among them.
#[must_use]
pub fn anthropic_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Overloaded => {
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        }
        other => status(other),
    }
}
