//! Every rule of a policy, one way to fail at a time.

use palisade_shared::x509::Certificate;

use super::*;

const CONFIG: &str = r#"{
    "policies": {
        "refuse": {},
        "upgrade": {"plaintext_status": 426, "min_tls_version": "1.3"},
        "redirect": {"plaintext": "redirect", "https_port": 8443},
        "optional": {"require_tls": false, "hsts": {}},
        "modern": {"min_tls_version": "1.3", "ciphers": ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]},
        "mtls": {"client_certificate": {}},
        "pinned": {"client_certificate": {"sha256_fingerprints": ["26ea333a4f225183024d92c4cd54bc1cdc486c643896f3883b3b4beeecd6f350"]}},
        "named": {"client_certificate": {"subjects": ["CN=checkout,O=Palisade Test"], "issuers": ["CN=Palisade Test CA,O=Palisade Test"]}},
        "dns": {"client_certificate": {"dns_sans": ["*.shop.svc"]}},
        "spiffe": {"client_certificate": {"uri_sans": [{"exact": "spiffe://cluster.local/ns/shop/sa/checkout"}, {"prefix": "spiffe://cluster.local/ns/ops/"}]}}
    },
    "rules": [
        {"match": {"path": {"prefix": "/public"}}},
        {"match": {"path": {"prefix": "/refuse"}}, "policy": "refuse"},
        {"match": {"path": {"prefix": "/upgrade"}}, "policy": "upgrade"},
        {"match": {"path": {"prefix": "/redirect"}}, "policy": "redirect"},
        {"match": {"path": {"prefix": "/optional"}}, "policy": "optional"},
        {"match": {"path": {"prefix": "/modern"}}, "policy": "modern"},
        {"match": {"path": {"prefix": "/mtls"}}, "policy": "mtls"},
        {"match": {"path": {"prefix": "/pinned"}}, "policy": "pinned"},
        {"match": {"path": {"prefix": "/named"}}, "policy": "named"},
        {"match": {"path": {"prefix": "/dns"}}, "policy": "dns"},
        {"match": {"path": {"prefix": "/spiffe"}}, "policy": "spiffe"}
    ]
}"#;

fn config() -> Config {
    Config::from_json(CONFIG.as_bytes()).unwrap()
}

fn checkout() -> Certificate {
    Certificate {
        subject: "CN=checkout,O=Palisade Test".into(),
        issuer: "CN=Palisade Test CA,O=Palisade Test".into(),
        serial_number: "0BADC0DE".into(),
        dns_sans: vec!["checkout.shop.svc".into()],
        uri_sans: vec!["spiffe://cluster.local/ns/shop/sa/checkout".into()],
        ..Certificate::default()
    }
}

fn tls(version: &str) -> Connection {
    Connection {
        version: Some(version.into()),
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        sni: Some("api.example.com".into()),
        peer: None,
    }
}

fn with_peer(certificate: Option<Certificate>, sha256: &str) -> Connection {
    Connection {
        peer: Some(Peer {
            sha256: Some(sha256.into()),
            certificate,
        }),
        ..tls("TLSv1.3")
    }
}

const PINNED: &str = "26ea333a4f225183024d92c4cd54bc1cdc486c643896f3883b3b4beeecd6f350";

/// What a request on `method path` over `connection` comes to: `pass`,
/// `redirect <location>`, `no_policy`, or `<status> <requirement>`.
fn outcome(method: &str, path: &str, connection: &Connection) -> String {
    let c = config();
    let view = RequestView {
        method,
        host: "api.example.com:8080",
        path,
        route_name: "",
    };
    let line = RequestLine {
        method,
        authority: "api.example.com:8080",
        path,
    };
    match decide(&c, c.policy_index_for(&view), &line, connection) {
        Decision::NoPolicy => "no_policy".into(),
        Decision::Pass { .. } => "pass".into(),
        Decision::Redirect { location, .. } => format!("redirect {location}"),
        Decision::Refuse {
            requirement,
            status,
            upgrade,
            ..
        } => match upgrade {
            Some(u) => format!("{status} {} ({u})", requirement.name()),
            None => format!("{status} {}", requirement.name()),
        },
    }
}

use palisade_shared::matcher::RequestView;

#[test]
fn each_rule_one_failure_at_a_time() {
    let plaintext = Connection::default();
    let other_cert = Certificate {
        subject: "CN=mallory,O=Elsewhere".into(),
        issuer: "CN=Other CA".into(),
        dns_sans: vec!["mallory.evil".into(), "shop.svc".into()],
        uri_sans: vec!["spiffe://cluster.local/ns/shopping/sa/x".into()],
        ..Certificate::default()
    };
    let cases: Vec<(&str, &str, Connection, &str)> = vec![
        ("GET", "/public", plaintext.clone(), "no_policy"),
        ("GET", "/refuse", plaintext.clone(), "403 tls"),
        ("GET", "/refuse", tls("TLSv1"), "pass"),
        (
            "GET",
            "/upgrade",
            plaintext.clone(),
            "426 tls (TLS/1.3, HTTP/1.1)",
        ),
        ("GET", "/upgrade", tls("TLSv1.2"), "403 min_tls_version"),
        ("GET", "/upgrade", tls("SSLv3"), "403 min_tls_version"),
        ("GET", "/upgrade", tls("TLSv1.3"), "pass"),
        (
            "GET",
            "/redirect/a?b=1",
            plaintext.clone(),
            "redirect https://api.example.com:8443/redirect/a?b=1",
        ),
        (
            "HEAD",
            "/redirect",
            plaintext.clone(),
            "redirect https://api.example.com:8443/redirect",
        ),
        ("POST", "/redirect", plaintext.clone(), "403 tls"),
        ("POST", "/redirect", tls("TLSv1.2"), "pass"),
        ("GET", "/optional", plaintext.clone(), "pass"),
        ("GET", "/modern", tls("TLSv1.3"), "pass"),
        ("GET", "/modern", tls("TLSv1.2"), "403 min_tls_version"),
        (
            "GET",
            "/modern",
            Connection {
                cipher: Some("TLS_CHACHA20_POLY1305_SHA256".into()),
                ..tls("TLSv1.3")
            },
            "403 cipher",
        ),
        (
            "GET",
            "/modern",
            Connection {
                cipher: None,
                ..tls("TLSv1.3")
            },
            "403 cipher",
        ),
        ("GET", "/mtls", tls("TLSv1.3"), "403 client_certificate"),
        ("GET", "/mtls", with_peer(None, "ab"), "pass"),
        ("GET", "/pinned", with_peer(None, PINNED), "pass"),
        (
            "GET",
            "/pinned",
            with_peer(Some(checkout()), &"0".repeat(64)),
            "403 client_certificate.sha256_fingerprint",
        ),
        ("GET", "/named", with_peer(Some(checkout()), PINNED), "pass"),
        (
            "GET",
            "/named",
            with_peer(None, PINNED),
            "403 client_certificate",
        ),
        (
            "GET",
            "/named",
            with_peer(
                Some(Certificate {
                    subject: "CN=mallory,O=Palisade Test".into(),
                    ..checkout()
                }),
                PINNED,
            ),
            "403 client_certificate.subject",
        ),
        (
            "GET",
            "/named",
            with_peer(
                Some(Certificate {
                    issuer: "CN=Other CA".into(),
                    ..checkout()
                }),
                PINNED,
            ),
            "403 client_certificate.issuer",
        ),
        ("GET", "/dns", with_peer(Some(checkout()), PINNED), "pass"),
        (
            "GET",
            "/dns",
            with_peer(Some(other_cert.clone()), PINNED),
            "403 client_certificate.dns_san",
        ),
        (
            "GET",
            "/spiffe",
            with_peer(Some(checkout()), PINNED),
            "pass",
        ),
        (
            "GET",
            "/spiffe",
            with_peer(
                Some(Certificate {
                    uri_sans: vec![
                        "https://not-spiffe".into(),
                        "spiffe://cluster.local/ns/ops/sa/deployer".into(),
                    ],
                    ..checkout()
                }),
                PINNED,
            ),
            "pass",
        ),
        (
            "GET",
            "/spiffe",
            with_peer(Some(other_cert), PINNED),
            "403 client_certificate.uri_san",
        ),
        (
            "GET",
            "/spiffe",
            with_peer(
                Some(Certificate {
                    uri_sans: vec![],
                    ..checkout()
                }),
                PINNED,
            ),
            "403 client_certificate.uri_san",
        ),
    ];
    for (method, path, connection, want) in cases {
        assert_eq!(
            outcome(method, path, &connection),
            want,
            "{method} {path} over {connection:?}"
        );
    }
}

#[test]
fn redirects_only_to_a_plain_host() {
    let line = |authority, path| RequestLine {
        method: "GET",
        authority,
        path,
    };
    let cases = [
        ("api.example.com", "/a", Some("https://api.example.com/a")),
        ("api.example.com:80", "/", Some("https://api.example.com/")),
        ("[::1]:8080", "/x", Some("https://[::1]/x")),
        ("127.0.0.1:10000", "/x?y", Some("https://127.0.0.1/x?y")),
        ("evil.com/x", "/", None),
        ("a b", "/", None),
        ("", "/", None),
        ("api", "//evil.com/", None),
        ("api", "*", None),
        ("user@evil.com", "/", None),
    ];
    for (authority, path, want) in cases {
        assert_eq!(
            https_location(&line(authority, path), 443).as_deref(),
            want,
            "{authority} {path}"
        );
    }
    // A request whose host cannot be redirected to is refused instead.
    let c = config();
    let view = RequestView {
        method: "GET",
        host: "evil.com/x",
        path: "/redirect",
        route_name: "",
    };
    let d = decide(
        &c,
        c.policy_index_for(&view),
        &line("evil.com/x", "/redirect"),
        &Connection::default(),
    );
    assert!(
        matches!(
            d,
            Decision::Refuse {
                requirement: Requirement::Tls,
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn publishes_what_it_saw() {
    let c = config();
    let connection = with_peer(
        Some(Certificate {
            not_before_ms: Some(1_700_000_000_999),
            ..checkout()
        }),
        PINNED,
    );
    let refused = Decision::Refuse {
        policy: 9,
        requirement: Requirement::UriSan,
        status: 403,
        detail: String::new(),
        upgrade: None,
    };
    let state = published(&c, &refused, &connection);
    assert_eq!(state.policy.as_deref(), Some(c.policies[9].name.as_str()));
    assert_eq!(state.outcome, "refused");
    assert_eq!(state.failed.as_deref(), Some("client_certificate.uri_san"));
    assert_eq!(state.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(state.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(state.sni.as_deref(), Some("api.example.com"));
    assert!(state.peer_certificate_presented && state.peer_certificate_validated);
    assert_eq!(
        state.peer_issuer.as_deref(),
        Some("CN=Palisade Test CA,O=Palisade Test")
    );
    assert_eq!(
        state.peer_uri_sans,
        ["spiffe://cluster.local/ns/shop/sa/checkout"]
    );
    assert_eq!(state.peer_sha256.as_deref(), Some(PINNED));
    assert_eq!(state.peer_not_before, Some(1_700_000_000));
    let plaintext = published(&c, &Decision::Pass { policy: 0 }, &Connection::default());
    assert_eq!(plaintext.outcome, "passed");
    assert!(plaintext.version.is_none() && !plaintext.peer_certificate_presented);
}
