//! The audit filter in a real Envoy: one record per request in the access
//! log, in each schema, with every secret redacted.

use palisade_e2e::{config_error, EchoUpstream, Envoy, EnvoyConfig, Request};
use serde_json::{json, Value};

fn envoy_with(config: Value) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("audit", config)
        .upstream(&upstream)
        .start();
    (upstream, envoy)
}

fn records(envoy: &Envoy, n: usize) -> Vec<Value> {
    let lines = envoy.wait_access_log(n);
    assert_eq!(lines.len(), n, "access log: {lines:?}");
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn palisade_record_describes_the_request_and_response() {
    let (_up, envoy) = envoy_with(json!({ "request_headers": ["x-tenant"] }));
    let response = envoy.request(
        Request::post("/orders/7?page=2", r#"{"qty":1}"#)
            .header("user-agent", "e2e/1.0")
            .header("x-tenant", "acme")
            .header("content-type", "application/json"),
    );
    assert_eq!(response.status, 200);
    let record = &records(&envoy, 1)[0];
    assert_eq!(record["schema"], "palisade/1");
    assert_eq!(record["outcome"], "allowed");
    assert_eq!(record["request"]["method"], "POST");
    assert_eq!(record["request"]["path"], "/orders/7");
    assert_eq!(record["request"]["query"], "page=2");
    assert_eq!(record["request"]["authority"], "localhost");
    assert_eq!(record["request"]["scheme"], "http");
    assert_eq!(record["request"]["protocol"], "HTTP/1.1");
    assert_eq!(record["request"]["user_agent"], "e2e/1.0");
    assert_eq!(record["request"]["headers"]["x-tenant"], "acme");
    assert_eq!(record["response"]["status"], 200);
    assert_eq!(record["response"]["code_details"], "via_upstream");
    assert!(record["response"]["bytes"].as_u64().unwrap() > 0);
    assert!(record["request"]["bytes"].as_u64().unwrap() > 9);
    assert_eq!(record["client"]["address"], "127.0.0.1");
    assert_eq!(record["upstream"]["cluster"], "upstream");
    assert!(record["upstream"]["host"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
    let id = record["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID from Envoy: {id}");
    let time = record["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    assert_eq!(envoy.counter("palisade.audit.records_written"), Some(1));
    assert_eq!(envoy.counter("palisade.audit.denied.waf"), Some(0));
    let prometheus = envoy.prometheus();
    assert!(
        prometheus.contains("palisade_audit_records_written{} 1"),
        "{prometheus}"
    );
}

#[test]
fn ecs_and_ocsf_records() {
    let (_up, envoy) = envoy_with(json!({ "schema": "ecs" }));
    envoy.request(Request::get("/search?q=boots&token=SECRET-ECS").header("user-agent", "e2e"));
    let ecs = &records(&envoy, 1)[0];
    assert!(ecs["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ecs["ecs"]["version"], "8.11.0");
    assert_eq!(ecs["http"]["request"]["method"], "GET");
    assert_eq!(ecs["http"]["response"]["status_code"], 200);
    assert_eq!(ecs["url"]["path"], "/search");
    assert_eq!(ecs["url"]["query"], "q=boots&token=REDACTED");
    assert_eq!(ecs["source"]["ip"], "127.0.0.1");
    assert_eq!(ecs["user_agent"]["original"], "e2e");
    assert_eq!(ecs["event"]["outcome"], "success");
    drop(envoy);

    let (_up, envoy) = envoy_with(json!({ "schema": "ocsf" }));
    envoy.request(Request::new("DELETE", "/items/9"));
    let ocsf = &records(&envoy, 1)[0];
    assert_eq!(ocsf["class_uid"], 4002);
    assert_eq!(ocsf["category_uid"], 4);
    assert_eq!(ocsf["activity_id"], 2);
    assert_eq!(ocsf["type_uid"], 400202);
    assert_eq!(ocsf["http_request"]["http_method"], "DELETE");
    assert_eq!(ocsf["http_request"]["url"]["path"], "/items/9");
    assert_eq!(ocsf["http_response"]["code"], 200);
    assert_eq!(ocsf["action_id"], 1);
    assert!(ocsf["time"].as_i64().unwrap() > 1_700_000_000_000);
}

/// A token sent in every place a client can put one appears in no log:
/// not in the access log (any schema), not in Envoy's own log.
#[test]
fn secrets_appear_in_no_log() {
    const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl";
    let params = [
        "access_token",
        "id_token",
        "refresh_token",
        "token",
        "code",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "X-Amz-Signature",
        "X-Goog-Signature",
    ];
    for schema in ["palisade", "ecs", "ocsf"] {
        let upstream = EchoUpstream::start();
        // The response sets a cookie too, so Set-Cookie is exercised.
        let envoy = EnvoyConfig::new()
            .wasm_filter(
                "audit",
                json!({
                    "schema": schema,
                    "envoy_log": true,
                    "request_headers": ["x-tenant", "referer", "user-agent"],
                    "response_headers": ["x-echo"]
                }),
            )
            .upstream(&upstream)
            .routes(json!([{
                "match": { "prefix": "/" },
                "route": { "cluster": "upstream" },
                "response_headers_to_add": [{ "header": { "key": "set-cookie", "value": format!("session={SECRET}") } }]
            }]))
            .start();
        let mut sent = 0;
        for param in params {
            let r = envoy.request(Request::get(&format!("/cb?state=ok&{param}={SECRET}")));
            assert_eq!(r.status, 200);
            sent += 1;
        }
        let all_places = Request::get(&format!("/p?ACCESS_TOKEN={SECRET}&%61pi_key={SECRET}"))
            .header("authorization", &format!("Bearer {SECRET}"))
            .header("proxy-authorization", &format!("Basic {SECRET}"))
            .header("cookie", &format!("session={SECRET}; theme=dark"))
            .header(
                "referer",
                &format!("https://app.example.com/cb?code={SECRET}&client_secret={SECRET}"),
            )
            .header("x-tenant", "acme");
        let r = envoy.request(all_places);
        assert_eq!(r.status, 200);
        assert!(
            r.header("set-cookie").unwrap().contains(SECRET),
            "the route sets the cookie"
        );
        sent += 1;
        // Userinfo in an absolute-form target: whatever Envoy answers, the
        // record must not carry it.
        envoy.request(Request::get(&format!(
            "http://user:{SECRET}@localhost/abs?x=1"
        )));
        sent += 1;

        let lines = envoy.wait_access_log(sent);
        assert_eq!(lines.len(), sent, "{schema}: one record per request");
        let log = lines.join("\n");
        assert!(log.contains("REDACTED"), "{schema}: {log}");
        assert!(
            log.contains("acme"),
            "{schema}: the allowlisted header is logged"
        );
        assert!(
            log.contains("app.example.com"),
            "{schema}: the referer host is kept"
        );
        assert!(
            !log.contains(SECRET),
            "{schema}: secret in the access log:\n{log}"
        );
        assert!(
            !log.contains("c2VjcmV0"),
            "{schema}: part of the secret in the access log"
        );
        let envoy_log = envoy.envoy_log();
        assert!(
            envoy_log.contains("palisade.audit {"),
            "{schema}: records go to Envoy's log too"
        );
        assert!(
            !envoy_log.contains(SECRET),
            "{schema}: secret in Envoy's log"
        );
    }
}

#[test]
fn forwarded_chain_is_logged_only_behind_trusted_proxies() {
    // Envoy behind one trusted proxy: the HCM does not append the peer
    // (use_remote_address: false), so the proxy's entry is the last one.
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("audit", json!({ "xff_trusted_hops": 1 }))
        .upstream(&upstream)
        .connection_manager("use_remote_address", json!(false))
        .start();
    envoy.request(Request::get("/").header("x-forwarded-for", "198.51.100.7, 203.0.113.5"));
    let record = &records(&envoy, 1)[0];
    assert_eq!(record["client"]["address"], "203.0.113.5");
    assert_eq!(
        record["client"]["forwarded_for"],
        json!(["198.51.100.7", "203.0.113.5"])
    );
    drop(envoy);

    let (_up, envoy) = envoy_with(json!({}));
    envoy.request(Request::get("/").header("x-forwarded-for", "198.51.100.7"));
    let record = &records(&envoy, 1)[0];
    assert_eq!(
        record["client"]["address"], "127.0.0.1",
        "an untrusted header proves nothing"
    );
    assert!(record["client"].get("forwarded_for").is_none());
}

#[test]
fn invalid_config_is_refused_at_load_naming_the_field() {
    let cases = [
        (json!({ "schema": "cef" }), "schema"),
        (json!({ "schemas": "ecs" }), "schemas"),
        (
            json!({ "request_headers": ["authorization"] }),
            "request_headers[0]",
        ),
        (json!({ "xff_trusted_hops": "one" }), "xff_trusted_hops"),
    ];
    for (config, field) in cases {
        let log = EnvoyConfig::new()
            .wasm_filter("audit", config.clone())
            .start_expecting_failure();
        assert!(
            log.contains(&config_error("audit", field)),
            "{config}: Envoy's log does not name `{field}`:\n{log}"
        );
    }
}

/// With a refusing filter in front, the record says who refused and why, and
/// the per-filter denial counter moves.
#[test]
fn denials_by_other_filters_reach_the_record_and_the_metrics() {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter(
            "ratelimit",
            json!({"rules": [{
                "name": "one-only",
                "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"}
            }]}),
        )
        .wasm_filter("audit", json!({}))
        .upstream(&upstream)
        .start();
    assert_eq!(envoy.get("/").status, 200);
    assert_eq!(envoy.get("/").status, 429);
    let records = records(&envoy, 2);
    assert_eq!(records[0]["outcome"], "allowed", "{}", records[0]);
    assert_eq!(records[0]["ratelimit"]["rule"], "one-only");
    assert_eq!(records[1]["outcome"], "denied", "{}", records[1]);
    assert_eq!(records[1]["denied_by"], "ratelimit");
    assert_eq!(records[1]["denial"]["status"], 429);
    assert_eq!(records[1]["response"]["status"], 429);
    assert_eq!(records[1]["ratelimit"]["limited"], true);
    assert_eq!(envoy.counter("palisade.audit.denied.ratelimit"), Some(1));
    assert_eq!(envoy.counter("palisade.audit.denied.jwt"), Some(0));
    assert_eq!(envoy.counter("palisade.audit.records_written"), Some(2));
}
