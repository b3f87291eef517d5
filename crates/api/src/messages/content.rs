//! The conversation of a Messages request: `system`, and each message's content blocks, as
//! canonical items with the client's cache breakpoints.

use serde_json::{Map, Value};
use switchboard_model::{CacheMark, CacheTarget, ContentPart, Error, Family, Item, Role, Sealed};

use super::decode::{
    expected, invalid, join, missing, object, only_fields, optional_string, string, unsupported,
};
use crate::sealed::Envelope;

/// Items and cache marks built block by block; text, images and documents gather into one
/// message until a tool call, tool result or reasoning block comes between them.
#[derive(Default)]
pub(super) struct Conversation {
    pub(super) items: Vec<Item>,
    pub(super) marks: Vec<CacheMark>,
    /// Gemini-style signatures of tool calls, carried in `redacted_thinking` envelopes.
    pub(super) call_signatures: Vec<(String, Sealed)>,
    role: Option<Role>,
    parts: Vec<ContentPart>,
    part_marks: Vec<(usize, Value)>,
}

impl Conversation {
    fn flush(&mut self) {
        if self.parts.is_empty() {
            return;
        }
        let item = self.items.len();
        for (part, control) in self.part_marks.drain(..) {
            self.marks.push(CacheMark {
                target: CacheTarget::Part { item, part },
                control,
            });
        }
        self.items.push(Item::Message {
            role: self.role.unwrap_or(Role::User),
            parts: std::mem::take(&mut self.parts),
            name: None,
        });
    }

    fn part(&mut self, role: Role, part: ContentPart, control: Option<Value>) {
        if self.role != Some(role) {
            self.flush();
            self.role = Some(role);
        }
        if let Some(control) = control {
            self.part_marks.push((self.parts.len(), control));
        }
        self.parts.push(part);
    }

    fn item(&mut self, item: Item, control: Option<Value>) {
        self.flush();
        if let Some(control) = control {
            self.marks.push(CacheMark {
                target: CacheTarget::Item(self.items.len()),
                control,
            });
        }
        self.items.push(item);
    }

    /// The top-level `cache_control`: a breakpoint after the last block.
    pub(super) fn mark_last(&mut self, control: Value) {
        let Some(last) = self.items.len().checked_sub(1) else {
            return;
        };
        let target = match &self.items[last] {
            Item::Message { parts, .. } => CacheTarget::Part {
                item: last,
                part: parts.len().saturating_sub(1),
            },
            _ => CacheTarget::Item(last),
        };
        if !self.marks.iter().any(|mark| mark.target == target) {
            self.marks.push(CacheMark { target, control });
        }
    }

    pub(super) fn system(&mut self, system: &Value) -> Result<(), Error> {
        match system {
            Value::String(text) => {
                self.part(Role::System, ContentPart::Text(text.clone()), None);
            }
            Value::Array(blocks) => {
                for (index, block) in blocks.iter().enumerate() {
                    let path = format!("system.{index}");
                    let fields = object(block, &path)?;
                    let kind = string(fields, &path, "type")?;
                    if kind != "text" {
                        return Err(invalid(
                            &join(&path, "type"),
                            format!("Input should be 'text', got '{kind}'"),
                        ));
                    }
                    only_fields(
                        fields,
                        &path,
                        &["type", "text", "cache_control", "citations"],
                    )?;
                    let text = string(fields, &path, "text")?;
                    self.part(
                        Role::System,
                        ContentPart::Text(text.to_owned()),
                        cache_control(fields, &path)?,
                    );
                }
            }
            other => return Err(expected("system", "a valid string or list", other)),
        }
        self.flush();
        Ok(())
    }

    pub(super) fn message(&mut self, message: &Value, path: &str) -> Result<(), Error> {
        let fields = object(message, path)?;
        only_fields(fields, path, &["role", "content"])?;
        let role = match string(fields, path, "role")? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(invalid(
                    &join(path, "role"),
                    format!("Input should be 'user' or 'assistant', got '{other}'"),
                ))
            }
        };
        let content_path = join(path, "content");
        match fields.get("content") {
            None | Some(Value::Null) => return Err(missing(&content_path)),
            Some(Value::String(text)) => self.part(role, ContentPart::Text(text.clone()), None),
            Some(Value::Array(blocks)) => {
                for (index, block) in blocks.iter().enumerate() {
                    self.block(role, block, &format!("{content_path}.{index}"))?;
                }
            }
            Some(other) => return Err(expected(&content_path, "a valid string or list", other)),
        }
        self.flush();
        self.role = None;
        Ok(())
    }

    fn block(&mut self, role: Role, block: &Value, path: &str) -> Result<(), Error> {
        let fields = object(block, path)?;
        let kind = string(fields, path, "type")?;
        let control = cache_control(fields, path)?;
        match (kind, role) {
            ("text", _) => {
                only_fields(
                    fields,
                    path,
                    &["type", "text", "cache_control", "citations"],
                )?;
                let text = string(fields, path, "text")?;
                self.part(role, ContentPart::Text(text.to_owned()), control);
            }
            ("image", Role::User) => {
                only_fields(fields, path, &["type", "source", "cache_control"])?;
                let part = image(fields, path)?;
                self.part(role, part, control);
            }
            ("document", Role::User) => {
                only_fields(
                    fields,
                    path,
                    &[
                        "type",
                        "source",
                        "title",
                        "context",
                        "citations",
                        "cache_control",
                    ],
                )?;
                let part = document(fields, path)?;
                self.part(role, part, control);
            }
            ("tool_result", Role::User) => {
                only_fields(
                    fields,
                    path,
                    &[
                        "type",
                        "tool_use_id",
                        "content",
                        "is_error",
                        "cache_control",
                    ],
                )?;
                let call_id = string(fields, path, "tool_use_id")?.to_owned();
                let output = tool_result_text(fields.get("content"), &join(path, "content"))?;
                let is_error = match fields.get("is_error") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(flag)) => *flag,
                    Some(other) => {
                        return Err(expected(&join(path, "is_error"), "a valid boolean", other))
                    }
                };
                let result = Item::FunctionOutput {
                    call_id,
                    output,
                    is_error,
                };
                self.item(result, control);
            }
            ("tool_use", Role::Assistant) => {
                only_fields(
                    fields,
                    path,
                    &["type", "id", "name", "input", "cache_control"],
                )?;
                let call_id = string(fields, path, "id")?.to_owned();
                let name = string(fields, path, "name")?.to_owned();
                let input = match fields.get("input") {
                    None | Some(Value::Null) => return Err(missing(&join(path, "input"))),
                    Some(input @ Value::Object(_)) => input.to_string(),
                    Some(other) => {
                        return Err(expected(&join(path, "input"), "a valid dictionary", other))
                    }
                };
                let call = Item::FunctionCall {
                    call_id,
                    name,
                    arguments: input,
                    signature: None,
                };
                self.item(call, control);
            }
            ("thinking", Role::Assistant) => {
                only_fields(fields, path, &["type", "thinking", "signature"])?;
                let text = string(fields, path, "thinking")?.to_owned();
                let signature = string(fields, path, "signature")?;
                let (signature, encrypted) = match Envelope::open_ours(signature) {
                    Some(envelope) => (envelope.signature, envelope.encrypted),
                    None => (Some(Sealed::new(Family::Anthropic, signature)), None),
                };
                let reasoning = Item::Reasoning {
                    id: None,
                    text,
                    summary: Vec::new(),
                    signature,
                    encrypted,
                };
                self.item(reasoning, None);
            }
            ("redacted_thinking", Role::Assistant) => {
                only_fields(fields, path, &["type", "data"])?;
                let data = string(fields, path, "data")?;
                match Envelope::open_ours(data) {
                    Some(Envelope {
                        signature: Some(signature),
                        call_id: Some(call_id),
                        ..
                    }) => self.call_signatures.push((call_id, signature)),
                    Some(envelope) => self.item(
                        Item::Reasoning {
                            id: None,
                            text: String::new(),
                            summary: Vec::new(),
                            signature: envelope.signature,
                            encrypted: envelope.encrypted,
                        },
                        None,
                    ),
                    None => self.item(
                        Item::Reasoning {
                            id: None,
                            text: String::new(),
                            summary: Vec::new(),
                            signature: None,
                            encrypted: Some(Sealed::new(Family::Anthropic, data)),
                        },
                        None,
                    ),
                }
            }
            // A web search from an earlier turn, sent back as it came: the answer that cited it
            // stays in the conversation; the search itself is not replayed to the model.
            ("server_tool_use", Role::Assistant) => {
                only_fields(
                    fields,
                    path,
                    &["type", "id", "name", "input", "cache_control"],
                )?;
                string(fields, path, "id")?;
                let name = string(fields, path, "name")?;
                if name != "web_search" {
                    return Err(unsupported(
                        &join(path, "name"),
                        format!("the server tool '{name}' is not supported by this server yet"),
                    ));
                }
            }
            ("web_search_tool_result", Role::Assistant) => {
                only_fields(
                    fields,
                    path,
                    &["type", "tool_use_id", "content", "cache_control"],
                )?;
                string(fields, path, "tool_use_id")?;
            }
            (
                "server_tool_use"
                | "web_search_tool_result"
                | "web_fetch_tool_result"
                | "code_execution_tool_result"
                | "mcp_tool_use"
                | "mcp_tool_result"
                | "container_upload"
                | "search_result",
                _,
            ) => {
                return Err(unsupported(
                    &join(path, "type"),
                    format!("'{kind}' blocks are not supported by this server yet"),
                ))
            }
            ("image" | "document" | "tool_result", Role::Assistant) => {
                return Err(invalid(
                    &join(path, "type"),
                    format!("'{kind}' blocks may only appear in user messages"),
                ))
            }
            ("tool_use" | "thinking" | "redacted_thinking", Role::User) => {
                return Err(invalid(
                    &join(path, "type"),
                    format!("'{kind}' blocks may only appear in assistant messages"),
                ))
            }
            (other, _) => {
                return Err(invalid(
                    &join(path, "type"),
                    format!(
                        "Input tag '{other}' found using 'type' does not match any of the \
                         expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', \
                         'thinking', 'redacted_thinking'"
                    ),
                ))
            }
        }
        Ok(())
    }
}

pub(super) fn cache_control(
    fields: &Map<String, Value>,
    path: &str,
) -> Result<Option<Value>, Error> {
    match fields.get("cache_control") {
        None | Some(Value::Null) => Ok(None),
        Some(control) => {
            let at = join(path, "cache_control");
            let inner = object(control, &at)?;
            only_fields(inner, &at, &["type", "ttl"])?;
            if string(inner, &at, "type")? != "ephemeral" {
                return Err(invalid(&join(&at, "type"), "Input should be 'ephemeral'"));
            }
            if let Some(ttl) = optional_string(inner, &at, "ttl")? {
                if !["5m", "1h"].contains(&ttl) {
                    return Err(invalid(&join(&at, "ttl"), "Input should be '5m' or '1h'"));
                }
            }
            Ok(Some(control.clone()))
        }
    }
}

fn source<'a>(
    fields: &'a Map<String, Value>,
    path: &str,
) -> Result<(String, &'a Map<String, Value>, String), Error> {
    let at = join(path, "source");
    let source = match fields.get("source") {
        None | Some(Value::Null) => return Err(missing(&at)),
        Some(source) => object(source, &at)?,
    };
    let kind = string(source, &at, "type")?.to_owned();
    Ok((kind, source, at))
}

fn image(fields: &Map<String, Value>, path: &str) -> Result<ContentPart, Error> {
    let (kind, source, at) = source(fields, path)?;
    let url = match kind.as_str() {
        "base64" => {
            only_fields(source, &at, &["type", "media_type", "data"])?;
            let media_type = string(source, &at, "media_type")?;
            if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&media_type) {
                return Err(invalid(
                    &join(&at, "media_type"),
                    "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
                ));
            }
            format!("data:{media_type};base64,{}", string(source, &at, "data")?)
        }
        "url" => {
            only_fields(source, &at, &["type", "url"])?;
            string(source, &at, "url")?.to_owned()
        }
        "file" => {
            return Err(unsupported(
                &join(&at, "type"),
                "files by file_id are not supported by this server",
            ))
        }
        other => {
            return Err(invalid(
                &join(&at, "type"),
                format!(
                    "Input tag '{other}' does not match any of the expected tags: 'base64', 'url'"
                ),
            ))
        }
    };
    Ok(ContentPart::Image { url, detail: None })
}

fn document(fields: &Map<String, Value>, path: &str) -> Result<ContentPart, Error> {
    use base64::Engine as _;
    let (kind, source, at) = source(fields, path)?;
    let filename = optional_string(fields, path, "title")?.map(str::to_owned);
    let data = match kind.as_str() {
        "base64" => {
            only_fields(source, &at, &["type", "media_type", "data"])?;
            let media_type = string(source, &at, "media_type")?;
            if media_type != "application/pdf" {
                return Err(invalid(
                    &join(&at, "media_type"),
                    "Input should be 'application/pdf'",
                ));
            }
            format!(
                "data:application/pdf;base64,{}",
                string(source, &at, "data")?
            )
        }
        "text" => {
            only_fields(source, &at, &["type", "media_type", "data"])?;
            let text = string(source, &at, "data")?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            format!("data:text/plain;base64,{encoded}")
        }
        "url" => {
            only_fields(source, &at, &["type", "url"])?;
            string(source, &at, "url")?.to_owned()
        }
        "content" | "file" => {
            return Err(unsupported(
                &join(&at, "type"),
                format!("'{kind}' document sources are not supported by this server"),
            ))
        }
        other => {
            return Err(invalid(
                &join(&at, "type"),
                format!(
                    "Input tag '{other}' does not match any of the expected tags: 'base64', \
                     'text', 'url'"
                ),
            ))
        }
    };
    Ok(ContentPart::File {
        file_id: None,
        filename,
        data: Some(data),
    })
}

/// A tool result's content as the text the canonical model carries.
fn tool_result_text(content: Option<&Value>, path: &str) -> Result<String, Error> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (index, block) in blocks.iter().enumerate() {
                let at = format!("{path}.{index}");
                let fields = object(block, &at)?;
                match string(fields, &at, "type")? {
                    "text" => {
                        only_fields(fields, &at, &["type", "text", "cache_control", "citations"])?;
                        texts.push(string(fields, &at, "text")?.to_owned());
                    }
                    kind => {
                        return Err(unsupported(
                            &join(&at, "type"),
                            format!(
                                "'{kind}' blocks in tool results are not supported yet; send text"
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(other) => Err(expected(path, "a valid string or list", other)),
    }
}

/// Signatures carried for tool calls go onto the calls they belong to.
pub(super) fn attach_call_signatures(items: &mut [Item], signatures: Vec<(String, Sealed)>) {
    for (id, sealed) in signatures {
        for item in items.iter_mut() {
            if let Item::FunctionCall {
                call_id, signature, ..
            } = item
            {
                if *call_id == id {
                    *signature = Some(sealed.clone());
                }
            }
        }
    }
}
