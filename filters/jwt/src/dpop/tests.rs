//! A good proof passes; then each field wrong, one at a time, gives its own
//! reason. Thumbprints against RFC 7638's example.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;

use super::*;
use crate::config::Config;
use crate::jws::Algorithm;
use crate::verify::Portable;

const NOW: i64 = 1_800_000_000;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
const URL: &str = "https://api.example.com/orders";

fn policy() -> DpopPolicy {
    let c = Config::from_json(
        br#"{"providers": {"p": {"issuer": "i", "sender_constraint": "dpop",
            "jwks": {"keys": [{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
            "dpop": {"algorithms": ["ES256"], "max_age_s": 60, "clock_skew_s": 5}}}}"#,
    )
    .unwrap();
    c.providers[0].dpop.clone().unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn public_jwk(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256",
           "x": b64url_encode(point.x().unwrap()), "y": b64url_encode(point.y().unwrap())})
}

fn jkt_of(key: &SigningKey) -> String {
    thumbprint(public_jwk(key).as_object().unwrap()).unwrap()
}

/// A proof with `header` and `claims` as given, signed by `key`.
fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}

fn good_header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(key)})
}

fn good_claims() -> Value {
    json!({"jti": "j-1", "htm": "GET", "htu": URL, "iat": NOW, "ath": token_hash(TOKEN)})
}

fn check(headers: &[&str], jkt: &str) -> Result<Proof, Reason> {
    let target = ProofTarget {
        method: "GET",
        url: &crate::htu::normalize(URL).unwrap(),
        access_token: TOKEN,
        jkt,
    };
    check_proof(&policy(), headers, &target, NOW, &Portable)
}

#[test]
fn a_good_proof_passes() {
    let k = key(1);
    let proof = sign(&k, &good_header(&k), &good_claims());
    let got = check(&[&proof], &jkt_of(&k)).unwrap();
    assert_eq!(
        got,
        Proof {
            jti: "j-1".into(),
            iat: NOW,
            nonce: None
        }
    );
    // htu spelled differently but equivalent, typ in another case, a nonce.
    let mut claims = good_claims();
    claims["htu"] = json!("HTTPS://API.example.com:443/orders?page=2");
    claims["nonce"] = json!("n-1");
    let mut header = good_header(&k);
    header["typ"] = json!("DPoP+JWT");
    let proof = sign(&k, &header, &claims);
    assert_eq!(
        check(&[&proof], &jkt_of(&k)).unwrap().nonce.as_deref(),
        Some("n-1")
    );
}

#[test]
fn each_field_wrong_one_at_a_time() {
    let k = key(1);
    let jkt = jkt_of(&k);
    let other = key(2);
    let with_claim = |name: &str, value: Value| {
        let mut c = good_claims();
        c[name] = value;
        sign(&k, &good_header(&k), &c)
    };
    let without_claim = |name: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(name);
        sign(&k, &good_header(&k), &c)
    };
    let with_header = |name: &str, value: Value| {
        let mut h = good_header(&k);
        h[name] = value;
        sign(&k, &h, &good_claims())
    };
    let mut private_jwk = public_jwk(&k);
    private_jwk["d"] = json!(b64url_encode(&[1u8; 32]));
    let good = sign(&k, &good_header(&k), &good_claims());
    let mut tampered_sig = good.clone();
    tampered_sig.replace_range(tampered_sig.len() - 4.., "AAAA");
    let cases: Vec<(String, Reason)> = vec![
        (
            String::new(),
            Reason::DpopProofMalformed("DPoP proof is not a JWS"),
        ),
        (
            "a.b".into(),
            Reason::DpopProofMalformed("DPoP proof is not a JWS"),
        ),
        (
            "x".repeat(MAX_PROOF_BYTES + 1),
            Reason::DpopProofMalformed("DPoP proof is too large"),
        ),
        (with_header("typ", json!("JWT")), Reason::DpopProofType),
        (
            {
                let mut h = good_header(&k);
                h.as_object_mut().unwrap().remove("typ");
                sign(&k, &h, &good_claims())
            },
            Reason::DpopProofType,
        ),
        (
            with_header("alg", json!("none")),
            Reason::DpopProofAlgorithm,
        ),
        (
            with_header("alg", json!("ES384")),
            Reason::DpopProofAlgorithm,
        ),
        (
            with_header("alg", json!("HS256")),
            Reason::DpopProofAlgorithm,
        ),
        (
            with_header("crit", json!(["exp"])),
            Reason::DpopProofAlgorithm,
        ),
        (
            with_header("jwk", json!("not an object")),
            Reason::DpopProofKey,
        ),
        (
            {
                let mut h = good_header(&k);
                h.as_object_mut().unwrap().remove("jwk");
                sign(&k, &h, &good_claims())
            },
            Reason::DpopProofKey,
        ),
        (with_header("jwk", private_jwk), Reason::DpopProofKey),
        (
            with_header("jwk", json!({"kty": "oct", "k": b64url_encode(&[7u8; 32])})),
            Reason::DpopProofKey,
        ),
        (
            with_header(
                "jwk",
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            ),
            Reason::DpopProofKey,
        ),
        // Signed by another key than the one in its header: a forgery.
        (
            sign(&other, &good_header(&k), &good_claims()),
            Reason::DpopProofSignature,
        ),
        (tampered_sig, Reason::DpopProofSignature),
        (
            without_claim("jti"),
            Reason::DpopProofMalformed("DPoP proof has no usable jti"),
        ),
        (
            with_claim("jti", json!("")),
            Reason::DpopProofMalformed("DPoP proof has no usable jti"),
        ),
        (
            with_claim("jti", json!("j".repeat(MAX_JTI_BYTES + 1))),
            Reason::DpopProofMalformed("DPoP proof has no usable jti"),
        ),
        (with_claim("htm", json!("POST")), Reason::DpopProofMethod),
        (with_claim("htm", json!("get")), Reason::DpopProofMethod),
        (without_claim("htm"), Reason::DpopProofMethod),
        (
            with_claim("htu", json!("https://api.example.com/other")),
            Reason::DpopProofUrl,
        ),
        (
            with_claim("htu", json!("http://api.example.com/orders")),
            Reason::DpopProofUrl,
        ),
        (
            with_claim("htu", json!("https://evil.example.com/orders")),
            Reason::DpopProofUrl,
        ),
        (without_claim("htu"), Reason::DpopProofUrl),
        (with_claim("iat", json!(NOW - 66)), Reason::DpopProofTime),
        (with_claim("iat", json!(NOW + 6)), Reason::DpopProofTime),
        (with_claim("iat", json!("now")), Reason::DpopProofTime),
        (without_claim("iat"), Reason::DpopProofTime),
        (
            with_claim("ath", json!(token_hash("another token"))),
            Reason::DpopProofTokenHash,
        ),
        (without_claim("ath"), Reason::DpopProofTokenHash),
        // A proof by another client's key, for this token.
        (
            sign(&other, &good_header(&other), &good_claims()),
            Reason::DpopProofKeyMismatch,
        ),
    ];
    for (proof, want) in cases {
        assert_eq!(check(&[&proof], &jkt), Err(want), "{proof}");
    }
    // The edges of the window pass.
    for iat in [NOW - 65, NOW + 5] {
        assert!(
            check(&[&with_claim("iat", json!(iat))], &jkt).is_ok(),
            "{iat}"
        );
    }
    assert_eq!(check(&[], &jkt), Err(Reason::DpopProofMissing));
    assert_eq!(
        check(&[&good, &good], &jkt),
        Err(Reason::DpopProofMalformed("several DPoP headers"))
    );
}

#[test]
fn thumbprints_follow_rfc_7638() {
    // RFC 7638 section 3.1.
    let rsa = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(rsa.as_object().unwrap()).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    // Members beyond the required ones change nothing; missing ones fail.
    let k = key(3);
    let mut extra = public_jwk(&k);
    extra["kid"] = json!("x");
    extra["use"] = json!("sig");
    assert_eq!(thumbprint(extra.as_object().unwrap()), Some(jkt_of(&k)));
    let mut missing = public_jwk(&k);
    missing.as_object_mut().unwrap().remove("y");
    assert_eq!(thumbprint(missing.as_object().unwrap()), None);
    assert_eq!(
        thumbprint(json!({"kty": "oct", "k": "AA"}).as_object().unwrap()),
        None
    );
    assert_eq!(
        token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
        "RFC 9449 section 7.1's example"
    );
    assert_eq!(policy().algorithms, [Algorithm::ES256]);
}
