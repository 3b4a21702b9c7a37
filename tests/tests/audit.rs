//! The audit filter in a real Envoy: one record per request in the access
//! log, in each schema, with every secret redacted. The harness checks every
//! record against the official ECS 8.11 / OCSF 1.7 definitions
//! (`palisade_e2e::audit_schemas`) as the tests read the log and when Envoy
//! stops; the tests here make Envoy write records of every shape.

use palisade_e2e::tls::{curl_https, downstream_tls_context, Pki};
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

/// Behind two trusted proxies, with logged headers, an IPv6 host and a
/// method outside OCSF's list, in each schema: the records conform (the
/// harness checks each) and say the same thing. The connection manager does
/// not append the peer (`use_remote_address: false`), so Envoy's downstream
/// address (`source`) is the last hop, the address the nearest proxy saw
/// (port unknown); the client is the hop the proxies vouch for; a hop that
/// is no address is never one, and every fallback is counted.
#[test]
fn records_of_every_request_shape_follow_their_schema() {
    for schema in ["ecs", "ocsf", "palisade"] {
        let upstream = EchoUpstream::start();
        let envoy = EnvoyConfig::new()
            .wasm_filter(
                "audit",
                json!({
                    "schema": schema,
                    "xff_trusted_hops": 2,
                    "request_headers": ["x-tenant", "referer"],
                    "response_headers": ["x-served-by"],
                    "service_name": "orders"
                }),
            )
            .upstream(&upstream)
            .routes(json!([{
                "match": { "prefix": "/" },
                "route": { "cluster": "upstream" },
                "response_headers_to_add": [{ "header": { "key": "x-served-by", "value": "edge-1" } }]
            }]))
            .connection_manager("use_remote_address", json!(false))
            .start();
        let xff = |r: Request, v: &str| r.header("x-forwarded-for", v);
        let requests = [
            xff(
                Request::get("/a?token=SECRET"),
                "198.51.100.9:4711, 203.0.113.5",
            )
            .header("x-tenant", "acme"),
            xff(Request::get("/b"), "evil, unknown, 203.0.113.5"),
            xff(Request::get("/c"), "[2001:db8::7]:443, 203.0.113.5"),
            Request::get("/d"),
            xff(Request::get("/e"), "2001:db8::8, 203.0.113.5")
                .header("host", "[2001:db8::1]:8443"),
            xff(Request::new("PURGE", "/f"), "_hidden, 203.0.113.5"),
            xff(Request::post("/g", "{}"), "198.51.100.10, 203.0.113.5")
                .header("referer", "https://app.example.com/cb?code=SECRET"),
        ];
        for r in requests {
            envoy.request(r);
        }
        let r = records(&envoy, 7);
        assert!(
            !r.iter().any(|r| r.to_string().contains("SECRET")),
            "{schema}"
        );
        match schema {
            "ecs" => {
                assert_eq!(
                    r[0]["source"],
                    json!({"address": "203.0.113.5", "ip": "203.0.113.5"})
                );
                assert_eq!(r[0]["client"]["ip"], "198.51.100.9");
                assert_eq!(r[0]["client"]["port"], 4711);
                assert_eq!(r[0]["network"]["forwarded_ip"], "198.51.100.9");
                assert_eq!(r[0]["palisade"]["request"]["headers"]["x-tenant"], "acme");
                assert_eq!(
                    r[0]["palisade"]["response"]["headers"]["x-served-by"],
                    "edge-1"
                );
                assert_eq!(r[0]["destination"]["ip"], "127.0.0.1");
                assert!(r[0]["destination"]["port"].as_u64().is_some());
                assert_eq!(r[1]["client"]["ip"], "203.0.113.5");
                assert_eq!(
                    r[1]["palisade"]["client"]["address_fallback"],
                    "not_an_address"
                );
                assert_eq!(r[2]["client"]["ip"], "2001:db8::7");
                assert_eq!(r[3]["client"]["ip"], "127.0.0.1");
                assert_eq!(r[3]["source"]["ip"], "127.0.0.1");
                assert_eq!(r[3]["client"]["port"], r[3]["source"]["port"]);
                assert!(r[3]["network"].get("forwarded_ip").is_none());
                assert_eq!(r[4]["url"]["domain"], "[2001:db8::1]");
                assert_eq!(r[4]["url"]["port"], 8443);
                assert_eq!(r[5]["http"]["request"]["method"], "PURGE");
            }
            "ocsf" => {
                assert_eq!(
                    r[0]["src_endpoint"],
                    json!({"ip": "198.51.100.9", "port": 4711, "intermediate_ips": ["203.0.113.5"]})
                );
                assert_eq!(
                    r[0]["http_request"]["x_forwarded_for"],
                    json!(["198.51.100.9", "203.0.113.5"])
                );
                assert_eq!(
                    r[0]["http_response"]["http_headers"],
                    json!([{"name": "x-served-by", "value": "edge-1"}])
                );
                assert_eq!(r[1]["src_endpoint"]["ip"], "203.0.113.5");
                assert!(r[1]["src_endpoint"].get("port").is_none());
                assert_eq!(r[3]["src_endpoint"]["ip"], "127.0.0.1");
                assert!(
                    r[3]["src_endpoint"]["port"].as_u64().is_some(),
                    "the peer's own port"
                );
                assert_eq!(r[4]["http_request"]["url"]["hostname"], "[2001:db8::1]");
                assert_eq!(r[4]["http_request"]["url"]["port"], 8443);
                assert_eq!(r[5]["activity_id"], 99);
                assert_eq!(r[5]["activity_name"], "PURGE");
                assert_eq!(r[6]["activity_id"], 6);
                assert_eq!(r[6]["http_request"]["http_method"], "POST");
                for record in &r {
                    let profiles = record["metadata"]["profiles"].as_array().unwrap();
                    assert!(profiles.contains(&json!("security_control")), "{record}");
                }
            }
            _ => {
                assert_eq!(r[0]["client"]["address"], "198.51.100.9");
                assert_eq!(r[1]["client"]["address"], "203.0.113.5");
                assert_eq!(r[1]["client"]["address_fallback"], "not_an_address");
                assert_eq!(
                    r[1]["client"]["forwarded_for"],
                    json!(["evil", "unknown", "203.0.113.5"])
                );
                assert_eq!(r[3]["client"]["address_fallback"], "too_few_hops");
                assert_eq!(r[5]["client"]["address"], "203.0.113.5");
            }
        }
        assert_eq!(
            envoy.counter("palisade.audit.client_address_fallback"),
            Some(3),
            "{schema}: unknown, no header, obfuscated"
        );
    }
}

/// RFC 7239 `Forwarded` under the same trust rule: the client's own port
/// comes with it, `unknown` falls back, a malformed header is none at all.
#[test]
fn the_forwarded_header_is_trusted_like_x_forwarded_for() {
    for schema in ["ocsf", "ecs"] {
        let upstream = EchoUpstream::start();
        // Envoy's connection manager appends the peer to X-Forwarded-For and
        // never touches `Forwarded`: the audit filter alone reads that one.
        let envoy = EnvoyConfig::new()
            .wasm_filter(
                "audit",
                json!({ "schema": schema, "xff_trusted_hops": 1, "forwarded_header": "forwarded" }),
            )
            .upstream(&upstream)
            .start();
        let fwd = |v: &str| Request::get("/").header("forwarded", v);
        envoy.request(fwd(
            r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#,
        ));
        envoy.request(fwd("for=192.0.2.60, for=unknown"));
        envoy.request(fwd(r#"for="[2001:db8::1"#));
        envoy.request(Request::get("/").header("x-forwarded-for", "198.51.100.1"));
        let r = records(&envoy, 4);
        let client = |i: usize| match schema {
            "ocsf" => (
                r[i]["src_endpoint"]["ip"].clone(),
                r[i]["src_endpoint"]["port"].clone(),
            ),
            _ => (r[i]["client"]["ip"].clone(), r[i]["client"]["port"].clone()),
        };
        assert_eq!(
            client(0),
            (json!("2001:db8:cafe::17"), json!(4711)),
            "{schema}"
        );
        for i in 1..4 {
            assert_eq!(
                client(i).0,
                "127.0.0.1",
                "{schema} {i}: falls back to the peer"
            );
        }
        let fallback = |i: usize| match schema {
            "ocsf" => r[i]["unmapped"]["palisade"]["client"]["address_fallback"].clone(),
            _ => r[i]["palisade"]["client"]["address_fallback"].clone(),
        };
        assert_eq!(fallback(1), "not_an_address");
        assert_eq!(fallback(2), "malformed_header");
        assert_eq!(
            fallback(3),
            "too_few_hops",
            "X-Forwarded-For is not the configured header"
        );
        assert_eq!(
            envoy.counter("palisade.audit.client_address_fallback"),
            Some(3)
        );
    }
}

/// Over mTLS, with the connection manager forwarding the client
/// certificate, the record names its issuer and serial number (as openssl
/// prints them). A certificate a client claims in its own
/// `x-forwarded-client-cert` never gets in, even where the connection
/// manager passes the client's header on (`FORWARD_ONLY`) and the claim
/// carries the real certificate's hash. Without the forwarded certificate,
/// OCSF has no `tls.certificate` (it requires both) and keeps the subject in
/// `unmapped`.
#[test]
fn the_client_certificate_is_described_when_envoy_forwards_it() {
    let pki = Pki::generate();
    let issuer = pki.certificate_field("client.pem", "-issuer");
    let serial = pki.certificate_field("client.pem", "-serial");
    let subject = pki.certificate_field("client.pem", "-subject");
    let fingerprint = pki
        .certificate_field("client.pem", "-fingerprint -sha256")
        .replace(':', "")
        .to_ascii_lowercase();
    // The client's hash with another certificate (the server's).
    let server_pem = std::fs::read_to_string(pki.path("server.pem")).unwrap();
    let encoded: String = server_pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let forged = format!("Hash={fingerprint};Cert=\"{encoded}\";Subject=\"{subject}\"");
    for (schema, forward) in [
        ("ocsf", Some("SANITIZE_SET")),
        ("ecs", Some("SANITIZE_SET")),
        ("ocsf", None),
        ("ocsf", Some("FORWARD_ONLY")),
    ] {
        let upstream = EchoUpstream::start();
        let mut config = EnvoyConfig::new()
            .wasm_filter("audit", json!({ "schema": schema }))
            .upstream(&upstream)
            .listener_tls(downstream_tls_context(&pki));
        if let Some(mode) = forward {
            config = config
                .connection_manager("forward_client_cert_details", json!(mode))
                .connection_manager(
                    "set_current_client_cert_details",
                    json!({ "subject": true, "cert": true }),
                );
        }
        let envoy = config.start();
        let r = curl_https(
            &pki,
            envoy.addr(),
            "GET",
            "/",
            &[("x-forwarded-client-cert", &forged)],
            true,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        if forward == Some("FORWARD_ONLY") {
            assert!(
                r.text().contains("Hash="),
                "the claim reaches the filters: {}",
                r.text()
            );
        }
        curl_https(&pki, envoy.addr(), "GET", "/", &[], false);
        let r = records(&envoy, 2);
        match (schema, forward) {
            ("ocsf", Some("SANITIZE_SET")) => {
                let cert = &r[0]["tls"]["certificate"];
                assert_eq!(cert["issuer"], issuer.as_str(), "{}", r[0]);
                assert_eq!(cert["serial_number"], serial.as_str());
                assert_eq!(cert["subject"], subject.as_str());
                assert_eq!(cert["fingerprints"][0]["algorithm_id"], 3);
                assert_eq!(cert["fingerprints"][0]["value"], fingerprint.as_str());
                assert!(cert["expiration_time"].as_i64() > cert["created_time"].as_i64());
                assert_eq!(r[0]["tls"]["version"], "TLSv1.3");
            }
            ("ecs", _) => {
                let client = &r[0]["tls"]["client"];
                assert_eq!(client["issuer"], issuer.as_str(), "{}", r[0]);
                assert_eq!(client["x509"]["serial_number"], serial.as_str());
                assert_eq!(client["subject"], subject.as_str());
                assert_eq!(client["hash"]["sha256"].as_str().unwrap().len(), 64);
            }
            _ => {
                assert!(r[0]["tls"].get("certificate").is_none(), "{}", r[0]);
                assert_eq!(
                    r[0]["unmapped"]["palisade"]["tls"]["peer_subject"],
                    subject.as_str()
                );
            }
        }
        // Without a client certificate there is nothing to describe.
        let second = r[1].to_string();
        assert!(
            !second.contains(&serial) && !second.contains("peer_subject"),
            "{second}"
        );
    }
}
