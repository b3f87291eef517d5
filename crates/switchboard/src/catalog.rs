//! The catalog from the settings: the embedded model (unless turned off) and every
//! `[[models]]` entry with its routes to `[[providers]]`. Everything a typo could break is
//! checked here, at start-up, with the offending name in the message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use switchboard_gateway::{Catalog, CatalogEntry, Pricing, Provider, Route};
use switchboard_model::Capability;
use switchboard_providers::anthropic::{
    AnthropicConfig, AnthropicProvider, StructuredOutputs, ThinkingMode,
};
use switchboard_providers::fetch::{parse_allow, FetchPolicy};
use switchboard_providers::gemini::GeminiProvider;
use switchboard_providers::http::{Timeouts, UpstreamConfig};
use switchboard_providers::openai::OpenAiProvider;
use switchboard_providers::openai_responses::OpenAiResponsesProvider;

use crate::config::{ModelConfig, ProviderConfig, ProviderKind};

/// Adds the configured models to `catalog`. `env` reads an environment variable (the
/// providers' keys), so tests need not touch the process environment.
pub fn add_configured_models(
    catalog: &mut Catalog,
    providers: &[ProviderConfig],
    models: &[ModelConfig],
    created: u64,
    env: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    let mut built: HashMap<&str, Arc<dyn Provider>> = HashMap::new();
    for config in providers {
        if built.contains_key(config.name.as_str()) {
            bail!("provider '{}' is configured twice", config.name);
        }
        built.insert(&config.name, provider(config, &env)?);
    }
    for model in models {
        if model.routes.is_empty() {
            bail!("model '{}' has no routes", model.id);
        }
        let mut capabilities = Vec::with_capacity(model.capabilities.len());
        for name in &model.capabilities {
            let Some(capability) = Capability::from_name(name) else {
                bail!(
                    "model '{}': unknown capability '{name}' (known: {})",
                    model.id,
                    Capability::ALL.map(Capability::as_str).join(", ")
                );
            };
            capabilities.push(capability);
        }
        let mut routes = Vec::with_capacity(model.routes.len());
        for route in &model.routes {
            let Some(provider) = built.get(route.provider.as_str()) else {
                bail!(
                    "model '{}': route to unknown provider '{}'",
                    model.id,
                    route.provider
                );
            };
            routes.push(Route::new(
                &route.provider,
                Arc::clone(provider),
                &route.model,
                route.weight.unwrap_or(0),
            ));
        }
        catalog.add(CatalogEntry {
            id: model.id.clone(),
            owned_by: model.routes[0].provider.clone(),
            created,
            context_window: model.context_window.unwrap_or(0),
            capabilities,
            pricing: Pricing {
                input_per_million: model.pricing.input,
                cached_input_per_million: model.pricing.cached_input,
                output_per_million: model.pricing.output,
                per_web_search: model.pricing.web_search,
            },
            routes,
        });
    }
    Ok(())
}

fn provider(
    config: &ProviderConfig,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Provider>> {
    let api_key =
        match &config.api_key_env {
            None => None,
            Some(variable) => Some(env(variable).filter(|key| !key.is_empty()).with_context(
                || {
                    format!(
                "provider '{}': the environment variable {variable} (api_key_env) is not set",
                config.name
            )
                },
            )?),
        };
    let defaults = Timeouts::default();
    let seconds =
        |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
    let timeouts = Timeouts {
        connect: seconds(config.timeouts.connect, defaults.connect),
        first_byte: seconds(config.timeouts.first_byte, defaults.first_byte),
        idle: seconds(config.timeouts.idle, defaults.idle),
        total: seconds(config.timeouts.total, defaults.total),
    };
    let upstream = UpstreamConfig {
        name: config.name.clone(),
        base_url: config.base_url.clone(),
        api_key,
        headers: config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        timeouts,
    };
    let failed = |err: switchboard_model::Error| {
        anyhow::anyhow!("provider '{}': {}", config.name, err.message)
    };
    if !config.fetch_allow.is_empty() && config.kind != ProviderKind::Gemini {
        bail!(
            "provider '{}': fetch_allow applies to kind \"gemini\" only",
            config.name
        );
    }
    if (config.structured_outputs.is_some() || config.thinking.is_some())
        && config.kind != ProviderKind::Anthropic
    {
        bail!(
            "provider '{}': structured_outputs and thinking apply to kind \"anthropic\" only",
            config.name
        );
    }
    if config.api.is_some() && config.kind != ProviderKind::Openai {
        bail!(
            "provider '{}': api applies to kind \"openai\" only",
            config.name
        );
    }
    match config.kind {
        ProviderKind::Openai => match config.api.as_deref() {
            None | Some("chat") => Ok(Arc::new(OpenAiProvider::new(upstream).map_err(failed)?)),
            Some("responses") => Ok(Arc::new(
                OpenAiResponsesProvider::new(upstream).map_err(failed)?,
            )),
            Some(other) => bail!(
                "provider '{}': api must be \"chat\" or \"responses\", not \"{other}\"",
                config.name
            ),
        },
        ProviderKind::Anthropic => Ok(Arc::new(
            AnthropicProvider::new(AnthropicConfig {
                upstream,
                structured_outputs: match config.structured_outputs.as_deref() {
                    None | Some("tool") => StructuredOutputs::ForcedTool,
                    Some("native") => StructuredOutputs::Native,
                    Some(other) => bail!(
                        "provider '{}': structured_outputs must be \"native\" or \"tool\", \
                         not \"{other}\"",
                        config.name
                    ),
                },
                thinking: match config.thinking.as_deref() {
                    None | Some("budget") => ThinkingMode::Budget,
                    Some("adaptive") => ThinkingMode::Adaptive,
                    Some(other) => bail!(
                        "provider '{}': thinking must be \"budget\" or \"adaptive\", not \
                         \"{other}\"",
                        config.name
                    ),
                },
            })
            .map_err(failed)?,
        )),
        ProviderKind::Gemini => {
            let allow = parse_allow(&config.fetch_allow)
                .map_err(|err| anyhow::anyhow!("provider '{}': fetch_allow: {err}", config.name))?;
            let fetch = FetchPolicy {
                allow,
                ..FetchPolicy::default()
            };
            Ok(Arc::new(
                GeminiProvider::new(upstream, fetch).map_err(failed)?,
            ))
        }
    }
}

/// The gateway's search from `[web_search]`; `env` reads environment variables.
///
/// # Errors
/// When the backend cannot be set up, or its key is missing or not asked for.
pub fn web_search(
    config: &crate::config::WebSearchConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<switchboard_gateway::search::WebSearch> {
    use crate::config::SearchBackendKind;
    use switchboard_gateway::search::{Brave, PageReader, SearchBackend, Searxng, WebSearch};
    let timeout = Duration::from_secs(config.timeout_secs.unwrap_or(10));
    let key = match &config.api_key_env {
        Some(name) => Some(env(name).with_context(|| {
            format!("[web_search]: the environment variable {name} (api_key_env) is not set")
        })?),
        None => None,
    };
    let backend: Arc<dyn SearchBackend> = match config.backend {
        SearchBackendKind::Searxng => {
            if key.is_some() {
                bail!("[web_search]: backend \"searxng\" takes no API key; remove api_key_env");
            }
            Arc::new(
                Searxng::new(&config.base_url, timeout)
                    .map_err(|e| anyhow::anyhow!("[web_search]: {}", e.message))?,
            )
        }
        SearchBackendKind::Brave => {
            let Some(key) = key else {
                bail!("[web_search]: backend \"brave\" needs api_key_env, the variable holding its key");
            };
            Arc::new(
                Brave::new(&config.base_url, key, timeout)
                    .map_err(|e| anyhow::anyhow!("[web_search]: {}", e.message))?,
            )
        }
    };
    let max_results = config.max_results.unwrap_or(5);
    if !(1..=20).contains(&max_results) {
        bail!("[web_search]: max_results must be between 1 and 20");
    }
    let price = config.price_per_search.unwrap_or(0.0);
    if !(price.is_finite() && price >= 0.0) {
        bail!("[web_search]: price_per_search must be a non-negative number of USD");
    }
    let mut pages = PageReader {
        pages: config.fetch_pages.unwrap_or(3),
        ..PageReader::default()
    };
    if pages.pages > 20 {
        bail!("[web_search]: fetch_pages must be at most 20");
    }
    pages.policy.allow = parse_allow(&config.fetch_allow)
        .map_err(|e| anyhow::anyhow!("[web_search] fetch_allow: {e}"))?;
    if let Some(seconds) = config.page_timeout_secs {
        pages.policy.timeout = Duration::from_secs(seconds.clamp(1, 60));
    }
    Ok(WebSearch::new(backend, max_results)
        .with_price(price)
        .with_pages(Some(pages)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    const EXAMPLE: &str = r#"
        [[providers]]
        name = "oai"
        kind = "openai"
        base_url = "http://127.0.0.1:9001/v1"
        api_key_env = "OAI_KEY"
        headers = { "X-Title" = "switchboard" }
        timeouts = { connect = 5, first_byte = 30, idle = 30, total = 600 }

        [[providers]]
        name = "backup"
        kind = "openai"
        base_url = "http://127.0.0.1:9002/v1"

        [[models]]
        id = "gpt-test"
        context_window = 128000
        capabilities = ["tools", "json_object", "json_schema", "vision", "reasoning"]
        pricing = { input = 0.15, cached_input = 0.075, output = 0.60 }
        routes = [{ provider = "oai", model = "gpt-4o-mini" }, { provider = "backup", model = "gpt-4o-mini" }]
    "#;

    fn build(text: &str, env: &[(&str, &str)]) -> Result<Catalog> {
        let file: FileConfig = toml::from_str(text)?;
        let mut catalog = Catalog::default();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        add_configured_models(&mut catalog, &file.providers, &file.models, 7, |name| {
            env.get(name).cloned()
        })?;
        Ok(catalog)
    }

    #[test]
    fn the_documented_example_builds_a_routed_entry() {
        let catalog = build(EXAMPLE, &[("OAI_KEY", "sk-upstream")]).unwrap();
        let entry = catalog.get("gpt-test").unwrap();
        assert_eq!(entry.owned_by, "oai");
        assert_eq!(entry.context_window, 128_000);
        assert_eq!(entry.capabilities.len(), 5);
        assert_eq!(entry.pricing.cached_input_per_million, Some(0.075));
        let routes: Vec<_> = entry
            .routes
            .iter()
            .map(|r| (r.provider_name.as_str(), r.model.as_str()))
            .collect();
        assert_eq!(routes, [("oai", "gpt-4o-mini"), ("backup", "gpt-4o-mini")]);
    }

    #[test]
    fn every_provider_kind_builds() {
        let text = EXAMPLE.replace(
            "kind = \"openai\"\n        base_url = \"http://127.0.0.1:9002/v1\"",
            "kind = \"anthropic\"\n        base_url = \"http://127.0.0.1:9002\"\n        structured_outputs = \"native\"\n        thinking = \"adaptive\"",
        ) + r#"
        [[providers]]
        name = "gm"
        kind = "gemini"
        base_url = "http://127.0.0.1:9003"

        [[providers]]
        name = "oai-responses"
        kind = "openai"
        api = "responses"
        base_url = "http://127.0.0.1:9004/v1"

        [[models]]
        id = "gemini-test"
        routes = [{ provider = "gm", model = "gemini-2.5-flash" }]

        [[models]]
        id = "gpt-responses"
        capabilities = ["web_search"]
        pricing = { input = 1.0, output = 4.0, web_search = 0.01 }
        routes = [{ provider = "oai-responses", model = "gpt-x" }]
        "#;
        let catalog = build(&text, &[("OAI_KEY", "k")]).unwrap();
        assert_eq!(catalog.get("gemini-test").unwrap().owned_by, "gm");
        let responses = catalog.get("gpt-responses").unwrap();
        assert_eq!(responses.owned_by, "oai-responses");
        assert_eq!(responses.pricing.per_web_search, Some(0.01));
    }

    #[test]
    fn mistakes_are_named_at_start_up() {
        let missing_key = build(EXAMPLE, &[]).err().unwrap().to_string();
        assert!(missing_key.contains("OAI_KEY"), "{missing_key}");
        assert!(!missing_key.contains("sk-"), "{missing_key}");
        let unknown_capability = build(
            &EXAMPLE.replace("\"reasoning\"]", "\"telepathy\"]"),
            &[("OAI_KEY", "k")],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            unknown_capability.contains("telepathy"),
            "{unknown_capability}"
        );
        let unknown_provider = build(
            &EXAMPLE.replace("provider = \"backup\"", "provider = \"bakup\""),
            &[("OAI_KEY", "k")],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(unknown_provider.contains("bakup"), "{unknown_provider}");
        let misplaced = build(
            &EXAMPLE.replace(
                "kind = \"openai\"\n        base_url = \"http://127.0.0.1:9002/v1\"",
                "kind = \"gemini\"\n        base_url = \"http://127.0.0.1:9002\"\n        thinking = \"adaptive\"",
            ),
            &[("OAI_KEY", "k")],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(misplaced.contains("anthropic"), "{misplaced}");
        let wrong_mode = build(
            &EXAMPLE.replace(
                "kind = \"openai\"\n        base_url = \"http://127.0.0.1:9002/v1\"",
                "kind = \"anthropic\"\n        base_url = \"http://127.0.0.1:9002\"\n        structured_outputs = \"magic\"",
            ),
            &[("OAI_KEY", "k")],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(wrong_mode.contains("magic"), "{wrong_mode}");
        for (api, wanted) in [
            ("kind = \"openai\"\n        api = \"graphql\"", "graphql"),
            (
                "kind = \"gemini\"\n        api = \"responses\"",
                "kind \"openai\" only",
            ),
        ] {
            let text = EXAMPLE.replace(
                "kind = \"openai\"\n        base_url = \"http://127.0.0.1:9002/v1\"",
                &format!("{api}\n        base_url = \"http://127.0.0.1:9002/v1\""),
            );
            let error = build(&text, &[("OAI_KEY", "k")]).err().unwrap().to_string();
            assert!(error.contains(wanted), "{error}");
        }
        assert!(toml::from_str::<FileConfig>(&EXAMPLE.replace("base_url", "baseurl")).is_err());
        assert!(toml::from_str::<FileConfig>(
            &EXAMPLE.replace("kind = \"openai\"", "kind = \"cohere\"")
        )
        .is_err());
    }

    #[test]
    fn web_search_backends_are_checked_at_start_up() {
        let config = |text: &str| {
            toml::from_str::<FileConfig>(text)
                .unwrap()
                .web_search
                .unwrap()
        };
        let env = |name: &str| (name == "BRAVE_KEY").then(|| "k".to_owned());
        let searxng = config("[web_search]\nbackend = \"searxng\"\nbase_url = \"http://127.0.0.1:8888\"\nmax_results = 3");
        assert!(web_search(&searxng, env).is_ok());
        let brave = config("[web_search]\nbackend = \"brave\"\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"BRAVE_KEY\"");
        assert!(web_search(&brave, env).is_ok());
        for (text, wanted) in [
            ("[web_search]\nbackend = \"brave\"\nbase_url = \"http://x\"", "needs api_key_env"),
            ("[web_search]\nbackend = \"brave\"\nbase_url = \"http://x\"\napi_key_env = \"NOPE\"", "NOPE"),
            ("[web_search]\nbackend = \"searxng\"\nbase_url = \"http://x\"\napi_key_env = \"BRAVE_KEY\"", "takes no API key"),
            ("[web_search]\nbackend = \"searxng\"\nbase_url = \"http://x\"\nmax_results = 0", "max_results"),
        ] {
            let error = web_search(&config(text), env).err().unwrap().to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
        assert!(
            toml::from_str::<FileConfig>("[web_search]\nbackend = \"bing\"\nbase_url = \"x\"")
                .is_err()
        );
        assert!(toml::from_str::<FileConfig>(
            "[web_search]\nbackend = \"searxng\"\nbase_url = \"x\"\nmax_result = 1"
        )
        .is_err());
    }
}
