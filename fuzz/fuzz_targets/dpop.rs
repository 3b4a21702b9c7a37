//! DPoP proofs (RFC 9449) and `htu` normalization: the `DPoP` header is
//! client input. The proof's header and claims are fuzzed as JSON text and
//! signed with a fixed Ed25519 key (or forged), so the checks after the
//! signature are reached too; the `htu` normalizer gets arbitrary URLs.
//! Nothing panics; a proof that passes was signed by the bound key and says
//! what the request is; normalizing a normalized URL changes nothing.
#![no_main]

use arbitrary::Arbitrary;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use palisade_jwt::config::DpopPolicy;
use palisade_jwt::dpop::{check_proof, thumbprint, token_hash, ProofTarget, MAX_JTI_BYTES};
use palisade_jwt::htu;
use palisade_jwt::jws::{b64url_encode, Algorithm};
use palisade_jwt::verify::Portable;
use serde_json::{json, Map, Value};

const NOW_S: i64 = 1_700_000_000;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";

#[derive(Debug, Arbitrary)]
enum Header<'a> {
    /// `typ`, `alg` and the public `jwk` of the signing key.
    Good,
    /// Any protected header.
    Text(&'a str),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: Header<'a>,
    /// The claims, as JSON text: signed as they are.
    claims: &'a str,
    /// A claim set built from the request instead, with this `jti`.
    built_jti: Option<&'a str>,
    forge: bool,
    /// More than one `DPoP` header.
    duplicate: bool,
    /// A URL for the normalizer, and the request's URL when it normalizes.
    url: &'a str,
    /// Anything as the proof, unsigned.
    raw: Option<&'a str>,
}

fn public_jwk(key: &SigningKey) -> Map<String, Value> {
    let x = b64url_encode(key.verifying_key().as_bytes());
    match json!({"kty": "OKP", "crv": "Ed25519", "x": x}) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fuzz_target!(|input: Input<'_>| {
    let normalized = htu::normalize(input.url);
    if let Some(url) = &normalized {
        assert_eq!(htu::normalize(url).as_ref(), Some(url), "{:?}", input.url);
        assert!(url.starts_with("http://") || url.starts_with("https://"));
    }
    let url = normalized.unwrap_or_else(|| "https://api.example.com/orders".to_string());

    let key = SigningKey::from_bytes(&[9; 32]);
    let jwk = public_jwk(&key);
    let Some(jkt) = thumbprint(&jwk) else {
        panic!("an Ed25519 key has a thumbprint");
    };
    let header = match input.header {
        Header::Good => json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).to_string(),
        Header::Text(text) => text.to_string(),
    };
    let claims = match input.built_jti {
        Some(jti) => json!({"jti": jti, "htm": "POST", "htu": url, "iat": NOW_S,
            "ath": token_hash(TOKEN)})
        .to_string(),
        None => input.claims.to_string(),
    };
    let signing_input = format!(
        "{}.{}",
        b64url_encode(header.as_bytes()),
        b64url_encode(claims.as_bytes())
    );
    let mut signature = key.sign(signing_input.as_bytes()).to_bytes();
    if input.forge {
        signature[0] ^= 1;
    }
    let signed = format!("{signing_input}.{}", b64url_encode(&signature));
    let proof = input.raw.map(str::to_string).unwrap_or(signed);

    let policy = DpopPolicy {
        algorithms: vec![Algorithm::EdDSA, Algorithm::ES256],
        algs: "EdDSA ES256".into(),
        max_age_s: 300,
        clock_skew_s: 60,
        replay_entries: 64,
        nonce: None,
    };
    let target = ProofTarget {
        method: "POST",
        url: &url,
        access_token: TOKEN,
        jkt: &jkt,
    };
    let headers: Vec<&str> = if input.duplicate {
        vec![&proof, &proof]
    } else {
        vec![&proof]
    };
    if let Ok(passed) = check_proof(&policy, &headers, &target, NOW_S, &Portable) {
        assert!(!input.forge && input.raw.is_none() && !input.duplicate);
        assert!(!passed.jti.is_empty() && passed.jti.len() <= MAX_JTI_BYTES);
        assert!((NOW_S - 360..=NOW_S + 60).contains(&passed.iat));
    }
});
