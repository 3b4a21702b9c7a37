//! The authentication facts of a verified identity, read from the JSON the
//! JWT filter publishes as filter state `palisade.identity`.
//!
//! The claims are read as OpenID Connect Core (section 2) defines them, and a
//! claim of the wrong shape is kept apart from an absent one: it fails every
//! requirement on it (closed), and the refusal says why.

use serde_json::{Map, Value};

/// A claim as found in the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<T> {
    /// Absent (or `null`).
    Missing,
    /// Present, but not of the type OIDC defines.
    Malformed,
    /// Present and well formed.
    Valid(T),
}

/// What the step-up policies look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFacts {
    /// `acr`: a string.
    pub acr: Claim<String>,
    /// `amr`: an array of strings.
    pub amr: Claim<Vec<String>>,
    /// `auth_time`: a JSON number of seconds since the epoch.
    pub auth_time: Claim<i64>,
}

/// Why an identity cannot be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

impl AuthFacts {
    /// Reads the facts from the identity's JSON; `Err` when it is not a JSON
    /// object (a broken producer, never a client's doing).
    pub fn from_identity_json(bytes: &[u8]) -> Result<AuthFacts, Unreadable> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Self::from_claims(&map)),
            _ => Err(Unreadable),
        }
    }

    /// Reads the facts from a claims object.
    pub fn from_claims(claims: &Map<String, Value>) -> AuthFacts {
        let acr = match claims.get("acr") {
            None | Some(Value::Null) => Claim::Missing,
            Some(Value::String(s)) if s.is_empty() => Claim::Missing,
            Some(Value::String(s)) => Claim::Valid(s.clone()),
            Some(_) => Claim::Malformed,
        };
        let amr = match claims.get("amr") {
            None | Some(Value::Null) => Claim::Missing,
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map_or(Claim::Malformed, Claim::Valid),
            Some(_) => Claim::Malformed,
        };
        let auth_time = match claims.get("auth_time") {
            None | Some(Value::Null) => Claim::Missing,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if i >= 0 => Claim::Valid(i),
                Some(_) => Claim::Malformed,
                None => n
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    // Whole seconds: a fraction never makes an authentication younger.
                    .map_or(Claim::Malformed, |f| Claim::Valid(f.floor() as i64)),
            },
            Some(_) => Claim::Malformed,
        };
        AuthFacts {
            acr,
            amr,
            auth_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(json: &str) -> AuthFacts {
        AuthFacts::from_identity_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn well_formed_claims() {
        let f =
            facts(r#"{"provider":"corp","acr":"mfa","amr":["pwd","otp"],"auth_time":1700000000}"#);
        assert_eq!(f.acr, Claim::Valid("mfa".into()));
        assert_eq!(f.amr, Claim::Valid(vec!["pwd".into(), "otp".into()]));
        assert_eq!(f.auth_time, Claim::Valid(1_700_000_000));
    }

    #[test]
    fn absent_and_null_claims_are_missing() {
        for json in [r#"{}"#, r#"{"acr":null,"amr":null,"auth_time":null}"#] {
            let f = facts(json);
            assert_eq!(
                (f.acr, f.amr, f.auth_time),
                (Claim::Missing, Claim::Missing, Claim::Missing),
                "{json}"
            );
        }
        assert_eq!(facts(r#"{"acr":""}"#).acr, Claim::Missing);
        assert_eq!(facts(r#"{"amr":[]}"#).amr, Claim::Valid(vec![]));
    }

    #[test]
    fn malformed_claims() {
        type Check = fn(&AuthFacts) -> bool;
        let table: &[(&str, Check)] = &[
            (r#"{"acr":2}"#, |f| f.acr == Claim::Malformed),
            (r#"{"acr":["mfa"]}"#, |f| f.acr == Claim::Malformed),
            (r#"{"acr":{"v":"mfa"}}"#, |f| f.acr == Claim::Malformed),
            (r#"{"acr":true}"#, |f| f.acr == Claim::Malformed),
            (r#"{"amr":"otp"}"#, |f| f.amr == Claim::Malformed),
            (r#"{"amr":["otp",1]}"#, |f| f.amr == Claim::Malformed),
            (r#"{"amr":{"0":"otp"}}"#, |f| f.amr == Claim::Malformed),
            (r#"{"auth_time":"1700000000"}"#, |f| {
                f.auth_time == Claim::Malformed
            }),
            (r#"{"auth_time":-1}"#, |f| f.auth_time == Claim::Malformed),
            (r#"{"auth_time":1e300}"#, |f| {
                f.auth_time == Claim::Malformed
            }),
            (r#"{"auth_time":1700000000.9}"#, |f| {
                f.auth_time == Claim::Valid(1_700_000_000)
            }),
        ];
        for (json, check) in table {
            assert!(check(&facts(json)), "{json}: {:?}", facts(json));
        }
    }

    #[test]
    fn a_state_that_is_not_an_object_is_unreadable() {
        for bad in [&b""[..], b"null", b"[]", b"\"alice\"", b"{", b"\xff"] {
            assert_eq!(AuthFacts::from_identity_json(bad), Err(Unreadable));
        }
    }
}
