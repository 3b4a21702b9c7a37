//! Choosing the key and checking the signature.
//!
//! The key is chosen by the configuration, never by the token: among the
//! provider's keys, only those whose type and curve fit the token's `alg`
//! (and whose own `alg`, if any, is the same) are candidates; with a `kid`,
//! only the candidates with that `kid`. A token whose `kid` names several
//! keys is refused as ambiguous rather than tried against each.
//!
//! Signatures are checked by a [`SignatureVerifier`]: [`Portable`] uses
//! maintained pure-Rust crates (`rsa`, `p256`, `p384`, `p521`,
//! `ed25519-dalek`, `hmac`); the adapter adds Envoy's BoringSSL through the
//! `verify_signature` foreign function where the host has it
//! ([`host_request`] builds its arguments). Both see the same inputs after the
//! same shape checks here, so they reach the same verdicts.

use hmac::{Hmac, Mac};
use rsa::traits::PublicKeyParts;
use sha2::{Sha256, Sha384, Sha512};

use crate::error::Reason;
use crate::jwk::{Jwk, KeyMaterial, KeySet};
use crate::jws::{Algorithm, Jws};

/// At most this many keys are tried for a token without `kid`.
pub const MAX_CANDIDATES: usize = 8;

/// Checks one signature with one key.
pub trait SignatureVerifier {
    /// Whether `signature` over `input` verifies with `key` for `alg`.
    /// `key` is known to fit `alg` and the signature to have the right size.
    fn verify(&self, alg: Algorithm, key: &Jwk, input: &[u8], signature: &[u8]) -> bool;
}

/// The pure-Rust verifier, available on every host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Portable;

impl SignatureVerifier for Portable {
    fn verify(&self, alg: Algorithm, key: &Jwk, input: &[u8], signature: &[u8]) -> bool {
        verify_portable(alg, &key.material, input, signature)
    }
}

/// The keys that may have signed a token with this header.
pub fn candidates<'k>(
    set: &'k KeySet,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Vec<&'k Jwk>, Reason> {
    let fitting = set.keys.iter().filter(|k| k.fits(alg));
    match kid {
        Some(kid) if set.ambiguous_kids.iter().any(|k| k == kid) => Err(Reason::AmbiguousKid),
        Some(kid) => {
            let named: Vec<&Jwk> = fitting.filter(|k| k.kid.as_deref() == Some(kid)).collect();
            match named.len() {
                0 => Err(Reason::UnknownKid),
                1 => Ok(named),
                _ => Err(Reason::AmbiguousKid),
            }
        }
        None => {
            let all: Vec<&Jwk> = fitting.take(MAX_CANDIDATES).collect();
            if all.is_empty() {
                Err(Reason::NoMatchingKey)
            } else {
                Ok(all)
            }
        }
    }
}

/// The signature length `alg` requires with `key`, or `None` when any length
/// is possible (HMAC is checked by the MAC itself).
fn expected_signature_len(alg: Algorithm, key: &Jwk) -> Option<usize> {
    match (&key.material, alg) {
        (KeyMaterial::Rsa(k), _) => Some(k.size()),
        (_, Algorithm::ES256) => Some(64),
        (_, Algorithm::ES384) => Some(96),
        (_, Algorithm::ES512) => Some(132),
        (_, Algorithm::EdDSA) => Some(64),
        _ => None,
    }
}

/// Whether a parsed JWS verifies with one given key (a DPoP proof's own
/// `jwk`): the key fits the algorithm, the signature has its size, and the
/// verifier (host or portable, as for tokens) accepts it.
pub fn verifies_with(jws: &Jws<'_>, key: &Jwk, verifier: &dyn SignatureVerifier) -> bool {
    let alg = jws.header.alg;
    key.fits(alg)
        && expected_signature_len(alg, key).is_none_or(|n| n == jws.signature.len())
        && verifier.verify(alg, key, jws.signing_input.as_bytes(), &jws.signature)
}

/// Verifies a parsed JWS against a key set; returns the key that verified.
pub fn verify_jws<'k>(
    jws: &Jws<'_>,
    set: &'k KeySet,
    allowed: Option<&[Algorithm]>,
    verifier: &dyn SignatureVerifier,
) -> Result<&'k Jwk, Reason> {
    let alg = jws.header.alg;
    if allowed.is_some_and(|list| !list.contains(&alg)) {
        return Err(Reason::AlgorithmNotAllowed);
    }
    let keys = candidates(set, alg, jws.header.kid.as_deref())?;
    for key in keys {
        if expected_signature_len(alg, key).is_some_and(|n| n != jws.signature.len()) {
            continue;
        }
        if verifier.verify(alg, key, jws.signing_input.as_bytes(), &jws.signature) {
            return Ok(key);
        }
    }
    Err(Reason::SignatureInvalid)
}

fn verify_portable(alg: Algorithm, key: &KeyMaterial, input: &[u8], sig: &[u8]) -> bool {
    use signature_traits::Verifier;
    match (key, alg) {
        (KeyMaterial::Oct(k), Algorithm::HS256) => hmac_ok::<Hmac<Sha256>>(k, input, sig),
        (KeyMaterial::Oct(k), Algorithm::HS384) => hmac_ok::<Hmac<Sha384>>(k, input, sig),
        (KeyMaterial::Oct(k), Algorithm::HS512) => hmac_ok::<Hmac<Sha512>>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::RS256) => rsa_pkcs1::<Sha256>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::RS384) => rsa_pkcs1::<Sha384>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::RS512) => rsa_pkcs1::<Sha512>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::PS256) => rsa_pss::<Sha256>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::PS384) => rsa_pss::<Sha384>(k, input, sig),
        (KeyMaterial::Rsa(k), Algorithm::PS512) => rsa_pss::<Sha512>(k, input, sig),
        (KeyMaterial::P256(k), Algorithm::ES256) => {
            p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(input, &s).is_ok())
        }
        (KeyMaterial::P384(k), Algorithm::ES384) => {
            p384::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(input, &s).is_ok())
        }
        (KeyMaterial::P521(k), Algorithm::ES512) => {
            p521::ecdsa::Signature::from_slice(sig).is_ok_and(|s| k.verify(input, &s).is_ok())
        }
        (KeyMaterial::Ed25519(k), Algorithm::EdDSA) => ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|s| k.verify_strict(input, &s).is_ok()),
        _ => false,
    }
}

mod signature_traits {
    pub use p256::ecdsa::signature::Verifier;
}

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(input);
            // Constant-time comparison of the whole tag.
            mac.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    }
}

fn rsa_pkcs1<D>(key: &rsa::RsaPublicKey, input: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::signature::Verifier;
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
        .verify(input, &sig)
        .is_ok()
}

fn rsa_pss<D>(key: &rsa::RsaPublicKey, input: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + hmac::digest::FixedOutputReset,
{
    use rsa::signature::Verifier;
    let Ok(sig) = rsa::pss::Signature::try_from(sig) else {
        return false;
    };
    // RFC 7518 3.5: the salt is as long as the hash; VerifyingKey::new requires exactly that.
    rsa::pss::VerifyingKey::<D>::new(key.clone())
        .verify(input, &sig)
        .is_ok()
}

/// What the host verifier needs for one signature: the hash name Envoy
/// knows, the key as SubjectPublicKeyInfo DER, and the signature in the
/// form BoringSSL expects (DER for ECDSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRequest {
    /// `sha256`, `sha384` or `sha512`.
    pub hash: &'static str,
    /// SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
    /// The signature (DER `ECDSA-Sig-Value` for ECDSA).
    pub signature: Vec<u8>,
}

/// The host request for `alg`/`key`, or `None` when the host verifier cannot
/// do this algorithm (PSS and EdDSA, which Envoy's `verify_signature` does
/// not configure; HMAC, which needs no public key): the portable path does.
/// `None` too for an ECDSA signature whose halves are out of range: no
/// verifier would accept it, and the portable path says so the same way.
pub fn host_request(alg: Algorithm, key: &Jwk, sig: &[u8]) -> Option<HostRequest> {
    let der = key.spki_der.clone()?;
    let (hash, signature) = match alg {
        Algorithm::RS256 => ("sha256", sig.to_vec()),
        Algorithm::RS384 => ("sha384", sig.to_vec()),
        Algorithm::RS512 => ("sha512", sig.to_vec()),
        Algorithm::ES256 => (
            "sha256",
            p256::ecdsa::Signature::from_slice(sig)
                .ok()?
                .to_der()
                .as_bytes()
                .to_vec(),
        ),
        Algorithm::ES384 => (
            "sha384",
            p384::ecdsa::Signature::from_slice(sig)
                .ok()?
                .to_der()
                .as_bytes()
                .to_vec(),
        ),
        Algorithm::ES512 => (
            "sha512",
            p521::ecdsa::Signature::from_slice(sig)
                .ok()?
                .to_der()
                .as_bytes()
                .to_vec(),
        ),
        _ => return None,
    };
    Some(HostRequest {
        hash,
        public_key_der: der,
        signature,
    })
}

/// Whether a host request can be made for `alg` at all (then a failure to
/// build one means the signature is invalid, not that the host cannot help).
pub fn host_capable(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::ES512
    )
}

/// Encodes Envoy's `VerifySignatureArguments` protobuf:
/// `hash_function = 1` (string), `public_key = 2` (bytes),
/// `signature = 3` (bytes), `text = 4` (bytes).
pub fn encode_verify_arguments(req: &HostRequest, text: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(req.public_key_der.len() + req.signature.len() + text.len() + 32);
    for (field, bytes) in [
        (1u8, req.hash.as_bytes()),
        (2, &req.public_key_der[..]),
        (3, &req.signature[..]),
        (4, text),
    ] {
        out.push(field << 3 | 2);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes Envoy's `VerifySignatureResult` (`result = 1` bool, `error = 2`
/// string) into the verdict; `None` when the bytes are not that message.
/// proto3 leaves out a false `result`, so an empty message means "invalid".
pub fn decode_verify_result(bytes: &[u8]) -> Option<bool> {
    let mut at = 0;
    let mut result = false;
    while at < bytes.len() {
        let tag = get_varint(bytes, &mut at)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => result = get_varint(bytes, &mut at)? != 0,
            (_, 0) => {
                get_varint(bytes, &mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                at = at.checked_add(len).filter(|end| *end <= bytes.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::{parse_jwk, parse_jwks_value, Symmetric};
    use crate::jws::parse;
    use serde_json::json;

    const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

    fn key(v: serde_json::Value) -> Jwk {
        parse_jwk(&v, Symmetric::Allowed).unwrap()
    }

    fn set(keys: Vec<serde_json::Value>) -> KeySet {
        parse_jwks_value(&json!({ "keys": keys }), Symmetric::Allowed).unwrap()
    }

    pub(crate) fn rfc7515_vectors() -> Vec<(&'static str, serde_json::Value, String)> {
        vec![
            (
                "A.1 HS256",
                json!({"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}),
                format!("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            ),
            (
                "A.2 RS256",
                json!({"kty":"RSA","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}),
                format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"),
            ),
            (
                "A.3 ES256",
                json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
                format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"),
            ),
            (
                "A.4 ES512",
                json!({"kty":"EC","crv":"P-521","x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk","y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}),
                "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn".to_string(),
            ),
            (
                "RFC 8037 A.4 Ed25519",
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
                "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg".to_string(),
            ),
        ]
    }

    #[test]
    fn rfc_vectors_verify_and_tampering_fails() {
        for (name, jwk, token) in rfc7515_vectors() {
            let keys = set(vec![jwk]);
            let jws = parse(&token, 8192).unwrap();
            assert!(verify_jws(&jws, &keys, None, &Portable).is_ok(), "{name}");
            // Flip one bit of the signature, then of the payload.
            let mut sig = jws.signature.clone();
            sig[5] ^= 1;
            let bad = Jws {
                signature: sig,
                ..jws.clone()
            };
            assert_eq!(
                verify_jws(&bad, &keys, None, &Portable).unwrap_err(),
                Reason::SignatureInvalid,
                "{name}"
            );
            let tampered_input = format!("{}x", jws.signing_input);
            let bad = Jws {
                signing_input: &tampered_input,
                ..jws.clone()
            };
            assert_eq!(
                verify_jws(&bad, &keys, None, &Portable).unwrap_err(),
                Reason::SignatureInvalid,
                "{name}"
            );
            // The allow list is enforced before any key is looked at.
            assert_eq!(
                verify_jws(&jws, &keys, Some(&[]), &Portable).unwrap_err(),
                Reason::AlgorithmNotAllowed
            );
        }
    }

    #[test]
    fn key_confusion_is_refused() {
        // An RS256 public key offered as an HMAC secret: the HS256 token
        // finds no fitting key, because the set holds no symmetric key.
        let vectors = rfc7515_vectors();
        let rsa_set = set(vec![vectors[1].1.clone()]);
        let hs = parse(&vectors[0].2, 8192).unwrap();
        assert_eq!(
            verify_jws(&hs, &rsa_set, None, &Portable).unwrap_err(),
            Reason::NoMatchingKey
        );
        // An ES256 token against an RSA key, and the reverse.
        let es = parse(&vectors[2].2, 8192).unwrap();
        assert_eq!(
            verify_jws(&es, &rsa_set, None, &Portable).unwrap_err(),
            Reason::NoMatchingKey
        );
        // A key that names its alg is not used for another alg of its type.
        let mut rs_key = vectors[1].1.clone();
        rs_key["alg"] = json!("PS384");
        let rs = parse(&vectors[1].2, 8192).unwrap();
        assert_eq!(
            verify_jws(&rs, &set(vec![rs_key]), None, &Portable).unwrap_err(),
            Reason::NoMatchingKey
        );
    }

    #[test]
    fn kid_selection() {
        let ed =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let with_kid = |kid: &str| {
            let mut k = ed.clone();
            k["kid"] = json!(kid);
            k
        };
        let s = set(vec![with_kid("a"), with_kid("b"), with_kid("b")]);
        assert_eq!(
            candidates(&s, Algorithm::EdDSA, Some("a")).unwrap().len(),
            1
        );
        assert_eq!(
            candidates(&s, Algorithm::EdDSA, Some("c")).unwrap_err(),
            Reason::UnknownKid
        );
        assert_eq!(
            candidates(&s, Algorithm::EdDSA, Some("b")).unwrap_err(),
            Reason::AmbiguousKid
        );
        assert_eq!(candidates(&s, Algorithm::EdDSA, None).unwrap().len(), 3);
        assert_eq!(
            candidates(&s, Algorithm::ES256, None).unwrap_err(),
            Reason::NoMatchingKey
        );
        assert_eq!(
            candidates(&s, Algorithm::ES256, Some("a")).unwrap_err(),
            Reason::UnknownKid
        );
    }

    #[test]
    fn host_arguments_round_trip() {
        let vectors = rfc7515_vectors();
        let es = key(vectors[2].1.clone());
        let jws = parse(&vectors[2].2, 8192).unwrap();
        let req = host_request(Algorithm::ES256, &es, &jws.signature).unwrap();
        assert_eq!(req.hash, "sha256");
        // The DER signature is the same signature.
        let back = p256::ecdsa::Signature::from_der(&req.signature).unwrap();
        assert_eq!(back.to_bytes().to_vec(), jws.signature);
        let args = encode_verify_arguments(&req, jws.signing_input.as_bytes());
        assert_eq!(&args[..8], b"\x0a\x06sha256");
        assert_eq!(args[8], 0x12);
        assert!(
            host_request(Algorithm::ES256, &es, &[0u8; 64]).is_none(),
            "r = s = 0"
        );
        assert!(host_request(Algorithm::EdDSA, &key(vectors[4].1.clone()), &[0; 64]).is_none());
        assert!(
            host_capable(Algorithm::RS256)
                && !host_capable(Algorithm::PS256)
                && !host_capable(Algorithm::EdDSA)
        );
        assert_eq!(decode_verify_result(b"\x08\x01"), Some(true));
        assert_eq!(decode_verify_result(b""), Some(false));
        assert_eq!(decode_verify_result(b"\x12\x03bad"), Some(false));
        assert_eq!(
            decode_verify_result(b"\x08\x01\x12\x05abc"),
            None,
            "length past the end"
        );
        let mut long = Vec::new();
        put_varint(&mut long, 300);
        assert_eq!(long, vec![0xac, 0x02]);
        let mut at = 0;
        assert_eq!(get_varint(&long, &mut at), Some(300));
    }
}
