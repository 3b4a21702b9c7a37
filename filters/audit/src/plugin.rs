//! The proxy-wasm adapter: gathers the request's facts in `on_log`, builds
//! the record with the core, and publishes it. Nothing here decides anything.

use std::rc::Rc;

use palisade_shared::contract;
use palisade_shared::headers::first_value;
use palisade_shared::host::{self, Counter};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::AuditConfig;
use crate::record::{AuditRecord, FilterStates, RequestFacts, XFCC};
use crate::schema;

proxy_wasm::main! {{
    host::install_panic_hook();
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuditRoot::default()) });
}}

/// The filters whose refusals are counted separately.
const FILTERS: [&str; 4] = ["jwt", "mfa", "ratelimit", "waf"];

#[derive(Clone, Copy, Default)]
struct Metrics {
    records: Counter,
    denied: [Counter; FILTERS.len()],
    denied_other: Counter,
    unreadable_state: Counter,
    client_address_fallback: Counter,
}

impl Metrics {
    fn define() -> Self {
        let mut denied = [Counter::default(); FILTERS.len()];
        for (slot, name) in denied.iter_mut().zip(FILTERS) {
            *slot = Counter::define(&format!("palisade.audit.denied.{name}"));
        }
        Metrics {
            records: Counter::define("palisade.audit.records_written"),
            denied,
            denied_other: Counter::define("palisade.audit.denied.other"),
            unreadable_state: Counter::define("palisade.audit.unreadable_filter_state"),
            client_address_fallback: Counter::define("palisade.audit.client_address_fallback"),
        }
    }

    fn count_denial(&self, filter: &str) {
        match FILTERS.iter().position(|f| *f == filter) {
            Some(i) => self.denied.get(i).map_or((), Counter::inc),
            None => self.denied_other.inc(),
        }
    }
}

#[derive(Default)]
struct AuditRoot {
    config: Option<Rc<AuditConfig>>,
    metrics: Metrics,
}

impl Context for AuditRoot {}

impl RootContext for AuditRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match AuditConfig::from_json(&host::plugin_configuration()) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                self.metrics = Metrics::define();
                true
            }
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade_audit: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration the module has already been refused by
        // `on_configure`; no context is created then.
        let config = self.config.clone()?;
        Some(Box::new(AuditFilter {
            config,
            metrics: self.metrics,
            started_unix_ms: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuditFilter {
    config: Rc<AuditConfig>,
    metrics: Metrics,
    /// When the request headers reached this filter (the host clock is one
    /// cheap call; Envoy's `request.time` attribute is not).
    started_unix_ms: i64,
}

impl Context for AuditFilter {}

impl HttpContext for AuditFilter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.started_unix_ms = host::now_unix_millis();
        Action::Continue
    }

    fn on_log(&mut self) {
        let facts = gather_facts(&self.config, &self.metrics, self.started_unix_ms);
        let record = AuditRecord::build(&facts, &self.config);
        let line = schema::render(&record, &self.config);
        if let Err(status) = host::set_filter_state(contract::AUDIT, line.as_bytes()) {
            host::log(
                LogLevel::Warn,
                &format!("palisade_audit: cannot publish the record: {status:?}"),
            );
        }
        if self.config.publish_outcome {
            let outcome: &[u8] = if record.outcome.is_denied() {
                b"denied"
            } else {
                b"allowed"
            };
            if let Err(status) = host::set_filter_state(contract::AUDIT_OUTCOME, outcome) {
                host::log(
                    LogLevel::Warn,
                    &format!("palisade_audit: cannot publish the outcome: {status:?}"),
                );
            }
        }
        if self.config.envoy_log {
            host::log(LogLevel::Info, &format!("palisade.audit {line}"));
        }
        self.metrics.records.inc();
        if let Some(filter) = record.outcome.denied_by() {
            self.metrics.count_denial(filter);
        }
        if record.client.address_fallback.is_some() {
            self.metrics.client_address_fallback.inc();
        }
    }
}

fn string(path: &[&str]) -> Option<String> {
    host::property_string(path)
}

fn unsigned(path: &[&str]) -> Option<u64> {
    host::property_i64(path).and_then(|v| u64::try_from(v).ok())
}

fn gather_facts(config: &AuditConfig, metrics: &Metrics, started_unix_ms: i64) -> RequestFacts {
    let state = |name: &str| host::property_bytes(&[name]).filter(|b| !b.is_empty());
    let raw = [
        state(contract::IDENTITY),
        state(contract::MFA),
        state(contract::RATELIMIT),
        state(contract::WAF),
        state(contract::DENIAL),
    ];
    let [identity, mfa, ratelimit, waf, denial] = &raw;
    let states = FilterStates::from_json(
        identity.as_deref(),
        mfa.as_deref(),
        ratelimit.as_deref(),
        waf.as_deref(),
        denial.as_deref(),
    );
    let parsed = [
        states.identity.is_some(),
        states.mfa.is_some(),
        states.ratelimit.is_some(),
        states.waf.is_some(),
        states.denial.is_some(),
    ];
    let unreadable = raw
        .iter()
        .zip(parsed)
        .filter(|(r, p)| r.is_some() && !p)
        .count();
    metrics.unreadable_state.add(unreadable as u64);

    // Every host call that returns a value costs about as much as Envoy's
    // call back into the VM to place it (docs/performance.md): one read of
    // the whole request map is cheaper than the seven or more lookups by
    // name the record needs.
    let all_request_headers = host::request_headers();
    let find = |name: &str| first_value(&all_request_headers, name);
    let forwarding = config.trusted.header.name();
    let wanted = ["x-request-id", "user-agent", "referer", forwarding, XFCC];
    let mut request_headers: Vec<(String, String)> = Vec::new();
    for name in wanted
        .iter()
        .copied()
        .chain(config.request_headers.iter().map(String::as_str))
    {
        if name == forwarding && config.trusted.hops == 0 {
            continue;
        }
        if request_headers.iter().any(|(n, _)| n == name) {
            continue;
        }
        // A repeated header logs its first value, as Envoy's lookup by
        // name returns it.
        if let Some(value) = find(name) {
            request_headers.push((name.to_string(), value.to_string()));
        }
    }
    // The response map is read whole only when headers beyond `:status`
    // are configured.
    let (status, response_headers) = if config.response_headers.is_empty() {
        (host::response_header(":status"), Vec::new())
    } else {
        let all = host::response_headers();
        let status = first_value(&all, ":status").map(str::to_string);
        let wanted: Vec<(String, String)> = config
            .response_headers
            .iter()
            .filter_map(|name| first_value(&all, name).map(|v| (name.clone(), v.to_string())))
            .collect();
        (status, wanted)
    };
    let header = |name: &str| find(name).filter(|v| !v.is_empty()).map(str::to_string);
    let now_ms = host::now_unix_millis();
    // TLS attributes only exist on TLS connections; skip a call otherwise.
    let tls_version = string(&["connection", "tls_version"]);
    let peer_subject = tls_version
        .as_ref()
        .and_then(|_| string(&["connection", "subject_peer_certificate"]))
        .filter(|s| !s.is_empty());
    let peer_sha256 = peer_subject
        .as_ref()
        .and_then(|_| string(&["connection", "sha256_peer_certificate_digest"]));
    RequestFacts {
        start_unix_ms: if started_unix_ms > 0 {
            started_unix_ms
        } else {
            now_ms
        },
        duration_ns: (started_unix_ms > 0).then(|| (now_ms - started_unix_ms).max(0) * 1_000_000),
        request_id: first_value(&request_headers, "x-request-id").map(str::to_string),
        method: header(":method"),
        scheme: header(":scheme"),
        authority: header(":authority"),
        path: header(":path"),
        protocol: string(&["request", "protocol"]),
        status: status.and_then(|c| c.parse().ok()),
        code_details: string(&["response", "code_details"]),
        bytes_in: unsigned(&["request", "total_size"]),
        bytes_out: unsigned(&["response", "total_size"]),
        source_address: string(&["source", "address"]),
        request_headers,
        response_headers,
        route_name: string(&["xds", "route_name"]),
        upstream_cluster: string(&["xds", "cluster_name"]),
        upstream_host: string(&["upstream", "address"]),
        tls_version,
        peer_subject,
        peer_sha256,
        states,
    }
}
