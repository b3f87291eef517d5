//! Incremental detokenization: token bytes in, UTF-8 text out, with stop strings detected even
//! when they span tokens. Text that could still become the start of a stop string is held back,
//! so a stop string is never emitted, not even partly.

/// Result of pushing one token's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Text that is now safe to emit (possibly empty).
    Text(String),
    /// A stop string was found; `text` precedes it and generation ends.
    Stopped { text: String, stop: String },
}

pub struct TextAssembler {
    stops: Vec<String>,
    pending_bytes: Vec<u8>,
    held: String,
}

impl TextAssembler {
    #[must_use]
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending_bytes: Vec::new(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.pending_bytes.extend_from_slice(bytes);
        self.decode_complete_chars();
        if let Some((at, stop)) = self.earliest_stop() {
            self.held.truncate(at);
            self.pending_bytes.clear();
            let stop = self.stops[stop].clone();
            let text = std::mem::take(&mut self.held);
            return Pushed::Stopped { text, stop };
        }
        let keep = self.longest_stop_prefix_suffix();
        let emit_len = self.held.len() - keep;
        let rest = self.held.split_off(emit_len);
        Pushed::Text(std::mem::replace(&mut self.held, rest))
    }

    /// Everything still held, at the end of generation.
    pub fn finish(&mut self) -> String {
        let tail = String::from_utf8_lossy(&self.pending_bytes).into_owned();
        self.pending_bytes.clear();
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&tail);
        out
    }

    fn decode_complete_chars(&mut self) {
        loop {
            match std::str::from_utf8(&self.pending_bytes) {
                Ok(text) => {
                    self.held.push_str(text);
                    self.pending_bytes.clear();
                    return;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    let (good, _) = self.pending_bytes.split_at(valid);
                    self.held.push_str(&String::from_utf8_lossy(good));
                    match err.error_len() {
                        // An incomplete sequence at the end: wait for the next token.
                        None => {
                            self.pending_bytes.drain(..valid);
                            return;
                        }
                        Some(bad) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            self.pending_bytes.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Where the earliest stop string starts, and which one it is.
    fn earliest_stop(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(which, s)| self.held.find(s.as_str()).map(|at| (at, which)))
            .min()
    }

    fn longest_stop_prefix_suffix(&self) -> usize {
        let mut keep = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > keep && self.held.ends_with(&stop[..i]) {
                    keep = i;
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let (text, stop) = run_with_stop(stops, pieces);
        (text, stop.is_some())
    }

    fn run_with_stop(stops: &[&str], pieces: &[&[u8]]) -> (String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut asm = TextAssembler::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match asm.push(piece) {
                Pushed::Text(t) => out.push_str(&t),
                Pushed::Stopped { text, stop } => {
                    out.push_str(&text);
                    return (out, Some(stop));
                }
            }
        }
        out.push_str(&asm.finish());
        (out, None)
    }

    #[test]
    fn stop_spanning_tokens_is_never_emitted() {
        assert_eq!(
            run(&["END"], &[b"abc E", b"N", b"D more"]),
            ("abc ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &[b"one\n", b"\ntwo"]), ("one".into(), true));
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_match() {
        assert_eq!(run(&["END"], &[b"E", b"N", b"x"]), ("ENx".into(), false));
    }

    #[test]
    fn multibyte_characters_split_across_tokens() {
        let rocket = "🚀".as_bytes();
        assert_eq!(
            run(&[], &[&rocket[..2], &rocket[2..]]),
            ("🚀".into(), false)
        );
        assert_eq!(
            run(&[], &[b"a", &[0xff], b"b"]),
            ("a\u{fffd}b".into(), false)
        );
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(
            run_with_stop(&["b", "a"], &[b"xxab"]),
            ("xx".into(), Some("a".into()))
        );
    }
}
