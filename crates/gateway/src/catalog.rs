//! The catalog: the models this server offers, what each can do, what it costs, and the
//! provider that serves it. Every provider plugs in through `switchboard_providers::Provider`;
//! the catalog holds them as trait objects and never sees how they work.

use std::sync::Arc;

use switchboard_model::{self as model, Capability, ErrorKind};
use switchboard_providers::local::{Engine, LocalProvider};
pub use switchboard_providers::{EventStream, Provider};

use crate::routing::Route;

/// Price per million tokens, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pricing {
    pub input_per_million: f64,
    /// Prompt tokens served from the provider's cache, where it charges less for them.
    pub cached_input_per_million: Option<f64>,
    pub output_per_million: f64,
    /// USD per web search the provider runs natively (models with the `web_search`
    /// capability); gateway-run searches are priced by the gateway's search instead.
    pub per_web_search: Option<f64>,
}

pub struct CatalogEntry {
    pub id: String,
    pub owned_by: String,
    /// Unix seconds when the entry was registered.
    pub created: u64,
    pub context_window: u32,
    pub capabilities: Vec<Capability>,
    pub pricing: Pricing,
    /// The providers that can serve it, in the order configured.
    pub routes: Vec<Route>,
}

impl CatalogEntry {
    /// An entry for a model served by the embedded engine. Local inference costs nothing per
    /// token. Tool calls and JSON output are guaranteed by constrained decoding, so every local
    /// model has them, whatever it was trained on.
    #[must_use]
    pub fn local(engine: Engine, created: u64) -> Self {
        let provider = LocalProvider::new(engine);
        let info = provider.info().clone();
        Self {
            id: info.name.clone(),
            owned_by: "switchboard".into(),
            created,
            context_window: u32::try_from(info.context_window).unwrap_or(u32::MAX),
            capabilities: vec![
                Capability::Tools,
                Capability::JsonObject,
                Capability::JsonSchema,
            ],
            pricing: Pricing::default(),
            routes: vec![Route::new("local", Arc::new(provider), info.name, 1)],
        }
    }
}

#[derive(Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    pub fn add(&mut self, entry: CatalogEntry) {
        self.entries.retain(|e| e.id != entry.id);
        self.entries.push(entry);
    }

    #[must_use]
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// # Errors
    /// `ModelNotFound` when no entry has this id.
    pub fn get(&self, id: &str) -> Result<&CatalogEntry, model::Error> {
        self.entries.iter().find(|e| e.id == id).ok_or_else(|| {
            model::Error::new(
                ErrorKind::ModelNotFound,
                format!("The model `{id}` does not exist or you do not have access to it."),
            )
            .with_param("model")
            .with_code("model_not_found")
        })
    }
}
