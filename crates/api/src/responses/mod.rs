//! The OpenAI Responses surface (`/v1/responses`): decoding a `CreateResponse` body into the
//! canonical request, the `response` object and its typed output items, the semantic stream
//! events, and the item shapes kept for `previous_response_id` and `input_items`.
//!
//! Like the Chat Completions surface it does no I/O: the server loads and saves stored
//! responses and frames events as SSE (`event:` + `data:` lines, see [`crate::sse`]).

mod decode;
mod encode;
mod items;

pub use decode::{
    check_call_outputs, decode_context, decode_responses_request, param_name, ResponsesRequest,
};
pub use encode::{
    DeletedResponse, IdSource, ResponseEncoder, ResponseObject, ResponseStreamEvent, ResponseUsage,
    Shown,
};
pub use items::{InputItemList, ListOrder, StoredItem};

#[cfg(test)]
mod tests;
