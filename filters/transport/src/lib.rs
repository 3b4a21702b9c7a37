//! # palisade-transport
//!
//! Is the connection encrypted as this route requires? Per route (first
//! matching rule wins, matched like every Palisade policy), a transport
//! policy refuses or redirects plaintext, requires a minimum TLS version and
//! an allowed cipher suite, requires a client certificate that Envoy
//! validated, with allowlists on its subject, issuer, DNS and URI SANs
//! (SPIFFE IDs) and SHA-256 fingerprint, and adds `Strict-Transport-Security`
//! to responses sent over TLS. It publishes what it saw as `palisade.tls`.
//!
//! Every fact comes from Envoy's attributes of the connection it terminated
//! (`connection.tls_version`, `connection.mtls`, `connection.peer_certificate`,
//! ...), never from a request header a client could write.
//!
//! The decision is pure: [`decide::decide`] takes the policy, the request
//! line and the [`decide::Connection`], and returns a [`decide::Decision`];
//! the engine stage ([`stage::TransportStage`]) reads the facts and applies it.
//!
//! ```
//! use palisade_transport::config::Config;
//! use palisade_transport::decide::{decide, Connection, Decision, RequestLine, Requirement};
//! use palisade_shared::matcher::RequestView;
//!
//! let config = Config::from_json(br#"{
//!     "policies": {"internal": {"min_tls_version": "1.3", "client_certificate": {}}},
//!     "rules": [{"match": {"path": {"prefix": "/internal"}}, "policy": "internal"}]
//! }"#).unwrap();
//! let view = RequestView { method: "GET", host: "api", path: "/internal/jobs", route_name: "" };
//! let line = RequestLine { method: "GET", authority: "api", path: "/internal/jobs" };
//! let tls12 = Connection { version: Some("TLSv1.2".into()), ..Connection::default() };
//! let Decision::Refuse { requirement, status, .. } =
//!     decide(&config, config.policy_index_for(&view), &line, &tls12) else { panic!() };
//! assert_eq!((requirement, status), (Requirement::MinTlsVersion, 403));
//! ```

pub mod config;
pub mod decide;
pub mod reply;
pub mod stage;

pub use stage::{TransportModule, TransportStage};
