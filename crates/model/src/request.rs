//! The canonical request: a conversation of [`Item`]s plus what the caller wants done with it.
//! Surface-specific transport options (streaming, usage-in-stream) stay in the surface.

use serde_json::Value;

/// One generation request, after a surface decoded and validated it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Catalog id the caller asked for.
    pub model: String,
    /// The conversation, oldest first.
    pub items: Vec<Item>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub output_format: OutputFormat,
    pub sampling: Sampling,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// An exact thinking budget in tokens, when the client gave one (Anthropic's
    /// `thinking.budget_tokens`); providers with budgets use it instead of the effort's.
    pub reasoning_budget: Option<u32>,
    pub web_search: Option<WebSearch>,
    /// Non-text output modalities requested (e.g. `audio`); empty means text only.
    pub extra_output_modalities: Vec<String>,
    /// End-user id for abuse tracking; never influences generation.
    pub user: Option<String>,
    pub metadata: Option<Value>,
    /// Prompt-cache breakpoints the client placed (Anthropic's `cache_control`); honoured by
    /// providers with explicit caching, ignored by the rest.
    pub cache_marks: Vec<CacheMark>,
    /// Beta features the client asked an Anthropic upstream for (`anthropic-beta`).
    pub anthropic_beta: Vec<String>,
    /// The client's processing tier (`auto`, `standard_only`, `default`, `flex`, `priority`),
    /// passed to providers that have tiers.
    pub service_tier: Option<String>,
    /// The id this request is traced by (the client's `x-request-id`, or one we made); sent to
    /// upstream providers so one request can be followed across services.
    pub request_id: Option<String>,
}

impl Request {
    /// A plain text request with default sampling; handy for tests and internal callers.
    #[must_use]
    pub fn text(model: impl Into<String>, items: Vec<Item>) -> Self {
        Self {
            model: model.into(),
            items,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            output_format: OutputFormat::Text,
            sampling: Sampling::default(),
            reasoning_effort: None,
            reasoning_budget: None,
            web_search: None,
            extra_output_modalities: Vec::new(),
            user: None,
            metadata: None,
            cache_marks: Vec::new(),
            anthropic_beta: Vec::new(),
            service_tier: None,
            request_id: None,
        }
    }

    /// Capabilities a model must have to serve this request exactly as asked, each with the
    /// request field that needs it (each surface names fields its own way).
    #[must_use]
    pub fn required_capabilities(&self) -> Vec<(Capability, RequestField)> {
        let mut needed = Vec::new();
        if !self.tools.is_empty() {
            needed.push((Capability::Tools, RequestField::Tools));
        }
        if self.items.iter().any(|item| {
            matches!(
                item,
                Item::FunctionCall { .. } | Item::FunctionOutput { .. }
            )
        }) {
            needed.push((Capability::Tools, RequestField::Conversation));
        }
        match self.output_format {
            OutputFormat::Text => {}
            OutputFormat::JsonObject => {
                needed.push((Capability::JsonObject, RequestField::OutputFormat));
            }
            OutputFormat::JsonSchema { .. } => {
                needed.push((Capability::JsonSchema, RequestField::OutputFormat));
            }
        }
        if self.reasoning_effort.is_some() {
            needed.push((Capability::Reasoning, RequestField::ReasoningEffort));
        }
        if self.web_search.is_some() {
            needed.push((Capability::WebSearch, RequestField::WebSearch));
        }
        if !self.extra_output_modalities.is_empty() {
            needed.push((Capability::AudioOutput, RequestField::OutputModalities));
        }
        for item in &self.items {
            if let Item::Message { parts, .. } = item {
                for part in parts {
                    let capability = match part {
                        ContentPart::Text(_) | ContentPart::Refusal(_) => continue,
                        ContentPart::Image { .. } => Capability::Vision,
                        ContentPart::Audio { .. } => Capability::AudioInput,
                        ContentPart::File { .. } => Capability::Files,
                    };
                    needed.push((capability, RequestField::Conversation));
                }
            }
        }
        needed
    }
}

/// A prompt-cache breakpoint: everything up to and including `target` may be cached.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheMark {
    pub target: CacheTarget,
    /// The client's `cache_control` object (`{"type": "ephemeral", "ttl": "1h"}`), kept whole.
    pub control: Value,
}

/// What a [`CacheMark`] is placed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTarget {
    /// A content part: the item's index in `Request::items`, the part's in its message.
    Part { item: usize, part: usize },
    /// A whole item that has no parts (a tool call, a tool result, a reasoning block).
    Item(usize),
    /// The tool at this index of `Request::tools`.
    Tool(usize),
}

impl Request {
    /// The `cache_control` placed on `target`, if any.
    #[must_use]
    pub fn cache_control(&self, target: CacheTarget) -> Option<&Value> {
        self.cache_marks
            .iter()
            .find(|mark| mark.target == target)
            .map(|mark| &mark.control)
    }
}

/// Where in a request something is, in canonical terms: what a capability is needed for, and
/// where an error below the surfaces was found. Surfaces map these to their own parameter
/// names (`messages` or `input`, `response_format` or `text.format`, `tools[3].function.parameters`
/// or `tools[3].parameters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestField {
    Tools,
    /// The parameters schema of the tool at this index of `Request::tools`.
    ToolParameters(usize),
    /// The conversation's items (content parts, tool calls and results).
    Conversation,
    OutputFormat,
    ReasoningEffort,
    WebSearch,
    OutputModalities,
    /// The number of choices (`n`).
    Choices,
    LogitBias,
    /// Whether log probabilities are asked for.
    Logprobs,
    /// The stop sequences.
    StopSequences,
}

/// What a model can do; the catalog advertises these and the gateway checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Tools,
    JsonObject,
    JsonSchema,
    Vision,
    AudioInput,
    AudioOutput,
    Files,
    Reasoning,
    WebSearch,
}

impl Capability {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::JsonObject => "json_object",
            Self::JsonSchema => "json_schema",
            Self::Vision => "vision",
            Self::AudioInput => "audio_input",
            Self::AudioOutput => "audio_output",
            Self::Files => "files",
            Self::Reasoning => "reasoning",
            Self::WebSearch => "web_search",
        }
    }

    /// Every capability, in the catalog's order.
    pub const ALL: [Self; 9] = [
        Self::Tools,
        Self::JsonObject,
        Self::JsonSchema,
        Self::Vision,
        Self::AudioInput,
        Self::AudioOutput,
        Self::Files,
        Self::Reasoning,
        Self::WebSearch,
    ];

    /// The capability a catalog name (`tools`, `vision`…) stands for.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|capability| capability.as_str() == name)
    }
}

/// Who authored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One entry of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Message {
        role: Role,
        parts: Vec<ContentPart>,
        /// Optional participant name.
        name: Option<String>,
    },
    /// A tool call the assistant made.
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
        /// An opaque value the provider attached to the call (Gemini's `thoughtSignature`),
        /// owed back to it with the conversation.
        signature: Option<Sealed>,
    },
    /// The result of a tool call, fed back by the client. `is_error` says the tool failed
    /// (Anthropic's `tool_result.is_error`); providers with a way to say so are told.
    FunctionOutput {
        call_id: String,
        output: String,
        is_error: bool,
    },
    /// A reasoning block the model produced earlier: readable text and/or a summary, and the
    /// provider's opaque proof of it. Providers that check reasoning continuity (Anthropic
    /// thinking, Gemini thought signatures, OpenAI encrypted reasoning) need it back unchanged.
    Reasoning {
        /// The id the surface showed (`rs_…`), when there was one.
        id: Option<String>,
        text: String,
        summary: Vec<String>,
        /// The signature over `text` (Anthropic `thinking.signature`, Gemini's thought signature).
        signature: Option<Sealed>,
        /// Reasoning the client may not read (Anthropic `redacted_thinking.data`, OpenAI
        /// `encrypted_content`).
        encrypted: Option<Sealed>,
    },
}

/// The provider family an opaque value came from. Such values are meaningful only to the
/// family that made them: they are sent back to it and dropped on the way to any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// OpenAI and OpenAI-compatible servers.
    OpenAi,
    Anthropic,
    Gemini,
}

impl Family {
    /// The `format` tag of an OpenRouter-style `reasoning_details` entry.
    #[must_use]
    pub fn format(self) -> &'static str {
        match self {
            Self::OpenAi => "openai-responses-v1",
            Self::Anthropic => "anthropic-claude-v1",
            Self::Gemini => "google-gemini-v1",
        }
    }

    #[must_use]
    pub fn from_format(format: &str) -> Option<Self> {
        [Self::OpenAi, Self::Anthropic, Self::Gemini]
            .into_iter()
            .find(|family| family.format() == format)
    }
}

/// An opaque value tagged with the provider family that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub family: Family,
    pub value: String,
}

impl Sealed {
    #[must_use]
    pub fn new(family: Family, value: impl Into<String>) -> Self {
        Self {
            family,
            value: value.into(),
        }
    }

    /// The value, if it was made by `family`; anything else must not be sent to it.
    #[must_use]
    pub fn for_family(sealed: Option<&Self>, family: Family) -> Option<&str> {
        sealed
            .filter(|sealed| sealed.family == family)
            .map(|sealed| sealed.value.as_str())
    }
}

impl Item {
    /// A message made of a single text part.
    #[must_use]
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self::Message {
            role,
            parts: vec![ContentPart::Text(text.into())],
            name: None,
        }
    }
}

/// Where a media part's bytes are, as providers need to know it: inline (with the media type),
/// at a URL, or in the provider's file store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource<'a> {
    /// Base64 data of the given media type (from a `data:` URL or a raw payload).
    Inline {
        media_type: &'a str,
        base64: &'a str,
    },
    Url(&'a str),
    FileId(&'a str),
}

impl<'a> MediaSource<'a> {
    /// Reads a URL that may be a `data:<type>;base64,<data>` URL.
    #[must_use]
    pub fn from_url(url: &'a str) -> Self {
        if let Some(rest) = url.strip_prefix("data:") {
            if let Some((header, data)) = rest.split_once(',') {
                if let Some(media_type) = header.strip_suffix(";base64") {
                    return Self::Inline {
                        media_type,
                        base64: data,
                    };
                }
            }
        }
        Self::Url(url)
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    Refusal(String),
    Image {
        url: String,
        detail: Option<String>,
    },
    Audio {
        data: String,
        format: String,
    },
    File {
        file_id: Option<String>,
        filename: Option<String>,
        data: Option<String>,
    },
}

impl ContentPart {
    /// Where an image's or a file's bytes are; `None` for text, refusals and audio (whose
    /// data is always inline, in `format`).
    #[must_use]
    pub fn media_source(&self) -> Option<MediaSource<'_>> {
        match self {
            Self::Image { url, .. } => Some(MediaSource::from_url(url)),
            Self::File {
                file_id: Some(id), ..
            } => Some(MediaSource::FileId(id)),
            Self::File {
                data: Some(data),
                filename,
                ..
            } => Some(match MediaSource::from_url(data) {
                // Raw base64 (Chat's `file_data` may be a bare payload): typed by its name.
                MediaSource::Url(raw) if !raw.contains("://") => MediaSource::Inline {
                    media_type: media_type_of(filename.as_deref().unwrap_or_default()),
                    base64: raw,
                },
                source => source,
            }),
            _ => None,
        }
    }
}

/// The media type a file name suggests; PDF unless the extension says otherwise, because PDF
/// is what the file parts of every API are mostly for.
fn media_type_of(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "md" => "text/plain",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => "application/pdf",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function(FunctionTool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: Option<Value>,
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
        strict: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    /// OpenAI's name for the level.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebSearch {
    pub context_size: Option<String>,
    pub user_location: Option<Value>,
    /// Only results from these domains (and their subdomains); empty means any.
    pub allowed_domains: Vec<String>,
    /// Never results from these domains (and their subdomains).
    pub blocked_domains: Vec<String>,
}

/// How tokens are chosen. Ranges are validated by the surface before this is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// Sample only among the `k` likeliest tokens.
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Token id → bias in [-100, 100], added to the logit.
    pub logit_bias: Vec<(u32, f32)>,
    /// Strings that end generation; never part of the output.
    pub stop: Vec<String>,
    /// Upper bound on generated tokens; `None` means up to the context window.
    pub max_output_tokens: Option<u32>,
    /// Number of independent choices.
    pub n: u32,
    pub logprobs: bool,
    /// Alternatives reported per position when `logprobs` is on (0..=20).
    pub top_logprobs: u8,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            stop: Vec::new(),
            max_output_tokens: None,
            n: 1,
            logprobs: false,
            top_logprobs: 0,
        }
    }
}
