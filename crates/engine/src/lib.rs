//! The embedded inference engine: loads a GGUF model, renders chat templates, tokenizes, runs a
//! batched forward pass on CPU, samples, and schedules many concurrent generations on its own
//! threads. It speaks the canonical `model` types and knows nothing about HTTP or OpenAI shapes.

pub mod attention;
pub mod constraint;
mod fairness;
mod finite;
pub mod gguf;
pub mod kv;
mod prefix;
mod queue;
pub mod sampler;
mod scheduler;
pub mod template;
pub mod tensor;
pub mod text;
pub mod tokenizer;
pub mod tools;
pub mod transformer;

pub use scheduler::{Engine, EngineConfig, Generation, ModelInfo};

use switchboard_model as model;

/// Failures inside the engine. Load errors happen at start-up; request errors are converted to
/// [`model::Error`] before they leave the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load model: {0}")]
    Load(String),
    #[error("chat template: {0}")]
    Template(String),
}

impl From<EngineError> for model::Error {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Template(message) => {
                model::Error::invalid_at(model::RequestField::Conversation, message)
            }
            EngineError::Load(message) => model::Error::internal(message),
        }
    }
}
