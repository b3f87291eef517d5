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
    pub web_search: Option<WebSearch>,
    /// Non-text output modalities requested (e.g. `audio`); empty means text only.
    pub extra_output_modalities: Vec<String>,
    /// End-user id for abuse tracking; never influences generation.
    pub user: Option<String>,
    pub metadata: Option<Value>,
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
            web_search: None,
            extra_output_modalities: Vec::new(),
            user: None,
            metadata: None,
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
    },
    /// The result of a tool call, fed back by the client.
    FunctionOutput { call_id: String, output: String },
    /// Reasoning text the model produced earlier.
    Reasoning { text: String },
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
}

/// How tokens are chosen. Ranges are validated by the surface before this is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
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
