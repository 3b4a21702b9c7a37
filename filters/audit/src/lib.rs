//! # palisade-audit
//!
//! One structured, redacted record per request, written when the stream ends
//! (`on_log`), so it carries the response and the decision of every other
//! Palisade stage: from memory inside the bundle, or from filter state (which
//! clients cannot forge) when the policies run as separate modules.
//!
//! The record is built by a pure core: the stage ([`stage::AuditStage`])
//! gathers [`RequestFacts`]
//! from Envoy's attributes and headers, [`AuditRecord::build`] redacts and
//! assembles them, and [`schema::render`] writes the record in the configured
//! schema (`palisade`, `ecs` or `ocsf`). The stage then publishes it as
//! filter state `palisade.audit`, which Envoy's access log prints with
//! `%FILTER_STATE(wasm.palisade.audit:PLAIN)%`.
//!
//! ```
//! use palisade_audit::{config::AuditConfig, AuditRecord, RequestFacts, schema};
//! let config = AuditConfig::from_json(br#"{"schema": "ecs"}"#).unwrap();
//! let facts = RequestFacts {
//!     method: Some("GET".into()),
//!     path: Some("/login?user=bob&password=hunter2".into()),
//!     status: Some(200),
//!     ..RequestFacts::default()
//! };
//! let record = AuditRecord::build(&facts, &config);
//! let json = schema::render(&record, &config);
//! assert!(json.contains("password=REDACTED"));
//! assert!(!json.contains("hunter2"));
//! ```

pub mod certificate;
pub mod config;
pub mod record;
pub mod redact;
pub mod schema;
pub mod stage;

pub use record::{AuditRecord, FilterStates, Outcome, RequestFacts};
pub use stage::{AuditModule, AuditStage};
