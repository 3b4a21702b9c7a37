//! The audit redactor: a secret in a redacted query parameter (however its
//! name is spelled: case, percent-encoding, `+`), in the userinfo of the
//! authority, of an absolute-form target or of a URL header, in a fragment,
//! or in Authorization / Cookie, never appears in the record, in any schema.
//!
//! Everything around the secret is arbitrary; an input whose other parts
//! happen to contain the secret is skipped.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_audit::config::{AuditConfig, DEFAULT_REDACTED_PARAMS};
use palisade_audit::redact::{percent_decode, redact_query, redact_url, split_target};
use palisade_audit::{schema, AuditRecord, RequestFacts};

#[derive(Debug, Arbitrary)]
enum Pair {
    /// A redacted parameter with the secret as its value.
    Secret {
        name: u8,
        upper: u64,
        encode: u64,
        plus: bool,
    },
    Other {
        name: String,
        value: String,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    secret: u128,
    path: String,
    host: String,
    pairs: Vec<Pair>,
    fragment: Option<String>,
    absolute_target: bool,
    userinfo_user: String,
    other_headers: Vec<(String, String)>,
    schema: u8,
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn secret_of(mut n: u128) -> String {
    let mut s = String::from("S3");
    for _ in 0..18 {
        s.push(char::from(ALPHABET[(n % ALPHABET.len() as u128) as usize]));
        n /= ALPHABET.len() as u128;
    }
    s
}

/// A redacted name as a client may spell it.
fn spell(name: &str, upper: u64, encode: u64, plus: bool) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        let c = if upper >> (i % 64) & 1 == 1 {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        };
        if encode >> (i % 64) & 1 == 1 {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    if plus {
        out.push('+');
    }
    out
}

fuzz_target!(|input: Input| {
    let secret = secret_of(input.secret);
    let lower_secret = secret.to_ascii_lowercase();
    let hides = |text: &str| {
        let decoded = percent_decode(text).to_ascii_lowercase();
        decoded.contains(&lower_secret) || text.to_ascii_lowercase().contains(&lower_secret)
    };
    let path: String = input
        .path
        .chars()
        .filter(|c| !matches!(c, '?' | '#'))
        .collect();
    let path = format!("/{path}");
    let host: String = input
        .host
        .chars()
        .filter(|c| !matches!(c, '/' | '?' | '#' | '@' | '\\'))
        .collect();
    let host = if host.is_empty() {
        "h".to_string()
    } else {
        host
    };
    let user: String = input
        .userinfo_user
        .chars()
        .filter(|c| !matches!(c, '/' | '?' | '#' | '@' | '\\' | ':'))
        .collect();
    let mut pairs = Vec::new();
    let mut plain = vec![path.clone(), host.clone(), user.clone()];
    for pair in &input.pairs {
        match pair {
            Pair::Secret {
                name,
                upper,
                encode,
                plus,
            } => {
                let name =
                    DEFAULT_REDACTED_PARAMS[usize::from(*name) % DEFAULT_REDACTED_PARAMS.len()];
                pairs.push(format!("{}={secret}", spell(name, *upper, *encode, *plus)));
            }
            Pair::Other { name, value } => {
                plain.push(name.clone());
                plain.push(value.clone());
                pairs.push(format!("{name}={value}"));
            }
        }
    }
    for (name, value) in &input.other_headers {
        plain.push(name.clone());
        plain.push(value.clone());
    }
    if plain.iter().any(|p| hides(p)) {
        return;
    }
    let fragment = input
        .fragment
        .as_deref()
        .map(|f| format!("#{f}{secret}"))
        .unwrap_or_default();
    let query = pairs.join("&");
    let origin_form = format!("{path}?{query}{fragment}");
    let url = format!("https://{user}:{secret}@{host}{path}?{query}{fragment}");
    let target = if input.absolute_target {
        url.clone()
    } else {
        origin_form.clone()
    };

    let schema = ["palisade", "ecs", "ocsf"][usize::from(input.schema % 3)];
    let config = AuditConfig::from_json(
        format!(r#"{{"schema": "{schema}", "request_headers": ["referer", "x-original-url", "x-tenant"]}}"#)
            .as_bytes(),
    )
    .unwrap();
    let redacted = &config.redacted_params;
    let leaks = |out: &str, what: &str| {
        assert!(
            !out.contains(&secret),
            "the secret {secret} leaked through {what}: {out}"
        );
    };
    leaks(&redact_query(&query, redacted), "redact_query");
    leaks(&redact_url(&url, redacted), "redact_url");
    let (p, q) = split_target(&target, redacted);
    leaks(&p, "split_target's path");
    leaks(q.as_deref().unwrap_or(""), "split_target's query");

    let mut request_headers = vec![
        ("authorization".to_string(), format!("Bearer {secret}")),
        ("cookie".to_string(), format!("session={secret}")),
        ("referer".to_string(), url.clone()),
        ("x-original-url".to_string(), origin_form.clone()),
    ];
    request_headers.extend(
        input
            .other_headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
    );
    let facts = RequestFacts {
        start_unix_ms: 1_700_000_000_000,
        method: Some("GET".into()),
        scheme: Some("https".into()),
        authority: Some(format!("{user}:{secret}@{host}")),
        path: Some(target),
        status: Some(200),
        source_address: Some("192.0.2.1:4711".into()),
        request_headers,
        response_headers: vec![("set-cookie".into(), format!("session={secret}"))],
        ..RequestFacts::default()
    };
    let record = AuditRecord::build(&facts, &config);
    leaks(&schema::render(&record, &config), schema);
});
