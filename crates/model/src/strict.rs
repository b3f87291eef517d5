//! The JSON Schema subset OpenAI documents for strict structured outputs and strict tools, so a
//! strict request that OpenAI would refuse is refused here too, with the offending location.
//! Non-strict schemas skip this check and are enforced as far as the grammar compiler allows.

use serde_json::{Map, Value};

/// Keywords strict mode accepts, by the kind of schema they appear in.
const COMMON: &[&str] = &[
    "type",
    "description",
    "title",
    "enum",
    "const",
    "anyOf",
    "$ref",
    "$defs",
    "definitions",
    "default",
    "$schema",
    "$id",
    "$comment",
    "examples",
];
/// `minLength`/`maxLength` go beyond OpenAI's list: the grammar enforces them exactly, and they
/// are the natural way to keep a small model's strings short.
const STRING: &[&str] = &["pattern", "format", "minLength", "maxLength"];
const NUMBER: &[&str] = &[
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
];
const ARRAY: &[&str] = &["items", "minItems", "maxItems"];
const OBJECT: &[&str] = &["properties", "required", "additionalProperties"];
const FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];
const MAX_DEPTH: usize = 10;
const MAX_PROPERTIES: usize = 5000;

/// Checks a strict schema; the error says where it breaks the subset (a JSON pointer).
///
/// # Errors
/// A message naming the location and the rule it breaks.
pub fn check_strict(schema: &Value) -> Result<(), String> {
    let Value::Object(root) = schema else {
        return Err("at #: the schema must be a JSON object".into());
    };
    if root.get("type").and_then(Value::as_str) != Some("object") || root.contains_key("anyOf") {
        return Err("at #: the root schema must be of type 'object' and not use 'anyOf'".into());
    }
    let mut checker = Checker { properties: 0 };
    checker.check(schema, "#", 0)
}

struct Checker {
    properties: usize,
}

impl Checker {
    fn check(&mut self, schema: &Value, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "at {at}: schemas may nest at most {MAX_DEPTH} levels deep"
            ));
        }
        let Value::Object(map) = schema else {
            return Err(format!("at {at}: a schema must be a JSON object"));
        };
        let types = types_of(map);
        for key in map.keys() {
            let allowed = COMMON.contains(&key.as_str())
                || (types.iter().any(|t| t == "string") && STRING.contains(&key.as_str()))
                || (types.iter().any(|t| t == "number" || t == "integer")
                    && NUMBER.contains(&key.as_str()))
                || (types.iter().any(|t| t == "array") && ARRAY.contains(&key.as_str()))
                || (types.iter().any(|t| t == "object") && OBJECT.contains(&key.as_str()));
            if !allowed {
                return Err(format!(
                    "at {at}: '{key}' is not supported in strict mode{}",
                    if types.is_empty() {
                        String::new()
                    } else {
                        format!(" for type {}", types.join("/"))
                    }
                ));
            }
        }
        if types.is_empty()
            && !["enum", "const", "anyOf", "$ref"]
                .iter()
                .any(|k| map.contains_key(*k))
        {
            return Err(format!(
                "at {at}: every schema needs a 'type' (or 'enum', 'const', 'anyOf', '$ref')"
            ));
        }
        for t in &types {
            if ![
                "string", "number", "integer", "boolean", "object", "array", "null",
            ]
            .contains(&t.as_str())
            {
                return Err(format!("at {at}: unknown type '{t}'"));
            }
        }
        if let Some(format) = map.get("format").and_then(Value::as_str) {
            if !FORMATS.contains(&format) {
                return Err(format!(
                    "at {at}: format '{format}' is not supported; use one of {}",
                    FORMATS.join(", ")
                ));
            }
        }
        if types.iter().any(|t| t == "object") {
            self.check_object(map, at, depth)?;
        }
        if let Some(items) = map.get("items") {
            self.check(items, &format!("{at}/items"), depth + 1)?;
        }
        if let Some(options) = map.get("anyOf") {
            let Some(options) = options.as_array() else {
                return Err(format!("at {at}/anyOf: must be an array of schemas"));
            };
            for (i, option) in options.iter().enumerate() {
                self.check(option, &format!("{at}/anyOf/{i}"), depth + 1)?;
            }
        }
        for defs in ["$defs", "definitions"] {
            if let Some(Value::Object(defs_map)) = map.get(defs) {
                for (name, def) in defs_map {
                    self.check(def, &format!("{at}/{defs}/{name}"), depth)?;
                }
            }
        }
        if let Some(reference) = map.get("$ref") {
            let target = reference.as_str().unwrap_or_default();
            if !(target == "#" || target.starts_with("#/")) {
                return Err(format!(
                    "at {at}: only local references ('#/$defs/…') are supported, not '{target}'"
                ));
            }
        }
        Ok(())
    }

    fn check_object(
        &mut self,
        map: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        if map.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "at {at}: 'additionalProperties' is required to be supplied and to be false"
            ));
        }
        let empty = Map::new();
        let properties = match map.get("properties") {
            Some(Value::Object(properties)) => properties,
            None => &empty,
            Some(_) => return Err(format!("at {at}/properties: must be an object")),
        };
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in properties.keys() {
            if !required.contains(&name.as_str()) {
                return Err(format!(
                    "at {at}: 'required' must list every property; '{name}' is missing (make it nullable with a type array instead)"
                ));
            }
        }
        for name in &required {
            if !properties.contains_key(*name) {
                return Err(format!(
                    "at {at}: 'required' names '{name}', which is not in 'properties'"
                ));
            }
        }
        self.properties += properties.len();
        if self.properties > MAX_PROPERTIES {
            return Err(format!(
                "at {at}: a schema may have at most {MAX_PROPERTIES} properties in all"
            ));
        }
        for (name, property) in properties {
            self.check(property, &format!("{at}/properties/{name}"), depth + 1)?;
        }
        Ok(())
    }
}

fn types_of(map: &Map<String, Value>) -> Vec<String> {
    match map.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn person() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": ["integer", "null"], "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                "address": {"$ref": "#/$defs/address"},
                "pet": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/address"}]}
            },
            "required": ["name", "age", "tags", "address", "pet"],
            "additionalProperties": false,
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "format": "email"}},
                    "required": ["city"],
                    "additionalProperties": false
                }
            }
        })
    }

    #[test]
    fn the_documented_subset_passes() {
        assert_eq!(check_strict(&person()), Ok(()));
    }

    #[test]
    fn violations_name_their_location() {
        let mut schema = person();
        schema["properties"]["tags"]["items"]["oneOf"] = json!([]);
        let err = check_strict(&schema).unwrap_err();
        assert!(
            err.starts_with("at #/properties/tags/items: 'oneOf'"),
            "{err}"
        );

        let mut schema = person();
        schema["$defs"]["address"]["additionalProperties"] = json!(true);
        let err = check_strict(&schema).unwrap_err();
        assert!(
            err.starts_with("at #/$defs/address: 'additionalProperties'"),
            "{err}"
        );

        let mut schema = person();
        schema["required"] = json!(["name"]);
        assert!(check_strict(&schema)
            .unwrap_err()
            .contains("'age' is missing"));

        let mut schema = person();
        schema["properties"]["name"]["format"] = json!("credit-card");
        assert!(check_strict(&schema)
            .unwrap_err()
            .contains("format 'credit-card'"));

        let mut schema = person();
        schema["properties"]["name"]["$ref"] = json!("https://example.com/s.json");
        assert!(check_strict(&schema)
            .unwrap_err()
            .contains("only local references"));

        assert!(check_strict(&json!({"anyOf": [{"type": "object"}]}))
            .unwrap_err()
            .starts_with("at #: the root"));
        assert!(check_strict(&json!({"type": "object", "properties": {"x": {}}, "required": ["x"], "additionalProperties": false}))
            .unwrap_err()
            .contains("needs a 'type'"));
    }
}
