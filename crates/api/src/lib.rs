//! Client-facing wire formats: Chat Completions ([`chat`]), Responses ([`responses`]) and
//! Anthropic Messages ([`messages`]). Each surface module owns its JSON shapes, decodes them into the
//! canonical [`switchboard_model::Request`] with OpenAI-style validation errors that name the
//! offending `param`, and encodes canonical [`switchboard_model::Event`]s back into response
//! bodies or stream chunks.
//!
//! This crate does no I/O: it knows nothing of HTTP status codes, sockets, async runtimes, the
//! engine or upstream providers. The server frames what it returns (see [`sse`]) and maps
//! [`switchboard_model::ErrorKind`] to statuses.

pub mod chat;
pub mod error;
pub mod messages;
pub mod models;
pub mod responses;
pub mod sealed;
pub mod sse;
mod wire;

pub use chat::{
    decode_chat_request, encode_chat_completion, ChatCompletionChunk, ChatCompletionResponse,
    ChatRequest, ChatStreamEncoder,
};
pub use error::{error_type, ErrorBody, ErrorObject};
pub use models::{ListModelsResponse, ModelEntry, Pricing};
