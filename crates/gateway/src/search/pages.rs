//! Reading the pages a search found: the top results are fetched (with the SSRF rules media
//! URLs follow, and tighter size and time limits), their HTML turned into text, and the
//! passages that best match the query kept for the model. A page that may not or cannot be
//! fetched, or is not text, leaves its result with the backend's snippet.

use std::time::Duration;

use switchboard_providers::fetch::{download, FetchPolicy};

use super::Source;

/// How pages are fetched.
#[derive(Debug, Clone)]
pub struct PageReader {
    /// Results whose pages are read, from the top.
    pub pages: usize,
    pub policy: FetchPolicy,
}

impl Default for PageReader {
    fn default() -> Self {
        Self {
            pages: 3,
            policy: FetchPolicy {
                allow: Vec::new(),
                max_bytes: 2 * 1024 * 1024,
                timeout: Duration::from_secs(5),
                max_redirects: 3,
            },
        }
    }
}

/// The most text kept from one page, before the per-source context budget cuts it further.
const MAX_PAGE_CHARS: usize = 20_000;

impl PageReader {
    /// Reads the top results' pages, all at once, each within the policy's time; a page read
    /// becomes its result's `page_text`.
    pub async fn read(&self, sources: &mut [Source]) {
        // Resolving a host is outside the fetch's own clock, so the whole read is bounded too.
        let reads = sources.iter().take(self.pages).map(|source| async {
            tokio::time::timeout(self.policy.timeout, self.read_one(source.url.clone()))
                .await
                .ok()
                .flatten()
        });
        let texts = futures::future::join_all(reads).await;
        for (source, text) in sources.iter_mut().zip(texts) {
            source.page_text = text;
        }
    }

    async fn read_one(&self, url: String) -> Option<String> {
        let (bytes, content_type) = match download(&url, &self.policy).await {
            Ok(page) => page,
            Err(error) => {
                tracing::debug!(%url, error = %error.message, "search result page not read");
                return None;
            }
        };
        let kind = content_type
            .as_deref()
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let text = match kind.as_str() {
            "text/html" | "application/xhtml+xml" | "" => {
                tokio::task::spawn_blocking(move || html_text(&bytes))
                    .await
                    .ok()
                    .flatten()?
            }
            "text/plain" | "text/markdown" => String::from_utf8_lossy(&bytes).into_owned(),
            _ => return None,
        };
        let text: String = collapse_blank_lines(&text)
            .chars()
            .take(MAX_PAGE_CHARS)
            .collect();
        (!text.trim().is_empty()).then_some(text)
    }
}

/// The readable text of an HTML page (scripts, styles and markup gone).
fn html_text(bytes: &[u8]) -> Option<String> {
    html2text::config::plain_no_decorate()
        .string_from_read(bytes, 10_000)
        .ok()
}

fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push('\n');
        }
        blank = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The passages of `text` that best match `query`, in their order on the page, within `limit`
/// characters: paragraphs scored by the query's words they contain (the first paragraph wins
/// ties, as pages tend to lead with their subject).
#[must_use]
pub fn best_passages(text: &str, query: &str, limit: usize) -> String {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect();
    let paragraphs: Vec<&str> = text
        .split('\n')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut ranked: Vec<(usize, usize)> = paragraphs
        .iter()
        .enumerate()
        .map(|(index, paragraph)| {
            let lower = paragraph.to_lowercase();
            let score = words.iter().filter(|w| lower.contains(w.as_str())).count();
            (index, score)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen = Vec::new();
    let mut used = 0;
    for (index, _) in ranked {
        let length = paragraphs[index].chars().count();
        if used + length > limit {
            if chosen.is_empty() {
                // A first paragraph longer than the budget is cut rather than lost.
                chosen.push((
                    index,
                    paragraphs[index].chars().take(limit).collect::<String>(),
                ));
            }
            continue;
        }
        used += length + 1;
        chosen.push((index, paragraphs[index].to_owned()));
    }
    chosen.sort_by_key(|(index, _)| *index);
    chosen
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_text_without_scripts_or_markup() {
        let html = b"<html><head><title>T</title><style>p{color:red}</style>\
            <script>var secret = 1;</script></head><body><h1>History</h1>\
            <p>The town of <b>Zorblat</b> was founded in 2031 &amp; grew.</p></body></html>";
        let text = html_text(html).unwrap_or_default();
        assert!(
            text.contains("The town of Zorblat was founded in 2031 & grew."),
            "{text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("color"),
            "{text}"
        );
    }

    #[test]
    fn the_passages_matching_the_query_are_kept_in_page_order() {
        let page = "Welcome to our site.\nCookies are used.\n\
            Zorblat was founded in 2031.\nWeather today.\nThe mayor of Zorblat is Mira Quell.";
        assert_eq!(
            best_passages(page, "Who founded Zorblat and who is its mayor?", 70),
            "Zorblat was founded in 2031.\nThe mayor of Zorblat is Mira Quell."
        );
        assert_eq!(
            best_passages("x".repeat(50).as_str(), "q", 10),
            "x".repeat(10)
        );
    }
}
