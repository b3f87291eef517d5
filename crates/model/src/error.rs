//! The error taxonomy shared by every layer. Each crate raises an [`Error`] of a [`ErrorKind`];
//! only the server maps kinds to HTTP statuses and wire bodies.

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range.
    InvalidRequest,
    /// The request is well-formed but asks for something this model or server cannot do.
    Unsupported,
    /// No or wrong credentials.
    Unauthorized,
    /// The request may not be made from where it came (a foreign `Host` or `Origin`).
    Forbidden,
    /// The client did not send its request in time.
    RequestTimeout,
    /// The requested model is not in the catalog.
    ModelNotFound,
    /// Prompt plus requested output does not fit the model's context window.
    ContextLengthExceeded,
    /// The body exceeds the configured size limit.
    PayloadTooLarge,
    /// The engine queue is full; retry later.
    Overloaded,
    /// Too many requests: an upstream provider's rate limit (and, later, a key's own limits).
    RateLimited,
    /// A stored object does not exist (or is not visible to this caller).
    NotFound,
    /// The key's credit is spent.
    InsufficientQuota,
    /// A bug or an environment failure; details stay in the logs.
    Internal,
    /// An upstream provider failed or answered what we cannot use (unreachable, timed out,
    /// refused our credentials, sent a malformed body): the operator's problem, not the client's.
    Upstream,
}

/// An error with the offending parameter named, as OpenAI does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, in the surface's own naming (`messages[0].role`). Set by
    /// the surfaces; layers below them say [`Error::field`] instead.
    pub param: Option<String>,
    /// The request field at fault in canonical terms, for errors found below the surfaces;
    /// the surface that answers words it as its own `param` ([`Error::locate`]).
    pub field: Option<crate::RequestField>,
    /// A machine-readable code where OpenAI defines one (`model_not_found`).
    pub code: Option<String>,
    /// Trying the same provider again may succeed (a connect error, a timeout, 429, 5xx):
    /// routing retries it with backoff before it falls back.
    pub retryable: bool,
    /// How long the provider asked us to wait before retrying (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            field: None,
            code: None,
            retryable: false,
            retry_after: None,
        }
    }

    /// Marks the error as worth retrying, after `retry_after` if the provider said so.
    #[must_use]
    pub fn retryable(mut self, retry_after: Option<std::time::Duration>) -> Self {
        self.retryable = true;
        self.retry_after = retry_after;
        self
    }

    /// An invalid request, located in canonical terms.
    pub fn invalid_at(field: crate::RequestField, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_field(field)
    }

    #[must_use]
    pub fn with_field(mut self, field: crate::RequestField) -> Self {
        self.field = Some(field);
        self
    }

    /// Words a canonical location as the calling surface's `param`, unless a param is set.
    #[must_use]
    pub fn locate(mut self, param_name: impl Fn(crate::RequestField) -> String) -> Self {
        if self.param.is_none() {
            self.param = self.field.map(param_name);
        }
        self
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message).with_param(param)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    #[must_use]
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}
