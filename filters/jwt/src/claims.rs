//! The JWT claims checks (RFC 7519 section 4.1, RFC 9068) and the identity
//! they yield.
//!
//! Time comes in as an argument (`now`, seconds since the epoch). A token is
//! expired from `exp + skew` on, not yet valid before `nbf - skew`, and
//! refused when issued (`iat`) after `now + skew`. Numeric dates may be
//! fractional (RFC 7519 NumericDate); anything else in a time claim is refused.

use palisade_shared::contract::Identity;
use serde_json::{Map, Value};

use crate::error::Reason;

/// How to match `sub`.
#[derive(Debug, Clone)]
pub enum SubjectRule {
    /// Exactly this subject.
    Exact(String),
    /// Any subject starting with this.
    Prefix(String),
    /// Any subject the whole of which matches (anchored).
    Regex(regex_lite::Regex),
}

impl SubjectRule {
    fn matches(&self, sub: &str) -> bool {
        match self {
            SubjectRule::Exact(s) => sub == s,
            SubjectRule::Prefix(p) => sub.starts_with(p.as_str()),
            SubjectRule::Regex(r) => r.is_match(sub),
        }
    }
}

/// What one provider requires of a token's claims.
#[derive(Debug, Clone)]
pub struct ClaimsPolicy {
    /// `iss`, exactly.
    pub issuer: String,
    /// `aud` must include one of these; empty: not checked.
    pub audiences: Vec<String>,
    /// `sub` must match this, when set.
    pub subject: Option<SubjectRule>,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// Tolerated clock difference, seconds.
    pub clock_skew_s: i64,
    /// Longest accepted `exp - iat` (or `exp - now` without `iat`), seconds.
    pub max_lifetime_s: Option<i64>,
    /// Accepted `typ` header values, normalized (lower case, without
    /// `application/`); empty: any. A token without `typ` is accepted.
    pub typ: Vec<String>,
}

/// Lower-cases a media type and removes an `application/` prefix (RFC 7515 4.1.9).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15) {
                Ok(Some(f.floor() as i64))
            } else {
                Err(Reason::BadTimeClaim)
            }
        }
        Some(_) => Err(Reason::BadTimeClaim),
    }
}

/// Decodes a payload into a claims object.
pub fn parse_claims(payload: &[u8]) -> Result<Map<String, Value>, Reason> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Reason::Malformed("payload is not a JSON object")),
        Err(_) => Err(Reason::Malformed("payload is not JSON")),
    }
}

/// Checks the claims against the policy at time `now`; the times are
/// checked first, so an old token says "expired" whatever else is wrong.
pub fn check(
    claims: &Map<String, Value>,
    typ: Option<&str>,
    policy: &ClaimsPolicy,
    now: i64,
) -> Result<(), Reason> {
    let skew = policy.clock_skew_s;
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    match exp {
        None if policy.require_exp => return Err(Reason::ExpMissing),
        Some(exp) if now >= exp.saturating_add(skew) => return Err(Reason::Expired),
        _ => {}
    }
    if nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(Reason::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(Reason::IssuedInFuture);
    }
    if let Some(max) = policy.max_lifetime_s {
        let Some(exp) = exp else {
            return Err(Reason::ExpMissing);
        };
        let start = iat.unwrap_or(now);
        if exp.saturating_sub(start) > max {
            return Err(Reason::LifetimeTooLong);
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(Reason::IssuerMismatch);
    }
    if !policy.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => policy.audiences.iter().any(|want| want == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| policy.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !ok {
            return Err(Reason::AudienceMismatch);
        }
    }
    if let Some(rule) = &policy.subject {
        if !claims
            .get("sub")
            .and_then(Value::as_str)
            .is_some_and(|s| rule.matches(s))
        {
            return Err(Reason::SubjectMismatch);
        }
    }
    if let Some(typ) = typ {
        if !policy.typ.is_empty() && !policy.typ.contains(&normalize_typ(typ)) {
            return Err(Reason::TypeNotAccepted);
        }
    }
    Ok(())
}

/// The token's scopes: `scope` (space separated, RFC 8693/9068) or `scp`
/// (an array, or a space-separated string).
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let split = |s: &str| {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => split(s),
        (_, Some(Value::Array(list))) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        (_, Some(Value::String(s))) => split(s),
        _ => Vec::new(),
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The identity the filter publishes for a verified token.
pub fn identity(provider: &str, claims: &Map<String, Value>) -> Identity {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let int = |name: &str| numeric_date(claims, name).ok().flatten();
    Identity {
        provider: provider.to_string(),
        iss: text("iss").unwrap_or_default(),
        sub: text("sub"),
        aud: string_list(claims.get("aud")),
        client_id: text("client_id").or_else(|| text("azp")),
        scope: scopes(claims),
        acr: text("acr"),
        amr: string_list(claims.get("amr")),
        auth_time: int("auth_time"),
        exp: int("exp"),
        jti: text("jti"),
    }
}

/// The value at a dotted claim path (`realm_access.roles`); a claim whose
/// own name contains dots is found too, by trying the longest name first.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut split_at = path.len();
    while let Some(dot) = path[..split_at].rfind('.') {
        if let Some(Value::Object(inner)) = claims.get(&path[..dot]) {
            if let Some(v) = lookup(inner, &path[dot + 1..]) {
                return Some(v);
            }
        }
        split_at = dot;
    }
    None
}

/// A claim as a header value: strings as they are, arrays of scalars joined
/// with `,`, other values as compact JSON.
pub fn header_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            issuer: "https://idp".into(),
            audiences: vec!["api".into(), "other".into()],
            subject: None,
            require_exp: true,
            clock_skew_s: 60,
            max_lifetime_s: None,
            typ: vec!["jwt".into(), "at+jwt".into()],
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn time_edges() {
        let base = json!({"iss":"https://idp","aud":"api"});
        let with = |extra: Value| {
            let mut c = claims(base.clone());
            c.extend(claims(extra));
            c
        };
        let p = policy();
        let cases: Vec<(Value, Result<(), Reason>)> = vec![
            (json!({"exp": NOW + 1}), Ok(())),
            (json!({"exp": NOW - 59}), Ok(())),
            (json!({"exp": NOW - 60}), Err(Reason::Expired)),
            (json!({"exp": (NOW - 59) as f64 + 0.5}), Ok(())),
            (json!({}), Err(Reason::ExpMissing)),
            (json!({"exp": "tomorrow"}), Err(Reason::BadTimeClaim)),
            (json!({"exp": 1e300}), Err(Reason::BadTimeClaim)),
            (json!({"exp": NOW + 100, "nbf": NOW + 60}), Ok(())),
            (
                json!({"exp": NOW + 100, "nbf": NOW + 61}),
                Err(Reason::NotYetValid),
            ),
            (json!({"exp": NOW + 100, "iat": NOW + 60}), Ok(())),
            (
                json!({"exp": NOW + 100, "iat": NOW + 61}),
                Err(Reason::IssuedInFuture),
            ),
            (
                json!({"exp": NOW + 100, "iat": null}),
                Err(Reason::BadTimeClaim),
            ),
            (json!({"exp": i64::MAX}), Ok(())),
        ];
        for (extra, want) in cases {
            assert_eq!(check(&with(extra.clone()), None, &p, NOW), want, "{extra}");
        }
        let mut no_exp = policy();
        no_exp.require_exp = false;
        assert_eq!(check(&with(json!({})), None, &no_exp, NOW), Ok(()));
        let mut short = policy();
        short.max_lifetime_s = Some(3600);
        assert_eq!(
            check(
                &with(json!({"exp": NOW + 3600, "iat": NOW})),
                None,
                &short,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &with(json!({"exp": NOW + 3601, "iat": NOW})),
                None,
                &short,
                NOW
            ),
            Err(Reason::LifetimeTooLong)
        );
        assert_eq!(
            check(&with(json!({"exp": NOW + 7200})), None, &short, NOW),
            Err(Reason::LifetimeTooLong)
        );
    }

    #[test]
    fn issuer_audience_subject_typ() {
        let p = policy();
        let ok = json!({"iss":"https://idp","aud":["x","other"],"exp":NOW+10,"sub":"user:1"});
        assert_eq!(check(&claims(ok.clone()), Some("at+jwt"), &p, NOW), Ok(()));
        assert_eq!(
            check(&claims(ok.clone()), Some("application/AT+JWT"), &p, NOW),
            Ok(())
        );
        assert_eq!(
            check(&claims(ok.clone()), Some("dpop+jwt"), &p, NOW),
            Err(Reason::TypeNotAccepted)
        );
        let mut c = claims(ok.clone());
        c.insert("iss".into(), json!("https://idp/"));
        assert_eq!(check(&c, None, &p, NOW), Err(Reason::IssuerMismatch));
        c.remove("iss");
        assert_eq!(check(&c, None, &p, NOW), Err(Reason::IssuerMismatch));
        let mut c = claims(ok.clone());
        c.insert("aud".into(), json!(["x", "y"]));
        assert_eq!(check(&c, None, &p, NOW), Err(Reason::AudienceMismatch));
        c.remove("aud");
        assert_eq!(check(&c, None, &p, NOW), Err(Reason::AudienceMismatch));
        let mut any_aud = policy();
        any_aud.audiences.clear();
        assert_eq!(check(&c, None, &any_aud, NOW), Ok(()));
        let mut subj = policy();
        subj.subject = Some(SubjectRule::Prefix("user:".into()));
        assert_eq!(check(&claims(ok.clone()), None, &subj, NOW), Ok(()));
        subj.subject = Some(SubjectRule::Regex(
            regex_lite::Regex::new("^service:.*$").unwrap(),
        ));
        assert_eq!(
            check(&claims(ok.clone()), None, &subj, NOW),
            Err(Reason::SubjectMismatch)
        );
        subj.subject = Some(SubjectRule::Exact("user:1".into()));
        assert_eq!(check(&claims(ok), None, &subj, NOW), Ok(()));
    }

    #[test]
    fn payloads_that_are_not_claims() {
        assert_eq!(
            parse_claims(b"foo").unwrap_err(),
            Reason::Malformed("payload is not JSON")
        );
        assert_eq!(
            parse_claims(b"[1]").unwrap_err(),
            Reason::Malformed("payload is not a JSON object")
        );
        assert_eq!(
            parse_claims(b"").unwrap_err(),
            Reason::Malformed("payload is not JSON")
        );
        assert!(parse_claims(b"{}").unwrap().is_empty());
    }

    #[test]
    fn identity_and_scopes() {
        let c = claims(
            json!({"iss":"i","sub":"s","aud":"a","azp":"cli","scope":"read  write",
            "acr":"2","amr":["pwd","otp"],"auth_time":5,"exp":9,"jti":"j"}),
        );
        let id = identity("corp", &c);
        assert_eq!(id.provider, "corp");
        assert_eq!(id.aud, vec!["a"]);
        assert_eq!(id.client_id.as_deref(), Some("cli"));
        assert_eq!(id.scope, vec!["read", "write"]);
        assert_eq!(id.amr, vec!["pwd", "otp"]);
        assert_eq!((id.auth_time, id.exp), (Some(5), Some(9)));
        assert_eq!(scopes(&claims(json!({"scp":["a","b"]}))), vec!["a", "b"]);
        assert_eq!(scopes(&claims(json!({"scp":"a b"}))), vec!["a", "b"]);
        assert!(scopes(&claims(json!({"scope":7}))).is_empty());
    }

    #[test]
    fn claim_paths_and_header_values() {
        let c = claims(
            json!({"realm_access":{"roles":["admin","dev"]},"a.b":"dotted","n":3,"o":{"k":[{"x":1}]}}),
        );
        assert_eq!(
            header_value(lookup(&c, "realm_access.roles").unwrap()),
            "admin,dev"
        );
        assert_eq!(header_value(lookup(&c, "a.b").unwrap()), "dotted");
        assert_eq!(header_value(lookup(&c, "n").unwrap()), "3");
        assert_eq!(header_value(lookup(&c, "o").unwrap()), r#"{"k":[{"x":1}]}"#);
        assert!(lookup(&c, "realm_access.missing").is_none());
        assert!(lookup(&c, "n.x").is_none());
    }
}
