//! `GET /metrics` in Prometheus' text format: every request that named a model, by model,
//! provider, surface and ending; tokens in and out; cost; latency and time to first token; web
//! searches; requests running. Fed by the usage tracker when a request ends (and starts), so
//! the metrics and the usage rows never disagree.

use std::sync::atomic::AtomicU64;

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
    running: Gauge,
}

fn seconds_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let requests = Family::<Ending, Counter>::default();
        let input_tokens = Family::<Served, Counter>::default();
        let output_tokens = Family::<Served, Counter>::default();
        let cached_tokens = Family::<Served, Counter>::default();
        let searches = Family::<Served, Counter>::default();
        let cost = Family::<Served, Counter<f64, AtomicU64>>::default();
        let latency = Family::<Served, Histogram>::new_with_constructor(seconds_histogram);
        let first_token = Family::<Served, Histogram>::new_with_constructor(seconds_histogram);
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
            running,
        }
    }
}

impl Metrics {
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
