//! The proxy-wasm adapter: gathers the request's facts in `on_log`, builds
//! the record with the core, and publishes it. Nothing here decides anything.

use std::rc::Rc;

use palisade_shared::contract;
use palisade_shared::host::{self, Counter};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::AuditConfig;
use crate::record::{AuditRecord, FilterStates, RequestFacts};
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
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuditFilter {
    config: Rc<AuditConfig>,
    metrics: Metrics,
}

impl Context for AuditFilter {}

impl HttpContext for AuditFilter {
    fn on_log(&mut self) {
        let facts = gather_facts(&self.config, &self.metrics);
        let record = AuditRecord::build(&facts, &self.config);
        let line = schema::render(&record, &self.config).to_string();
        if let Err(status) = host::set_filter_state(contract::AUDIT, line.as_bytes()) {
            host::log(
                LogLevel::Warn,
                &format!("palisade_audit: cannot publish the record: {status:?}"),
            );
        }
        if self.config.envoy_log {
            host::log(LogLevel::Info, &format!("palisade.audit {line}"));
        }
        self.metrics.records.inc();
        if let Some(filter) = record.outcome.denied_by() {
            self.metrics.count_denial(filter);
        }
    }
}

fn string(path: &[&str]) -> Option<String> {
    host::property_string(path)
}

fn unsigned(path: &[&str]) -> Option<u64> {
    host::property_i64(path).and_then(|v| u64::try_from(v).ok())
}

fn gather_facts(config: &AuditConfig, metrics: &Metrics) -> RequestFacts {
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

    // One read of the header map gives the request line and the headers the
    // record needs: each host call costs far more than a lookup in the map.
    let request_headers = host::request_headers();
    let pseudo = |name: &str| {
        request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let start_unix_ms = host::property_i64(&["request", "time"])
        .map(|ns| ns / 1_000_000)
        .unwrap_or_else(host::now_unix_millis);
    let response_headers = if config.response_headers.is_empty() {
        Vec::new()
    } else {
        host::response_headers()
    };
    // TLS attributes only exist on TLS connections; skip two calls otherwise.
    let tls_version = string(&["connection", "tls_version"]);
    let peer_subject = tls_version
        .as_ref()
        .and_then(|_| string(&["connection", "subject_peer_certificate"]));
    RequestFacts {
        start_unix_ms,
        duration_ns: host::property_i64(&["request", "duration"]),
        request_id: pseudo("x-request-id"),
        method: pseudo(":method"),
        scheme: pseudo(":scheme"),
        authority: pseudo(":authority"),
        path: pseudo(":path"),
        protocol: string(&["request", "protocol"]),
        status: host::property_i64(&["response", "code"]).and_then(|c| u16::try_from(c).ok()),
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
        states,
    }
}
