//! OCSF 1.7 HTTP Activity (class 4002, category 4 Network Activity).
//! `activity_id` comes from the method, `type_uid` = `class_uid * 100 +
//! activity_id`; `action_id`/`disposition_id` say whether Palisade let the
//! request through. Palisade's decisions go under `unmapped.palisade`.

use serde_json::{json, Value};

use super::{decisions, prune};
use crate::record::{AuditRecord, Outcome};

/// The OCSF version the records follow.
pub const OCSF_VERSION: &str = "1.7.0";
const CLASS_UID: u32 = 4002;
const CATEGORY_UID: u32 = 4;

/// OCSF HTTP Activity `activity_id` and its name for a method.
pub fn activity(method: Option<&str>) -> (u32, &'static str) {
    match method.map(str::to_ascii_uppercase).as_deref() {
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
    let (activity_id, activity_name) = activity(r.request.method.as_deref());
    let denied = r.outcome.is_denied();
    let failed = denied || r.response.status.is_some_and(|s| s >= 400);
    let identity = r.decisions.identity.as_ref();
    let status_detail = match &r.outcome {
        Outcome::Denied { denied_by, reason } => Some(format!("denied by {denied_by}: {reason}")),
        Outcome::Allowed => r.response.code_details.clone(),
    };
    let (src_ip, src_port) = split(r.client.peer.as_deref());
    let (dst_ip, dst_port) = split(r.upstream.as_ref().and_then(|u| u.host.as_deref()));
    let url_string = r.request.path.as_ref().map(|p| {
        let mut s = String::new();
        if let (Some(scheme), Some(host)) = (&r.request.scheme, &r.request.authority) {
            s.push_str(&format!("{scheme}://{host}"));
        }
        s.push_str(p);
        if let Some(q) = &r.request.query {
            s.push('?');
            s.push_str(q);
        }
        s
    });
    let headers: Vec<Value> = r
        .request
        .headers
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    prune(json!({
        "class_uid": CLASS_UID,
        "class_name": "HTTP Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("HTTP Activity: {activity_name}"),
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
            "uid": r.request_id,
            "log_name": "palisade.audit",
            "product": { "name": "Palisade", "vendor_name": "Palisade", "feature": { "name": "audit" } },
        },
        "http_request": {
            "uid": r.request_id,
            "http_method": r.request.method,
            "version": r.request.protocol,
            "user_agent": r.request.user_agent,
            "referrer": r.request.referer,
            "length": r.request.bytes,
            "http_headers": if headers.is_empty() { Value::Null } else { Value::Array(headers) },
            "x_forwarded_for": if r.client.forwarded_for.is_empty() { Value::Null } else { json!(r.client.forwarded_for) },
            "url": {
                "scheme": r.request.scheme,
                "hostname": r.request.authority,
                "path": r.request.path,
                "query_string": r.request.query,
                "url_string": url_string,
            },
        },
        "http_response": {
            "code": r.response.status,
            "length": r.response.bytes,
            "message": r.response.code_details,
        },
        "src_endpoint": { "ip": r.client.address.clone().or(src_ip), "port": src_port },
        "dst_endpoint": { "ip": dst_ip, "port": dst_port, "svc_name": r.upstream.as_ref().and_then(|u| u.cluster.clone()) },
        "actor": { "user": {
            "uid": identity.and_then(|i| i.sub.clone()),
            "domain": identity.map(|i| i.iss.clone()),
        } },
        "tls": r.tls.as_ref().map(|t| json!({
            "version": t.version,
            "certificate": { "subject": t.peer_subject },
        })),
        "unmapped": { "route": r.route, "service": r.service, "palisade": decisions(r) },
    }))
}

fn split(address: Option<&str>) -> (Option<String>, Option<u16>) {
    let Some(a) = address else {
        return (None, None);
    };
    match a.rsplit_once(':') {
        Some((ip, port)) => match port.parse() {
            Ok(p) => (
                Some(ip.trim_start_matches('[').trim_end_matches(']').to_string()),
                Some(p),
            ),
            Err(_) => (Some(a.to_string()), None),
        },
        None => (Some(a.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditConfig;
    use crate::record::RequestFacts;
    use palisade_shared::contract::WafDecision;

    #[test]
    fn activity_ids() {
        let cases = [
            (Some("GET"), 3),
            (Some("post"), 6),
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
            authority: Some("h".into()),
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
        let config = AuditConfig::from_json(br#"{"schema":"ocsf"}"#).unwrap();
        let v: Value = serde_json::from_str(&super::super::render(
            &AuditRecord::build(&facts, &config),
            &config,
        ))
        .unwrap();
        assert_eq!(v["class_uid"], 4002);
        assert_eq!(v["activity_id"], 6);
        assert_eq!(v["type_uid"], 400206);
        assert_eq!(v["time"], 1_795_890_605_123i64);
        assert_eq!(v["action_id"], 2);
        assert_eq!(v["disposition"], "Blocked");
        assert_eq!(
            v["http_request"]["url"]["query_string"],
            "password=REDACTED"
        );
        assert_eq!(
            v["http_request"]["url"]["url_string"],
            "http://h/p?password=REDACTED"
        );
        assert_eq!(v["http_response"]["code"], 403);
        assert_eq!(v["src_endpoint"]["ip"], "::1");
        assert_eq!(v["src_endpoint"]["port"], 9000);
        assert_eq!(v["dst_endpoint"]["port"], 80);
        assert_eq!(v["unmapped"]["palisade"]["waf"]["score"], 5);
    }
}
