//! Elastic Common Schema 8.x: the fields Elastic's HTTP and web-access
//! dashboards read (`@timestamp`, `http.*`, `url.*`, `source.*`, `user.*`,
//! `event.*`). Palisade's decisions go under `palisade.*`, a custom field set.

use serde_json::{json, Value};

use super::{decisions, prune};
use crate::record::{AuditRecord, Outcome};

/// The ECS version the records follow.
pub const ECS_VERSION: &str = "8.11.0";

pub(super) fn render(r: &AuditRecord) -> Value {
    let failed = r.outcome.is_denied() || r.response.status.is_some_and(|s| s >= 400);
    let (host, port) = split_host_port(r.request.authority.as_deref());
    let http_version = r
        .request
        .protocol
        .as_deref()
        .map(|p| p.trim_start_matches("HTTP/").to_string());
    let identity = r.decisions.identity.as_ref();
    let reason = match &r.outcome {
        Outcome::Denied { denied_by, reason } => Some(format!("denied by {denied_by}: {reason}")),
        Outcome::Allowed => None,
    };
    let original = r.request.path.as_ref().map(|p| match &r.request.query {
        Some(q) => format!("{p}?{q}"),
        None => p.clone(),
    });
    let (client_ip, _) = split_host_port(r.client.peer.as_deref());
    let peer_port = r
        .client
        .peer
        .as_deref()
        .and_then(|p| p.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
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
            "dataset": "palisade.audit",
        },
        "http": {
            "version": http_version,
            "request": {
                "id": r.request_id,
                "method": r.request.method,
                "bytes": r.request.bytes,
                "referrer": r.request.referer,
                "headers": if r.request.headers.is_empty() { Value::Null } else { json!(r.request.headers) },
            },
            "response": {
                "status_code": r.response.status,
                "bytes": r.response.bytes,
                "headers": if r.response.headers.is_empty() { Value::Null } else { json!(r.response.headers) },
            },
        },
        "url": {
            "scheme": r.request.scheme,
            "domain": host,
            "port": port,
            "path": r.request.path,
            "query": r.request.query,
            "original": original,
        },
        "source": {
            "ip": r.client.address,
            "address": r.client.address,
        },
        "client": {
            "ip": client_ip,
            "port": peer_port,
        },
        "network": {
            "forwarded_ip": r.client.forwarded_for.first(),
            "protocol": "http",
        },
        "user": {
            "id": identity.and_then(|i| i.sub.clone()),
            "domain": identity.map(|i| i.iss.clone()),
        },
        "user_agent": { "original": r.request.user_agent },
        "tls": r.tls.as_ref().map(|t| json!({
            "version_protocol": t.version.as_deref().map(|_| "tls"),
            "version": t.version.as_deref().map(|v| v.trim_start_matches("TLSv")),
            "client": { "subject": t.peer_subject },
        })),
        "service": { "name": r.service },
        "destination": { "address": r.upstream.as_ref().and_then(|u| u.host.clone()) },
        "labels": {
            "route": r.route,
            "upstream_cluster": r.upstream.as_ref().and_then(|u| u.cluster.clone()),
            "response_code_details": r.response.code_details,
        },
        "palisade": decisions(r),
    }))
}

fn split_host_port(authority: Option<&str>) -> (Option<String>, Option<u16>) {
    let Some(a) = authority else {
        return (None, None);
    };
    if let Some(rest) = a.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (
            Some(host.to_string()),
            tail.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (Some(h.to_string()), Some(port)),
            Err(_) => (Some(a.to_string()), None),
        },
        _ => (Some(a.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use crate::record::RequestFacts;
    use palisade_shared::contract::{Denial, Identity};

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
            duration_ns: Some(1_500_000),
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
        let config = AuditConfig::from_json(br#"{"schema":"ecs"}"#).unwrap();
        let v: Value = serde_json::from_str(&super::super::render(
            &AuditRecord::build(&facts, &config),
            &config,
        ))
        .unwrap();
        assert_eq!(v["@timestamp"], "2026-11-28T18:30:05.123Z");
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["response"]["status_code"], 401);
        assert_eq!(v["http"]["version"], "1.1");
        assert_eq!(v["url"]["path"], "/a");
        assert_eq!(v["url"]["query"], "token=REDACTED");
        assert_eq!(v["url"]["domain"], "api.example.com");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["source"]["ip"], "127.0.0.1");
        assert_eq!(v["client"]["port"], 4000);
        assert_eq!(v["user"]["id"], "alice");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["action"], "jwt-denied");
        assert_eq!(v["event"]["duration"], 1_500_000);
        assert_eq!(v["palisade"]["denial"]["reason"], "token_expired");
        assert!(v.get("tls").is_none());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port(Some("h:80")), (Some("h".into()), Some(80)));
        assert_eq!(
            split_host_port(Some("[::1]:80")),
            (Some("::1".into()), Some(80))
        );
        assert_eq!(split_host_port(Some("h")), (Some("h".into()), None));
        assert_eq!(split_host_port(None), (None, None));
    }
}
