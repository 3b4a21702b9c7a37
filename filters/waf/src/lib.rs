//! # palisade-waf
//!
//! A web application firewall for proxy-wasm hosts: attack signatures
//! (SQL injection, XSS, command injection, traversal, RFI / SSRF, PHP, Java /
//! Log4Shell, template injection, NoSQL, XXE, protocol attacks, scanners)
//! matched in linear time, anomaly scoring with a paranoia level, per-route
//! exclusions, custom rules, and CSRF origin checks.
//!
//! The decision is pure ([`inspect::Waf`]): the request head and body come
//! in, a [`inspect::Verdict`] comes out. The engine stage
//! ([`stage::WafStage`]) only gathers the request and applies the verdict;
//! see `docs/architecture.md` for the engine.
//!
//! ```
//! use palisade_waf::{config::Config, inspect::{Action, Waf}, request::RequestHead};
//! let waf = Waf::new(Config::from_json(br#"{"paranoia_level": 1}"#).unwrap());
//! let headers = vec![("user-agent".to_string(), "curl/8".to_string())];
//! let head = RequestHead { method: "GET", path: "/items?id=1%27%20OR%20%271%27%3D%271",
//!                          authority: "api", route_name: "", headers: &headers };
//! let verdict = waf.inspect(&head, None);
//! assert!(matches!(verdict.action, Action::Refuse { status: 403, .. }));
//! assert_eq!(verdict.decision.matches[0].family, "sqli");
//! ```

pub mod config;
pub mod csrf;
pub mod engine;
pub mod inspect;
pub mod json;
pub mod literals;
pub mod request;
pub mod response;
pub mod rules;
pub mod signatures;
pub mod stage;
pub mod transform;

pub use stage::{WafModule, WafStage};
