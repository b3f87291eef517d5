//! The HTTP layer: the axum router, thin handlers (extract, decode, call the gateway, encode),
//! authentication and body-limit handling, and the one table that maps error kinds to HTTP
//! statuses and OpenAI error bodies ([`errors`]).
//!
//! Business logic does not live here: what a request means is decided in `api`, whether and
//! where it can be served in `gateway`.

mod chat;
pub mod errors;
mod models;
mod responses;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use switchboard_gateway::Gateway;
use switchboard_model::{Error, ErrorKind};
use switchboard_store::Store;
use tokio::net::TcpListener;

pub use errors::ApiError;

/// Default request body limit: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub body_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub store: Store,
}

/// The full router.
pub fn router(gateway: Arc<Gateway>, store: Store, config: &ServerConfig) -> Router {
    let state = AppState { gateway, store };
    let api = Router::new()
        .route("/chat/completions", post(chat::create))
        .route("/responses", post(responses::create))
        .route(
            "/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/responses/{id}/input_items", get(responses::input_items))
        .route("/models", get(models::list))
        .route("/models/{id}", get(models::retrieve))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .nest("/v1", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests (streams included).
///
/// # Errors
/// When accepting connections fails fatally.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    store: Store,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(gateway, store, config))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(request: Request) -> ApiError {
    ApiError(Error::new(
        ErrorKind::NotFound,
        format!(
            "Unrecognized request URL ({} {}).",
            request.method(),
            request.uri().path()
        ),
    ))
}

/// Accepts `Authorization: Bearer KEY` or `x-api-key: KEY`.
/// Handlers find the [`switchboard_gateway::Caller`] in the request's extensions.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = presented_key(request.headers());
    match state.gateway.keys.check(presented) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => ApiError(err).into_response(),
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim());
            }
        }
        return None;
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::new(
            ErrorKind::PayloadTooLarge,
            "The request body exceeds the configured size limit.",
        ))
    } else {
        ApiError(Error::new(
            ErrorKind::InvalidRequest,
            format!("Could not read the request body: {rejection}"),
        ))
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
