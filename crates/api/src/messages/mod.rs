//! The Anthropic Messages surface: `POST /v1/messages` and its `count_tokens`. [`decode`] reads
//! a request into the canonical model; [`encode`] turns canonical events into the Messages
//! stream events, folds them into the non-streamed body, and words errors in this API's shape.

mod content;
pub mod decode;
pub mod encode;
#[cfg(test)]
mod tests;

pub use decode::{decode_count_tokens, decode_messages_request, param_name, MessagesRequest};
pub use encode::{error_body, stop_reason, MessageFold, MessagesStreamEncoder};
