//! Byte-level BPE tokenizer built from GGUF metadata (`tokenizer.ggml.*`), reproducing
//! llama.cpp's ids for `gpt2`-style vocabularies: the pre-tokenizer regexes selected by
//! `tokenizer.ggml.pre`, then merge-rank BPE over the GPT-2 byte alphabet.
//!
//! Two entry points keep user text and template text apart: [`Tokenizer::encode`] treats its
//! input as plain text and never yields a special token, while [`Tokenizer::encode_prompt`]
//! recognises control and user-defined token strings in a rendered chat prompt, except inside the
//! [`USER_TEXT_START`]…[`USER_TEXT_END`] spans the template renderer puts around caller text.
//! This module does not render templates, add BOS (the caller decides with [`Tokenizer::add_bos`])
//! or support SentencePiece (`llama`) and other tokenizer models.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;

use crate::gguf::{GgufFile, MetaValue};
use crate::template::{USER_TEXT_END, USER_TEXT_START};
use crate::EngineError;

/// A tokenizer ready to encode and decode; cheap to share behind an `Arc`.
pub struct Tokenizer {
    tokens: Vec<Token>,
    /// Decoded bytes → id, for [`Tokenizer::token_id`] and `ignore_merges` pre-tokenizers.
    ids_by_bytes: HashMap<Box<[u8]>, u32>,
    /// The token standing for each single byte, the starting alphabet of BPE.
    byte_tokens: [Option<u32>; 256],
    /// (left, right) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    pre: PreTokenizer,
    /// Special token ids whose text starts with a given byte, longest text first.
    specials_by_first_byte: Vec<Vec<u32>>,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    add_bos: bool,
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    ///
    /// # Errors
    /// When the tokenizer model is not `gpt2` (byte-level BPE), when the vocabulary or merges are
    /// missing or malformed, or when a pre-tokenizer regex fails to compile.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, EngineError> {
        let model = file.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(EngineError::Load(format!(
                "tokenizer model {model:?} is not supported; only byte-level BPE (\"gpt2\") is"
            )));
        }
        let texts = string_array(file, "tokenizer.ggml.tokens")?;
        let types = file
            .get("tokenizer.ggml.token_type")
            .and_then(MetaValue::as_array)
            .unwrap_or_default();
        let merges = match file.get("tokenizer.ggml.merges") {
            Some(_) => string_array(file, "tokenizer.ggml.merges")?,
            None => Vec::new(),
        };
        let pre = file.get("tokenizer.ggml.pre").and_then(MetaValue::as_str);
        let optional_id = |key: &str| {
            file.get(key)
                .and_then(MetaValue::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .filter(|id| (*id as usize) < texts.len())
        };
        let spec = VocabSpec {
            texts: &texts,
            types: types.iter().map(|t| t.as_i64().unwrap_or(1)).collect(),
            merges: &merges,
            pre: PreTokenizer::for_name(pre)?,
            bos: optional_id("tokenizer.ggml.bos_token_id"),
            eos: optional_id("tokenizer.ggml.eos_token_id"),
            eot: optional_id("tokenizer.ggml.eot_token_id"),
            eom: optional_id("tokenizer.ggml.eom_token_id"),
            unknown: optional_id("tokenizer.ggml.unknown_token_id"),
            add_bos: file
                .get("tokenizer.ggml.add_bos_token")
                .and_then(MetaValue::as_bool)
                .unwrap_or(false),
        };
        Self::build(&spec)
    }

    /// Encodes plain text. Control-token strings in it are ordinary text, so a user typing
    /// `<|im_end|>` cannot end a turn.
    #[must_use]
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out, usize::MAX);
        out
    }

    /// Encodes a prompt rendered by [`crate::template::ChatTemplate`]: outside user-text spans,
    /// control and user-defined token strings become their single token (longest match first);
    /// inside spans nothing is special. Sentinels are dropped and each run of non-special text,
    /// even one that crosses span boundaries, is encoded as one piece, so the ids are what
    /// llama.cpp gives for the same prompt without the sentinels, minus any special tokens the
    /// user typed.
    #[must_use]
    pub fn encode_prompt(&self, rendered: &str) -> Vec<u32> {
        self.encode_prompt_within(rendered, usize::MAX)
            .unwrap_or_else(|partial| partial)
    }

    /// [`Self::encode_prompt`], giving up as soon as the prompt is known to need more than
    /// `limit` tokens (`Err` with the tokens encoded so far), so an oversized prompt costs
    /// about `limit` tokens of work, not its whole length.
    ///
    /// # Errors
    /// The partial encoding, longer than `limit`, when the prompt does not fit.
    pub fn encode_prompt_within(&self, rendered: &str, limit: usize) -> Result<Vec<u32>, Vec<u32>> {
        let mut out = Vec::new();
        let mut pending = String::new();
        let mut in_user_text = false;
        let mut rest = rendered;
        while let Some(c) = rest.chars().next() {
            if c == USER_TEXT_START || c == USER_TEXT_END {
                in_user_text = c == USER_TEXT_START;
                rest = &rest[c.len_utf8()..];
                continue;
            }
            if !in_user_text {
                if let Some(id) = self.special_prefix(rest) {
                    self.encode_into(&pending, &mut out, limit);
                    pending.clear();
                    out.push(id);
                    if out.len() > limit {
                        return Err(out);
                    }
                    rest = &rest[self.tokens[id as usize].bytes.len()..];
                    continue;
                }
            }
            pending.push(c);
            rest = &rest[c.len_utf8()..];
        }
        self.encode_into(&pending, &mut out, limit);
        if out.len() > limit {
            Err(out)
        } else {
            Ok(out)
        }
    }

    /// The longest byte string any single token stands for: a text of `n` bytes needs at
    /// least `n / max_token_bytes` tokens.
    #[must_use]
    pub fn max_token_bytes(&self) -> usize {
        self.tokens
            .iter()
            .map(|token| token.bytes.len())
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// The raw bytes a token stands for: the GPT-2 byte mapping undone for ordinary tokens, the
    /// literal text for control and user-defined ones, nothing for unknown ids. A token may be
    /// part of a UTF-8 character, so callers streaming text must join bytes before decoding.
    #[must_use]
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.tokens.get(id as usize).map_or(&[], |t| &t.bytes)
    }

    /// The text of a sequence of tokens; invalid UTF-8 becomes U+FFFD.
    #[must_use]
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|id| self.token_bytes(*id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[must_use]
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    #[must_use]
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    #[must_use]
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether prompts should start with BOS (`tokenizer.ggml.add_bos_token`, default false).
    #[must_use]
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether generating this token ends the turn: EOS/EOT/EOM, plus the control tokens llama.cpp
    /// recognises by name (`<|im_end|>`, `<|eot_id|>`, …) because conversions often leave them out
    /// of the metadata.
    #[must_use]
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.tokens
            .get(id as usize)
            .is_some_and(|t| t.end_of_generation)
    }

    /// The id of the token whose text is exactly `text` (e.g. `"<|im_end|>"` or `" the"`),
    /// preferring a special token when an ordinary one decodes to the same bytes.
    #[must_use]
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.special_prefix(text)
            .filter(|id| self.tokens[*id as usize].bytes.len() == text.len())
            .or_else(|| self.ids_by_bytes.get(text.as_bytes()).copied())
    }

    /// Whether a token is a control or user-defined token rather than ordinary text.
    #[must_use]
    pub fn is_special(&self, id: u32) -> bool {
        self.tokens
            .get(id as usize)
            .is_some_and(|t| t.kind.is_special())
    }

    fn build(spec: &VocabSpec<'_>) -> Result<Self, EngineError> {
        let byte_of_char = gpt2_char_to_byte();
        let mut tokens = Vec::with_capacity(spec.texts.len());
        let mut ids_by_text: HashMap<&str, u32> = HashMap::with_capacity(spec.texts.len());
        for (index, text) in spec.texts.iter().enumerate() {
            let id = u32::try_from(index)
                .map_err(|_| EngineError::Load("vocabulary is too large".into()))?;
            let kind = TokenKind::from_gguf(spec.types.get(index).copied().unwrap_or(1));
            // llama.cpp forces these names to control tokens, so a vocabulary that lists them as
            // ordinary still ends generation and is never produced from user text.
            let kind = if END_OF_GENERATION_NAMES.contains(&text.as_str()) {
                TokenKind::Control
            } else {
                kind
            };
            let bytes = if kind.is_special() {
                text.as_bytes().to_vec()
            } else {
                text.chars()
                    .flat_map(|c| match byte_of_char.get(&c) {
                        Some(b) => vec![*b],
                        // Not part of the byte alphabet (a malformed vocabulary); keep the text.
                        None => c.to_string().into_bytes(),
                    })
                    .collect()
            };
            let end_of_generation = [spec.eos, spec.eot, spec.eom].contains(&Some(id))
                || (kind == TokenKind::Control && END_OF_GENERATION_NAMES.contains(&text.as_str()));
            ids_by_text.entry(text).or_insert(id);
            tokens.push(Token {
                bytes,
                kind,
                end_of_generation,
            });
        }

        let mut ids_by_bytes: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut specials_by_first_byte = vec![Vec::new(); 256];
        for (id, token) in (0u32..).zip(&tokens) {
            match token.kind {
                TokenKind::Normal | TokenKind::Byte => {
                    ids_by_bytes
                        .entry(token.bytes.clone().into_boxed_slice())
                        .or_insert(id);
                }
                TokenKind::Control | TokenKind::UserDefined => {
                    if let Some(first) = token.bytes.first() {
                        specials_by_first_byte[usize::from(*first)].push(id);
                    }
                }
                TokenKind::Unknown | TokenKind::Unused => {}
            }
        }
        for bucket in &mut specials_by_first_byte {
            bucket.sort_by_key(|id| Reverse(tokens[*id as usize].bytes.len()));
        }

        let mut byte_tokens = [None; 256];
        for (byte, slot) in (0u8..=255).zip(byte_tokens.iter_mut()) {
            *slot = ids_by_text
                .get(gpt2_byte_to_char(byte).to_string().as_str())
                .copied();
        }

        let mut merges = HashMap::with_capacity(spec.merges.len());
        let mut skipped = 0usize;
        for (rank, line) in (0u32..).zip(spec.merges) {
            // The separator is the first space after the first character: byte-level tokens
            // never contain a literal space, but a merge may start with one in odd vocabularies.
            let split = line
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == ' ')
                .map(|(i, _)| i);
            let resolved = split.and_then(|i| {
                let (left, right) = (&line[..i], &line[i + 1..]);
                let merged = format!("{left}{right}");
                Some((
                    *ids_by_text.get(left)?,
                    *ids_by_text.get(right)?,
                    *ids_by_text.get(merged.as_str())?,
                ))
            });
            match resolved {
                Some((left, right, merged)) => {
                    merges.entry((left, right)).or_insert((rank, merged));
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "BPE merges naming tokens absent from the vocabulary were ignored"
            );
        }

        Ok(Self {
            tokens,
            ids_by_bytes,
            byte_tokens,
            merges,
            pre: spec.pre.clone(),
            specials_by_first_byte,
            bos: spec.bos,
            eos: spec.eos,
            unknown: spec.unknown,
            add_bos: spec.add_bos,
        })
    }

    /// Encodes `text` onto `out`, stopping early once `out` holds more than `limit` tokens.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>, limit: usize) {
        if text.is_empty() {
            return;
        }
        let mut symbols = Vec::new();
        let mut heap = BinaryHeap::new();
        for piece in self.pre.split(text) {
            if out.len() > limit {
                return;
            }
            if self.pre.ignore_merges {
                if let Some(id) = self.ids_by_bytes.get(piece.as_bytes()) {
                    out.push(*id);
                    continue;
                }
            }
            self.bpe(piece.as_bytes(), &mut symbols, &mut heap, out);
        }
    }

    /// Merges one pre-tokenized piece, lowest rank first and leftmost among equal ranks, as
    /// llama.cpp does. Symbols form a linked list over a vector and candidate pairs sit in a heap,
    /// so a long piece costs O(n log n) rather than a rescan per merge. Stale heap entries (a side
    /// already merged away) are detected on pop and skipped.
    fn bpe(
        &self,
        piece: &[u8],
        symbols: &mut Vec<Symbol>,
        heap: &mut BinaryHeap<Reverse<Candidate>>,
        out: &mut Vec<u32>,
    ) {
        symbols.clear();
        heap.clear();
        for (index, byte) in piece.iter().enumerate() {
            symbols.push(Symbol {
                id: self.byte_tokens[usize::from(*byte)],
                prev: index.checked_sub(1),
                next: Some(index + 1).filter(|next| *next < piece.len()),
            });
        }
        for left in 1..symbols.len() {
            self.push_candidate(symbols, left - 1, heap);
        }
        while let Some(Reverse(candidate)) = heap.pop() {
            let left = &symbols[candidate.left];
            let Some(right_index) = left.next else {
                continue;
            };
            let right = &symbols[right_index];
            if left.id != Some(candidate.left_id) || right.id != Some(candidate.right_id) {
                continue;
            }
            let after = right.next;
            symbols[candidate.left].id = Some(candidate.merged);
            symbols[candidate.left].next = after;
            symbols[right_index].id = None;
            if let Some(after) = after {
                symbols[after].prev = Some(candidate.left);
            }
            if let Some(before) = symbols[candidate.left].prev {
                self.push_candidate(symbols, before, heap);
            }
            self.push_candidate(symbols, candidate.left, heap);
        }
        let mut cursor = (!symbols.is_empty()).then_some(0);
        while let Some(index) = cursor {
            // A byte with no token of its own (a malformed vocabulary) degrades to UNK.
            if let Some(id) = symbols[index].id.or(self.unknown) {
                out.push(id);
            }
            cursor = symbols[index].next;
        }
    }

    fn push_candidate(
        &self,
        symbols: &[Symbol],
        left: usize,
        heap: &mut BinaryHeap<Reverse<Candidate>>,
    ) {
        let Some(right) = symbols[left].next else {
            return;
        };
        let (Some(left_id), Some(right_id)) = (symbols[left].id, symbols[right].id) else {
            return;
        };
        if let Some((rank, merged)) = self.merges.get(&(left_id, right_id)) {
            heap.push(Reverse(Candidate {
                rank: *rank,
                left,
                left_id,
                right_id,
                merged: *merged,
            }));
        }
    }

    /// The longest special token that `text` starts with.
    fn special_prefix(&self, text: &str) -> Option<u32> {
        let first = *text.as_bytes().first()?;
        self.specials_by_first_byte[usize::from(first)]
            .iter()
            .copied()
            .find(|id| {
                text.as_bytes()
                    .starts_with(&self.tokens[*id as usize].bytes)
            })
    }
}

/// Token names llama.cpp treats as end of generation (and as control tokens) whatever the
/// metadata says.
const END_OF_GENERATION_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// The GPT-2 pattern: contractions, letter runs, digit runs, punctuation runs, whitespace.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's pattern: case-insensitive contractions, digits in groups of up to three.
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's pattern: as Llama 3's but one digit per piece.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How llama.cpp pre-tokenizes for a group of `tokenizer.ggml.pre` names. Adding a model family
/// is adding a row here.
struct PreSpec {
    names: &'static [&'static str],
    /// Applied in sequence, each splitting the pieces left by the previous one.
    patterns: &'static [&'static str],
    /// Whether a piece that is itself a vocabulary token skips BPE (Llama 3).
    ignore_merges: bool,
}

const PRE_TOKENIZERS: &[PreSpec] = &[
    PreSpec {
        names: &["gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat"],
        patterns: &[GPT2_PATTERN],
        ignore_merges: false,
    },
    PreSpec {
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva",
        ],
        patterns: &[r"\p{N}", GPT2_PATTERN],
        ignore_merges: false,
    },
    PreSpec {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        patterns: &[LLAMA3_PATTERN],
        ignore_merges: true,
    },
    PreSpec {
        names: &["qwen2", "deepseek-r1-qwen", "megrez"],
        patterns: &[QWEN2_PATTERN],
        ignore_merges: false,
    },
];

/// The compiled regexes of one [`PreSpec`].
#[derive(Clone)]
struct PreTokenizer {
    regexes: Vec<Regex>,
    ignore_merges: bool,
}

impl PreTokenizer {
    fn for_name(name: Option<&str>) -> Result<Self, EngineError> {
        let spec = PRE_TOKENIZERS
            .iter()
            .find(|spec| name.is_some_and(|name| spec.names.contains(&name)));
        let (patterns, ignore_merges) = match spec {
            Some(spec) => (spec.patterns, spec.ignore_merges),
            None => {
                tracing::warn!(
                    pre = name.unwrap_or("<absent>"),
                    "unknown tokenizer.ggml.pre; falling back to the GPT-2 pre-tokenizer, \
                     token ids may differ from llama.cpp"
                );
                (&[GPT2_PATTERN][..], false)
            }
        };
        let regexes = patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|e| {
                    EngineError::Load(format!("pre-tokenizer regex {pattern:?} is invalid: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            regexes,
            ignore_merges,
        })
    }

    /// Splits text into pieces: every regex match and every stretch between matches is a piece,
    /// and later regexes see only one piece at a time (so a lookahead stops at piece ends, as in
    /// llama.cpp).
    fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                let mut last = 0;
                for found in regex.find_iter(piece) {
                    let found = match found {
                        Ok(found) => found,
                        Err(error) => {
                            // Only a backtracking limit can fail here; keep the rest whole.
                            tracing::warn!(%error, "pre-tokenizer regex gave up on a piece");
                            break;
                        }
                    };
                    if found.start() > last {
                        next.push(&piece[last..found.start()]);
                    }
                    if found.end() > found.start() {
                        next.push(found.as_str());
                    }
                    last = found.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            pieces = next;
        }
        pieces
    }
}

/// Vocabulary data, already extracted from wherever it came from.
struct VocabSpec<'a> {
    texts: &'a [String],
    types: Vec<i64>,
    merges: &'a [String],
    pre: PreTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unknown: Option<u32>,
    add_bos: bool,
}

struct Token {
    bytes: Vec<u8>,
    kind: TokenKind,
    end_of_generation: bool,
}

/// `tokenizer.ggml.token_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_gguf(value: i64) -> Self {
        match value {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            // 1 is normal; 0 (undefined) and anything newer are treated as text too.
            _ => Self::Normal,
        }
    }

    fn is_special(self) -> bool {
        matches!(self, Self::Control | Self::UserDefined)
    }
}

struct Symbol {
    /// `None` once merged into its left neighbour, or for a byte the vocabulary lacks.
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A possible merge of the symbol at `left` with its right neighbour. Field order makes the
/// derived ordering rank first, then position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    left_id: u32,
    right_id: u32,
    merged: u32,
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>, EngineError> {
    let values = file
        .get(key)
        .and_then(MetaValue::as_array)
        .ok_or_else(|| EngineError::Load(format!("GGUF metadata {key} is missing")))?;
    values
        .iter()
        .map(|value| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| EngineError::Load(format!("GGUF metadata {key} must hold strings")))
        })
        .collect()
}

/// GPT-2's reversible byte → printable character mapping: printable Latin-1 bytes stand for
/// themselves, the rest are shifted to U+0100 and up in byte order.
fn gpt2_byte_to_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let shift = (0..byte).filter(|b| !printable(*b)).count();
    // At most 68 bytes are shifted, so the code point stays below U+0144.
    char::from_u32(256 + u32::try_from(shift).unwrap_or(0)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn gpt2_char_to_byte() -> HashMap<char, u8> {
    (0u8..=255).map(|b| (gpt2_byte_to_char(b), b)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use super::*;

    /// The default model's file and tokenizer, loaded once for all tests; `None` (after saying
    /// the test is skipped) when the model is not on disk.
    pub(crate) fn smollm() -> Option<&'static (GgufFile, Tokenizer)> {
        static LOADED: OnceLock<Option<(GgufFile, Tokenizer)>> = OnceLock::new();
        let loaded = LOADED.get_or_init(|| {
            let path = switchboard_testkit::default_model_path();
            path.exists().then(|| {
                let file = GgufFile::open(&path).unwrap();
                let tokenizer = Tokenizer::from_gguf(&file).unwrap();
                (file, tokenizer)
            })
        });
        if loaded.is_none() {
            switchboard_testkit::skip_unless_ci(&format!(
                "{} is absent (run `switchboard pull` or set SWITCHBOARD_HOME)",
                switchboard_testkit::default_model_path().display()
            ));
        }
        loaded.as_ref()
    }

    /// `tokenize` cases of fixtures/smollm2-golden.json (llama.cpp, no BOS, no special parsing).
    const GOLDEN_TOKENIZE: &[(&str, &[u32])] = &[
        ("Hello world", &[19556, 905]),
        (
            "The year 2024 had 366 days.",
            &[
                504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30,
            ],
        ),
        ("1234567890", &[33, 34, 35, 36, 37, 38, 39, 40, 41, 32]),
        (
            "  leading spaces and\ttabs\n\nnewlines",
            &[216, 2899, 5600, 284, 197, 100, 7366, 198, 198, 2241, 5110],
        ),
        (
            "Ünïcödé façade naïve café",
            &[
                142, 246, 94, 25972, 83, 7466, 84, 2756, 40852, 15486, 46494, 37366,
            ],
        ),
        (
            "日本語のテキスト",
            &[
                23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100,
                226,
            ],
        ),
        (
            "emoji 🚀🔥 done",
            &[391, 33777, 15107, 244, 218, 10813, 238, 115, 2294],
        ),
        (
            "def f(x):\n    return x**2  # square",
            &[
                1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222,
            ],
        ),
        (
            "{\"city\": \"Paris\", \"population_millions\": 2.1}",
            &[
                39428, 20721, 1799, 476, 38634, 1002, 476, 23091, 79, 14315, 438, 1799, 216, 34,
                30, 33, 109,
            ],
        ),
        (
            "don't won't I'm they'll",
            &[12420, 982, 3763, 982, 339, 5248, 502, 3060],
        ),
        (
            "<|im_end|> typed by a user",
            &[44, 108, 306, 79, 486, 108, 46, 30473, 411, 253, 2914],
        ),
        (
            "https://example.com/a?b=c&d=e",
            &[
                4687, 1742, 7434, 30, 824, 31, 81, 47, 82, 45, 83, 22, 84, 45, 85,
            ],
        ),
        ("   ", &[333]),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[46880; 10]),
    ];

    /// `greedy[i].prompt` / `prompt_ids` of the same fixture (control markers parsed).
    pub(crate) const GOLDEN_PROMPTS: &[(&str, &[u32])] = &[
        (
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            &[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198],
        ),
        (
            "<|im_start|>user\nWrite a very long, detailed story about a lighthouse keeper who finds a map. Use many chapters.<|im_end|>\n<|im_start|>assistant\n",
            &[1, 4093, 198, 19161, 253, 1035, 986, 28, 5861, 1977, 563, 253, 33059, 40061, 617, 8284, 253, 4141, 30, 4076, 800, 12279, 30, 2, 198, 1, 520, 9531, 198],
        ),
        (
            "<|im_start|>user\nCount from 1 to 20 separated by commas.<|im_end|>\n<|im_start|>assistant\n",
            &[1, 4093, 198, 9825, 429, 216, 33, 288, 216, 34, 32, 9075, 411, 45910, 30, 2, 198, 1, 520, 9531, 198],
        ),
    ];

    /// A GGUF file holding only the given metadata, for tokenizers without a model on disk.
    pub(crate) fn metadata_only(entries: Vec<(&str, MetaValue)>) -> GgufFile {
        let mmap = memmap2::MmapOptions::new()
            .len(1)
            .map_anon()
            .unwrap()
            .make_read_only()
            .unwrap();
        GgufFile {
            metadata: entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            tensors: HashMap::new(),
            mmap: Arc::new(mmap),
        }
    }

    fn strings(values: &[&str]) -> MetaValue {
        MetaValue::Array(
            values
                .iter()
                .map(|v| MetaValue::String((*v).to_owned()))
                .collect(),
        )
    }

    /// A toy vocabulary: the 256 byte tokens, a few merges and two control tokens.
    fn toy() -> Tokenizer {
        let mut texts: Vec<String> = vec!["<s>".into(), "<|im_end|>".into()];
        texts.extend((0u8..=255).map(|b| gpt2_byte_to_char(b).to_string()));
        texts.extend(["ab", "abc", "Ġab"].map(String::from));
        let mut types = vec![MetaValue::I32(3), MetaValue::I32(1)];
        types.extend(std::iter::repeat_n(MetaValue::I32(1), 259));
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let file = metadata_only(vec![
            ("tokenizer.ggml.model", MetaValue::String("gpt2".into())),
            ("tokenizer.ggml.pre", MetaValue::String("gpt2".into())),
            ("tokenizer.ggml.tokens", strings(&texts)),
            ("tokenizer.ggml.token_type", MetaValue::Array(types)),
            (
                "tokenizer.ggml.merges",
                strings(&["a b", "ab c", "Ġ ab", "x y"]),
            ),
            ("tokenizer.ggml.bos_token_id", MetaValue::U32(0)),
        ]);
        Tokenizer::from_gguf(&file).unwrap()
    }

    #[test]
    fn golden_plain_text_ids_match_llama_cpp() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        for (text, ids) in GOLDEN_TOKENIZE {
            assert_eq!(tokenizer.encode(text), *ids, "tokenizing {text:?}");
            assert_eq!(tokenizer.decode(ids), *text);
        }
    }

    #[test]
    fn golden_prompt_ids_match_llama_cpp() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        for (prompt, ids) in GOLDEN_PROMPTS {
            assert_eq!(
                tokenizer.encode_prompt(prompt),
                *ids,
                "tokenizing {prompt:?}"
            );
        }
    }

    #[test]
    fn smollm_metadata_is_read() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        assert_eq!(tokenizer.vocab_size(), 49152);
        assert_eq!(tokenizer.bos_id(), Some(1));
        assert_eq!(tokenizer.eos_id(), Some(2));
        assert!(!tokenizer.add_bos());
        assert_eq!(tokenizer.token_id("<|im_end|>"), Some(2));
        assert_eq!(tokenizer.token_id(" the"), Some(260));
        assert!(tokenizer.is_end_of_generation(2));
        assert!(
            tokenizer.is_end_of_generation(0),
            "<|endoftext|> ends generation"
        );
        assert!(!tokenizer.is_end_of_generation(1));
        assert!(tokenizer.is_special(1));
        assert!(!tokenizer.is_special(260));
        assert_eq!(tokenizer.token_bytes(2), b"<|im_end|>");
        assert_eq!(tokenizer.token_bytes(216), b" ");
        assert_eq!(tokenizer.token_bytes(u32::MAX), b"");
    }

    #[test]
    fn user_spans_hide_control_markers() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        let typed = "<|im_start|>hi<|im_end|>";
        let rendered =
            format!("<|im_start|>user\n{USER_TEXT_START}{typed}{USER_TEXT_END}<|im_end|>\n");
        let ids = tokenizer.encode_prompt(&rendered);
        let mut expected = vec![1];
        expected.extend(tokenizer.encode(&format!("user\n{typed}")));
        expected.extend([2, 198]);
        assert_eq!(ids, expected);
        assert_eq!(
            ids.iter().filter(|id| tokenizer.is_special(**id)).count(),
            2
        );
    }

    #[test]
    fn text_runs_cross_span_boundaries_as_one_piece() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        // " 2024 had" must tokenize as if the sentinels were not there.
        let rendered = format!("year{USER_TEXT_START} 2024{USER_TEXT_END} had");
        assert_eq!(
            tokenizer.encode_prompt(&rendered),
            tokenizer.encode("year 2024 had")
        );
    }

    #[test]
    fn long_input_is_fast_and_lossless() {
        let Some((_, tokenizer)) = smollm() else {
            return;
        };
        let mut text = "The quick brown fox jumps over the lazy dog 12345. ".repeat(1000);
        text.push_str(&"x".repeat(20_000));
        text.push_str(&" ".repeat(20_000));
        text.push_str(&"!?".repeat(10_000));
        let started = Instant::now();
        let ids = tokenizer.encode(&text);
        let elapsed = started.elapsed();
        assert_eq!(tokenizer.decode(&ids), text);
        assert!(
            elapsed.as_secs_f64() < 5.0,
            "encoding {} chars took {elapsed:?}",
            text.len()
        );
    }

    #[test]
    fn toy_vocabulary_merges_by_rank_and_position() {
        let tokenizer = toy();
        let id = |text: &str| tokenizer.token_id(text).unwrap();
        assert_eq!(tokenizer.encode("abc"), vec![id("abc")]);
        assert_eq!(tokenizer.encode("abab"), vec![id("ab"), id("ab")]);
        assert_eq!(tokenizer.encode(" ab"), vec![id(" ab")]);
        // "x y" names a merge whose result is not in the vocabulary; it is ignored.
        assert_eq!(tokenizer.encode("xy"), vec![id("x"), id("y")]);
        assert_eq!(tokenizer.encode(""), Vec::<u32>::new());
        assert_eq!(tokenizer.encode("<|im_end|>").len(), 10);
        assert_eq!(tokenizer.encode_prompt("ab<|im_end|>"), vec![id("ab"), 1]);
        assert!(
            tokenizer.is_end_of_generation(1),
            "named EOG tokens are forced to control"
        );
        assert!(tokenizer.is_special(1));
        assert_eq!(tokenizer.decode(&tokenizer.encode("é\u{0}\n")), "é\u{0}\n");
    }

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let map = gpt2_char_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(gpt2_byte_to_char(b' '), 'Ġ');
        assert_eq!(gpt2_byte_to_char(b'\n'), 'Ċ');
        assert_eq!(gpt2_byte_to_char(b'a'), 'a');
    }

    #[test]
    fn smollm_pre_tokenizer_splits_digits_then_gpt2() {
        let pre = PreTokenizer::for_name(Some("smollm")).unwrap();
        assert_eq!(
            pre.split("year 2024  had"),
            ["year", " ", "2", "0", "2", "4", " ", " had"]
        );
        // The digit pass ends a piece, so the lookahead of `\s+(?!\S)` stops there too.
        assert_eq!(pre.split("a  b\n\n"), ["a", " ", " b", "\n\n"]);
        assert_eq!(pre.split("a  1"), ["a", "  ", "1"]);
        let unknown = PreTokenizer::for_name(Some("something-new")).unwrap();
        assert_eq!(unknown.split("x 2024"), ["x", " 2024"]);
    }

    #[test]
    fn other_tokenizer_models_are_rejected() {
        let file = metadata_only(vec![(
            "tokenizer.ggml.model",
            MetaValue::String("llama".into()),
        )]);
        let Err(EngineError::Load(message)) = Tokenizer::from_gguf(&file) else {
            panic!("a SentencePiece vocabulary must be rejected");
        };
        assert!(message.contains("\"llama\""), "{message}");
    }
}
