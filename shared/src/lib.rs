//! # palisade-shared
//!
//! What two or more Palisade filters need, and nothing else:
//!
//! - [`config`]: JSON plugin configuration with errors that name the field path;
//! - [`matcher`]: the request rule matcher (host, path, method, route name) that
//!   every filter uses to pick its per-route policy;
//! - [`contract`]: the filter-state properties the filters publish for each
//!   other and for the audit log (`palisade.identity`, `palisade.waf`, ...);
//! - [`problem`]: RFC 9457 problem bodies for local replies;
//! - [`forwarded`]: the client address behind trusted proxies (`X-Forwarded-For`
//!   or RFC 7239 `Forwarded`), parsed as real proxies write it;
//! - [`headers`]: header lookup in a header map read whole;
//! - [`store`]: compare-and-swap updates over proxy-wasm shared data;
//! - [`time`]: RFC 3339 timestamps without a clock (time comes in as an argument);
//! - [`x509`]: the parts of a client certificate the policies read (names,
//!   SANs, serial, validity), and its SHA-256;
//! - [`engine`]: the policy engine. Every policy is a stage it drives; it
//!   reads each request once, hands decisions from stage to stage in memory,
//!   and is the only code that knows proxy-wasm ([`engine::wasm`], feature
//!   `proxy-wasm`). Its fake host (feature `testing`) runs every stage natively.
//!
//! Everything outside [`engine::wasm`] is pure: no host calls, no clocks, so
//! the filter cores and stages that build on it run natively under `cargo test`.

pub mod config;
pub mod contract;
pub mod engine;
pub mod forwarded;
pub mod headers;
pub mod matcher;
pub mod problem;
pub mod store;
pub mod time;
pub mod x509;
