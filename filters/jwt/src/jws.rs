//! JWS compact serialization: three base64url segments, parsed with bounds.
//!
//! Nothing here trusts the token: the header is read only to learn which
//! algorithm and key the token claims, and those claims are checked against
//! the configured keys in [`crate::verify`]. Key hints carried by the token
//! itself (`jku`, `x5u`, `jwk`, `x5c`) are never used; `crit` parameters are
//! refused because this verifier understands none of them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::error::Reason;

/// The JWS algorithms this filter verifies (RFC 7518 section 3, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The algorithm named `name` exactly (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The family: the same key type and signature scheme, any hash. A key
    /// whose `alg` names one member never serves another family (RS256 vs PS256).
    pub fn family(self) -> &'static str {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HS",
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => "RS",
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => "PS",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The hash size in bits (EdDSA: 512, its internal SHA-512).
    pub fn hash_bits(self) -> u16 {
        match self {
            Algorithm::HS256 | Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => 256,
            Algorithm::HS384 | Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => 384,
            _ => 512,
        }
    }

    /// Whether this is an HMAC algorithm (needs a symmetric key).
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

/// The parts of a JWS protected header this verifier looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`.
    pub alg: Algorithm,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present.
    pub typ: Option<String>,
}

/// A compact JWS split and decoded, before its signature is checked.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// The protected header.
    pub header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Decodes unpadded base64url strictly: no padding, no whitespace, no other
/// alphabet, no stray bits in the last character.
pub fn b64url_decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// Encodes unpadded base64url.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Splits and decodes a compact JWS of at most `max_bytes` bytes.
///
/// The payload may be empty at this layer (a JWS may sign nothing); a JWT
/// payload is required to be a JSON object later, by the claims check.
pub fn parse(token: &str, max_bytes: usize) -> Result<Jws<'_>, Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed("not three dot-separated segments"));
    };
    if h.is_empty() || s.is_empty() {
        return Err(Reason::Malformed("empty header or signature segment"));
    }
    let header_bytes = b64url_decode(h).ok_or(Reason::Malformed("header is not base64url"))?;
    let payload = b64url_decode(p).ok_or(Reason::Malformed("payload is not base64url"))?;
    let signature = b64url_decode(s).ok_or(Reason::Malformed("signature is not base64url"))?;
    let header = parse_header(&header_bytes)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Jws {
        header,
        signing_input,
        payload,
        signature,
    })
}

fn parse_header(bytes: &[u8]) -> Result<Header, Reason> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| Reason::Malformed("header is not JSON"))?;
    let Value::Object(map) = value else {
        return Err(Reason::Malformed("header is not a JSON object"));
    };
    let alg = match map.get("alg") {
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(Reason::AlgorithmNotAllowed)
        }
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(Reason::AlgorithmNotAllowed)?
        }
        _ => return Err(Reason::Malformed("header has no `alg` string")),
    };
    // RFC 7515 4.1.11: a recipient must reject a token whose `crit` lists an
    // extension it does not understand. We understand none.
    if map.contains_key("crit") {
        return Err(Reason::CritUnsupported);
    }
    Ok(Header {
        alg,
        kid: string_member(&map, "kid")?,
        typ: string_member(&map, "typ")?,
    })
}

fn string_member(map: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Reason> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Reason::Malformed("header member is not a string")),
    }
}

/// The unverified `iss` of a token, used only to pick which of several
/// providers should verify it. Never trusted for anything else.
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = b64url_decode(payload)?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes())
        )
    }

    #[test]
    fn splits_a_well_formed_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"x"}"#,
        );
        let jws = parse(&t, 8192).unwrap();
        assert_eq!(jws.header.alg, Algorithm::RS256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.header.typ.as_deref(), Some("JWT"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.signing_input, &t[..t.rfind('.').unwrap()]);
        assert_eq!(peek_issuer(&t).as_deref(), Some("x"));
    }

    #[test]
    fn refuses_bad_shapes() {
        let good = token(r#"{"alg":"RS256"}"#, "{}");
        let cases: Vec<(String, Reason)> = vec![
            (
                String::new(),
                Reason::Malformed("not three dot-separated segments"),
            ),
            (
                "a.b".into(),
                Reason::Malformed("not three dot-separated segments"),
            ),
            (
                format!("{good}.x"),
                Reason::Malformed("not three dot-separated segments"),
            ),
            (
                format!("{good}x").replace(".c2lnx", "."),
                Reason::Malformed("empty header or signature segment"),
            ),
            (
                good.replacen("ey", "e y", 1),
                Reason::Malformed("header is not base64url"),
            ),
            (
                format!("{}=", good),
                Reason::Malformed("signature is not base64url"),
            ),
            ("x".repeat(9000), Reason::TokenTooLarge),
            (
                token("[1]", "{}"),
                Reason::Malformed("header is not a JSON object"),
            ),
            (token("{", "{}"), Reason::Malformed("header is not JSON")),
            (
                token(r#"{"kid":"a"}"#, "{}"),
                Reason::Malformed("header has no `alg` string"),
            ),
            (
                token(r#"{"alg":"RS256","kid":7}"#, "{}"),
                Reason::Malformed("header member is not a string"),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t, 8192).unwrap_err(), want, "{t}");
        }
    }

    #[test]
    fn attacks_in_the_header() {
        for h in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
            r#"{"alg":"HS1"}"#,
            r#"{"alg":"rs256"}"#,
        ] {
            assert_eq!(
                parse(&token(h, "{}"), 8192).unwrap_err(),
                Reason::AlgorithmNotAllowed,
                "{h}"
            );
        }
        let crit = token(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(parse(&crit, 8192).unwrap_err(), Reason::CritUnsupported);
        // Key hints are parsed past and never used: the header yields only alg/kid/typ.
        let hints = token(
            r#"{"alg":"ES256","jku":"https://evil/jwks","x5u":"https://evil","jwk":{"kty":"EC"},"x5c":["AA"]}"#,
            "{}",
        );
        let h = parse(&hints, 8192).unwrap().header;
        assert_eq!(
            h,
            Header {
                alg: Algorithm::ES256,
                kid: None,
                typ: None
            }
        );
    }

    #[test]
    fn strict_base64url() {
        assert_eq!(b64url_decode("VGVzdA").unwrap(), b"Test");
        assert!(b64url_decode("VGVzdA==").is_none());
        assert!(
            b64url_decode("VGVzdB").is_none(),
            "stray bits in the last character"
        );
        assert!(b64url_decode("VGV zdA").is_none());
        assert!(
            b64url_decode("VGV+dA").is_none(),
            "standard alphabet is not base64url"
        );
    }
}
