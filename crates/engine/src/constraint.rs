//! Constrained decoding: grammars compiled by llguidance against this model's own vocabulary
//! and applied as a token mask before sampling, so structured output and tool calls always
//! parse. Compilation happens on the submitting thread (never on the scheduler); masks are
//! computed per choice inside the batched step.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::tokenizer::Tokenizer;
use crate::EngineError;

/// Tokens kept in reserve, beyond three per open JSON level, before steering a choice to close.
const CLOSING_MARGIN: usize = 8;

/// Tokens a closing path may need per open level: close a key string, `:`, a short value.
const TOKENS_PER_OPEN_LEVEL: usize = 3;

/// The vocabulary as llguidance sees it: token bytes in a trie, control tokens marked special.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        self.tokenizer.encode(&String::from_utf8_lossy(bytes))
    }
}

/// Compiles grammars for one model; shared by every request.
pub struct Grammars {
    factory: ParserFactory,
    closers: Arc<Closers>,
    eos: usize,
}

impl Grammars {
    /// Builds the token trie from the model's vocabulary.
    ///
    /// # Errors
    /// When llguidance rejects the vocabulary.
    pub fn new(tokenizer: &Arc<Tokenizer>) -> Result<Self, EngineError> {
        let vocab = tokenizer.vocab_size();
        let words: Vec<Vec<u8>> = (0..vocab)
            .map(|id| {
                #[allow(clippy::cast_possible_truncation)]
                let id = id as u32;
                let bytes = tokenizer.token_bytes(id);
                if tokenizer.is_special(id) {
                    let mut marked = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    marked.extend_from_slice(bytes);
                    marked
                } else {
                    bytes.to_vec()
                }
            })
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let end_ids: Vec<u32> = (0..vocab as u32)
            .filter(|id| tokenizer.is_end_of_generation(*id))
            .collect();
        let eos = tokenizer
            .eos_id()
            .or_else(|| end_ids.first().copied())
            .ok_or_else(|| EngineError::Load("the vocabulary has no end-of-turn token".into()))?;
        let info = TokRxInfo {
            #[allow(clippy::cast_possible_truncation)]
            vocab_size: vocab as u32,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&end_ids);
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            tokenizer: Arc::clone(tokenizer),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| EngineError::Load(format!("constrained decoding: {e}")))?;
        factory.quiet();
        #[allow(clippy::cast_possible_truncation)]
        let closers = (0..vocab as u32)
            .filter_map(|id| {
                let bytes = tokenizer.token_bytes(id);
                let closing = !tokenizer.is_special(id)
                    && bytes.iter().any(|b| CLOSING_BYTES.contains(b))
                    && bytes
                        .iter()
                        .all(|b| CLOSING_BYTES.contains(b) || matches!(b, b' ' | b'\n'));
                closing.then(|| (id, bytes.to_vec().into_boxed_slice()))
            })
            .collect();
        Ok(Self {
            factory,
            closers: Arc::new(closers),
            eos: eos as usize,
        })
    }

    /// Compiles a grammar into a fresh constraint.
    ///
    /// # Errors
    /// The compiler's description of why it rejects the grammar (for the caller to attribute).
    pub fn compile(&self, grammar: TopLevelGrammar) -> Result<Constraint, String> {
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(error.to_string());
        }
        Ok(Constraint {
            matcher,
            closers: Arc::clone(&self.closers),
            eos: self.eos,
            json: JsonDepth::default(),
            kept: Vec::with_capacity(64),
        })
    }
}

/// What a closing path is written with: quotes and brackets that close, and the `:` and `0`
/// that complete a key whose value is still missing. No `,`, `{` or `[`, so no path can grow.
const CLOSING_BYTES: &[u8] = b"\"}]:0";

/// Tokens made only of [`CLOSING_BYTES`] and whitespace, with their bytes.
type Closers = Vec<(u32, Box<[u8]>)>;

/// The grammar state of one choice.
pub struct Constraint {
    matcher: Matcher,
    closers: Arc<Closers>,
    eos: usize,
    json: JsonDepth,
    /// Reused while steering, so masking allocates nothing per token.
    kept: Vec<(u32, f32)>,
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            closers: Arc::clone(&self.closers),
            eos: self.eos,
            json: self.json,
            kept: Vec::with_capacity(64),
        }
    }
}

/// How deep the JSON written so far is nested (strings count as one level), and how many
/// top-level values (answers, calls) were completed in how many tokens.
#[derive(Debug, Clone, Copy, Default)]
struct JsonDepth {
    depth: usize,
    in_string: bool,
    escaped: bool,
    closed: usize,
    tokens: usize,
}

impl JsonDepth {
    fn push(&mut self, bytes: &[u8]) {
        self.tokens += 1;
        for &b in bytes {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    if self.depth == 1 {
                        self.closed += 1;
                    }
                    self.depth = self.depth.saturating_sub(1);
                }
                _ => {}
            }
        }
    }

    fn open(&self) -> usize {
        self.depth + usize::from(self.in_string)
    }

    /// Tokens a completed value took on average, once one has been completed.
    fn tokens_per_value(&self) -> Option<usize> {
        (self.closed > 0).then(|| self.tokens / self.closed)
    }
}

impl Constraint {
    /// Masks every token the grammar does not allow next (to −∞), including ids past the
    /// vocabulary that some models pad their output layer with.
    ///
    /// # Errors
    /// When the grammar has reached an internal error and allows nothing.
    ///
    /// With only `remaining` tokens left and JSON still open, the choice is steered to close
    /// it: of the allowed closing tokens, only those that leave the fewest levels open stay
    /// (a closing quote inside a string; `:` and a short value after a dangling key; `}` or
    /// `]` when the schema allows), whenever any is allowed. A length cut then still leaves
    /// parseable JSON wherever the schema lets it close (OpenAI's cut JSON does not parse).
    pub fn apply(&mut self, logits: &mut [f32], remaining: usize) -> Result<(), String> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        let known = mask.len().min(logits.len());
        mask.iter_unset_entries(|id| {
            if id < known {
                logits[id] = f32::NEG_INFINITY;
            }
        });
        for logit in &mut logits[known..] {
            *logit = f32::NEG_INFINITY;
        }
        if mask.num_set() == 0 {
            return Err("the grammar allows no further token".into());
        }
        let open = self.json.open();
        // Do not start another call (or value) that the budget cannot finish: end the turn.
        let eos = self.eos;
        if open == 0
            && eos < known
            && mask.is_allowed(eos as u32)
            && self
                .json
                .tokens_per_value()
                .is_some_and(|per_value| remaining <= per_value + CLOSING_MARGIN)
        {
            let logit = logits[eos];
            logits[..known].fill(f32::NEG_INFINITY);
            logits[eos] = logit;
            return Ok(());
        }
        if open > 0 && remaining <= TOKENS_PER_OPEN_LEVEL * open + CLOSING_MARGIN {
            let mut fewest_open = usize::MAX;
            self.kept.clear();
            for (id, bytes) in self.closers.iter() {
                if (*id as usize) >= known || !mask.is_allowed(*id) {
                    continue;
                }
                let mut after = self.json;
                after.push(bytes);
                let open_after = after.open();
                if open_after < fewest_open {
                    fewest_open = open_after;
                    self.kept.clear();
                }
                if open_after == fewest_open {
                    self.kept.push((*id, logits[*id as usize]));
                }
            }
            if !self.kept.is_empty() {
                logits[..known].fill(f32::NEG_INFINITY);
                for &(id, logit) in &self.kept {
                    logits[id as usize] = logit;
                }
            }
        }
        Ok(())
    }

    /// Advances the grammar past a sampled token.
    ///
    /// # Errors
    /// When the token was not allowed (a bug: tokens are sampled from the masked logits).
    pub fn commit(&mut self, token: u32, bytes: &[u8]) -> Result<(), String> {
        self.json.push(bytes);
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }
}
