//! Item shapes of the Responses surface: what `output` holds, what `input_items` lists, and what
//! a stored response keeps so `previous_response_id` can continue from it. Stored items are
//! written in these shapes and read back through the same decoder as a client's `input`, so a
//! continued conversation is exactly what a client could have sent itself.

use serde::Serialize;
use serde_json::Value;
use switchboard_model::{Error, ErrorKind};

/// One item with its id, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredItem {
    Message {
        id: String,
        role: String,
        status: &'static str,
        content: Vec<ItemContent>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
    },
    FunctionCallOutput {
        id: String,
        call_id: String,
        output: String,
        status: &'static str,
    },
    Reasoning {
        id: String,
        summary: Vec<SummaryText>,
        content: Vec<ReasoningText>,
        /// Provider-tagged opaque reasoning ([`crate::sealed::Envelope`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'static str>,
    },
    /// A web search that ran for the response (by the gateway or the provider).
    WebSearchCall {
        id: String,
        status: &'static str,
        action: WebSearchAction,
    },
}

/// What a `web_search_call` did: always a search here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebSearchAction {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub query: String,
    /// The pages the search returned; shown under `include: ["web_search_call.action.sources"]`
    /// (stored either way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<UrlSource>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UrlSource {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub url: String,
}

impl StoredItem {
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Message { id, .. }
            | Self::FunctionCall { id, .. }
            | Self::FunctionCallOutput { id, .. }
            | Self::Reasoning { id, .. }
            | Self::WebSearchCall { id, .. } => id,
        }
    }

    /// Forgets a web search call's sources.
    pub fn drop_search_sources(&mut self) {
        if let Self::WebSearchCall { action, .. } = self {
            action.sources = None;
        }
    }

    /// Forgets a reasoning item's `encrypted_content`.
    pub fn drop_encrypted_content(&mut self) {
        if let Self::Reasoning {
            encrypted_content, ..
        } = self
        {
            *encrypted_content = None;
        }
    }

    /// The item as a JSON document, for the store.
    #[must_use]
    pub fn to_document(&self) -> Value {
        // Our own types always serialize (string keys only).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A content part of a message item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemContent {
    InputText {
        text: String,
    },
    InputImage {
        #[serde(skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        detail: String,
    },
    InputFile {
        #[serde(skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        file_url: Option<String>,
    },
    OutputText {
        text: String,
        /// Citations; none are produced yet (no web search), but the field is required.
        annotations: Vec<Value>,
        logprobs: Vec<LogProb>,
    },
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl ReasoningText {
    #[must_use]
    pub fn new(text: String) -> Self {
        Self {
            kind: "reasoning_text",
            text,
        }
    }
}

/// The log probability of one output token (`LogProb` in the spec).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogProb {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogProb>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogProb {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    Asc,
    Desc,
}

/// `GET /v1/responses/{id}/input_items`: a page of a response's input items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputItemList {
    pub object: &'static str,
    pub data: Vec<Value>,
    pub first_id: String,
    pub last_id: String,
    pub has_more: bool,
}

impl InputItemList {
    /// Pages `items` (oldest first, each with an `id`) as the endpoint's query asks.
    ///
    /// # Errors
    /// An invalid `limit` or `order`, or an `after` id that is not among the items.
    pub fn page(
        items: &[Value],
        limit: Option<&str>,
        order: Option<&str>,
        after: Option<&str>,
    ) -> Result<Self, Error> {
        let limit = match limit {
            None => 20,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return Err(Error::invalid(
                        "limit",
                        format!(
                            "Invalid 'limit': expected an integer between 1 and 100, but got \
                             '{text}' instead."
                        ),
                    ))
                }
            },
        };
        let order = match order {
            None | Some("desc") => ListOrder::Desc,
            Some("asc") => ListOrder::Asc,
            Some(other) => {
                return Err(Error::invalid(
                    "order",
                    format!("Invalid value: '{other}'. Supported values are: 'asc' and 'desc'."),
                ))
            }
        };
        let mut ordered: Vec<&Value> = items.iter().collect();
        if order == ListOrder::Desc {
            ordered.reverse();
        }
        let start = match after {
            None => 0,
            Some(after) => {
                let position = ordered
                    .iter()
                    .position(|item| item.get("id").and_then(Value::as_str) == Some(after));
                match position {
                    Some(position) => position + 1,
                    None => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("No item with id '{after}' found in this response's input."),
                        )
                        .with_param("after"))
                    }
                }
            }
        };
        let rest = &ordered[start.min(ordered.len())..];
        let data: Vec<Value> = rest
            .iter()
            .take(limit)
            .map(|item| (*item).clone())
            .collect();
        let id_of = |item: Option<&Value>| {
            item.and_then(|item| item.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            object: "list",
            first_id: id_of(data.first()),
            last_id: id_of(data.last()),
            has_more: rest.len() > data.len(),
            data,
        })
    }
}
