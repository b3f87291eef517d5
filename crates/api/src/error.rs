//! The OpenAI error body `{"error":{"message","type","param","code"}}` and the mapping from the
//! canonical [`ErrorKind`] to its OpenAI `type` and default `code`.
//!
//! HTTP statuses are not decided here (the server's error table owns them). Internal errors are
//! redacted to a generic message so details stay in the logs, never in a client's hands.

use serde::Serialize;
use switchboard_model::{Error, ErrorKind};

/// What OpenAI says for server-side failures; used instead of the internal message.
pub const INTERNAL_ERROR_MESSAGE: &str =
    "The server had an error while processing your request. Sorry about that!";

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// `param` and `code` are required-but-nullable in the spec: they serialize as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub r#type: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// The OpenAI `type` of an error of this kind.
#[must_use]
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest
        | ErrorKind::Unsupported
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::ModelNotFound
        | ErrorKind::PayloadTooLarge
        | ErrorKind::RequestTimeout
        | ErrorKind::NotFound => "invalid_request_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Overloaded | ErrorKind::Internal | ErrorKind::Upstream => "server_error",
        ErrorKind::RateLimited => "requests",
        ErrorKind::InsufficientQuota => "insufficient_quota",
    }
}

/// The OpenAI `code` used when the error does not carry one of its own.
#[must_use]
pub fn default_code(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::ModelNotFound => Some("model_not_found"),
        ErrorKind::ContextLengthExceeded => Some("context_length_exceeded"),
        ErrorKind::Unauthorized => Some("invalid_api_key"),
        ErrorKind::Unsupported => Some("unsupported_parameter"),
        ErrorKind::Forbidden => Some("forbidden"),
        ErrorKind::RequestTimeout => Some("request_timeout"),
        ErrorKind::RateLimited => Some("rate_limit_exceeded"),
        ErrorKind::InsufficientQuota => Some("insufficient_quota"),
        ErrorKind::InvalidRequest
        | ErrorKind::PayloadTooLarge
        | ErrorKind::Overloaded
        | ErrorKind::NotFound
        | ErrorKind::Internal => None,
        ErrorKind::Upstream => Some("upstream_error"),
    }
}

impl From<&Error> for ErrorBody {
    fn from(error: &Error) -> Self {
        let message = if error.kind == ErrorKind::Internal {
            INTERNAL_ERROR_MESSAGE.to_owned()
        } else {
            error.message.clone()
        };
        let code = error
            .code
            .clone()
            .or_else(|| default_code(error.kind).map(str::to_owned));
        Self {
            error: ErrorObject {
                message,
                r#type: error_type(error.kind).to_owned(),
                param: error.param.clone(),
                code,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use switchboard_testkit::validate_or_skip;

    fn body(error: &Error) -> serde_json::Value {
        let value = serde_json::to_value(ErrorBody::from(error)).unwrap();
        validate_or_skip("ErrorResponse", &value);
        value
    }

    #[test]
    fn absent_param_and_code_are_explicit_nulls() {
        let value = body(&Error::new(ErrorKind::InvalidRequest, "bad"));
        assert_eq!(
            value,
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": null, "code": null}})
        );
    }

    #[test]
    fn kinds_map_to_types_and_default_codes() {
        let cases = [
            (
                ErrorKind::ModelNotFound,
                "invalid_request_error",
                json!("model_not_found"),
            ),
            (
                ErrorKind::ContextLengthExceeded,
                "invalid_request_error",
                json!("context_length_exceeded"),
            ),
            (
                ErrorKind::Unauthorized,
                "authentication_error",
                json!("invalid_api_key"),
            ),
            (
                ErrorKind::Unsupported,
                "invalid_request_error",
                json!("unsupported_parameter"),
            ),
            (
                ErrorKind::PayloadTooLarge,
                "invalid_request_error",
                json!(null),
            ),
            (ErrorKind::NotFound, "invalid_request_error", json!(null)),
            (ErrorKind::Overloaded, "server_error", json!(null)),
            (ErrorKind::Internal, "server_error", json!(null)),
        ];
        for (kind, r#type, code) in cases {
            let value = body(&Error::new(kind, "m").with_param("p"));
            assert_eq!(value["error"]["type"], r#type, "{kind:?}");
            assert_eq!(value["error"]["code"], code, "{kind:?}");
            assert_eq!(value["error"]["param"], "p", "{kind:?}");
        }
    }

    #[test]
    fn explicit_code_wins() {
        let error = Error::unsupported("n", "no").with_code("unsupported_value");
        assert_eq!(body(&error)["error"]["code"], "unsupported_value");
    }

    #[test]
    fn internal_messages_are_redacted() {
        let value = body(&Error::internal("db at 10.0.0.3 refused"));
        assert_eq!(value["error"]["message"], INTERNAL_ERROR_MESSAGE);
    }
}
