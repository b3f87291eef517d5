//! Where a request may come from, and how long its body may take.
//!
//! Without API keys, anything that can reach the port can use the server, and a web page can
//! reach a loopback port through its visitor's browser: a cross-site POST with
//! `Content-Type: text/plain` needs no preflight, and DNS rebinding makes a foreign name point
//! at 127.0.0.1. So in no-key mode a request must name a loopback host (unless the operator
//! opened the server with `--insecure-no-auth`) and may carry no `Origin` but a loopback one or
//! one the operator allowed. Allowed origins also get CORS headers, with or without keys.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use switchboard_model::{Error, ErrorKind};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::{ApiError, ServerConfig};

/// The origin rules a request is checked against.
#[derive(Clone)]
pub(crate) struct Origins {
    /// Only loopback `Host` names are accepted (no keys, not `--insecure-no-auth`).
    loopback_hosts_only: bool,
    /// `Origin` must be loopback or allowed (no keys).
    origin_checked: bool,
    allowed: Vec<String>,
    any_origin: bool,
}

impl Origins {
    pub(crate) fn new(config: &ServerConfig, no_keys: bool) -> Self {
        Self {
            loopback_hosts_only: no_keys && !config.insecure_no_auth,
            origin_checked: no_keys,
            allowed: config
                .cors_allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any_origin: config.cors_allowed_origins.iter().any(|o| o == "*"),
        }
    }

    fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.any_origin || self.allowed.contains(&origin) || is_loopback_origin(&origin)
    }

    /// The CORS layer for the allowed origins (loopback origins always).
    pub(crate) fn cors(&self) -> CorsLayer {
        let origins = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origin.to_str().is_ok_and(|o| origins.allows_origin(o))
            }))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            // SDKs send their own headers (`x-stainless-*`, `openai-*`, `anthropic-*`).
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(Duration::from_secs(600))
    }
}

/// `localhost`, `*.localhost`, `127.x.y.z` and `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, _port)) => address,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

/// Refuses foreign `Host` names and `Origin`s in no-key mode.
pub(crate) async fn check_origin(
    State(origins): State<Origins>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(err) = origin_problem(&origins, request.headers()) {
        return ApiError(err).into_response();
    }
    next.run(request).await
}

fn origin_problem(origins: &Origins, headers: &HeaderMap) -> Result<(), Error> {
    if origins.loopback_hosts_only {
        let host = headers.get(header::HOST).map(HeaderValue::to_str);
        let loopback = matches!(host, Some(Ok(host)) if is_loopback_host(host));
        if !loopback {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "This server has no API keys and only answers requests addressed to a loopback \
                 host name (localhost, 127.0.0.1, [::1]). Configure API keys to serve other \
                 names.",
            )
            .with_code("forbidden_host"));
        }
    }
    if origins.origin_checked {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| origins.allows_origin(o));
            if !allowed {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    "Cross-origin requests are refused: this server has no API keys and the \
                     request's Origin is not among the allowed origins (cors_allowed_origins).",
                )
                .with_code("forbidden_origin"));
            }
        }
    }
    Ok(())
}

/// How long a body may take to arrive, and how large it may be.
#[derive(Clone, Copy)]
pub(crate) struct BodyRules {
    pub(crate) timeout: Duration,
    pub(crate) limit: usize,
}

/// Reads the whole body within the deadline, so a client that stalls its body holds nothing
/// for long; the handler then gets the buffered bytes.
pub(crate) async fn read_body(
    State(rules): State<BodyRules>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let collected =
        tokio::time::timeout(rules.timeout, Limited::new(body, rules.limit).collect()).await;
    let bytes: Bytes = match collected {
        Err(_) => {
            return ApiError(
                Error::new(
                    ErrorKind::RequestTimeout,
                    format!(
                        "The request body did not arrive within {} seconds.",
                        rules.timeout.as_secs()
                    ),
                )
                .with_code("request_timeout"),
            )
            .into_response()
        }
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return crate::payload_too_large().into_response()
        }
        Ok(Err(_)) => {
            return ApiError(Error::new(
                ErrorKind::InvalidRequest,
                "Could not read the request body: the connection failed while it was sent.",
            ))
            .into_response()
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1",
            "127.0.0.2:8080",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "10.0.0.1:8080",
            "[::2]:80",
            "[::1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_loopback_origin("http://localhost:3000"));
        assert!(!is_loopback_origin("http://attacker.example"));
        assert!(!is_loopback_origin("null"));
    }
}
