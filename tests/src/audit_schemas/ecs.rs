//! ECS from its official flat definition (`ecs_flat-<version>.yml`): every
//! field of a record is an ECS field or sits under a documented custom
//! field set; values have the field's type (an `ip` parses as an IP, a
//! `date` is RFC 3339, a `long` an integer, ...); array fields are arrays
//! and only they; `allowed_values` hold (`event.kind`, `event.category`,
//! `event.type`, `event.outcome`), and each `event.type` is one its
//! categories expect; required fields are present; `ecs.version` is the
//! definition's version.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// The custom field sets Palisade writes beside ECS, documented in
/// `filters/audit/README.md`.
pub const CUSTOM_FIELD_SETS: &[&str] = &["palisade"];

/// The `gen_ai` fields Palisade writes, with their types: ECS's `gen_ai`
/// field set (ECS 9, after the OpenTelemetry GenAI semantic conventions),
/// which the 8.11 definition predates. Checked like the definition's own.
pub const GEN_AI_FIELDS: &[(&str, &str)] = &[
    ("gen_ai.system", "keyword"),
    ("gen_ai.operation.name", "keyword"),
    ("gen_ai.request.model", "keyword"),
    ("gen_ai.request.max_tokens", "long"),
    ("gen_ai.response.model", "keyword"),
    ("gen_ai.usage.input_tokens", "long"),
    ("gen_ai.usage.output_tokens", "long"),
];

#[derive(Debug, Deserialize)]
struct Field {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    normalize: Vec<String>,
    #[serde(default)]
    allowed_values: Vec<AllowedValue>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    object_type: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AllowedValue {
    name: String,
    #[serde(default)]
    expected_event_types: Vec<String>,
}

/// The ECS fields, by flat name.
pub struct EcsSchema {
    fields: BTreeMap<String, Field>,
    /// Every prefix of a field name (`http`, `http.request`, ...).
    field_sets: BTreeSet<String>,
    version: String,
    rfc3339: Regex,
}

impl EcsSchema {
    /// Loads `ecs_flat-<version>.yml`.
    pub fn load(path: &Path) -> EcsSchema {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut fields: BTreeMap<String, Field> = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        for (name, kind) in GEN_AI_FIELDS {
            fields.entry(name.to_string()).or_insert_with(|| Field {
                kind: kind.to_string(),
                normalize: Vec::new(),
                allowed_values: Vec::new(),
                required: false,
                object_type: None,
                pattern: None,
            });
        }
        let mut field_sets = BTreeSet::new();
        for name in fields.keys() {
            let mut prefix = name.as_str();
            while let Some((head, _)) = prefix.rsplit_once('.') {
                field_sets.insert(head.to_string());
                prefix = head;
            }
        }
        let version = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("ecs_flat-"))
            .unwrap_or_default()
            .to_string();
        EcsSchema {
            fields,
            field_sets,
            version,
            rfc3339: Regex::new(
                r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$",
            )
            .expect("the RFC 3339 pattern"),
        }
    }

    /// Every violation in `record`; empty when it conforms.
    pub fn check(&self, record: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Value::Object(map) = record else {
            return vec!["an ECS record is a JSON object".into()];
        };
        for (key, value) in map {
            self.walk(key, value, &mut errors);
        }
        for (name, field) in &self.fields {
            if field.required && lookup(record, name).is_none() {
                errors.push(format!("required field `{name}` is missing"));
            }
        }
        if let Some(v) = lookup(record, "ecs.version") {
            if v != self.version.as_str() {
                errors.push(format!(
                    "ecs.version {v} is not the definition's {}",
                    self.version
                ));
            }
        }
        self.check_event_types(record, &mut errors);
        check_addresses_and_domains(record, &mut errors);
        errors
    }

    fn walk(&self, path: &str, value: &Value, errors: &mut Vec<String>) {
        let root = path.split('.').next().unwrap_or(path);
        if CUSTOM_FIELD_SETS.contains(&root) {
            return;
        }
        if let Some(field) = self.fields.get(path) {
            self.check_field(path, field, value, errors);
            return;
        }
        match value {
            Value::Object(map) if self.field_sets.contains(path) => {
                for (key, v) in map {
                    self.walk(&format!("{path}.{key}"), v, errors);
                }
            }
            _ => errors.push(format!(
                "`{path}` is not an ECS {} field (nor under a custom field set: {CUSTOM_FIELD_SETS:?})",
                self.version
            )),
        }
    }

    fn check_field(&self, path: &str, field: &Field, value: &Value, errors: &mut Vec<String>) {
        let is_array_field = field.normalize.iter().any(|n| n == "array");
        let values: Vec<&Value> = match value {
            Value::Array(items) if field.kind != "nested" => {
                if !is_array_field {
                    errors.push(format!("`{path}` is not an array field, got {value}"));
                }
                items.iter().collect()
            }
            _ if is_array_field => {
                errors.push(format!("`{path}` is an array field, got {value}"));
                vec![value]
            }
            _ => vec![value],
        };
        for v in values {
            if let Some(problem) = self.type_problem(field, v) {
                errors.push(format!("`{path}`: {problem}, got {v}"));
                continue;
            }
            if !field.allowed_values.is_empty() {
                let s = v.as_str().unwrap_or_default();
                if !field.allowed_values.iter().any(|a| a.name == s) {
                    errors.push(format!(
                        "`{path}`: {v} is not an allowed value ({})",
                        field
                            .allowed_values
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            if let (Some(pattern), Some(s)) = (&field.pattern, v.as_str()) {
                if !Regex::new(pattern).is_ok_and(|re| re.is_match(s)) {
                    errors.push(format!("`{path}`: {v} does not match {pattern}"));
                }
            }
        }
    }

    fn type_problem(&self, field: &Field, v: &Value) -> Option<String> {
        let ok = match field.kind.as_str() {
            "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => {
                v.is_string()
            }
            "long" => v.is_i64() || v.is_u64(),
            "float" | "scaled_float" | "half_float" | "double" => v.is_number(),
            "boolean" => v.is_boolean(),
            "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            "date" => v.as_str().is_some_and(|s| self.rfc3339.is_match(s)) || v.is_i64(),
            "object" => match (v, field.object_type.as_deref()) {
                (Value::Object(m), Some("keyword")) => m.values().all(Value::is_string),
                (Value::Object(_), _) => true,
                _ => false,
            },
            "flattened" => v.is_object(),
            "nested" => v.is_array() || v.is_object(),
            "geo_point" => v.is_object() || v.is_string() || v.is_array(),
            other => return Some(format!("type `{other}` is unknown to this checker")),
        };
        (!ok).then(|| format!("not of ECS type `{}`", field.kind))
    }

    /// Each `event.type` must be one that some `event.category` of the
    /// record expects.
    fn check_event_types(&self, record: &Value, errors: &mut Vec<String>) {
        let (Some(categories), Some(types)) = (
            lookup(record, "event.category").and_then(Value::as_array),
            lookup(record, "event.type").and_then(Value::as_array),
        ) else {
            return;
        };
        let Some(category_field) = self.fields.get("event.category") else {
            return;
        };
        let expected: BTreeSet<&str> = categories
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|c| category_field.allowed_values.iter().find(|a| a.name == c))
            .flat_map(|a| a.expected_event_types.iter().map(String::as_str))
            .collect();
        for t in types.iter().filter_map(Value::as_str) {
            if !expected.contains(t) {
                errors.push(format!(
                    "event.type `{t}` is expected by none of the categories {categories:?}"
                ));
            }
        }
    }
}

/// What the descriptions of ECS's address fields say, beyond their types:
/// `<set>.address` holds an IP, a domain or a socket path (never `ip:port`)
/// and an IP there is duplicated to `<set>.ip`; a `*.domain` is a name,
/// never a URL or a `host:port`, and `url.domain` keeps an IPv6 literal's
/// brackets (RFC 2732).
fn check_addresses_and_domains(record: &Value, errors: &mut Vec<String>) {
    for set in ["source", "destination", "client", "server"] {
        let Some(address) = lookup(record, &format!("{set}.address")).and_then(Value::as_str)
        else {
            continue;
        };
        if address.parse::<std::net::SocketAddr>().is_ok() {
            errors.push(format!(
                "`{set}.address` {address} holds a port: it goes to `{set}.port`"
            ));
        } else if let Ok(ip) = address.parse::<IpAddr>() {
            let dup = lookup(record, &format!("{set}.ip")).and_then(Value::as_str);
            if dup.and_then(|d| d.parse::<IpAddr>().ok()) != Some(ip) {
                errors.push(format!(
                    "`{set}.address` {address} is an IP: `{set}.ip` must repeat it"
                ));
            }
        }
    }
    let mut domains = Vec::new();
    collect_domains(record, "", &mut domains);
    for (path, domain) in domains {
        if domain.contains("://") || domain.contains('/') {
            errors.push(format!("`{path}` {domain:?} is a URL, not a domain"));
        }
        let (host, port) = match domain.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((_, tail)) => (&domain[..domain.len() - tail.len()], tail),
                None => (domain.as_str(), ""),
            },
            None => match domain.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => {
                    if path == "url.domain" {
                        errors.push(format!(
                            "`{path}` {domain:?}: an IPv6 literal keeps its brackets"
                        ));
                    }
                    continue;
                }
                _ => match domain.rsplit_once(':') {
                    Some((h, p)) => (h, p),
                    None => (domain.as_str(), ""),
                },
            },
        };
        if !port.is_empty() {
            errors.push(format!(
                "`{path}` {domain:?} holds a port ({host} + {port})"
            ));
        }
    }
}

fn collect_domains(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if CUSTOM_FIELD_SETS.contains(&p.as_str()) {
                continue;
            }
            match child {
                Value::String(s) if k == "domain" => out.push((p, s.clone())),
                _ => collect_domains(child, &p, out),
            }
        }
    }
}

/// The value at a dotted path, following nested objects.
fn lookup<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(record.get(head)?, rest)
}
