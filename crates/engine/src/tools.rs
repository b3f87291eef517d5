//! How a model family writes tool calls and reasoning, behind one interface: [`ModelFormat`]
//! says (from the chat template) which syntax the model uses, renders tool definitions and past
//! calls into the prompt when the template cannot, builds the grammar that constrains a call,
//! and makes the streaming [`OutputParser`] that turns generated text back into text, reasoning
//! and tool-call events. Adding a family is a new [`ToolSyntax`] value and a detection rule.

use std::fmt::Write as _;

use llguidance::api::TopLevelGrammar;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use crate::model::{FunctionTool, OutputFormat, Request, Tool, ToolChoice};

/// Where a model writes a tool call and what its JSON envelope is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSyntax {
    /// Text that opens a call (empty: a call is an output that starts with `{`).
    pub open: &'static str,
    /// Text that closes a call.
    pub close: &'static str,
    /// The envelope key holding the arguments object (`name` is always `name`).
    pub arguments_key: &'static str,
}

impl ToolSyntax {
    /// Hermes / Qwen 2.5: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`. Also what
    /// Switchboard teaches models whose template has no tool support.
    pub const HERMES: Self = Self {
        open: "<tool_call>\n",
        close: "\n</tool_call>",
        arguments_key: "arguments",
    };

    /// Llama 3.x JSON tool calling: the whole reply is `{"name": …, "parameters": {…}}`.
    pub const JSON_ENVELOPE: Self = Self {
        open: "",
        close: "",
        arguments_key: "parameters",
    };

    /// The text of one call, as the model would have written it.
    #[must_use]
    pub fn render_call(&self, name: &str, arguments: &str) -> String {
        let arguments = serde_json::from_str::<Value>(arguments)
            .unwrap_or_else(|_| Value::String(arguments.to_owned()));
        let envelope = json!({ "name": name, self.arguments_key: arguments });
        format!("{}{}{}", self.open, to_spaced_json(&envelope), self.close)
    }
}

/// The tool and reasoning conventions of one model, detected from its chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFormat {
    pub tools: ToolSyntax,
    /// The template renders `tools` and assistant `tool_calls` itself.
    pub native_tools: bool,
    /// The model may open its reply with a `<think>…</think>` block.
    pub reasoning: bool,
}

impl ModelFormat {
    #[must_use]
    pub fn detect(template: &str) -> Self {
        let native_tools = template.contains("tools") || template.contains("tool_calls");
        let tools = if native_tools
            && !template.contains("<tool_call>")
            && template.contains("\"parameters\"")
        {
            ToolSyntax::JSON_ENVELOPE
        } else {
            ToolSyntax::HERMES
        };
        Self {
            tools,
            native_tools,
            reasoning: template.contains("<think>"),
        }
    }

    /// The system-prompt block that teaches a model without native tool support the tools and
    /// the call format.
    #[must_use]
    pub fn tool_prompt(&self, tools: &[Tool], choice: &ToolChoice) -> String {
        let mut text = String::from(
            "You may call functions to help answer. The available functions, as JSON signatures:\n<tools>\n",
        );
        for Tool::Function(tool) in tools {
            let _ = writeln!(text, "{}", to_spaced_json(&hf_tool(tool)["function"]));
        }
        text.push_str("</tools>\n");
        let _ = write!(
            text,
            "To call a function, reply with a JSON object naming it and giving its arguments, exactly so:\n{}",
            self.tools
                .render_call("function_name", "{\"argument\": \"value\"}")
        );
        match choice {
            ToolChoice::Required => text.push_str("\nYou must call at least one function."),
            ToolChoice::Function(name) => {
                let _ = write!(text, "\nYou must call the function `{name}`.");
            }
            ToolChoice::Auto | ToolChoice::None => {}
        }
        text
    }

    /// The grammar the request's output must follow, or `None` when it is free text. A named
    /// `tool_choice` is known to name one of `tools` (the surfaces check it).
    #[must_use]
    pub fn grammar(&self, request: &Request) -> Option<TopLevelGrammar> {
        let answer = match &request.output_format {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(json!({"type": "object"})),
            OutputFormat::JsonSchema { schema, .. } => Some(schema.clone()),
        };
        let calls = self.calls_allowed(request);
        if calls.is_empty() {
            return answer.map(|schema| TopLevelGrammar::from_json_schema(compact(schema)));
        }
        let forced = matches!(
            request.tool_choice,
            ToolChoice::Required | ToolChoice::Function(_)
        );
        // Each tool's schema lives under the envelope's `$defs`, with its `$ref`s rewritten to
        // point there, so `$defs`/`$ref` in parameters resolve as they would on their own.
        let mut definitions = serde_json::Map::new();
        let mut envelopes = Vec::with_capacity(calls.len());
        for (index, tool) in calls.iter().enumerate() {
            let key = format!("tool{index}");
            let mut parameters = tool
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            rebase_refs(&mut parameters, &format!("#/$defs/{key}"));
            definitions.insert(key.clone(), parameters);
            envelopes.push(self.envelope_schema(tool, &format!("#/$defs/{key}")));
        }
        let envelope = compact(json!({ "anyOf": envelopes, "$defs": definitions }));
        let syntax = &self.tools;
        let mut lark = String::from("%llguidance {}\n");
        let more = if request.parallel_tool_calls {
            " more*"
        } else {
            ""
        };
        let first = if forced {
            format!("start: call{more}\n")
        } else if let Some(schema) = &answer {
            let _ = writeln!(lark, "answer: %json {}", compact(schema.clone()));
            format!("start: answer | call{more}\n")
        } else if syntax.open.is_empty() {
            // A reply that starts with `{` is a call; any other reply is text.
            format!("start: TEXT | call{more}\nTEXT: /[^{{ \\t\\n](.|\\n)*/\n")
        } else {
            // Free text until the opening marker appears, then a call is enforced.
            format!(
                "start: TEXT | lazy_call{more}\nTEXT: /(.|\\n)*/\nlead[lazy]: TEXT {}\nlazy_call: lead body {}\n",
                lark_string(syntax.open),
                lark_string(syntax.close)
            )
        };
        lark.push_str(&first);
        let _ = writeln!(
            lark,
            "call: {} body {}",
            lark_string(syntax.open),
            lark_string(syntax.close)
        );
        let separator = if syntax.open.is_empty() { ";" } else { "\n" };
        let _ = writeln!(
            lark,
            "more: {} {} body {}",
            lark_string(separator),
            lark_string(syntax.open),
            lark_string(syntax.close)
        );
        let _ = writeln!(lark, "body: %json {envelope}");
        Some(TopLevelGrammar::from_lark(lark))
    }

    /// The tools a call may name under the request's `tool_choice`.
    #[must_use]
    pub fn calls_allowed<'r>(&self, request: &'r Request) -> Vec<&'r FunctionTool> {
        request
            .tools
            .iter()
            .map(|Tool::Function(tool)| tool)
            .filter(|tool| match &request.tool_choice {
                ToolChoice::None => false,
                ToolChoice::Auto | ToolChoice::Required => true,
                ToolChoice::Function(name) => &tool.name == name,
            })
            .collect()
    }

    /// `{"name": <tool>, <arguments>: <its parameters>}`, the parameters by reference.
    fn envelope_schema(&self, tool: &FunctionTool, parameters: &str) -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                self.tools.arguments_key: {"$ref": parameters},
            },
            "required": ["name", self.tools.arguments_key],
            "additionalProperties": false,
        })
    }

    /// A parser for one choice's output; `tools` is false when calls must stay text
    /// (`tool_choice: "none"` or no tools).
    #[must_use]
    pub fn parser(&self, tools: bool) -> OutputParser {
        OutputParser::new(tools.then_some(self.tools), self.reasoning)
    }
}

/// The OpenAI function-tool shape Hugging Face templates expect in `tools`.
#[must_use]
pub fn hf_tool(tool: &FunctionTool) -> Value {
    let mut function = json!({ "name": tool.name });
    if let Some(description) = &tool.description {
        function["description"] = Value::String(description.clone());
    }
    function["parameters"] = tool
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    json!({ "type": "function", "function": function })
}

/// Makes every local `$ref` of a schema (`#`, `#/$defs/x`, `#/properties/y`) point into the
/// copy of that schema placed at `base` (`#/$defs/tool0`). Values that are data, not schemas
/// (`const`, `enum`, `default`, `examples`), are left alone.
fn rebase_refs(schema: &mut Value, base: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    // Maps from names to schemas: a property called `const` is still a schema.
                    (
                        "properties" | "patternProperties" | "$defs" | "definitions"
                        | "dependentSchemas",
                        Value::Object(children),
                    ) => {
                        for child in children.values_mut() {
                            rebase_refs(child, base);
                        }
                    }
                    ("$ref", Value::String(reference)) => {
                        // Only JSON pointers (`#`, `#/…`); an anchor (`#name`) stays as it is.
                        if let Some(rest) = reference.strip_prefix('#') {
                            if rest.is_empty() || rest.starts_with('/') {
                                *reference = format!("{base}{rest}");
                            }
                        }
                    }
                    ("const" | "enum" | "default" | "examples", _) => {}
                    (_, value) => rebase_refs(value, base),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rebase_refs(item, base);
            }
        }
        _ => {}
    }
}

/// JSON with `", "` and `": "` separators, as models were trained to read and write it.
fn to_spaced_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), to_spaced_json(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(to_spaced_json).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Fixed separators and no free whitespace: a small model given free whitespace can spend its
/// whole budget on newlines.
fn compact(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            }),
        );
        schema
    } else {
        // A boolean schema (`true`): any JSON value.
        json!({"x-guidance": {"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}})
    }
}

fn lark_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// What the parser recognised in a stretch of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Text(String),
    Reasoning(String),
    CallStart {
        index: u32,
        id: String,
        name: String,
    },
    CallArguments {
        index: u32,
        fragment: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: a reply may open with `<think>` or (for bare JSON calls) with `{`.
    Start,
    Reasoning,
    Text,
    /// Inside a call, before its arguments: waiting for `{"name": "…", "<key>": `.
    Head,
    /// Inside the arguments value: `depth` open brackets, in a string or not.
    Arguments {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After the arguments: the envelope's `}` and the closing marker.
    Tail,
    /// A call whose envelope is not in the expected order: buffered whole, parsed at its end.
    Whole,
}

/// Splits streamed output into text, reasoning and tool calls, emitting a call's name as soon
/// as it is known and its arguments fragment by fragment.
#[derive(Debug, Clone)]
pub struct OutputParser {
    syntax: Option<ToolSyntax>,
    reasoning: bool,
    state: State,
    pending: String,
    calls: u32,
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

impl OutputParser {
    #[must_use]
    pub fn new(syntax: Option<ToolSyntax>, reasoning: bool) -> Self {
        Self {
            syntax,
            reasoning,
            state: State::Start,
            pending: String::new(),
            calls: 0,
        }
    }

    /// Tool calls started so far.
    #[must_use]
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Feeds generated text; what can be decided is appended to `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<Parsed>) {
        self.pending.push_str(text);
        while self.step(out, false) {}
    }

    /// The output ended: flushes what is held back.
    pub fn finish(&mut self, out: &mut Vec<Parsed>) {
        while self.step(out, true) {}
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Reasoning => emit_reasoning(out, rest),
            State::Arguments { .. } => {
                // Cut off by the token limit: the arguments so far still belong to the call.
                if !rest.is_empty() {
                    out.push(Parsed::CallArguments {
                        index: self.calls - 1,
                        fragment: rest,
                    });
                }
            }
            State::Head | State::Tail => {}
            State::Whole => self.parse_whole(&rest, out),
            State::Start | State::Text => {
                if self.calls == 0 || !rest.trim().is_empty() {
                    emit_text(out, rest);
                }
            }
        }
    }

    /// Makes one move on `pending`; false when more text is needed.
    fn step(&mut self, out: &mut Vec<Parsed>, ending: bool) -> bool {
        match self.state {
            State::Start => self.step_start(ending),
            State::Reasoning => {
                if let Some(at) = self.pending.find(THINK_CLOSE) {
                    let reasoning: String = self.pending.drain(..at).collect();
                    self.pending.drain(..THINK_CLOSE.len());
                    emit_reasoning(out, reasoning);
                    let trimmed = self.pending.trim_start().len();
                    self.pending.drain(..self.pending.len() - trimmed);
                    self.state = State::Text;
                    return true;
                }
                let keep = partial_suffix(&self.pending, THINK_CLOSE);
                let ready: String = self.pending.drain(..self.pending.len() - keep).collect();
                emit_reasoning(out, ready);
                false
            }
            State::Text => self.step_text(out),
            State::Head => self.step_head(out, ending),
            State::Arguments { .. } => self.step_arguments(out),
            State::Tail => {
                let Some(syntax) = self.syntax else {
                    return false;
                };
                let marker = syntax.close.trim_start();
                let body = self.pending.trim_start();
                let after_brace = body.strip_prefix('}').map(str::trim_start);
                match after_brace {
                    Some(rest) if rest.starts_with(marker) => {
                        let consumed = self.pending.len() - rest.len() + marker.len();
                        self.pending.drain(..consumed);
                        self.state = State::Text;
                        true
                    }
                    Some(rest) if marker.starts_with(rest) => false,
                    None if body.is_empty() => false,
                    // Not the envelope we expected: whatever follows is text again.
                    _ => {
                        self.state = State::Text;
                        true
                    }
                }
            }
            State::Whole => {
                let Some(syntax) = self.syntax else {
                    return false;
                };
                if syntax.close.is_empty() {
                    return false;
                }
                let Some(at) = self.pending.find(syntax.close) else {
                    return false;
                };
                let call: String = self.pending.drain(..at).collect();
                self.pending.drain(..syntax.close.len());
                self.parse_whole(&call, out);
                self.state = State::Text;
                true
            }
        }
    }

    fn step_start(&mut self, ending: bool) -> bool {
        let body = self.pending.trim_start();
        if body.is_empty() && !ending {
            return false;
        }
        if self.reasoning {
            if let Some(rest) = body.strip_prefix(THINK_OPEN) {
                let consumed = self.pending.len() - rest.len();
                self.pending.drain(..consumed);
                self.state = State::Reasoning;
                return true;
            }
            if THINK_OPEN.starts_with(body) && !ending {
                return false;
            }
        }
        match self.syntax {
            Some(syntax) if syntax.open.is_empty() && body.starts_with('{') => {
                let consumed = self.pending.len() - body.len();
                self.pending.drain(..consumed);
                self.state = State::Head;
            }
            _ => self.state = State::Text,
        }
        true
    }

    fn step_text(&mut self, out: &mut Vec<Parsed>) -> bool {
        let Some(syntax) = self.syntax.filter(|s| !s.open.is_empty()) else {
            let text = std::mem::take(&mut self.pending);
            self.emit_text_between_calls(out, text);
            return false;
        };
        let marker = syntax.open.trim_end();
        if let Some(at) = self.pending.find(marker) {
            let text: String = self.pending.drain(..at).collect();
            self.emit_text_between_calls(out, text);
            self.pending.drain(..marker.len());
            self.state = State::Head;
            return true;
        }
        let keep = partial_suffix(&self.pending, marker);
        let text: String = self.pending.drain(..self.pending.len() - keep).collect();
        self.emit_text_between_calls(out, text);
        false
    }

    /// Text is emitted as is, except whitespace around tool calls, which is held back until
    /// something other than whitespace follows it.
    fn emit_text_between_calls(&mut self, out: &mut Vec<Parsed>, text: String) {
        if self.calls > 0 && text.trim().is_empty() {
            // Keep it pending-free: whitespace between calls is dropped.
            return;
        }
        emit_text(out, text);
    }

    fn step_head(&mut self, out: &mut Vec<Parsed>, ending: bool) -> bool {
        let Some(syntax) = self.syntax else {
            return false;
        };
        match parse_head(&self.pending, syntax.arguments_key) {
            Head::Complete { name, consumed } => {
                self.pending.drain(..consumed);
                out.push(Parsed::CallStart {
                    index: self.calls,
                    id: call_id(),
                    name,
                });
                self.calls += 1;
                self.state = State::Arguments {
                    depth: 0,
                    in_string: false,
                    escaped: false,
                };
                true
            }
            Head::Partial if !ending => false,
            // The output ended before the call had a name: there is no call to report.
            Head::Partial => {
                self.pending.clear();
                self.state = State::Text;
                false
            }
            Head::Other => {
                self.state = State::Whole;
                true
            }
        }
    }

    fn step_arguments(&mut self, out: &mut Vec<Parsed>) -> bool {
        let State::Arguments {
            mut depth,
            mut in_string,
            mut escaped,
        } = self.state
        else {
            return false;
        };
        let mut end = None;
        for (at, c) in self.pending.char_indices() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '{' | '[' => depth += 1,
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(at + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let index = self.calls - 1;
        if let Some(end) = end {
            let fragment: String = self.pending.drain(..end).collect();
            out.push(Parsed::CallArguments { index, fragment });
            self.state = State::Tail;
            true
        } else {
            let fragment = std::mem::take(&mut self.pending);
            if !fragment.is_empty() {
                out.push(Parsed::CallArguments { index, fragment });
            }
            self.state = State::Arguments {
                depth,
                in_string,
                escaped,
            };
            false
        }
    }

    /// A call in an unexpected layout: parse it whole, or give it back as text.
    fn parse_whole(&mut self, call: &str, out: &mut Vec<Parsed>) {
        let Some(syntax) = self.syntax else {
            return;
        };
        let parsed: Option<(String, String)> = serde_json::from_str::<Value>(call.trim())
            .ok()
            .and_then(|value| {
                let name = value.get("name")?.as_str()?.to_owned();
                let arguments = value
                    .get(syntax.arguments_key)
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                Some((name, arguments.to_string()))
            });
        match parsed {
            Some((name, arguments)) => {
                let index = self.calls;
                self.calls += 1;
                out.push(Parsed::CallStart {
                    index,
                    id: call_id(),
                    name,
                });
                out.push(Parsed::CallArguments {
                    index,
                    fragment: arguments,
                });
            }
            None => emit_text(out, format!("{}{call}", syntax.open.trim_end())),
        }
    }
}

enum Head {
    Complete { name: String, consumed: usize },
    Partial,
    Other,
}

/// Matches `{"name": "<name>", "<key>": ` (any whitespace) at the start of `text`.
fn parse_head(text: &str, key: &str) -> Head {
    let mut rest = text.trim_start();
    for token in ["{", "\"name\"", ":"] {
        match expect(rest, token) {
            Ok(after) => rest = after,
            Err(partial) => return if partial { Head::Partial } else { Head::Other },
        }
    }
    rest = rest.trim_start();
    let Some(body) = rest.strip_prefix('"') else {
        return if rest.is_empty() {
            Head::Partial
        } else {
            Head::Other
        };
    };
    let mut escaped = false;
    let mut close = None;
    for (at, c) in body.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                close = Some(at);
                break;
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return Head::Partial;
    };
    let Ok(name) = serde_json::from_str::<String>(&rest[..close + 2]) else {
        return Head::Other;
    };
    rest = &body[close + 1..];
    let quoted_key = format!("\"{key}\"");
    for token in [",", quoted_key.as_str(), ":"] {
        match expect(rest, token) {
            Ok(after) => rest = after,
            Err(partial) => return if partial { Head::Partial } else { Head::Other },
        }
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Head::Partial;
    }
    Head::Complete {
        name,
        consumed: text.len() - rest.len(),
    }
}

/// Skips whitespace then `token`; `Err(true)` when the text ends inside it.
fn expect<'t>(text: &'t str, token: &str) -> Result<&'t str, bool> {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix(token) {
        Ok(rest)
    } else {
        Err(token.starts_with(text))
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

fn emit_text(out: &mut Vec<Parsed>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Parsed::Text(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(Parsed::Text(text));
    }
}

fn emit_reasoning(out: &mut Vec<Parsed>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Parsed::Reasoning(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(Parsed::Reasoning(text));
    }
}

fn call_id() -> String {
    format!("call_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

/// Holds back a tool call that repeats an earlier call's name until its arguments are complete,
/// so an exact repeat of an earlier call (small models loop on the same call, greedy or not)
/// ends the turn instead of reaching the client. Calls to a tool not called before stream as
/// they are generated; a second call to the same tool arrives whole, once it is known to differ.
#[derive(Debug, Clone, Default)]
pub struct CallGuard {
    /// Name and arguments of every call released so far.
    released: Vec<(String, Value)>,
    current: Option<CurrentCall>,
}

#[derive(Debug, Clone)]
struct CurrentCall {
    index: u32,
    name: String,
    arguments: String,
    /// The call's pieces, while it is held back.
    held: Option<Vec<Parsed>>,
}

impl CallGuard {
    /// Passes `pieces` on, holding back or dropping what must be; true when an exact repeat
    /// was dropped and the turn should end (everything after it is dropped too).
    pub fn filter(&mut self, pieces: &mut Vec<Parsed>) -> bool {
        let idle = self.current.is_none()
            && !pieces
                .iter()
                .any(|piece| matches!(piece, Parsed::CallStart { .. }));
        if idle {
            return false;
        }
        let incoming = std::mem::take(pieces);
        for piece in incoming {
            match piece {
                Parsed::CallStart { index, id, name } => {
                    if self.complete(pieces) {
                        return true;
                    }
                    let repeats_a_name = self.released.iter().any(|(done, _)| *done == name);
                    let start = Parsed::CallStart {
                        index,
                        id,
                        name: name.clone(),
                    };
                    let held = if repeats_a_name {
                        Some(vec![start])
                    } else {
                        pieces.push(start);
                        None
                    };
                    self.current = Some(CurrentCall {
                        index,
                        name,
                        arguments: String::new(),
                        held,
                    });
                }
                Parsed::CallArguments { index, fragment } => match &mut self.current {
                    Some(call) if call.index == index => {
                        call.arguments.push_str(&fragment);
                        let piece = Parsed::CallArguments { index, fragment };
                        match &mut call.held {
                            Some(held) => held.push(piece),
                            None => pieces.push(piece),
                        }
                    }
                    _ => pieces.push(Parsed::CallArguments { index, fragment }),
                },
                other => {
                    if self.complete(pieces) {
                        return true;
                    }
                    pieces.push(other);
                }
            }
        }
        false
    }

    /// The output ended: settles the call in progress; true when it was an exact repeat.
    pub fn finish(&mut self, pieces: &mut Vec<Parsed>) -> bool {
        self.complete(pieces)
    }

    /// Settles the current call: releases it (and what was held of it) into `pieces`, or
    /// reports an exact repeat, whose held pieces are dropped.
    fn complete(&mut self, pieces: &mut Vec<Parsed>) -> bool {
        let Some(call) = self.current.take() else {
            return false;
        };
        let arguments =
            serde_json::from_str::<Value>(&call.arguments).unwrap_or(Value::String(call.arguments));
        let repeat = self
            .released
            .iter()
            .any(|(name, done)| *name == call.name && *done == arguments);
        if repeat {
            return true;
        }
        if let Some(held) = call.held {
            pieces.extend(held);
        }
        self.released.push((call.name, arguments));
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Feeds `text` in pieces of `size` bytes (on char boundaries) and folds the result.
    fn run(parser: &mut OutputParser, text: &str, size: usize) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = size.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            parser.push(&rest[..cut], &mut out);
            rest = &rest[cut..];
        }
        parser.finish(&mut out);
        out
    }

    fn fold(parsed: &[Parsed]) -> (String, String, Vec<(String, String)>) {
        let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
        for p in parsed {
            match p {
                Parsed::Text(t) => text.push_str(t),
                Parsed::Reasoning(t) => reasoning.push_str(t),
                Parsed::CallStart { index, name, id } => {
                    assert_eq!(*index as usize, calls.len());
                    assert!(id.starts_with("call_") && id.len() == 29);
                    calls.push((name.clone(), String::new()));
                }
                Parsed::CallArguments { index, fragment } => {
                    calls[*index as usize].1.push_str(fragment);
                }
            }
        }
        (text, reasoning, calls)
    }

    #[test]
    fn hermes_calls_stream_name_first_then_arguments() {
        let output = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris \\\"}\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";
        for size in [1, 2, 3, 7, 1000] {
            let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), false);
            let parsed = run(&mut parser, output, size);
            let (text, _, calls) = fold(&parsed);
            assert_eq!(text, "", "piece size {size}");
            assert_eq!(
                calls,
                vec![
                    (
                        "get_weather".to_owned(),
                        "{\"city\": \"Paris \\\"}\", \"days\": [1, 2]}".to_owned()
                    ),
                    ("time".to_owned(), "{}".to_owned())
                ],
                "piece size {size}"
            );
        }
    }

    #[test]
    fn text_before_a_call_and_near_misses_stay_text() {
        let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), false);
        let parsed = run(
            &mut parser,
            "Let me check <tool <tool_cal.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>",
            2,
        );
        let (text, _, calls) = fold(&parsed);
        assert_eq!(text, "Let me check <tool <tool_cal.\n");
        assert_eq!(calls, vec![("f".to_owned(), "{\"a\": 1}".to_owned())]);
    }

    #[test]
    fn envelopes_in_another_order_are_parsed_whole() {
        let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), false);
        let parsed = run(
            &mut parser,
            "<tool_call>\n{\"arguments\": {\"a\": 1}, \"name\": \"f\"}\n</tool_call>",
            3,
        );
        let (_, _, calls) = fold(&parsed);
        assert_eq!(calls, vec![("f".to_owned(), "{\"a\":1}".to_owned())]);
    }

    #[test]
    fn without_tools_markers_are_text() {
        let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
        let mut parser = OutputParser::new(None, false);
        let (out, _, calls) = fold(&run(&mut parser, text, 4));
        assert_eq!(out, text);
        assert!(calls.is_empty());
    }

    #[test]
    fn plain_text_passes_through_unchanged() {
        let text = "  Hello <b>world</b>\n\n{not a call}";
        let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), true);
        let (out, reasoning, calls) = fold(&run(&mut parser, text, 1));
        assert_eq!(out, text);
        assert!(reasoning.is_empty() && calls.is_empty());
    }

    #[test]
    fn json_envelope_calls_are_whole_replies_starting_with_a_brace() {
        let mut parser = OutputParser::new(Some(ToolSyntax::JSON_ENVELOPE), false);
        let parsed = run(
            &mut parser,
            "{\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}",
            5,
        );
        let (text, _, calls) = fold(&parsed);
        assert_eq!(text, "");
        assert_eq!(
            calls,
            vec![("search".to_owned(), "{\"q\": \"rust\"}".to_owned())]
        );
        let mut parser = OutputParser::new(Some(ToolSyntax::JSON_ENVELOPE), false);
        let (text, _, calls) = fold(&run(&mut parser, "Sure: {\"a\": 1}", 5));
        assert_eq!(text, "Sure: {\"a\": 1}");
        assert!(calls.is_empty());
    }

    #[test]
    fn think_blocks_become_reasoning() {
        let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), true);
        let parsed = run(&mut parser, "<think>\nLet me see.\n</think>\n\nIt is 4.", 3);
        let (text, reasoning, _) = fold(&parsed);
        assert_eq!(reasoning, "\nLet me see.\n");
        assert_eq!(text, "It is 4.");
    }

    #[test]
    fn a_call_cut_by_the_token_limit_keeps_its_partial_arguments() {
        let mut parser = OutputParser::new(Some(ToolSyntax::HERMES), false);
        let parsed = run(
            &mut parser,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"xy",
            4,
        );
        let (_, _, calls) = fold(&parsed);
        assert_eq!(calls, vec![("f".to_owned(), "{\"a\": \"xy".to_owned())]);
    }

    #[test]
    fn detection_follows_the_template() {
        let smollm = ModelFormat::detect("{% for message in messages %}<|im_start|>…");
        assert!(!smollm.native_tools && !smollm.reasoning);
        assert_eq!(smollm.tools, ToolSyntax::HERMES);
        let qwen = ModelFormat::detect("{% if tools %}<tools>{{ tools }}</tools><tool_call>");
        assert!(qwen.native_tools);
        assert_eq!(qwen.tools, ToolSyntax::HERMES);
        let llama =
            ModelFormat::detect("{% if tools %}{\"name\": function name, \"parameters\": …");
        assert_eq!(llama.tools, ToolSyntax::JSON_ENVELOPE);
        assert!(ModelFormat::detect("<think>{% if tools %}").reasoning);
    }

    #[test]
    fn calls_render_as_the_model_writes_them() {
        assert_eq!(
            ToolSyntax::HERMES.render_call("f", "{\"a\":1,\"b\":[1,2]}"),
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [1, 2]}}\n</tool_call>"
        );
        assert_eq!(
            ToolSyntax::JSON_ENVELOPE.render_call("f", "{}"),
            "{\"name\": \"f\", \"parameters\": {}}"
        );
    }

    fn start(index: u32, name: &str) -> Parsed {
        Parsed::CallStart {
            index,
            id: format!("call_{index}"),
            name: name.into(),
        }
    }

    fn args(index: u32, fragment: &str) -> Parsed {
        Parsed::CallArguments {
            index,
            fragment: fragment.into(),
        }
    }

    #[test]
    fn call_guard_streams_new_tools_holds_repeated_names_and_drops_exact_repeats() {
        let mut guard = CallGuard::default();
        let mut pieces = vec![
            Parsed::Text("Let me check.".into()),
            start(0, "w"),
            args(0, "{\"c\":"),
        ];
        assert!(!guard.filter(&mut pieces));
        assert_eq!(pieces.len(), 3, "a first call streams as it comes");
        let mut pieces = vec![
            args(0, " \"Oslo\"}"),
            start(1, "w"),
            args(1, "{\"c\": \"Rome\"}"),
        ];
        assert!(!guard.filter(&mut pieces));
        assert_eq!(
            pieces,
            vec![args(0, " \"Oslo\"}")],
            "a second call to `w` is held"
        );
        let mut pieces = vec![start(2, "w"), args(2, "{\"c\":\"Oslo\"}")];
        assert!(!guard.filter(&mut pieces));
        assert_eq!(
            pieces,
            vec![start(1, "w"), args(1, "{\"c\": \"Rome\"}")],
            "it is released once it is known to differ"
        );
        // Call 2 repeats call 0 (whitespace aside): it is dropped and the turn ends.
        let mut pieces = vec![start(3, "w")];
        assert!(guard.filter(&mut pieces));
        assert!(pieces.is_empty());
    }

    #[test]
    fn call_guard_settles_the_last_call_at_the_end() {
        let mut guard = CallGuard::default();
        let mut pieces = vec![start(0, "a"), args(0, "{}"), start(1, "b"), args(1, "{}")];
        assert!(!guard.filter(&mut pieces));
        assert_eq!(pieces.len(), 4, "different tools stream unheld");
        let mut pieces = vec![start(2, "a"), args(2, "{\"x\": 1}")];
        assert!(!guard.filter(&mut pieces));
        assert!(pieces.is_empty());
        let mut tail = Vec::new();
        assert!(!guard.finish(&mut tail));
        assert_eq!(tail, vec![start(2, "a"), args(2, "{\"x\": 1}")]);
        let mut pieces = vec![start(3, "a"), args(3, "{}")];
        assert!(!guard.filter(&mut pieces));
        let mut tail = Vec::new();
        assert!(
            guard.finish(&mut tail),
            "an exact repeat at the end is dropped too"
        );
        assert!(tail.is_empty());
        let mut text = vec![Parsed::Text("no calls here".into())];
        assert!(!CallGuard::default().filter(&mut text));
        assert_eq!(text.len(), 1);
    }
}
