//! Managed API keys: `/v1/account/keys` for the admin key, the same operations for the CLI
//! (`switchboard keys …`), and the look-up that lets every other request authenticate with one.
//!
//! A key's secret (`sk-sb-` and 40 random characters) is shown once, in the answer that made
//! it (or rotated it); the store keeps its SHA-256 digest and a hint. Looked-up keys are cached
//! for [`CACHE_TTL`]; this node's own changes take effect at once, and every node's at once
//! where they share Redis ([`Accounts::share_changes`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};
use switchboard_gateway::{key_digest, Caller};
use switchboard_model::{Error, ErrorKind};
use switchboard_store::{KeyRecord, KeyUpdate, RateLimits, Store};

use crate::{ApiError, AppState};

/// How long a looked-up key is trusted before the store is asked again: the most another
/// node's change (a disabled key) can lag on this one.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a looked-up key keeps working as last seen while the store cannot be reached.
pub const STALE_TTL: Duration = Duration::from_secs(600);

/// The managed keys as the server sees them.
pub struct Accounts {
    store: Store,
    cache: Mutex<HashMap<String, (Instant, Option<KeyRecord>)>>,
    any_keys: AtomicBool,
    /// Where this node announces its key changes to the others (nodes sharing Redis).
    publisher: std::sync::OnceLock<redis::aio::ConnectionManager>,
}

/// The Redis channel on which nodes announce that a key changed.
pub const KEY_CHANGES: &str = "switchboard:keys:changed";

impl Accounts {
    /// # Errors
    /// When the store cannot say whether keys exist.
    pub async fn new(store: Store) -> Result<Self, Error> {
        let any = store.has_keys().await.map_err(internal)?;
        Ok(Self {
            store,
            cache: Mutex::new(HashMap::new()),
            any_keys: AtomicBool::new(any),
            publisher: std::sync::OnceLock::new(),
        })
    }

    /// Until a key exists, checks the store for one every [`CACHE_TTL`]: a key made elsewhere
    /// (another node, `switchboard keys create`) turns authentication on here too.
    pub fn watch_for_first_key(self: &Arc<Self>) {
        if self.any_keys() {
            return;
        }
        let accounts = Arc::clone(self);
        tokio::spawn(async move {
            while !accounts.any_keys() {
                tokio::time::sleep(CACHE_TTL).await;
                match accounts.store.has_keys().await {
                    Ok(true) => accounts.any_keys.store(true, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "checking the store for keys failed"),
                }
            }
        });
    }

    /// Shares key changes with every node using this Redis (`client` subscribes, `publisher`
    /// announces): this node announces its changes, and forgets what it cached whenever any
    /// node announces one, so a disabled, rotated or deleted key stops working everywhere at
    /// once (without Redis, within [`CACHE_TTL`]).
    pub fn share_changes(
        self: &Arc<Self>,
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
    ) {
        let _ = self.publisher.set(publisher);
        let accounts = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(KEY_CHANGES).await {
                        Ok(()) => {
                            // Whatever was announced while unsubscribed is unknown: start afresh.
                            accounts.clear_cache();
                            let mut changes = pubsub.on_message();
                            while changes.next().await.is_some() {
                                accounts.clear_cache();
                            }
                            tracing::warn!("lost the Redis subscription to key changes");
                        }
                        Err(error) => tracing::warn!(%error, "subscribing to key changes failed"),
                    },
                    Err(error) => tracing::warn!(%error, "connecting for key changes failed"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn clear_cache(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Whether any key was ever made (then every request needs a key).
    pub fn any_keys(&self) -> bool {
        self.any_keys.load(Ordering::Relaxed)
    }

    /// The caller a managed key's digest stands for.
    ///
    /// # Errors
    /// `Unauthorized` for a key that is unknown, deleted, disabled or expired; `Overloaded`
    /// (503, retryable) when the store fails and the key was not seen in the last
    /// [`STALE_TTL`].
    pub async fn authenticate(&self, digest: &str) -> Result<Caller, Error> {
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(digest).cloned());
        let record = match cached {
            Some((at, record)) if at.elapsed() < CACHE_TTL => record,
            stale => match self.store.key_by_digest(digest).await {
                Ok(record) => {
                    if let Ok(mut cache) = self.cache.lock() {
                        if cache.len() > 10_000 {
                            cache.clear();
                        }
                        cache.insert(digest.to_owned(), (Instant::now(), record.clone()));
                    }
                    record
                }
                // The store is down: a key seen lately keeps working as it was.
                Err(error) => match stale.filter(|(at, _)| at.elapsed() < STALE_TTL) {
                    Some((_, record)) => {
                        tracing::warn!(%error, "the key store failed; using the key as last seen");
                        record
                    }
                    None => {
                        tracing::error!(%error, "the key store failed");
                        return Err(Error::new(
                            ErrorKind::Overloaded,
                            "API keys cannot be checked right now; retry shortly.",
                        )
                        .retryable(Some(Duration::from_secs(1))));
                    }
                },
            },
        };
        let Some(key) = record.filter(|key| !key.deleted) else {
            return Err(switchboard_gateway::wrong_key());
        };
        if !key.is_enabled {
            return Err(
                Error::new(ErrorKind::Unauthorized, "This API key is disabled.")
                    .with_code("invalid_api_key"),
            );
        }
        if key.expires_at.is_some_and(|at| at <= crate::unix_now()) {
            return Err(
                Error::new(ErrorKind::Unauthorized, "This API key has expired.")
                    .with_code("invalid_api_key"),
            );
        }
        Ok(Caller {
            owner: key.id.clone(),
            key_id: Some(key.id),
            models: key.models,
            admin: false,
            credit_limit_micros: key.credit_limit_micros,
            limits: switchboard_gateway::KeyLimits {
                requests_per_minute: key.limits.requests_per_minute,
                tokens_per_minute: key.limits.tokens_per_minute,
                max_concurrent: key.limits.max_concurrent,
            },
        })
    }

    /// A key changed here: forget what was cached, here and on the nodes sharing Redis.
    fn forget(&self) {
        self.clear_cache();
        if let Some(publisher) = self.publisher.get() {
            let mut publisher = publisher.clone();
            tokio::spawn(async move {
                let published: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(KEY_CHANGES)
                    .arg("1")
                    .query_async(&mut publisher)
                    .await;
                if let Err(error) = published {
                    tracing::warn!(%error, "announcing a key change failed");
                }
            });
        }
    }

    /// Makes a key from a `POST /v1/account/keys` body; the record and its secret.
    ///
    /// # Errors
    /// `InvalidRequest` naming the field; a store failure.
    pub async fn create(&self, body: &Value) -> Result<(KeyRecord, String), Error> {
        let fields = object(body)?;
        known(
            fields,
            &[
                "name",
                "credit_limit",
                "expires_at",
                "rate_limit",
                "models",
                "owner",
            ],
        )?;
        let name = match fields.get("name") {
            Some(name) => name_of(name)?,
            None => return Err(invalid("name", "Missing required parameter: 'name'.")),
        };
        let (secret, digest, hint) = new_secret();
        let key = KeyRecord {
            id: format!("key_{}", Alphanumeric.sample_string(&mut rand::rng(), 20)),
            name,
            digest,
            hint,
            created_at: crate::unix_now(),
            expires_at: expires_at(fields.get("expires_at"))?,
            is_enabled: true,
            credit_limit_micros: credit_limit(fields.get("credit_limit"))?,
            limits: rate_limits(fields.get("rate_limit"))?.unwrap_or_default(),
            models: models(fields.get("models"))?,
            owner: owner(fields.get("owner"))?,
            deleted: false,
        };
        self.store.create_key(&key).await.map_err(internal)?;
        self.any_keys.store(true, Ordering::Relaxed);
        Ok((key, secret))
    }

    /// Applies a `PATCH /v1/account/keys/{id}` body; the key afterwards and, when it was
    /// rotated, its new secret.
    ///
    /// # Errors
    /// `InvalidRequest` naming the field, `NotFound` for no such key, a store failure.
    pub async fn update(
        &self,
        id: &str,
        body: &Value,
    ) -> Result<(KeyRecord, Option<String>), Error> {
        let fields = object(body)?;
        known(
            fields,
            &[
                "name",
                "is_enabled",
                "credit_limit",
                "expires_at",
                "rate_limit",
                "models",
                "owner",
                "rotate",
            ],
        )?;
        let mut update = KeyUpdate::default();
        if let Some(name) = fields.get("name") {
            update.name = Some(name_of(name)?);
        }
        if let Some(enabled) = fields.get("is_enabled") {
            update.is_enabled = Some(
                enabled
                    .as_bool()
                    .ok_or_else(|| invalid("is_enabled", "expected a boolean"))?,
            );
        }
        if fields.contains_key("credit_limit") {
            update.credit_limit_micros = Some(credit_limit(fields.get("credit_limit"))?);
        }
        if fields.contains_key("expires_at") {
            update.expires_at = Some(expires_at(fields.get("expires_at"))?);
        }
        if fields.contains_key("rate_limit") {
            update.limits = Some(rate_limits(fields.get("rate_limit"))?.unwrap_or_default());
        }
        if fields.contains_key("models") {
            update.models = Some(models(fields.get("models"))?);
        }
        if fields.contains_key("owner") {
            update.owner = Some(owner(fields.get("owner"))?);
        }
        let mut secret = None;
        match fields.get("rotate") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                let (new, digest, hint) = new_secret();
                update.secret = Some((digest, hint));
                secret = Some(new);
            }
            Some(_) => return Err(invalid("rotate", "expected a boolean")),
        }
        let key = self
            .store
            .update_key(id, &update)
            .await
            .map_err(internal)?
            .ok_or_else(|| no_such_key(id))?;
        self.forget();
        Ok((key, secret))
    }

    /// # Errors
    /// `NotFound` for no such key, a store failure.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        if !self
            .store
            .delete_key(id, crate::unix_now())
            .await
            .map_err(internal)?
        {
            return Err(no_such_key(id));
        }
        self.forget();
        Ok(())
    }

    /// # Errors
    /// A store failure.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, Error> {
        self.store.list_keys().await.map_err(internal)
    }

    /// # Errors
    /// `NotFound` for no such key, a store failure.
    pub async fn get(&self, id: &str) -> Result<KeyRecord, Error> {
        self.store
            .get_key(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| no_such_key(id))
    }
}

/// A new secret, its digest and its hint.
fn new_secret() -> (String, String, String) {
    let secret = format!("sk-sb-{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    let digest = key_digest(&secret);
    let tail: String = secret.chars().skip(secret.chars().count() - 4).collect();
    (secret, digest, format!("sk-sb-…{tail}"))
}

fn internal(error: switchboard_store::StoreError) -> Error {
    Error::internal(format!("the key store failed: {error}"))
}

fn invalid(param: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidRequest, message).with_param(param)
}

fn no_such_key(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("No API key with id '{id}'."))
}

fn object(body: &Value) -> Result<&Map<String, Value>, Error> {
    body.as_object()
        .ok_or_else(|| Error::new(ErrorKind::InvalidRequest, "The body must be a JSON object."))
}

fn known(fields: &Map<String, Value>, keys: &[&str]) -> Result<(), Error> {
    match fields.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(unknown, format!("Unknown parameter: '{unknown}'."))
            .with_code("unknown_parameter")),
        None => Ok(()),
    }
}

fn name_of(name: &Value) -> Result<String, Error> {
    let Value::String(name) = name else {
        return Err(invalid("name", format!("expected a string, got {name}")));
    };
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(invalid("name", "The name must have 1 to 255 characters."));
    }
    Ok(name.to_owned())
}

/// Who a key belongs to: 1 to 255 characters, or null (the account itself).
fn owner(value: Option<&Value>) -> Result<Option<String>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if (1..=255).contains(&text.trim().chars().count()) => {
            Ok(Some(text.trim().to_owned()))
        }
        Some(_) => Err(invalid(
            "owner",
            "The owner must be a string of 1 to 255 characters, or null.",
        )),
    }
}

/// USD as a number ≥ 0 (or null: no limit), kept in millionths.
fn credit_limit(value: Option<&Value>) -> Result<Option<i64>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            #[allow(clippy::cast_possible_truncation)]
            Some(usd) if usd.is_finite() && (0.0..=1e12).contains(&usd) => {
                Ok(Some((usd * 1e6).round() as i64))
            }
            _ => Err(invalid(
                "credit_limit",
                "The credit limit must be a number of USD, 0 or more.",
            )),
        },
        Some(_) => Err(invalid(
            "credit_limit",
            "The credit limit must be a number of USD or null.",
        )),
    }
}

/// An ISO-8601 UTC time in the future (`2027-01-31T00:00:00Z`, or a date), or null.
fn expires_at(value: Option<&Value>) -> Result<Option<u64>, Error> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.trim(),
        Some(_) => {
            return Err(invalid(
                "expires_at",
                "expires_at must be an ISO-8601 time or null.",
            ))
        }
    };
    let normalized = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.strip_suffix("+00:00")
            .map_or_else(|| text.to_owned(), |t| format!("{t}Z"))
    };
    let at = humantime::parse_rfc3339(&normalized).map_err(|_| {
        invalid(
            "expires_at",
            format!("'{text}' is not an ISO-8601 UTC time like 2027-01-31T00:00:00Z."),
        )
    })?;
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if seconds <= crate::unix_now() {
        return Err(invalid("expires_at", "expires_at must be in the future."));
    }
    Ok(Some(seconds))
}

fn rate_limits(value: Option<&Value>) -> Result<Option<RateLimits>, Error> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(invalid(
                "rate_limit",
                "rate_limit must be an object or null.",
            ))
        }
    };
    known(
        fields,
        &["requests_per_minute", "tokens_per_minute", "max_concurrent"],
    )
    .map_err(|e| {
        let param = e.param.clone().unwrap_or_default();
        e.with_param(format!("rate_limit.{param}"))
    })?;
    let limit = |key: &str| -> Result<Option<u32>, Error> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    invalid(
                        &format!("rate_limit.{key}"),
                        "Each limit must be a whole number of at least 1, or null.",
                    )
                }),
        }
    };
    Ok(Some(RateLimits {
        requests_per_minute: limit("requests_per_minute")?,
        tokens_per_minute: limit("tokens_per_minute")?,
        max_concurrent: limit("max_concurrent")?,
    }))
}

fn models(value: Option<&Value>) -> Result<Option<Vec<String>>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.as_str()
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(&format!("models[{i}]"), "expected a model id"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(
            "models",
            "models must be a list of model ids or null.",
        )),
    }
}

fn iso(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// A key as the account endpoints show it (never its secret).
#[must_use]
pub fn key_json(key: &KeyRecord) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let credit = key.credit_limit_micros.map(|m| m as f64 / 1e6);
    json!({
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "created_at": iso(key.created_at),
        "expires_at": key.expires_at.map(iso),
        "is_enabled": key.is_enabled,
        "credit_limit": credit,
        "rate_limit": {
            "requests_per_minute": key.limits.requests_per_minute,
            "tokens_per_minute": key.limits.tokens_per_minute,
            "max_concurrent": key.limits.max_concurrent,
        },
        "models": key.models,
        "owner": key.owner,
    })
}

/// The key with its secret, the one time it is shown.
#[must_use]
pub fn key_with_secret(key: &KeyRecord, secret: &str) -> Value {
    let mut shown = key_json(key);
    shown["key"] = secret.into();
    shown["message"] = "Save this key now: it cannot be shown again.".into();
    shown
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError(
            Error::new(
                ErrorKind::Forbidden,
                "Managing API keys needs the admin key.",
            )
            .with_code("admin_key_required"),
        ))
    }
}

fn body_json(body: &axum::body::Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(Error::new(
            ErrorKind::InvalidRequest,
            format!("The body is not valid JSON: {e}"),
        ))
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let (key, secret) = state.accounts.create(&body_json(&body)?).await?;
    Ok((StatusCode::OK, Json(key_with_secret(&key, &secret))).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let keys: Vec<Value> = state.accounts.list().await?.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })))
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    Ok(Json(key_json(&state.accounts.get(&id).await?)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let (key, secret) = state.accounts.update(&id, &body_json(&body)?).await?;
    Ok(Json(match secret {
        Some(secret) => key_with_secret(&key, &secret),
        None => key_json(&key),
    }))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    state.accounts.delete(&id).await?;
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// USD from micro-USD, as the activity report words amounts (a decimal string).
#[must_use]
pub fn usd(micros: i64) -> String {
    format!("{:.6}", Decimal::from(micros))
}

/// A micro-USD amount shown in dollars with six decimals, without float rounding.
struct Decimal(i64);

impl From<i64> for Decimal {
    fn from(micros: i64) -> Self {
        Self(micros)
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

fn totals_json(totals: &switchboard_store::UsageTotals) -> Value {
    json!({
        "total_requests": totals.requests,
        "total_cost": usd(totals.cost_micros),
        "total_input_tokens": totals.input_tokens,
        "total_output_tokens": totals.output_tokens,
    })
}

/// `GET /v1/account/activity?days=N` (1–30, default 30): totals, per UTC day, per model and
/// per key, from the usage rows.
pub(crate) async fn activity(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let days = match query.get("days") {
        None => 30,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=30).contains(d))
            .ok_or_else(|| {
                ApiError(invalid("days", "days must be a whole number from 1 to 30."))
            })?,
    };
    Ok(Json(
        activity_report(&state.store, &state.accounts, days).await?,
    ))
}

/// The activity report over the last `days` whole UTC days (today included): totals, per day,
/// per model and per key (`/v1/account/activity`, `switchboard usage`).
///
/// # Errors
/// `Internal` when the store fails.
pub async fn activity_report(
    store: &Store,
    accounts: &Accounts,
    days: u64,
) -> Result<Value, Error> {
    let now_ms = crate::unix_now_ms();
    let day_ms = 86_400_000;
    let since = (now_ms / day_ms).saturating_sub(days.saturating_sub(1)) * day_ms;
    let (total, by_day, by_model, by_key) = store.activity(since).await.map_err(internal)?;
    let names: HashMap<String, String> = accounts
        .list()
        .await?
        .into_iter()
        .map(|key| (key.id, key.name))
        .collect();
    let group = |name_key: &str, group: &switchboard_store::UsageGroup| {
        let mut value = totals_json(&group.totals);
        value[name_key] = group.name.clone().into();
        value
    };
    Ok(json!({
        "period_days": days,
        "total_stats": totals_json(&total),
        "daily_stats": by_day.iter().map(|g| group("date", g)).collect::<Vec<_>>(),
        "top_models": by_model.iter().map(|g| {
            let mut value = group("model_name", g);
            value["request_count"] = g.totals.requests.into();
            value
        }).collect::<Vec<_>>(),
        "api_key_usage": by_key.iter().map(|g| {
            let mut value = totals_json(&g.totals);
            value["api_key_id"] = g.name.clone().into();
            value["api_key_name"] = names.get(&g.name).cloned().map_or(Value::Null, Value::from);
            value["request_count"] = g.totals.requests.into();
            value
        }).collect::<Vec<_>>(),
    }))
}

/// `GET /v1/account/balance`: the account's credit (`--account-credit`) less what every key
/// spent, as a decimal string; `null` when no credit is set (then `spent` says what was used).
pub(crate) async fn balance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let spent = state
        .store
        .spent_by_all()
        .await
        .map_err(|e| ApiError(internal(e)))?;
    Ok(Json(json!({
        "balance": state.account_credit_micros.map(|credit| usd(credit - spent)),
        "credit": state.account_credit_micros.map(usd),
        "spent": usd(spent),
    })))
}
