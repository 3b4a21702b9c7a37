//! The thin layer over proxy-wasm host calls that every filter adapter uses.
//!
//! The SDK's trait helpers (`self.get_property(..)`, ...) panic on an
//! unexpected host status, and a panic in a wasm VM takes down every request
//! it serves. These wrappers call `proxy_wasm::hostcalls` directly and turn a
//! failure into `None` or an error value that the adapter handles.
//!
//! Header maps are read with the SDK's `*_bytes` calls and converted lossily:
//! the plain `get_map` / `get_map_value` unwrap `String::from_utf8`, so one
//! client header with a non-UTF-8 byte (legal obs-text) would panic the VM.
//! Adapters read headers only through these functions, and only while the
//! host holds the map: request headers in the request-header callback and in
//! `on_log`, not in the body phase once headers have gone on (the SDK panics
//! on the status Envoy returns then; capture what the body phase needs).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType, Status};

use crate::store::{SharedStore, StoreError};

/// Logs panics at critical level before the VM aborts, so the operator sees
/// what happened in Envoy's log. Call it first thing in `_start`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("palisade: panic: {info}"));
    }));
}

/// Logs a message at the given level; a failure to log is not an error worth
/// failing a request for.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// A property's raw bytes (`["request", "path"]`), `None` when absent or unavailable.
pub fn property_bytes(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A property as UTF-8 text (lossy), `None` when absent or empty.
pub fn property_string(path: &[&str]) -> Option<String> {
    property_bytes(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|s| !s.is_empty())
}

/// An integer property (Envoy encodes them as 8 little-endian bytes), also
/// used for timestamps and durations, which Envoy gives in nanoseconds.
pub fn property_i64(path: &[&str]) -> Option<i64> {
    let bytes = property_bytes(path)?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// Publishes a value as filter state (`wasm.<name>` in Envoy), for the
/// filters after this one and for the access log.
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), Status> {
    hostcalls::set_property(vec![name], Some(value))
}

fn header(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn headers(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            // Valid UTF-8 (nearly every header) keeps its buffer: no copy.
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

/// Publishes a contract value (`palisade_shared::contract`) as JSON filter
/// state; a failure is logged at warn level with the filter's name, never
/// fatal to the request.
pub fn publish_json<T: serde::Serialize>(filter: &str, name: &str, value: &T) {
    match serde_json::to_vec(value) {
        Ok(json) => {
            if let Err(status) = set_filter_state(name, &json) {
                log(
                    LogLevel::Warn,
                    &format!("{filter}: cannot publish {name}: {status:?}"),
                );
            }
        }
        Err(e) => log(
            LogLevel::Warn,
            &format!("{filter}: cannot serialize {name}: {e}"),
        ),
    }
}

/// A request header (non-UTF-8 bytes replaced), `None` when absent.
pub fn request_header(name: &str) -> Option<String> {
    header(MapType::HttpRequestHeaders, name)
}

/// All request headers in order, pseudo-headers included (`:path`, ...).
pub fn request_headers() -> Vec<(String, String)> {
    headers(MapType::HttpRequestHeaders)
}

/// A response header, `None` when absent.
pub fn response_header(name: &str) -> Option<String> {
    header(MapType::HttpResponseHeaders, name)
}

/// All response headers in order.
pub fn response_headers() -> Vec<(String, String)> {
    headers(MapType::HttpResponseHeaders)
}

/// The plugin configuration bytes, empty when there is none.
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Sets (replaces) a request header toward the upstream.
pub fn set_request_header(name: &str, value: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
}

/// Removes a request header, typically a client-sent copy of one the filter sets.
pub fn remove_request_header(name: &str) {
    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
}

/// Adds a response header.
pub fn add_response_header(name: &str, value: &str) {
    let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
}

/// Sends a local reply instead of forwarding the request.
pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    if let Err(status_err) =
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body))
    {
        log(
            LogLevel::Error,
            &format!("palisade: could not send local reply {status}: {status_err:?}"),
        );
    }
}

/// The host's wall clock in milliseconds since the Unix epoch, 0 if unavailable.
pub fn now_unix_millis() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An Envoy counter, defined once in the root context. Envoy shows it in
/// `/stats` and `/stats/prometheus`; a counter that could not be defined is
/// silently a no-op (metrics must never fail a request).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    /// Defines (or finds) the counter `name`.
    pub fn define(name: &str) -> Self {
        Counter(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
}

/// An Envoy gauge; see [`Counter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge(Option<u32>);

impl Gauge {
    /// Defines (or finds) the gauge `name`.
    pub fn define(name: &str) -> Self {
        Gauge(hostcalls::define_metric(MetricType::Gauge, name).ok())
    }

    /// Sets the value.
    pub fn set(&self, value: u64) {
        if let Some(id) = self.0 {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Proxy-wasm shared data (one store for every worker of the Envoy process)
/// as a [`SharedStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSharedData;

impl SharedStore for HostSharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok(v) => Ok(v),
            Err(Status::NotFound) => Ok((None, None)),
            Err(_) => Err(StoreError::Host),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}
