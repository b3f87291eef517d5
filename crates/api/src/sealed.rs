//! Provider-tagged opaque values on the wire of the OpenAI surfaces.
//!
//! Chat Completions carries them in OpenRouter-style `reasoning_details` entries, whose `format`
//! names the provider family. The Responses API has one opaque slot, a reasoning item's
//! `encrypted_content`; there we write an envelope of our own that keeps the family, the
//! signature or encrypted payload, and — for a signature that belongs to a tool call (Gemini's
//! `thoughtSignature`) — the call's id, so a client replaying its items unchanged gives every
//! provider back exactly what it sent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use switchboard_model::{Family, Sealed};

const PREFIX: &str = "swb1_";

/// What an `encrypted_content` envelope holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub signature: Option<Sealed>,
    pub encrypted: Option<Sealed>,
    /// The tool call `signature` belongs to, when it is a call's rather than the reasoning's.
    pub call_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
}

impl Envelope {
    /// The envelope as `encrypted_content`; `None` when there is nothing to keep.
    #[must_use]
    pub fn seal(&self) -> Option<String> {
        let family = self.signature.as_ref().or(self.encrypted.as_ref())?.family;
        let value_of = |sealed: &Option<Sealed>| {
            sealed
                .as_ref()
                .filter(|sealed| sealed.family == family)
                .map(|sealed| sealed.value.clone())
        };
        let wire = Wire {
            f: family.format().to_owned(),
            s: value_of(&self.signature),
            e: value_of(&self.encrypted),
            c: self.call_id.clone(),
        };
        let json = serde_json::to_vec(&wire).ok()?;
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json)))
    }

    /// Reads an `encrypted_content` string. One that is not ours (a client replaying another
    /// gateway's items) is OpenAI's own encrypted reasoning.
    #[must_use]
    pub fn open(text: &str) -> Self {
        Self::open_ours(text).unwrap_or_else(|| Self {
            encrypted: Some(Sealed::new(Family::OpenAi, text)),
            ..Self::default()
        })
    }

    /// Reads an envelope this server wrote; `None` for any other string.
    #[must_use]
    pub fn open_ours(text: &str) -> Option<Self> {
        let wire = text
            .strip_prefix(PREFIX)
            .and_then(|encoded| URL_SAFE_NO_PAD.decode(encoded).ok())
            .and_then(|json| serde_json::from_slice::<Wire>(&json).ok())?;
        let family = Family::from_format(&wire.f)?;
        Some(Self {
            signature: wire.s.map(|value| Sealed::new(family, value)),
            encrypted: wire.e.map(|value| Sealed::new(family, value)),
            call_id: wire.c,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn envelopes_round_trip_and_foreign_blobs_are_openai_reasoning() {
        let envelope = Envelope {
            signature: Some(Sealed::new(Family::Gemini, "c2ln")),
            encrypted: None,
            call_id: Some("call_1".into()),
        };
        let text = envelope.seal().unwrap();
        assert!(text.starts_with(PREFIX));
        assert_eq!(Envelope::open(&text), envelope);
        assert_eq!(Envelope::default().seal(), None);
        let foreign = Envelope::open("gAAAAABo-opaque");
        assert_eq!(
            foreign.encrypted,
            Some(Sealed::new(Family::OpenAi, "gAAAAABo-opaque"))
        );
    }
}
