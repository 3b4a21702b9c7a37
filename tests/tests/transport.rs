//! The transport policy in a real Envoy over real TLS: certificates made by
//! the project's own script (`scripts/certs.sh`, what `make certs` runs),
//! requests sent with curl. Plaintext refused or redirected, TLS 1.2 refused
//! where 1.3 is required, cipher allowlists, no, wrong and right client
//! certificates, a SPIFFE allowlist that no header can talk its way into,
//! HSTS over TLS only, and `palisade.tls` in the audit record (ECS and OCSF,
//! each checked against its official definition by the harness).

use palisade_e2e::tls::{downstream_tls_context, Curl, Pki};
use palisade_e2e::{
    envoy_gives_peer_certificate, envoy_release, no_peer_certificate, EchoUpstream, Envoy,
    EnvoyConfig, Request, Response,
};
use serde_json::{json, Value};

/// Envoy has no cipher attribute: its `set_filter_state` filter puts the
/// connection's cipher where the transport policy reads it.
fn cipher_to_filter_state() -> Value {
    json!({
        "name": "envoy.filters.http.set_filter_state",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [{
                "object_key": "palisade.tls_cipher",
                "factory_key": "envoy.string",
                "format_string": {"text_format_source": {"inline_string": "%DOWNSTREAM_TLS_CIPHER%"}}
            }]
        }
    })
}

/// The policies of these tests; on an Envoy without the whole client
/// certificate (before 1.38) without `shop`, whose SPIFFE and issuer rule
/// that Envoy refuses at load (see `client_certificates_and_the_spiffe_allowlist`).
fn transport_config() -> Value {
    let mut config = every_policy();
    if !envoy_gives_peer_certificate() {
        config["policies"].as_object_mut().unwrap().remove("shop");
        config["rules"]
            .as_array_mut()
            .unwrap()
            .retain(|r| r["policy"] != "shop");
    }
    config
}

fn every_policy() -> Value {
    json!({
        "policies": {
            "web": {"plaintext": "redirect", "hsts": {"max_age_s": 31536000, "include_subdomains": true}},
            "api": {"plaintext_status": 426, "min_tls_version": "1.3"},
            "aes128": {"ciphers": ["ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"]},
            "mtls": {"client_certificate": {}},
            "shop": {"client_certificate": {
                "uri_sans": [{"prefix": "spiffe://cluster.local/ns/shop/"}],
                "issuers": ["O=Palisade,CN=Palisade local CA"]
            }}
        },
        "rules": [
            {"match": {"path": {"prefix": "/public"}}},
            {"match": {"path": {"prefix": "/api"}}, "policy": "api"},
            {"match": {"path": {"prefix": "/aes128"}}, "policy": "aes128"},
            {"match": {"path": {"prefix": "/mtls"}}, "policy": "mtls"},
            {"match": {"path": {"prefix": "/shop"}}, "policy": "shop"},
            {"match": {}, "policy": "web"}
        ]
    })
}

fn start(pki: &Pki, upstream: &EchoUpstream, audit: Option<Value>) -> Envoy {
    let mut config = EnvoyConfig::new()
        .native_filter(cipher_to_filter_state())
        .wasm_filter("transport", transport_config());
    config = match audit {
        Some(audit) => config.wasm_filter("audit", audit),
        None => {
            config.access_log_format("%RESPONSE_CODE% %FILTER_STATE(wasm.palisade.tls:PLAIN)%\n")
        }
    };
    config
        .upstream(upstream)
        .listener_tls(downstream_tls_context(pki))
        .plaintext_listener()
        .start()
}

fn problem(r: &Response) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text()
    );
    r.json()
}

fn https(pki: &Pki, envoy: &Envoy, tls: Curl<'_>, path: &str) -> Response {
    tls.request(pki, envoy.addr(), "GET", path, &[])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[test]
fn plaintext_is_redirected_or_refused_and_hsts_goes_over_tls_only() {
    let pki = Pki::generate();
    let upstream = EchoUpstream::start();
    let envoy = start(&pki, &upstream, None);
    let plain = envoy.listener_address("plain");
    let send = |r: Request| palisade_e2e::send(plain, &r).unwrap();

    // GET and HEAD go to https, keeping the path and query; never with HSTS.
    let r = send(Request::get("/orders?page=2"));
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("https://localhost/orders?page=2")
    );
    assert!(r.header("strict-transport-security").is_none());
    // Other methods are refused: a redirect would lose or replay their body.
    let r = send(Request::post("/orders", "{}"));
    assert_eq!(r.status, 403);
    assert_eq!(problem(&r)["requirement"], "tls");
    // 426 where the policy says so. The policy sends `Upgrade: TLS/1.3,
    // HTTP/1.1` with it, but Envoy's connection manager removes hop-by-hop
    // `Upgrade` from every response to a request that did not ask to
    // upgrade: the client learns what to do from the problem body.
    let r = send(Request::get("/api/v1"));
    assert_eq!(r.status, 426, "{}", r.text());
    assert_eq!(problem(&r)["status"], 426);
    assert_eq!(problem(&r)["detail"], "this route requires TLS (https)");
    // No policy: plaintext passes, without HSTS.
    let r = send(Request::get("/public/x"));
    assert_eq!(r.status, 200);
    assert!(r.header("strict-transport-security").is_none());

    // Over TLS: through, with HSTS.
    let r = https(&pki, &envoy, Curl::default(), "/orders");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let r = https(&pki, &envoy, Curl::default(), "/public/x");
    assert!(r.header("strict-transport-security").is_none());

    assert_eq!(envoy.counter("palisade.transport.redirected"), Some(1));
    assert_eq!(envoy.counter("palisade.transport.refused.tls"), Some(2));
    let log = envoy.wait_access_log(6);
    let tls: Vec<Value> = log
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, state)| *state != "-")
        .map(|(_, state)| serde_json::from_str(state).unwrap())
        .collect();
    assert_eq!(tls[0]["outcome"], "redirected", "{log:?}");
    assert!(tls[0].get("version").is_none());
    let passed = tls.iter().find(|t| t["outcome"] == "passed").unwrap();
    assert_eq!(passed["policy"], "web");
    assert_eq!(passed["version"], "TLSv1.3");
    assert!(
        passed["cipher"].as_str().unwrap().starts_with("TLS_AES_"),
        "{passed}"
    );
}

#[test]
fn tls_versions_and_cipher_suites() {
    let pki = Pki::generate();
    let upstream = EchoUpstream::start();
    let envoy = start(&pki, &upstream, None);
    let tls12 = Curl {
        tls_max: Some("1.2"),
        ..Curl::default()
    };

    // TLS 1.2 refused where 1.3 is required; 1.3 passes.
    let r = https(&pki, &envoy, tls12.clone(), "/api/v1");
    assert_eq!(r.status, 403, "{}", r.text());
    let body = problem(&r);
    assert_eq!(body["requirement"], "min_tls_version");
    assert_eq!(
        body["detail"],
        "this route requires TLS 1.3 or later; the connection uses TLSv1.2"
    );
    assert_eq!(https(&pki, &envoy, Curl::default(), "/api/v1").status, 200);
    // The 1.2 listener is fine for routes without a minimum.
    assert_eq!(https(&pki, &envoy, tls12.clone(), "/orders").status, 200);

    // Only AES-128-GCM suites on /aes128.
    let aes256 = Curl {
        ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384"),
        ..tls12.clone()
    };
    let r = https(&pki, &envoy, aes256, "/aes128");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(problem(&r)["requirement"], "cipher");
    let aes128 = Curl {
        ciphers: Some("ECDHE-ECDSA-AES128-GCM-SHA256"),
        ..tls12
    };
    assert_eq!(https(&pki, &envoy, aes128, "/aes128").status, 200);
    assert_eq!(
        https(&pki, &envoy, Curl::default(), "/aes128").status,
        403,
        "TLS 1.3 picks AES-256 for curl here, which is not on the list"
    );
    assert_eq!(
        envoy.counter("palisade.transport.refused.min_tls_version"),
        Some(1)
    );
    assert_eq!(envoy.counter("palisade.transport.refused.cipher"), Some(2));
}

#[test]
fn client_certificates_and_the_spiffe_allowlist() {
    let pki = Pki::generate();
    let upstream = EchoUpstream::start();
    let envoy = start(&pki, &upstream, None);
    let with = |cert| Curl {
        cert: Some(cert),
        ..Curl::default()
    };

    // No certificate: refused, saying so.
    let r = https(&pki, &envoy, Curl::default(), "/mtls/jobs");
    assert_eq!(r.status, 403);
    assert_eq!(problem(&r)["requirement"], "client_certificate");
    // A certificate of another CA (same names, other key): Envoy ends the
    // handshake before any request exists.
    let err = with("rogue")
        .request(&pki, envoy.addr(), "GET", "/mtls/jobs", &[])
        .expect_err("a certificate Envoy cannot validate never gets a response");
    assert!(!err.is_empty());
    // Any certificate of our CA.
    assert_eq!(
        https(&pki, &envoy, with("client"), "/mtls/jobs").status,
        200
    );

    if !envoy_gives_peer_certificate() {
        // This Envoy cannot give the certificate the SPIFFE and issuer rule
        // read: the policy refuses that rule at load, saying which Envoy has it.
        let log = EnvoyConfig::new()
            .wasm_filter("transport", every_policy())
            .start_expecting_failure();
        assert!(log.contains(&no_peer_certificate()), "{log}");
        assert!(log.contains("policies.shop.client_certificate"), "{log}");
        assert!(
            log.contains(&format!("this Envoy is {}", envoy_release())),
            "{log}"
        );
        return;
    }
    // SPIFFE allowlist: the shop namespace only.
    let r = https(&pki, &envoy, with("checkout"), "/shop/cart");
    assert_eq!(r.status, 200, "{}", r.text());
    for cert in ["reporting", "client"] {
        let r = https(&pki, &envoy, with(cert), "/shop/cart");
        assert_eq!(r.status, 403, "{cert}");
        assert_eq!(problem(&r)["requirement"], "client_certificate.uri_san");
    }
    // A forwarded-certificate header naming a shop workload changes nothing:
    // the facts come from the connection.
    let r = with("reporting")
        .request(
            &pki,
            envoy.addr(),
            "GET",
            "/shop/cart",
            &[(
                "x-forwarded-client-cert",
                "Hash=00;URI=spiffe://cluster.local/ns/shop/sa/checkout",
            )],
        )
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        envoy.counter("palisade.transport.refused.client_certificate.uri_san"),
        Some(3)
    );

    let log = envoy.wait_access_log(8);
    let states: Vec<Value> = log
        .iter()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, s)| *s != "-")
        .map(|(_, s)| serde_json::from_str(s).unwrap())
        .collect();
    let checkout = states
        .iter()
        .find(|s| s["policy"] == "shop" && s["outcome"] == "passed")
        .unwrap();
    assert_eq!(
        checkout["peer_uri_sans"],
        json!(["spiffe://cluster.local/ns/shop/sa/checkout"])
    );
    assert_eq!(
        checkout["peer_subject"],
        pki.certificate_field("checkout.pem", "-subject")
    );
    assert_eq!(
        checkout["peer_issuer"],
        pki.certificate_field("checkout.pem", "-issuer")
    );
    let fingerprint = pki
        .certificate_field("checkout.pem", "-fingerprint -sha256")
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(checkout["peer_sha256"], fingerprint);
    assert_eq!(checkout["peer_certificate_validated"], true);
}

/// `palisade.tls` reaches the audit record in both standard schemas; the
/// harness checks every record against the official ECS and OCSF
/// definitions.
#[test]
fn the_audit_record_carries_the_transport_decision() {
    if !envoy_gives_peer_certificate() {
        eprintln!("skipping: the certificate in the record needs Envoy 1.38 or later");
        return;
    }
    let pki = Pki::generate();
    let upstream = EchoUpstream::start();
    for schema in ["ecs", "ocsf"] {
        let envoy = start(&pki, &upstream, Some(json!({"schema": schema})));
        let checkout = Curl {
            cert: Some("checkout"),
            server_name: Some("localhost"),
            ..Curl::default()
        };
        assert_eq!(https(&pki, &envoy, checkout, "/shop/cart").status, 200);
        let plain = envoy.listener_address("plain");
        let r = palisade_e2e::send(plain, &Request::get("/orders")).unwrap();
        assert_eq!(r.status, 308);
        let log = envoy.wait_access_log(2);
        let records: Vec<Value> = log
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let serial = pki.certificate_field("checkout.pem", "-serial");
        match schema {
            "ecs" => {
                let tls = &records[0]["tls"];
                assert_eq!(tls["version"], "1.3", "{}", records[0]);
                assert!(tls["cipher"].as_str().unwrap().starts_with("TLS_AES_"));
                assert_eq!(tls["client"]["server_name"], "localhost");
                assert_eq!(
                    tls["client"]["x509"]["alternative_names"],
                    json!(["spiffe://cluster.local/ns/shop/sa/checkout"])
                );
                assert_eq!(tls["client"]["x509"]["serial_number"], serial);
                assert_eq!(records[0]["palisade"]["transport"]["policy"], "shop");
                assert_eq!(records[1]["event"]["action"], "transport-denied");
                assert_eq!(records[1]["palisade"]["transport"]["outcome"], "redirected");
            }
            _ => {
                let tls = &records[0]["tls"];
                assert_eq!(tls["version"], "TLSv1.3", "{}", records[0]);
                assert_eq!(tls["sni"], "localhost");
                assert!(tls["cipher"].as_str().unwrap().starts_with("TLS_AES_"));
                let cert = &tls["certificate"];
                assert_eq!(cert["serial_number"], serial);
                assert_eq!(
                    cert["sans"],
                    json!([{"name": "spiffe://cluster.local/ns/shop/sa/checkout", "type": "URI"}])
                );
                assert_eq!(
                    records[0]["unmapped"]["palisade"]["transport"]["policy"],
                    "shop"
                );
                assert_eq!(
                    records[1]["status_detail"],
                    "denied by transport: redirected_to_https"
                );
            }
        }
    }
}
