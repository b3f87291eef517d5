//! The gateway: the catalog of models, the check that a model can serve what a request asks,
//! routing to the provider behind a catalog entry, and API-key authentication.
//!
//! It speaks only canonical `model` types; it knows nothing of HTTP (the server maps its error
//! kinds to statuses) and nothing of any client wire format.

mod auth;
mod catalog;
mod routing;

pub use auth::{ApiKeys, Caller};
pub use catalog::{Catalog, CatalogEntry, EventStream, Pricing, Provider};
pub use routing::{estimate_tokens, Route, TokenCount};

use std::sync::Arc;

use switchboard_model::{self as model, ErrorKind};

/// Everything a request handler needs, shared by all handlers.
pub struct Gateway {
    pub catalog: Catalog,
    pub keys: ApiKeys,
}

impl Gateway {
    #[must_use]
    pub fn new(catalog: Catalog, keys: ApiKeys) -> Self {
        Self { catalog, keys }
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
        check_capabilities(entry, &request, param_name)?;
        // Providers locate their errors in canonical terms; the surface words them.
        routing::serve(&entry.routes, &request)
            .await
            .map_err(|error| error.locate(param_name))
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
        check_capabilities(entry, &request, param_name)?;
        routing::count(&entry.routes, &request)
            .await
            .map_err(|error| error.locate(param_name))
    }
}

/// Whether the model can serve what the request asks.
fn check_capabilities(
    entry: &CatalogEntry,
    request: &model::Request,
    param_name: fn(model::RequestField) -> String,
) -> Result<(), model::Error> {
    for (capability, field) in request.required_capabilities() {
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
