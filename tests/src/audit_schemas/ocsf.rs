//! OCSF from its schema source (`dictionary.json`, `categories.json`,
//! `events/`, `objects/`, `profiles/`), compiled the way the OCSF compiler
//! does it (`extends` chains, `$include`d profiles whose attributes carry
//! their profile, dictionary definitions under each attribute, enums merged,
//! `class_uid` / `category_uid` / `type_uid` enums of each class, the
//! `<name>_dt` attributes of the `datetime` profile), and records checked with
//! the rules of the OCSF server's validator (`Schema.Validator2`):
//! attributes defined in the class or object (only profile attributes of
//! profiles declared in `metadata.profiles`), types, ranges, lengths and
//! patterns of the dictionary types, required attributes, enum values, enum
//! and name pairs (a 99 "Other" carries the source's own name),
//! `at_least_one` / `just_one` constraints, deprecations, `metadata.version`
//! and `type_uid`. Where the server only warns (pattern mismatch, a sibling
//! that does not match its enum, a deprecated attribute), this checker
//! fails: a SIEM may drop such a record. An `ip_t` must also parse as an IP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use regex::Regex;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
struct Attr {
    /// A dictionary type (`string_t`, ...) or an object name.
    kind: String,
    is_array: bool,
    required: bool,
    /// Enum values (as strings) and their captions; deprecated ones flagged.
    enumeration: Option<BTreeMap<String, (String, bool)>>,
    sibling: Option<String>,
    profile: Option<String>,
    deprecated: bool,
}

#[derive(Debug, Default)]
struct Item {
    name: String,
    attrs: BTreeMap<String, Attr>,
    at_least_one: Vec<Vec<String>>,
    just_one: Vec<Vec<String>>,
}

#[derive(Debug)]
struct DataType {
    base: Option<String>,
    regex: Option<Regex>,
    max_len: Option<usize>,
    range: Option<(f64, f64)>,
    values: Option<Vec<Value>>,
}

/// A compiled OCSF schema.
pub struct OcsfSchema {
    version: String,
    types: BTreeMap<String, DataType>,
    objects: BTreeMap<String, Item>,
    classes: BTreeMap<i64, Item>,
    profiles: BTreeSet<String>,
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn json_files(dir: &Path, out: &mut Vec<Value>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(read_json(&path));
        }
    }
}

/// Merges `over` onto `base`: objects key by key (so enums gather their
/// members), anything else replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The raw definitions of one kind (objects or events), by name.
struct Sources {
    by_name: BTreeMap<String, Value>,
}

impl Sources {
    fn new(items: Vec<Value>) -> Self {
        let by_name = items
            .into_iter()
            .filter_map(|v| Some((v["name"].as_str()?.to_string(), v)))
            .collect();
        Sources { by_name }
    }

    /// An item with its `extends` chain and `$include`d profiles folded in:
    /// its merged raw attributes, constraints, and the chain's `category`.
    fn resolve(&self, name: &str, root: &Path) -> (Map<String, Value>, Value, Option<String>) {
        let item = self
            .by_name
            .get(name)
            .unwrap_or_else(|| panic!("OCSF: no definition named {name}"));
        let (mut attrs, mut constraints, mut category) = match item["extends"].as_str() {
            Some(parent) => self.resolve(parent, root),
            None => (Map::new(), Value::Null, None),
        };
        if let Some(c) = item["category"].as_str() {
            category = Some(c.to_string());
        }
        if !item["constraints"].is_null() {
            constraints = item["constraints"].clone();
        }
        let own = item["attributes"].as_object().cloned().unwrap_or_default();
        for include in own
            .get("$include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let profile = read_json(&root.join(include));
            let profile_name = profile["name"].as_str().unwrap_or_default().to_string();
            for (k, v) in profile["attributes"].as_object().into_iter().flatten() {
                let mut tagged = v.clone();
                tagged["profile"] = Value::String(profile_name.clone());
                let slot = attrs.entry(k.clone()).or_insert(Value::Object(Map::new()));
                merge(slot, &tagged);
            }
        }
        for (k, v) in own.iter().filter(|(k, _)| *k != "$include") {
            let slot = attrs.entry(k.clone()).or_insert(Value::Object(Map::new()));
            merge(slot, v);
        }
        (attrs, constraints, category)
    }
}

fn enumeration(v: &Value) -> Option<BTreeMap<String, (String, bool)>> {
    let map = v.as_object()?;
    Some(
        map.iter()
            .map(|(k, m)| {
                (
                    k.clone(),
                    (
                        m["caption"].as_str().unwrap_or_default().to_string(),
                        m.get("@deprecated").is_some(),
                    ),
                )
            })
            .collect(),
    )
}

fn constraint_lists(constraints: &Value, key: &str) -> Vec<Vec<String>> {
    match constraints.get(key).and_then(Value::as_array) {
        Some(list) => vec![list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()],
        None => Vec::new(),
    }
}

impl OcsfSchema {
    /// Compiles the schema source in `root`.
    pub fn load(root: &Path) -> OcsfSchema {
        let version = read_json(&root.join("version.json"))["version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dictionary = read_json(&root.join("dictionary.json"));
        let dict_attrs = dictionary["attributes"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let types = dictionary["types"]["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, t)| {
                let range = t["range"]
                    .as_array()
                    .and_then(|r| Some((r.first()?.as_f64()?, r.get(1)?.as_f64()?)));
                (
                    name.clone(),
                    DataType {
                        base: t["type"].as_str().map(str::to_string),
                        regex: t["regex"].as_str().map(|r| {
                            Regex::new(r).unwrap_or_else(|e| panic!("OCSF type {name} regex: {e}"))
                        }),
                        max_len: t["max_len"].as_u64().map(|n| n as usize),
                        range,
                        values: t["values"].as_array().cloned(),
                    },
                )
            })
            .collect();
        let categories = read_json(&root.join("categories.json"));
        let mut profiles = BTreeSet::new();
        let mut profile_files = Vec::new();
        json_files(&root.join("profiles"), &mut profile_files);
        for p in &profile_files {
            if let Some(n) = p["name"].as_str() {
                profiles.insert(n.to_string());
            }
        }

        let compile = |name: &str, raw: Map<String, Value>, constraints: &Value| -> Item {
            let mut attrs = BTreeMap::new();
            for (attr_name, over) in raw {
                let mut full = dict_attrs
                    .get(&attr_name)
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                merge(&mut full, &over);
                let kind = full["type"].as_str().unwrap_or("string_t").to_string();
                let attr = Attr {
                    kind: kind.clone(),
                    is_array: full["is_array"].as_bool().unwrap_or(false),
                    required: full["requirement"] == "required",
                    enumeration: enumeration(&full["enum"]),
                    sibling: full["sibling"].as_str().map(str::to_string),
                    profile: full["profile"].as_str().map(str::to_string),
                    deprecated: full.get("@deprecated").is_some(),
                };
                if kind == "timestamp_t" {
                    attrs.insert(
                        format!("{attr_name}_dt"),
                        Attr {
                            kind: "datetime_t".into(),
                            required: false,
                            enumeration: None,
                            sibling: None,
                            profile: Some("datetime".into()),
                            ..attr.clone()
                        },
                    );
                }
                attrs.insert(attr_name, attr);
            }
            Item {
                name: name.to_string(),
                attrs,
                at_least_one: constraint_lists(constraints, "at_least_one"),
                just_one: constraint_lists(constraints, "just_one"),
            }
        };

        let mut object_files = Vec::new();
        json_files(&root.join("objects"), &mut object_files);
        let object_sources = Sources::new(object_files);
        let objects = object_sources
            .by_name
            .keys()
            .map(|name| {
                let (raw, constraints, _) = object_sources.resolve(name, root);
                (name.clone(), compile(name, raw, &constraints))
            })
            .collect();

        let mut event_files = Vec::new();
        json_files(&root.join("events"), &mut event_files);
        let event_sources = Sources::new(event_files);
        let mut classes = BTreeMap::new();
        for (name, event) in &event_sources.by_name {
            let Some(uid) = event["uid"].as_i64() else {
                continue;
            };
            let (raw, constraints, category) = event_sources.resolve(name, root);
            let Some(category) = category else { continue };
            let category_def = &categories["attributes"][&category];
            let Some(category_uid) = category_def["uid"].as_i64() else {
                continue;
            };
            let class_uid = category_uid * 1000 + uid;
            let caption = event["caption"].as_str().unwrap_or_default().to_string();
            let mut item = compile(name, raw, &constraints);
            let one =
                |k: i64, caption: String| Some(BTreeMap::from([(k.to_string(), (caption, false))]));
            if let Some(a) = item.attrs.get_mut("class_uid") {
                a.enumeration = one(class_uid, caption.clone());
            }
            if let Some(a) = item.attrs.get_mut("category_uid") {
                a.enumeration = one(
                    category_uid,
                    category_def["caption"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            let activities = item
                .attrs
                .get("activity_id")
                .and_then(|a| a.enumeration.clone())
                .unwrap_or_default();
            if let Some(a) = item.attrs.get_mut("type_uid") {
                a.enumeration = Some(
                    activities
                        .iter()
                        .filter_map(|(k, (c, d))| {
                            let id: i64 = k.parse().ok()?;
                            Some((
                                (class_uid * 100 + id).to_string(),
                                (format!("{caption}: {c}"), *d),
                            ))
                        })
                        .collect(),
                );
            }
            classes.insert(class_uid, item);
        }
        OcsfSchema {
            version,
            types,
            objects,
            classes,
            profiles,
        }
    }

    /// Every violation in `event`; empty when it conforms.
    pub fn check(&self, event: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(class_uid) = event["class_uid"].as_i64() else {
            return vec!["`class_uid` is missing or not an integer".into()];
        };
        let Some(class) = self.classes.get(&class_uid) else {
            return vec![format!(
                "no OCSF {} class has uid {class_uid}",
                self.version
            )];
        };
        let declared: Vec<String> = match &event["metadata"]["profiles"] {
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        for p in &declared {
            if !self.profiles.contains(p) {
                errors.push(format!("metadata.profiles: no profile is named `{p}`"));
            }
        }
        let checker = Checker {
            schema: self,
            profiles: &declared,
        };
        checker.item(event, "", class, &mut errors);
        match event["metadata"]["version"].as_str() {
            Some(v) if v == self.version => {}
            other => errors.push(format!(
                "metadata.version {other:?} is not the schema's {}",
                self.version
            )),
        }
        if let (Some(c), Some(a), Some(t)) = (
            event["class_uid"].as_i64(),
            event["activity_id"].as_i64(),
            event["type_uid"].as_i64(),
        ) {
            if t != c * 100 + a {
                errors.push(format!(
                    "type_uid {t} is not class_uid * 100 + activity_id = {}",
                    c * 100 + a
                ));
            }
        }
        errors
    }
}

/// `host:port` or `[v6]:port` (a bare IPv6 address holds no port).
fn holds_a_port(s: &str) -> bool {
    match s.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, tail)| !tail.is_empty()),
        None => s.parse::<IpAddr>().is_err() && s.contains(':'),
    }
}

struct Checker<'a> {
    schema: &'a OcsfSchema,
    profiles: &'a [String],
}

impl Checker<'_> {
    fn visible(&self, attr: &Attr) -> bool {
        attr.profile
            .as_ref()
            .is_none_or(|p| self.profiles.iter().any(|d| d == p))
    }

    fn item(&self, value: &Value, path: &str, schema_item: &Item, errors: &mut Vec<String>) {
        let Value::Object(map) = value else {
            errors.push(format!("`{path}` must be an object ({})", schema_item.name));
            return;
        };
        let at = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        for (name, attr) in schema_item.attrs.iter().filter(|(_, a)| self.visible(a)) {
            match map.get(name) {
                None | Some(Value::Null) => {
                    if attr.required {
                        errors.push(format!("required attribute `{}` is missing", at(name)));
                    }
                }
                Some(v) => self.attribute(v, &at(name), name, attr, map, errors),
            }
        }
        // An object with no attributes at all (`object`, as `unmapped`) is open.
        if !schema_item.attrs.is_empty() {
            for key in map.keys() {
                match schema_item.attrs.get(key) {
                    Some(a) if self.visible(a) => {}
                    Some(a) => errors.push(format!(
                        "`{}` belongs to profile `{}`, which metadata.profiles does not declare",
                        at(key),
                        a.profile.as_deref().unwrap_or_default()
                    )),
                    None => errors.push(format!(
                        "`{}` is not an attribute of {}",
                        at(key),
                        schema_item.name
                    )),
                }
            }
        }
        for group in &schema_item.at_least_one {
            if !group.iter().any(|k| map.contains_key(k)) {
                errors.push(format!(
                    "`{}` ({}) needs at least one of {group:?}",
                    if path.is_empty() { "event" } else { path },
                    schema_item.name
                ));
            }
        }
        for group in &schema_item.just_one {
            if group.iter().filter(|k| map.contains_key(*k)).count() != 1 {
                errors.push(format!(
                    "`{}` ({}) needs exactly one of {group:?}",
                    if path.is_empty() { "event" } else { path },
                    schema_item.name
                ));
            }
        }
    }

    fn attribute(
        &self,
        value: &Value,
        path: &str,
        name: &str,
        attr: &Attr,
        parent: &Map<String, Value>,
        errors: &mut Vec<String>,
    ) {
        if attr.deprecated {
            errors.push(format!("`{path}` is deprecated"));
        }
        let values: Vec<(String, &Value)> = if attr.is_array {
            match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect(),
                _ => {
                    errors.push(format!("`{path}` must be an array of {}", attr.kind));
                    return;
                }
            }
        } else {
            vec![(path.to_string(), value)]
        };
        for (i, (p, v)) in values.iter().enumerate() {
            if let Some(object) = self.schema.objects.get(&attr.kind) {
                self.item(v, p, object, errors);
            } else {
                self.typed(v, p, &attr.kind, errors);
            }
            let Some(members) = &attr.enumeration else {
                continue;
            };
            let key = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let Some((caption, deprecated)) = members.get(&key) else {
                errors.push(format!(
                    "`{p}`: {v} is not a value of enum `{name}` ({})",
                    members.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            if *deprecated {
                errors.push(format!("`{p}`: value {v} is deprecated"));
            }
            let Some(sibling) = &attr.sibling else {
                continue;
            };
            let sibling_value = match (&parent.get(sibling), attr.is_array) {
                (Some(Value::Array(list)), true) => list.get(i),
                (s, false) => *s,
                _ => None,
            };
            let Some(sibling_value) = sibling_value else {
                continue;
            };
            if v.as_i64() == Some(99) {
                if sibling_value == caption.as_str() {
                    errors.push(format!(
                        "`{sibling}` is {sibling_value} for `{p}` 99: an \"Other\" value carries the source's own name"
                    ));
                }
            } else if sibling_value != caption.as_str() {
                errors.push(format!(
                    "`{sibling}` is {sibling_value}, but `{p}` {v} is \"{caption}\""
                ));
            }
        }
    }

    fn typed(&self, v: &Value, path: &str, kind: &str, errors: &mut Vec<String>) {
        let Some(t) = self.schema.types.get(kind) else {
            errors.push(format!("`{path}`: type `{kind}` is not in the dictionary"));
            return;
        };
        let base = t.base.as_deref().unwrap_or(kind);
        let ok = match base {
            "boolean_t" => v.is_boolean(),
            "float_t" => v.is_f64(),
            "integer_t" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long_t" => v.is_i64(),
            "string_t" => v.is_string(),
            "json_t" => true,
            other => {
                errors.push(format!("`{path}`: unknown primitive type `{other}`"));
                return;
            }
        };
        if !ok {
            errors.push(format!("`{path}` must be {kind} ({base}), got {v}"));
            return;
        }
        let base_type = t.base.as_ref().and_then(|b| self.schema.types.get(b));
        let range = t.range.or_else(|| base_type.and_then(|b| b.range));
        if let (Some((lo, hi)), Some(n)) = (range, v.as_f64()) {
            if n < lo || n > hi {
                errors.push(format!(
                    "`{path}`: {v} is outside {kind}'s range {lo}..{hi}"
                ));
            }
        }
        if let Some(s) = v.as_str() {
            let max = t.max_len.or_else(|| base_type.and_then(|b| b.max_len));
            if let Some(max) = max {
                if s.chars().count() > max {
                    errors.push(format!("`{path}`: longer than {kind}'s {max} characters"));
                }
            }
            if let Some(re) = &t.regex {
                if !re.is_match(s) {
                    errors.push(format!("`{path}`: {v} does not match {kind}'s pattern"));
                }
            }
            if kind == "ip_t" && s.parse::<IpAddr>().is_err() {
                errors.push(format!("`{path}`: {v} is not an IP address"));
            }
            // A host name, or an IP literal; a port has attributes of its own.
            if kind == "hostname_t" && holds_a_port(s) {
                errors.push(format!("`{path}`: {v} holds a port"));
            }
        }
        let values = t
            .values
            .as_ref()
            .or_else(|| base_type.and_then(|b| b.values.as_ref()));
        if let Some(values) = values {
            if !values.contains(v) {
                errors.push(format!("`{path}`: {v} is not one of {kind}'s values"));
            }
        }
    }
}
