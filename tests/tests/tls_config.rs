//! `envoy/tls.yaml` as shipped (ports and paths moved to this run's), with
//! the PKI `make certs` makes: plaintext redirected, HSTS over TLS, the
//! SPIFFE route, the SNI chain that requires a client certificate, the
//! request re-encrypted to the upstream with Envoy's own certificate, and
//! the TLS profile graded by a real scanner (sslyze, installed by `make
//! sslyze`): no SSL 2/3, no TLS 1.0/1.1, no CBC or RSA key exchange, no
//! known vulnerability, Mozilla's "intermediate" profile met.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use palisade_e2e::tls::{Curl, Pki};
use palisade_e2e::{dist_dir, repo_root, run_dir, EchoUpstream, Envoy, Request};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct TlsDemo {
    envoy: Envoy,
    https: u16,
    http: u16,
    _upstream: EchoUpstream,
}

/// Whether this Envoy runs `envoy/tls.yaml`: its SPIFFE rule reads the
/// whole client certificate, which Envoy gives from 1.38 on; an older one
/// refuses the config at load, saying so (checked in envoy_configs.rs).
fn this_envoy_runs_it() -> bool {
    let runs = palisade_e2e::envoy_gives_peer_certificate();
    if !runs {
        eprintln!("skipping: envoy/tls.yaml needs Envoy 1.38 or later");
    }
    runs
}

/// Starts `envoy/tls.yaml` on free ports, with `pki` for `dist/certs/`.
fn start(pki: &Pki) -> TlsDemo {
    let upstream = EchoUpstream::start();
    let (https, http, upstream_tls, admin) = (free_port(), free_port(), free_port(), free_port());
    let dir = run_dir();
    let certs = PathBuf::from(pki.path("ca.pem"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let text = std::fs::read_to_string(repo_root().join("envoy/tls.yaml"))
        .unwrap()
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("10443", &https.to_string())
        .replace("10080", &http.to_string())
        .replace("18443", &upstream_tls.to_string())
        .replace("18080", &upstream.port().to_string())
        .replace("dist/certs/", &format!("{certs}/"))
        .replace(
            "dist/palisade.wasm",
            &dist_dir().join("palisade.wasm").display().to_string(),
        )
        .replace(
            "dist/audit.log",
            &dir.join("access.log").display().to_string(),
        )
        // The harness finds the listener it waits for by this name.
        .replace("- name: https\n", "- name: main\n");
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, text).unwrap();
    let mut envoy = Envoy::run(&dir, &config, 1, &[]);
    envoy.audit_log_in_dir();
    TlsDemo {
        envoy,
        https,
        http,
        _upstream: upstream,
    }
}

#[test]
fn the_shipped_tls_config_serves_redirects_requires_and_reencrypts() {
    if !this_envoy_runs_it() {
        return;
    }
    let pki = Pki::generate();
    let demo = start(&pki);
    let addr = demo.envoy.addr();
    assert_eq!(addr.port(), demo.https);

    let r = palisade_e2e::send(
        ([127, 0, 0, 1], demo.http).into(),
        &Request::get("/orders?id=1").header("host", "localhost"),
    )
    .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://localhost:{}/orders?id=1", demo.https)
    );

    let localhost = Curl {
        server_name: Some("localhost"),
        ..Curl::default()
    };
    let r = localhost
        .request(&pki, addr, "GET", "/orders", &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    // The upstream got the request over TLS 1.3 from Envoy's own identity.
    let echoed = r.json();
    assert_eq!(echoed["headers"]["x-upstream-tls"], "TLSv1.3", "{echoed}");
    assert_eq!(
        echoed["headers"]["x-upstream-peer"],
        "spiffe://cluster.local/ns/edge/sa/gateway"
    );
    // Envoy's own forwarded certificate details, never a client's.
    let r = localhost
        .request(
            &pki,
            addr,
            "GET",
            "/orders",
            &[("x-forwarded-client-cert", "Hash=00;URI=spiffe://evil")],
        )
        .unwrap();
    assert!(r.json()["headers"].get("x-forwarded-client-cert").is_none());

    // /internal: a shop workload only.
    let r = localhost
        .request(&pki, addr, "GET", "/internal/jobs", &[])
        .unwrap();
    assert_eq!(r.status, 403);
    let checkout = Curl {
        cert: Some("checkout"),
        ..localhost.clone()
    };
    let r = checkout
        .request(&pki, addr, "GET", "/internal/jobs", &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // /modern: TLS 1.3 only.
    let tls12 = Curl {
        tls_max: Some("1.2"),
        ..localhost.clone()
    };
    assert_eq!(
        tls12
            .request(&pki, addr, "GET", "/modern", &[])
            .unwrap()
            .status,
        403
    );

    // The mtls.localhost chain: no certificate, no handshake.
    let mtls = Curl {
        server_name: Some("mtls.localhost"),
        ..Curl::default()
    };
    assert!(mtls.request(&pki, addr, "GET", "/orders", &[]).is_err());
    let client = Curl {
        cert: Some("client"),
        ..mtls
    };
    assert_eq!(
        client
            .request(&pki, addr, "GET", "/orders", &[])
            .unwrap()
            .status,
        200
    );
    let records = demo.envoy.wait_access_log(7);
    let last: Value = serde_json::from_str(records.last().unwrap()).unwrap();
    assert_eq!(
        last["tls"]["client"]["server_name"], "mtls.localhost",
        "{last}"
    );
}

#[test]
fn a_real_scanner_grades_the_tls_profile() {
    if !this_envoy_runs_it() {
        return;
    }
    let sslyze = repo_root().join(".tools/sslyze/bin/python");
    if !sslyze.exists() {
        panic!("sslyze is missing: run `make sslyze` (make test does)");
    }
    let pki = Pki::generate();
    let demo = start(&pki);
    let out_json = run_dir().join("sslyze.json");
    let out = Command::new(&sslyze)
        .args([
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
        ])
        .arg(pki.path("ca.pem"))
        .arg(format!("--json_out={}", out_json.display()))
        .arg(format!("localhost:{}{{127.0.0.1}}", demo.https))
        .output()
        .expect("run sslyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    let scan = &report["server_scan_results"][0]["scan_result"];
    let accepted = |protocol: &str| -> Vec<String> {
        scan[protocol]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap_or_else(|| panic!("{protocol} not scanned: {text}"))
            .iter()
            .map(|s| s["cipher_suite"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(accepted(old).is_empty(), "{old}: {:?}", accepted(old));
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    assert!(!tls12.is_empty());
    for suite in &tls12 {
        assert!(suite.starts_with("TLS_ECDHE_"), "{suite}: not ECDHE");
        assert!(!suite.contains("_CBC_"), "{suite}: CBC");
        assert!(
            suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305"),
            "{suite}"
        );
    }
    assert!(!accepted("tls_1_3_cipher_suites").is_empty());
    let result = |plugin: &str| &scan[plugin]["result"];
    assert_eq!(result("heartbleed")["is_vulnerable_to_heartbleed"], false);
    assert_eq!(
        result("openssl_ccs_injection")["is_vulnerable_to_ccs_injection"],
        false
    );
    assert_eq!(
        result("robot")["robot_result"],
        "NOT_VULNERABLE_RSA_NOT_SUPPORTED"
    );
    assert_eq!(result("tls_compression")["supports_compression"], false);
    assert_eq!(
        result("session_renegotiation")["is_vulnerable_to_client_renegotiation_dos"],
        false
    );
    assert_eq!(result("tls_fallback_scsv")["supports_fallback_scsv"], true);
    assert!(
        out.status.success() && text.contains("OK - Compliant"),
        "Mozilla intermediate:\n{text}"
    );
    eprintln!(
        "sslyze: TLS 1.2 {tls12:?}, TLS 1.3 {:?}",
        accepted("tls_1_3_cipher_suites")
    );
}
