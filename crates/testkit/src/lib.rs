//! Test support: validates JSON bodies against the official OpenAI OpenAPI document kept in
//! `shared/spec/openai-openapi.yaml`, so our wire types are checked against the source of truth
//! rather than against our own reading of it.
//!
//! The spec is loaded and parsed once per process; each component schema is compiled once and
//! cached. This crate does not fetch the spec from the network and does not fail when it is
//! absent: [`validate_or_skip`] reports the absence on stderr and lets the test pass, so
//! `cargo test` works in a checkout without `shared/`.
//!
//! OpenAPI 3.1 schemas are JSON Schema 2020-12, except that this document still uses the
//! OpenAPI 3.0 `nullable: true` keyword in places; it is rewritten on load into
//! `anyOf: [<schema>, {type: null}]`, which is what it means.

pub mod servers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

/// Path of the spec relative to the directory that holds the workspace checkout.
pub const SPEC_RELATIVE_PATH: &str = "shared/spec/openai-openapi.yaml";

/// Environment variable that, when set, names the spec file to use instead of searching.
pub const SPEC_ENV: &str = "SWITCHBOARD_SPEC";

/// The parsed OpenAPI document with a cache of compiled per-schema validators.
pub struct Spec {
    path: PathBuf,
    /// `{"components": <spec components>}`: the root every compiled validator resolves against.
    components_root: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The spec, loaded on first call; `None` when the file is absent.
///
/// # Panics
/// When the file exists but cannot be read or parsed: a broken spec must not silently turn
/// every validation into a skip.
pub fn spec() -> Option<&'static Spec> {
    static SPEC: OnceLock<Result<Option<Spec>, String>> = OnceLock::new();
    match SPEC.get_or_init(load) {
        Ok(spec) => spec.as_ref(),
        Err(reason) => panic!("{reason}"),
    }
}

/// Validates `body` against `#/components/schemas/<schema_name>` when the spec is available and
/// panics with every validation error when it does not conform; when the spec is absent, prints
/// a note to stderr and returns.
///
/// # Panics
/// When the body does not conform, or the schema name is not in the spec.
#[track_caller]
pub fn validate_or_skip(schema_name: &str, body: &Value) {
    let Some(spec) = spec() else {
        eprintln!("skipping spec validation: ../{SPEC_RELATIVE_PATH} not found");
        return;
    };
    if let Err(errors) = spec.validate(schema_name, body) {
        let pretty = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
        panic!("body does not conform to {schema_name}:\n{errors}\nbody:\n{pretty}");
    }
}

impl Spec {
    /// Where the spec was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validates `body` against `#/components/schemas/<schema_name>`.
    ///
    /// # Errors
    /// One line per validation error, each naming the instance path (`/choices/0/index`), or a
    /// single line when the schema is unknown or does not compile.
    pub fn validate(&self, schema_name: &str, body: &Value) -> Result<(), String> {
        let validator = self.validator(schema_name)?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|error| {
                let path = error.instance_path.to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                format!("at {path}: {error}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    fn validator(&self, schema_name: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self
            .validators
            .lock()
            .map_err(|_| "validator cache poisoned by an earlier panic".to_owned())?;
        if let Some(validator) = cache.get(schema_name) {
            return Ok(Arc::clone(validator));
        }
        if self.components_root["components"]["schemas"]
            .get(schema_name)
            .is_none()
        {
            return Err(format!(
                "no schema named {schema_name} in {}",
                self.path.display()
            ));
        }
        let mut root = self.components_root.clone();
        if let Value::Object(map) = &mut root {
            map.insert(
                "$ref".to_owned(),
                Value::String(format!("#/components/schemas/{schema_name}")),
            );
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|error| format!("schema {schema_name} does not compile: {error}"))?;
        let validator = Arc::new(validator);
        cache.insert(schema_name.to_owned(), Arc::clone(&validator));
        Ok(validator)
    }
}

fn load() -> Result<Option<Spec>, String> {
    let Some(path) = locate() else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let YamlJson(document) = serde_yaml::from_str(&text)
        .map_err(|error| format!("cannot parse {}: {error}", path.display()))?;
    let mut components = document
        .get("components")
        .cloned()
        .ok_or_else(|| format!("{} has no components", path.display()))?;
    rewrite_nullable(&mut components);
    let mut root = Map::new();
    root.insert("components".to_owned(), components);
    Ok(Some(Spec {
        path,
        components_root: Value::Object(root),
        validators: Mutex::new(HashMap::new()),
    }))
}

/// A JSON value deserialized from YAML that maps 128-bit integers (the spec's `seed` bounds
/// exceed i64) to floats, which serde_json's own visitor refuses.
struct YamlJson(Value);

impl<'de> serde::Deserialize<'de> for YamlJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlJsonVisitor).map(YamlJson)
    }
}

struct YamlJsonVisitor;

impl<'de> serde::de::Visitor<'de> for YamlJsonVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E>(self, int: i64) -> Result<Value, E> {
        Ok(Value::from(int))
    }

    fn visit_u64<E>(self, int: u64) -> Result<Value, E> {
        Ok(Value::from(int))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i128<E>(self, int: i128) -> Result<Value, E> {
        Ok(Value::from(int as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u128<E>(self, int: u128) -> Result<Value, E> {
        Ok(Value::from(int as f64))
    }

    fn visit_f64<E>(self, float: f64) -> Result<Value, E> {
        Ok(Value::from(float))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, inner: D) -> Result<Value, D::Error> {
        inner.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(YamlJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((YamlJson(key), YamlJson(value))) = map.next_entry()? {
            let key = match key {
                Value::String(text) => text,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// `$SWITCHBOARD_SPEC`, else the first `shared/spec/openai-openapi.yaml` found next to this
/// crate's directory or any of its ancestors.
fn locate() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SPEC_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join(SPEC_RELATIVE_PATH))
        .find(|candidate| candidate.is_file())
}

/// Rewrites OpenAPI 3.0 `nullable: true` into the JSON Schema form, recursively. Keys of
/// `properties` maps are property names, not keywords, so a property called `nullable` is safe:
/// its value is a schema object, never the boolean `true`.
fn rewrite_nullable(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                rewrite_nullable(child);
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                let inner = std::mem::take(map);
                map.insert(
                    "anyOf".to_owned(),
                    Value::Array(vec![
                        Value::Object(inner),
                        serde_json::json!({"type": "null"}),
                    ]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nullable),
        _ => {}
    }
}

/// A test that cannot run because something it needs is missing: under CI (`CI=true`) that
/// is a failure, so a green run always means the tests ran; elsewhere it says why and skips.
/// Only for what the test script provides (the default model, the Python SDK); files outside
/// the repository (`../shared`) may be absent anywhere and always skip.
///
/// # Panics
/// Under CI.
#[track_caller]
pub fn skip_unless_ci(reason: &str) {
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !under_ci,
        "{reason} (CI=true: a test that cannot run fails; scripts/test.sh provides it)"
    );
    eprintln!("skipping: {reason}");
}

/// How long to wait before a test that counts within one UTC minute (a rate-limit window) has
/// at least ten seconds of it left: zero when it already has.
#[must_use]
pub fn wait_for_a_fresh_minute() -> std::time::Duration {
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 60);
    if into_minute > 50 {
        std::time::Duration::from_secs(61 - into_minute)
    } else {
        std::time::Duration::ZERO
    }
}

/// Where `switchboard pull` keeps the default model: `$SWITCHBOARD_HOME/models/…`, home
/// defaulting to `~/.cache/switchboard`. Tests that need the real model look here.
#[must_use]
pub fn default_model_path() -> std::path::PathBuf {
    let home = std::env::var_os("SWITCHBOARD_HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(
            || {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/switchboard")
            },
            std::path::PathBuf::from,
        );
    home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Checks a JSON value against a JSON Schema (draft 2020-12), as a client validating
/// structured output or tool arguments would.
///
/// # Errors
/// The first violations, joined, or why the schema itself is unusable.
pub fn check_against_schema(
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Result<(), String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| format!("unusable schema: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(instance)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn good_completion() -> Value {
        json!({
            "id": "chatcmpl-123",
            "object": "chat.completion",
            "created": 1_741_570_283,
            "model": "smollm2",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        })
    }

    #[test]
    fn accepts_a_known_good_completion() {
        let Some(spec) = spec() else {
            eprintln!("skipping spec validation: ../{SPEC_RELATIVE_PATH} not found");
            return;
        };
        spec.validate("CreateChatCompletionResponse", &good_completion())
            .unwrap();
        validate_or_skip("CreateChatCompletionResponse", &good_completion());
    }

    #[test]
    fn rejects_a_known_bad_completion_naming_each_path() {
        let Some(spec) = spec() else {
            eprintln!("skipping spec validation: ../{SPEC_RELATIVE_PATH} not found");
            return;
        };
        let mut bad = good_completion();
        bad["object"] = json!("chat.completions");
        bad["choices"][0]["index"] = json!("zero");
        bad["choices"][0]["finish_reason"] = json!("done");
        let errors = spec
            .validate("CreateChatCompletionResponse", &bad)
            .unwrap_err();
        assert!(errors.contains("/object"), "{errors}");
        assert!(errors.contains("/choices/0/index"), "{errors}");
        assert!(errors.contains("/choices/0/finish_reason"), "{errors}");
    }

    #[test]
    fn nullable_fields_accept_null() {
        let Some(spec) = spec() else {
            return;
        };
        // `usage` on a chunk is `$ref` + `nullable: true` in the document.
        let chunk = json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": null, "logprobs": null}],
            "usage": null
        });
        spec.validate("CreateChatCompletionStreamResponse", &chunk)
            .unwrap();
    }

    #[test]
    fn unknown_schema_is_an_error() {
        let Some(spec) = spec() else {
            return;
        };
        assert!(spec
            .validate("NoSuchSchema", &json!({}))
            .unwrap_err()
            .contains("NoSuchSchema"));
    }

    #[test]
    #[should_panic(expected = "does not conform")]
    fn validate_or_skip_panics_on_bad_bodies() {
        if spec().is_none() {
            panic!("does not conform (spec absent; keeping the expectation)");
        }
        validate_or_skip("CreateChatCompletionResponse", &json!({"id": 1}));
    }
}
