//! The OpenAI Chat Completions surface (`POST /v1/chat/completions`): decoding a request body into
//! a [`ChatRequest`] (the canonical request plus transport options), encoding a folded
//! [`switchboard_model::Completion`] into a `chat.completion` body, and encoding the event stream
//! into `chat.completion.chunk`s with [`ChatStreamEncoder`].
//!
//! It does not pick models, check capabilities or limits, or frame SSE (see [`crate::sse`]).

mod decode;
mod encode;
pub mod reasoning;
mod stream;

pub use decode::{decode_chat_request, param_name, ChatRequest};
pub use encode::{
    encode_chat_completion, ChatChoice, ChatCompletionResponse, ChatLogprobs, ChatMessage,
    ChatTokenLogprob, ChatTopLogprob, ChatUsage, CompletionTokensDetails, PromptTokensDetails,
};
pub use stream::{ChatCompletionChunk, ChatStreamEncoder, ChunkChoice, ChunkDelta};
