//! What a decision looks like to the client and to the other filters:
//! the RateLimit header fields, the refusal, the published filter state.
//!
//! Header fields follow draft-ietf-httpapi-ratelimit-headers-10. Each
//! enforced rule that matched is one list member, named by the rule:
//!
//! ```text
//! RateLimit-Policy: "per_client";q=100;w=60
//! RateLimit: "per_client";r=0;t=5
//! ```
//!
//! `q` is the bucket's capacity and `w` the seconds an empty bucket takes to
//! fill, so `q` per `w` is both the burst and the sustained rate. `r` is the
//! whole tokens left and `t` the seconds until the bucket is full again, or,
//! for the rule that refused, until it holds the request's cost (then equal to
//! `Retry-After`, which is the longest `t` of the refusing rules). Shadow
//! rules are never advertised: they must not change what clients see.

use palisade_shared::contract::{Denial, RateLimitDecision};
use palisade_shared::problem::{Problem, CONTENT_TYPE};

use crate::config::{Config, HeaderMode};
use crate::limiter::{Decision, RefusalReason, RuleOutcome, RuleReport};

/// `RateLimit-Policy`, as Envoy spells header names.
pub const POLICY_HEADER: &str = "ratelimit-policy";
/// `RateLimit`.
pub const LIMIT_HEADER: &str = "ratelimit";
/// `Retry-After`.
pub const RETRY_AFTER_HEADER: &str = "retry-after";
/// The problem type of draft-ietf-httpapi-ratelimit-headers-10, section 5.1.
pub const QUOTA_EXCEEDED_TYPE: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// A local reply (the engine's reply type).
pub use palisade_shared::engine::Reply;

fn advertised(decision: &Decision) -> impl Iterator<Item = &RuleReport> {
    decision
        .reports
        .iter()
        .filter(|r| !r.shadow && r.metered && r.policy.quota > 0)
}

/// The `RateLimit-Policy` and `RateLimit` field values for the enforced
/// rules that matched, `None` when there are none.
pub fn rate_limit_fields(config: &Config, decision: &Decision) -> Option<(String, String)> {
    let mut policy = String::new();
    let mut limit = String::new();
    for report in advertised(decision) {
        let Some(rule) = config.rules.get(report.rule) else {
            continue;
        };
        if !policy.is_empty() {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        // Rule names are restricted to [A-Za-z0-9_-]: valid inside an
        // sf-string without escaping.
        policy.push_str(&format!("\"{}\";q={}", rule.name, report.policy.quota));
        if let Some(window) = report.policy.window {
            policy.push_str(&format!(";w={window}"));
        }
        limit.push_str(&format!(
            "\"{}\";r={};t={}",
            rule.name, report.remaining, report.reset
        ));
    }
    (!policy.is_empty()).then_some((policy, limit))
}

/// Headers to add to an allowed request's response (`rate_limit_headers: always`).
pub fn allowed_headers(config: &Config, decision: &Decision) -> Vec<(String, String)> {
    if decision.refusal.is_some() || config.rate_limit_headers != HeaderMode::Always {
        return Vec::new();
    }
    match rate_limit_fields(config, decision) {
        Some((policy, limit)) => vec![
            (POLICY_HEADER.to_string(), policy),
            (LIMIT_HEADER.to_string(), limit),
        ],
        None => Vec::new(),
    }
}

fn status_title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        420 => "Enhance Your Calm",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        s if s < 500 => "Request Refused",
        _ => "Service Unavailable",
    }
}

/// The local reply for a refused request, `None` when the request goes through.
pub fn refusal_reply(
    config: &Config,
    decision: &Decision,
    request_id: Option<String>,
) -> Option<Reply> {
    let refusal = decision.refusal.as_ref()?;
    let mut headers = vec![(
        RETRY_AFTER_HEADER.to_string(),
        refusal.retry_after.to_string(),
    )];
    if config.rate_limit_headers != HeaderMode::Never {
        if let Some((policy, limit)) = rate_limit_fields(config, decision) {
            headers.push((POLICY_HEADER.to_string(), policy));
            headers.push((LIMIT_HEADER.to_string(), limit));
        }
    }
    let mut body = Vec::new();
    if config.problem_body {
        let violated: Vec<&str> = decision
            .refusing()
            .filter(|r| r.outcome == RuleOutcome::Limited)
            .filter_map(|r| config.rules.get(r.rule).map(|rule| rule.name.as_str()))
            .collect();
        let wait = refusal.retry_after;
        let problem = match refusal.reason {
            RefusalReason::RateLimited => Problem::new(config.status, "Quota Exceeded")
                .with_type(QUOTA_EXCEEDED_TYPE)
                .with_detail(format!(
                    "Rate limit {} exceeded; retry in {wait} s.",
                    violated
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            RefusalReason::TableFull => Problem::new(config.status, status_title(config.status))
                .with_detail(format!(
                    "Too many clients are rate limited at once; retry in {wait} s."
                )),
            RefusalReason::StoreFailure => Problem::new(config.status, status_title(config.status))
                .with_detail("The rate limiter could not read or update its buckets; retry later."),
            RefusalReason::ServiceFailure => {
                Problem::new(config.status, status_title(config.status))
                    .with_detail("The rate-limit service did not answer in time; retry later.")
            }
        }
        .with_request_id(request_id);
        body = problem.to_json();
        if refusal.reason == RefusalReason::RateLimited && body.last() == Some(&b'}') {
            // The draft's extension member, after the standard ones: which
            // policies were exceeded.
            if let Ok(names) = serde_json::to_vec(&violated) {
                body.pop();
                body.extend_from_slice(b",\"violated-policies\":");
                body.extend_from_slice(&names);
                body.push(b'}');
            }
        }
        headers.push(("content-type".to_string(), CONTENT_TYPE.to_string()));
    }
    Some(Reply {
        status: config.status,
        headers,
        body,
    })
}

/// The report `palisade.ratelimit` describes: the most restrictive matching
/// rule (the first refusing one; else the first shadow rule that would have
/// refused; else the one with the fewest tokens left).
fn chosen(decision: &Decision) -> Option<&RuleReport> {
    decision
        .refusing()
        .next()
        .or_else(|| decision.reports.iter().find(|r| r.would_refuse()))
        .or_else(|| {
            decision
                .reports
                .iter()
                .filter(|r| r.metered)
                .min_by_key(|r| r.remaining)
        })
        .or_else(|| decision.reports.first())
}

/// The `palisade.ratelimit` filter state: the most restrictive matching rule.
/// `None` when no rule matched.
pub fn published(config: &Config, decision: &Decision) -> Option<RateLimitDecision> {
    let chosen = chosen(decision)?;
    let rule = config.rules.get(chosen.rule)?;
    Some(RateLimitDecision {
        rule: rule.name.clone(),
        limited: chosen.refuses() || chosen.would_refuse(),
        shadow: chosen.shadow,
        remaining: chosen.remaining,
        reset: chosen.reset,
    })
}

/// `palisade.ratelimit` as JSON, as `serde_json` writes it (a test keeps
/// them equal), written directly: in a wasm VM the generic formatter or
/// serializer costs about as much as the bucket update. Rule names are
/// restricted to `[A-Za-z0-9_-]`, so they need no escaping.
pub fn decision_json(d: &RateLimitDecision) -> Vec<u8> {
    let mut out = Vec::new();
    decision_json_into(d, &mut out);
    out
}

/// [`decision_json`] into `out` (cleared first, so one buffer serves every
/// request).
pub fn decision_json_into(d: &RateLimitDecision, out: &mut Vec<u8>) {
    out.clear();
    write_json(out, &d.rule, d.limited, d.shadow, d.remaining, d.reset);
}

fn write_json(
    out: &mut Vec<u8>,
    rule: &str,
    limited: bool,
    shadow: bool,
    remaining: u64,
    reset: u64,
) {
    let bool_str = |b: bool| if b { &b"true"[..] } else { &b"false"[..] };
    out.reserve(rule.len() + 96);
    out.extend_from_slice(br#"{"rule":""#);
    out.extend_from_slice(rule.as_bytes());
    out.extend_from_slice(br#"","limited":"#);
    out.extend_from_slice(bool_str(limited));
    out.extend_from_slice(br#","shadow":"#);
    out.extend_from_slice(bool_str(shadow));
    out.extend_from_slice(br#","remaining":"#);
    push_decimal(out, remaining);
    out.extend_from_slice(br#","reset":"#);
    push_decimal(out, reset);
    out.push(b'}');
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            // n % 10 < 10: the cast cannot truncate.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// The `palisade.denial` filter state for a refused request.
pub fn denial(config: &Config, decision: &Decision) -> Option<Denial> {
    let refusal = decision.refusal.as_ref()?;
    Some(Denial {
        filter: "ratelimit".into(),
        status: config.status,
        reason: refusal.reason.as_str().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{Policy, Refusal, RuleReport};

    fn config(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    const TWO_RULES: &str = r#"{"rules":[
        {"name":"burst","token_bucket":{"max_tokens":100,"tokens_per_fill":100,"fill_interval":"60s"}},
        {"name":"daily","token_bucket":{"max_tokens":1000,"tokens_per_fill":1000,"fill_interval":"1d"}},
        {"name":"trial","shadow":true,"token_bucket":{"max_tokens":5,"fill_interval":"1s"}}]}"#;

    fn report(rule: usize, outcome: RuleOutcome, remaining: u64, reset: u64) -> RuleReport {
        // The buckets of TWO_RULES.
        let (quota, window) = [(100, 60), (1000, 86_400), (5, 5)][rule];
        RuleReport {
            rule,
            outcome,
            shadow: rule == 2,
            metered: true,
            policy: Policy {
                quota,
                window: Some(window),
            },
            remaining,
            reset,
            claimed: false,
            evicted: false,
        }
    }

    fn limited() -> Decision {
        Decision {
            refusal: Some(Refusal {
                reason: RefusalReason::RateLimited,
                retry_after: 5,
            }),
            reports: vec![
                report(0, RuleOutcome::Limited, 0, 5),
                report(1, RuleOutcome::NotSpent, 990, 864),
                report(2, RuleOutcome::NotSpent, 3, 2),
            ],
            ..Decision::default()
        }
    }

    #[test]
    fn fields_are_byte_exact_structured_lists() {
        let c = config(TWO_RULES);
        let (policy, limit) = rate_limit_fields(&c, &limited()).unwrap();
        assert_eq!(policy, r#""burst";q=100;w=60, "daily";q=1000;w=86400"#);
        assert_eq!(limit, r#""burst";r=0;t=5, "daily";r=990;t=864"#);
    }

    #[test]
    fn refusal_reply_has_retry_after_fields_and_problem() {
        let c = config(TWO_RULES);
        let reply = refusal_reply(&c, &limited(), Some("req-1".into())).unwrap();
        assert_eq!(reply.status, 429);
        let h = |n: &str| {
            reply
                .headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("retry-after"), Some("5"));
        assert_eq!(
            h("ratelimit-policy"),
            Some(r#""burst";q=100;w=60, "daily";q=1000;w=86400"#)
        );
        assert_eq!(
            h("ratelimit"),
            Some(r#""burst";r=0;t=5, "daily";r=990;t=864"#)
        );
        assert_eq!(h("content-type"), Some("application/problem+json"));
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["type"], QUOTA_EXCEEDED_TYPE);
        assert_eq!(body["title"], "Quota Exceeded");
        assert_eq!(body["status"], 429);
        assert_eq!(body["detail"], "Rate limit `burst` exceeded; retry in 5 s.");
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["violated-policies"], serde_json::json!(["burst"]));
    }

    #[test]
    fn problem_body_and_headers_can_be_turned_off() {
        let c = config(
            r#"{"problem_body":false,"rate_limit_headers":"never","status":503,"rules":[
            {"name":"burst","token_bucket":{"max_tokens":100,"tokens_per_fill":100,"fill_interval":"60s"}}]}"#,
        );
        let mut d = limited();
        d.reports.truncate(1);
        let reply = refusal_reply(&c, &d, None).unwrap();
        assert_eq!(reply.status, 503);
        assert!(reply.body.is_empty());
        assert_eq!(
            reply.headers,
            vec![("retry-after".to_string(), "5".to_string())]
        );
    }

    #[test]
    fn other_refusals_say_what_happened() {
        let c = config(TWO_RULES);
        let mut d = limited();
        d.refusal = Some(Refusal {
            reason: RefusalReason::TableFull,
            retry_after: 2,
        });
        d.reports[0].outcome = RuleOutcome::TableFull;
        let body: serde_json::Value =
            serde_json::from_slice(&refusal_reply(&c, &d, None).unwrap().body).unwrap();
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Too Many Requests");
        assert!(body.get("violated-policies").is_none());
        assert!(body["detail"].as_str().unwrap().contains("retry in 2 s"));
        assert_eq!(denial(&c, &d).unwrap().reason, "table_full");
    }

    #[test]
    fn allowed_responses_carry_fields_only_when_configured() {
        let allowed = Decision {
            reports: vec![report(0, RuleOutcome::Spent, 99, 1)],
            ..Decision::default()
        };
        let limited_only = config(TWO_RULES);
        assert!(allowed_headers(&limited_only, &allowed).is_empty());
        let always = config(&TWO_RULES.replacen('{', r#"{"rate_limit_headers":"always","#, 1));
        assert_eq!(
            allowed_headers(&always, &allowed),
            vec![
                (
                    "ratelimit-policy".to_string(),
                    r#""burst";q=100;w=60"#.to_string()
                ),
                ("ratelimit".to_string(), r#""burst";r=99;t=1"#.to_string()),
            ]
        );
        // Shadow-only decisions advertise nothing.
        let shadow_only = Decision {
            reports: vec![report(2, RuleOutcome::Spent, 4, 1)],
            ..Decision::default()
        };
        assert!(allowed_headers(&always, &shadow_only).is_empty());
    }

    #[test]
    fn decision_json_is_the_serde_form() {
        for (rule, limited, shadow, remaining, reset) in [
            ("per_client", true, false, 0, 20),
            ("a-b_C9", false, true, u64::MAX, u64::MAX),
            ("x", false, false, 12345, 0),
            ("y", true, true, 10, 9),
            ("z", false, false, 1, 100_000_000),
        ] {
            let d = RateLimitDecision {
                rule: rule.into(),
                limited,
                shadow,
                remaining,
                reset,
            };
            assert_eq!(
                String::from_utf8(decision_json(&d)).unwrap(),
                serde_json::to_string(&d).unwrap()
            );
        }
    }

    #[test]
    fn published_state_is_the_most_restrictive_rule() {
        let c = config(TWO_RULES);
        assert_eq!(
            published(&c, &limited()).unwrap(),
            RateLimitDecision {
                rule: "burst".into(),
                limited: true,
                shadow: false,
                remaining: 0,
                reset: 5,
            }
        );
        let shadow_limited = Decision {
            reports: vec![
                report(0, RuleOutcome::Spent, 50, 30),
                report(2, RuleOutcome::Limited, 0, 1),
            ],
            ..Decision::default()
        };
        let p = published(&c, &shadow_limited).unwrap();
        assert_eq!(
            (p.rule.as_str(), p.limited, p.shadow),
            ("trial", true, true)
        );
        let fewest = Decision {
            reports: vec![
                report(0, RuleOutcome::Spent, 50, 30),
                report(1, RuleOutcome::Spent, 7, 80000),
            ],
            ..Decision::default()
        };
        let p = published(&c, &fewest).unwrap();
        assert_eq!(
            (p.rule.as_str(), p.limited, p.remaining),
            ("daily", false, 7)
        );
        assert!(published(&c, &Decision::default()).is_none());
        assert!(denial(&c, &fewest).is_none());
        assert_eq!(
            denial(&c, &limited()).unwrap(),
            Denial {
                filter: "ratelimit".into(),
                status: 429,
                reason: "rate_limited".into()
            }
        );
    }
}
