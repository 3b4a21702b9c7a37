//! Elastic Common Schema 8.11: every field is an ECS field of the right type,
//! or sits under the custom field set `palisade.*` (see
//! [`super::custom_fields`]) or under `labels.*` (keyword values).
//!
//! Addresses have one meaning each:
//! - `source.*` is Envoy's downstream address (`source.address`): the
//!   connection's peer, or the address Envoy's connection manager took from
//!   `X-Forwarded-For` (its port unknown, so absent);
//! - `client.*` is the client: that address, or the hop the trusted proxies
//!   vouch for (`palisade_shared::forwarded`); never anything but an IP;
//! - `network.forwarded_ip` is the client address when it came from the
//!   forwarding header and differs from `source.ip`, that is when `source`
//!   is a proxy (ECS: "host IP address when the source IP address is the
//!   proxy");
//! - `destination.*` is the upstream host Envoy sent the request to.

use serde_json::{json, Value};

use super::{authority_host_port, custom_fields, prune};
use crate::record::{AuditRecord, Outcome};
use palisade_shared::contract::LlmDecision;
use palisade_shared::forwarded::{parse_socket_address, AddressSource};

/// The ECS version the records follow.
pub const ECS_VERSION: &str = "8.11.0";

pub(super) fn render(r: &AuditRecord) -> Value {
    let failed = r.outcome.is_denied() || r.response.status.is_some_and(|s| s >= 400);
    let (domain, port) = authority_host_port(r.request.authority.as_deref());
    let http_version = r
        .request
        .protocol
        .as_deref()
        .map(|p| p.trim_start_matches("HTTP/").to_string());
    let reason = match &r.outcome {
        Outcome::Denied { denied_by, reason } => Some(format!("denied by {denied_by}: {reason}")),
        Outcome::Allowed => None,
    };
    let original = r.request.path.as_ref().map(|p| match &r.request.query {
        Some(q) => format!("{p}?{q}"),
        None => p.clone(),
    });
    let peer = r.client.peer_ip;
    let client = r.client.resolved;
    let forwarded_ip = client
        .filter(|c| c.source == AddressSource::Header)
        .filter(|c| peer.is_none_or(|(ip, _)| ip != c.ip))
        .map(|c| c.ip.to_string());
    let upstream = r
        .upstream
        .as_ref()
        .and_then(|u| u.host.as_deref())
        .and_then(parse_socket_address);
    let tls = r.tls.as_ref().map(|t| {
        let cert = t.peer_certificate.as_ref();
        let sans: Vec<&String> = t.peer_dns_sans.iter().chain(&t.peer_uri_sans).collect();
        json!({
            "version_protocol": t.version.as_deref().map(|_| "tls"),
            "version": t.version.as_deref().map(|v| v.trim_start_matches("TLSv")),
            "established": t.version.as_ref().map(|_| true),
            "cipher": t.cipher,
            "client": {
                "server_name": t.sni,
                "subject": t.peer_subject,
                "issuer": cert.map(|c| &c.peer_issuer),
                "not_before": cert.and_then(|c| c.peer_not_before.as_ref()),
                "not_after": cert.and_then(|c| c.peer_not_after.as_ref()),
                "x509": {
                    "serial_number": cert.map(|c| &c.peer_serial_number),
                    "alternative_names": (!sans.is_empty()).then_some(sans),
                },
                "hash": { "sha256": t.peer_sha256.as_deref().map(str::to_ascii_uppercase) },
            },
        })
    });
    prune(json!({
        "@timestamp": r.time,
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "event",
            "category": ["web", "network"],
            "type": if r.outcome.is_denied() { json!(["access", "denied"]) } else { json!(["access", "allowed"]) },
            "outcome": if failed { "failure" } else { "success" },
            "action": r.outcome.denied_by().map(|f| format!("{f}-denied")).unwrap_or_else(|| "http-request".into()),
            "reason": reason,
            "duration": r.duration_ms.map(|ms| (ms * 1_000_000.0).round() as i64),
            "module": "palisade",
            "dataset": "palisade.audit",
        },
        "http": {
            "version": http_version,
            "request": {
                "id": r.request_id,
                "method": r.request.method,
                "bytes": r.request.bytes,
                "referrer": r.request.referer,
            },
            "response": {
                "status_code": r.response.status,
                "bytes": r.response.bytes,
            },
        },
        "url": {
            "scheme": r.request.scheme,
            "domain": domain,
            "port": port,
            "path": r.request.path,
            "query": r.request.query,
            "original": original,
        },
        "source": {
            // ECS: the raw address (a Unix socket's path) when it is no IP.
            "address": peer.map(|(ip, _)| ip.to_string()).or_else(|| r.client.peer.clone()),
            "ip": peer.map(|(ip, _)| ip.to_string()),
            "port": peer.and_then(|(_, port)| port),
        },
        "client": {
            "address": client.map(|c| c.ip.to_string()),
            "ip": client.map(|c| c.ip.to_string()),
            "port": client.and_then(|c| c.port),
        },
        "network": {
            "forwarded_ip": forwarded_ip,
            "protocol": "http",
        },
        "destination": {
            "address": upstream.map(|(ip, _)| ip.to_string()),
            "ip": upstream.map(|(ip, _)| ip.to_string()),
            "port": upstream.and_then(|(_, port)| port),
        },
        "user": { "id": r.decisions.identity.as_ref().and_then(|i| i.sub.clone()) },
        "user_agent": { "original": r.request.user_agent },
        "tls": tls,
        "service": { "name": r.service },
        "labels": {
            "route": r.route,
            "upstream_cluster": r.upstream.as_ref().and_then(|u| u.cluster.clone()),
            "response_code_details": r.response.code_details,
        },
        "gen_ai": r.decisions.llm.as_ref().map(gen_ai),
        "palisade": custom_fields(r, true),
    }))
}

/// The LLM call under `gen_ai.*`, as the OpenTelemetry GenAI semantic
/// conventions (and ECS's `gen_ai` field set, which follows them) name its
/// attributes; the budget stays under `palisade.llm`.
fn gen_ai(llm: &LlmDecision) -> Value {
    let usage = llm.usage != "pending";
    json!({
        "system": llm.provider,
        "operation": { "name": llm.operation },
        "request": { "model": llm.model, "max_tokens": llm.max_tokens },
        "response": { "model": llm.response_model },
        "usage": {
            "input_tokens": usage.then_some(llm.input_tokens),
            "output_tokens": usage.then_some(llm.output_tokens),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use crate::record::RequestFacts;
    use palisade_shared::contract::{Denial, Identity};

    fn render_ecs(facts: &RequestFacts, config: &str) -> Value {
        let config = AuditConfig::from_json(config.as_bytes()).unwrap();
        serde_json::from_str(&super::super::render(
            &AuditRecord::build(facts, &config),
            &config,
        ))
        .unwrap()
    }

    #[test]
    fn maps_the_ecs_fields() {
        let mut facts = RequestFacts {
            start_unix_ms: 1_795_890_605_123,
            method: Some("GET".into()),
            scheme: Some("https".into()),
            authority: Some("api.example.com:8443".into()),
            path: Some("/a?token=T".into()),
            protocol: Some("HTTP/1.1".into()),
            status: Some(401),
            source_address: Some("127.0.0.1:4000".into()),
            upstream_host: Some("10.1.0.2:8080".into()),
            duration_ns: Some(1_500_000),
            request_headers: vec![("x-tenant".into(), "acme".into())],
            ..RequestFacts::default()
        };
        facts.states.identity = Some(Identity {
            sub: Some("alice".into()),
            iss: "https://idp".into(),
            ..Identity::default()
        });
        facts.states.denial = Some(Denial {
            filter: "jwt".into(),
            status: 401,
            reason: "token_expired".into(),
        });
        let v = render_ecs(&facts, r#"{"schema":"ecs","request_headers":["x-tenant"]}"#);
        assert_eq!(v["@timestamp"], "2026-11-28T18:30:05.123Z");
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["response"]["status_code"], 401);
        assert_eq!(v["http"]["version"], "1.1");
        assert_eq!(v["url"]["path"], "/a");
        assert_eq!(v["url"]["query"], "token=REDACTED");
        assert_eq!(v["url"]["domain"], "api.example.com");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["source"]["ip"], "127.0.0.1");
        assert_eq!(v["source"]["port"], 4000);
        assert_eq!(v["client"]["ip"], "127.0.0.1");
        assert_eq!(v["client"]["port"], 4000);
        assert!(v["network"].get("forwarded_ip").is_none());
        assert_eq!(v["destination"]["ip"], "10.1.0.2");
        assert_eq!(v["destination"]["port"], 8080);
        assert_eq!(v["destination"]["address"], "10.1.0.2");
        assert_eq!(v["user"]["id"], "alice");
        assert!(
            v["user"].get("domain").is_none(),
            "an issuer is no directory"
        );
        assert_eq!(v["palisade"]["identity"]["iss"], "https://idp");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["action"], "jwt-denied");
        assert_eq!(v["event"]["duration"], 1_500_000);
        assert_eq!(v["palisade"]["denial"]["reason"], "token_expired");
        assert_eq!(v["palisade"]["request"]["headers"]["x-tenant"], "acme");
        assert!(v["http"]["request"].get("headers").is_none());
        assert!(v.get("tls").is_none());
    }

    #[test]
    fn an_llm_call_is_under_gen_ai_and_its_budget_under_palisade() {
        let mut facts = RequestFacts {
            method: Some("POST".into()),
            path: Some("/v1/chat/completions".into()),
            status: Some(200),
            ..RequestFacts::default()
        };
        facts.states.llm = Some(LlmDecision {
            provider: "openai".into(),
            operation: "chat".into(),
            model: "gpt-4o".into(),
            response_model: Some("gpt-4o-2024-08-06".into()),
            max_tokens: Some(500),
            outcome: "allowed".into(),
            input_tokens: 19,
            output_tokens: 10,
            usage: "reported".into(),
            charged: 29,
            budget: Some("team".into()),
            budget_key: Some("client_id=team-a".into()),
            remaining: Some(971),
            ..LlmDecision::default()
        });
        let v = render_ecs(&facts, r#"{"schema":"ecs"}"#);
        assert_eq!(
            v["gen_ai"],
            json!({"system": "openai", "operation": {"name": "chat"},
                   "request": {"model": "gpt-4o", "max_tokens": 500},
                   "response": {"model": "gpt-4o-2024-08-06"},
                   "usage": {"input_tokens": 19, "output_tokens": 10}})
        );
        assert_eq!(v["palisade"]["llm"]["remaining"], 971);
        assert_eq!(v["palisade"]["llm"]["budget_key"], "client_id=team-a");
        // A call refused before it reached the provider used no tokens:
        // no usage is claimed.
        facts.states.llm.as_mut().unwrap().usage = "pending".into();
        let v = render_ecs(&facts, r#"{"schema":"ecs"}"#);
        assert!(v["gen_ai"].get("usage").is_none(), "{v}");
    }

    #[test]
    fn behind_proxies_source_is_the_proxy_and_the_client_is_forwarded() {
        let facts = RequestFacts {
            authority: Some("[2001:db8::1]:8443".into()),
            source_address: Some("10.0.0.5:40000".into()),
            request_headers: vec![(
                "x-forwarded-for".into(),
                "evil, 198.51.100.9:4711, 203.0.113.5".into(),
            )],
            ..RequestFacts::default()
        };
        let v = render_ecs(&facts, r#"{"schema":"ecs","xff_trusted_hops":2}"#);
        assert_eq!(v["url"]["domain"], "[2001:db8::1]");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["source"]["ip"], "10.0.0.5");
        assert_eq!(v["source"]["port"], 40000);
        assert_eq!(v["client"]["ip"], "198.51.100.9");
        assert_eq!(v["client"]["port"], 4711);
        assert_eq!(v["network"]["forwarded_ip"], "198.51.100.9");
        assert_eq!(
            v["palisade"]["client"]["forwarded_for"],
            json!(["evil", "198.51.100.9:4711", "203.0.113.5"])
        );

        // `unknown` at the trusted hop: the next trusted one, never the text.
        let mut hidden = facts.clone();
        hidden.request_headers[0].1 = "unknown, 203.0.113.5".into();
        let v = render_ecs(&hidden, r#"{"schema":"ecs","xff_trusted_hops":2}"#);
        assert_eq!(v["client"]["ip"], "203.0.113.5");
        assert_eq!(v["network"]["forwarded_ip"], "203.0.113.5");
        assert_eq!(
            v["palisade"]["client"]["address_fallback"],
            "not_an_address"
        );
        hidden.request_headers[0].1 = "unknown".into();
        let v = render_ecs(&hidden, r#"{"schema":"ecs","xff_trusted_hops":1}"#);
        assert_eq!(v["client"]["ip"], "10.0.0.5");
        assert!(v["network"].get("forwarded_ip").is_none());
    }
}
