//! The proxy-wasm glue: the only code that implements proxy-wasm's root and
//! HTTP contexts. It turns each callback into an [`Engine`] call with the
//! real host, and decides nothing.
//!
//! Host calls go through `proxy_wasm::hostcalls`, never the SDK's trait
//! helpers (which unwrap), and only in ways Envoy answers with a status the
//! SDK maps to an error: header maps are read whole or by name while the
//! host holds them, filter state is written from request contexts only.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, BufferType, ContextType, MapType, MetricType, Status};

use super::driver::{call_status, Action, Engine, FlowSlot};
use super::host::{log, Body, HeaderMap, Host, HostError, LogLevel, MetricKind};
use super::stage::CallResponse;
use super::{Module, Stage};

/// Runs module `M` in this VM: call it from `proxy_wasm::main!`.
pub fn start<M: Module>() {
    install_panic_hook();
    proxy_wasm::set_root_context(new_root::<M>);
}

/// Logs a panic at critical level before the VM aborts, so the operator
/// sees what happened in Envoy's log.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(
            types::LogLevel::Critical,
            &format!("palisade: panic: {info}"),
        );
    }));
}

fn new_root<M: Module>(context_id: u32) -> Box<dyn RootContext> {
    Box::new(EngineRoot::<M> {
        context_id,
        engine: None,
    })
}

struct EngineRoot<M: Module> {
    context_id: u32,
    engine: Option<Rc<Engine<M::Stage>>>,
}

impl<M: Module> Context for EngineRoot<M> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(engine) = &self.engine {
            engine.on_http_call_response(token, num_headers, body_size, &WasmHost);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        if let Some(engine) = &self.engine {
            engine.on_grpc_call_response(token, status_code, response_size, &WasmHost);
        }
    }
}

impl<M: Module> RootContext for EngineRoot<M> {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let host = &WasmHost;
        let stage = match M::configure(&host.plugin_configuration(), host) {
            Ok(stage) => stage,
            Err(e) => {
                log(host, M::NAME, LogLevel::Error, &e.to_string());
                return false;
            }
        };
        match Engine::new(stage, M::NAME, self.context_id, host) {
            Ok(engine) => {
                self.engine = Some(Rc::new(engine));
                true
            }
            Err(e) => {
                log(host, M::NAME, LogLevel::Error, &e);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(engine) = &self.engine {
            engine.on_tick(&WasmHost);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EngineHttp::<M> {
            context_id,
            engine: self.engine.clone(),
            flow: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EngineHttp<M: Module> {
    context_id: u32,
    /// `None` when the configuration was refused: Envoy should not send
    /// requests then, and any that comes is refused (closed).
    engine: Option<Rc<Engine<M::Stage>>>,
    flow: FlowSlot<<M::Stage as Stage>::Request>,
}

fn action(action: Action) -> types::Action {
    match action {
        Action::Continue => types::Action::Continue,
        Action::Pause => types::Action::Pause,
    }
}

impl<M: Module> EngineHttp<M> {
    fn unconfigured(&self) -> types::Action {
        let host = &WasmHost;
        log(
            host,
            M::NAME,
            LogLevel::Error,
            "no valid configuration; refusing the request",
        );
        let _ = host.send_reply(500, &[], b"");
        types::Action::Pause
    }
}

/// Calls a stage made while deciding a request answer to its HTTP context.
impl<M: Module> Context for EngineHttp<M> {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(engine) = &self.engine {
            let host = &WasmHost;
            let response = CallResponse {
                status: call_status(host, num_headers),
                grpc_status: None,
                body_size,
            };
            engine.on_request_call_response(
                self.context_id,
                &mut self.flow,
                token,
                &response,
                host,
            );
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        if let Some(engine) = &self.engine {
            let response = CallResponse {
                status: None,
                grpc_status: Some(status_code),
                body_size: response_size,
            };
            engine.on_request_call_response(
                self.context_id,
                &mut self.flow,
                token,
                &response,
                &WasmHost,
            );
        }
    }
}

impl<M: Module> HttpContext for EngineHttp<M> {
    fn on_http_request_headers(
        &mut self,
        _num_headers: usize,
        end_of_stream: bool,
    ) -> types::Action {
        match &self.engine {
            Some(engine) => action(engine.on_request_headers(
                self.context_id,
                &mut self.flow,
                end_of_stream,
                &WasmHost,
            )),
            None => self.unconfigured(),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        match &self.engine {
            Some(engine) => action(engine.on_request_body(
                self.context_id,
                &mut self.flow,
                body_size,
                end_of_stream,
                &WasmHost,
            )),
            None => types::Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> types::Action {
        match &self.engine {
            Some(engine) => {
                action(engine.on_request_trailers(self.context_id, &mut self.flow, &WasmHost))
            }
            None => types::Action::Pause,
        }
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> types::Action {
        match &self.engine {
            Some(engine) => {
                action(engine.on_response_headers(self.context_id, &mut self.flow, &WasmHost))
            }
            None => types::Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        match &self.engine {
            Some(engine) => action(engine.on_response_body(
                self.context_id,
                &mut self.flow,
                body_size,
                end_of_stream,
                &WasmHost,
            )),
            None => types::Action::Continue,
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> types::Action {
        match &self.engine {
            Some(engine) => {
                action(engine.on_response_trailers(self.context_id, &mut self.flow, &WasmHost))
            }
            None => types::Action::Continue,
        }
    }

    fn on_log(&mut self) {
        if let Some(engine) = &self.engine {
            engine.on_log(self.context_id, &mut self.flow, &WasmHost);
        }
    }
}

impl<M: Module> Drop for EngineHttp<M> {
    fn drop(&mut self) {
        // Only a request that waited can have left anything with the engine.
        if let Some(engine) = &self.engine {
            if self.flow.is_none() {
                engine.forget(self.context_id);
            }
        }
    }
}

/// `envoy.config.core.v3.GrpcService { envoy_grpc { cluster_name } }`,
/// serialized, as the host's gRPC call takes it. The SDK passes it as text:
/// a cluster name shorter than 126 bytes keeps every byte below 0x80.
fn grpc_service(cluster: &str) -> Option<String> {
    let name = u8::try_from(cluster.len())
        .ok()
        .filter(|n| (1..126).contains(n))?;
    let mut bytes = vec![0x0a, name + 2, 0x0a, name];
    bytes.extend_from_slice(cluster.as_bytes());
    String::from_utf8(bytes).ok()
}

/// The proxy, through proxy-wasm host calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

fn host_error(status: Status) -> HostError {
    match status {
        Status::NotFound => HostError::NotFound,
        Status::CasMismatch => HostError::CasMismatch,
        Status::BadArgument => HostError::BadArgument,
        other => HostError::Other(other as u32),
    }
}

fn map_type(map: HeaderMap) -> MapType {
    match map {
        HeaderMap::Request => MapType::HttpRequestHeaders,
        HeaderMap::Response => MapType::HttpResponseHeaders,
        HeaderMap::CallResponse => MapType::HttpCallResponseHeaders,
    }
}

/// Header values keep their buffer when they are UTF-8 (nearly all are);
/// a client's obs-text bytes are replaced rather than trusted or panicked on.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Host for WasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => types::LogLevel::Trace,
            LogLevel::Debug => types::LogLevel::Debug,
            LogLevel::Info => types::LogLevel::Info,
            LogLevel::Warn => types::LogLevel::Warn,
            LogLevel::Error => types::LogLevel::Error,
            LogLevel::Critical => types::LogLevel::Critical,
        };
        let _ = hostcalls::log(level, message);
    }

    fn now_unix_ms(&self) -> i64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn plugin_configuration(&self) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(host_error)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        let _ = hostcalls::increment_metric(id, delta);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(vec![name], Some(value)).map_err(host_error)
    }

    fn header_map(&self, map: HeaderMap) -> Vec<(String, String)> {
        hostcalls::get_map_bytes(map_type(map))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, text(value)))
            .collect()
    }

    fn header(&self, map: HeaderMap, name: &str) -> Option<String> {
        hostcalls::get_map_value_bytes(map_type(map), name)
            .ok()
            .flatten()
            .map(text)
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(map_type(map), name, value);
    }

    fn add_header(&self, map: HeaderMap, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(map_type(map), name, value);
    }

    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError> {
        let buffer = match body {
            Body::Request => BufferType::HttpRequestBody,
            Body::Response => BufferType::HttpResponseBody,
            Body::CallResponse => BufferType::HttpCallResponseBody,
            Body::GrpcResponse => BufferType::GrpcReceiveBuffer,
        };
        hostcalls::get_buffer(buffer, 0, max)
            .map(Option::unwrap_or_default)
            .map_err(host_error)
    }

    fn send_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body))
            .map_err(host_error)
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(host_error)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(host_error)
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(host_error)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(host_error)
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .map_err(host_error)
    }

    fn replace_body(&self, body: Body, old_len: usize, value: &[u8]) -> Result<(), HostError> {
        let buffer = match body {
            Body::Request => BufferType::HttpRequestBody,
            Body::Response => BufferType::HttpResponseBody,
            Body::CallResponse | Body::GrpcResponse => return Err(HostError::BadArgument),
        };
        hostcalls::set_buffer(buffer, 0, old_len, value).map_err(host_error)
    }

    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service_name: &str,
        method_name: &str,
        metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let service = grpc_service(cluster).ok_or(HostError::BadArgument)?;
        hostcalls::dispatch_grpc_call(
            &service,
            service_name,
            method_name,
            metadata.to_vec(),
            Some(message),
            timeout,
        )
        .map_err(host_error)
    }

    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, HostError> {
        hostcalls::call_foreign_function(name, Some(args))
            .map(Option::unwrap_or_default)
            .map_err(host_error)
    }
}
