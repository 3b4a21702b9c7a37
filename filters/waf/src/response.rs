//! The local reply for a refused request.

use palisade_shared::problem::Problem;
use serde::Serialize;

use crate::inspect::{Action, Verdict};

/// A problem body (RFC 9457) with the matched rule ids as an extension
/// member, when the operator exposes them.
#[derive(Debug, Serialize)]
struct WafProblem<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rule_ids: Vec<u32>,
}

/// A local reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON problem body.
    pub body: Vec<u8>,
}

/// The reply for a refused request; `None` when the verdict allows it.
pub fn refusal(
    verdict: &Verdict,
    request_id: Option<String>,
    expose_rule_ids: bool,
) -> Option<Reply> {
    let Action::Refuse { status, reason } = &verdict.action else {
        return None;
    };
    let problem = match reason.as_str() {
        "body_too_large" => Problem::new(413, "Content Too Large")
            .with_type("https://palisade.dev/problems/waf-body-too-large")
            .with_detail("the request body is larger than the firewall inspects"),
        r if r.starts_with("csrf_") => Problem::new(403, "Forbidden")
            .with_type("https://palisade.dev/problems/csrf")
            .with_detail(format!("cross-site request refused ({r})")),
        _ => Problem::new(*status, "Forbidden")
            .with_type("https://palisade.dev/problems/waf-blocked")
            .with_detail(format!(
                "the request was refused by the web application firewall (anomaly score {})",
                verdict.decision.score
            )),
    }
    .with_request_id(request_id);
    let rule_ids = if expose_rule_ids {
        verdict.decision.matches.iter().map(|m| m.rule_id).collect()
    } else {
        Vec::new()
    };
    let body = serde_json::to_vec(&WafProblem {
        problem: &problem,
        rule_ids,
    })
    .unwrap_or_else(|_| problem.to_json());
    Some(Reply {
        status: *status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::contract::{WafDecision, WafMatch};

    fn verdict(action: Action) -> Verdict {
        Verdict {
            action,
            decision: WafDecision {
                score: 10,
                matches: vec![WafMatch {
                    rule_id: 40001,
                    family: "sqli".into(),
                    location: "args:q".into(),
                }],
                action: "blocked".into(),
                body_inspected: false,
            },
            families: vec!["sqli".into()],
            csrf: None,
        }
    }

    #[test]
    fn blocked_requests_get_a_problem_body() {
        let v = verdict(Action::Refuse {
            status: 403,
            reason: "attack_detected".into(),
        });
        let r = refusal(&v, Some("req-1".into()), true).unwrap();
        assert_eq!(r.status, 403);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["status"], 403);
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["rule_ids"], serde_json::json!([40001]));
        let hidden = refusal(&v, None, false).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&hidden.body).unwrap();
        assert!(body.get("rule_ids").is_none());
        assert!(body.get("request_id").is_none());
    }

    #[test]
    fn allowed_requests_get_nothing() {
        let v = verdict(Action::Allow);
        assert!(refusal(&v, None, true).is_none());
    }

    #[test]
    fn body_limit_and_csrf_have_their_own_problems() {
        let r = refusal(
            &verdict(Action::Refuse {
                status: 413,
                reason: "body_too_large".into(),
            }),
            None,
            false,
        )
        .unwrap();
        assert_eq!(r.status, 413);
        let r = refusal(
            &verdict(Action::Refuse {
                status: 403,
                reason: "csrf_origin_mismatch".into(),
            }),
            None,
            false,
        )
        .unwrap();
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("csrf_origin_mismatch"));
    }
}
