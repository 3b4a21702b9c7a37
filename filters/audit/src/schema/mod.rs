//! The record layouts: Palisade's own, Elastic Common Schema, OCSF.

mod ecs;
mod ocsf;

use serde_json::Value;

use crate::config::{AuditConfig, Schema};
use crate::record::AuditRecord;

/// The version tag of Palisade's own layout.
pub const PALISADE_SCHEMA: &str = "palisade/1";

/// Renders a record in the configured schema.
pub fn render(record: &AuditRecord, config: &AuditConfig) -> Value {
    match config.schema {
        Schema::Palisade => palisade(record),
        Schema::Ecs => ecs::render(record),
        Schema::Ocsf => ocsf::render(record),
    }
}

fn palisade(record: &AuditRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("schema".into(), Value::from(PALISADE_SCHEMA));
    }
    value
}

/// The Palisade decisions as one object (for the schemas that have no place
/// of their own for them).
pub(crate) fn decisions(record: &AuditRecord) -> Value {
    serde_json::to_value(&record.decisions).unwrap_or(Value::Null)
}

/// Removes nulls and empty objects, so absent facts are absent fields.
pub(crate) fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let pruned: serde_json::Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !v.is_null() && !matches!(v, Value::Object(m) if m.is_empty()))
                .collect();
            Value::Object(pruned)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestFacts;

    #[test]
    fn palisade_layout_is_tagged() {
        let config = AuditConfig::default();
        let record = AuditRecord::build(&RequestFacts::default(), &config);
        let v = render(&record, &config);
        assert_eq!(v["schema"], PALISADE_SCHEMA);
        assert_eq!(v["outcome"], "allowed");
    }

    #[test]
    fn prune_drops_nulls_and_empty_objects() {
        let v =
            prune(serde_json::json!({"a": null, "b": {"c": null}, "d": [1, {"e": null}], "f": 0}));
        assert_eq!(v, serde_json::json!({"d": [1, {}], "f": 0}));
    }
}
