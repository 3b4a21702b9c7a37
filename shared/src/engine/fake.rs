//! A host that answers from memory, for native tests of the engine and of
//! every stage: set up a request, drive the engine, then look at what was
//! sent, published, counted and logged.
//!
//! ```
//! use palisade_shared::engine::fake::FakeHost;
//! use palisade_shared::engine::{HeaderMap, Host};
//! let host = FakeHost::new().with_request_header(":path", "/orders");
//! assert_eq!(host.header(HeaderMap::Request, ":path").as_deref(), Some("/orders"));
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use super::host::{Body, HeaderMap, Host, HostError, LogLevel, MetricKind};

/// A local reply the fake host was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReply {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SentReply {
    /// The first value of a reply header.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::headers::first_value(&self.headers, name)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An HTTP call the fake host was asked to dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedCall {
    /// Its token.
    pub token: u32,
    /// The cluster.
    pub cluster: String,
    /// The request headers.
    pub headers: Vec<(String, String)>,
    /// The timeout.
    pub timeout: Duration,
}

/// A foreign function the fake host answers with.
type ForeignFunction = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, HostError>>;

/// A gRPC call the fake host was asked to dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedGrpcCall {
    /// Its token.
    pub token: u32,
    /// The cluster.
    pub cluster: String,
    /// `package.Service`.
    pub service: String,
    /// The method.
    pub method: String,
    /// The request message.
    pub message: Vec<u8>,
    /// The timeout.
    pub timeout: Duration,
}

/// A host in memory. Every method takes `&self`, like the trait.
#[derive(Default)]
pub struct FakeHost {
    now_ms: Cell<i64>,
    configuration: RefCell<Vec<u8>>,
    tick: Cell<Option<Duration>>,
    request_headers: RefCell<Vec<(String, String)>>,
    response_headers: RefCell<Vec<(String, String)>>,
    call_response_headers: RefCell<Vec<(String, String)>>,
    request_body: RefCell<Vec<u8>>,
    response_body: RefCell<Vec<u8>>,
    call_response_body: RefCell<Vec<u8>>,
    grpc_calls: RefCell<Vec<DispatchedGrpcCall>>,
    body_unreadable: Cell<bool>,
    properties: RefCell<HashMap<String, Vec<u8>>>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    metrics: RefCell<Vec<(String, MetricKind, i64)>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    replies: RefCell<Vec<SentReply>>,
    calls: RefCell<Vec<DispatchedCall>>,
    next_token: Cell<u32>,
    effective: Cell<u32>,
    resumed: RefCell<Vec<u32>>,
    ended: RefCell<Vec<u32>>,
    foreign: RefCell<HashMap<String, ForeignFunction>>,
    header_reads: Cell<u32>,
    property_reads: RefCell<Vec<String>>,
    route_after_path_edit: RefCell<Option<String>>,
}

fn path_key(path: &[&str]) -> String {
    path.join("\u{0}")
}

impl FakeHost {
    /// An empty host at time 1 700 000 000 000 ms.
    pub fn new() -> Self {
        let host = FakeHost::default();
        host.now_ms.set(1_700_000_000_000);
        host.next_token.set(1);
        host
    }

    /// With this plugin configuration.
    pub fn with_configuration(self, json: &str) -> Self {
        *self.configuration.borrow_mut() = json.as_bytes().to_vec();
        self
    }

    /// With a request header (appended).
    pub fn with_request_header(self, name: &str, value: &str) -> Self {
        self.request_headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
        self
    }

    /// With `:method`, `:path`, `:authority` and `:scheme` set.
    pub fn with_request(self, method: &str, path: &str) -> Self {
        self.with_request_header(":method", method)
            .with_request_header(":path", path)
            .with_request_header(":authority", "api.example.com")
            .with_request_header(":scheme", "http")
    }

    /// With a property (an attribute, or filter state by its name).
    pub fn with_property(self, path: &[&str], value: &[u8]) -> Self {
        self.set_property_raw(path, value);
        self
    }

    /// Reporting itself as an Envoy of this release, as Envoy's node does.
    pub fn with_envoy_version(self, version: super::EnvoyVersion) -> Self {
        use super::host_features::version_field;
        self.with_property(&version_field("major_number"), &version.major.to_le_bytes())
            .with_property(&version_field("minor_number"), &version.minor.to_le_bytes())
            .with_property(&version_field("patch"), &version.patch.to_le_bytes())
    }

    /// With a request body.
    pub fn with_request_body(self, body: &[u8]) -> Self {
        *self.request_body.borrow_mut() = body.to_vec();
        self
    }

    /// With a foreign function.
    pub fn with_foreign_function(
        self,
        name: &str,
        f: impl Fn(&[u8]) -> Result<Vec<u8>, HostError> + 'static,
    ) -> Self {
        self.foreign
            .borrow_mut()
            .insert(name.to_string(), Box::new(f));
        self
    }

    /// Replaces the request (headers and body) for the next request.
    pub fn set_request(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        *self.request_body.borrow_mut() = body.to_vec();
    }

    /// Sets the response headers.
    pub fn set_response_headers(&self, headers: &[(&str, &str)]) {
        *self.response_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    }

    /// Sets the response body (held or passing).
    pub fn set_response_body(&self, body: &[u8]) {
        *self.response_body.borrow_mut() = body.to_vec();
    }

    /// The request body as the upstream would get it.
    pub fn request_body(&self) -> Vec<u8> {
        self.request_body.borrow().clone()
    }

    /// The response body as the client would get it.
    pub fn response_body(&self) -> Vec<u8> {
        self.response_body.borrow().clone()
    }

    /// The gRPC calls dispatched so far.
    pub fn grpc_calls(&self) -> Vec<DispatchedGrpcCall> {
        self.grpc_calls.borrow().clone()
    }

    /// Makes an edit of `:path` pick this route (as Envoy picks the route
    /// again after a request-header edit).
    pub fn route_after_path_edit(&self, route: &str) {
        *self.route_after_path_edit.borrow_mut() = Some(route.to_string());
    }

    /// Makes reading the request body fail.
    pub fn fail_body_reads(&self) {
        self.body_unreadable.set(true);
    }

    /// Sets a property.
    pub fn set_property_raw(&self, path: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(path_key(path), value.to_vec());
    }

    /// Moves the clock.
    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// Sets the clock.
    pub fn set_now_ms(&self, ms: i64) {
        self.now_ms.set(ms);
    }

    /// Makes the response to the next call event: status and body.
    pub fn set_call_response(&self, status: &str, body: &[u8]) {
        *self.call_response_headers.borrow_mut() = vec![(":status".into(), status.into())];
        *self.call_response_body.borrow_mut() = body.to_vec();
    }

    /// Marks a request as ended: `set_effective_context` fails for it.
    pub fn end_request(&self, context_id: u32) {
        self.ended.borrow_mut().push(context_id);
    }

    /// Forgets the replies sent, the lines logged, the calls dispatched,
    /// the requests resumed or ended and the reads counted so far; keeps the
    /// configuration, clock, shared data, properties and metrics. A host
    /// that serves many scenarios in a row (a fuzz target's) stays small.
    pub fn clear_records(&self) {
        self.replies.borrow_mut().clear();
        self.logs.borrow_mut().clear();
        self.calls.borrow_mut().clear();
        self.resumed.borrow_mut().clear();
        self.ended.borrow_mut().clear();
        self.property_reads.borrow_mut().clear();
        self.header_reads.set(0);
    }

    /// The replies sent so far.
    pub fn replies(&self) -> Vec<SentReply> {
        self.replies.borrow().clone()
    }

    /// The last reply, if any.
    pub fn last_reply(&self) -> Option<SentReply> {
        self.replies.borrow().last().cloned()
    }

    /// The request headers as the upstream would see them.
    pub fn request_headers(&self) -> Vec<(String, String)> {
        self.request_headers.borrow().clone()
    }

    /// The response headers as the client would see them.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        self.response_headers.borrow().clone()
    }

    /// Filter state (or any property) as text.
    pub fn property_text(&self, name: &str) -> Option<String> {
        self.properties
            .borrow()
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Filter state as JSON.
    pub fn property_json(&self, name: &str) -> Option<serde_json::Value> {
        self.properties
            .borrow()
            .get(name)
            .and_then(|v| serde_json::from_slice(v).ok())
    }

    /// A metric's value by name (0 when never touched).
    pub fn metric(&self, name: &str) -> i64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, _, v)| *v)
    }

    /// Whether a metric was defined.
    pub fn metric_defined(&self, name: &str) -> bool {
        self.metrics.borrow().iter().any(|(n, _, _)| n == name)
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// Whether some log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|(_, l)| l.contains(text))
    }

    /// The calls dispatched so far.
    pub fn calls(&self) -> Vec<DispatchedCall> {
        self.calls.borrow().clone()
    }

    /// The contexts resumed so far.
    pub fn resumed(&self) -> Vec<u32> {
        self.resumed.borrow().clone()
    }

    /// The tick period asked for.
    pub fn tick_period(&self) -> Option<Duration> {
        self.tick.get()
    }

    /// A shared-data value.
    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().get(key).map(|(v, _)| v.clone())
    }

    /// How many property reads were made.
    pub fn property_reads(&self) -> usize {
        self.property_reads.borrow().len()
    }

    /// The properties read, in order (paths joined with `.`).
    pub fn properties_read(&self) -> Vec<String> {
        self.property_reads.borrow().clone()
    }

    /// How many header-map reads (whole map or by name) were made.
    pub fn header_reads(&self) -> u32 {
        self.header_reads.get()
    }

    fn map(&self, map: HeaderMap) -> &RefCell<Vec<(String, String)>> {
        match map {
            HeaderMap::Request => &self.request_headers,
            HeaderMap::Response => &self.response_headers,
            HeaderMap::CallResponse => &self.call_response_headers,
        }
    }
}

impl Host for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn now_unix_ms(&self) -> i64 {
        self.now_ms.get()
    }

    fn plugin_configuration(&self) -> Vec<u8> {
        self.configuration.borrow().clone()
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.tick.set(Some(period));
        Ok(())
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        if let Some(i) = metrics.iter().position(|(n, _, _)| n == name) {
            return u32::try_from(i).ok();
        }
        metrics.push((name.to_string(), kind, 0));
        u32::try_from(metrics.len() - 1).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.2 += delta;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.2 = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.property_reads.borrow_mut().push(path.join("."));
        self.properties.borrow().get(&path_key(path)).cloned()
    }

    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.set_property_raw(&[name], value);
        Ok(())
    }

    fn header_map(&self, map: HeaderMap) -> Vec<(String, String)> {
        self.header_reads.set(self.header_reads.get() + 1);
        self.map(map).borrow().clone()
    }

    fn header(&self, map: HeaderMap, name: &str) -> Option<String> {
        self.header_reads.set(self.header_reads.get() + 1);
        crate::headers::first_value(&self.map(map).borrow(), name).map(str::to_string)
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>) {
        if map == HeaderMap::Request && name == ":path" {
            if let Some(route) = self.route_after_path_edit.borrow().as_deref() {
                self.set_property_raw(&["xds", "route_name"], route.as_bytes());
            }
        }
        let mut headers = self.map(map).borrow_mut();
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_string()));
        }
    }

    fn add_header(&self, map: HeaderMap, name: &str, value: &str) {
        self.map(map)
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }

    fn body(&self, body: Body, max: usize) -> Result<Vec<u8>, HostError> {
        if self.body_unreadable.get() && body == Body::Request {
            return Err(HostError::Unavailable);
        }
        let source = match body {
            Body::Request => self.request_body.borrow(),
            Body::Response => self.response_body.borrow(),
            Body::CallResponse | Body::GrpcResponse => self.call_response_body.borrow(),
        };
        Ok(source[..source.len().min(max)].to_vec())
    }

    fn replace_body(&self, body: Body, old_len: usize, value: &[u8]) -> Result<(), HostError> {
        let mut target = match body {
            Body::Request => self.request_body.borrow_mut(),
            Body::Response => self.response_body.borrow_mut(),
            Body::CallResponse | Body::GrpcResponse => return Err(HostError::BadArgument),
        };
        let end = old_len.min(target.len());
        target.splice(..end, value.iter().copied());
        Ok(())
    }

    fn send_reply(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.replies.borrow_mut().push(SentReply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        Ok(())
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        if self.ended.borrow().contains(&context_id) {
            return Err(HostError::NotFound);
        }
        self.effective.set(context_id);
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.resumed.borrow_mut().push(self.effective.get());
        Ok(())
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas.filter(|c| *c != 0), current) {
            if expected != current {
                return Err(HostError::CasMismatch);
            }
        }
        shared.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.calls.borrow_mut().push(DispatchedCall {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            timeout,
        });
        Ok(token)
    }

    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service_name: &str,
        method_name: &str,
        _metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.grpc_calls.borrow_mut().push(DispatchedGrpcCall {
            token,
            cluster: cluster.to_string(),
            service: service_name.to_string(),
            method: method_name.to_string(),
            message: message.to_vec(),
            timeout,
        });
        Ok(token)
    }

    fn call_foreign_function(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, HostError> {
        match self.foreign.borrow().get(name) {
            Some(f) => f(args),
            None => Err(HostError::NotFound),
        }
    }
}
