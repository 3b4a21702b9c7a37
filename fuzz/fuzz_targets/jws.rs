//! The compact JWS parser, the unverified issuer peek, and signature
//! checking against fixed key sets (the Wycheproof keys, `fuzz/keys/`):
//! a token is client input from its first byte to its last.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_jwt::jwk::{parse_jwks, KeySet, Symmetric};
use palisade_jwt::jws::{b64url_encode, parse, peek_issuer, Algorithm};
use palisade_jwt::verify::{host_request, verify_jws, Portable};

const MAX_TOKEN_BYTES: usize = 8192;

fn key_sets() -> &'static [KeySet; 2] {
    static SETS: OnceLock<[KeySet; 2]> = OnceLock::new();
    SETS.get_or_init(|| {
        let load = |json: &str, symmetric| parse_jwks(json.as_bytes(), symmetric).unwrap();
        [
            load(include_str!("../keys/asymmetric.json"), Symmetric::Refused),
            load(include_str!("../keys/symmetric.json"), Symmetric::Allowed),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = peek_issuer(token);
    let Ok(jws) = parse(token, MAX_TOKEN_BYTES) else {
        return;
    };
    // What was signed is the token's first two segments, exactly.
    let mut segments = token.split('.');
    let (header, payload) = (segments.next().unwrap(), segments.next().unwrap());
    assert_eq!(
        jws.signing_input,
        &token[..header.len() + 1 + payload.len()]
    );
    // Decoding is strict: one spelling per payload, so the bytes that were
    // checked are the bytes that were signed.
    assert_eq!(b64url_encode(&jws.payload), payload);
    assert_ne!(jws.header.alg.name().to_ascii_lowercase(), "none");
    assert_eq!(
        Algorithm::from_name(jws.header.alg.name()),
        Some(jws.header.alg)
    );
    for set in key_sets() {
        let _ = verify_jws(&jws, set, None, &Portable);
        for key in &set.keys {
            let _ = host_request(jws.header.alg, key, &jws.signature);
        }
    }
});
