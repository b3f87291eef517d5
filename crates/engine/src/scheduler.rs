//! The engine's public handle and its scheduler thread.
//!
//! Requests are rendered and tokenized on the caller's thread, then queued on a bounded channel
//! (a full queue is an immediate `Overloaded`, never a wait). One scheduler thread owns all
//! running sequences and, each step, builds one batch out of every decoding choice plus prompt
//! chunks up to a token budget (chosen by the fairness policy: short prompts first, long ones
//! time-shared with the decodes), runs the forward pass on the engine's own thread pool, samples,
//! and pushes events to each request's bounded channel. A request whose receiver is gone (client
//! disconnected) is dropped at the start of the next step.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use switchboard_model::{self as model, Event, FinishReason, TokenLogprob, TopLogprob, Usage};
use tokio::sync::mpsc as async_mpsc;

use crate::constraint::{Constraint, Grammars};
use crate::fairness::{Pending, PrefillPolicy, PromptPlan};
use crate::gguf::GgufFile;
use crate::kv::KvCache;
use crate::prefix::PrefixCache;
use crate::queue::{JobQueue, Permits, Refused, Waiting};
use crate::sampler::{Sampled, Sampler};
use crate::template::ChatTemplate;
use crate::text::{Pushed, TextAssembler};
use crate::tokenizer::Tokenizer;
use crate::tools::{CallGuard, OutputParser, Parsed};
use crate::transformer::{BatchToken, KvCaches, Scratch, Transformer};
use crate::EngineError;

/// Tunables of one engine instance.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Compute threads (0 = all available cores).
    pub threads: usize,
    /// Requests waiting for admission before new ones get `Overloaded`.
    pub queue_capacity: usize,
    /// Sequences (choices) decoded together at most.
    pub max_sequences: usize,
    /// Tokens processed per step at most (decode tokens plus prompt chunks).
    pub step_tokens: usize,
    /// Context window to serve; 0 = the model's trained context length.
    pub context_window: usize,
    /// Positions of finished sequences kept for prefix reuse (0 disables the prefix cache).
    pub prefix_cache_tokens: usize,
    /// Whether logs may quote prompt or generated text (off: logs never carry content).
    pub log_content: bool,
    /// Bytes of KV cache that running requests may reserve together (each reserves its
    /// choices' whole length at admission); 0 = half the memory available at start.
    pub kv_cache_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            queue_capacity: 64,
            max_sequences: 32,
            step_tokens: 256,
            context_window: 0,
            prefix_cache_tokens: 8192,
            log_content: false,
            kv_cache_bytes: 0,
        }
    }
}

/// Facts about the loaded model that the catalog advertises.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: String,
    pub context_window: usize,
    pub vocab_size: usize,
    /// The KV-cache budget running requests share, in bytes.
    pub kv_cache_bytes: usize,
}

/// Events of one submitted request. Dropping it cancels the generation.
pub struct Generation {
    pub prompt_tokens: usize,
    events: async_mpsc::Receiver<Event>,
    completed: bool,
}

impl Generation {
    /// The next event, or `None` once the generation has ended.
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        self.completed |= matches!(event, Some(Event::Usage(_)));
        event
    }

    /// Whether the generation completed: its usage, always the last event, arrived. Events
    /// that end without it broke off.
    #[must_use]
    pub fn completed(&self) -> bool {
        self.completed
    }
}

/// A cheap-to-clone handle to a running engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    info: ModelInfo,
    active: Arc<AtomicUsize>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    grammars: Grammars,
    queue: Arc<JobQueue<Job>>,
    /// Bounds the prompts tokenized at once (one per compute thread).
    tokenizing: Permits,
    /// The longest text one token covers, for the cheap lower bound on a prompt's length.
    max_token_bytes: usize,
    /// KV-cache bytes one position of one sequence takes.
    kv_bytes_per_position: usize,
    /// Whether logs may quote request or generated text.
    log_content: bool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.queue.close();
    }
}

struct Job {
    /// KV-cache bytes this request reserves while running (every choice's whole length).
    kv_bytes: usize,
    prompt: Vec<u32>,
    sampling: model::Sampling,
    max_new_tokens: usize,
    events: async_mpsc::Sender<Event>,
    /// The grammar every choice's output must follow, compiled at submission.
    constraint: Option<Constraint>,
    /// Turns each choice's text into text, reasoning and tool-call events.
    parser: OutputParser,
}

impl Waiting for Job {
    fn abandoned(&self) -> bool {
        self.events.is_closed()
    }
}

const EVENT_CHANNEL: usize = 128;
/// Events a slow reader may leave unread before its choices pause decoding.
const OUTBOX_PAUSE: usize = 64;

impl Engine {
    /// Loads a GGUF model and starts the scheduler thread.
    ///
    /// # Errors
    /// When the file cannot be read or describes a model this engine cannot run.
    pub fn load(path: &Path, name: &str, config: &EngineConfig) -> Result<Self, EngineError> {
        let file = GgufFile::open(path)?;
        let transformer = Transformer::load(&file)?;
        let tokenizer = Arc::new(Tokenizer::from_gguf(&file)?);
        let template = ChatTemplate::from_gguf(&file, &tokenizer)?;
        let grammars = Grammars::new(&tokenizer)?;
        let trained = transformer.hyper.context_length;
        let context_window = match config.context_window {
            0 => trained,
            n => n.min(trained),
        };
        let kv_cache_bytes = match config.kv_cache_bytes {
            0 => default_kv_budget(),
            n => n,
        };
        let h = &transformer.hyper;
        // Keys and values, half precision, every layer.
        let kv_bytes_per_position = h.layers * h.kv_dim() * 2 * 2;
        tracing::info!(
            kv_cache_mib = kv_cache_bytes >> 20,
            positions = kv_cache_bytes / kv_bytes_per_position.max(1),
            "KV-cache budget"
        );
        let info = ModelInfo {
            architecture: transformer.hyper.architecture.clone(),
            name: name.to_owned(),
            context_window,
            vocab_size: transformer.hyper.vocab,
            kv_cache_bytes,
        };
        let threads = match config.threads {
            0 => thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("engine-compute-{i}"))
            .build()
            .map_err(|e| EngineError::Load(format!("cannot start compute threads: {e}")))?;
        let queue = Arc::new(JobQueue::new(config.queue_capacity));
        let active = Arc::new(AtomicUsize::new(0));
        let max_token_bytes = tokenizer.max_token_bytes();
        let scheduler = Scheduler {
            kv_budget: kv_cache_bytes,
            kv_reserved: 0,
            active: Arc::clone(&active),
            model: transformer,
            tokenizer: Arc::clone(&tokenizer),
            queue: Arc::clone(&queue),
            running: Vec::new(),
            max_sequences: config.max_sequences.max(1),
            step_tokens: config.step_tokens.max(1),
            context_window,
            scratch: Scratch::default(),
            logits: Vec::new(),
            choice_logits: Vec::new(),
            prefixes: PrefixCache::new(config.prefix_cache_tokens),
            batch: Vec::new(),
            rows: Vec::new(),
            seqs: Vec::new(),
            policy: PrefillPolicy::default(),
            pending: Vec::new(),
            plan: PromptPlan::default(),
            log_content: config.log_content,
        };
        thread::Builder::new()
            .name("engine-scheduler".into())
            .spawn(move || pool.install(move || scheduler.run()))
            .map_err(|e| EngineError::Load(format!("cannot start the scheduler: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                info,
                active,
                tokenizer,
                template,
                grammars,
                queue,
                tokenizing: Permits::new(threads),
                max_token_bytes,
                kv_bytes_per_position,
                log_content: config.log_content,
            }),
        })
    }

    #[must_use]
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// The bytes a token id stands for (empty for ids outside the vocabulary).
    #[must_use]
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if id as usize >= self.shared.info.vocab_size {
            return Vec::new();
        }
        self.shared.tokenizer.token_bytes(id).to_vec()
    }

    /// Requests currently admitted by the scheduler (prefilling or decoding): the batch.
    #[must_use]
    pub fn running_requests(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Requests queued for the scheduler, not yet admitted.
    #[must_use]
    pub fn queued_requests(&self) -> usize {
        self.shared.queue.len()
    }

    /// Renders the prompt exactly as the model will see it, as token ids.
    ///
    /// # Errors
    /// When the conversation cannot be rendered by the model's template.
    pub fn prompt_tokens(&self, request: &model::Request) -> Result<Vec<u32>, model::Error> {
        // Nothing exceeds an unlimited budget, so the inner result is always `Ok`.
        self.prompt_tokens_within(request, usize::MAX)
            .map(Result::unwrap_or_default)
    }

    /// [`Self::prompt_tokens`], giving up once the prompt needs more than `limit` tokens
    /// (the inner `Err` holds the count reached).
    fn prompt_tokens_within(
        &self,
        request: &model::Request,
        limit: usize,
    ) -> Result<Result<Vec<u32>, usize>, model::Error> {
        let rendered = self.shared.template.render_with_tools(
            &request.items,
            &request.tools,
            &request.tool_choice,
            true,
        )?;
        let tokenizer = &self.shared.tokenizer;
        let mut tokens = Vec::new();
        if tokenizer.add_bos() {
            tokens.extend(tokenizer.bos_id());
        }
        let budget = limit.saturating_sub(tokens.len());
        Ok(match tokenizer.encode_prompt_within(&rendered, budget) {
            Ok(encoded) => {
                tokens.extend(encoded);
                Ok(tokens)
            }
            Err(partial) => Err(tokens.len() + partial.len()),
        })
    }

    /// Checks strict schemas and compiles the request's grammar (on the caller's thread, so a
    /// slow compilation never holds up the batch). A schema no finite value satisfies, or one
    /// the grammar compiler refuses, is an error naming that schema, never our tool grammar.
    fn constraint(&self, request: &model::Request) -> Result<Option<Constraint>, model::Error> {
        if let model::OutputFormat::JsonSchema {
            name,
            schema,
            strict,
            ..
        } = &request.output_format
        {
            let schema_error = |problem: String| output_schema_error(name, &problem);
            if *strict {
                model::strict::check_strict(schema).map_err(schema_error)?;
            }
            crate::finite::check_finite(schema).map_err(schema_error)?;
        }
        let format = self.shared.template.format();
        let calls = format.calls_allowed(request);
        for (i, model::Tool::Function(tool)) in request.tools.iter().enumerate() {
            let default_schema = serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false});
            let schema = tool.parameters.as_ref().unwrap_or(&default_schema);
            let tool_error = |problem: String| tool_schema_error(i, &tool.name, &problem);
            if tool.strict {
                model::strict::check_strict(schema).map_err(tool_error)?;
            }
            if calls.iter().any(|allowed| allowed.name == tool.name) {
                crate::finite::check_finite(schema).map_err(tool_error)?;
            }
        }
        let Some(grammar) = format.grammar(request) else {
            return Ok(None);
        };
        let grammars = &self.shared.grammars;
        match grammars.compile(grammar) {
            Ok(constraint) => Ok(Some(constraint)),
            Err(problem) => Err(self.explain_grammar_error(request, &calls, &problem)),
        }
    }

    /// Finds which of the request's schemas the compiler refused, so the error names it and
    /// quotes the compiler on that schema alone, never the combined tool grammar.
    fn explain_grammar_error(
        &self,
        request: &model::Request,
        calls: &[&model::FunctionTool],
        problem: &str,
    ) -> model::Error {
        let grammars = &self.shared.grammars;
        let alone = |schema: &serde_json::Value| {
            grammars
                .compile(llguidance::api::TopLevelGrammar::from_json_schema(
                    schema.clone(),
                ))
                .err()
        };
        if let model::OutputFormat::JsonSchema { name, schema, .. } = &request.output_format {
            if let Some(problem) = alone(schema) {
                return output_schema_error(name, &problem);
            }
        }
        for (i, model::Tool::Function(tool)) in request.tools.iter().enumerate() {
            let Some(schema) = &tool.parameters else {
                continue;
            };
            if !calls.iter().any(|allowed| allowed.name == tool.name) {
                continue;
            }
            if let Some(problem) = alone(schema) {
                return tool_schema_error(i, &tool.name, &problem);
            }
        }
        // The compiler quotes the schemas, which are the client's text.
        warn_with_detail(
            self.shared.log_content,
            "the combined tool grammar did not compile although every schema does alone",
            problem,
        );
        let field = if calls.is_empty() {
            model::RequestField::OutputFormat
        } else {
            model::RequestField::Tools
        };
        model::Error::invalid_at(field, "These schemas cannot be enforced together.")
    }

    /// Validates, tokenizes and queues a request.
    ///
    /// # Errors
    /// `ContextLengthExceeded` when prompt plus output cannot fit, `InvalidRequest` for token
    /// ids outside the vocabulary, `Overloaded` when the queue is full.
    pub fn submit(&self, request: &model::Request) -> Result<Generation, model::Error> {
        let info = &self.shared.info;
        for &(token, _) in &request.sampling.logit_bias {
            if token as usize >= info.vocab_size {
                return Err(model::Error::invalid_at(
                    model::RequestField::LogitBias,
                    format!(
                        "Invalid logit bias: token id {token} is outside the vocabulary of {} tokens.",
                        info.vocab_size
                    ),
                ));
            }
        }
        let window = info.context_window;
        let requested = request.sampling.max_output_tokens.map(|n| n as usize);
        // Refuse what cannot fit before any expensive work: a text of `b` bytes needs at least
        // `b / max_token_bytes` tokens, whatever the template adds around it.
        let least = conversation_bytes(request).div_ceil(self.shared.max_token_bytes);
        if least + requested.unwrap_or(1) > window {
            return Err(context_exceeded(window, requested, least, true));
        }
        let constraint = self.constraint(request)?;
        let format = self.shared.template.format();
        let parser = format.parser(!format.calls_allowed(request).is_empty());
        let prompt = {
            let _permit = self.shared.tokenizing.acquire();
            let limit = window.saturating_sub(requested.unwrap_or(1));
            self.prompt_tokens_within(request, limit)?
                .map_err(|reached| context_exceeded(window, requested, reached, true))?
        };
        let room = window.saturating_sub(prompt.len());
        if requested.is_some_and(|n| n > room) || room == 0 {
            return Err(context_exceeded(window, requested, prompt.len(), false));
        }
        let n = request.sampling.n as usize;
        let kv_per_position = self.shared.kv_bytes_per_position.max(1);
        // Without a limit, an answer may run to the end of the window or of what the KV budget
        // holds for each of its choices, whichever comes first (then it ends with `length`).
        let budget_positions = info.kv_cache_bytes / kv_per_position / n.max(1);
        let max_new_tokens =
            requested.unwrap_or_else(|| room.min(budget_positions.saturating_sub(prompt.len())));
        let reserve = prompt.len() + max_new_tokens;
        let kv_bytes = n.saturating_mul(reserve).saturating_mul(kv_per_position);
        if kv_bytes > info.kv_cache_bytes || max_new_tokens == 0 {
            let (field, advice) = if n > 1 {
                (
                    model::RequestField::Choices,
                    "Ask for fewer choices or shorten the prompt or the output token limit.",
                )
            } else {
                (
                    model::RequestField::Conversation,
                    "Shorten the prompt or the output token limit.",
                )
            };
            return Err(model::Error::invalid_at(
                field,
                format!(
                    "This request needs {} MiB of KV cache ({n} choice(s) of {} prompt tokens \
                     and at least {} more each), more than this server's {} MiB for all \
                     running requests. {advice}",
                    n.saturating_mul(prompt.len() + max_new_tokens.max(1))
                        .saturating_mul(kv_per_position)
                        .div_ceil(1 << 20),
                    prompt.len(),
                    max_new_tokens.max(1),
                    info.kv_cache_bytes >> 20,
                ),
            )
            .with_code("kv_cache_budget_exceeded"));
        }
        let (events, receiver) = async_mpsc::channel(EVENT_CHANNEL);
        let prompt_tokens = prompt.len();
        let job = Job {
            kv_bytes,
            prompt,
            sampling: request.sampling.clone(),
            max_new_tokens,
            events,
            constraint,
            parser,
        };
        match self.shared.queue.push(job) {
            Ok(()) => Ok(Generation {
                prompt_tokens,
                events: receiver,
                completed: false,
            }),
            Err(Refused::Full(_)) => Err(model::Error::new(
                model::ErrorKind::Overloaded,
                "The engine is at capacity; retry shortly.",
            )),
            Err(Refused::Closed(_)) => {
                Err(model::Error::internal("the engine scheduler has stopped"))
            }
        }
    }
}

/// A warning whose detail may quote a client's or the model's text: the detail goes to the
/// log only with `log_content`.
fn warn_with_detail(log_content: bool, what: &str, detail: &str) {
    if log_content {
        tracing::warn!(detail, "{what}");
    } else {
        tracing::warn!("{what} (detail withheld: it may quote content; set log_content)");
    }
}

/// A structured-output schema the engine cannot serve.
fn output_schema_error(name: &str, problem: &str) -> model::Error {
    model::Error::invalid_at(
        model::RequestField::OutputFormat,
        format!("Invalid JSON schema '{name}': {problem}"),
    )
    .with_code("invalid_json_schema")
}

/// A tool's parameters schema the engine cannot serve.
fn tool_schema_error(index: usize, name: &str, problem: &str) -> model::Error {
    model::Error::invalid_at(
        model::RequestField::ToolParameters(index),
        format!("Invalid schema for function '{name}': {problem}"),
    )
    .with_code("invalid_function_parameters")
}

/// The bytes of conversation text the template will render (reasoning is left out: some
/// templates drop it), for a lower bound on the prompt's length in tokens.
fn conversation_bytes(request: &model::Request) -> usize {
    request
        .items
        .iter()
        .map(|item| match item {
            model::Item::Message { parts, .. } => parts
                .iter()
                .map(|part| match part {
                    model::ContentPart::Text(text) | model::ContentPart::Refusal(text) => {
                        text.len()
                    }
                    _ => 0,
                })
                .sum(),
            model::Item::FunctionCall {
                name, arguments, ..
            } => name.len() + arguments.len(),
            model::Item::FunctionOutput { output, .. } => output.len(),
            model::Item::Reasoning { .. } => 0,
        })
        .sum()
}

/// OpenAI's context-length error. `at_least` when `prompt` is a lower bound (the prompt was
/// refused before it was fully tokenized).
fn context_exceeded(
    window: usize,
    requested: Option<usize>,
    prompt: usize,
    at_least: bool,
) -> model::Error {
    let prompt_text = if at_least {
        format!("at least {prompt}")
    } else {
        prompt.to_string()
    };
    let message = match requested {
        Some(n) => format!(
            "This model's maximum context length is {window} tokens. However, you requested {} \
             tokens ({prompt_text} in the messages, {n} in the completion). Please reduce the \
             length of the messages or completion.",
            if at_least {
                format!("at least {}", prompt + n)
            } else {
                (prompt + n).to_string()
            }
        ),
        None => format!(
            "This model's maximum context length is {window} tokens. However, your messages \
             resulted in {prompt_text} tokens. Please reduce the length of the messages."
        ),
    };
    model::Error::new(model::ErrorKind::ContextLengthExceeded, message)
        .with_field(model::RequestField::Conversation)
        .with_code("context_length_exceeded")
}

/// Half the memory available when the engine starts (4 GiB where that cannot be read).
fn default_kv_budget() -> usize {
    let available_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
        });
    available_kib.map_or(4 << 30, |kib| kib.saturating_mul(1024) / 2)
}

struct Choice {
    index: u32,
    cache: KvCache,
    sampler: Sampler,
    constraint: Option<Constraint>,
    parser: OutputParser,
    calls: CallGuard,
    text: TextAssembler,
    last_token: u32,
    /// Every sampled token, in order; all but the last are in `cache`.
    tokens: Vec<u32>,
    generated: usize,
    finished: bool,
}

struct Running {
    job: Job,
    /// Prompt tokens already in `prompt_cache`; equals the prompt length once prefilled.
    prefilled: usize,
    prompt_cache: Option<KvCache>,
    choices: Vec<Choice>,
    outbox: VecDeque<Event>,
    completion_tokens: usize,
    /// Tokens whose text was reasoning (`<think>`), counted as OpenAI counts reasoning tokens:
    /// part of `completion_tokens`.
    reasoning_tokens: usize,
    /// Prompt positions copied from the prefix cache instead of computed.
    cached_tokens: usize,
    cancelled: bool,
    /// Generation broke off (a constrained decode reached a dead end): the request ends
    /// without usage, which surfaces report as an error.
    failed: bool,
}

impl Running {
    fn sequences(&self) -> usize {
        self.job.sampling.n as usize
    }

    fn done(&self) -> bool {
        self.cancelled
            || self.failed
            || (!self.choices.is_empty() && self.choices.iter().all(|c| c.finished))
    }
}

/// Which cache a batch row belongs to.
#[derive(Clone, Copy)]
enum Slot {
    Prompt { job: usize },
    Choice { job: usize, choice: usize },
}

/// The running sequences' caches as the forward pass addresses them.
struct RunningCaches<'a> {
    running: &'a mut [Running],
    seqs: &'a [Slot],
}

impl KvCaches for RunningCaches<'_> {
    fn cache(&self, seq: usize) -> &KvCache {
        match self.seqs[seq] {
            Slot::Prompt { job } => match &self.running[job].prompt_cache {
                Some(cache) => cache,
                None => {
                    unreachable!("a prompt row is scheduled only while its prompt cache exists")
                }
            },
            Slot::Choice { job, choice } => &self.running[job].choices[choice].cache,
        }
    }

    fn cache_mut(&mut self, seq: usize) -> &mut KvCache {
        match self.seqs[seq] {
            Slot::Prompt { job } => match &mut self.running[job].prompt_cache {
                Some(cache) => cache,
                None => {
                    unreachable!("a prompt row is scheduled only while its prompt cache exists")
                }
            },
            Slot::Choice { job, choice } => &mut self.running[job].choices[choice].cache,
        }
    }
}

struct Scheduler {
    /// KV-cache bytes running requests may reserve together, and how many they do.
    kv_budget: usize,
    kv_reserved: usize,
    active: Arc<AtomicUsize>,
    model: Transformer,
    tokenizer: Arc<Tokenizer>,
    queue: Arc<JobQueue<Job>>,
    running: Vec<Running>,
    max_sequences: usize,
    step_tokens: usize,
    context_window: usize,
    scratch: Scratch,
    logits: Vec<f32>,
    choice_logits: Vec<f32>,
    prefixes: PrefixCache,
    batch: Vec<BatchToken>,
    rows: Vec<Slot>,
    seqs: Vec<Slot>,
    /// Fairness between decodes and prefills, and its reused lists.
    policy: PrefillPolicy,
    pending: Vec<Pending>,
    plan: PromptPlan,
    log_content: bool,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            if self.running.is_empty() {
                // Nothing runs, so the whole budget is free: any queued request fits (submit
                // refuses one that could never fit).
                match self.queue.pop_if(Some(Duration::from_secs(1)), |_| true) {
                    Ok(Some(job)) => self.admit(job),
                    Ok(None) => continue,
                    Err(()) => return,
                }
            }
            self.admit_waiting();
            self.flush_and_reap();
            if !self.step() {
                // Every running request is waiting for its reader; do not spin.
                thread::sleep(Duration::from_millis(1));
            }
            self.flush_and_reap();
        }
    }

    fn active_sequences(&self) -> usize {
        self.running.iter().map(Running::sequences).sum()
    }

    /// Admits queued requests in arrival order while sequences and KV budget allow; a head
    /// that does not fit waits (nothing overtakes it) until running requests finish.
    fn admit_waiting(&mut self) {
        while self.active_sequences() < self.max_sequences {
            let free = self.kv_budget.saturating_sub(self.kv_reserved);
            match self.queue.pop_if(None, |job| job.kv_bytes <= free) {
                Ok(Some(job)) => self.admit(job),
                Ok(None) | Err(()) => return,
            }
        }
    }

    fn admit(&mut self, job: Job) {
        self.kv_reserved += job.kv_bytes;
        let h = &self.model.hyper;
        // The whole sequence is reserved at admission, so decoding never reallocates the cache.
        // Reserved pages stay virtual until written; memory grows only with tokens produced.
        let reserve = (job.prompt.len() + job.max_new_tokens).min(self.context_window);
        let (cached_tokens, cache) = self
            .prefixes
            .lookup(&job.prompt, reserve)
            .unwrap_or_else(|| (0, KvCache::new(h.layers, h.kv_dim(), h.head_dim, reserve)));
        tracing::debug!(
            prompt_tokens = job.prompt.len(),
            cached_tokens,
            max_new_tokens = job.max_new_tokens,
            constrained = job.constraint.is_some(),
            "request admitted"
        );
        self.running.push(Running {
            prompt_cache: Some(cache),
            job,
            prefilled: cached_tokens,
            choices: Vec::new(),
            outbox: VecDeque::new(),
            completion_tokens: 0,
            reasoning_tokens: 0,
            cached_tokens,
            cancelled: false,
            failed: false,
        });
    }

    /// Sends what each reader can take, and drops finished or abandoned requests.
    fn flush_and_reap(&mut self) {
        for running in &mut self.running {
            while let Some(event) = running.outbox.pop_front() {
                match running.job.events.try_send(event) {
                    Ok(()) => {}
                    Err(async_mpsc::error::TrySendError::Full(event)) => {
                        running.outbox.push_front(event);
                        break;
                    }
                    Err(async_mpsc::error::TrySendError::Closed(_)) => {
                        running.cancelled = true;
                        break;
                    }
                }
            }
            if running.job.events.is_closed() {
                running.cancelled = true;
            }
        }
        let gone = |r: &Running| r.cancelled || (r.done() && r.outbox.is_empty());
        if self.running.iter().any(gone) {
            let (gone, kept): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
                .into_iter()
                .partition(gone);
            self.running = kept;
            for running in gone {
                self.kv_reserved = self.kv_reserved.saturating_sub(running.job.kv_bytes);
                self.keep_prefix(running);
            }
        }
        self.active.store(self.running.len(), Ordering::Relaxed);
    }

    /// Offers the first choice's cache (prompt plus what it generated) to the prefix cache.
    fn keep_prefix(&mut self, running: Running) {
        let Some(choice) = running.choices.into_iter().next() else {
            return;
        };
        let mut tokens = running.job.prompt;
        tokens.extend(&choice.tokens);
        self.prefixes.insert(tokens, choice.cache);
    }

    /// One batched forward pass; returns false when there was nothing to compute.
    fn step(&mut self) -> bool {
        // The step's lists live in the scheduler and are reused, so a step does not allocate.
        let mut batch = std::mem::take(&mut self.batch);
        let mut rows = std::mem::take(&mut self.rows);
        let mut seqs = std::mem::take(&mut self.seqs);
        batch.clear();
        rows.clear();
        seqs.clear();
        let mut budget = self.step_tokens;
        for (j, running) in self.running.iter().enumerate() {
            if running.prefilled < running.job.prompt.len()
                || running.outbox.len() >= OUTBOX_PAUSE
                || running.done()
            {
                continue;
            }
            for (c, choice) in running.choices.iter().enumerate() {
                if !choice.finished {
                    let slot = Slot::Choice { job: j, choice: c };
                    batch.push(BatchToken {
                        token: choice.last_token,
                        seq: seqs.len(),
                        pos: choice.cache.len(),
                        logits: true,
                    });
                    seqs.push(slot);
                    rows.push(slot);
                    budget = budget.saturating_sub(1);
                }
            }
        }
        let decoding = !batch.is_empty();
        self.pending.clear();
        for (j, running) in self.running.iter().enumerate() {
            let remaining = running.job.prompt.len() - running.prefilled;
            if remaining > 0 && !running.cancelled {
                self.pending.push(Pending { job: j, remaining });
            }
        }
        self.policy
            .plan(&mut self.pending, budget, decoding, &mut self.plan);
        for &(j, take) in &self.plan.takes {
            let running = &self.running[j];
            let slot = Slot::Prompt { job: j };
            for offset in 0..take {
                let pos = running.prefilled + offset;
                rows.push(slot);
                batch.push(BatchToken {
                    token: running.job.prompt[pos],
                    seq: seqs.len(),
                    pos,
                    logits: pos + 1 == running.job.prompt.len(),
                });
            }
            seqs.push(slot);
        }
        let worked = !batch.is_empty();
        if worked {
            let started = Instant::now();
            self.run_batch(&batch, &rows, &seqs);
            self.policy
                .record(started.elapsed(), self.plan.partial, decoding);
        }
        self.batch = batch;
        self.rows = rows;
        self.seqs = seqs;
        worked
    }

    /// `rows[i]` is the cache batch row `i` belongs to; `seqs[k]` the cache behind `seq == k`.
    fn run_batch(&mut self, batch: &[BatchToken], rows: &[Slot], seqs: &[Slot]) {
        let mut caches = RunningCaches {
            running: &mut self.running,
            seqs,
        };
        self.model
            .forward(batch, &mut caches, &mut self.scratch, &mut self.logits);

        let vocab = self.model.hyper.vocab;
        let mut logits = std::mem::take(&mut self.logits);
        let mut row_logits = logits.chunks_exact_mut(vocab.max(1));
        for (row, slot) in rows.iter().enumerate() {
            if !batch[row].logits {
                if let Slot::Prompt { job } = *slot {
                    self.running[job].prefilled += 1;
                }
                continue;
            }
            let Some(row) = row_logits.next() else { break };
            match *slot {
                Slot::Prompt { job } => {
                    self.running[job].prefilled += 1;
                    self.start_choices(job, row);
                }
                Slot::Choice { job, choice } => self.advance(job, choice, row),
            }
        }
        self.logits = logits;
    }

    /// The prompt is in the cache: fork it into `n` choices and sample their first tokens.
    fn start_choices(&mut self, job: usize, logits: &mut [f32]) {
        let running = &mut self.running[job];
        let Some(prompt_cache) = running.prompt_cache.take() else {
            return;
        };
        let n = running.sequences();
        let reserve =
            (running.job.prompt.len() + running.job.max_new_tokens).min(self.context_window);
        let mut caches: Vec<KvCache> = (1..n).map(|_| prompt_cache.fork(reserve)).collect();
        caches.push(prompt_cache);
        for (index, cache) in caches.into_iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            let index = index as u32;
            running.choices.push(Choice {
                index,
                cache,
                sampler: Sampler::new(&running.job.sampling, index),
                constraint: running.job.constraint.clone(),
                parser: running.job.parser.clone(),
                calls: CallGuard::default(),
                text: TextAssembler::new(&running.job.sampling.stop),
                last_token: 0,
                tokens: Vec::new(),
                generated: 0,
                finished: false,
            });
        }
        // Sampling edits logits in place (bias, penalties), so every choice but the last
        // samples from a copy.
        let mut copy = std::mem::take(&mut self.choice_logits);
        for choice in 0..n {
            if choice + 1 < n {
                copy.clear();
                copy.extend_from_slice(logits);
                self.advance(job, choice, &mut copy);
            } else {
                self.advance(job, choice, logits);
            }
        }
        self.choice_logits = copy;
    }

    /// Samples the next token of one choice from its logits and emits what it produced.
    fn advance(&mut self, job: usize, choice_index: usize, logits: &mut [f32]) {
        let context_window = self.context_window;
        let running = &mut self.running[job];
        if running.failed {
            return;
        }
        let max_new = running.job.max_new_tokens;
        let prompt_len = running.job.prompt.len();
        let choice = &mut running.choices[choice_index];
        let remaining = max_new
            .min(context_window.saturating_sub(prompt_len))
            .saturating_sub(choice.generated);
        let mut grammar_problem = None;
        if let Some(constraint) = choice.constraint.as_mut() {
            if let Err(problem) = constraint.apply(logits, remaining) {
                grammar_problem = Some(problem);
            }
        }
        let sampled = choice.sampler.sample(logits);
        if let Some(constraint) = choice.constraint.as_mut() {
            let bytes = self.tokenizer.token_bytes(sampled.token);
            if let Err(problem) = constraint.commit(sampled.token, bytes) {
                grammar_problem.get_or_insert(problem);
            }
        }
        if let Some(problem) = grammar_problem {
            // Output that cannot be completed must never be reported as a success: the request
            // fails (its stream ends without usage, which every surface reports as an error).
            // The compiler's message quotes generated tokens, so it is logged only on request.
            warn_with_detail(
                self.log_content,
                "constrained decoding reached a dead end; request failed",
                &problem,
            );
            running.failed = true;
            return;
        }
        choice.generated += 1;
        running.completion_tokens += 1;
        choice.last_token = sampled.token;
        choice.tokens.push(sampled.token);
        let index = choice.index;
        let mut parsed = Vec::new();
        let mut logprobs = Vec::new();
        let mut stop_sequence = None;
        let finish = if self.tokenizer.is_end_of_generation(sampled.token) {
            let tail = choice.text.finish();
            choice.parser.push(&tail, &mut parsed);
            choice.parser.finish(&mut parsed);
            Some(FinishReason::Stop)
        } else {
            logprobs = logprob_entries(&self.tokenizer, &sampled);
            match choice.text.push(self.tokenizer.token_bytes(sampled.token)) {
                Pushed::Stopped { text, stop } => {
                    stop_sequence = Some(stop);
                    choice.parser.push(&text, &mut parsed);
                    choice.parser.finish(&mut parsed);
                    Some(FinishReason::Stop)
                }
                Pushed::Text(text) => {
                    let out_of_room = choice.generated >= max_new
                        || prompt_len + choice.generated >= context_window;
                    choice.parser.push(&text, &mut parsed);
                    if out_of_room {
                        let tail = choice.text.finish();
                        choice.parser.push(&tail, &mut parsed);
                        choice.parser.finish(&mut parsed);
                    }
                    out_of_room.then_some(FinishReason::Length)
                }
            }
        };
        // An exact repeat of an earlier call ends the turn; it is never sent.
        let repeated = choice.calls.filter(&mut parsed)
            || (finish.is_some() && choice.calls.finish(&mut parsed));
        let finish = if repeated {
            stop_sequence = None;
            Some(FinishReason::Stop)
        } else {
            finish
        };
        // A token counts as reasoning when what it released was reasoning text only (text held
        // back for stop strings is released with a later token, so this is exact per token
        // except where the two kinds meet).
        let only_reasoning = !parsed.is_empty()
            && parsed
                .iter()
                .all(|piece| matches!(piece, Parsed::Reasoning(_)));
        if only_reasoning {
            running.reasoning_tokens += 1;
        }
        let events = &mut running.outbox;
        let calls = choice.parser.calls();
        for piece in parsed {
            match piece {
                Parsed::Text(text) => {
                    events.push_back(text_event(index, text, std::mem::take(&mut logprobs)));
                }
                Parsed::Reasoning(text) => events.push_back(Event::ReasoningDelta {
                    choice: index,
                    text,
                }),
                Parsed::CallStart {
                    index: call,
                    id,
                    name,
                } => events.push_back(Event::ToolCallStart {
                    choice: index,
                    index: call,
                    id,
                    name,
                }),
                Parsed::CallArguments {
                    index: call,
                    fragment,
                } => events.push_back(Event::ToolCallArguments {
                    choice: index,
                    index: call,
                    fragment,
                }),
            }
        }
        // Logprobs of a token whose text is held back (a possible stop string or call marker)
        // still go out now, on an empty delta; tokens of tool calls carry none, as OpenAI's.
        if !logprobs.is_empty() && calls == 0 {
            events.push_back(text_event(index, String::new(), logprobs));
        }
        if let Some(reason) = finish {
            let reason = match reason {
                FinishReason::Stop if calls > 0 => FinishReason::ToolCalls,
                other => other,
            };
            choice.finished = true;
            if reason != FinishReason::Stop {
                stop_sequence = None;
            }
            events.push_back(Event::Finished {
                choice: index,
                reason,
                stop_sequence,
            });
        }
        if running.done() && !running.cancelled && !running.failed {
            tracing::debug!(
                prompt_tokens = prompt_len,
                completion_tokens = running.completion_tokens,
                "request finished"
            );
            #[allow(clippy::cast_possible_truncation)]
            running.outbox.push_back(Event::Usage(Usage {
                prompt_tokens: prompt_len as u32,
                completion_tokens: running.completion_tokens as u32,
                cached_tokens: running.cached_tokens as u32,
                cache_write_tokens: 0,
                web_search_requests: 0,
                reasoning_tokens: running.reasoning_tokens as u32,
            }));
        }
    }
}

fn text_event(choice: u32, text: String, logprobs: Vec<TokenLogprob>) -> Event {
    Event::TextDelta {
        choice,
        text,
        logprobs,
    }
}

fn logprob_entries(tokenizer: &Tokenizer, sampled: &Sampled) -> Vec<TokenLogprob> {
    let Some(logprob) = sampled.logprob else {
        return Vec::new();
    };
    let describe = |token: u32| {
        let bytes = tokenizer.token_bytes(token).to_vec();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (token, bytes) = describe(sampled.token);
    let top = sampled
        .top
        .iter()
        .map(|&(id, logprob)| {
            let (token, bytes) = describe(id);
            TopLogprob {
                token,
                bytes,
                logprob,
            }
        })
        .collect();
    vec![TokenLogprob {
        token,
        bytes,
        logprob,
        top,
    }]
}
