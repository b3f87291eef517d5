//! `GET /metrics` in Prometheus' text format: every request that named a model, by model,
//! provider, surface and ending; tokens in and out; cost; latency and time to first token; web
//! searches; requests running; the gateway's own overhead before it calls a provider. Fed by
//! the usage tracker when a request ends (and starts), so the metrics and the usage rows never
//! disagree. Error answers are counted by status and type as they leave; each scrape also reads
//! the routes (attempts, failures, retries, fallbacks, open circuits) and the embedded engine
//! (queue depth, batch size) as they are at that moment.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use switchboard_gateway::Gateway;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use switchboard_store::UsageRow;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ending {
    model: String,
    provider: String,
    surface: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Served {
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    status: u16,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

/// The metrics this server keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<Ending, Counter>,
    input_tokens: Family<Served, Counter>,
    output_tokens: Family<Served, Counter>,
    cached_tokens: Family<Served, Counter>,
    searches: Family<Served, Counter>,
    cost: Family<Served, Counter<f64, AtomicU64>>,
    latency: Family<Served, Histogram>,
    first_token: Family<Served, Histogram>,
    overhead: Family<Served, Histogram>,
    errors: Family<Answered, Counter>,
    running: Gauge,
}

fn seconds_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// The metrics, reading `gateway`'s routes and engine at each scrape when given.
    #[must_use]
    pub fn new(gateway: Option<Arc<Gateway>>) -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let requests = Family::<Ending, Counter>::default();
        let input_tokens = Family::<Served, Counter>::default();
        let output_tokens = Family::<Served, Counter>::default();
        let cached_tokens = Family::<Served, Counter>::default();
        let searches = Family::<Served, Counter>::default();
        let cost = Family::<Served, Counter<f64, AtomicU64>>::default();
        let latency = Family::<Served, Histogram>::new_with_constructor(seconds_histogram);
        let first_token = Family::<Served, Histogram>::new_with_constructor(seconds_histogram);
        let overhead = Family::<Served, Histogram>::new_with_constructor(|| {
            // 50 µs to about 1.6 s.
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let errors = Family::<Answered, Counter>::default();
        let running = Gauge::default();
        registry.register(
            "requests",
            "Requests that named a model, by how they ended (completed, length, failed, cancelled, rejected)",
            requests.clone(),
        );
        registry.register("input_tokens", "Prompt tokens", input_tokens.clone());
        registry.register("output_tokens", "Generated tokens", output_tokens.clone());
        registry.register(
            "cached_input_tokens",
            "Prompt tokens served from a prompt cache",
            cached_tokens.clone(),
        );
        registry.register("web_searches", "Web searches run", searches.clone());
        registry.register(
            "cost_usd",
            "Cost priced from the catalog, in USD",
            cost.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its end",
            latency.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from a request's arrival to its first generated output",
            first_token.clone(),
        );
        registry.register(
            "requests_running",
            "Requests being generated now",
            running.clone(),
        );
        registry.register(
            "gateway_overhead_seconds",
            "Time from a request's admission to the gateway's first call to a provider: keys, \
             budgets, rate limits and routing, the part of the time to first token not spent \
             waiting on a provider",
            overhead.clone(),
        );
        registry.register(
            "errors",
            "Error answers, by HTTP status and error type",
            errors.clone(),
        );
        if let Some(gateway) = gateway {
            registry.register_collector(Box::new(Routes { gateway }));
        }
        Self {
            registry,
            requests,
            input_tokens,
            output_tokens,
            cached_tokens,
            searches,
            cost,
            latency,
            first_token,
            overhead,
            errors,
            running,
        }
    }

    /// An error answer left the server.
    pub(crate) fn answered_error(&self, status: u16, kind: switchboard_model::ErrorKind) {
        self.errors
            .get_or_create(&Answered {
                status,
                r#type: switchboard_api::error_type(kind).to_owned(),
            })
            .inc();
    }

    /// A request's provider was first called `overhead` after its admission.
    pub(crate) fn gateway_overhead(
        &self,
        model: &str,
        provider: &str,
        overhead: std::time::Duration,
    ) {
        self.overhead
            .get_or_create(&Served {
                model: model.to_owned(),
                provider: provider.to_owned(),
            })
            .observe(overhead.as_secs_f64());
    }

    pub(crate) fn started(&self) {
        self.running.inc();
    }

    /// A request ended; `generated` says whether it had started generating (and so was
    /// counted as running).
    pub(crate) fn ended(&self, row: &UsageRow, generated: bool) {
        if generated {
            self.running.dec();
        }
        self.requests
            .get_or_create(&Ending {
                model: row.model.clone(),
                provider: row.provider.clone(),
                surface: row.surface.clone(),
                status: row.status.clone(),
            })
            .inc();
        let served = Served {
            model: row.model.clone(),
            provider: row.provider.clone(),
        };
        self.input_tokens
            .get_or_create(&served)
            .inc_by(u64::from(row.prompt_tokens));
        self.output_tokens
            .get_or_create(&served)
            .inc_by(u64::from(row.output_tokens));
        self.cached_tokens
            .get_or_create(&served)
            .inc_by(u64::from(row.cached_tokens));
        self.searches
            .get_or_create(&served)
            .inc_by(u64::from(row.searches));
        #[allow(clippy::cast_precision_loss)]
        self.cost
            .get_or_create(&served)
            .inc_by(row.cost_micros as f64 / 1e6);
        #[allow(clippy::cast_precision_loss)]
        self.latency
            .get_or_create(&served)
            .observe(row.latency_ms as f64 / 1000.0);
        if let Some(ttft) = row.ttft_ms {
            #[allow(clippy::cast_precision_loss)]
            self.first_token
                .get_or_create(&served)
                .observe(ttft as f64 / 1000.0);
        }
    }

    /// The metrics in Prometheus' text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// The routes' counts and circuits, and the embedded engine's queue and batch, read at each
/// scrape.
struct Routes {
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routes")
    }
}

impl Collector for Routes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let routes: Vec<(Served, switchboard_gateway::RouteHealth)> = self
            .gateway
            .catalog
            .entries()
            .iter()
            .flat_map(|entry| {
                entry.routes.iter().map(|route| {
                    (
                        Served {
                            model: entry.id.clone(),
                            provider: route.provider_name.clone(),
                        },
                        route.health(),
                    )
                })
            })
            .collect();
        type Read = fn(&switchboard_gateway::RouteHealth) -> u64;
        let counters: [(&str, &str, Read); 4] = [
            (
                "upstream_attempts",
                "Calls to a route's provider, each retry included",
                |h| h.attempts,
            ),
            (
                "upstream_failures",
                "Calls to a route's provider that failed",
                |h| h.failures,
            ),
            (
                "upstream_retries",
                "Calls made again on the same route after a failure",
                |h| h.retries,
            ),
            (
                "upstream_fallbacks",
                "Requests that gave up on a route after its failures",
                |h| h.fallbacks,
            ),
        ];
        for (name, help, read) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, health) in &routes {
                ConstCounter::new(read(health)).encode(family.encode_family(labels)?)?;
            }
        }
        let mut open = encoder.encode_descriptor(
            "upstream_circuit_open",
            "Whether a route's circuit breaker is open (the route is skipped)",
            None,
            MetricType::Gauge,
        )?;
        for (labels, health) in &routes {
            ConstGauge::new(i64::from(health.circuit_open)).encode(open.encode_family(labels)?)?;
        }
        let engines: Vec<(ModelLabel, switchboard_gateway::Load)> = self
            .gateway
            .catalog
            .entries()
            .iter()
            .filter_map(|entry| {
                let load = entry.routes.iter().find_map(|r| r.provider.load())?;
                Some((
                    ModelLabel {
                        model: entry.id.clone(),
                    },
                    load,
                ))
            })
            .collect();
        type Size = fn(&switchboard_gateway::Load) -> usize;
        let gauges: [(&str, &str, Size); 2] = [
            (
                "engine_queued_requests",
                "Requests waiting for the embedded engine's scheduler",
                |l| l.queued,
            ),
            (
                "engine_batch_size",
                "Requests in the embedded engine's running batch",
                |l| l.running,
            ),
        ];
        for (name, help, read) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, load) in &engines {
                let size = i64::try_from(read(load)).unwrap_or(i64::MAX);
                ConstGauge::new(size).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_gateway::{ApiKeys, Catalog, CatalogEntry, EventStream, Pricing, Provider};
    use switchboard_model::{Error, Request};

    /// A provider with a queue and a batch, as the embedded engine has.
    struct Busy;

    impl Provider for Busy {
        fn generate(
            &self,
            _request: Arc<Request>,
        ) -> futures::future::BoxFuture<'_, Result<EventStream, Error>> {
            Box::pin(async { Err(Error::internal("not in this test")) })
        }

        fn load(&self) -> Option<switchboard_gateway::Load> {
            Some(switchboard_gateway::Load {
                queued: 2,
                running: 3,
            })
        }
    }

    #[test]
    fn a_scrape_reads_the_engine_and_the_routes_as_they_are() {
        let mut catalog = Catalog::default();
        catalog.add(CatalogEntry {
            id: "m".into(),
            owned_by: "switchboard".into(),
            created: 0,
            context_window: 8_000,
            capabilities: vec![],
            pricing: Pricing::default(),
            routes: vec![switchboard_gateway::Route::new(
                "local",
                Arc::new(Busy),
                "m",
                1,
            )],
        });
        let gateway = Arc::new(Gateway::new(catalog, ApiKeys::default()));
        let text = Metrics::new(Some(gateway)).render();
        for line in [
            r#"switchboard_engine_queued_requests{model="m"} 2"#,
            r#"switchboard_engine_batch_size{model="m"} 3"#,
            r#"switchboard_upstream_attempts_total{model="m",provider="local"} 0"#,
            r#"switchboard_upstream_circuit_open{model="m",provider="local"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
