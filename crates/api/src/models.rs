//! The `GET /v1/models` wire shapes: OpenAI's `Model` and `ListModelsResponse`, extended with the
//! catalog facts clients commonly want (context window, capabilities, pricing). The extra fields
//! are additive, so OpenAI SDKs parse the list unchanged.
//!
//! This module does not read the catalog; the gateway fills in [`ModelEntry`] values.

use serde::Serialize;

/// One catalog entry as listed to clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    pub id: String,
    /// Always `"model"`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    pub owned_by: String,
    /// Tokens of prompt plus output the model accepts.
    pub context_window: u32,
    /// Names from `Capability::as_str` (`tools`, `vision`, ...).
    pub capabilities: Vec<String>,
    pub pricing: Pricing,
    /// What the model takes and gives, as the hosted platform lists it.
    pub architecture: Architecture,
}

/// Input and output modalities (`text`, `image`, `audio`, `file`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Architecture {
    pub input_modalities: Vec<&'static str>,
    pub output_modalities: Vec<&'static str>,
}

impl Architecture {
    /// The modalities a set of capability names implies.
    #[must_use]
    pub fn from_capabilities(capabilities: &[String]) -> Self {
        let has = |name: &str| capabilities.iter().any(|c| c == name);
        let mut input_modalities = vec!["text"];
        for (capability, modality) in [
            ("vision", "image"),
            ("audio_input", "audio"),
            ("files", "file"),
        ] {
            if has(capability) {
                input_modalities.push(modality);
            }
        }
        let mut output_modalities = vec!["text"];
        if has("audio_output") {
            output_modalities.push("audio");
        }
        Self {
            input_modalities,
            output_modalities,
        }
    }
}

/// Price per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pricing {
    pub input_per_million: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million: Option<f64>,
    pub output_per_million: f64,
    /// USD per web search, on models that can search (natively or through the gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_web_search: Option<f64>,
    /// Always `"USD"`.
    pub currency: &'static str,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListModelsResponse {
    /// Always `"list"`.
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

impl ModelEntry {
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        created: u64,
        owned_by: impl Into<String>,
        context_window: u32,
        capabilities: Vec<String>,
        pricing: Pricing,
    ) -> Self {
        Self {
            id: id.into(),
            object: "model",
            created,
            owned_by: owned_by.into(),
            context_window,
            architecture: Architecture::from_capabilities(&capabilities),
            capabilities,
            pricing,
        }
    }
}

impl Pricing {
    #[must_use]
    pub fn usd(input_per_million: f64, output_per_million: f64) -> Self {
        Self {
            input_per_million,
            cached_input_per_million: None,
            output_per_million,
            per_web_search: None,
            currency: "USD",
        }
    }

    /// Local models cost nothing per token.
    #[must_use]
    pub fn free() -> Self {
        Self::usd(0.0, 0.0)
    }
}

impl ListModelsResponse {
    #[must_use]
    pub fn new(data: Vec<ModelEntry>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use switchboard_testkit::validate_or_skip;

    fn entry() -> ModelEntry {
        ModelEntry::new(
            "smollm2-135m",
            1_700_000_000,
            "switchboard",
            8192,
            vec!["tools".into(), "json_schema".into()],
            Pricing::free(),
        )
    }

    #[test]
    fn model_entry_matches_spec() {
        let value = serde_json::to_value(entry()).unwrap();
        validate_or_skip("Model", &value);
        assert_eq!(
            value,
            json!({
                "id": "smollm2-135m", "object": "model", "created": 1_700_000_000u64,
                "owned_by": "switchboard", "context_window": 8192,
                "capabilities": ["tools", "json_schema"],
                "pricing": {"input_per_million": 0.0, "output_per_million": 0.0, "currency": "USD"},
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]}
            })
        );
    }

    #[test]
    fn list_matches_spec() {
        let mut paid = entry();
        paid.id = "gpt-4o".into();
        paid.pricing = Pricing::usd(2.5, 10.0);
        let list = ListModelsResponse::new(vec![entry(), paid]);
        let value = serde_json::to_value(&list).unwrap();
        validate_or_skip("ListModelsResponse", &value);
        assert_eq!(value["object"], "list");
        assert_eq!(value["data"][1]["pricing"]["output_per_million"], 10.0);
        validate_or_skip("ListModelsResponse", &json!({"object": "list", "data": []}));
    }
}
