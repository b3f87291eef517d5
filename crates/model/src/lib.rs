//! The canonical model: what a request *means* and what a generation *produces*, independent of
//! any wire format. Every client surface (`api`) decodes into [`Request`] and encodes from
//! [`Event`]s; every provider consumes a [`Request`] and yields [`Event`]s.
//!
//! This crate does no I/O and knows no HTTP status codes or JSON shapes of any API; the only
//! serde derives here are for values that are opaque JSON by nature (tool parameter schemas,
//! metadata).

mod error;
mod event;
mod request;
pub mod strict;

pub use error::{Error, ErrorKind};
pub use event::{
    Annotation, Choice, Completion, Event, FinishReason, ReasoningBlock, SearchCall, SearchSource,
    TokenLogprob, ToolCall, TopLogprob, Usage,
};
pub use request::{
    CacheMark, CacheTarget, Capability, ContentPart, Family, FunctionTool, Item, MediaSource,
    OutputFormat, ReasoningEffort, Request, RequestField, Role, Sampling, Sealed, Tool, ToolChoice,
    WebSearch,
};
