//! A small walker for Kubernetes structural schemas (a CRD's `openAPIV3Schema`): `type`,
//! `nullable`, `required`, `properties` (unknown fields are errors unless
//! `x-kubernetes-preserve-unknown-fields`), `additionalProperties`, `items`, `enum`, `pattern`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`, `format` int32/int64,
//! `x-kubernetes-int-or-string`, `allOf`/`anyOf`/`oneOf`. The API server would silently prune
//! an unknown field; here it is reported, with its JSON path.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::parse_documents;

/// The schema of every version of one CRD.
pub struct CrdSchemas {
    group: String,
    kind: String,
    versions: BTreeMap<String, Value>,
}

impl CrdSchemas {
    /// From the CRD file's text.
    pub fn from_crd_yaml(text: &str) -> Result<CrdSchemas, String> {
        let docs = parse_documents(text)?;
        let crd = docs
            .iter()
            .find(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
            .ok_or("no CustomResourceDefinition document")?;
        let s = |p: &str| {
            crd.pointer(p)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or(format!("no {p}"))
        };
        let mut versions = BTreeMap::new();
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or("no /spec/versions")?
        {
            if let (Some(name), Some(schema)) = (
                v.get("name").and_then(Value::as_str),
                v.pointer("/schema/openAPIV3Schema"),
            ) {
                versions.insert(name.to_string(), schema.clone());
            }
        }
        if versions.is_empty() {
            return Err("no version with an openAPIV3Schema".into());
        }
        Ok(CrdSchemas {
            group: s("/spec/group")?,
            kind: s("/spec/names/kind")?,
            versions,
        })
    }

    /// Findings for one custom object of this CRD's kind.
    pub fn check(&self, api_version: &str, obj: &Value) -> Vec<String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if group != self.group {
            return vec![format!(
                "apiVersion {api_version}: the {} CRD serves group {}",
                self.kind, self.group
            )];
        }
        let Some(schema) = self.versions.get(version) else {
            let known: Vec<&str> = self.versions.keys().map(String::as_str).collect();
            return vec![format!(
                "apiVersion {api_version}: the CRD has no version {version} (has: {})",
                known.join(", ")
            )];
        };
        let mut errs = Vec::new();
        // The API server adds apiVersion, kind and metadata to every root schema.
        let mut body = obj.clone();
        if let Some(map) = body.as_object_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                map.remove(k);
            }
        }
        walk(schema, &body, "", &mut errs);
        errs
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("number", Value::Number(_)) => true,
        (w, v) => w == type_name(v),
    }
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn len_bounds(schema: &Value, len: usize, what: &str, path: &str, errs: &mut Vec<String>) {
    let len = len as f64;
    let (min, max) = match what {
        "characters" => (num(schema, "minLength"), num(schema, "maxLength")),
        _ => (num(schema, "minItems"), num(schema, "maxItems")),
    };
    if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
        errs.push(format!(
            "{}: {len} {what}, outside [{}, {}]",
            shown(path),
            min.map_or("-".into(), |m| m.to_string()),
            max.map_or("-".into(), |m| m.to_string())
        ));
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// Check `v` at JSON path `path` against `schema`, pushing `path: reason` findings.
pub fn walk(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let at = shown(path);
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errs.push(format!("{at}: null is not allowed here"));
        }
        return;
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(sub, v, path, errs);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let passing = alts
                .iter()
                .filter(|alt| {
                    let mut e = Vec::new();
                    walk(alt, v, path, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if key == "anyOf" {
                passing >= 1
            } else {
                passing == 1
            };
            if !ok {
                errs.push(format!("{at}: matches {passing} of the {key} alternatives"));
            }
        }
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            errs.push(format!(
                "{at}: expected an integer or a string, got {}",
                type_name(v)
            ));
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !type_ok(want, v)
    {
        errs.push(format!("{at}: expected {want}, got {}", type_name(v)));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errs.push(format!("{at}: {v} is not one of {}", list.join(", ")));
    }
    match v {
        Value::String(s) => {
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        errs.push(format!("{at}: {s:?} does not match the pattern {p:?}"));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        errs.push(format!("{at}: the schema's pattern {p:?} is invalid: {e}"))
                    }
                }
            }
            len_bounds(schema, s.chars().count(), "characters", path, errs);
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if num(schema, "minimum").is_some_and(|m| x < m) {
                errs.push(format!(
                    "{at}: {n} is below the minimum {}",
                    schema["minimum"]
                ));
            }
            if num(schema, "maximum").is_some_and(|m| x > m) {
                errs.push(format!(
                    "{at}: {n} is above the maximum {}",
                    schema["maximum"]
                ));
            }
            let range = match schema.get("format").and_then(Value::as_str) {
                Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
                Some("uint32") => Some((0.0, f64::from(u32::MAX))),
                _ => None,
            };
            if range.is_some_and(|(lo, hi)| x < lo || x > hi) {
                errs.push(format!(
                    "{at}: {n} does not fit the format {}",
                    schema["format"]
                ));
            }
        }
        Value::Array(items) => {
            len_bounds(schema, items.len(), "items", path, errs);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => walk_object(schema, map, path, errs),
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    let at = shown(path);
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = req.as_str()
            && !map.contains_key(name)
        {
            errs.push(format!("{at}: missing required field {name}"));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    for (k, val) in map {
        let p = format!("{path}.{k}");
        if let Some(sub) = props.and_then(|ps| ps.get(k)) {
            walk(sub, val, &p, errs);
        } else if let Some(add) = additional {
            match add {
                Value::Bool(false) => errs.push(format!("{p}: unknown field")),
                Value::Bool(true) => {}
                sub => walk(sub, val, &p, errs),
            }
        } else if props.is_some() && !preserve {
            let known: Vec<&str> = props
                .into_iter()
                .flat_map(|ps| ps.keys().map(String::as_str))
                .collect();
            errs.push(format!(
                "{p}: unknown field (the schema has: {})",
                known.join(", ")
            ));
        }
    }
}
