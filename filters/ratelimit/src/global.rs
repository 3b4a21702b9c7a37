//! Global rules: what a request asks the rate-limit service, and the
//! service's answer turned into the same reports as a local bucket's.
//!
//! Each global rule that applies to a request is one `ShouldRateLimit` call
//! with one descriptor (the rule's name, then its key's values, see
//! [`crate::key::service_entries`]) and `hits_addend` the rule's cost, so
//! that each rule has its own timeout and failure mode. The service decides
//! each call on its own: a request one global rule refuses has been counted
//! by the others (as with Envoy's own ratelimit filter). Local rules and the
//! local tiers of global rules are decided first; a request they refuse is
//! never sent to the service, and a request the service refuses has spent
//! from the local buckets it passed (they count what reached the service).
//!
//! A status becomes a report as a bucket would: `OK` spends, `OVER_LIMIT`
//! limits, and the status's limit, remaining hits and time to reset are the
//! `RateLimit-Policy` (`q`, `w`) and `RateLimit` (`r`, `t`) values. A call
//! that fails (no answer within the rule's timeout, a gRPC error, an answer
//! that does not decode or says `UNKNOWN`) applies the rule's `on_failure`.

use std::borrow::Cow;

use crate::config::{Config, FailureMode, HeaderValues, WhenKeyMissing};
use crate::key::{client_key, service_entries, ClientKey, EntryFormat, RequestFacts};
use crate::limiter::{refusal_for, Decision, Policy, RuleOutcome, RuleReport};
use crate::rls::{Code, DescriptorStatus, Response};

/// The descriptor of one global rule for one request.
pub type Entries = Vec<(Cow<'static, str>, String)>;

/// One question for the rate-limit service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The rule's index in [`Config::rules`].
    pub rule: usize,
    /// The descriptor's entries.
    pub entries: Entries,
    /// `hits_addend`: the rule's cost.
    pub hits: u32,
}

/// The global rules that apply to a request, with their descriptors, in
/// configuration order. `client` is the request's client key when a rule
/// keys on the client address.
pub fn asks(config: &Config, facts: &RequestFacts, client: &ClientKey) -> Vec<Ask> {
    let view = facts.view();
    let mut asks = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(global) = &rule.global else { continue };
        if !rule.matcher.matches(&view) {
            continue;
        }
        let format = EntryFormat {
            client_address: config.client_address,
            hash_headers: global.header_values == HeaderValues::Hashed,
        };
        let skip = rule.when_key_missing == WhenKeyMissing::SkipRule;
        let Some(entries) = service_entries(&rule.name, &rule.key, facts, client, &format, skip)
        else {
            continue;
        };
        asks.push(Ask {
            rule: index,
            entries,
            hits: u32::try_from(rule.cost).unwrap_or(u32::MAX),
        });
    }
    asks
}

/// The request's client key, when a global rule needs it.
pub fn client_for_global(config: &Config, facts: &RequestFacts) -> ClientKey {
    if config.needs.client_address {
        client_key(&config.client_address, facts)
    } else {
        ClientKey::default()
    }
}

/// Why a call brought no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the rule's timeout: gRPC `DEADLINE_EXCEEDED`, an
    /// error at or after the timeout (Envoy ends a call at its timeout with
    /// `UNAVAILABLE`: its HTTP timeout is a 504), or the request's deadline
    /// passed first.
    Timeout,
    /// The call ended with this gRPC status (`UNAVAILABLE` when the service
    /// or its store is down).
    Status(u32),
    /// The host refused to send the call (no such cluster, ...).
    NotSent,
    /// The answer did not decode, or its code was `UNKNOWN`.
    BadAnswer,
}

/// gRPC `DEADLINE_EXCEEDED`.
pub const GRPC_DEADLINE_EXCEEDED: u32 = 4;

impl Failure {
    /// The failure a call that ended with gRPC status `code` (not 0) is.
    pub fn of_status(code: u32) -> Failure {
        if code == GRPC_DEADLINE_EXCEEDED {
            Failure::Timeout
        } else {
            Failure::Status(code)
        }
    }
}

/// What one call brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A verdict, and the status of the call's one descriptor.
    Verdict {
        /// `overall_code`: `OK` or `OVER_LIMIT`.
        code: Code,
        /// The descriptor's status (limit, remaining, reset), when sent.
        status: Option<DescriptorStatus>,
    },
    /// No verdict.
    Failed(Failure),
}

impl Answer {
    /// The answer a decoded response is: a verdict when its overall code is
    /// `OK` or `OVER_LIMIT`.
    pub fn of_response(response: Response) -> Answer {
        match response.overall {
            Code::Unknown => Answer::Failed(Failure::BadAnswer),
            code => Answer::Verdict {
                code,
                status: response.statuses.into_iter().next(),
            },
        }
    }
}

/// The report of global rule `rule` for `answer`.
pub fn report(config: &Config, rule: usize, answer: &Answer) -> RuleReport {
    let shadow = config.rules.get(rule).is_some_and(|r| r.shadow);
    let on_failure = config
        .rules
        .get(rule)
        .and_then(|r| r.global)
        .map_or(FailureMode::Deny, |g| g.on_failure);
    let base = RuleReport {
        rule,
        outcome: RuleOutcome::ServiceFailure,
        shadow,
        metered: false,
        policy: Policy::default(),
        remaining: 0,
        reset: 0,
        claimed: false,
        evicted: false,
    };
    match answer {
        Answer::Failed(_) => RuleReport {
            outcome: match on_failure {
                FailureMode::Deny => RuleOutcome::ServiceFailure,
                FailureMode::Allow => RuleOutcome::ServiceFailedOpen,
            },
            ..base
        },
        Answer::Verdict { code, status } => {
            let over = *code == Code::OverLimit;
            let outcome = if over {
                RuleOutcome::Limited
            } else {
                RuleOutcome::Spent
            };
            let Some(status) = status else {
                return RuleReport { outcome, ..base };
            };
            let reset = status.reset_ms.unwrap_or(0).div_ceil(1000);
            RuleReport {
                outcome,
                metered: status.current_limit.is_some(),
                policy: status
                    .current_limit
                    .as_ref()
                    .map(|l| Policy {
                        quota: u64::from(l.requests_per_unit),
                        window: l.unit_seconds,
                    })
                    .unwrap_or_default(),
                remaining: u64::from(status.limit_remaining),
                // A refusal always asks the client to wait a little.
                reset: if over { reset.max(1) } else { reset },
                ..base
            }
        }
    }
}

/// The local decision completed with the global rules' reports: a global
/// rule's report takes the place of its local tier's (keeping whether the
/// tier claimed a slot), reports stay in configuration order, and the
/// request is refused when an enforced global rule refuses it.
pub fn combine(mut decision: Decision, global: Vec<RuleReport>) -> Decision {
    for report in global {
        match decision.reports.iter_mut().find(|r| r.rule == report.rule) {
            Some(tier) => {
                *tier = RuleReport {
                    claimed: tier.claimed,
                    evicted: tier.evicted,
                    ..report
                }
            }
            None => decision.reports.push(report),
        }
    }
    decision.reports.sort_by_key(|r| r.rule);
    if decision.refusal.is_none() && decision.reports.iter().any(RuleReport::refuses) {
        decision.refusal = Some(refusal_for(&decision.reports));
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{decide, RefusalReason};
    use crate::rls::CurrentLimit;
    use palisade_shared::contract::Identity;
    use palisade_shared::store::MemoryStore;
    use std::rc::Rc;

    fn config(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    const SERVICE: &str = r#""global_service": {"cluster": "rls"}"#;

    fn facts() -> RequestFacts {
        RequestFacts {
            method: "POST".into(),
            path: "/v1/chat?x=1".into(),
            peer_address: Some("203.0.113.77:4000".into()),
            headers: vec![("x-api-key".into(), "secret-key".into())],
            identity: Some(Rc::new(Identity {
                iss: "https://idp".into(),
                sub: Some("alice".into()),
                ..Identity::default()
            })),
            ..RequestFacts::default()
        }
    }

    fn entries(pairs: &[(&'static str, &str)]) -> Entries {
        pairs
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), v.to_string()))
            .collect()
    }

    #[test]
    fn descriptors_come_from_the_same_key_builders_as_local_rules() {
        let c = config(&format!(
            r#"{{{SERVICE}, "client_address": {{"ipv4_prefix": 24}}, "rules": [
              {{"name": "local", "key": ["client_address"],
                "token_bucket": {{"max_tokens": 5, "fill_interval": "1s"}}}},
              {{"name": "per_net", "backend": "global", "key": ["client_address", "method", "path"]}},
              {{"name": "per_user", "backend": "global", "cost": 3,
                "key": [{{"identity": "iss"}}, {{"identity": "sub"}}]}},
              {{"name": "per_key", "backend": "global", "key": [{{"header": "x-api-key"}}]}},
              {{"name": "per_key_plain", "backend": "global", "global": {{"header_values": "plain"}},
                "key": [{{"header": "x-api-key"}}, {{"constant": "v1"}}]}},
              {{"name": "other_path", "backend": "global", "match": {{"path": {{"prefix": "/admin"}}}}}}
            ]}}"#
        ));
        let f = facts();
        let got = asks(&c, &f, &client_for_global(&c, &f));
        let digest = crate::key::value_digest(b"secret-key");
        assert_eq!(digest.len(), 32);
        assert_eq!(
            got,
            vec![
                Ask {
                    rule: 1,
                    entries: entries(&[
                        ("rule", "per_net"),
                        ("client_address", "203.0.113.0/24"),
                        ("method", "POST"),
                        ("path", "/v1/chat")
                    ]),
                    hits: 1
                },
                Ask {
                    rule: 2,
                    entries: entries(&[
                        ("rule", "per_user"),
                        ("identity.iss", "https://idp"),
                        ("identity.sub", "alice")
                    ]),
                    hits: 3
                },
                Ask {
                    rule: 3,
                    entries: entries(&[("rule", "per_key"), ("header.x-api-key", &digest)]),
                    hits: 1
                },
                Ask {
                    rule: 4,
                    entries: entries(&[
                        ("rule", "per_key_plain"),
                        ("header.x-api-key", "secret-key"),
                        ("constant", "v1")
                    ]),
                    hits: 1
                },
            ]
        );
    }

    #[test]
    fn a_missing_value_shares_one_counter_or_skips_the_rule() {
        let c = config(&format!(
            r#"{{{SERVICE}, "rules": [
              {{"name": "shared", "backend": "global", "key": [{{"identity": "sub"}}]}},
              {{"name": "skipped", "backend": "global", "when_key_missing": "skip_rule",
                "key": [{{"identity": "sub"}}]}}
            ]}}"#
        ));
        let anonymous = RequestFacts::default();
        let got = asks(&c, &anonymous, &ClientKey::default());
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].entries,
            entries(&[("rule", "shared"), ("identity.sub", "")])
        );
    }

    #[test]
    fn ipv6_clients_and_unix_peers() {
        let c = config(&format!(
            r#"{{{SERVICE}, "client_address": {{"ipv6_prefix": 64}}, "rules": [
              {{"name": "r", "backend": "global", "key": ["client_address"]}}]}}"#
        ));
        let mut f = RequestFacts {
            peer_address: Some("[2001:db8:1:2:3:4:5:6]:443".into()),
            ..RequestFacts::default()
        };
        let value = |f: &RequestFacts| {
            asks(&c, f, &client_for_global(&c, f))[0].entries[1]
                .1
                .clone()
        };
        assert_eq!(value(&f), "2001:db8:1:2::/64");
        f.peer_address = Some("[::ffff:10.1.2.3]:80".into());
        assert_eq!(
            value(&f),
            "10.1.2.3",
            "an IPv4 client behind an IPv6 socket"
        );
        f.peer_address = Some("/run/envoy.sock".into());
        assert_eq!(value(&f), "/run/envoy.sock");
    }

    fn status(code: Code, q: u32, unit: Option<u64>, remaining: u32, reset_ms: u64) -> Answer {
        Answer::Verdict {
            code,
            status: Some(DescriptorStatus {
                code,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: q,
                    unit_seconds: unit,
                }),
                limit_remaining: remaining,
                reset_ms: Some(reset_ms),
            }),
        }
    }

    const TWO: &str = r#"{"global_service": {"cluster": "rls"}, "rules": [
        {"name": "closed", "backend": "global"},
        {"name": "open", "backend": "global", "global": {"on_failure": "allow"}},
        {"name": "watch", "backend": "global", "shadow": true}]}"#;

    #[test]
    fn answers_become_reports() {
        let c = config(TWO);
        let ok = report(&c, 0, &status(Code::Ok, 100, Some(60), 42, 12_300));
        assert_eq!(ok.outcome, RuleOutcome::Spent);
        assert!(ok.metered && !ok.refuses());
        assert_eq!(
            ok.policy,
            Policy {
                quota: 100,
                window: Some(60)
            }
        );
        assert_eq!((ok.remaining, ok.reset), (42, 13));
        let over = report(&c, 0, &status(Code::OverLimit, 100, None, 0, 0));
        assert_eq!(over.outcome, RuleOutcome::Limited);
        assert!(over.refuses());
        assert_eq!(over.reset, 1, "a refusal never says retry in 0 s");
        assert_eq!(over.policy.window, None);
        // An answer without a status: a verdict without numbers.
        let bare = report(
            &c,
            0,
            &Answer::Verdict {
                code: Code::Ok,
                status: None,
            },
        );
        assert_eq!((bare.outcome, bare.metered), (RuleOutcome::Spent, false));
        // A shadow rule would have refused.
        let shadow = report(&c, 2, &status(Code::OverLimit, 5, Some(1), 0, 900));
        assert!(shadow.would_refuse() && !shadow.refuses());
    }

    #[test]
    fn failures_apply_each_rules_failure_mode() {
        let c = config(TWO);
        for failure in [
            Failure::Timeout,
            Failure::Status(14),
            Failure::NotSent,
            Failure::BadAnswer,
        ] {
            let answer = Answer::Failed(failure);
            let closed = report(&c, 0, &answer);
            assert_eq!(closed.outcome, RuleOutcome::ServiceFailure);
            assert!(closed.refuses() && !closed.metered);
            let open = report(&c, 1, &answer);
            assert_eq!(open.outcome, RuleOutcome::ServiceFailedOpen);
            assert!(!open.refuses());
            let shadow = report(&c, 2, &answer);
            assert!(!shadow.refuses(), "a shadow rule never refuses");
        }
        assert_eq!(Failure::of_status(4), Failure::Timeout);
        assert_eq!(Failure::of_status(14), Failure::Status(14));
        let unknown = Response {
            overall: Code::Unknown,
            statuses: vec![],
        };
        assert_eq!(
            Answer::of_response(unknown),
            Answer::Failed(Failure::BadAnswer)
        );
    }

    #[test]
    fn combining_refuses_and_replaces_the_local_tier() {
        let c = config(&format!(
            r#"{{{SERVICE}, "rules": [
              {{"name": "local", "token_bucket": {{"max_tokens": 10, "fill_interval": "1s"}}}},
              {{"name": "tiered", "backend": "global",
                "token_bucket": {{"max_tokens": 3, "fill_interval": "1s"}}}},
              {{"name": "plain", "backend": "global"}}]}}"#
        ));
        let store = MemoryStore::new();
        crate::limiter::create_tables(&c, &store).unwrap();
        let local = decide(&c, &store, &RequestFacts::default(), 0);
        assert_eq!(
            local.reports.iter().map(|r| r.rule).collect::<Vec<_>>(),
            [0, 1],
            "the tier is decided locally"
        );
        // Both global rules allow: nothing refused, three reports in order.
        let allowed = combine(
            local.clone(),
            vec![
                report(&c, 2, &status(Code::Ok, 50, Some(60), 7, 30_000)),
                report(&c, 1, &status(Code::Ok, 1000, Some(3600), 999, 1_000)),
            ],
        );
        assert!(allowed.refusal.is_none());
        let rules: Vec<usize> = allowed.reports.iter().map(|r| r.rule).collect();
        assert_eq!(rules, [0, 1, 2]);
        assert_eq!(allowed.reports[1].policy.quota, 1000, "the service's limit");
        // One refuses: the request is refused, Retry-After its reset.
        let refused = combine(
            local.clone(),
            vec![report(
                &c,
                2,
                &status(Code::OverLimit, 50, Some(60), 0, 30_000),
            )],
        );
        let refusal = refused.refusal.unwrap();
        assert_eq!(refusal.reason, RefusalReason::RateLimited);
        assert_eq!(refusal.retry_after, 30);
        // A closed failure refuses with its own reason.
        let failed = combine(
            local,
            vec![report(&c, 2, &Answer::Failed(Failure::Timeout))],
        );
        let refusal = failed.refusal.unwrap();
        assert_eq!(refusal.reason, RefusalReason::ServiceFailure);
        assert_eq!(refusal.retry_after, 1);
    }
}
