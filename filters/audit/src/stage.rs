//! The audit log as a stage of the engine: when the request ends, gathers
//! its facts (the decisions of the other stages from memory, or from filter
//! state when they run as separate modules; Envoy's attributes; the
//! headers), builds the record with the core and publishes it. Nothing here
//! decides anything.

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Counter, Exchange, Host, LogLevel, Module, Needs, Stage, Step,
};

use crate::config::AuditConfig;
use crate::record::{AuditRecord, FilterStates, RequestFacts, XFCC};
use crate::schema;

/// The stages whose refusals are counted separately.
const FILTERS: [&str; 7] = ["jwt", "llm", "mcp", "mfa", "ratelimit", "transport", "waf"];

struct Metrics {
    records: Counter,
    denied: [Counter; FILTERS.len()],
    denied_other: Counter,
    unreadable_state: Counter,
    client_address_fallback: Counter,
}

impl Metrics {
    fn define(host: &dyn Host) -> Self {
        Metrics {
            records: Counter::define(host, "palisade.audit.records_written"),
            denied: FILTERS.map(|f| Counter::define(host, &format!("palisade.audit.denied.{f}"))),
            denied_other: Counter::define(host, "palisade.audit.denied.other"),
            unreadable_state: Counter::define(host, "palisade.audit.unreadable_filter_state"),
            client_address_fallback: Counter::define(
                host,
                "palisade.audit.client_address_fallback",
            ),
        }
    }

    fn count_denial(&self, host: &dyn Host, filter: &str) {
        match FILTERS.iter().position(|f| *f == filter) {
            Some(i) => self.denied.get(i).map_or((), |c| c.inc(host)),
            None => self.denied_other.inc(host),
        }
    }
}

/// The audit stage.
pub struct AuditStage {
    config: AuditConfig,
    metrics: Metrics,
}

/// The standalone module `palisade_audit.wasm`.
pub struct AuditModule;

impl Module for AuditModule {
    type Stage = AuditStage;
    const NAME: &'static str = "audit";

    fn configure(config: &[u8], host: &dyn Host) -> Result<AuditStage, ConfigError> {
        AuditStage::configure(config, host)
    }
}

/// What the stage keeps for one request: when it started.
#[derive(Debug, Default)]
pub struct AuditRequest {
    /// The host clock when the request headers arrived (one cheap call;
    /// Envoy's `request.time` attribute is not).
    started_unix_ms: i64,
}

impl AuditStage {
    /// The stage for a configuration, its metrics defined.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        Ok(AuditStage {
            config: AuditConfig::from_json(config)?,
            metrics: Metrics::define(host),
        })
    }

    fn gather(&self, started_unix_ms: i64, cx: &mut Exchange<'_>) -> RequestFacts {
        let (config, host) = (&self.config, cx.host);
        // The MCP decision is looked for only on what can be an MCP request
        // (its headers say so): reading filter state costs a host call, and
        // most requests are not MCP.
        let mcp_request = ["mcp-protocol-version", "mcp-session-id"]
            .iter()
            .any(|h| cx.request.header(h).is_some())
            || cx
                .request
                .header("accept")
                .is_some_and(|a| a.contains("text/event-stream"));
        let d = &mut *cx.decisions;
        let states = FilterStates {
            identity: d.identity(host).map(|i| (**i).clone()),
            mfa: d.mfa(host).cloned(),
            ratelimit: d.ratelimit(host).cloned(),
            waf: d.waf(host).cloned(),
            denial: d.denial(host).cloned(),
            mcp: if mcp_request {
                d.mcp(host).cloned()
            } else {
                None
            },
            llm: d.llm(host).cloned(),
            tls: d.tls(host).cloned(),
        };
        let unreadable = d.unreadable().len();
        if unreadable > 0 {
            self.metrics
                .unreadable_state
                .add(host, u64::from(unreadable));
        }
        let head = &*cx.request;
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
            if let Some(value) = head.header(name) {
                request_headers.push((name.to_string(), value.to_string()));
            }
        }
        // The response map is read whole only when headers beyond
        // `:status` are configured.
        let (status, response_headers) = if config.response_headers.is_empty() {
            (cx.response.header(host, ":status"), Vec::new())
        } else {
            let all = cx.response.headers(host);
            let find = |name: &str| palisade_shared::headers::first_value(all, name);
            let status = find(":status").map(str::to_string);
            let wanted = config
                .response_headers
                .iter()
                .filter_map(|name| find(name).map(|v| (name.clone(), v.to_string())))
                .collect();
            (status, wanted)
        };
        let pseudo = |value: &str| (!value.is_empty()).then(|| value.to_string());
        let now_ms = cx.now_ms();
        let a = &mut *cx.attributes;
        let mut string = |attribute| a.string(host, attribute).map(str::to_string);
        // TLS attributes only exist on TLS connections; skip a call otherwise.
        let tls_version = string(Attribute::TlsVersion);
        let peer_subject = tls_version
            .as_ref()
            .and_then(|_| string(Attribute::PeerSubject))
            .filter(|s| !s.is_empty());
        // The certificate's digest, to trust a forwarded copy of it only when
        // it is the one this connection presented.
        let peer_sha256 = peer_subject
            .as_ref()
            .and_then(|_| string(Attribute::PeerSha256));
        let protocol = string(Attribute::RequestProtocol);
        let code_details = string(Attribute::ResponseCodeDetails);
        let source_address = string(Attribute::SourceAddress);
        let route_name = string(Attribute::RouteName);
        let upstream_cluster = string(Attribute::ClusterName);
        let upstream_host = string(Attribute::UpstreamAddress);
        let mut unsigned = |attribute| {
            cx.attributes
                .integer(host, attribute)
                .and_then(|v| u64::try_from(v).ok())
        };
        let bytes_in = unsigned(Attribute::RequestTotalSize);
        let bytes_out = unsigned(Attribute::ResponseTotalSize);
        RequestFacts {
            start_unix_ms: if started_unix_ms > 0 {
                started_unix_ms
            } else {
                now_ms
            },
            duration_ns: (started_unix_ms > 0)
                .then(|| (now_ms - started_unix_ms).max(0) * 1_000_000),
            request_id: head.header("x-request-id").and_then(pseudo),
            method: pseudo(head.method()),
            scheme: pseudo(head.scheme()),
            authority: pseudo(head.authority()),
            path: pseudo(head.path()),
            protocol,
            status: status.and_then(|c| c.parse().ok()),
            code_details,
            bytes_in,
            bytes_out,
            source_address,
            request_headers,
            response_headers,
            route_name,
            upstream_cluster,
            upstream_host,
            tls_version,
            peer_subject,
            peer_sha256,
            states,
        }
    }
}

impl Stage for AuditStage {
    type Request = AuditRequest;

    fn needs(&self) -> Needs {
        Needs {
            whole_request_map_at_log: true,
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut AuditRequest, cx: &mut Exchange<'_>) -> Step {
        request.started_unix_ms = cx.now_ms();
        Step::Continue
    }

    fn on_log(&self, request: &mut AuditRequest, cx: &mut Exchange<'_>) {
        let host = cx.host;
        let facts = self.gather(request.started_unix_ms, cx);
        let record = AuditRecord::build(&facts, &self.config);
        let line = schema::render(&record, &self.config);
        engine::publish(host, AuditModule::NAME, contract::AUDIT, line.as_bytes());
        if self.config.publish_outcome {
            let outcome: &[u8] = if record.outcome.is_denied() {
                b"denied"
            } else {
                b"allowed"
            };
            engine::publish(host, AuditModule::NAME, contract::AUDIT_OUTCOME, outcome);
        }
        if self.config.envoy_log {
            host.log(LogLevel::Info, &format!("palisade.audit {line}"));
        }
        self.metrics.records.inc(host);
        if let Some(filter) = record.outcome.denied_by() {
            self.metrics.count_denial(host, filter);
        }
        if record.client.address_fallback.is_some() {
            self.metrics.client_address_fallback.inc(host);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The audit stage in the engine against the fake host: alone, it reads
    //! the other modules' decisions from filter state, once each, and
    //! Envoy's attributes, and writes one redacted record.

    use palisade_shared::contract;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::{Engine, Module};

    use super::*;

    #[test]
    fn one_record_from_filter_state_and_attributes() {
        // An API key is a credential: refused like Authorization.
        let err =
            AuditModule::configure(br#"{"request_headers": ["X-Api-Key"]}"#, &FakeHost::new())
                .err()
                .unwrap();
        assert_eq!(err.path, "request_headers[0]");
        let host = FakeHost::new()
            .with_request("GET", "/login?user=bob&password=hunter2")
            .with_request_header("x-tenant", "acme")
            .with_request_header("x-request-id", "req-9")
            .with_property(&["source", "address"], b"192.0.2.7:5000")
            .with_property(&["request", "protocol"], b"HTTP/1.1")
            .with_property(
                &[contract::DENIAL],
                br#"{"filter":"ratelimit","status":429,"reason":"limited"}"#,
            )
            .with_property(&[contract::WAF], b"{not json");
        host.set_response_headers(&[(":status", "429")]);
        let stage = AuditModule::configure(br#"{"request_headers": ["x-tenant"]}"#, &host).unwrap();
        let engine = Engine::new(stage, AuditModule::NAME, 1, &host).unwrap();
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host);
        assert_eq!(
            host.header_reads(),
            0,
            "nothing read before the request ends"
        );
        engine.on_log(2, &mut slot, &host);
        let record = host.property_json(contract::AUDIT).unwrap();
        assert_eq!(record["outcome"], "denied", "{record}");
        assert_eq!(record["denied_by"], "ratelimit");
        assert_eq!(record["response"]["status"], 429);
        assert_eq!(record["request"]["protocol"], "HTTP/1.1");
        assert_eq!(record["request_id"], "req-9");
        let text = record.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(record["request"]["headers"]["x-tenant"], "acme");
        assert_eq!(host.metric("palisade.audit.records_written"), 1);
        assert_eq!(host.metric("palisade.audit.denied.ratelimit"), 1);
        assert_eq!(host.metric("palisade.audit.unreadable_filter_state"), 1);
        let reads = host.properties_read();
        for state in [contract::IDENTITY, contract::WAF, contract::DENIAL] {
            assert_eq!(
                reads.iter().filter(|p| *p == state).count(),
                1,
                "{state}: {reads:?}"
            );
        }
    }
}
