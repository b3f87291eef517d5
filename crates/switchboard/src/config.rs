//! Configuration: the TOML file format (unknown keys are errors), environment variables and
//! flags, resolved in that order of precedence into the typed settings of each crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use switchboard_engine::EngineConfig;
use switchboard_server::ServerConfig;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Accepted API key (repeatable). Also SWITCHBOARD_API_KEYS, comma-separated.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve this GGUF file instead of the default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Catalog id for --model [default: the file name without extension, lowercased].
    #[arg(long)]
    pub model_id: Option<String>,
    /// Allow listening beyond loopback without API keys.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Compute threads for the engine [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Requests that may wait for the engine before new ones get 503.
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// Context window to serve [default: the model's trained context].
    #[arg(long)]
    pub context_window: Option<usize>,
    /// Largest accepted request body in bytes [default: 16 MiB].
    #[arg(long)]
    pub body_limit: Option<usize>,
    /// Where keys, usage and stored responses live: a SQLite file, or `postgres://…` for a
    /// database several nodes share [default: $SWITCHBOARD_HOME/switchboard.db].
    #[arg(long, env = "SWITCHBOARD_STORE")]
    pub store: Option<String>,
    /// Connections open at once [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds in-flight requests may take to finish after SIGTERM [default: 30].
    #[arg(long, value_name = "SECS")]
    pub shutdown_timeout: Option<u64>,
    /// A browser origin allowed to call the API (repeatable; `*` for any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_allowed_origins: Vec<String>,
    /// KV-cache memory running requests may reserve, in MiB [default: half the available memory].
    #[arg(long, value_name = "MIB")]
    pub kv_cache_mib: Option<usize>,
    /// Allow logs to quote prompt and generated text (for debugging only).
    #[arg(long)]
    pub log_content: bool,
    /// The key that manages API keys over /v1/account/keys. Also SWITCHBOARD_ADMIN_KEY.
    #[arg(long)]
    pub admin_key: Option<String>,
    /// The account's credit in USD, against which /v1/account/balance counts all keys' spend.
    #[arg(long, value_name = "USD")]
    pub account_credit: Option<f64>,
    /// An extra address serving /metrics without a key, for a private network.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The configuration file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub insecure_no_auth: Option<bool>,
    pub body_limit: Option<usize>,
    pub store: Option<String>,
    pub header_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub write_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    pub log_content: Option<bool>,
    /// The key that manages API keys (prefer the environment or a flag to a file).
    pub admin_key: Option<String>,
    /// The account's credit in USD (`/v1/account/balance`).
    pub account_credit: Option<f64>,
    /// An extra address serving `/metrics` without a key.
    pub metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    pub engine: FileEngineConfig,
    /// Upstream providers the catalog's models route to.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Models served through providers (the embedded model is added unless turned off).
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// The search backend the gateway uses for models that cannot search themselves.
    pub web_search: Option<WebSearchConfig>,
    /// Rate limits on all requests together and per model, beside each key's own.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[limits]`: the server's own rate limits (each key has its own too).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Redis (`redis://127.0.0.1:6379`) holding the limits' counts, shared by several nodes.
    pub redis: Option<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
    /// Per catalog id: `models = { "gpt-4o" = { requests_per_minute = 100 } }`.
    #[serde(default)]
    pub models: std::collections::HashMap<String, switchboard_gateway::KeyLimits>,
}

/// `[web_search]`: where gateway-run web search gets its results.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebSearchConfig {
    pub backend: SearchBackendKind,
    /// The backend's root (`http://127.0.0.1:8888` for a local SearXNG).
    pub base_url: String,
    /// The environment variable holding the backend's API key, for hosted backends.
    pub api_key_env: Option<String>,
    /// Results put in the model's context [default: 5].
    pub max_results: Option<usize>,
    /// Seconds a search may take before the request fails [default: 10].
    pub timeout_secs: Option<u64>,
    /// USD per gateway-run search, shown in `/v1/models` and counted as usage's cost
    /// [default: 0].
    pub price_per_search: Option<f64>,
    /// Top results whose pages are read for the model (0 keeps to the snippets) [default: 3].
    pub fetch_pages: Option<usize>,
    /// Seconds reading one page may take [default: 5].
    pub page_timeout_secs: Option<u64>,
    /// Addresses (`10.0.0.0/8`, `127.0.0.1`) result pages may be read from although they are
    /// not public; everything private is refused otherwise.
    #[serde(default)]
    pub fetch_allow: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackendKind {
    /// A SearXNG instance with its JSON format enabled.
    Searxng,
    /// Brave's hosted Web Search API (`api_key_env` names the variable holding its key).
    Brave,
}

/// `[[providers]]`: one upstream API.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// What routes call it.
    pub name: String,
    pub kind: ProviderKind,
    /// The API root as the provider's official SDK takes it (`https://api.openai.com/v1`).
    pub base_url: String,
    /// The environment variable holding the provider's API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Extra headers for every request to this provider.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// OpenAI only: the wire, `"chat"` (Chat Completions, the default, which every compatible
    /// server speaks) or `"responses"` (OpenAI's Responses API: its web search tool and
    /// encrypted reasoning).
    pub api: Option<String>,
    /// Anthropic only: `"native"` asks for JSON answers with `output_format` (models with
    /// structured outputs), `"tool"` (the default) through a forced tool call.
    pub structured_outputs: Option<String>,
    /// Anthropic only: `"budget"` (the default) asks for reasoning with thinking budgets,
    /// `"adaptive"` with adaptive thinking and `output_config.effort` (the newer models).
    pub thinking: Option<String>,
    /// Gemini only: addresses (`10.0.0.0/8`, `127.0.0.1`) media URLs may be fetched from
    /// although they are not public; everything private is refused otherwise.
    #[serde(default)]
    pub fetch_allow: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any server speaking OpenAI's Chat Completions wire.
    Openai,
    Anthropic,
    Gemini,
}

/// Seconds each part of an upstream exchange may take.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    pub connect: Option<u64>,
    pub first_byte: Option<u64>,
    pub idle: Option<u64>,
    pub total: Option<u64>,
}

/// `[[models]]`: a catalog entry served through routes.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What clients send as `model`.
    pub id: String,
    pub context_window: Option<u32>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub pricing: PricingConfig,
    pub routes: Vec<RouteConfig>,
}

/// USD per million tokens.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    #[serde(default)]
    pub input: f64,
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub output: f64,
    /// USD per search the provider runs natively (models with the `web_search` capability).
    pub web_search: Option<f64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub provider: String,
    /// The model as the provider names it.
    pub model: String,
    /// Share of traffic among the weighted routes; routes without a weight are fallbacks,
    /// tried in order after them.
    pub weight: Option<u32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileEngineConfig {
    pub model: Option<PathBuf>,
    pub model_id: Option<String>,
    pub threads: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub max_sequences: Option<usize>,
    pub step_tokens: Option<usize>,
    pub context_window: Option<usize>,
    pub prefix_cache_tokens: Option<usize>,
    pub kv_cache_mib: Option<usize>,
    /// Serve the embedded model (default); `false` runs a pure gateway.
    pub enabled: Option<bool>,
}

/// Fully resolved settings for `serve`.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub api_keys: Vec<String>,
    pub insecure_no_auth: bool,
    pub model: Option<PathBuf>,
    pub model_id: Option<String>,
    pub engine: EngineConfig,
    pub server: ServerConfig,
    /// The store's location (a SQLite file or a `postgres://` URL); `None` means the default
    /// SQLite file under `$SWITCHBOARD_HOME`.
    pub store: Option<String>,
    /// Whether the embedded model is in the catalog.
    pub local_model: bool,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub web_search: Option<WebSearchConfig>,
    /// The key that manages API keys; `None` disables `/v1/account/keys`.
    pub admin_key: Option<String>,
}

const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let env_keys = std::env::var("SWITCHBOARD_API_KEYS").unwrap_or_default();
        let mut settings = Self::merge(file, &env_keys, args);
        if args.admin_key.is_none() {
            if let Ok(key) = std::env::var("SWITCHBOARD_ADMIN_KEY") {
                if !key.trim().is_empty() {
                    settings.admin_key = Some(key.trim().to_owned());
                }
            }
        }
        Ok(settings)
    }

    fn merge(file: FileConfig, env_keys: &str, args: &ServeArgs) -> Self {
        let mut api_keys = file.api_keys;
        api_keys.extend(
            env_keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
        api_keys.extend(args.api_keys.iter().cloned());
        let defaults = EngineConfig::default();
        let server_defaults = ServerConfig::default();
        let e = file.engine;
        let insecure_no_auth = args.insecure_no_auth || file.insecure_no_auth.unwrap_or(false);
        let mut cors_allowed_origins = file.cors_allowed_origins;
        cors_allowed_origins.extend(args.cors_allowed_origins.iter().cloned());
        let seconds =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        Self {
            listen: args.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN),
            api_keys,
            insecure_no_auth,
            local_model: e.enabled.unwrap_or(true),
            providers: file.providers,
            models: file.models,
            web_search: file.web_search,
            admin_key: args
                .admin_key
                .clone()
                .or(file.admin_key)
                .filter(|key| !key.trim().is_empty()),
            model: args.model.clone().or(e.model),
            store: args.store.clone().or(file.store),
            model_id: args.model_id.clone().or(e.model_id),
            engine: EngineConfig {
                threads: args.threads.or(e.threads).unwrap_or(defaults.threads),
                queue_capacity: args
                    .queue_capacity
                    .or(e.queue_capacity)
                    .unwrap_or(defaults.queue_capacity),
                max_sequences: e.max_sequences.unwrap_or(defaults.max_sequences),
                step_tokens: e.step_tokens.unwrap_or(defaults.step_tokens),
                context_window: args
                    .context_window
                    .or(e.context_window)
                    .unwrap_or(defaults.context_window),
                prefix_cache_tokens: e
                    .prefix_cache_tokens
                    .unwrap_or(defaults.prefix_cache_tokens),
                log_content: args.log_content || file.log_content.unwrap_or(false),
                kv_cache_bytes: args
                    .kv_cache_mib
                    .or(e.kv_cache_mib)
                    .map_or(defaults.kv_cache_bytes, |mib| mib.saturating_mul(1 << 20)),
            },
            server: ServerConfig {
                body_limit: args
                    .body_limit
                    .or(file.body_limit)
                    .unwrap_or(switchboard_server::DEFAULT_BODY_LIMIT),
                header_timeout: seconds(file.header_timeout_secs, server_defaults.header_timeout),
                idle_timeout: seconds(file.idle_timeout_secs, server_defaults.idle_timeout),
                write_timeout: seconds(file.write_timeout_secs, server_defaults.write_timeout),
                body_timeout: seconds(file.body_timeout_secs, server_defaults.body_timeout),
                max_connections: args
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(server_defaults.max_connections),
                shutdown_timeout: seconds(
                    args.shutdown_timeout.or(file.shutdown_timeout_secs),
                    server_defaults.shutdown_timeout,
                ),
                cors_allowed_origins,
                insecure_no_auth,
                #[allow(clippy::cast_possible_truncation)]
                account_credit_micros: args
                    .account_credit
                    .or(file.account_credit)
                    .filter(|usd| usd.is_finite() && *usd >= 0.0)
                    .map(|usd| (usd * 1e6).round() as i64),
                metrics_listen: args.metrics_listen.or(file.metrics_listen),
                global_limits: switchboard_gateway::KeyLimits {
                    requests_per_minute: file.limits.requests_per_minute,
                    tokens_per_minute: file.limits.tokens_per_minute,
                    max_concurrent: file.limits.max_concurrent,
                },
                redis_url: file.limits.redis.clone(),
                model_limits: file.limits.models.clone(),
            },
        }
    }
}

pub(crate) fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// `SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct.q4_1`.
pub fn model_id_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_env_override_file() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            api_keys = ["from-file"]
            body_limit = 10
            [engine]
            threads = 3
            queue_capacity = 5
            "#,
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:1234".parse().unwrap()),
            api_keys: vec!["from-flag".into()],
            threads: Some(1),
            ..ServeArgs::default()
        };
        let settings = Settings::merge(file, "from-env, other-env", &args);
        assert_eq!(settings.listen, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(
            settings.api_keys,
            vec!["from-file", "from-env", "other-env", "from-flag"]
        );
        assert_eq!(settings.engine.threads, 1);
        assert_eq!(settings.engine.queue_capacity, 5);
        assert_eq!(settings.server.body_limit, 10);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[engine]\nthread = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nmodels = { m = { rpm = 5 } }").is_err());
    }

    #[test]
    fn limits_are_read_for_the_server_and_each_model() {
        let file: FileConfig = toml::from_str(
            r#"
[limits]
redis = "redis://127.0.0.1:6379"
requests_per_minute = 6000
models = { "gpt-4o" = { tokens_per_minute = 2000000 }, small = { max_concurrent = 8 } }
"#,
        )
        .unwrap();
        assert_eq!(file.limits.requests_per_minute, Some(6000));
        assert_eq!(file.limits.redis.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(
            file.limits.models["gpt-4o"].tokens_per_minute,
            Some(2_000_000)
        );
        assert_eq!(file.limits.models["small"].max_concurrent, Some(8));
        assert_eq!(file.limits.models["small"].requests_per_minute, None);
    }

    #[test]
    fn model_ids_come_from_file_names() {
        assert_eq!(
            model_id_from_path(Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
            "smollm2-135m-instruct.q4_1"
        );
    }
}
