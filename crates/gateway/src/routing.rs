//! Routes: the ordered providers a catalog entry can be served by, and how a request moves
//! along them. Before the first event reaches the client, a provider failure worth retrying
//! (a connect error, a timeout, 429, 5xx) is retried on the same route with exponential
//! backoff and jitter, honouring `Retry-After` (capped); then the next route is tried. A route
//! that fails again and again is skipped for a while (a circuit breaker) and probed again
//! later. Client errors (a bad request the upstream refused) are answered at once: another
//! route would refuse them too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use switchboard_model::{Error, ErrorKind, Request};
use switchboard_providers::{EventStream, Provider};

/// Attempts on one route before moving to the next.
const ATTEMPTS_PER_ROUTE: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured before trying the next route instead.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);
/// Consecutive failures that open a route's circuit, and how long it stays open.
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);

/// One way to serve a catalog entry: a provider and the model name it knows.
pub struct Route {
    /// The operator's name for the provider (`local`, `oai`), for logs and `owned_by`.
    pub provider_name: String,
    pub provider: Arc<dyn Provider>,
    /// The model as the provider names it.
    pub model: String,
    /// Share of traffic among routes of equal standing; 0 = only as a fallback, in order.
    pub weight: u32,
    breaker: Breaker,
    stats: RouteStats,
}

/// What happened on a route since start, for metrics.
#[derive(Default)]
struct RouteStats {
    attempts: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
    fallbacks: AtomicU64,
}

/// A route's counts since start and its circuit, as metrics report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHealth {
    /// Calls to the provider (each retry counts).
    pub attempts: u64,
    /// Calls that failed in a way another attempt or route might avoid.
    pub failures: u64,
    /// Calls made again on this route after a failure.
    pub retries: u64,
    /// Requests that gave up on this route after its failures (for the next route, if any).
    pub fallbacks: u64,
    /// Whether the circuit is open (the route is skipped).
    pub circuit_open: bool,
}

impl Route {
    #[must_use]
    pub fn new(
        provider_name: impl Into<String>,
        provider: Arc<dyn Provider>,
        model: impl Into<String>,
        weight: u32,
    ) -> Self {
        Self {
            provider_name: provider_name.into(),
            provider,
            model: model.into(),
            weight,
            breaker: Breaker::default(),
            stats: RouteStats::default(),
        }
    }

    /// Its counts since start and whether its circuit is open.
    #[must_use]
    pub fn health(&self) -> RouteHealth {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RouteHealth {
            attempts: count(&self.stats.attempts),
            failures: count(&self.stats.failures),
            retries: count(&self.stats.retries),
            fallbacks: count(&self.stats.fallbacks),
            circuit_open: self.breaker.is_open(),
        }
    }
}

/// Opens after consecutive failures; lets one probe through after the cool-down.
#[derive(Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn is_open(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open_until.is_some_and(|until| Instant::now() < until)
    }

    fn allows(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.open_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half-open: this request is the probe; another failure re-opens at once.
                state.open_until = None;
                state.failures = BREAKER_THRESHOLD - 1;
                true
            }
            None => true,
        }
    }

    fn record(&self, success: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if success {
            *state = BreakerState::default();
            return;
        }
        state.failures += 1;
        if state.failures >= BREAKER_THRESHOLD {
            state.open_until = Some(Instant::now() + BREAKER_COOL_DOWN);
        }
    }
}

/// The order to try routes in: weighted routes first, drawn by weight (spreading load among
/// equals), then the zero-weight fallbacks in configured order.
fn order(routes: &[Route]) -> Vec<&Route> {
    let mut weighted: Vec<&Route> = routes.iter().filter(|r| r.weight > 0).collect();
    let mut ordered = Vec::with_capacity(routes.len());
    let mut rng = rand::rng();
    while !weighted.is_empty() {
        let total: u32 = weighted.iter().map(|r| r.weight).sum();
        let mut pick = rng.random_range(0..total);
        let index = weighted
            .iter()
            .position(|route| {
                if pick < route.weight {
                    true
                } else {
                    pick -= route.weight;
                    false
                }
            })
            .unwrap_or(0);
        ordered.push(weighted.remove(index));
    }
    ordered.extend(routes.iter().filter(|r| r.weight == 0));
    ordered
}

/// A failure of the provider (not of the request) that another attempt or route may avoid.
fn provider_failure(error: &Error) -> bool {
    error.retryable || error.kind == ErrorKind::Upstream
}

fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(RETRY_AFTER_MAX);
    }
    let exponential = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(8))
        .min(BACKOFF_MAX);
    // Full jitter: anywhere up to the exponential bound, so retries do not arrive together.
    let millis = u64::try_from(exponential.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

/// Serves `request` from the first route that can, as described in the module documentation.
pub(crate) async fn serve(routes: &[Route], request: &Arc<Request>) -> Result<EventStream, Error> {
    serve_on(routes, request).await.map(|served| served.events)
}

/// A generation and the route that serves it, for callers that continue the conversation
/// on the same provider (the gateway's search loop).
pub(crate) struct Served {
    pub events: EventStream,
    pub provider: Arc<dyn Provider>,
    /// The model as that provider names it.
    pub model: String,
}

/// [`serve`], saying which route served.
pub(crate) async fn serve_on(routes: &[Route], request: &Arc<Request>) -> Result<Served, Error> {
    let mut last_failure = None;
    let mut failed_attempts = 0;
    let mut fallbacks = 0;
    let mut first_call = None;
    for route in order(routes) {
        if !route.breaker.allows() {
            continue;
        }
        // Named as the provider knows the model (a copy only when the name differs).
        let routed = if route.model == request.model {
            Arc::clone(request)
        } else {
            let mut renamed = Request::clone(request);
            renamed.model.clone_from(&route.model);
            Arc::new(renamed)
        };
        for attempt in 0..ATTEMPTS_PER_ROUTE {
            first_call.get_or_insert_with(Instant::now);
            route.stats.attempts.fetch_add(1, Ordering::Relaxed);
            match route.provider.generate(Arc::clone(&routed)).await {
                Ok(events) => {
                    route.breaker.record(true);
                    let served = switchboard_providers::Served {
                        route: route.provider_name.clone(),
                        failed_attempts,
                        fallbacks,
                        first_call: first_call.unwrap_or_else(Instant::now),
                    };
                    return Ok(Served {
                        events: events.served_by(Some(served)),
                        provider: Arc::clone(&route.provider),
                        model: route.model.clone(),
                    });
                }
                Err(error) if !provider_failure(&error) => return Err(error),
                Err(error) => {
                    tracing::warn!(
                        provider = %route.provider_name,
                        attempt,
                        message = %error.message,
                        "route failed"
                    );
                    failed_attempts += 1;
                    route.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let retry = error.retryable
                        && attempt + 1 < ATTEMPTS_PER_ROUTE
                        && error.retry_after.is_none_or(|wait| wait <= RETRY_AFTER_MAX);
                    let wait = backoff(attempt, error.retry_after);
                    last_failure = Some(error);
                    if !retry {
                        break;
                    }
                    route.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
        route.breaker.record(false);
        route.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        fallbacks += 1;
    }
    Err(last_failure.unwrap_or_else(|| {
        Error::new(
            ErrorKind::Upstream,
            "Every provider of this model is failing; try again shortly.",
        )
        .retryable(None)
    }))
}

/// A prompt's size in tokens, and whether a provider counted it or it was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    pub tokens: u32,
    pub exact: bool,
}

/// The count of the first route that can give one; a route that has no count (or every route
/// failing) gives the estimate.
pub(crate) async fn count(routes: &[Route], request: &Arc<Request>) -> Result<TokenCount, Error> {
    for route in order(routes) {
        if !route.breaker.allows() {
            continue;
        }
        let mut renamed = Request::clone(request);
        renamed.model.clone_from(&route.model);
        match route.provider.count_tokens(Arc::new(renamed)).await {
            Ok(Some(tokens)) => {
                return Ok(TokenCount {
                    tokens,
                    exact: true,
                })
            }
            Ok(None) => break,
            Err(error) if !provider_failure(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(provider = %route.provider_name, message = %error.message,
                    "token count failed; trying the next route");
            }
        }
    }
    Ok(TokenCount {
        tokens: estimate_tokens(request),
        exact: false,
    })
}

/// Tokens a request's prompt is estimated at where no provider counts: one per four bytes of
/// text, tool definitions and call arguments (the usual ratio of BPE tokenizers on English
/// and code), four per item for the turn structure, and 1,600 per image or file (the size
/// Anthropic documents for a 1.15-megapixel image).
#[must_use]
pub fn estimate_tokens(request: &Request) -> u32 {
    use switchboard_model::{ContentPart, Item, Tool};
    const PER_ITEM: usize = 4;
    const PER_MEDIA: usize = 1_600;
    let mut bytes = 0usize;
    let mut fixed = 0usize;
    for item in &request.items {
        fixed += PER_ITEM;
        match item {
            Item::Message { parts, .. } => {
                for part in parts {
                    match part {
                        ContentPart::Text(text) | ContentPart::Refusal(text) => bytes += text.len(),
                        ContentPart::Image { .. }
                        | ContentPart::Audio { .. }
                        | ContentPart::File { .. } => {
                            fixed += PER_MEDIA;
                        }
                    }
                }
            }
            Item::FunctionCall {
                name, arguments, ..
            } => bytes += name.len() + arguments.len(),
            Item::FunctionOutput { output, .. } => bytes += output.len(),
            Item::Reasoning { text, .. } => bytes += text.len(),
        }
    }
    for Tool::Function(tool) in &request.tools {
        bytes += tool.name.len()
            + tool.description.as_ref().map_or(0, String::len)
            + tool.parameters.as_ref().map_or(0, |p| p.to_string().len());
    }
    u32::try_from(bytes.div_ceil(4) + fixed).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use switchboard_model::{Item, Role};
    use switchboard_providers::fake::{FakeProvider, Step};

    use super::*;

    fn request() -> Arc<Request> {
        Arc::new(Request::text("entry", vec![Item::text(Role::User, "hi")]))
    }

    #[tokio::test]
    async fn falls_back_after_retries_and_renames_the_model() {
        let failing = Arc::new(FakeProvider::refusing(
            Error::new(ErrorKind::Upstream, "503").retryable(None),
        ));
        let working = Arc::new(FakeProvider::new(vec![Step::Complete]));
        let routes = vec![
            Route::new("a", failing.clone(), "model-a", 0),
            Route::new("b", working.clone(), "model-b", 0),
        ];
        let mut events = serve(&routes, &request()).await.unwrap();
        // The stream names the route that served it (usage rows and metrics report it), and
        // what it took to get there.
        assert_eq!(events.route(), Some("b"));
        let served = events.served().unwrap();
        assert_eq!(
            (served.failed_attempts, served.fallbacks),
            (ATTEMPTS_PER_ROUTE, 1)
        );
        assert!(events.next().await.unwrap().is_ok());
        assert_eq!(failing.received().len(), ATTEMPTS_PER_ROUTE as usize);
        let failed = routes[0].health();
        let attempts = u64::from(ATTEMPTS_PER_ROUTE);
        assert_eq!(
            (
                failed.attempts,
                failed.failures,
                failed.retries,
                failed.fallbacks
            ),
            (attempts, attempts, attempts - 1, 1)
        );
        assert!(!failed.circuit_open);
        assert_eq!(routes[1].health().attempts, 1);
        assert_eq!(failing.received()[0].model, "model-a");
        assert_eq!(working.received()[0].model, "model-b");
    }

    #[tokio::test]
    async fn client_errors_are_answered_at_once() {
        let refusing = Arc::new(FakeProvider::refusing(Error::invalid("messages", "bad")));
        let other = Arc::new(FakeProvider::new(vec![Step::Complete]));
        let routes = vec![
            Route::new("a", refusing.clone(), "m", 0),
            Route::new("b", other.clone(), "m", 0),
        ];
        let error = serve(&routes, &request()).await.err().unwrap();
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert_eq!(refusing.received().len(), 1);
        assert!(other.received().is_empty());
    }

    #[tokio::test]
    async fn a_failing_route_is_skipped_once_its_circuit_opens() {
        let failing = Arc::new(FakeProvider::refusing(Error::new(
            ErrorKind::Upstream,
            "bad credentials",
        )));
        let working = Arc::new(FakeProvider::new(vec![Step::Complete]));
        let routes = vec![
            Route::new("a", failing.clone(), "m", 0),
            Route::new("b", working.clone(), "m", 0),
        ];
        for _ in 0..BREAKER_THRESHOLD + 3 {
            assert!(serve(&routes, &request()).await.is_ok());
        }
        // Not retried (not retryable), and no longer tried once the circuit opened.
        assert_eq!(failing.received().len(), BREAKER_THRESHOLD as usize);
        assert!(routes[0].health().circuit_open);
        assert_eq!(routes[0].health().retries, 0);
    }

    #[test]
    fn weights_spread_load_and_fallbacks_come_last() {
        let fake = || -> Arc<dyn Provider> { Arc::new(FakeProvider::default()) };
        let routes = vec![
            Route::new("heavy", fake(), "m", 3),
            Route::new("light", fake(), "m", 1),
            Route::new("fallback", fake(), "m", 0),
        ];
        let mut heavy_first = 0;
        for _ in 0..400 {
            let ordered = order(&routes);
            assert_eq!(ordered[2].provider_name, "fallback");
            heavy_first += usize::from(ordered[0].provider_name == "heavy");
        }
        assert!((220..=380).contains(&heavy_first), "{heavy_first}");
    }
}
