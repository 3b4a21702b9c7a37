//! The transport stage in the engine against the fake host: facts from
//! Envoy's attributes only, `palisade.tls` published, refusals with their
//! problem body, HSTS on responses over TLS and never over plaintext.

use palisade_shared::contract;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::{Action, Engine, EnvoyVersion, Module};

use super::*;

const CONFIG: &str = r#"{
    "policies": {
        "web": {"plaintext": "redirect", "hsts": {"max_age_s": 600}},
        "shop": {"client_certificate": {"uri_sans": [{"prefix": "spiffe://cluster.local/ns/shop/"}]},
                 "hsts": {"max_age_s": 600, "include_subdomains": true}}
    },
    "rules": [
        {"match": {"path": {"prefix": "/health"}}},
        {"match": {"path": {"prefix": "/internal"}}, "policy": "shop"},
        {"match": {}, "policy": "web"}
    ]
}"#;

const PEM: &[u8] = include_bytes!("../../../../shared/src/fixtures/x509-client.pem");

fn engine(host: &FakeHost) -> Engine<TransportStage> {
    let stage = TransportModule::configure(CONFIG.as_bytes(), host).unwrap();
    Engine::new(stage, TransportModule::NAME, 1, host).unwrap()
}

/// Runs one request through the engine: headers, then (when it went on)
/// response headers. Returns the request's action.
fn run(host: &FakeHost) -> Action {
    let engine = engine(host);
    let mut slot = None;
    let action = engine.on_request_headers(2, &mut slot, true, host);
    if action == Action::Continue {
        host.set_response_headers(&[(":status", "200")]);
        engine.on_response_headers(2, &mut slot, host);
    }
    action
}

fn over_tls(host: FakeHost) -> FakeHost {
    host.with_property(&["connection", "tls_version"], b"TLSv1.3")
        .with_property(&["connection", "requested_server_name"], b"api.example.com")
        .with_property(
            &["filter_state", "palisade.tls_cipher"],
            b"TLS_AES_128_GCM_SHA256",
        )
}

fn hsts(host: &FakeHost) -> Option<String> {
    host.response_headers()
        .into_iter()
        .find(|(n, _)| n == "strict-transport-security")
        .map(|(_, v)| v)
}

#[test]
fn plaintext_is_redirected_without_hsts() {
    let host = FakeHost::new().with_request("GET", "/shop?page=2");
    assert_eq!(run(&host), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.header("location"),
        Some("https://api.example.com/shop?page=2")
    );
    assert!(reply.header("strict-transport-security").is_none());
    let tls = host.property_json(contract::TLS).unwrap();
    assert_eq!(tls["outcome"], "redirected");
    assert!(tls.get("version").is_none());
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["reason"],
        "redirected_to_https"
    );
    assert_eq!(host.metric("palisade.transport.redirected"), 1);
}

#[test]
fn tls_passes_with_hsts_and_publishes_the_connection() {
    let host = over_tls(FakeHost::new().with_request("GET", "/shop"));
    assert_eq!(run(&host), Action::Continue);
    assert_eq!(hsts(&host).as_deref(), Some("max-age=600"));
    let tls = host.property_json(contract::TLS).unwrap();
    assert_eq!(tls["policy"], "web");
    assert_eq!(tls["outcome"], "passed");
    assert_eq!(tls["version"], "TLSv1.3");
    assert_eq!(tls["cipher"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(tls["sni"], "api.example.com");
    assert_eq!(tls["peer_certificate_presented"], false);
    assert_eq!(host.metric("palisade.transport.passed"), 1);
}

#[test]
fn the_client_certificate_is_read_from_the_connection() {
    let host = over_tls(FakeHost::new().with_request("GET", "/internal/jobs"))
        .with_property(&["connection", "mtls"], &[1])
        .with_property(&["connection", "peer_certificate"], PEM);
    assert_eq!(run(&host), Action::Continue);
    assert_eq!(
        hsts(&host).as_deref(),
        Some("max-age=600; includeSubDomains")
    );
    let tls = host.property_json(contract::TLS).unwrap();
    assert_eq!(tls["peer_subject"], "CN=checkout,O=Palisade Test");
    assert_eq!(tls["peer_issuer"], "CN=Palisade Test CA,O=Palisade Test");
    assert_eq!(
        tls["peer_uri_sans"][0],
        "spiffe://cluster.local/ns/shop/sa/checkout"
    );
    assert_eq!(
        tls["peer_sha256"],
        "26ea333a4f225183024d92c4cd54bc1cdc486c643896f3883b3b4beeecd6f350"
    );
    assert_eq!(tls["peer_serial_number"], "0BADC0DE");
}

#[test]
fn a_missing_certificate_is_refused_with_hsts_and_a_problem() {
    let host = over_tls(
        FakeHost::new()
            .with_request("GET", "/internal/jobs")
            .with_request_header("x-request-id", "rid-3")
            // A header can never stand in for the connection's certificate.
            .with_request_header(
                "x-forwarded-client-cert",
                "URI=spiffe://cluster.local/ns/shop/sa/checkout",
            ),
    )
    .with_property(&["connection", "mtls"], &[0]);
    assert_eq!(run(&host), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=600; includeSubDomains")
    );
    let body = reply.json();
    assert_eq!(body["requirement"], "client_certificate");
    assert_eq!(body["detail"], "this route requires a client certificate");
    assert_eq!(body["request_id"], "rid-3");
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["filter"],
        "transport"
    );
    assert_eq!(
        host.metric("palisade.transport.refused.client_certificate"),
        1
    );
}

#[test]
fn no_policy_reads_nothing_of_the_connection() {
    let host = over_tls(FakeHost::new().with_request("GET", "/health"));
    assert_eq!(run(&host), Action::Continue);
    // Only the load-time check of the host's release (`xds.node.*`) reads.
    let reads = host.properties_read();
    assert!(
        reads.iter().all(|p| p.starts_with("xds.node.")),
        "{reads:?}"
    );
    assert!(hsts(&host).is_none());
    assert!(host.property_json(contract::TLS).is_none());
    assert_eq!(host.metric("palisade.transport.no_policy"), 1);
}

/// A fake Envoy that reports its release as `xds.node.user_agent_build_version`.
fn envoy_release(host: FakeHost, minor: u64) -> FakeHost {
    host.with_envoy_version(EnvoyVersion::new(1, minor, 0))
}

#[test]
fn certificate_rules_are_refused_at_load_on_an_envoy_without_the_certificate() {
    // Envoy 1.37 has no `connection.peer_certificate`: the `shop` policy's
    // SPIFFE rule could never pass, so the configuration is refused,
    // naming the policy, the attribute and the release that has it.
    let err = TransportModule::configure(CONFIG.as_bytes(), &envoy_release(FakeHost::new(), 37))
        .err()
        .unwrap();
    assert_eq!(err.path, "policies.shop.client_certificate");
    for part in [
        "connection.peer_certificate",
        "from Envoy 1.38 on",
        "this Envoy is 1.37.0",
    ] {
        assert!(err.message.contains(part), "{err}");
    }
    // The same configuration loads on 1.38, and on a host that does not
    // report a release (the rule then fails closed per request).
    for host in [envoy_release(FakeHost::new(), 38), FakeHost::new()] {
        assert!(TransportModule::configure(CONFIG.as_bytes(), &host).is_ok());
    }
    // A fingerprint allowlist needs only the digest every Envoy gives.
    let fingerprints = format!(
        r#"{{"policies": {{"p": {{"require_tls": true, "client_certificate":
            {{"sha256_fingerprints": ["{}"]}}}}}}, "rules": [{{"match": {{}}, "policy": "p"}}]}}"#,
        "ab".repeat(32)
    );
    let old = envoy_release(FakeHost::new(), 36);
    assert!(TransportModule::configure(fingerprints.as_bytes(), &old).is_ok());
}
