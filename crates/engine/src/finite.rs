//! Whether a JSON schema admits any finite value. A schema whose required properties refer back
//! to themselves (`{"$defs": {"p": {"properties": {"p": {"$ref": "#/$defs/p"}}, "required":
//! ["p"]}}}`) compiles into a grammar with no way out: decoding it could only end at a dead end.
//! Such a schema is refused up front instead.
//!
//! The check is a least fixpoint over the schema's local references: a reference is satisfiable
//! once its target is, starting from "not yet". Only references can make a schema endless
//! here: everything else (a `false` schema, a required name only `patternProperties` covers,
//! conflicting keywords) counts as finite and is left to the grammar compiler, which reports
//! real conflicts itself, so this check never refuses a schema the compiler would serve.

use std::collections::HashMap;

use serde_json::Value;

/// More references than this are not analysed (the compiler bounds such schemas itself).
const MAX_REFERENCES: usize = 512;

/// Schema nodes the fixpoint may visit in all before it gives up (and lets the schema through):
/// a hostile schema must not cost more than a few milliseconds here.
const MAX_VISITS: usize = 200_000;

/// `Err` with the location of a reference that can never be completed, when the schema as a
/// whole admits no finite value.
pub fn check_finite(schema: &Value) -> Result<(), String> {
    let mut references = Vec::new();
    collect_references(schema, &mut references);
    references.sort();
    references.dedup();
    if references.len() > MAX_REFERENCES {
        return Ok(());
    }
    let mut known: HashMap<&str, bool> = references.iter().map(|r| (r.as_str(), false)).collect();
    let mut visits = 0;
    loop {
        let mut changed = false;
        for reference in &references {
            if known[reference.as_str()] {
                continue;
            }
            let finite =
                resolve(schema, reference).is_none_or(|target| finite(target, &known, &mut visits));
            if visits > MAX_VISITS {
                return Ok(());
            }
            if finite {
                known.insert(reference.as_str(), true);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if finite(schema, &known, &mut visits) {
        return Ok(());
    }
    let endless = references
        .iter()
        .find(|r| !known[r.as_str()])
        .map_or_else(|| "#".to_owned(), Clone::clone);
    Err(format!(
        "no finite JSON value satisfies it: '{endless}' requires itself without end (make \
         the recursive property optional or nullable)"
    ))
}

fn collect_references(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) if reference.starts_with('#') => {
                        out.push(reference.clone());
                    }
                    ("const" | "enum" | "default" | "examples", _) => {}
                    (_, value) => collect_references(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        _ => {}
    }
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() || pointer == "/" {
        return Some(root);
    }
    root.pointer(pointer)
}

/// Whether `schema` admits a finite value, given which references are known to.
fn finite(schema: &Value, known: &HashMap<&str, bool>, visits: &mut usize) -> bool {
    *visits += 1;
    let Value::Object(map) = schema else {
        // `true` admits anything; `false` is a conflict for the compiler to report.
        return true;
    };
    if let Some(Value::String(reference)) = map.get("$ref") {
        if !known.get(reference.as_str()).copied().unwrap_or(true) {
            return false;
        }
    }
    if map.contains_key("const") || map.contains_key("enum") {
        return true;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = map.get(key) {
            if !branches.iter().any(|branch| finite(branch, known, visits)) {
                return false;
            }
        }
    }
    if let Some(Value::Array(parts)) = map.get("allOf") {
        if !parts.iter().all(|part| finite(part, known, visits)) {
            return false;
        }
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let may_be = |kind: &str| types.is_empty() || types.contains(&kind);
    // Any allowed scalar type ends at once.
    if types.is_empty() && !map.contains_key("properties") && !map.contains_key("items")
        || types
            .iter()
            .any(|kind| !matches!(*kind, "object" | "array"))
    {
        return true;
    }
    (may_be("object") && finite_object(map, known, visits))
        || (may_be("array") && finite_array(map, known, visits))
}

fn finite_object(
    map: &serde_json::Map<String, Value>,
    known: &HashMap<&str, bool>,
    visits: &mut usize,
) -> bool {
    let Some(Value::Array(required)) = map.get("required") else {
        return true;
    };
    let properties = map.get("properties").and_then(Value::as_object);
    // A required name without its own schema may be met by `patternProperties` or
    // `additionalProperties`; only a named property's schema is followed.
    required.iter().filter_map(Value::as_str).all(|name| {
        properties
            .and_then(|p| p.get(name))
            .is_none_or(|property| finite(property, known, visits))
    })
}

fn finite_array(
    map: &serde_json::Map<String, Value>,
    known: &HashMap<&str, bool>,
    visits: &mut usize,
) -> bool {
    let min_items = map.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    if let Some(Value::Array(prefix)) = map.get("prefixItems") {
        let needed = usize::try_from(min_items)
            .unwrap_or(usize::MAX)
            .min(prefix.len());
        if !prefix[..needed]
            .iter()
            .all(|item| finite(item, known, visits))
        {
            return false;
        }
        if min_items as usize <= prefix.len() {
            return true;
        }
    }
    min_items == 0
        || map
            .get("items")
            .is_none_or(|items| finite(items, known, visits))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::check_finite;

    #[test]
    fn required_self_reference_is_endless() {
        let cycle = json!({"$defs": {"p": {"type": "object", "properties": {"p": {"$ref": "#/$defs/p"}},
                             "required": ["p"]}}, "$ref": "#/$defs/p"});
        let problem = check_finite(&cycle).unwrap_err();
        assert!(problem.contains("#/$defs/p"), "{problem}");
        let root =
            json!({"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]});
        assert!(check_finite(&root).is_err());
        let array = json!({"type": "array", "minItems": 1, "items": {"$ref": "#"}});
        assert!(check_finite(&array).is_err());
    }

    #[test]
    fn recursion_with_a_way_out_is_finite() {
        let optional = json!({"type": "object", "properties": {"p": {"$ref": "#"}}});
        assert!(check_finite(&optional).is_ok());
        let nullable = json!({"$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
            "required": ["value", "next"], "additionalProperties": false}},
            "$ref": "#/$defs/node"});
        assert!(check_finite(&nullable).is_ok());
        let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
                          "required": ["children"]});
        assert!(check_finite(&tree).is_ok());
        let mutual_with_exit = json!({"$defs": {
            "a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
            "b": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}}, "$ref": "#/$defs/a"});
        assert!(check_finite(&mutual_with_exit).is_ok());
        assert!(check_finite(&json!({"type": "object"})).is_ok());
        assert!(check_finite(&json!(true)).is_ok());
        // Required names met by patternProperties, and `false` schemas, are the compiler's call.
        let pattern = json!({"type": "object", "patternProperties": {"^x": {"type": "string"}},
                             "required": ["x1"], "additionalProperties": false});
        assert!(check_finite(&pattern).is_ok());
        assert!(check_finite(&json!({"properties": {"a": false}, "required": ["a"]})).is_ok());
    }

    #[test]
    fn a_long_reference_chain_is_cheap() {
        // Each reference depends on the next, in the order the fixpoint visits them last.
        let mut defs = serde_json::Map::new();
        for i in 0..500 {
            let next = if i == 499 {
                json!({"type": "string"})
            } else {
                json!({"type": "object", "properties": {"n": {"$ref": format!("#/$defs/d{:03}", i + 1)}},
                       "required": ["n"]})
            };
            defs.insert(format!("d{i:03}"), next);
        }
        let schema = json!({"$defs": defs, "$ref": "#/$defs/d000"});
        let started = std::time::Instant::now();
        assert!(check_finite(&schema).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
