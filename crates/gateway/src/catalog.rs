//! The catalog: the models this server offers, what each can do, what it costs, and the
//! provider that serves it. Today the only provider is the embedded engine; upstream providers
//! join as further [`Provider`] variants with the same `generate` contract.

use switchboard_engine::{Engine, Generation};
use switchboard_model::{self as model, Capability, ErrorKind, Event};

/// Price per million tokens, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pricing {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

pub enum Provider {
    Local(Engine),
}

impl Provider {
    pub(crate) fn generate(&self, request: &model::Request) -> Result<EventStream, model::Error> {
        match self {
            Self::Local(engine) => engine.submit(request).map(EventStream::Local),
        }
    }
}

/// The events of one generation, whatever provider produces them. Dropping it cancels.
pub enum EventStream {
    Local(Generation),
}

impl EventStream {
    pub async fn next(&mut self) -> Option<Event> {
        match self {
            Self::Local(generation) => generation.next().await,
        }
    }
}

pub struct CatalogEntry {
    pub id: String,
    pub owned_by: String,
    /// Unix seconds when the entry was registered.
    pub created: u64,
    pub context_window: u32,
    pub capabilities: Vec<Capability>,
    pub pricing: Pricing,
    pub provider: Provider,
}

impl CatalogEntry {
    /// An entry for a model served by the embedded engine. Local inference costs nothing per
    /// token. Tool calls and JSON output are guaranteed by constrained decoding, so every local
    /// model has them, whatever it was trained on.
    #[must_use]
    pub fn local(engine: Engine, created: u64) -> Self {
        let info = engine.info();
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
            provider: Provider::Local(engine),
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
