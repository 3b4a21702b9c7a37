//! DPoP proofs (RFC 9449 section 4.3): every check a resource server makes
//! on the `DPoP` header that comes with a DPoP-bound access token, except
//! the two that need state (server nonces, [`crate::nonce`]; replayed
//! `jti`s, [`crate::replay`]), which [`crate::sender`] adds.
//!
//! The proof's signature goes through the same [`SignatureVerifier`] as
//! tokens: Envoy's `verify_signature` where it can, the portable verifier
//! otherwise. The key is the proof's own `jwk`, which must be a public key
//! (no private members, no symmetric key) for an allowed asymmetric `alg`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::DpopPolicy;
use crate::error::Reason;
use crate::jwk::{parse_jwk, Symmetric};
use crate::jws::{self, b64url_decode, b64url_encode};
use crate::verify::{verifies_with, SignatureVerifier};

/// Longest accepted proof, bytes.
pub const MAX_PROOF_BYTES: usize = 8192;
/// Longest accepted `jti`, bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// The request a proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// `:method`.
    pub method: &'a str,
    /// The request URL without query, normalized ([`crate::htu::of_request`]).
    pub url: &'a str,
    /// The access token that came with the proof.
    pub access_token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
}

/// What a proof that passed says, for the checks that need state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// `jti`.
    pub jti: String,
    /// `iat`, seconds.
    pub iat: i64,
    /// `nonce`, when present.
    pub nonce: Option<String>,
}

/// The RFC 7638 thumbprint of a public JWK (base64url SHA-256 of its
/// required members, in lexicographic order, without whitespace); `None`
/// for a key type without one here.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let members: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = Map::new();
    for name in members {
        canonical.insert(
            (*name).to_string(),
            Value::String(member(name)?.to_string()),
        );
    }
    // serde_json's map is ordered by key, so this is the canonical form.
    let json = serde_json::to_vec(&canonical).ok()?;
    Some(b64url_encode(&Sha256::digest(json)))
}

/// `ath`: base64url SHA-256 of the access token's ASCII.
pub fn token_hash(access_token: &str) -> String {
    b64url_encode(&Sha256::digest(access_token.as_bytes()))
}

/// Checks the `DPoP` header values of a request against `target` at time
/// `now` (seconds): exactly one proof, a JWS typed `dpop+jwt` with an
/// allowed asymmetric `alg` and a public `jwk`, a valid signature by that
/// key, `htm`, `htu`, `iat` within the window, `ath`, and the key being the
/// one the token is bound to.
pub fn check_proof(
    policy: &DpopPolicy,
    headers: &[&str],
    target: &ProofTarget<'_>,
    now: i64,
    verifier: &dyn SignatureVerifier,
) -> Result<Proof, Reason> {
    let proof = match headers {
        [] => return Err(Reason::DpopProofMissing),
        [one] => one.trim(),
        _ => return Err(Reason::DpopProofMalformed("several DPoP headers")),
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(Reason::DpopProofMalformed("DPoP proof is too large"));
    }
    let header_map = proof
        .split('.')
        .next()
        .and_then(b64url_decode)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| match v {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .ok_or(Reason::DpopProofMalformed("DPoP proof is not a JWS"))?;
    let parsed = jws::parse(proof, MAX_PROOF_BYTES).map_err(|reason| match reason {
        Reason::AlgorithmNotAllowed | Reason::CritUnsupported => Reason::DpopProofAlgorithm,
        _ => Reason::DpopProofMalformed("DPoP proof is not a JWS"),
    })?;
    let typ = parsed.header.typ.as_deref().map(str::to_ascii_lowercase);
    if typ.as_deref() != Some("dpop+jwt") {
        return Err(Reason::DpopProofType);
    }
    let alg = parsed.header.alg;
    if !policy.algorithms.contains(&alg) {
        return Err(Reason::DpopProofAlgorithm);
    }
    let Some(Value::Object(jwk_json)) = header_map.get("jwk") else {
        return Err(Reason::DpopProofKey);
    };
    // parse_jwk refuses private members and symmetric keys.
    let key = parse_jwk(&Value::Object(jwk_json.clone()), Symmetric::Refused)
        .map_err(|_| Reason::DpopProofKey)?;
    if !key.fits(alg) {
        return Err(Reason::DpopProofKey);
    }
    if !verifies_with(&parsed, &key, verifier) {
        return Err(Reason::DpopProofSignature);
    }
    let claims = match serde_json::from_slice::<Value>(&parsed.payload) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(Reason::DpopProofMalformed(
                "DPoP proof claims are not a JSON object",
            ))
        }
    };
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(Reason::DpopProofMalformed("DPoP proof has no usable jti"))?;
    if text("htm") != Some(target.method) {
        return Err(Reason::DpopProofMethod);
    }
    let htu = text("htu").and_then(crate::htu::normalize);
    if htu.as_deref() != Some(target.url) {
        return Err(Reason::DpopProofUrl);
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
    .ok_or(Reason::DpopProofTime)?;
    if iat > now.saturating_add(policy.clock_skew_s)
        || iat < now.saturating_sub(policy.max_age_s.saturating_add(policy.clock_skew_s))
    {
        return Err(Reason::DpopProofTime);
    }
    if text("ath") != Some(token_hash(target.access_token).as_str()) {
        return Err(Reason::DpopProofTokenHash);
    }
    if thumbprint(jwk_json).as_deref() != Some(target.jkt) {
        return Err(Reason::DpopProofKeyMismatch);
    }
    Ok(Proof {
        jti: jti.to_string(),
        iat,
        nonce: text("nonce").map(str::to_string),
    })
}

#[cfg(test)]
mod tests;
