//! Checks responses against the served OpenAPI document: the path and method must be
//! documented, the status must be one of the operation's responses, and a JSON body
//! must validate against that response's schema.
//!
//! The validator is written here, over the subset of JSON Schema the document uses
//! (`$ref`, `allOf`, `oneOf`, `anyOf`, `type` as a name or a list, `enum`, `properties`,
//! `required`, `additionalProperties`, `items`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `minLength`, `maxLength`); the JSON Schema crates on crates.io
//! bring a regex engine, big-number arithmetic and (by default) an HTTP client for
//! remote `$ref`s, which a test of our own document does not need. A keyword outside
//! the subset fails the check, so the document cannot silently outgrow it.
//!
//! It is stricter than JSON Schema in one way: an object whose schema lists
//! `properties` may carry no member the schema (with its `allOf` parts) does not list,
//! unless `additionalProperties` gives a schema for them. So every field a response
//! carries is documented.

use serde_json::Value;
use std::collections::BTreeSet;

/// Keywords the validator understands or may ignore (annotations).
const KNOWN: &[&str] = &[
    "$ref",
    "allOf",
    "oneOf",
    "anyOf",
    "type",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "maxItems",
    "description",
    "format",
    "default",
    "title",
];

/// The document and the checks over it.
pub struct OpenApiCheck {
    doc: Value,
}

impl OpenApiCheck {
    /// Checks against `doc`.
    pub fn new(doc: Value) -> Self {
        Self { doc }
    }

    /// Checks one response. `path` may carry a query string. A route the document
    /// does not have may only answer 404 or 405 (the router's fallbacks), with the
    /// error shape when the body is JSON.
    pub fn response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), Vec<String>> {
        let path = path.split('?').next().unwrap_or(path);
        let at = format!("{method} {path} -> {status}");
        let Some(template) = self.template(path) else {
            if status != 404 && status != 405 {
                return Err(vec![format!("{at}: the path is not in the document")]);
            }
            return self.json_body(
                &at,
                &serde_json::json!({"$ref": "#/components/schemas/Error"}),
                body,
            );
        };
        let operation = &self.doc["paths"][template.as_str()][method.to_ascii_lowercase()];
        if operation.is_null() {
            return if status == 405 {
                Ok(())
            } else {
                Err(vec![format!(
                    "{at}: {method} {template} is not in the document"
                )])
            };
        }
        let response = &operation["responses"][status.to_string()];
        if response.is_null() {
            return Err(vec![format!(
                "{at}: status {status} is not documented for {method} {template}"
            )]);
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return Ok(());
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        let Some(media_doc) = content.get(media) else {
            return Err(vec![format!(
                "{at}: content type {media:?} is not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            )]);
        };
        match (media, media_doc.get("schema")) {
            ("application/json", Some(schema)) => self.json_body(&at, schema, body),
            _ => Ok(()),
        }
    }

    /// Checks `value` against the component schema `name`.
    pub fn component(&self, name: &str, value: &Value) -> Result<(), Vec<String>> {
        let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
        let mut errors = Vec::new();
        self.validate(&schema, value, "$", true, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn json_body(&self, at: &str, schema: &Value, body: &[u8]) -> Result<(), Vec<String>> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => return Err(vec![format!("{at}: the body is not JSON: {error}")]),
        };
        let mut errors = Vec::new();
        self.validate(schema, &value, "$", true, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.into_iter().map(|e| format!("{at}: {e}")).collect())
        }
    }

    /// The document's path template matching `path`, e.g. `/v1/campaigns/{id}`.
    fn template(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').collect();
        self.doc["paths"].as_object()?.keys().find_map(|template| {
            let pattern: Vec<&str> = template.split('/').collect();
            let matches = pattern.len() == parts.len()
                && pattern.iter().zip(&parts).all(|(p, s)| {
                    (p.starts_with('{') && p.ends_with('}') && !s.is_empty()) || p == s
                });
            matches.then(|| template.clone())
        })
    }

    fn resolve<'a>(&'a self, reference: &str) -> Option<&'a Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// The members an object schema lists, through `$ref` and `allOf`; `None` when it
    /// is open (lists no properties, or gives `additionalProperties`).
    fn declared(&self, schema: &Value) -> Option<BTreeSet<String>> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.declared(self.resolve(reference)?);
        }
        if schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return None;
        }
        let mut names = BTreeSet::new();
        let mut listed = false;
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            listed = true;
            names.extend(properties.keys().cloned());
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            listed = true;
            for part in parts {
                names.extend(self.declared(part)?);
            }
        }
        listed.then_some(names)
    }

    fn validate(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        strict: bool,
        errors: &mut Vec<String>,
    ) {
        let Some(map) = schema.as_object() else {
            errors.push(format!("{at}: schema is not an object: {schema}"));
            return;
        };
        for keyword in map.keys() {
            if !KNOWN.contains(&keyword.as_str()) {
                errors.push(format!(
                    "{at}: schema keyword {keyword:?} is not checked by this validator"
                ));
            }
        }
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.validate(target, value, at, strict, errors),
                None => errors.push(format!("{at}: unresolved $ref {reference}")),
            }
        }
        if let Some(parts) = map.get("allOf").and_then(Value::as_array) {
            for part in parts {
                self.validate(part, value, at, false, errors);
            }
        }
        for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            if let Some(branches) = map.get(keyword).and_then(Value::as_array) {
                let mut branch_errors = Vec::new();
                let passing = branches
                    .iter()
                    .filter(|branch| {
                        let mut errs = Vec::new();
                        self.validate(branch, value, at, strict, &mut errs);
                        let ok = errs.is_empty();
                        branch_errors.extend(errs);
                        ok
                    })
                    .count();
                if passing == 0 || (exactly_one && passing > 1) {
                    errors.push(format!(
                        "{at}: {passing} branches of {keyword} match {value}; errors: {branch_errors:?}"
                    ));
                }
            }
        }
        if let Some(types) = map.get("type") {
            let names: Vec<&str> = match types {
                Value::String(name) => vec![name.as_str()],
                Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.iter().any(|name| is_type(value, name)) {
                errors.push(format!("{at}: {value} is not of type {types}"));
                return;
            }
        }
        if let Some(allowed) = map.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(x) = value.as_f64() {
            let bound = |k: &str| map.get(k).and_then(Value::as_f64);
            if bound("minimum").is_some_and(|m| x < m)
                || bound("maximum").is_some_and(|m| x > m)
                || bound("exclusiveMinimum").is_some_and(|m| x <= m)
            {
                errors.push(format!("{at}: {x} is out of the schema's bounds"));
            }
        }
        if let Some(text) = value.as_str() {
            let chars = text.chars().count() as u64;
            let bound = |k: &str| map.get(k).and_then(Value::as_u64);
            if bound("minLength").is_some_and(|m| chars < m)
                || bound("maxLength").is_some_and(|m| chars > m)
            {
                errors.push(format!("{at}: {text:?} has a length out of bounds"));
            }
        }
        if let Some(items) = value.as_array() {
            if map
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                errors.push(format!("{at}: {} items, more than maxItems", items.len()));
            }
            if let Some(item_schema) = map.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.validate(item_schema, item, &format!("{at}[{i}]"), true, errors);
                }
            }
        }
        if let Some(object) = value.as_object() {
            if let Some(required) = map.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        errors.push(format!("{at}: required member {name:?} is missing"));
                    }
                }
            }
            let properties = map.get("properties").and_then(Value::as_object);
            for (name, member) in object {
                let member_at = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(member_schema) => {
                        self.validate(member_schema, member, &member_at, true, errors)
                    }
                    None => {
                        if let Some(extra) =
                            map.get("additionalProperties").filter(|a| a.is_object())
                        {
                            self.validate(extra, member, &member_at, true, errors);
                        }
                    }
                }
            }
            let declared = if strict && map.get("$ref").is_none() {
                self.declared(schema)
            } else {
                None
            };
            for name in object
                .keys()
                .filter(|name| declared.as_ref().is_some_and(|d| !d.contains(*name)))
            {
                errors.push(format!("{at}: member {name:?} is not in the schema"));
            }
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}
