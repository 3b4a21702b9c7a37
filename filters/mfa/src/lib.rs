//! # palisade-mfa
//!
//! MFA step-up: was the user behind a verified token authenticated strongly
//! enough, and recently enough, for this route? The answer to "no" is the
//! RFC 9470 challenge, which tells the client what to ask its provider for.
//!
//! The filter reads only the identity that `palisade-jwt` publishes as filter
//! state `palisade.identity` (clients cannot forge filter state), never a
//! header. Each route's rule (first match wins) names a [`config::StepUpPolicy`]
//! over the token's `acr`, `amr` and `auth_time` (OpenID Connect Core), where a
//! client certificate that the listener verified can stand in for a
//! possession factor.
//!
//! The decision is pure: [`decide::decide`] takes the verified identity, the
//! connection's certificate status and the time, and returns a
//! [`decide::Decision`]; the engine stage ([`stage::MfaStage`]) only gathers
//! and applies. See `docs/architecture.md` for the engine.
//!
//! ```
//! use palisade_mfa::config::Config;
//! use palisade_mfa::decide::{decide, Decision, RequestFacts};
//! use palisade_shared::contract::Identity;
//! use palisade_shared::matcher::RequestView;
//!
//! let config = Config::from_json(br#"{
//!     "policies": {"admin": {"acr_values": ["mfa"], "max_age": 300}},
//!     "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"}]
//! }"#).unwrap();
//! let view = RequestView { method: "GET", host: "api", path: "/admin/users", route_name: "" };
//! let policy = config.policy_index_for(&view);
//! let alice = Identity { acr: Some("pwd".into()), auth_time: Some(1_700_000_000), ..Identity::default() };
//! let request = RequestFacts {
//!     view,
//!     identity: Some(Ok(&alice)),
//!     now_unix_ms: 1_700_000_100_000,
//!     ..RequestFacts::default()
//! };
//! let Decision::Refuse { reply, .. } = decide(&config, policy, &request) else { panic!() };
//! assert_eq!(reply.status, 401);
//! assert_eq!(
//!     reply.headers[0].1,
//!     r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa", max_age=300"#
//! );
//! ```

pub mod config;
pub mod decide;
pub mod identity;
pub mod stage;

pub use stage::{MfaModule, MfaStage};
