//! ES256 tokens minted by the tests themselves, for the filters that sit
//! behind `palisade-jwt` (MFA, rate limit): a fixed test-only P-256 key per
//! issuer, its JWKS, and compact JWS tokens with the claims a test asks for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

/// Base64url without padding, as JOSE writes it.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An issuer with one ES256 key. The key is a fixed scalar derived from
/// `seed`: these tests need distinct keys, not secret ones.
pub struct TestIssuer {
    /// The `iss` claim of its tokens.
    pub issuer: String,
    /// The `kid` of its key.
    pub kid: String,
    key: SigningKey,
}

impl TestIssuer {
    /// An issuer named `issuer` whose key has id `kid`.
    pub fn new(issuer: &str, kid: &str, seed: u8) -> Self {
        let key = SigningKey::from_slice(&[seed; 32]).unwrap();
        TestIssuer {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            key,
        }
    }

    /// The JWKS holding its public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk()]})
    }

    /// Its public key as one JWK, for a JWKS that mixes keys of several kinds.
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
               "x": b64url(point.x().unwrap()), "y": b64url(point.y().unwrap())})
    }

    /// A token for audience `api` with `iss`, `iat` and `exp` (10 minutes)
    /// set, plus `claims` (which may override them).
    pub fn token(&self, claims: Value) -> String {
        let mut all = json!({"iss": self.issuer, "aud": "api", "iat": now(), "exp": now() + 600});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        self.sign(&self.kid, &all)
    }

    /// A compact JWS of exactly `claims` (nothing added), signed with its
    /// key, whose header names key id `kid`: another kid than its own makes
    /// a token whose key the verifier does not know.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature.to_bytes()))
    }
}

/// A client's DPoP key (RFC 9449): ES256, a fixed scalar from `seed`.
pub struct DpopKey {
    key: SigningKey,
}

impl DpopKey {
    /// The key with scalar `[seed; 32]`.
    pub fn new(seed: u8) -> Self {
        DpopKey {
            key: SigningKey::from_slice(&[seed; 32]).unwrap(),
        }
    }

    /// Its public JWK.
    pub fn jwk(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256",
               "x": b64url(point.x().unwrap()), "y": b64url(point.y().unwrap())})
    }

    /// Its RFC 7638 thumbprint (what `cnf.jkt` of its tokens holds).
    pub fn thumbprint(&self) -> String {
        use sha2::Digest;
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        b64url(&sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for `method url`, bound to `access_token` when given, with
    /// a fresh `jti`.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        let mut claims = json!({"jti": fresh_jti(), "htm": method, "htu": url, "iat": now()});
        if let Some(token) = access_token {
            use sha2::Digest;
            claims["ath"] = json!(b64url(&sha2::Sha256::digest(token.as_bytes())));
        }
        self.sign_proof(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()}),
            &claims,
        )
    }

    /// A compact JWS of exactly `header` and `claims`, signed with this key
    /// (whatever key the header names: a forgery when it names another).
    pub fn sign_proof(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&signature.to_bytes()))
    }
}

/// A `jti` no other token of this process has.
pub fn fresh_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Decodes unpadded base64url (test inputs: panics on bad input).
pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}
