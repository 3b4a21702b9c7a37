//! A token's decoded JSON: its payload as claims (time checks, issuer,
//! audience, subject, type, scopes, the published identity, claim paths and
//! header values) and its protected header (through the JWS parser).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_jwt::claims::{
    check, header_value, identity, lookup, normalize_typ, parse_claims, scopes, ClaimsPolicy,
    SubjectRule,
};
use palisade_jwt::jws::{b64url_encode, parse};

const NOW: i64 = 1_700_000_000;

fn policies() -> Vec<ClaimsPolicy> {
    let base = ClaimsPolicy {
        issuer: "https://idp".into(),
        audiences: vec!["api".into()],
        subject: None,
        require_exp: true,
        clock_skew_s: 60,
        max_lifetime_s: Some(3600),
        typ: vec!["jwt".into(), "at+jwt".into()],
    };
    vec![
        ClaimsPolicy {
            subject: Some(SubjectRule::Regex(
                regex_lite::Regex::new("^(?:user-[0-9]+)$").unwrap(),
            )),
            clock_skew_s: i64::MAX,
            ..base.clone()
        },
        ClaimsPolicy {
            audiences: Vec::new(),
            subject: Some(SubjectRule::Prefix("ali".into())),
            require_exp: false,
            clock_skew_s: i64::MIN,
            max_lifetime_s: None,
            typ: Vec::new(),
            ..base.clone()
        },
        base,
    ]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(claims) = parse_claims(data) {
        let typ = claims.get("typ").and_then(|v| v.as_str());
        for policy in policies() {
            let _ = check(&claims, typ, &policy, NOW);
            let _ = check(&claims, typ, &policy, i64::MAX);
            let _ = check(&claims, typ, &policy, i64::MIN);
        }
        let _ = scopes(&claims);
        let id = identity("p", &claims);
        assert_eq!(id.provider, "p");
        for name in claims.keys() {
            let found = lookup(&claims, name).expect("a top-level claim is found by its name");
            let _ = header_value(found);
            let _ = lookup(&claims, &format!("{name}.{name}"));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalize_typ(text);
    }
    // The same bytes as a protected header.
    let token = format!("{}.{}.AA", b64url_encode(data), b64url_encode(b"{}"));
    let _ = parse(&token, usize::MAX);
});
