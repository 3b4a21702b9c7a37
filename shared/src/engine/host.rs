//! What the engine and the stages ask of the proxy: the [`Host`] trait.
//!
//! The real host ([`super::wasm`], feature `proxy-wasm`) answers with
//! proxy-wasm host calls; the fake ([`super::fake`]) answers from memory, so
//! the engine's scenarios and every stage run as native tests. Nothing here
//! panics: a host that cannot answer says so with a [`HostError`], and the
//! caller decides what that means (usually: refuse, closed).

use std::time::Duration;

use crate::store::{SharedStore, StoreError};

/// Log levels, as proxy-wasm defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Per-request detail (refusals of ordinary bad requests).
    Debug,
    /// Configuration and key rotation events.
    Info,
    /// Something degraded that the operator should look at.
    Warn,
    /// Something failed; requests are refused because of it.
    Error,
    /// The module is about to stop (a panic).
    Critical,
}

/// Why the host could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The thing asked for does not exist (a property, a foreign function,
    /// a request that has ended).
    NotFound,
    /// A shared-data write met a newer value than the one read.
    CasMismatch,
    /// The host refused the arguments.
    BadArgument,
    /// The host cannot do this now (a header map no longer available, ...).
    Unavailable,
    /// Any other status, by its proxy-wasm code.
    Other(u32),
}

/// The header maps of an HTTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    /// Request headers, pseudo-headers included.
    Request,
    /// Response headers, `:status` included.
    Response,
    /// The headers of the response to an HTTP call the root context made.
    CallResponse,
}

/// The bodies a stage can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The request body buffered so far.
    Request,
    /// The response body buffered so far.
    Response,
    /// The body of the response to an HTTP call.
    CallResponse,
    /// The message of the response to a gRPC call.
    GrpcResponse,
}

/// Kinds of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Set to a value.
    Gauge,
}

/// The proxy, as the engine and the stages see it. Every method takes
/// `&self`: the host is a handle, and a stage may hold it in several places
/// at once (a store and a signature verifier, say).
pub trait Host {
    /// Writes a line to the proxy's log.
    fn log(&self, level: LogLevel, message: &str);
    /// The proxy's wall clock, milliseconds since the Unix epoch; 0 if unknown.
    fn now_unix_ms(&self) -> i64;
    /// The plugin configuration, empty when there is none.
    fn plugin_configuration(&self) -> Vec<u8>;
    /// Asks for `on_tick` every `period`.
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;

    /// Defines (or finds) a metric; `None` when the host refuses it.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds to a counter.
    fn increment_metric(&self, id: u32, delta: i64);
    /// Sets a gauge.
    fn record_metric(&self, id: u32, value: u64);

    /// A property (an Envoy attribute such as `["source", "address"]`, or
    /// filter state); `None` when absent or unavailable.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes filter state `name` (Envoy stores it as `wasm.<name>`).
    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError>;

    /// Every entry of a header map, in order; empty when unavailable.
    /// Values that are not UTF-8 have their bad bytes replaced.
    fn header_map(&self, map: HeaderMap) -> Vec<(String, String)>;
    /// The first value of one header, `None` when absent or unavailable.
    fn header(&self, map: HeaderMap, name: &str) -> Option<String>;
    /// Replaces a header (`None` removes it).
    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>);
    /// Adds a header value.
    fn add_header(&self, map: HeaderMap, name: &str, value: &str);
    /// Up to `max` bytes of a body, from the start.
    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the first `old_len` bytes of a request or response body
    /// being held (all of it, when `old_len` is its length) with `value`.
    fn replace_body(&self, body: Body, old_len: usize, value: &[u8]) -> Result<(), HostError>;

    /// Answers the current request with a local reply instead of the upstream.
    fn send_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// Makes `context_id` the request later calls act on (from the root
    /// context); `NotFound` when that request has ended.
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    /// Lets the current (paused) request go on.
    fn resume_request(&self) -> Result<(), HostError>;

    /// A shared-data value (one store for every worker of the proxy) and its
    /// CAS token; `(None, None)` when absent.
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes a shared-data value if its CAS token still is `cas` (`None`
    /// writes unconditionally).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;

    /// Sends an HTTP request to an Envoy cluster; the answer comes to
    /// the stage's call-response callback with the returned token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// Sends a unary gRPC call through an Envoy cluster: the service and
    /// method names, initial metadata and the request message. The answer
    /// comes to the stage's call-response callback with the returned token.
    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service_name: &str,
        method_name: &str,
        metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// Calls a function the host registered (Envoy: `verify_signature`, ...).
    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, HostError>;
}

/// Proxy-wasm shared data, through a [`Host`], as a [`SharedStore`].
#[derive(Clone, Copy)]
pub struct HostStore<'a>(pub &'a dyn Host);

impl SharedStore for HostStore<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match self.0.shared_get(key) {
            Ok(v) => Ok(v),
            Err(HostError::NotFound) => Ok((None, None)),
            Err(_) => Err(StoreError::Host),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match self.0.shared_set(key, value, cas) {
            Ok(()) => Ok(()),
            Err(HostError::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}

/// Writes `palisade.<stage>: <message>` to the proxy's log (`palisade:
/// <message>` for the bundle as a whole, whose name is empty): every line
/// starts the same way, so one grep finds them.
pub fn log(host: &dyn Host, stage: &str, level: LogLevel, message: &str) {
    if stage.is_empty() {
        host.log(level, &format!("palisade: {message}"));
    } else {
        host.log(level, &format!("palisade.{stage}: {message}"));
    }
}

/// An Envoy counter, defined once at configuration. Envoy shows it in
/// `/stats` (under `wasmcustom.`) and `/stats/prometheus`. A counter the
/// host refused to define counts nothing: metrics never fail a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter(Option<u32>);

impl Counter {
    /// Defines (or finds) the counter `name`.
    pub fn define(host: &dyn Host, name: &str) -> Self {
        Counter(host.define_metric(MetricKind::Counter, name))
    }

    /// Adds `n`.
    pub fn add(self, host: &dyn Host, n: u64) {
        if let Some(id) = self.0 {
            host.increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Adds one.
    pub fn inc(self, host: &dyn Host) {
        self.add(host, 1);
    }
}

/// An Envoy gauge; see [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauge(Option<u32>);

impl Gauge {
    /// Defines (or finds) the gauge `name`.
    pub fn define(host: &dyn Host, name: &str) -> Self {
        Gauge(host.define_metric(MetricKind::Gauge, name))
    }

    /// Sets the value.
    pub fn set(self, host: &dyn Host, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
    }
}
