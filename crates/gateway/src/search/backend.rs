//! Search backends: where gateway-run search gets its results.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use switchboard_model::{Error, ErrorKind};

use super::Source;

/// A search engine the gateway can ask.
pub trait SearchBackend: Send + Sync {
    /// Up to `count` results for `query`, best first.
    ///
    /// # Errors
    /// `Upstream` when the backend cannot be reached, answers with an error, times out or
    /// sends something that is not its documented response.
    fn search<'a>(
        &'a self,
        query: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Source>, Error>>;
}

/// A SearXNG instance (self-hosted metasearch): `GET {base_url}/search?q=…&format=json`,
/// answered with `{"results": [{"url", "title", "content"}, …]}`. The instance must have the
/// JSON format enabled (`search.formats` in its settings).
pub struct Searxng {
    client: reqwest::Client,
    base_url: String,
}

impl Searxng {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        Ok(Self {
            client: client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

#[derive(Deserialize)]
struct SearxngResponse {
    #[serde(default)]
    results: Vec<SearxngResult>,
}

#[derive(Deserialize)]
struct SearxngResult {
    url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: Option<String>,
}

impl SearchBackend for Searxng {
    fn search<'a>(
        &'a self,
        query: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Source>, Error>> {
        Box::pin(async move {
            let parsed: SearxngResponse = fetch_json(
                self.client
                    .get(format!("{}/search", self.base_url))
                    .query(&[("q", query), ("format", "json")]),
                "SearXNG's",
            )
            .await?;
            Ok(parsed
                .results
                .into_iter()
                .filter_map(|r| source(r.url, &r.title, &r.content.unwrap_or_default()))
                .take(count)
                .collect())
        })
    }
}

/// Brave's Web Search API (hosted): `GET {base_url}/res/v1/web/search?q=…&count=N` with the
/// key in `X-Subscription-Token`, answered with `{"web": {"results": [{"url", "title",
/// "description"}, …]}}` (descriptions mark the query's words with `<strong>`).
pub struct Brave {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl Brave {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Result<Self, Error> {
        Ok(Self {
            client: client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }
}

#[derive(Deserialize)]
struct BraveResponse {
    #[serde(default)]
    web: Option<BraveWeb>,
}

#[derive(Deserialize)]
struct BraveWeb {
    #[serde(default)]
    results: Vec<BraveResult>,
}

#[derive(Deserialize)]
struct BraveResult {
    url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
}

/// The most results Brave returns for one query.
const BRAVE_MAX_COUNT: usize = 20;

impl SearchBackend for Brave {
    fn search<'a>(
        &'a self,
        query: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Source>, Error>> {
        Box::pin(async move {
            let count = count.clamp(1, BRAVE_MAX_COUNT).to_string();
            let parsed: BraveResponse = fetch_json(
                self.client
                    .get(format!("{}/res/v1/web/search", self.base_url))
                    .query(&[("q", query), ("count", count.as_str())])
                    .header("Accept", "application/json")
                    .header("X-Subscription-Token", &self.api_key),
                "Brave's",
            )
            .await?;
            Ok(parsed
                .web
                .map(|web| web.results)
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r.url, r.title, r.description.unwrap_or_default()))
                .filter_map(|(url, title, description)| {
                    source(url, &strip_markup(&title), &strip_markup(&description))
                })
                .collect())
        })
    }
}

/// An HTTP client whose requests give up after `timeout`.
fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("search client: {e}")))
}

/// Sends `request` and reads the backend's (`whose`) JSON results from a successful answer,
/// or says what went wrong.
async fn fetch_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    whose: &str,
) -> Result<T, Error> {
    let response = request
        .send()
        .await
        .map_err(|e| backend_error(&format!("{e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| backend_error(&format!("reading the answer: {e}")))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(backend_error(&format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| backend_error(&format!("not {whose} JSON results: {e}")))
}

/// A source from a result, when its address is a web page.
fn source(url: String, title: &str, snippet: &str) -> Option<Source> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let title = title.trim();
    Some(Source {
        title: if title.is_empty() {
            url.clone()
        } else {
            title.to_owned()
        },
        url,
        snippet: snippet.trim().to_owned(),
        page_text: None,
    })
}

/// Text without HTML tags and with the common entities decoded (search snippets highlight
/// the query's words with tags).
fn strip_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    for (entity, plain) in [
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&apos;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&nbsp;", " "),
        ("&amp;", "&"),
    ] {
        out = out.replace(entity, plain);
    }
    out
}

fn backend_error(detail: &str) -> Error {
    Error::new(
        ErrorKind::Upstream,
        format!("The web search backend failed: {detail}"),
    )
    .with_code("web_search_failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_stripped_from_snippets() {
        assert_eq!(
            strip_markup(
                "The <strong>Eiffel</strong> tower &amp; its &quot;lift&quot; &lt;1889&gt;"
            ),
            "The Eiffel tower & its \"lift\" <1889>"
        );
    }
}
