//! OCSF 1.7 HTTP Activity (class 4002, category 4 Network Activity).
//!
//! - `activity_id` comes from the method (case-sensitive, RFC 9110); a method
//!   outside OCSF's list is `activity_id` 99 with the method itself as
//!   `activity_name`, and `http_request.http_method` (an enum in 1.7) is
//!   left out. `type_uid` = `class_uid * 100 + activity_id`.
//! - The profiles whose attributes a record carries are declared in
//!   `metadata.profiles`: `security_control` (`action*`, `disposition*`),
//!   `datetime` (`time_dt`), `host` (`actor`).
//! - `src_endpoint` is the client, the peer or the hop the trusted proxies
//!   vouch for, with the client's own port when known (never the proxy
//!   connection's port with a forwarded address); the proxies between it and
//!   Envoy are its `intermediate_ips`. `dst_endpoint` is the upstream host.
//! - `tls.certificate` (which requires `issuer` and `serial_number`) is
//!   written only when Envoy forwards the client certificate (see
//!   [`crate::certificate`]); otherwise the subject goes to
//!   `unmapped.palisade.tls`.
//! - What OCSF has no attribute for goes under `unmapped.palisade` (see
//!   [`super::custom_fields`]).

use serde_json::{json, Value};

use super::{authority_host_port, custom_fields, prune};
use crate::record::{AuditRecord, Outcome};
use palisade_shared::forwarded::{parse_socket_address, AddressSource};

/// The OCSF version the records follow.
pub const OCSF_VERSION: &str = "1.7.0";
const CLASS_UID: u32 = 4002;
const CATEGORY_UID: u32 = 4;
/// OCSF `fingerprint.algorithm_id` of SHA-256.
const SHA_256: u32 = 3;

/// OCSF HTTP Activity `activity_id` and its caption for a method. Methods are
/// case-sensitive: `get` is not `GET`.
pub fn activity(method: Option<&str>) -> (u32, &'static str) {
    match method {
        Some("CONNECT") => (1, "Connect"),
        Some("DELETE") => (2, "Delete"),
        Some("GET") => (3, "Get"),
        Some("HEAD") => (4, "Head"),
        Some("OPTIONS") => (5, "Options"),
        Some("POST") => (6, "Post"),
        Some("PUT") => (7, "Put"),
        Some("TRACE") => (8, "Trace"),
        Some("PATCH") => (9, "Patch"),
        None => (0, "Unknown"),
        Some(_) => (99, "Other"),
    }
}

pub(super) fn render(r: &AuditRecord) -> Value {
    let method = r.request.method.as_deref();
    let (activity_id, caption) = activity(method);
    // 99 (Other): the name is the source's own value.
    let activity_name = match (activity_id, method) {
        (99, Some(m)) => m,
        _ => caption,
    };
    let denied = r.outcome.is_denied();
    let failed = denied || r.response.status.is_some_and(|s| s >= 400);
    let identity = r.decisions.identity.as_ref();
    let status_detail = match &r.outcome {
        Outcome::Denied { denied_by, reason } => Some(format!("denied by {denied_by}: {reason}")),
        Outcome::Allowed => r.response.code_details.clone(),
    };
    let (hostname, port) = authority_host_port(r.request.authority.as_deref());
    let url = r.request.path.as_ref().map(|path| {
        let mut url_string = String::new();
        if let (Some(scheme), Some(authority)) = (&r.request.scheme, &r.request.authority) {
            url_string.push_str(&format!("{scheme}://{authority}"));
        }
        url_string.push_str(path);
        if let Some(q) = &r.request.query {
            url_string.push('?');
            url_string.push_str(q);
        }
        json!({
            "scheme": r.request.scheme,
            "hostname": hostname,
            "port": port,
            "path": path,
            "query_string": r.request.query,
            "url_string": url_string,
        })
    });
    let headers = |h: &std::collections::BTreeMap<String, String>| {
        let list: Vec<Value> = h
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        (!list.is_empty()).then_some(Value::Array(list))
    };
    let client = r.client.resolved;
    let src_endpoint = client.map(|c| {
        let intermediate = &r.client.intermediate_ips;
        json!({
            "ip": c.ip.to_string(),
            "port": c.port,
            "intermediate_ips": (c.source == AddressSource::Header && !intermediate.is_empty())
                .then(|| intermediate.iter().map(ToString::to_string).collect::<Vec<_>>()),
        })
    });
    let upstream = r
        .upstream
        .as_ref()
        .and_then(|u| u.host.as_deref())
        .and_then(parse_socket_address);
    let actor = identity
        .and_then(|i| i.sub.as_ref().map(|sub| (i, sub)))
        .map(|(i, sub)| {
            json!({
                "user": { "uid": sub },
                "idp": { "name": (!i.provider.is_empty()).then_some(&i.provider), "issuer": i.iss },
            })
        });
    let tls = r.tls.as_ref().and_then(|t| {
        let version = t.version.as_ref()?;
        let sans: Vec<Value> = t
            .peer_dns_sans
            .iter()
            .map(|n| json!({"name": n, "type": "DNS"}))
            .chain(
                t.peer_uri_sans
                    .iter()
                    .map(|u| json!({"name": u, "type": "URI"})),
            )
            .collect();
        Some(json!({
            "version": version,
            "cipher": t.cipher,
            "sni": t.sni,
            "certificate": t.peer_certificate.as_ref().map(|c| json!({
                "issuer": c.peer_issuer,
                "serial_number": c.peer_serial_number,
                "subject": t.peer_subject,
                "created_time": c.parsed.not_before_ms,
                "expiration_time": c.parsed.not_after_ms,
                "sans": (!sans.is_empty()).then_some(&sans),
                "fingerprints": t.peer_sha256.as_ref().map(|h| json!([{
                    "algorithm_id": SHA_256,
                    "algorithm": "SHA-256",
                    "value": h,
                }])),
            })),
        }))
    });
    // Without the forwarded certificate, OCSF has no place for the subject.
    let tls_unmapped = r
        .tls
        .as_ref()
        .filter(|t| t.peer_certificate.is_none() || t.version.is_none())
        .map(|t| {
            json!({
                "peer_subject": t.peer_subject,
                "peer_sha256": t.peer_sha256,
                "peer_dns_sans": (!t.peer_dns_sans.is_empty()).then_some(&t.peer_dns_sans),
                "peer_uri_sans": (!t.peer_uri_sans.is_empty()).then_some(&t.peer_uri_sans),
            })
        });
    let mut profiles = vec!["security_control", "datetime"];
    if actor.is_some() {
        profiles.push("host");
    }
    let mut unmapped = custom_fields(r, false);
    if let Value::Object(map) = &mut unmapped {
        map.insert("tls".into(), json!(tls_unmapped));
    }
    let mut event = prune(json!({
        "class_uid": CLASS_UID,
        "class_name": "HTTP Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("HTTP Activity: {caption}"),
        "time": r.time_unix_ms,
        "time_dt": r.time,
        "duration": r.duration_ms.map(|ms| ms.round() as i64),
        "severity_id": if denied { 3 } else { 1 },
        "severity": if denied { "Medium" } else { "Informational" },
        "status_id": if failed { 2 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "status_code": r.response.status.map(|s| s.to_string()),
        "status_detail": status_detail,
        "action_id": if denied { 2 } else { 1 },
        "action": if denied { "Denied" } else { "Allowed" },
        "disposition_id": if denied { 2 } else { 1 },
        "disposition": if denied { "Blocked" } else { "Allowed" },
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": profiles,
            "uid": r.request_id,
            "log_name": "palisade.audit",
            "product": {
                "name": "Palisade",
                "vendor_name": "Palisade",
                "version": env!("CARGO_PKG_VERSION"),
                "feature": { "name": "audit" },
            },
        },
        "http_request": {
            "uid": r.request_id,
            "http_method": (activity_id != 99).then_some(method).flatten(),
            "version": r.request.protocol,
            "user_agent": r.request.user_agent,
            "referrer": r.request.referer,
            "length": r.request.bytes,
            "http_headers": headers(&r.request.headers),
            "x_forwarded_for": (!r.client.hop_ips.is_empty())
                .then(|| r.client.hop_ips.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "url": url,
        },
        "http_response": r.response.status.map(|code| json!({
            "code": code,
            "length": r.response.bytes,
            "message": r.response.code_details,
            "http_headers": headers(&r.response.headers),
        })),
        "src_endpoint": src_endpoint,
        "dst_endpoint": {
            "ip": upstream.map(|(ip, _)| ip.to_string()),
            "port": upstream.and_then(|(_, port)| port),
            "svc_name": r.upstream.as_ref().and_then(|u| u.cluster.clone()),
        },
        "actor": actor,
        "tls": tls,
        "unmapped": { "route": r.route, "service": r.service, "palisade": unmapped },
    }));
    // HTTP Activity needs a request or a response, even when nothing is
    // known of either (a stream reset before its headers).
    if event.get("http_request").is_none() && event.get("http_response").is_none() {
        event["http_request"] = json!({});
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use crate::record::RequestFacts;
    use palisade_shared::contract::{Identity, WafDecision};

    fn render_ocsf(facts: &RequestFacts, config: &str) -> Value {
        let config = AuditConfig::from_json(config.as_bytes()).unwrap();
        serde_json::from_str(&super::super::render(
            &AuditRecord::build(facts, &config),
            &config,
        ))
        .unwrap()
    }

    #[test]
    fn activity_ids() {
        let cases = [
            (Some("GET"), 3),
            (Some("POST"), 6),
            (Some("post"), 99),
            (Some("PATCH"), 9),
            (Some("CONNECT"), 1),
            (Some("PURGE"), 99),
            (None, 0),
        ];
        for (m, id) in cases {
            assert_eq!(activity(m).0, id, "{m:?}");
        }
    }

    #[test]
    fn maps_the_ocsf_fields() {
        let mut facts = RequestFacts {
            start_unix_ms: 1_795_890_605_123,
            method: Some("POST".into()),
            scheme: Some("http".into()),
            authority: Some("h:8080".into()),
            path: Some("/p?password=x".into()),
            status: Some(403),
            source_address: Some("[::1]:9000".into()),
            upstream_host: Some("10.0.0.2:80".into()),
            ..RequestFacts::default()
        };
        facts.states.waf = Some(WafDecision {
            score: 5,
            action: "blocked".into(),
            ..WafDecision::default()
        });
        let v = render_ocsf(&facts, r#"{"schema":"ocsf"}"#);
        assert_eq!(v["class_uid"], 4002);
        assert_eq!(v["activity_id"], 6);
        assert_eq!(v["type_uid"], 400206);
        assert_eq!(v["time"], 1_795_890_605_123i64);
        assert_eq!(v["time_dt"], "2026-11-28T18:30:05.123Z");
        assert_eq!(v["action_id"], 2);
        assert_eq!(v["disposition"], "Blocked");
        assert_eq!(
            v["metadata"]["profiles"],
            json!(["security_control", "datetime"])
        );
        assert_eq!(v["http_request"]["http_method"], "POST");
        assert_eq!(v["http_request"]["url"]["hostname"], "h");
        assert_eq!(v["http_request"]["url"]["port"], 8080);
        assert_eq!(
            v["http_request"]["url"]["query_string"],
            "password=REDACTED"
        );
        assert_eq!(
            v["http_request"]["url"]["url_string"],
            "http://h:8080/p?password=REDACTED"
        );
        assert_eq!(v["http_response"]["code"], 403);
        assert_eq!(v["src_endpoint"]["ip"], "::1");
        assert_eq!(v["src_endpoint"]["port"], 9000);
        assert_eq!(v["dst_endpoint"]["ip"], "10.0.0.2");
        assert_eq!(v["dst_endpoint"]["port"], 80);
        assert_eq!(v["unmapped"]["palisade"]["waf"]["score"], 5);
        assert!(v.get("actor").is_none());
    }

    #[test]
    fn an_llm_call_is_an_extension_of_the_record() {
        let mut facts = RequestFacts {
            method: Some("POST".into()),
            path: Some("/v1/messages".into()),
            status: Some(429),
            ..RequestFacts::default()
        };
        facts.states.llm = Some(palisade_shared::contract::LlmDecision {
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            outcome: "budget_exceeded".into(),
            budget: Some("team".into()),
            remaining: Some(12),
            ..Default::default()
        });
        let v = render_ocsf(&facts, r#"{"schema":"ocsf"}"#);
        let llm = &v["unmapped"]["palisade"]["llm"];
        assert_eq!(llm["model"], "claude-sonnet-4-5");
        assert_eq!(
            (llm["budget"].as_str(), llm["remaining"].as_u64()),
            (Some("team"), Some(12))
        );
    }

    #[test]
    fn other_methods_keep_their_name() {
        let facts = RequestFacts {
            method: Some("PURGE".into()),
            path: Some("/".into()),
            ..RequestFacts::default()
        };
        let v = render_ocsf(&facts, r#"{"schema":"ocsf"}"#);
        assert_eq!(v["activity_id"], 99);
        assert_eq!(v["activity_name"], "PURGE");
        assert_eq!(v["type_uid"], 400299);
        assert_eq!(v["type_name"], "HTTP Activity: Other");
        assert!(v["http_request"].get("http_method").is_none());
        assert!(v.get("http_response").is_none(), "no status, no response");
    }

    #[test]
    fn the_client_is_one_endpoint_and_identity_the_actor() {
        let mut facts = RequestFacts {
            method: Some("GET".into()),
            path: Some("/".into()),
            source_address: Some("10.0.0.5:40000".into()),
            request_headers: vec![(
                "forwarded".into(),
                r#"for=unknown, for="[2001:db8::9]:4711";proto=https, for=192.0.2.1"#.into(),
            )],
            ..RequestFacts::default()
        };
        facts.states.identity = Some(Identity {
            provider: "corp".into(),
            iss: "https://idp.example".into(),
            sub: Some("alice".into()),
            ..Identity::default()
        });
        let v = render_ocsf(
            &facts,
            r#"{"schema":"ocsf","xff_trusted_hops":2,"forwarded_header":"forwarded"}"#,
        );
        assert_eq!(v["src_endpoint"]["ip"], "2001:db8::9");
        assert_eq!(v["src_endpoint"]["port"], 4711);
        assert_eq!(
            v["src_endpoint"]["intermediate_ips"],
            json!(["192.0.2.1", "10.0.0.5"])
        );
        assert_eq!(
            v["http_request"]["x_forwarded_for"],
            json!(["2001:db8::9", "192.0.2.1"])
        );
        assert_eq!(
            v["unmapped"]["palisade"]["client"]["forwarded_for"],
            json!(["unknown", "[2001:db8::9]:4711", "192.0.2.1"])
        );
        assert_eq!(v["actor"]["user"]["uid"], "alice");
        assert_eq!(v["actor"]["idp"]["issuer"], "https://idp.example");
        assert_eq!(
            v["metadata"]["profiles"],
            json!(["security_control", "datetime", "host"])
        );
    }
}
