//! Every audit record the end-to-end tests produce is checked against the
//! official definition of the schema it claims, read from
//! `../shared/corpora/schemas/`: ECS 8.11.0 (`ecs_flat-8.11.0.yml`) and OCSF
//! 1.7.0 (the schema source, compiled here as the OCSF server compiles it,
//! and checked with the rules of its validator). Palisade's own layout
//! (`palisade/1`) is checked for addresses that are addresses.
//!
//! [`crate::Envoy`] runs every line of an audit access log through
//! [`check_record`] when the test reads the log and again when Envoy stops,
//! so no record escapes, whichever test produced it.

mod ecs;
mod ocsf;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

pub use ecs::EcsSchema;
pub use ocsf::OcsfSchema;

/// The schema definitions, loaded once per test process.
pub struct Schemas {
    /// ECS 8.11.0.
    pub ecs: EcsSchema,
    /// OCSF 1.7.0.
    pub ocsf: OcsfSchema,
}

/// The ECS and OCSF definitions from the shared corpora, or `None` (and a
/// note on stderr) when the corpora are not beside the checkout.
pub fn schemas() -> Option<&'static Schemas> {
    static SCHEMAS: OnceLock<Option<Schemas>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let dir: PathBuf = crate::shared_corpora("schemas")?;
            Some(Schemas {
                ecs: EcsSchema::load(&dir.join("ecs_flat-8.11.0.yml")),
                ocsf: OcsfSchema::load(&dir.join("ocsf-1.7.0")),
            })
        })
        .as_ref()
}

/// Which schema a record claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSchema {
    /// `schema: "palisade/1"`.
    Palisade,
    /// Has `ecs.version`.
    Ecs,
    /// Has `class_uid`.
    Ocsf,
}

/// The schema a record claims, if any.
pub fn schema_of(record: &Value) -> Option<RecordSchema> {
    if record.get("ecs").is_some() {
        Some(RecordSchema::Ecs)
    } else if record.get("class_uid").is_some() {
        Some(RecordSchema::Ocsf)
    } else if record["schema"]
        .as_str()
        .is_some_and(|s| s.starts_with("palisade/"))
    {
        Some(RecordSchema::Palisade)
    } else {
        None
    }
}

/// Checks one access-log line of the audit format. `-` (no record: no audit
/// filter in the chain) passes; anything else must be a record that follows
/// the schema it claims. The error lists every violation.
pub fn check_line(line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line == "-" {
        return Ok(());
    }
    let record: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    check_record(&record).map_err(|errors| {
        format!(
            "audit record violates its schema:\n  - {}\nrecord: {line}",
            errors.join("\n  - ")
        )
    })
}

/// Checks a record against the schema it claims; every violation is listed.
pub fn check_record(record: &Value) -> Result<(), Vec<String>> {
    let errors = match schema_of(record) {
        None => {
            vec!["no schema: neither `ecs.version`, `class_uid` nor `schema: palisade/…`".into()]
        }
        Some(RecordSchema::Palisade) => check_palisade(record),
        Some(RecordSchema::Ecs) => match schemas() {
            Some(s) => s.ecs.check(record),
            None => Vec::new(),
        },
        Some(RecordSchema::Ocsf) => match schemas() {
            Some(s) => s.ocsf.check(record),
            None => Vec::new(),
        },
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Palisade's own layout: the tag, and a client address that is an IP.
fn check_palisade(record: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if record["schema"] != "palisade/1" {
        errors.push(format!("unknown layout {}", record["schema"]));
    }
    if let Some(a) = record["client"].get("address") {
        if a.as_str().and_then(|s| s.parse::<IpAddr>().ok()).is_none() {
            errors.push(format!("client.address is not an IP: {a}"));
        }
    }
    errors
}

#[cfg(test)]
mod tests;
