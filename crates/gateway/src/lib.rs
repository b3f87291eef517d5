//! The gateway: the catalog of models, the check that a model can serve what a request asks,
//! routing to the provider behind a catalog entry, and API-key authentication.
//!
//! It speaks only canonical `model` types; it knows nothing of HTTP (the server maps its error
//! kinds to statuses) and nothing of any client wire format.

mod auth;
mod catalog;
mod routing;
pub mod search;

pub use auth::{key_digest, missing_key, wrong_key, ApiKeys, Caller, Identity, KeyLimits};
pub use catalog::{Catalog, CatalogEntry, EventStream, Pricing, Provider};
pub use routing::{estimate_tokens, Route, RouteHealth, TokenCount};
pub use switchboard_providers::{Load, Served};

use std::sync::Arc;

use switchboard_model::{self as model, ErrorKind};

/// Everything a request handler needs, shared by all handlers.
pub struct Gateway {
    pub catalog: Catalog,
    pub keys: ApiKeys,
    /// The search the gateway runs for models that cannot search themselves; `None` when no
    /// backend is configured.
    pub web_search: Option<search::WebSearch>,
}

impl Gateway {
    #[must_use]
    pub fn new(catalog: Catalog, keys: ApiKeys) -> Self {
        Self {
            catalog,
            keys,
            web_search: None,
        }
    }

    #[must_use]
    pub fn with_web_search(mut self, web_search: search::WebSearch) -> Self {
        self.web_search = Some(web_search);
        self
    }

    /// Checks the request against the model's capabilities and starts generating.
    /// `param_name` is the calling surface's name for a request field, so an error names the
    /// parameter the client actually sent.
    ///
    /// # Errors
    /// `ModelNotFound`, `Unsupported` naming the parameter the model cannot honour, or whatever
    /// the provider rejects (context length, overload).
    pub async fn generate(
        &self,
        request: Arc<model::Request>,
        param_name: fn(model::RequestField) -> String,
    ) -> Result<EventStream, model::Error> {
        let entry = self.catalog.get(&request.model)?;
        let searching = self.gateway_searches(entry, &request, param_name)?;
        check_capabilities(entry, &request, param_name, searching)?;
        let Some(search) = self.web_search.as_ref().filter(|_| searching) else {
            // Providers locate their errors in canonical terms; the surface words them.
            return routing::serve(&entry.routes, &request)
                .await
                .map_err(|error| error.locate(param_name));
        };
        let providers: Vec<&dyn Provider> = entry.routes.iter().map(|r| &*r.provider).collect();
        let calls_tools = entry.capabilities.contains(&model::Capability::Tools);
        if search::WebSearch::model_may_search(&request, calls_tools, &providers) {
            // The model chooses its queries: it gets a `web_search` function the gateway runs.
            let first = search::WebSearch::with_search_tool(&request);
            let served = routing::serve_on(&entry.routes, &Arc::new(first.clone()))
                .await
                .map_err(|error| error.locate(param_name))?;
            return Ok(search.search_loop(
                served.events,
                served.provider,
                served.model,
                first,
                request.web_search.clone(),
            ));
        }
        let (augmented, search) = search
            .prepare(&request)
            .await
            .map_err(|error| error.locate(param_name))?;
        let stream = routing::serve(&entry.routes, &Arc::new(augmented))
            .await
            .map_err(|error| error.locate(param_name))?;
        Ok(search.cite(stream))
    }

    /// What one web search costs on this entry: its provider's price where it searches
    /// natively, the gateway's search otherwise; `None` when it cannot search.
    #[must_use]
    pub fn price_per_web_search(&self, entry: &CatalogEntry) -> Option<f64> {
        if entry.capabilities.contains(&model::Capability::WebSearch) {
            return Some(entry.pricing.per_web_search.unwrap_or(0.0));
        }
        self.web_search
            .as_ref()
            .map(|search| search.price_per_search)
    }

    /// Whether the gateway runs the search this request asks for (the model's provider
    /// cannot). With no backend configured that is a 400 saying how to configure one.
    fn gateway_searches(
        &self,
        entry: &CatalogEntry,
        request: &model::Request,
        param_name: fn(model::RequestField) -> String,
    ) -> Result<bool, model::Error> {
        if request.web_search.is_none()
            || entry.capabilities.contains(&model::Capability::WebSearch)
        {
            return Ok(false);
        }
        if self.web_search.is_some() {
            return Ok(true);
        }
        let param = param_name(model::RequestField::WebSearch);
        Err(model::Error::new(
            ErrorKind::Unsupported,
            format!(
                "The model `{}` does not support web search itself, and no search backend \
                 is configured for the gateway to search for it (parameter '{param}'). Add a \
                 `[web_search]` section with `backend = \"searxng\"` and its `base_url` to \
                 the configuration file.",
                entry.id
            ),
        )
        .with_param(param)
        .with_code("unsupported_parameter"))
    }

    /// The request's prompt size in tokens: the serving provider's own count where it has
    /// one, else [`routing::estimate_tokens`].
    ///
    /// # Errors
    /// As [`Gateway::generate`] before generating.
    pub async fn count_tokens(
        &self,
        request: Arc<model::Request>,
        param_name: fn(model::RequestField) -> String,
    ) -> Result<TokenCount, model::Error> {
        let entry = self.catalog.get(&request.model)?;
        let searching = self.gateway_searches(entry, &request, param_name)?;
        check_capabilities(entry, &request, param_name, searching)?;
        routing::count(&entry.routes, &request)
            .await
            .map_err(|error| error.locate(param_name))
    }
}

/// Whether the model can serve what the request asks (web search aside when the gateway
/// runs it).
fn check_capabilities(
    entry: &CatalogEntry,
    request: &model::Request,
    param_name: fn(model::RequestField) -> String,
    gateway_searches: bool,
) -> Result<(), model::Error> {
    for (capability, field) in request.required_capabilities() {
        if gateway_searches && capability == model::Capability::WebSearch {
            continue;
        }
        let param = param_name(field);
        if !entry.capabilities.contains(&capability) {
            return Err(model::Error::new(
                ErrorKind::Unsupported,
                format!(
                    "The model `{}` does not support {} yet (parameter '{param}').",
                    entry.id,
                    describe(capability)
                ),
            )
            .with_param(param)
            .with_code("unsupported_parameter"));
        }
    }
    Ok(())
}

fn describe(capability: model::Capability) -> &'static str {
    use model::Capability as C;
    match capability {
        C::Tools => "tool calling",
        C::JsonObject => "JSON mode (response_format json_object)",
        C::JsonSchema => "structured outputs (response_format json_schema)",
        C::Vision => "image inputs",
        C::AudioInput => "audio inputs",
        C::AudioOutput => "audio outputs",
        C::Files => "file inputs",
        C::Reasoning => "reasoning",
        C::WebSearch => "web search",
    }
}
