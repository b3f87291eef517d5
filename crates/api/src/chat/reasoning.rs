//! Reasoning and citations on the Chat Completions wire, which has no field of its own for
//! either: reasoning in OpenRouter-style `reasoning_details` entries (the shape NagaAI documents:
//! `reasoning.text`, `reasoning.summary`, `reasoning.encrypted`, each with the `format` of the
//! provider family that made it), and citations as `url_citation` annotations.
//!
//! Clients send `reasoning_details` back unchanged on the assistant message; they become
//! canonical reasoning items (and tool-call signatures, for an encrypted entry whose `id` is a
//! call's id), so the provider that made them gets them back.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchboard_model::{Annotation, Family, Item, ReasoningBlock, Sealed, ToolCall};

/// One `reasoning_details` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ReasoningDetail {
    #[serde(rename = "reasoning.text")]
    Text {
        #[serde(default)]
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
    },
    #[serde(rename = "reasoning.summary")]
    Summary {
        #[serde(default)]
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
    },
    #[serde(rename = "reasoning.encrypted")]
    Encrypted {
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
    },
}

/// The entries for a folded choice: its reasoning blocks and its tool calls' signatures.
#[must_use]
pub fn details_of(blocks: &[ReasoningBlock], calls: &[ToolCall]) -> Vec<ReasoningDetail> {
    let mut details = Vec::new();
    for block in blocks {
        details.extend(block_details(
            &block.text,
            block.signature.as_ref(),
            block.encrypted.as_ref(),
        ));
    }
    for call in calls {
        if let Some(signature) = &call.signature {
            details.push(call_detail(&call.id, signature));
        }
    }
    for (index, detail) in details.iter_mut().enumerate() {
        set_index(detail, index);
    }
    details
}

/// The entries of one ended reasoning block (its text is repeated beside the signature so that
/// replaying the entries alone restores the block).
#[must_use]
pub fn block_details(
    text: &str,
    signature: Option<&Sealed>,
    encrypted: Option<&Sealed>,
) -> Vec<ReasoningDetail> {
    let mut details = Vec::new();
    if !text.is_empty() || signature.is_some() {
        details.push(ReasoningDetail::Text {
            text: text.to_owned(),
            signature: signature.map(|sealed| sealed.value.clone()),
            id: None,
            // Unsigned text (the embedded engine's, a DeepSeek-style upstream's) names no
            // family: nothing in it is owed to a provider.
            format: signature
                .or(encrypted)
                .map(|sealed| sealed.family.format().to_owned()),
            index: None,
        });
    }
    if let Some(encrypted) = encrypted {
        details.push(ReasoningDetail::Encrypted {
            data: encrypted.value.clone(),
            id: None,
            format: Some(encrypted.family.format().to_owned()),
            index: None,
        });
    }
    details
}

/// A tool call's signature: an encrypted entry whose `id` is the call's id.
#[must_use]
pub fn call_detail(call_id: &str, signature: &Sealed) -> ReasoningDetail {
    ReasoningDetail::Encrypted {
        data: signature.value.clone(),
        id: Some(call_id.to_owned()),
        format: Some(signature.family.format().to_owned()),
        index: None,
    }
}

pub fn set_index(detail: &mut ReasoningDetail, at: usize) {
    let (ReasoningDetail::Text { index, .. }
    | ReasoningDetail::Summary { index, .. }
    | ReasoningDetail::Encrypted { index, .. }) = detail;
    *index = u32::try_from(at).ok();
}

/// What an assistant message's `reasoning_details` mean: reasoning items to put before the
/// message, and signatures for the message's tool calls, by call id.
#[must_use]
pub fn decode_details(
    details: Vec<ReasoningDetail>,
    call_ids: &[String],
) -> (Vec<Item>, Vec<(String, Sealed)>) {
    // An entry without a known format came from an OpenAI-compatible server: it goes back to
    // one.
    let family = |format: &Option<String>| {
        format
            .as_deref()
            .and_then(Family::from_format)
            .unwrap_or(Family::OpenAi)
    };
    let mut items = Vec::new();
    let mut call_signatures = Vec::new();
    for detail in details {
        match detail {
            ReasoningDetail::Text {
                text,
                signature,
                id,
                format,
                ..
            } => items.push(Item::Reasoning {
                id,
                text,
                summary: Vec::new(),
                signature: signature.map(|value| Sealed::new(family(&format), value)),
                encrypted: None,
            }),
            ReasoningDetail::Summary { summary, id, .. } => items.push(Item::Reasoning {
                id,
                text: String::new(),
                summary: vec![summary],
                signature: None,
                encrypted: None,
            }),
            ReasoningDetail::Encrypted {
                data, id, format, ..
            } => {
                let sealed = Sealed::new(family(&format), data);
                match id {
                    Some(id) if call_ids.contains(&id) => call_signatures.push((id, sealed)),
                    id => items.push(Item::Reasoning {
                        id,
                        text: String::new(),
                        summary: Vec::new(),
                        signature: None,
                        encrypted: Some(sealed),
                    }),
                }
            }
        }
    }
    (items, call_signatures)
}

/// A citation in Chat Completions' shape.
#[must_use]
pub fn annotation_wire(annotation: &Annotation) -> Value {
    match annotation {
        Annotation::UrlCitation {
            url,
            title,
            start_index,
            end_index,
        } => json!({
            "type": "url_citation",
            "url_citation": {
                "url": url,
                "title": title,
                "start_index": start_index,
                "end_index": end_index,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn details_round_trip_into_reasoning_items_and_call_signatures() {
        let blocks = vec![
            ReasoningBlock {
                text: "Let me think.".into(),
                signature: Some(Sealed::new(Family::Anthropic, "sig-a")),
                encrypted: None,
                ended: true,
            },
            ReasoningBlock {
                text: String::new(),
                signature: None,
                encrypted: Some(Sealed::new(Family::Anthropic, "redacted")),
                ended: true,
            },
        ];
        let calls = vec![ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
            signature: Some(Sealed::new(Family::Gemini, "thought-sig")),
        }];
        let details = details_of(&blocks, &calls);
        let wire = serde_json::to_value(&details).unwrap();
        assert_eq!(
            wire,
            json!([
                {"type": "reasoning.text", "text": "Let me think.", "signature": "sig-a",
                 "format": "anthropic-claude-v1", "index": 0},
                {"type": "reasoning.encrypted", "data": "redacted",
                 "format": "anthropic-claude-v1", "index": 1},
                {"type": "reasoning.encrypted", "data": "thought-sig", "id": "call_1",
                 "format": "google-gemini-v1", "index": 2},
            ])
        );
        let back: Vec<ReasoningDetail> = serde_json::from_value(wire).unwrap();
        let (items, signatures) = decode_details(back, &["call_1".to_owned()]);
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[0], Item::Reasoning { text, signature: Some(s), .. }
            if text == "Let me think." && *s == Sealed::new(Family::Anthropic, "sig-a"))
        );
        assert!(
            matches!(&items[1], Item::Reasoning { encrypted: Some(s), .. }
            if *s == Sealed::new(Family::Anthropic, "redacted"))
        );
        assert_eq!(
            signatures,
            vec![(
                "call_1".to_owned(),
                Sealed::new(Family::Gemini, "thought-sig")
            )]
        );
    }

    #[test]
    fn plain_reasoning_is_a_text_entry_of_no_family() {
        let blocks = vec![ReasoningBlock {
            text: "plain".into(),
            ..ReasoningBlock::default()
        }];
        assert_eq!(
            serde_json::to_value(details_of(&blocks, &[])).unwrap(),
            json!([{"type": "reasoning.text", "text": "plain", "index": 0}])
        );
        let (items, _) = decode_details(details_of(&blocks, &[]), &[]);
        assert!(matches!(
            &items[0],
            Item::Reasoning {
                signature: None,
                ..
            }
        ));
    }
}
