//! Gateway-run web search, for models whose provider cannot search: the gateway asks a
//! configured backend, puts the numbered sources in the model's context just before the last
//! user message, and turns the model's `[n]` citations of them into `url_citation`
//! annotations ([`citations`]). Models whose catalog entry searches natively never come here.

mod backend;
mod citations;
mod pages;
mod tool_loop;

pub use backend::{Brave, SearchBackend, Searxng};
pub use citations::Citations;
pub use pages::PageReader;

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
    /// Passages of the page itself, when it was read (what the model is shown of it).
    pub page_text: Option<String>,
}

/// The longest query sent to a backend, in characters (the end of a long message is cut).
const MAX_QUERY_CHARS: usize = 400;
/// The most characters of one source's text put in the model's context, by
/// `search_context_size`.
const SNIPPET_CHARS: [(&str, usize); 3] = [("low", 300), ("medium", 800), ("high", 2000)];

/// The configured search, shared by all requests.
#[derive(Clone)]
pub struct WebSearch {
    backend: Arc<dyn SearchBackend>,
    max_results: usize,
    /// USD charged per search (what the backend costs the operator; 0 by default).
    pub price_per_search: f64,
    /// How the top results' pages are read; `None` keeps to the backend's snippets.
    pages: Option<PageReader>,
}

impl WebSearch {
    #[must_use]
    pub fn new(backend: Arc<dyn SearchBackend>, max_results: usize) -> Self {
        Self {
            backend,
            max_results: max_results.max(1),
            price_per_search: 0.0,
            pages: Some(PageReader::default()),
        }
    }

    /// Reads the top results' pages as `reader` says; `None` (or zero pages) keeps to the
    /// backend's snippets.
    #[must_use]
    pub fn with_pages(mut self, reader: Option<PageReader>) -> Self {
        self.pages = reader.filter(|reader| reader.pages > 0);
        self
    }

    #[must_use]
    pub fn with_price(mut self, price_per_search: f64) -> Self {
        self.price_per_search = price_per_search;
        self
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
        let options = request.web_search.as_ref();
        let sources = self.find(&query, options).await?;
        let limit = context_budget(options);
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

impl WebSearch {
    /// The results for `query` under the request's options: domain filters applied, the top
    /// pages read and cut to the passages the model is shown.
    ///
    /// # Errors
    /// `Upstream` when the backend fails or times out.
    async fn find(
        &self,
        query: &str,
        options: Option<&model::WebSearch>,
    ) -> Result<Vec<Source>, model::Error> {
        let filtering =
            options.is_some_and(|f| !f.allowed_domains.is_empty() || !f.blocked_domains.is_empty());
        // Filtered searches ask for more, since the filter drops some.
        let wanted = if filtering {
            (self.max_results * 4).min(20)
        } else {
            self.max_results
        };
        let mut sources = self.backend.search(query, wanted).await?;
        if let Some(filters) = options {
            sources.retain(|source| {
                domain_allowed(
                    &source.url,
                    &filters.allowed_domains,
                    &filters.blocked_domains,
                )
            });
        }
        sources.truncate(self.max_results);
        if let Some(reader) = &self.pages {
            reader.read(&mut sources).await;
        }
        // What the model is shown of each page: the snippet, then the page's passages that
        // best match the question, within the context size's budget.
        let limit = context_budget(options);
        for source in &mut sources {
            let room = limit.saturating_sub(source.snippet.chars().count());
            source.page_text = source
                .page_text
                .take()
                .map(|text| pages::best_passages(&text, query, room))
                .filter(|text| !text.trim().is_empty());
        }
        Ok(sources)
    }
}

/// Characters of each source the model is shown, by `search_context_size`.
fn context_budget(options: Option<&model::WebSearch>) -> usize {
    options
        .and_then(|w| w.context_size.as_deref())
        .and_then(|size| SNIPPET_CHARS.iter().find(|(name, _)| *name == size))
        .map_or(SNIPPET_CHARS[1].1, |(_, chars)| *chars)
}

/// A search the gateway ran for one request.
pub struct Search {
    pub query: String,
    pub sources: Vec<Source>,
}

/// A search as the client is shown it: the query and each result's address and title.
fn search_call(query: String, sources: &[Source]) -> model::SearchCall {
    model::SearchCall {
        query,
        sources: sources
            .iter()
            .map(|s| model::SearchSource {
                url: s.url.clone(),
                title: s.title.clone(),
            })
            .collect(),
    }
}

impl Search {
    /// The provider's events, announced by the search itself ([`Event::WebSearch`]), with an
    /// annotation after each text delta that completes a citation of one of the sources, and
    /// the search counted in the usage.
    #[must_use]
    pub fn cite(self, stream: EventStream) -> EventStream {
        let call = search_call(self.query, &self.sources);
        let sources: Arc<[Source]> = self.sources.into();
        let mut choices: HashMap<u32, Citations> = HashMap::new();
        let mut usage_seen = false;
        let announced = futures::stream::iter([Ok(Event::WebSearch(call))]);
        let served = stream.served().cloned();
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
                Ok(Event::Finished { choice, .. }) => {
                    // The last sentences are settled before the choice ends.
                    if let Some(citations) = choices.get_mut(&choice) {
                        out.extend(
                            citations
                                .finish()
                                .into_iter()
                                .map(|annotation| Ok(Event::Annotation { choice, annotation })),
                        );
                    }
                    out.push(item);
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
        EventStream::new(announced.chain(cited)).served_by(served)
    }
}

/// Whether `url`'s host is one of `allowed` (or under one; any host when `allowed` is empty)
/// and neither one of `blocked` nor under one. Domains are matched without case, a leading
/// `www.` or scheme in the filter ignored.
fn domain_allowed(url: &str, allowed: &[String], blocked: &[String]) -> bool {
    let Some(host) = host_of(url) else {
        return false;
    };
    let matches = |domain: &String| {
        let domain = domain.trim().to_ascii_lowercase();
        let domain = domain
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_start_matches("www.")
            .trim_end_matches('/');
        !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
    };
    (allowed.is_empty() || allowed.iter().any(matches)) && !blocked.iter().any(matches)
}

/// The lowercase host of an http(s) URL, without a port or user info.
fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
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
    text.push_str(&numbered_sources(sources, 1, snippet_chars));
    text
}

/// The sources as the model reads them, numbered from `first`: `[n] title`, the URL, the
/// snippet, and what was read of the page.
fn numbered_sources(sources: &[Source], first: usize, snippet_chars: usize) -> String {
    let mut text = String::new();
    for (i, source) in sources.iter().enumerate() {
        let snippet: String = source.snippet.chars().take(snippet_chars).collect();
        text.push_str(&format!(
            "\n\n[{}] {}\nURL: {}\n{}",
            first + i,
            source.title.trim(),
            source.url,
            snippet.trim()
        ));
        if let Some(page) = &source.page_text {
            text.push_str("\nFrom the page:\n");
            text.push_str(page.trim());
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_filters_match_hosts_and_their_subdomains() {
        let allowed = vec![
            "Example.org".to_owned(),
            "https://www.wiki.test/".to_owned(),
        ];
        for (url, want) in [
            ("https://example.org/a", true),
            ("https://docs.example.org:8443/a?b", true),
            ("http://user@en.wiki.test/x", true),
            ("https://notexample.org/", false),
            ("https://example.org.evil.test/", false),
            ("ftp://example.org/", false),
        ] {
            assert_eq!(domain_allowed(url, &allowed, &[]), want, "{url}");
        }
        let blocked = vec!["spam.test".to_owned()];
        assert!(!domain_allowed("https://a.spam.test/", &[], &blocked));
        assert!(domain_allowed("https://ham.test/", &[], &blocked));
    }

    #[test]
    fn the_sources_go_before_the_question_and_cache_marks_follow_their_items() {
        let mut request = Request::text(
            "m",
            vec![
                Item::text(Role::System, "Be brief."),
                Item::text(Role::User, "first"),
                Item::text(Role::Assistant, "ok"),
                Item::text(Role::User, "Who founded Zorblat?"),
            ],
        );
        request.cache_marks = vec![
            model::CacheMark {
                target: model::CacheTarget::Part { item: 0, part: 0 },
                control: serde_json::json!({"type": "ephemeral"}),
            },
            model::CacheMark {
                target: model::CacheTarget::Part { item: 3, part: 0 },
                control: serde_json::json!({"type": "ephemeral"}),
            },
        ];
        let (at, question) = last_user_text(&request.items).unwrap_or_default();
        assert_eq!((at, question.as_str()), (3, "Who founded Zorblat?"));
        insert_item(&mut request, at, Item::text(Role::System, "sources"));
        assert_eq!(request.items[3], Item::text(Role::System, "sources"));
        assert_eq!(
            request.items[4],
            Item::text(Role::User, "Who founded Zorblat?")
        );
        assert_eq!(
            request.cache_marks[0].target,
            model::CacheTarget::Part { item: 0, part: 0 }
        );
        assert_eq!(
            request.cache_marks[1].target,
            model::CacheTarget::Part { item: 4, part: 0 }
        );
    }
}
