//! Gateway-run web search, for models whose provider cannot search: the gateway asks a
//! configured backend, puts the numbered sources in the model's context just before the last
//! user message, and turns the model's `[n]` citations of them into `url_citation`
//! annotations ([`citations`]). Models whose catalog entry searches natively never come here.

mod backend;
mod citations;

pub use backend::{Brave, SearchBackend, Searxng};
pub use citations::Citations;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use switchboard_model::{self as model, ContentPart, Event, Item, Request, Role};

use crate::EventStream;

/// One search result, as the model sees it and as a citation names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub url: String,
    pub title: String,
    /// The backend's summary of the page.
    pub snippet: String,
}

/// The longest query sent to a backend, in characters (the end of a long message is cut).
const MAX_QUERY_CHARS: usize = 400;
/// The most characters of one source's text put in the model's context, by
/// `search_context_size`.
const SNIPPET_CHARS: [(&str, usize); 3] = [("low", 300), ("medium", 800), ("high", 2000)];

/// The configured search, shared by all requests.
pub struct WebSearch {
    backend: Arc<dyn SearchBackend>,
    max_results: usize,
}

impl WebSearch {
    #[must_use]
    pub fn new(backend: Arc<dyn SearchBackend>, max_results: usize) -> Self {
        Self {
            backend,
            max_results: max_results.max(1),
        }
    }

    /// Searches for what the conversation's last user message asks, and returns the request
    /// the provider should get (the sources in its context, no search asked of it) and the
    /// search that ran.
    ///
    /// # Errors
    /// `InvalidRequest` when there is no user text to search for; `Upstream` when the backend
    /// fails or times out.
    pub async fn prepare(&self, request: &Request) -> Result<(Request, Search), model::Error> {
        let Some((at, question)) = last_user_text(&request.items) else {
            return Err(model::Error::new(
                model::ErrorKind::InvalidRequest,
                "Web search needs a user message with text to search for.",
            )
            .with_field(model::RequestField::WebSearch));
        };
        let query: String = question.trim().chars().take(MAX_QUERY_CHARS).collect();
        let mut sources = self.backend.search(&query, self.max_results).await?;
        sources.truncate(self.max_results);
        let limit = request
            .web_search
            .as_ref()
            .and_then(|w| w.context_size.as_deref())
            .and_then(|size| SNIPPET_CHARS.iter().find(|(name, _)| *name == size))
            .map_or(SNIPPET_CHARS[1].1, |(_, chars)| *chars);
        let mut augmented = request.clone();
        augmented.web_search = None;
        insert_item(
            &mut augmented,
            at,
            Item::text(Role::System, sources_message(&sources, limit)),
        );
        Ok((augmented, Search { query, sources }))
    }
}

/// A search the gateway ran for one request.
pub struct Search {
    pub query: String,
    pub sources: Vec<Source>,
}

impl Search {
    /// The provider's events, announced by the search itself ([`Event::WebSearch`]), with an
    /// annotation after each text delta that completes a citation of one of the sources, and
    /// the search counted in the usage.
    #[must_use]
    pub fn cite(self, stream: EventStream) -> EventStream {
        let call = model::SearchCall {
            query: self.query,
            sources: self
                .sources
                .iter()
                .map(|s| model::SearchSource {
                    url: s.url.clone(),
                    title: s.title.clone(),
                })
                .collect(),
        };
        let sources: Arc<[Source]> = self.sources.into();
        let mut choices: HashMap<u32, Citations> = HashMap::new();
        let mut usage_seen = false;
        let announced = futures::stream::iter([Ok(Event::WebSearch(call))]);
        let events = futures::stream::unfold(stream, |mut stream| async move {
            stream.next().await.map(|item| (item, stream))
        });
        let cited = events.flat_map(move |item| {
            let mut out = Vec::with_capacity(2);
            match item {
                Ok(Event::TextDelta {
                    choice, ref text, ..
                }) => {
                    let found = choices
                        .entry(choice)
                        .or_insert_with(|| Citations::new(Arc::clone(&sources)))
                        .push(text);
                    out.push(item);
                    out.extend(
                        found
                            .into_iter()
                            .map(|annotation| Ok(Event::Annotation { choice, annotation })),
                    );
                }
                Ok(Event::Usage(mut usage)) => {
                    usage_seen = true;
                    usage.web_search_requests += 1;
                    out.push(Ok(Event::Usage(usage)));
                }
                Ok(Event::Done) if !usage_seen => {
                    // A provider that reports no usage still owes the search.
                    out.push(Ok(Event::Usage(model::Usage {
                        web_search_requests: 1,
                        ..model::Usage::default()
                    })));
                    out.push(Ok(Event::Done));
                }
                other => out.push(other),
            }
            futures::stream::iter(out)
        });
        EventStream::new(announced.chain(cited))
    }
}

/// The index and text of the last user message that has text.
fn last_user_text(items: &[Item]) -> Option<(usize, String)> {
    items
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, item)| match item {
            Item::Message {
                role: Role::User,
                parts,
                ..
            } => {
                let text: Vec<&str> = parts
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::Text(text) => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                let text = text.join("\n");
                (!text.trim().is_empty()).then_some((at, text))
            }
            _ => None,
        })
}

/// Inserts `item` at `at`, moving the cache marks of later items along with them.
fn insert_item(request: &mut Request, at: usize, item: Item) {
    request.items.insert(at, item);
    for mark in &mut request.cache_marks {
        match &mut mark.target {
            model::CacheTarget::Part { item, .. } | model::CacheTarget::Item(item)
                if *item >= at =>
            {
                *item += 1;
            }
            _ => {}
        }
    }
}

/// The system message that hands the model its sources.
fn sources_message(sources: &[Source], snippet_chars: usize) -> String {
    let mut text = String::from(
        "Web search results for the user's next message follow, numbered. Answer from them \
         where they are relevant, and cite each source you use by its number in square \
         brackets right after the sentence it supports, like this: [1].",
    );
    if sources.is_empty() {
        text.push_str("\n\nThe search found nothing; say so if the answer depends on it.");
    }
    for (i, source) in sources.iter().enumerate() {
        let snippet: String = source.snippet.chars().take(snippet_chars).collect();
        text.push_str(&format!(
            "\n\n[{}] {}\nURL: {}\n{}",
            i + 1,
            source.title.trim(),
            source.url,
            snippet.trim()
        ));
    }
    text
}
