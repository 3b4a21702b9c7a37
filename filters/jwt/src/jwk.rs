//! JSON Web Key sets (RFC 7517) turned into verification keys.
//!
//! Keys are checked when the set is loaded, not when a token arrives: a key
//! whose `use` is not `sig`, whose `key_ops` lack `verify`, whose `alg`
//! contradicts its type or curve, an RSA key under 2048 bits, with a
//! degenerate exponent or the ROCA fingerprint, an EC point off its curve,
//! an HMAC key shorter than its hash, or any private key material: all are
//! left out with a reason. A set that mixes symmetric and asymmetric keys is
//! refused whole (an attacker who can choose `alg` could otherwise use a
//! public key as an HMAC secret), and symmetric keys are accepted only where
//! the operator wrote them into the configuration.

use rsa::pkcs8::EncodePublicKey as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};

use crate::jws::{b64url_decode, Algorithm};

/// Most keys a set may hold; the rest are ignored (bounds work per token).
pub const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The public (or, for HMAC, secret) material of one key.
#[derive(Clone)]
pub enum KeyMaterial {
    /// An RSA public key, for RS* and PS*.
    Rsa(Box<RsaPublicKey>),
    /// A P-256 public key, for ES256.
    P256(p256::ecdsa::VerifyingKey),
    /// A P-384 public key, for ES384.
    P384(p384::ecdsa::VerifyingKey),
    /// A P-521 public key, for ES512.
    P521(Box<p521::ecdsa::VerifyingKey>),
    /// An Ed25519 public key, for EdDSA.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An HMAC secret, for HS*.
    Oct(Vec<u8>),
}

impl std::fmt::Debug for KeyMaterial {
    // Never print key bytes: an HMAC secret is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyMaterial::Rsa(_) => "Rsa",
            KeyMaterial::P256(_) => "P256",
            KeyMaterial::P384(_) => "P384",
            KeyMaterial::P521(_) => "P521",
            KeyMaterial::Ed25519(_) => "Ed25519",
            KeyMaterial::Oct(_) => "Oct",
        })
    }
}

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// `kid`.
    pub kid: Option<String>,
    /// `alg`, when the key names one.
    pub alg: Option<Algorithm>,
    /// The key.
    pub material: KeyMaterial,
    /// SubjectPublicKeyInfo DER of RSA and EC keys, for the host verifier.
    pub spki_der: Option<Vec<u8>>,
}

impl Jwk {
    /// Whether this key can verify tokens of `alg`: its type and curve fit,
    /// it names no other algorithm, and an HMAC secret is at least as long
    /// as the hash (RFC 7518 3.2).
    pub fn fits(&self, alg: Algorithm) -> bool {
        // The key's own `alg` pins the family and is a floor on the hash:
        // a PS256 key verifies PS384 (as the RFC 7520 examples expect), a
        // PS512 key never verifies the weaker PS256.
        if self
            .alg
            .is_some_and(|a| a.family() != alg.family() || alg.hash_bits() < a.hash_bits())
        {
            return false;
        }
        use Algorithm::*;
        match (&self.material, alg) {
            (KeyMaterial::Rsa(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
            (KeyMaterial::P256(_), ES256) => true,
            (KeyMaterial::P384(_), ES384) => true,
            (KeyMaterial::P521(_), ES512) => true,
            (KeyMaterial::Ed25519(_), EdDSA) => true,
            (KeyMaterial::Oct(k), HS256) => k.len() >= 32,
            (KeyMaterial::Oct(k), HS384) => k.len() >= 48,
            (KeyMaterial::Oct(k), HS512) => k.len() >= 64,
            _ => false,
        }
    }

    /// Whether this is a symmetric key.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, KeyMaterial::Oct(_))
    }
}

/// A loaded key set: the usable keys and why the others were left out.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// The usable keys, in document order.
    pub keys: Vec<Jwk>,
    /// One line per key left out: `keys[3]: use is "enc"`.
    pub skipped: Vec<String>,
    /// `kid`s that two or more signing entries of the document claim (usable
    /// or not): a token naming one of them is refused as ambiguous.
    pub ambiguous_kids: Vec<String>,
}

/// Whether a set may hold HMAC secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symmetric {
    /// Only from the operator's own configuration.
    Allowed,
    /// Never (keys fetched from the network).
    Refused,
}

/// Why a whole set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or not `{"keys": [...]}`.
    NotAKeySet(String),
    /// Symmetric and asymmetric keys in one set.
    MixedKeySet,
    /// No key in the set is usable; the reasons are listed.
    NoUsableKey(Vec<String>),
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::NotAKeySet(why) => write!(f, "not a JWK set: {why}"),
            JwksError::MixedKeySet => f.write_str("the set mixes symmetric and asymmetric keys"),
            JwksError::NoUsableKey(why) => write!(f, "no usable key ({})", why.join("; ")),
        }
    }
}

/// Parses a JWK set document.
pub fn parse_jwks(bytes: &[u8], symmetric: Symmetric) -> Result<KeySet, JwksError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| JwksError::NotAKeySet(e.to_string()))?;
    parse_jwks_value(&value, symmetric)
}

/// Parses an already decoded JWK set (`{"keys": [...]}`).
pub fn parse_jwks_value(value: &Value, symmetric: Symmetric) -> Result<KeySet, JwksError> {
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::NotAKeySet("no `keys` array".into()))?;
    let mut set = KeySet::default();
    let mut claimed: Vec<&str> = Vec::new();
    for key in keys {
        let signing = !matches!(key.get("use").and_then(Value::as_str), Some(u) if u != "sig");
        if let (true, Some(kid)) = (signing, key.get("kid").and_then(Value::as_str)) {
            if claimed.contains(&kid) {
                if !set.ambiguous_kids.iter().any(|k| k == kid) {
                    set.ambiguous_kids.push(kid.to_string());
                }
            } else {
                claimed.push(kid);
            }
        }
    }
    for (i, key) in keys.iter().enumerate() {
        if set.keys.len() >= MAX_KEYS {
            set.skipped
                .push(format!("keys[{i}]: more than {MAX_KEYS} keys"));
            continue;
        }
        match parse_jwk(key, symmetric) {
            Ok(k) => set.keys.push(k),
            Err(why) => set.skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    let symmetric_count = set.keys.iter().filter(|k| k.is_symmetric()).count();
    if symmetric_count > 0 && symmetric_count < set.keys.len() {
        return Err(JwksError::MixedKeySet);
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKey(set.skipped));
    }
    Ok(set)
}

fn member<'a>(map: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn bytes(map: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = member(map, name)?.ok_or_else(|| format!("`{name}` is missing"))?;
    b64url_decode(text).ok_or_else(|| format!("`{name}` is not base64url"))
}

/// Parses one JWK into a verification key, or says why it cannot be one.
pub fn parse_jwk(value: &Value, symmetric: Symmetric) -> Result<Jwk, String> {
    let map = value.as_object().ok_or("not a JSON object")?;
    let kty = member(map, "kty")?.ok_or("`kty` is missing")?;
    if let Some(usage) = member(map, "use")? {
        if usage != "sig" {
            return Err(format!("`use` is \"{usage}\", not \"sig\""));
        }
    }
    if let Some(ops) = map.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verify {
            return Err("`key_ops` does not include \"verify\"".into());
        }
    }
    let alg = match member(map, "alg")? {
        None => None,
        // "ES521" is a common misspelling of ES512 (it appears in RFC 7520-derived test data).
        Some("ES521") => Some(Algorithm::ES512),
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| format!("`alg` \"{name}\" is not a JWS signature algorithm"))?,
        ),
    };
    let kid = member(map, "kid")?.map(str::to_string);
    let material = match kty {
        "RSA" => {
            refuse_private(map, &["d", "p", "q", "dp", "dq", "qi"])?;
            KeyMaterial::Rsa(Box::new(rsa_key(&bytes(map, "n")?, &bytes(map, "e")?)?))
        }
        "EC" => {
            refuse_private(map, &["d"])?;
            ec_key(
                member(map, "crv")?.ok_or("`crv` is missing")?,
                &bytes(map, "x")?,
                &bytes(map, "y")?,
            )?
        }
        "OKP" => {
            refuse_private(map, &["d"])?;
            match member(map, "crv")? {
                Some("Ed25519") => {
                    let x: [u8; 32] = bytes(map, "x")?
                        .try_into()
                        .map_err(|_| "Ed25519 `x` is not 32 bytes")?;
                    KeyMaterial::Ed25519(
                        ed25519_dalek::VerifyingKey::from_bytes(&x)
                            .map_err(|_| "Ed25519 `x` is not a curve point")?,
                    )
                }
                other => return Err(format!("OKP curve {other:?} is not supported")),
            }
        }
        "oct" => {
            if symmetric == Symmetric::Refused {
                return Err("symmetric keys are accepted only from the configuration".into());
            }
            let k = bytes(map, "k")?;
            if k.is_empty() {
                return Err("`k` is empty".into());
            }
            KeyMaterial::Oct(k)
        }
        other => return Err(format!("`kty` \"{other}\" is not supported")),
    };
    let jwk = Jwk {
        kid,
        alg,
        spki_der: spki_der(&material),
        material,
    };
    if let Some(alg) = alg {
        if !jwk.fits(alg) {
            return Err(format!("`alg` {} does not fit the key", alg.name()));
        }
    }
    if !Algorithm::ALL.iter().any(|a| jwk.fits(*a)) {
        return Err("the key fits no algorithm (HMAC secret too short?)".into());
    }
    Ok(jwk)
}

fn refuse_private(map: &Map<String, Value>, names: &[&str]) -> Result<(), String> {
    match names.iter().find(|n| map.contains_key(**n)) {
        Some(n) => Err(format!(
            "private key member `{n}` present: a published private key is never used"
        )),
        None => Ok(()),
    }
}

fn rsa_key(n: &[u8], e: &[u8]) -> Result<RsaPublicKey, String> {
    let n = BigUint::from_bytes_be(n);
    let e = BigUint::from_bytes_be(e);
    if n.bits() < MIN_RSA_BITS {
        return Err(format!(
            "RSA modulus has {} bits, fewer than {MIN_RSA_BITS}",
            n.bits()
        ));
    }
    let three = BigUint::from(3u8);
    if e < three || (&e % 2u8) != BigUint::from(1u8) {
        return Err("RSA exponent must be odd and at least 3".into());
    }
    if roca_fingerprint(&n) {
        return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into());
    }
    RsaPublicKey::new(n, e).map_err(|e| format!("not an RSA public key: {e}"))
}

fn ec_key(crv: &str, x: &[u8], y: &[u8]) -> Result<KeyMaterial, String> {
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => 66,
        other => return Err(format!("EC curve \"{other}\" is not supported")),
    };
    if x.len() != size || y.len() != size {
        return Err(format!("{crv} coordinates must be {size} bytes"));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * size);
    sec1.push(4);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    let off_curve = || format!("the point is not on {crv}");
    Ok(match crv {
        "P-256" => KeyMaterial::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| off_curve())?,
        ),
        "P-384" => KeyMaterial::P384(
            p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| off_curve())?,
        ),
        _ => KeyMaterial::P521(Box::new(
            p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| off_curve())?,
        )),
    })
}

fn spki_der(material: &KeyMaterial) -> Option<Vec<u8>> {
    let doc = match material {
        KeyMaterial::Rsa(k) => k.to_public_key_der().ok()?,
        KeyMaterial::P256(k) => k.to_public_key_der().ok()?,
        KeyMaterial::P384(k) => k.to_public_key_der().ok()?,
        KeyMaterial::P521(k) => {
            let point = k.to_encoded_point(false);
            p521::PublicKey::from_sec1_bytes(point.as_bytes())
                .ok()?
                .to_public_key_der()
                .ok()?
        }
        KeyMaterial::Ed25519(_) | KeyMaterial::Oct(_) => return None,
    };
    Some(doc.as_bytes().to_vec())
}

/// The ROCA test (Nemec et al., CCS 2017): moduli made by the vulnerable
/// Infineon library are, modulo each of these small primes, a power of
/// 65537. A random modulus passes all of them with negligible probability.
pub fn roca_fingerprint(n: &BigUint) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    let digits = n.to_bytes_be();
    PRIMES.iter().all(|&p| {
        let r = digits
            .iter()
            .fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        // Walk the subgroup generated by 65537 mod p.
        let g = 65537 % p;
        let mut x = 1 % p;
        for _ in 0..p {
            if x == r {
                return true;
            }
            x = x * g % p;
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

    fn one(key: Value) -> Result<Jwk, String> {
        parse_jwk(&key, Symmetric::Allowed)
    }

    #[test]
    fn accepts_each_kind() {
        let rsa = one(json!({"kty":"RSA","n":RSA_N,"e":"AQAB","kid":"r","alg":"RS256"})).unwrap();
        assert!(
            rsa.fits(Algorithm::RS256) && !rsa.fits(Algorithm::PS256) && rsa.spki_der.is_some()
        );
        let ec = one(json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})).unwrap();
        assert!(
            ec.fits(Algorithm::ES256) && !ec.fits(Algorithm::ES384) && !ec.fits(Algorithm::HS256)
        );
        let ed = one(
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        )
        .unwrap();
        assert!(ed.fits(Algorithm::EdDSA) && ed.spki_der.is_none());
        let oct = one(json!({"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"})).unwrap();
        assert!(
            oct.fits(Algorithm::HS256) && oct.fits(Algorithm::HS512) && !oct.fits(Algorithm::RS256)
        );
        assert_eq!(format!("{:?}", oct.material), "Oct", "secrets never print");
    }

    #[test]
    fn refuses_bad_keys() {
        let cases = [
            (
                json!({"kty":"RSA","n":RSA_N,"e":"AQAB","use":"enc"}),
                "`use`",
            ),
            (
                json!({"kty":"RSA","n":RSA_N,"e":"AQAB","key_ops":["encrypt"]}),
                "key_ops",
            ),
            (
                json!({"kty":"RSA","n":RSA_N,"e":"AQAB","alg":"ES256"}),
                "does not fit",
            ),
            (
                json!({"kty":"RSA","n":RSA_N,"e":"AQAB","alg":"RSA-OAEP"}),
                "not a JWS",
            ),
            (json!({"kty":"RSA","n":RSA_N,"e":"AQ"}), "exponent"),
            (json!({"kty":"RSA","n":RSA_N,"e":"AQAA"}), "exponent"),
            (
                json!({"kty":"RSA","n":"AQAB","e":"AQAB"}),
                "fewer than 2048",
            ),
            (
                json!({"kty":"RSA","n":RSA_N,"e":"AQAB","d":"AQAB"}),
                "private",
            ),
            (
                json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5b0"}),
                "not on",
            ),
            (
                json!({"kty":"EC","crv":"P-384","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
                "48 bytes",
            ),
            (
                json!({"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}),
                "not supported",
            ),
            (
                json!({"kty":"OKP","crv":"X25519","x":"AA"}),
                "not supported",
            ),
            (json!({"kty":"oct","k":""}), "empty"),
            (
                json!({"kty":"oct","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg","alg":"HS256"}),
                "does not fit",
            ),
            (json!({"kty":"oct","k":"AAEC"}), "fits no algorithm"),
            (
                json!({"kty":"oct","k":"-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE","alg":"A256GCM"}),
                "not a JWS",
            ),
            (json!({"kty":"XYZ"}), "not supported"),
            (json!({"n":RSA_N}), "kty"),
            (json!("RSA"), "object"),
        ];
        for (key, want) in cases {
            let err = one(key.clone()).unwrap_err();
            assert!(err.contains(want), "{key}: {err}");
        }
        let remote = parse_jwk(
            &json!({"kty":"oct","k":"-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE"}),
            Symmetric::Refused,
        );
        assert!(remote.unwrap_err().contains("only from the configuration"));
    }

    #[test]
    fn sets() {
        let mixed = json!({"keys":[
            {"kty":"oct","k":"-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        assert_eq!(
            parse_jwks_value(&mixed, Symmetric::Allowed).unwrap_err(),
            JwksError::MixedKeySet
        );
        let partly = json!({"keys":[
            {"kty":"RSA","n":RSA_N,"e":"AQAB","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
        let set = parse_jwks_value(&partly, Symmetric::Refused).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 1);
        assert!(matches!(
            parse_jwks(b"{\"keys\":[]}", Symmetric::Refused),
            Err(JwksError::NoUsableKey(_))
        ));
        assert!(matches!(
            parse_jwks(b"[]", Symmetric::Refused),
            Err(JwksError::NotAKeySet(_))
        ));
        assert!(matches!(
            parse_jwks(b"{", Symmetric::Refused),
            Err(JwksError::NotAKeySet(_))
        ));
    }

    #[test]
    fn roca_fingerprint_spares_ordinary_moduli() {
        let n = BigUint::from_bytes_be(&b64url_decode(RSA_N).unwrap());
        assert!(!roca_fingerprint(&n));
    }
}
