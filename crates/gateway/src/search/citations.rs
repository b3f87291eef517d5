//! Turns a model's numbered citations of gateway-run search results into `url_citation`
//! annotations, as its text streams.
//!
//! The model is told to cite a source by its number in square brackets right after the
//! sentence it supports (`… in 1889 [2].`, `[1][3]`, `[1, 3]`). The text is passed on
//! unchanged; each marker that names a source the search returned becomes an annotation whose
//! span is the cited sentence and the marker itself, in characters (Unicode scalar values) of
//! the choice's text, end exclusive. A marker that names no returned source (`[0]`, `[9]` of
//! five, `[see above]`) is left as text and annotates nothing.

use std::sync::Arc;

use switchboard_model::Annotation;

use super::Source;

/// The longest marker body considered (`12, 13, 14`): anything longer is prose in brackets.
const MAX_MARKER_CHARS: usize = 24;

/// Citation tracking for one choice's text.
pub struct Citations {
    sources: Arc<[Source]>,
    /// Characters of the choice's text seen so far.
    position: u32,
    /// Where the current sentence starts, and the one before it (a marker that follows a
    /// sentence's end with only spaces between cites that sentence).
    sentence_start: u32,
    previous_sentence_start: u32,
    /// Whether the current sentence has content beyond spaces and markers yet.
    sentence_has_text: bool,
    /// The last character was a sentence's end (`.`, `!`, `?`); a space then starts a new one.
    after_terminal: bool,
    /// Inside `[`: the characters since.
    marker: Option<String>,
    /// Where the span of the markers just read starts (consecutive markers share it).
    marker_span_start: Option<u32>,
}

impl Citations {
    #[must_use]
    pub fn new(sources: Arc<[Source]>) -> Self {
        Self {
            sources,
            position: 0,
            sentence_start: 0,
            previous_sentence_start: 0,
            sentence_has_text: false,
            after_terminal: false,
            marker: None,
            marker_span_start: None,
        }
    }

    /// Reads the next piece of the text; returns the annotations its markers complete.
    pub fn push(&mut self, text: &str) -> Vec<Annotation> {
        let mut found = Vec::new();
        for c in text.chars() {
            self.read(c, &mut found);
            self.position += 1;
        }
        found
    }

    fn read(&mut self, c: char, found: &mut Vec<Annotation>) {
        if let Some(body) = &mut self.marker {
            if c == ']' {
                let body = std::mem::take(body);
                self.marker = None;
                let numbers = parse_marker(&body, self.sources.len());
                if numbers.is_empty() {
                    // Not a citation: ordinary bracketed text.
                    self.sentence_has_text = true;
                    self.marker_span_start = None;
                    return;
                }
                let span_start = *self
                    .marker_span_start
                    .get_or_insert(if self.sentence_has_text {
                        self.sentence_start
                    } else {
                        self.previous_sentence_start
                    });
                for n in numbers {
                    let source = &self.sources[n - 1];
                    found.push(Annotation::UrlCitation {
                        url: source.url.clone(),
                        title: source.title.clone(),
                        start_index: span_start,
                        end_index: self.position + 1,
                    });
                }
                return;
            }
            if body.chars().count() >= MAX_MARKER_CHARS || c == '[' || c == '\n' {
                // Too long or broken: it was text after all.
                self.marker = None;
                self.sentence_has_text = true;
                self.marker_span_start = None;
                if c == '[' {
                    self.marker = Some(String::new());
                }
                return;
            }
            body.push(c);
            return;
        }
        match c {
            '[' => self.marker = Some(String::new()),
            '.' | '!' | '?' => {
                self.after_terminal = true;
                self.sentence_has_text = true;
                self.marker_span_start = None;
            }
            '\n' => self.begin_sentence(self.position + 1),
            c if c.is_whitespace() => {
                if self.after_terminal {
                    self.begin_sentence(self.position + 1);
                }
            }
            _ => {
                if !self.sentence_has_text && !c.is_whitespace() {
                    // The sentence's first character: spaces before it are not part of it.
                    self.sentence_start = self.position;
                }
                self.after_terminal = false;
                self.sentence_has_text = true;
                self.marker_span_start = None;
            }
        }
    }

    fn begin_sentence(&mut self, at: u32) {
        self.after_terminal = false;
        if self.sentence_has_text {
            self.previous_sentence_start = self.sentence_start;
            self.sentence_has_text = false;
        }
        self.sentence_start = at;
    }
}

/// The source numbers of a marker body (`2`, `1, 3`, `1,3`), each within `1..=sources`; empty
/// when the body is not a citation.
fn parse_marker(body: &str, sources: usize) -> Vec<usize> {
    let mut numbers = Vec::new();
    for piece in body.split(',') {
        let piece = piece.trim();
        if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
            return Vec::new();
        }
        match piece.parse::<usize>() {
            Ok(n) if (1..=sources).contains(&n) => {
                if !numbers.contains(&n) {
                    numbers.push(n);
                }
            }
            _ => return Vec::new(),
        }
    }
    numbers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sources(n: usize) -> Vec<Source> {
        (1..=n)
            .map(|i| Source {
                url: format!("https://example.org/{i}"),
                title: format!("Page {i}"),
                snippet: String::new(),
            })
            .collect()
    }

    /// `(url number, the cited text)` for every annotation, however the text was split.
    fn cite(text_pieces: &[&str], count: usize) -> Vec<(String, String)> {
        let mut citations = Citations::new(sources(count).into());
        let mut found = Vec::new();
        for piece in text_pieces {
            found.extend(citations.push(piece));
        }
        let text: String = text_pieces.concat();
        let chars: Vec<char> = text.chars().collect();
        found
            .into_iter()
            .map(
                |Annotation::UrlCitation {
                     url,
                     start_index,
                     end_index,
                     ..
                 }| {
                    let span: String = chars[start_index as usize..end_index as usize]
                        .iter()
                        .collect();
                    (url.rsplit('/').next().unwrap().to_owned(), span)
                },
            )
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn a_marker_cites_its_sentence() {
        let text = ["The tower is 330 m tall [1]. It opened in 1889 [2]."];
        assert_eq!(
            cite(&text, 2),
            pairs(&[
                ("1", "The tower is 330 m tall [1]"),
                ("2", "It opened in 1889 [2]")
            ])
        );
    }

    #[test]
    fn markers_split_across_deltas_and_after_the_full_stop() {
        let text = [
            "Zorblat was founded in 20",
            "31. [",
            "1",
            "][2",
            "]\nIts mayor is Q. ",
            "[2]",
        ];
        assert_eq!(
            cite(&text, 2),
            pairs(&[
                ("1", "Zorblat was founded in 2031. [1]"),
                ("2", "Zorblat was founded in 2031. [1][2]"),
                ("2", "Its mayor is Q. [2]"),
            ])
        );
    }

    #[test]
    fn lists_of_numbers_and_non_ascii_text_count_characters() {
        let text = ["Café crème — très bon [1, 3]."];
        assert_eq!(
            cite(&text, 3),
            pairs(&[
                ("1", "Café crème — très bon [1, 3]"),
                ("3", "Café crème — très bon [1, 3]")
            ])
        );
    }

    #[test]
    fn brackets_that_are_not_citations_of_returned_sources_annotate_nothing() {
        for text in [
            "See [0].",
            "See [4].",
            "An array [1 2].",
            "Note [see above].",
            "x[]",
            "[1",
        ] {
            assert_eq!(cite(&[text], 3), vec![], "{text}");
        }
        // A broken marker does not swallow the next one.
        assert_eq!(cite(&["A [b [2]."], 2), pairs(&[("2", "A [b [2]")]));
    }
}
