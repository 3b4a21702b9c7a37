//! The checkers against records the audit core renders (they must pass) and
//! against the defects found in real records (they must fail).

use std::path::Path;

use palisade_audit::config::AuditConfig;
use palisade_audit::record::XFCC;
use palisade_audit::{schema, AuditRecord, RequestFacts};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;

fn rendered(facts: &RequestFacts, config: &str) -> Value {
    let config = AuditConfig::from_json(config.as_bytes()).unwrap();
    let line = schema::render(&AuditRecord::build(facts, &config), &config);
    serde_json::from_str(&line).unwrap()
}

fn errors(record: &Value) -> Vec<String> {
    check_record(record).err().unwrap_or_default()
}

/// The client certificate of the audit core's tests, and the XFCC header
/// Envoy would send with it.
fn client_certificate() -> (String, String) {
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../filters/audit/tests/fixtures/client-cert.pem"),
    )
    .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let digest: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let encoded: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    (format!("Hash={digest};Cert=\"{encoded}\""), digest)
}

/// Every shape of request the audit core describes differently.
fn scenarios() -> Vec<(&'static str, RequestFacts, &'static str)> {
    let base = RequestFacts {
        start_unix_ms: 1_795_890_605_123,
        duration_ns: Some(2_500_000),
        request_id: Some("0b7f9a3c-5d2e-4c1a-9e8f-7a6b5c4d3e2f".into()),
        method: Some("GET".into()),
        scheme: Some("https".into()),
        authority: Some("api.example.com:8443".into()),
        path: Some("/v1/orders?page=2&token=SECRET".into()),
        protocol: Some("HTTP/1.1".into()),
        status: Some(200),
        code_details: Some("via_upstream".into()),
        bytes_in: Some(300),
        bytes_out: Some(120),
        source_address: Some("10.0.0.7:51000".into()),
        request_headers: vec![
            ("user-agent".into(), "curl/8".into()),
            ("x-tenant".into(), "acme".into()),
            (
                "referer".into(),
                "https://app.example.com/cb?code=SECRET".into(),
            ),
        ],
        response_headers: vec![("x-served-by".into(), "a".into())],
        route_name: Some("orders".into()),
        upstream_cluster: Some("backend".into()),
        upstream_host: Some("10.1.0.2:8080".into()),
        ..RequestFacts::default()
    };
    let headers = r#""request_headers":["x-tenant","referer"],"response_headers":["x-served-by"]"#;
    let mut out = Vec::new();
    out.push(("plain", base.clone(), ""));
    let mut purge = base.clone();
    purge.method = Some("PURGE".into());
    purge.status = None;
    out.push(("an unlisted method, no response", purge, ""));
    let mut lower = base.clone();
    lower.method = Some("get".into());
    out.push(("a lower-case method", lower, ""));
    let mut v6 = base.clone();
    v6.authority = Some("[2001:db8::1]:8443".into());
    v6.source_address = Some("[2001:db8::77]:4242".into());
    out.push(("IPv6", v6, ""));
    let mut xff = base.clone();
    xff.request_headers.push((
        "x-forwarded-for".into(),
        "evil, unknown, 198.51.100.9:4711, 203.0.113.5".into(),
    ));
    out.push((
        "X-Forwarded-For, 2 hops",
        xff.clone(),
        r#""xff_trusted_hops":2"#,
    ));
    out.push((
        "X-Forwarded-For, 3 hops: unknown",
        xff.clone(),
        r#""xff_trusted_hops":3"#,
    ));
    out.push(("X-Forwarded-For, 9 hops", xff, r#""xff_trusted_hops":9"#));
    let mut fwd = base.clone();
    fwd.request_headers.push((
        "forwarded".into(),
        r#"for=_hidden, for="[2001:db8::9]:4711";proto=https, for=192.0.2.1"#.into(),
    ));
    out.push((
        "Forwarded",
        fwd.clone(),
        r#""xff_trusted_hops":2,"forwarded_header":"forwarded""#,
    ));
    out.push((
        "Forwarded: obfuscated",
        fwd,
        r#""xff_trusted_hops":3,"forwarded_header":"forwarded""#,
    ));
    let mut denied = base.clone();
    denied.status = Some(403);
    denied.states = palisade_audit::FilterStates::from_json(
        Some(br#"{"provider":"corp","iss":"https://idp.example","sub":"alice","aud":["api"],"scope":["read"],"amr":["pwd"]}"#),
        Some(br#"{"policy":"pay","outcome":"passed","required_acr":[]}"#),
        Some(br#"{"rule":"api","limited":false,"shadow":false,"remaining":4,"reset":1}"#),
        Some(br#"{"score":10,"matches":[{"rule_id":942100,"family":"sqli","location":"args:q"}],"action":"blocked"}"#),
        Some(br#"{"filter":"waf","status":403,"reason":"sqli"}"#),
        Some(br#"{"method":"tools/call","tool":"write_note","id":"4","decision":"denied","reason":"tool_denied","arguments":{"path":"/tmp/x"}}"#),
    );
    out.push(("denied, with every decision", denied.clone(), ""));
    let mut llm = base.clone();
    llm.method = Some("POST".into());
    llm.path = Some("/v1/chat/completions".into());
    llm.states.llm = serde_json::from_str(
        r#"{"provider":"openai","operation":"chat","model":"gpt-4o","response_model":"gpt-4o-2024-08-06","stream":true,"max_tokens":500,"capped":true,"outcome":"allowed","input_tokens":19,"output_tokens":10,"usage":"reported","charged":29,"budget":"team","budget_key":"client_id=team-a","remaining":971}"#,
    )
    .unwrap();
    out.push(("an LLM call with its usage", llm, ""));
    let (xfcc, digest) = client_certificate();
    let mut mtls = base.clone();
    mtls.tls_version = Some("TLSv1.3".into());
    mtls.peer_subject = Some("CN=client\\, \\\"one\\\",O=Palisade Test".into());
    mtls.peer_sha256 = Some(digest.clone());
    mtls.request_headers.push((XFCC.into(), xfcc));
    out.push(("mTLS with the forwarded certificate", mtls.clone(), ""));
    mtls.request_headers.pop();
    out.push(("mTLS without it", mtls, ""));
    let mut tls = base.clone();
    tls.tls_version = Some("TLSv1.2".into());
    out.push(("TLS", tls, ""));
    let mut transport = base.clone();
    transport.states.tls = serde_json::from_value(serde_json::json!({
        "policy": "shop", "outcome": "passed", "version": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256", "sni": "api.example.com",
        "peer_certificate_presented": true, "peer_certificate_validated": true,
        "peer_subject": "CN=checkout,O=Shop", "peer_issuer": "CN=Palisade local CA,O=Palisade",
        "peer_dns_sans": ["checkout.shop.svc"],
        "peer_uri_sans": ["spiffe://cluster.local/ns/shop/sa/checkout"],
        "peer_sha256": digest, "peer_serial_number": "0BADC0DE",
        "peer_not_before": 1_700_000_000, "peer_not_after": 1_800_000_000
    }))
    .ok();
    out.push(("mTLS through the transport policy", transport.clone(), ""));
    transport.states.tls = serde_json::from_value(serde_json::json!({
        "policy": "web", "outcome": "refused", "failed": "tls"
    }))
    .ok();
    transport.states.denial = serde_json::from_value(serde_json::json!({
        "filter": "transport", "status": 403, "reason": "tls"
    }))
    .ok();
    out.push(("plaintext refused by the transport policy", transport, ""));
    let bare = RequestFacts {
        source_address: Some("/run/envoy.sock".into()),
        ..RequestFacts::default()
    };
    out.push(("nothing known, a Unix socket", bare, ""));
    out.into_iter()
        .map(|(name, facts, extra)| {
            let extra: &'static str = Box::leak(
                [headers, extra]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
                    .into_boxed_str(),
            );
            (name, facts, extra)
        })
        .collect()
}

#[test]
fn every_record_the_core_renders_conforms() {
    if schemas().is_none() {
        return;
    }
    for (name, facts, extra) in scenarios() {
        for schema in ["ecs", "ocsf", "palisade"] {
            let record = rendered(&facts, &format!(r#"{{"schema":"{schema}",{extra}}}"#));
            assert_eq!(
                errors(&record),
                Vec::<String>::new(),
                "{schema}, {name}: {record}"
            );
        }
    }
}

/// The defects of records from before the schemas were checked, one by one:
/// each is caught.
#[test]
fn the_defects_are_caught() {
    if schemas().is_none() {
        return;
    }
    let good_ecs = rendered(
        &scenarios()[4].1,
        r#"{"schema":"ecs","xff_trusted_hops":2,"request_headers":["x-tenant"]}"#,
    );
    assert_eq!(errors(&good_ecs), Vec::<String>::new());
    let mut gen_ai = good_ecs.clone();
    gen_ai["gen_ai"] = json!({"usage": {"input_tokens": "19"}, "request": {"temperature": 1}});
    let found = errors(&gen_ai);
    assert!(
        found
            .iter()
            .any(|e| e.contains("gen_ai.usage.input_tokens")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.contains("gen_ai.request.temperature")),
        "{found:?}"
    );
    let ecs_cases: [(&str, Value, &str); 9] = [
        (
            "http.request.headers.x-tenant",
            json!("acme"),
            "not an ECS 8.11.0 field",
        ),
        ("source.ip", json!("unknown"), "not of ECS type `ip`"),
        (
            "network.forwarded_ip",
            json!("198.51.100.9:4711"),
            "not of ECS type `ip`",
        ),
        ("url.domain", json!("2001:db8::1"), "keeps its brackets"),
        (
            "destination.address",
            json!("127.0.0.1:18080"),
            "holds a port",
        ),
        ("user.domain", json!("https://idp.example"), "is a URL"),
        (
            "event.type",
            json!(["access", "installation"]),
            "expected by none",
        ),
        ("event.outcome", json!("blocked"), "not an allowed value"),
        (
            "http.response.status_code",
            json!("200"),
            "not of ECS type `long`",
        ),
    ];
    for (path, value, message) in ecs_cases {
        let mut bad = good_ecs.clone();
        set(&mut bad, path, value);
        let errs = errors(&bad);
        assert!(errs.iter().any(|e| e.contains(message)), "{path}: {errs:?}");
    }
    let mut no_time = good_ecs.clone();
    no_time.as_object_mut().unwrap().remove("@timestamp");
    assert!(errors(&no_time)
        .iter()
        .any(|e| e.contains("`@timestamp` is missing")));

    let good_ocsf = rendered(&scenarios()[9].1, r#"{"schema":"ocsf"}"#);
    assert_eq!(errors(&good_ocsf), Vec::<String>::new());
    let ocsf_cases: [(&str, Value, &str); 9] = [
        (
            "metadata.profiles",
            json!(["datetime", "host"]),
            "profile `security_control`",
        ),
        (
            "metadata.profiles",
            json!(["security_control", "host"]),
            "profile `datetime`",
        ),
        (
            "metadata.profiles",
            json!(["security_control", "datetime"]),
            "profile `host`",
        ),
        (
            "http_request.http_method",
            json!("PURGE"),
            "not a value of enum `http_method`",
        ),
        ("src_endpoint.ip", json!("unknown"), "not an IP address"),
        (
            "http_request.x_forwarded_for",
            json!(["198.51.100.9:4711"]),
            "not an IP address",
        ),
        (
            "http_request.url.hostname",
            json!("api.example.com:8443"),
            "holds a port",
        ),
        (
            "tls",
            json!({"version": "TLSv1.3", "certificate": {"subject": "CN=a"}}),
            "`tls.certificate.issuer` is missing",
        ),
        ("activity_name", json!("Post"), "is \"Get\""),
    ];
    for (path, value, message) in ocsf_cases {
        let mut bad = good_ocsf.clone();
        set(&mut bad, path, value);
        let errs = errors(&bad);
        assert!(errs.iter().any(|e| e.contains(message)), "{path}: {errs:?}");
    }
    let mut other = good_ocsf.clone();
    set(&mut other, "activity_id", json!(99));
    set(&mut other, "type_uid", json!(400299));
    set(&mut other, "type_name", json!("HTTP Activity: Other"));
    set(&mut other, "activity_name", json!("Other"));
    assert!(
        errors(&other)
            .iter()
            .any(|e| e.contains("source's own name")),
        "{:?}",
        errors(&other)
    );
    set(&mut other, "activity_name", json!("PURGE"));
    set(&mut other, "http_request.http_method", Value::Null);
    other["http_request"]
        .as_object_mut()
        .unwrap()
        .remove("http_method");
    assert_eq!(errors(&other), Vec::<String>::new());
    set(&mut other, "type_uid", json!(400203));
    assert!(errors(&other).iter().any(|e| e.contains("type_uid 400203")));
    let mut no_profiles = good_ocsf.clone();
    no_profiles["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("profiles");
    assert!(errors(&no_profiles)
        .iter()
        .any(|e| e.contains("`time_dt` belongs to profile `datetime`")));
}

/// Sets a value at a dotted path, creating objects on the way.
fn set(v: &mut Value, path: &str, value: Value) {
    match path.split_once('.') {
        None => v[path] = value,
        Some((head, rest)) => set(&mut v[head], rest, value),
    }
}
