//! The record layouts: Palisade's own, Elastic Common Schema, OCSF.

mod ecs;
mod ocsf;

use serde_json::Value;

use crate::config::{AuditConfig, Schema};
use crate::record::AuditRecord;

/// The version tag of Palisade's own layout.
pub const PALISADE_SCHEMA: &str = "palisade/1";

/// Renders a record in the configured schema, as one line of JSON.
pub fn render(record: &AuditRecord, config: &AuditConfig) -> String {
    match config.schema {
        // Straight from the record's own layout: no intermediate tree.
        Schema::Palisade => serde_json::to_string(&Tagged {
            schema: PALISADE_SCHEMA,
            record,
        })
        .unwrap_or_default(),
        Schema::Ecs => ecs::render(record).to_string(),
        Schema::Ocsf => ocsf::render(record).to_string(),
    }
}

#[derive(serde::Serialize)]
struct Tagged<'a> {
    schema: &'static str,
    #[serde(flatten)]
    record: &'a AuditRecord,
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
        let v: Value = serde_json::from_str(&render(&record, &config)).unwrap();
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
