//! The HTTP layer: the axum router, thin handlers (extract, decode, call the gateway, encode),
//! authentication and body-limit handling, and the one table that maps error kinds to HTTP
//! statuses and OpenAI error bodies ([`errors`]).
//!
//! Business logic does not live here: what a request means is decided in `api`, whether and
//! where it can be served in `gateway`.

pub mod accounts;
pub mod budget;
mod chat;
mod connections;
pub mod errors;
mod guard;
pub mod limits;
mod messages;
pub mod metrics;
mod models;
mod responses;
mod stream;
pub mod usage;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use switchboard_gateway::{Gateway, Identity};
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
    /// A request head must be complete within this time of the connection opening or of its
    /// first byte after an idle spell.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A client that takes nothing of what it is sent for this long is disconnected.
    pub write_timeout: Duration,
    /// A request's whole body must arrive within this time of its head.
    pub body_timeout: Duration,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// After a shutdown signal, how long in-flight requests may take before the rest is closed.
    pub shutdown_timeout: Duration,
    /// Browser origins allowed to call the API (CORS); `*` allows any. Loopback origins are
    /// always allowed.
    pub cors_allowed_origins: Vec<String>,
    /// Without API keys, serve any `Host` name (the operator passed `--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// The account's credit in micro-USD, against which `/v1/account/balance` counts what all
    /// keys spent; `None` when the operator set none.
    pub account_credit_micros: Option<i64>,
    /// An extra address serving `/metrics` without a key (for a private network).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Limits on all requests together, and per catalog model, beside each key's own.
    pub global_limits: switchboard_gateway::KeyLimits,
    pub model_limits: std::collections::HashMap<String, switchboard_gateway::KeyLimits>,
    /// Redis (`redis://…`) holding the rate limits' counts for every node that shares it;
    /// `None` counts in this process.
    pub redis_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
            insecure_no_auth: false,
            account_credit_micros: None,
            metrics_listen: None,
            global_limits: switchboard_gateway::KeyLimits::default(),
            model_limits: std::collections::HashMap::new(),
            redis_url: None,
        }
    }
}

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub store: Store,
    pub accounts: Arc<accounts::Accounts>,
    pub usage: Arc<usage::UsageRecorder>,
    pub limiter: Arc<limits::Limiter>,
    /// The account's credit (`/v1/account/balance`), in micro-USD.
    pub account_credit_micros: Option<i64>,
    pub metrics: Arc<metrics::Metrics>,
    pub global_limits: switchboard_gateway::KeyLimits,
    pub model_limits: Arc<std::collections::HashMap<String, switchboard_gateway::KeyLimits>>,
}

/// The full router.
pub fn router(
    gateway: Arc<Gateway>,
    store: Store,
    accounts: Arc<accounts::Accounts>,
    usage: Arc<usage::UsageRecorder>,
    metrics: Arc<metrics::Metrics>,
    limiter: Arc<limits::Limiter>,
    config: &ServerConfig,
) -> Router {
    let origins = guard::Origins::new(config, gateway.keys.is_empty());
    let body_rules = guard::BodyRules {
        timeout: config.body_timeout,
        limit: config.body_limit,
    };
    let state = AppState {
        gateway,
        store,
        accounts,
        usage,
        limiter,
        account_credit_micros: config.account_credit_micros,
        metrics,
        global_limits: config.global_limits,
        model_limits: Arc::new(config.model_limits.clone()),
    };
    let api = Router::new()
        .route("/chat/completions", post(chat::create))
        .route("/responses", post(responses::create))
        .route(
            "/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/responses/{id}/input_items", get(responses::input_items))
        .route("/messages", post(messages::create))
        .route("/messages/count_tokens", post(messages::count_tokens))
        .route("/models", get(models::list))
        .route("/models/{id}", get(models::retrieve))
        .route("/account/keys", post(accounts::create).get(accounts::list))
        .route("/account/activity", get(accounts::activity))
        .route("/account/balance", get(accounts::balance))
        .route(
            "/account/keys/{id}",
            get(accounts::retrieve)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .fallback(not_found)
        // As OpenAI does, a known path with the wrong method is an unrecognized URL.
        .method_not_allowed_fallback(not_found)
        // Outermost first: where the request comes from, who sends it, then its body.
        .layer(middleware::from_fn_with_state(body_rules, guard::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            origins.clone(),
            guard::check_origin,
        ))
        .layer(middleware::from_fn(request_id));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(protected_metrics))
        .nest("/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn(messages::anthropic_dialect))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            count_errors,
        ))
        .layer(origins.cors())
        .with_state(state)
}

/// Counts each error answer by status and type (the error travels in the response's
/// extensions, whatever dialect words it).
async fn count_errors(
    State(metrics): State<Arc<metrics::Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(error) = response.extensions().get::<Error>() {
        metrics.answered_error(response.status().as_u16(), error.kind);
    }
    response
}

/// Serves until `shutdown` resolves, then drains in-flight requests (streams included) for at
/// most `config.shutdown_timeout` and closes what remains.
///
/// # Errors
/// None today; the signature leaves room for fatal listener errors.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    store: Store,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let accounts = Arc::new(
        accounts::Accounts::new(store.clone())
            .await
            .map_err(|e| std::io::Error::other(e.message))?,
    );
    let metrics = Arc::new(metrics::Metrics::new(Some(Arc::clone(&gateway))));
    accounts.watch_for_first_key();
    // Without Redis, limits and budgets count in this process; with it, across every node
    // sharing it, which also hear each other's key changes.
    let (limiter, budgets) = match &config.redis_url {
        None => (
            limits::Limiter::default(),
            budget::Budgets::local(store.clone()),
        ),
        Some(url) => {
            let client = redis::Client::open(url.as_str())
                .map_err(|e| std::io::Error::other(format!("the Redis URL is not valid: {e}")))?;
            let connection = redis::aio::ConnectionManager::new(client.clone())
                .await
                .map_err(|e| std::io::Error::other(format!("cannot reach Redis: {e}")))?;
            accounts.share_changes(client, connection.clone());
            (
                limits::Limiter::redis(connection.clone()),
                budget::Budgets::redis(store.clone(), connection),
            )
        }
    };
    let limiter = Arc::new(limiter);
    let usage = usage::UsageRecorder::start(store.clone(), budgets, Arc::clone(&metrics));
    if let Some(address) = config.metrics_listen {
        // The unprotected metrics address, for a private network's scraper.
        let listener = TcpListener::bind(address).await?;
        tracing::info!(address = %listener.local_addr()?, "metrics listening");
        let only_metrics = Router::new().route(
            "/metrics",
            get({
                let metrics = Arc::clone(&metrics);
                move || async move { metrics_text(&metrics) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, only_metrics).await;
        });
    }
    let app = router(
        gateway,
        store,
        accounts,
        Arc::clone(&usage),
        metrics,
        limiter,
        config,
    );
    connections::accept_loop(listener, app, config, shutdown).await;
    // Every request has ended (or was cut at the drain deadline, and recorded so): write the
    // rows still waiting before the process exits (not forever if the store is down).
    if !usage.flush(Duration::from_secs(10)).await {
        tracing::error!("the store did not take the last usage rows before shutdown");
    }
    Ok(())
}

fn metrics_text(metrics: &metrics::Metrics) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// `/metrics` on the main listener: the admin key only.
async fn protected_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.gateway.keys.has_admin_key() {
        return ApiError(
            Error::new(
                ErrorKind::Forbidden,
                "Metrics on this address need an admin key (--admin-key); or serve them on a \
                 private address with --metrics-listen.",
            )
            .with_code("admin_key_required"),
        )
        .into_response();
    }
    let presented = presented_key(&headers).ok().flatten();
    match state.gateway.keys.identify(presented, true) {
        Identity::Admin(_) => metrics_text(&state.metrics),
        Identity::Missing => ApiError(switchboard_gateway::missing_key()).into_response(),
        _ => ApiError(
            Error::new(ErrorKind::Forbidden, "Metrics need the admin key.")
                .with_code("admin_key_required"),
        )
        .into_response(),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(request: Request) -> ApiError {
    // Inside `/v1` the router sees the path without its prefix; the client sent the original.
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path(), |original| original.path());
    ApiError(Error::new(
        ErrorKind::NotFound,
        format!("Unrecognized request URL ({} {path}).", request.method()),
    ))
}

/// The id a request is traced by: the client's `x-request-id` when it is a reasonable token,
/// else a new one. Handlers find it in the request's extensions; the response echoes it.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Accepts `Authorization: Bearer KEY` or `x-api-key: KEY`: a key from flags, environment or
/// config, the admin key (for `/v1/account/…` only), or a managed key that is enabled and not
/// expired. Handlers find the [`switchboard_gateway::Caller`] in the request's extensions.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let managed = state.accounts.any_keys();
    let required = !state.gateway.keys.is_empty() || managed;
    let presented = match presented_key(request.headers()) {
        Ok(presented) => presented,
        Err(err) if required => return ApiError(err).into_response(),
        Err(_) => None,
    };
    let caller = match state.gateway.keys.identify(presented, managed) {
        Identity::Open => Ok(switchboard_gateway::Caller::anonymous()),
        Identity::Missing => Err(switchboard_gateway::missing_key()),
        Identity::Known(caller) | Identity::Admin(caller) => Ok(caller),
        Identity::Unknown(digest) => state.accounts.authenticate(&digest).await,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(err) => return ApiError(err).into_response(),
    };
    if caller.admin && !request.uri().path().starts_with("/account/") {
        return ApiError(
            Error::new(
                ErrorKind::Forbidden,
                "The admin key manages API keys; requests to models need an API key.",
            )
            .with_code("admin_key_not_for_requests"),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    let slot = HeaderSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let Some(headers) = slot.take() {
        response.headers_mut().extend(headers);
    }
    response
}

/// Headers a handler wants on its answer, whatever the answer is (the rate-limit headers, on
/// successes and on 429s alike).
#[derive(Clone, Default)]
pub(crate) struct HeaderSlot(Arc<std::sync::Mutex<Option<HeaderMap>>>);

impl HeaderSlot {
    pub(crate) fn set(&self, headers: HeaderMap) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(headers);
        }
    }

    fn take(&self) -> Option<HeaderMap> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The key a request presents. An `Authorization` header, when present, is the one that
/// counts: one that is not visible ASCII is a wrong key, never a reason to look elsewhere.
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let unreadable = |header: &str| {
        Error::new(
            ErrorKind::Unauthorized,
            format!("Incorrect API key provided: the {header} header is not valid ASCII text."),
        )
        .with_code("invalid_api_key")
    };
    if let Some(value) = headers.get("authorization") {
        let value = value.to_str().map_err(|_| unreadable("Authorization"))?;
        let mut parts = value.trim().splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Ok(Some(token.trim()));
            }
        }
        return Ok(None);
    }
    match headers.get("x-api-key") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|key| Some(key.trim()))
            .map_err(|_| unreadable("x-api-key")),
    }
}

/// A body beyond `body_limit`, however the limit was noticed.
pub(crate) fn payload_too_large() -> ApiError {
    ApiError(Error::new(
        ErrorKind::PayloadTooLarge,
        "The request body exceeds the configured size limit.",
    ))
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        payload_too_large()
    } else {
        tracing::debug!(%rejection, "request body not read");
        ApiError(Error::new(
            ErrorKind::InvalidRequest,
            "Could not read the request body.",
        ))
    }
}

pub(crate) fn unix_now() -> u64 {
    since_epoch().as_secs()
}

/// Unix milliseconds now.
pub(crate) fn unix_now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// The time since the Unix epoch (zero on a clock before it).
pub(crate) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
