//! Sender-constrained tokens issued by a real identity provider (npm
//! `oidc-provider` over HTTPS with client certificates): certificate-bound
//! tokens (RFC 8705) and DPoP-bound tokens (RFC 9449), presented through
//! Envoy over real TLS with curl, with correct, forged and replayed proofs,
//! proofs for another method or URL, another client's certificate: every
//! case gets the RFC's answer.

use palisade_e2e::oidc::{OidcProvider, RESOURCE};
use palisade_e2e::tls::{downstream_tls_context, Curl, Pki};
use palisade_e2e::tokens::{now, DpopKey};
use palisade_e2e::{EchoUpstream, Envoy, EnvoyConfig, Response};
use serde_json::{json, Value};

fn envoy(op: &OidcProvider, pki: &Pki, upstream: &EchoUpstream) -> Envoy {
    EnvoyConfig::new()
        .wasm_filter(
            "jwt",
            json!({
                "providers": {"op": {
                    "issuer": op.issuer(),
                    "audiences": [RESOURCE],
                    "jwks": op.jwks_tls(pki),
                    "sender_constraint": "either",
                    "dpop": {"algorithms": ["ES256", "PS256"]}
                }},
                "rules": [{"match": {}, "requires": {"provider": "op"}, "scopes": {"all_of": ["orders:read"]}}]
            }),
        )
        .upstream(upstream)
        .listener_tls(downstream_tls_context(pki))
        .start()
}

/// `GET /orders` (or `method path`) over TLS presenting `cert`, with these headers.
fn call(
    pki: &Pki,
    envoy: &Envoy,
    cert: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    Curl {
        cert,
        ..Curl::default()
    }
    .request(pki, envoy.addr(), method, path, headers)
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn challenge(r: &Response) -> String {
    r.header_all("www-authenticate").join(" | ")
}

#[test]
fn dpop_bound_tokens_from_the_provider() {
    if !OidcProvider::installed() {
        return;
    }
    let pki = Pki::generate();
    let op = OidcProvider::start_tls(OidcProvider::free_port(), "k1", &pki);
    let upstream = EchoUpstream::start();
    let envoy = envoy(&op, &pki, &upstream);
    let url = |path: &str| format!("https://{}{path}", envoy.addr());

    // The client proves possession of its key to the provider, which binds
    // the token to it (cnf.jkt) and says so (token_type DPoP).
    let client = DpopKey::new(0x31);
    let token_url = format!("{}/token", op.issuer());
    let response = op.token_tls(
        &pki,
        "dpop-client",
        None,
        Some(&client.proof("POST", &token_url, None)),
    );
    assert_eq!(response["token_type"], "DPoP", "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let auth = format!("DPoP {token}");

    // The right proof: through, once.
    let proof = client.proof("GET", &url("/orders"), Some(&token));
    let ok = call(
        &pki,
        &envoy,
        None,
        "GET",
        "/orders",
        &[("authorization", &auth), ("dpop", &proof)],
    );
    assert_eq!(ok.status, 200, "{}: {}", challenge(&ok), ok.text());
    // The same proof again: a replay.
    let replay = call(
        &pki,
        &envoy,
        None,
        "GET",
        "/orders",
        &[("authorization", &auth), ("dpop", &proof)],
    );
    assert_eq!(replay.status, 401);
    assert_eq!(
        challenge(&replay),
        r#"DPoP error="invalid_dpop_proof", error_description="DPoP proof was already used", algs="ES256 PS256""#
    );

    let refused = |proof: &str, what: &str| {
        let r = call(
            &pki,
            &envoy,
            None,
            "GET",
            "/orders",
            &[("authorization", &auth), ("dpop", proof)],
        );
        assert_eq!(r.status, 401, "{what}");
        let c = challenge(&r);
        assert!(
            c.starts_with(r#"DPoP error="invalid_dpop_proof""#),
            "{what}: {c}"
        );
        c
    };
    // Forged: the client's key in the header, signed by another key.
    let thief = DpopKey::new(0x66);
    let claims = |htm: &str, htu: &str| {
        json!({"jti": format!("forged-{htm}-{htu}-{}", now()), "htm": htm, "htu": htu, "iat": now(),
               "ath": palisade_e2e::tokens::b64url(&sha2_256(token.as_bytes()))})
    };
    let forged = thief.sign_proof(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.jwk()}),
        &claims("GET", &url("/orders")),
    );
    assert!(refused(&forged, "forged").contains("signature is invalid"));
    // The thief's own key, with a stolen token: not the bound key.
    let stolen = thief.proof("GET", &url("/orders"), Some(&token));
    assert!(refused(&stolen, "another key").contains("not the key the token is bound to"));
    // A proof for another method, or another URL.
    let post = client.proof("POST", &url("/orders"), Some(&token));
    assert!(refused(&post, "method").contains("another method"));
    let elsewhere = client.proof("GET", &url("/admin"), Some(&token));
    assert!(refused(&elsewhere, "url").contains("another URL"));
    // An old proof.
    let old = client.sign_proof(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": client.jwk()}),
        &{
            let mut c = claims("GET", &url("/orders"));
            c["iat"] = json!(now() - 3600);
            c
        },
    );
    assert!(refused(&old, "old").contains("too old"));
    // No proof at all.
    let r = call(
        &pki,
        &envoy,
        None,
        "GET",
        "/orders",
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains("no DPoP proof"));
    // The DPoP-bound token as a bearer token (proof or not): refused.
    let as_bearer = call(
        &pki,
        &envoy,
        None,
        "GET",
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(as_bearer.status, 401);
    let c = challenge(&as_bearer);
    assert!(
        c.starts_with(r#"Bearer realm="palisade", error="invalid_token""#),
        "{c}"
    );
    assert!(c.ends_with(r#"DPoP algs="ES256 PS256""#), "{c}");
    // No token: both schemes offered.
    let r = call(&pki, &envoy, None, "GET", "/orders", &[]);
    assert_eq!(
        challenge(&r),
        r#"Bearer realm="palisade" | DPoP algs="ES256 PS256""#
    );

    assert_eq!(
        envoy.counter("palisade.jwt.denied.dpop_proof_replayed"),
        Some(1)
    );
    assert_eq!(
        envoy.counter("palisade.jwt.denied.dpop_proof_signature"),
        Some(1)
    );
    assert_eq!(
        envoy.counter("palisade.jwt.denied.dpop_proof_key_mismatch"),
        Some(1)
    );
    assert_eq!(
        envoy.counter("palisade.jwt.denied.dpop_bound_token_as_bearer"),
        Some(1)
    );
    assert_eq!(envoy.counter("palisade.jwt.allowed"), Some(1));
}

#[test]
fn certificate_bound_tokens_from_the_provider() {
    if !OidcProvider::installed() {
        return;
    }
    let pki = Pki::generate();
    let op = OidcProvider::start_tls(OidcProvider::free_port(), "k1", &pki);
    let upstream = EchoUpstream::start();
    let envoy = envoy(&op, &pki, &upstream);

    // The provider binds the token to the certificate the client presented.
    let response = op.token_tls(&pki, "mtls-client", Some("checkout"), None);
    assert_eq!(response["token_type"], "Bearer", "{response}");
    let token = response["access_token"].as_str().unwrap().to_string();
    let claims: Value = serde_json::from_slice(&palisade_e2e::tokens::b64url_decode(
        token.split('.').nth(1).unwrap(),
    ))
    .unwrap();
    let fingerprint = pki
        .certificate_field("checkout.pem", "-fingerprint -sha256")
        .replace(':', "");
    let digest: Vec<u8> = (0..fingerprint.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&fingerprint[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        palisade_e2e::tokens::b64url(&digest),
        "{claims}"
    );
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];

    // The same certificate: through.
    let r = call(&pki, &envoy, Some("checkout"), "GET", "/orders", &headers);
    assert_eq!(r.status, 200, "{}: {}", challenge(&r), r.text());
    // Another client's certificate (same CA): the stolen token is useless.
    let r = call(&pki, &envoy, Some("reporting"), "GET", "/orders", &headers);
    assert_eq!(r.status, 401);
    assert!(
        challenge(&r).starts_with(r#"Bearer realm="palisade", error="invalid_token", error_description="token is bound to another client certificate""#),
        "{}",
        challenge(&r)
    );
    // No certificate: refused too.
    let r = call(&pki, &envoy, None, "GET", "/orders", &headers);
    assert_eq!(r.status, 401);
    assert!(
        challenge(&r).contains("did not present"),
        "{}",
        challenge(&r)
    );
    // A header claiming the right certificate changes nothing.
    let xfcc = format!(
        "Hash={};Subject=\"CN=checkout,O=Shop\"",
        fingerprint.to_ascii_lowercase()
    );
    let r = call(
        &pki,
        &envoy,
        Some("reporting"),
        "GET",
        "/orders",
        &[
            ("authorization", auth.as_str()),
            ("x-forwarded-client-cert", &xfcc),
        ],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        envoy.counter("palisade.jwt.denied.mtls_certificate_mismatch"),
        Some(2)
    );
    assert_eq!(
        envoy.counter("palisade.jwt.denied.mtls_certificate_missing"),
        Some(1)
    );
}

fn sha2_256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}
