//! Turns a model's citations of gateway-run search results into `url_citation` annotations,
//! as its text streams.
//!
//! The model is told to cite a source by its number in square brackets right after the
//! sentence it supports (`… in 1889 [2].`, `[1][3]`, `[1, 3]`). The text is passed on
//! unchanged; each marker that names a source the search returned becomes an annotation whose
//! span is the cited sentence and the marker itself, in characters (Unicode scalar values) of
//! the choice's text, end exclusive. A marker that names no returned source (`[0]`, `[9]` of
//! five, `[see above]`) is left as text and annotates nothing.
//!
//! Small models answer from the sources without writing markers, so a sentence no marker cites
//! is compared with the sources once it is complete: when it shares enough of one source's
//! wording ([`supporting_source`]), that source is cited for the whole sentence. Such an
//! annotation arrives when the next sentence starts (a marker may still follow the full stop)
//! or when the text ends ([`Citations::finish`]).

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_model::Annotation;

use super::Source;

/// The longest marker body considered (`12, 13, 14`): anything longer is prose in brackets.
const MAX_MARKER_CHARS: usize = 24;

/// One sentence of the answer: where it starts and ends (after its last visible character),
/// its text, and whether a marker cited it.
#[derive(Default)]
struct Sentence {
    start: u32,
    end: u32,
    text: String,
    has_text: bool,
    cited: bool,
}

/// Citation tracking for one choice's text.
pub struct Citations {
    sources: Arc<[Source]>,
    /// Each source's wording, for sentences without markers.
    wording: Vec<Wording>,
    /// Characters of the choice's text seen so far.
    position: u32,
    sentence: Sentence,
    /// The sentence before, until the current one has text of its own: a marker after a
    /// full stop cites it, and it is compared with the sources once that is settled.
    previous: Option<Sentence>,
    /// The last character was a sentence's end (`.`, `!`, `?`); a space then starts a new one.
    after_terminal: bool,
    /// Inside `[`: the characters since.
    marker: Option<String>,
    /// Where the span of the markers just read starts (consecutive markers share it).
    marker_span_start: Option<u32>,
}

/// What a source says, to compare sentences with: its title, snippet and page text.
fn wording_of(source: &Source) -> Wording {
    let page = source.page_text.as_deref().unwrap_or_default();
    Wording::of(&format!("{}\n{}\n{page}", source.title, source.snippet))
}

impl Citations {
    #[must_use]
    pub fn new(sources: Arc<[Source]>) -> Self {
        let wording = sources.iter().map(wording_of).collect();
        Self {
            sources,
            wording,
            position: 0,
            sentence: Sentence::default(),
            previous: None,
            after_terminal: false,
            marker: None,
            marker_span_start: None,
        }
    }

    /// More sources the text may cite, numbered after those it had (a later search's); the
    /// number the first of them gets.
    pub fn add_sources(&mut self, more: &[Source]) -> usize {
        let first = self.sources.len() + 1;
        let mut all = self.sources.to_vec();
        all.extend_from_slice(more);
        self.wording.extend(more.iter().map(wording_of));
        self.sources = all.into();
        first
    }

    /// Reads the next piece of the text; returns the annotations it completes.
    pub fn push(&mut self, text: &str) -> Vec<Annotation> {
        let mut found = Vec::new();
        for c in text.chars() {
            self.read(c, &mut found);
            self.position += 1;
        }
        found
    }

    /// The text is complete: the annotations of its last sentences.
    pub fn finish(&mut self) -> Vec<Annotation> {
        let mut found = Vec::new();
        if let Some(previous) = self.previous.take() {
            self.compare(&previous, &mut found);
        }
        let last = std::mem::take(&mut self.sentence);
        self.compare(&last, &mut found);
        found
    }

    fn read(&mut self, c: char, found: &mut Vec<Annotation>) {
        if !c.is_whitespace() || self.sentence.has_text {
            self.sentence.text.push(c);
        }
        if !c.is_whitespace() {
            self.sentence.end = self.position + 1;
        }
        if let Some(body) = &mut self.marker {
            if c == ']' {
                let body = std::mem::take(body);
                self.marker = None;
                let numbers = parse_marker(&body, self.sources.len());
                if numbers.is_empty() {
                    // Not a citation: ordinary bracketed text.
                    self.text_started(found);
                    return;
                }
                let span_start = match self.marker_span_start {
                    Some(start) => start,
                    None => {
                        let start = if self.sentence.has_text {
                            self.sentence.cited = true;
                            self.sentence.start
                        } else if let Some(previous) = &mut self.previous {
                            previous.cited = true;
                            previous.start
                        } else {
                            self.sentence.start
                        };
                        self.marker_span_start = Some(start);
                        start
                    }
                };
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
                self.text_started(found);
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
                self.text_started(found);
                self.after_terminal = true;
            }
            '\n' => self.begin_sentence(self.position + 1),
            c if c.is_whitespace() => {
                if self.after_terminal {
                    self.begin_sentence(self.position + 1);
                }
            }
            _ => {
                self.text_started(found);
                self.after_terminal = false;
            }
        }
    }

    /// The current sentence has visible text (not only spaces and markers): the one before
    /// it can no longer be cited by a marker, so it is settled.
    fn text_started(&mut self, found: &mut Vec<Annotation>) {
        self.marker_span_start = None;
        if !self.sentence.has_text {
            // Its first character: spaces before it are not part of it.
            self.sentence.has_text = true;
            self.sentence.start = self.position;
            if let Some(previous) = self.previous.take() {
                self.compare(&previous, found);
            }
        }
    }

    fn begin_sentence(&mut self, at: u32) {
        self.after_terminal = false;
        if self.sentence.has_text {
            // The ended sentence settled the one before it when its text started.
            debug_assert!(self.previous.is_none());
            self.previous = Some(std::mem::take(&mut self.sentence));
        }
        self.sentence = Sentence {
            start: at,
            ..Sentence::default()
        };
    }

    /// A sentence no marker cited: the source whose wording it shares, if one does.
    fn compare(&self, sentence: &Sentence, found: &mut Vec<Annotation>) {
        if sentence.cited || !sentence.has_text || sentence.end <= sentence.start {
            return;
        }
        if let Some(index) = supporting_source(&Wording::of(&sentence.text), &self.wording) {
            let source = &self.sources[index];
            found.push(Annotation::UrlCitation {
                url: source.url.clone(),
                title: source.title.clone(),
                start_index: sentence.start,
                end_index: sentence.end,
            });
        }
    }
}

/// Words that say nothing about where a sentence came from.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "was", "are", "its", "has", "have", "had", "from",
    "which", "who", "what", "when", "where", "how", "into", "than", "then", "there", "their",
    "also", "been", "were", "will", "would", "can", "could", "not", "but", "all", "any", "our",
    "your", "you", "his", "her", "she", "him", "they", "them", "these", "those", "such", "very",
    "about", "after", "before", "over", "more", "most", "some", "one", "out", "only", "other",
];

/// A text's lowercase words, and the content words and word pairs that identify it.
struct Wording {
    content: HashSet<String>,
    pairs: HashSet<(String, String)>,
}

impl Wording {
    fn of(text: &str) -> Self {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let content = words
            .iter()
            .filter(|w| {
                (w.chars().count() >= 3 || w.chars().any(|c| c.is_ascii_digit()))
                    && !STOP_WORDS.contains(&w.as_str())
            })
            .cloned()
            .collect();
        let pairs = words
            .windows(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Self { content, pairs }
    }
}

/// Content words a sentence must share with a source (and word pairs, for the other test).
const MIN_SHARED_WORDS: usize = 3;
const MIN_SHARED_PAIRS: usize = 3;

/// The source a sentence draws on: the one it shares the most word pairs with, when it shares
/// at least [`MIN_SHARED_PAIRS`] (phrasing taken from it), or at least [`MIN_SHARED_WORDS`]
/// content words that are at least half of the sentence's (facts restated). Ties go to the
/// earlier, better-ranked source.
fn supporting_source(sentence: &Wording, sources: &[Wording]) -> Option<usize> {
    let mut best: Option<(usize, (usize, usize))> = None;
    for (index, source) in sources.iter().enumerate() {
        let pairs = sentence.pairs.intersection(&source.pairs).count();
        let words = sentence.content.intersection(&source.content).count();
        let supported = pairs >= MIN_SHARED_PAIRS
            || (words >= MIN_SHARED_WORDS && 2 * words >= sentence.content.len());
        if supported && best.is_none_or(|(_, score)| (pairs, words) > score) {
            best = Some((index, (pairs, words)));
        }
    }
    best.map(|(index, _)| index)
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

    /// Sources without text, so only markers cite them.
    fn sources(n: usize) -> Vec<Source> {
        (1..=n)
            .map(|i| Source {
                url: format!("https://example.org/{i}"),
                title: format!("Page {i}"),
                snippet: String::new(),
                page_text: None,
            })
            .collect()
    }

    fn with_snippets() -> Arc<[Source]> {
        let mut list = sources(2);
        list[0].snippet =
            "The town of Zorblat was founded in 2031 by Mira Quell, who is still its mayor.".into();
        list[1].snippet = "Zorblat is famous for its purple bread.".into();
        list.into()
    }

    fn cite_against(pieces: &[&str], sources: Arc<[Source]>) -> Vec<(String, String)> {
        let mut citations = Citations::new(sources);
        let mut found = Vec::new();
        for piece in pieces {
            found.extend(citations.push(piece));
        }
        found.extend(citations.finish());
        let chars: Vec<char> = pieces.concat().chars().collect();
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

    #[test]
    fn sentences_without_markers_cite_the_source_they_restate() {
        let answer = [
            "The town of Zorblat was founded in 2031 by Mira Quell",
            ", who is still the mayor. Zorblat is famous for its purple bread, a traditional ",
            "bread made with wild yeast. I like turtles.\nThe mayor of Zorblat is Mira Quell",
        ];
        assert_eq!(
            cite_against(&answer, with_snippets()),
            [
                ("1", "The town of Zorblat was founded in 2031 by Mira Quell, who is still the mayor."),
                ("2", "Zorblat is famous for its purple bread, a traditional bread made with wild yeast."),
                ("1", "The mayor of Zorblat is Mira Quell"),
            ]
            .map(|(n, s)| (n.to_owned(), s.to_owned()))
        );
        // A marker wins over the wording, also when it follows the full stop.
        assert_eq!(
            cite_against(
                &["Zorblat is famous for its purple bread. [1] Bye."],
                with_snippets()
            ),
            [(
                "1".to_owned(),
                "Zorblat is famous for its purple bread. [1]".to_owned()
            )]
        );
        // Shared words that are only a small part of a long sentence are not a citation.
        assert_eq!(
            cite_against(
                &["Many towns like Zorblat were founded by settlers who farmed wheat, barley and oats."],
                with_snippets()
            ),
            []
        );
    }

    /// `(url number, the cited text)` for every annotation, however the text was split.
    fn cite(text_pieces: &[&str], count: usize) -> Vec<(String, String)> {
        cite_against(text_pieces, sources(count).into())
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
