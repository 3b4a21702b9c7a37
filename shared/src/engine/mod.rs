//! The policy engine: one driver for every Palisade policy.
//!
//! A policy is a [`Stage`]: configured from its JSON, it answers the events
//! of a request (headers, body, response headers, log) and of the root
//! context (ticks, HTTP-call responses) with a [`Step`]: continue, read the
//! body, refuse with this reply, or wait. The [`Engine`] is the only code
//! that drives a stage through proxy-wasm's events; it decides nothing.
//!
//! ```text
//!             request headers        body          response    log
//!  Envoy ──▶  ┌─────┬─────┬─────┬─────┬──────┐
//!             │ waf │ jwt │ mfa │ rate│ audit│   one VM, one read of the
//!             └─────┴─────┴─────┴─────┴──────┘   header map, decisions
//!                 ╰──▶ Decisions (typed) ──▶      handed on in memory
//! ```
//!
//! - [`Exchange`]: what a stage sees of a request: the head read once
//!   ([`RequestHead`]), attributes read on first use ([`Attributes`]), the
//!   decisions of earlier stages ([`Decisions`]).
//! - [`Then`]: stages in sequence, itself a stage, so a module of any
//!   number of stages is one type driven without boxes.
//! - [`Module`]: what a `.wasm` module runs: a name, and how its stage is
//!   configured. [`wasm::start`] (feature `proxy-wasm`) runs a module in a
//!   proxy-wasm host.
//! - [`Host`]: what the engine and the stages ask of the proxy; the real
//!   one is [`wasm`]'s, the fake ([`fake::FakeHost`], feature `testing`)
//!   answers from memory so every scenario runs as a native test.

mod chain;
mod driver;
mod exchange;
mod host;
mod host_features;
pub mod sections;
mod stage;

#[cfg(any(test, feature = "testing"))]
pub mod fake;

#[cfg(feature = "proxy-wasm")]
pub mod wasm;

#[cfg(test)]
mod tests;

pub use chain::{Then, ThenRequest};
pub use driver::{Action, Engine, Flow, FlowSlot, Waiting};
pub use exchange::{
    publish, publish_json, Attribute, Attributes, DecisionKind, DecisionSet, Decisions, Exchange,
    MapAccess, RequestHead, ResponseHead,
};
pub use host::{
    log, Body, Counter, Gauge, HeaderMap, Host, HostError, HostStore, LogLevel, MetricKind,
};
pub use host_features::{EnvoyVersion, HostFeature};
pub use stage::{
    BodyStep, CallResponse, Needs, Refusal, Reply, ResponseBodyStep, ResponseStep, Stage, Step,
    Wake,
};

use crate::config::ConfigError;

/// What a `.wasm` module runs: one stage (a policy, or a [`Then`] chain of
/// them) and how it is configured from the plugin configuration.
pub trait Module: 'static {
    /// The stage the engine drives.
    type Stage: Stage;
    /// The module's name in log lines (`palisade.<name>: ...`): the
    /// policy's (`waf`), or empty for the bundle (`palisade: ...`).
    const NAME: &'static str;
    /// Builds the stage from the plugin configuration (an empty
    /// configuration reads as `{}`), defining its metrics and shared state
    /// through `host`. An error names the field.
    fn configure(config: &[u8], host: &dyn Host) -> Result<Self::Stage, ConfigError>;
}
