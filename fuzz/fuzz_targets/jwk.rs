//! JWK sets as a remote JWKS endpoint (or an operator) serves them: every
//! key type, curve and parameter check. A set fetched from the network
//! never yields an HMAC secret, and no set holds more than MAX_KEYS keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_jwt::jwk::{parse_jwks, Symmetric, MAX_KEYS};
use palisade_jwt::jws::Algorithm;
use palisade_jwt::verify::{candidates, host_request};

const ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

fuzz_target!(|data: &[u8]| {
    for symmetric in [Symmetric::Refused, Symmetric::Allowed] {
        let Ok(set) = parse_jwks(data, symmetric) else {
            continue;
        };
        assert!(set.keys.len() <= MAX_KEYS, "{} keys", set.keys.len());
        if symmetric == Symmetric::Refused {
            assert!(
                set.keys.iter().all(|k| !k.is_symmetric()),
                "an HMAC secret from the network"
            );
        }
        for name in ALGORITHMS {
            let alg = Algorithm::from_name(name).unwrap();
            for kid in [None, Some("1"), Some("")] {
                let _ = candidates(&set, alg, kid);
            }
            for key in &set.keys {
                if key.fits(alg) {
                    let _ = host_request(alg, key, &[1; 64]);
                }
            }
        }
    }
});
