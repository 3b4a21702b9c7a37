//! Asynchronous global rules (`mode: async`): each worker admits requests
//! from a local share of the global limit without waiting for the service,
//! and reconciles with it in the background.
//!
//! Per worker and per key (a rule and its descriptor), the worker holds a
//! share: the tokens it may still admit before it hears from the service
//! again. A request within the share is admitted at once and its cost is
//! added to the key's pending hits; on each tick the worker reports the
//! pending hits to the service (one `ShouldRateLimit` call per key, with
//! `hits_addend` the sum). Each answer sets the share again: the rule's
//! `local_share`, or what the service says remains if that is less; an
//! `OVER_LIMIT` answer refuses the key's requests in this worker until the
//! service's reset. A request beyond the share waits for the service like a
//! synchronous rule's, and its answer renews the share.
//!
//! What this gives: a request within the share costs no round trip, and the
//! service counts admitted requests late by up to a tick and a round trip.
//! What it costs: a worker never holds more than its share of hits the
//! service has not confirmed (granted, pending and in flight together), but
//! every worker of every proxy may hold its whole share when the limit is
//! reached, so the global limit can be exceeded by up to `local_share` ×
//! workers × proxies in a window (a report over the limit is refused whole
//! and the worker then refuses the key until the window resets); refusals
//! start up to a tick and a round trip late. Use it where a small, bounded
//! overshoot buys latency.
//!
//! Memory is bounded: at most `max_async_keys` keys per worker; a new key
//! takes the place of the least recently used idle one (nothing pending,
//! nothing in flight, not refused), and when none is idle the request is
//! decided synchronously.

use std::collections::HashMap;

use crate::global::{Answer, Entries};
use crate::limiter::{Policy, RuleOutcome, RuleReport};
use crate::rls::Code;

/// Which counter of the service a share is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    /// The rule's index in [`crate::config::Config::rules`].
    pub rule: usize,
    /// The descriptor sent for it.
    pub entries: Entries,
}

/// What the last answer said, for the RateLimit fields of admitted requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    policy: Policy,
    metered: bool,
    remaining: u64,
    reset_at_ms: i64,
}

#[derive(Debug, Clone)]
struct Share {
    /// Tokens this worker may still admit before the next answer.
    granted: u64,
    /// Admitted, not yet reported.
    pending: u64,
    /// Reported in a call not yet answered.
    in_flight: u64,
    /// The service said the limit is reached: refused until then.
    blocked_until_ms: i64,
    /// The last answer.
    last: Option<Known>,
    /// Admitted since the last answer (not in its `remaining`).
    since_answer: u64,
    /// Last admission or answer, to pick which idle key to forget.
    used_ms: i64,
}

impl Share {
    fn fresh(share: u64, now_ms: i64) -> Share {
        Share {
            granted: share,
            pending: 0,
            in_flight: 0,
            blocked_until_ms: 0,
            last: None,
            since_answer: 0,
            used_ms: now_ms,
        }
    }

    fn idle(&self, now_ms: i64) -> bool {
        self.pending == 0 && self.in_flight == 0 && self.blocked_until_ms <= now_ms
    }
}

/// How a request of an asynchronous rule is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Admitted from this worker's share (the report carries the last
    /// answer's numbers, when there was one).
    Admitted(RuleReport),
    /// The service said the limit is reached: refused until it resets.
    Refused(RuleReport),
    /// Beyond the share (or no room to track the key): ask the service and
    /// wait for its answer.
    Ask,
}

/// One worker's shares.
#[derive(Debug, Clone, Default)]
pub struct ShareTable {
    shares: HashMap<ShareKey, Share>,
    capacity: usize,
}

fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    u64::try_from(at_ms.saturating_sub(now_ms))
        .unwrap_or(0)
        .div_ceil(1000)
}

impl ShareTable {
    /// A table of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        ShareTable {
            shares: HashMap::new(),
            capacity,
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// Decides a request of `cost` tokens for `key` (`shadow` as the rule),
    /// whose rule grants `share` tokens per answer.
    pub fn admit(
        &mut self,
        key: &ShareKey,
        cost: u64,
        share: u64,
        shadow: bool,
        now_ms: i64,
    ) -> Admission {
        if !self.shares.contains_key(key) && !self.make_room(now_ms) {
            return Admission::Ask;
        }
        let entry = self
            .shares
            .entry(key.clone())
            .or_insert_with(|| Share::fresh(share, now_ms));
        entry.used_ms = now_ms;
        let base = RuleReport {
            rule: key.rule,
            outcome: RuleOutcome::Spent,
            shadow,
            metered: false,
            policy: Policy::default(),
            remaining: 0,
            reset: 0,
            claimed: false,
            evicted: false,
        };
        let known = |r: RuleReport, last: &Option<Known>| match last {
            Some(k) => RuleReport {
                metered: k.metered,
                policy: k.policy,
                ..r
            },
            None => r,
        };
        if entry.blocked_until_ms > now_ms {
            return Admission::Refused(RuleReport {
                outcome: RuleOutcome::Limited,
                reset: seconds_until(entry.blocked_until_ms, now_ms).max(1),
                ..known(base, &entry.last)
            });
        }
        if entry.granted < cost {
            return Admission::Ask;
        }
        entry.granted -= cost;
        entry.pending += cost;
        entry.since_answer += cost;
        let mut report = known(base, &entry.last);
        if let Some(k) = &entry.last {
            report.remaining = k.remaining.saturating_sub(entry.since_answer);
            report.reset = seconds_until(k.reset_at_ms, now_ms);
        }
        Admission::Admitted(report)
    }

    /// Frees a place for a new key: true when there is one.
    fn make_room(&mut self, now_ms: i64) -> bool {
        if self.shares.len() < self.capacity {
            return true;
        }
        let oldest_idle = self
            .shares
            .iter()
            .filter(|(_, s)| s.idle(now_ms))
            .min_by_key(|(_, s)| s.used_ms)
            .map(|(k, _)| k.clone());
        match oldest_idle {
            Some(key) => {
                self.shares.remove(&key);
                true
            }
            None => false,
        }
    }

    /// The reports due: up to `max` keys with pending hits and no report in
    /// flight, each with the hits to report (now in flight).
    pub fn due(&mut self, max: usize) -> Vec<(ShareKey, u64)> {
        let mut due = Vec::new();
        for (key, share) in self.shares.iter_mut() {
            if due.len() >= max {
                break;
            }
            if share.pending > 0 && share.in_flight == 0 {
                share.in_flight = share.pending;
                share.pending = 0;
                due.push((key.clone(), share.in_flight));
            }
        }
        due
    }

    /// The service answered for `key`: a background report (`reported`
    /// true) or a request that asked. `share` is the rule's `local_share`.
    pub fn learn(
        &mut self,
        key: &ShareKey,
        share: u64,
        answer: &Answer,
        reported: bool,
        now_ms: i64,
    ) {
        let Some(entry) = self.shares.get_mut(key) else {
            return;
        };
        if reported {
            entry.in_flight = 0;
        }
        entry.used_ms = now_ms;
        let Answer::Verdict { code, status } = answer else {
            // No verdict: the share stays what it was; once it is spent,
            // requests ask, and the rule's failure mode decides them.
            return;
        };
        let reset_at_ms = now_ms.saturating_add(
            i64::try_from(status.as_ref().and_then(|s| s.reset_ms).unwrap_or(0))
                .unwrap_or(i64::MAX),
        );
        entry.last = status.as_ref().map(|s| Known {
            policy: s
                .current_limit
                .as_ref()
                .map(|l| Policy {
                    quota: u64::from(l.requests_per_unit),
                    window: l.unit_seconds,
                })
                .unwrap_or_default(),
            metered: s.current_limit.is_some(),
            remaining: u64::from(s.limit_remaining),
            reset_at_ms,
        });
        // What this worker admitted since the call was sent (and, for a
        // request's own call, what a report still in flight carries) is
        // not in the answer's `remaining` yet.
        let unconfirmed = entry.pending.saturating_add(entry.in_flight);
        entry.since_answer = unconfirmed;
        match code {
            Code::OverLimit => {
                entry.granted = 0;
                entry.blocked_until_ms = reset_at_ms.max(now_ms.saturating_add(1000));
            }
            _ => {
                entry.blocked_until_ms = 0;
                let remaining = status
                    .as_ref()
                    .map_or(share, |s| u64::from(s.limit_remaining));
                // At any moment a worker holds at most `share` tokens the
                // service has not confirmed: granted + pending + in flight.
                entry.granted = share.min(remaining).saturating_sub(unconfirmed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::Failure;
    use crate::rls::{CurrentLimit, DescriptorStatus};
    use std::borrow::Cow;

    fn key(client: &str) -> ShareKey {
        ShareKey {
            rule: 0,
            entries: vec![
                (Cow::Borrowed("rule"), "r".to_string()),
                (Cow::Borrowed("client_address"), client.to_string()),
            ],
        }
    }

    fn answer(code: Code, remaining: u32, reset_ms: u64) -> Answer {
        Answer::Verdict {
            code,
            status: Some(DescriptorStatus {
                code,
                current_limit: Some(CurrentLimit {
                    requests_per_unit: 100,
                    unit_seconds: Some(60),
                }),
                limit_remaining: remaining,
                reset_ms: Some(reset_ms),
            }),
        }
    }

    fn admitted(a: &Admission) -> bool {
        matches!(a, Admission::Admitted(_))
    }

    #[test]
    fn a_share_admits_then_asks() {
        let mut t = ShareTable::new(8);
        let k = key("a");
        // A new key: the whole share, without numbers yet.
        for _ in 0..3 {
            let a = t.admit(&k, 1, 3, false, 0);
            assert!(admitted(&a));
            if let Admission::Admitted(r) = a {
                assert!(!r.metered);
            }
        }
        assert_eq!(t.admit(&k, 1, 3, false, 0), Admission::Ask);
        // The tick reports the three hits; nothing more is due until the answer.
        assert_eq!(t.due(10), vec![(k.clone(), 3)]);
        assert!(t.due(10).is_empty());
        // The service counted them: 97 left, share 3 again.
        t.learn(&k, 3, &answer(Code::Ok, 97, 30_000), true, 100);
        let Admission::Admitted(r) = t.admit(&k, 1, 3, false, 100) else {
            panic!("within the new share")
        };
        assert!(r.metered);
        assert_eq!((r.remaining, r.reset, r.policy.quota), (96, 30, 100));
    }

    #[test]
    fn the_share_shrinks_to_what_the_service_has_left() {
        let mut t = ShareTable::new(8);
        let k = key("a");
        assert!(admitted(&t.admit(&k, 2, 10, false, 0)));
        let due = t.due(10);
        assert_eq!(due, vec![(k.clone(), 2)]);
        // Meanwhile one more request is admitted (pending 1).
        assert!(admitted(&t.admit(&k, 1, 10, false, 10)));
        // The service has 3 left (the 2 reported are counted): the share is
        // min(10, 3) minus the pending 1 = 2.
        t.learn(&k, 10, &answer(Code::Ok, 3, 5_000), true, 20);
        assert!(admitted(&t.admit(&k, 1, 10, false, 20)));
        assert!(admitted(&t.admit(&k, 1, 10, false, 20)));
        assert_eq!(t.admit(&k, 1, 10, false, 20), Admission::Ask);
        assert_eq!(t.due(10), vec![(k, 3)], "the pending 1 and the 2 since");
    }

    #[test]
    fn a_request_answer_counts_the_report_in_flight() {
        let mut t = ShareTable::new(8);
        let k = key("a");
        for _ in 0..4 {
            assert!(admitted(&t.admit(&k, 1, 4, false, 0)));
        }
        assert_eq!(t.due(10), vec![(k.clone(), 4)]);
        // A request asks (the share is spent) and its answer says 50 are
        // left: the 4 in flight are not in them, so nothing more is granted.
        assert_eq!(t.admit(&k, 1, 4, false, 1), Admission::Ask);
        t.learn(&k, 4, &answer(Code::Ok, 50, 60_000), false, 2);
        assert_eq!(t.admit(&k, 1, 4, false, 2), Admission::Ask);
        // The report's answer confirms them: a whole share again.
        t.learn(&k, 4, &answer(Code::Ok, 45, 60_000), true, 3);
        for _ in 0..4 {
            assert!(admitted(&t.admit(&k, 1, 4, false, 3)));
        }
        assert_eq!(t.admit(&k, 1, 4, false, 3), Admission::Ask);
    }

    #[test]
    fn over_limit_refuses_until_the_reset() {
        let mut t = ShareTable::new(8);
        let k = key("a");
        assert!(admitted(&t.admit(&k, 1, 5, false, 0)));
        t.due(10);
        t.learn(&k, 5, &answer(Code::OverLimit, 0, 2_500), true, 1_000);
        let Admission::Refused(r) = t.admit(&k, 1, 5, false, 1_000) else {
            panic!("refused")
        };
        assert_eq!(
            (r.outcome, r.reset, r.remaining),
            (RuleOutcome::Limited, 3, 0)
        );
        assert!(r.refuses());
        // A shadow rule's refusal is only a would-have.
        let Admission::Refused(r) = t.admit(&k, 1, 5, true, 1_000) else {
            panic!("refused")
        };
        assert!(r.would_refuse() && !r.refuses());
        // After the reset the key asks again (its share is spent).
        assert_eq!(t.admit(&k, 1, 5, false, 3_500), Admission::Ask);
        // A request that asked brings a fresh share.
        t.learn(&k, 5, &answer(Code::Ok, 99, 60_000), false, 3_600);
        assert!(admitted(&t.admit(&k, 1, 5, false, 3_600)));
    }

    #[test]
    fn a_failed_report_leaves_the_share_alone() {
        let mut t = ShareTable::new(8);
        let k = key("a");
        assert!(admitted(&t.admit(&k, 1, 2, false, 0)));
        t.due(10);
        t.learn(&k, 2, &Answer::Failed(Failure::Timeout), true, 100);
        assert!(admitted(&t.admit(&k, 1, 2, false, 100)));
        assert_eq!(t.admit(&k, 1, 2, false, 100), Admission::Ask);
        assert_eq!(t.due(10), vec![(k, 1)], "in flight again once answered");
    }

    #[test]
    fn memory_is_bounded_and_busy_keys_are_kept() {
        let mut t = ShareTable::new(2);
        let (a, b, c) = (key("a"), key("b"), key("c"));
        assert!(admitted(&t.admit(&a, 1, 5, false, 0)));
        assert!(admitted(&t.admit(&b, 1, 5, false, 1)));
        // Both have pending hits: a third key is not tracked, it asks.
        assert_eq!(t.admit(&c, 1, 5, false, 2), Admission::Ask);
        assert_eq!(t.len(), 2);
        // Once a's hits are reported and answered, a is idle and makes room.
        t.due(1);
        let reported: Vec<ShareKey> = t
            .shares
            .iter()
            .filter(|(_, s)| s.in_flight > 0)
            .map(|(k, _)| k.clone())
            .collect();
        t.learn(&reported[0], 5, &answer(Code::Ok, 50, 1_000), true, 3);
        assert!(admitted(&t.admit(&c, 1, 5, false, 4)));
        assert_eq!(t.len(), 2);
        assert!(t.shares.contains_key(&c));
    }

    #[test]
    fn the_overshoot_is_bounded_by_the_shares() {
        // Three workers, a global limit of 10, share 4: the service (a plain
        // counter here) sees every admitted hit; before any answer each
        // worker admits its share, so at most 10 + 3 x 4 pass in all.
        let limit = 10u64;
        let mut counted = 0u64;
        let mut workers: Vec<ShareTable> = (0..3).map(|_| ShareTable::new(4)).collect();
        let k = key("a");
        let mut passed = 0u64;
        for round in 0..20i64 {
            for w in workers.iter_mut() {
                for _ in 0..5 {
                    match w.admit(&k, 1, 4, false, round) {
                        Admission::Admitted(_) => passed += 1,
                        Admission::Refused(_) => {}
                        Admission::Ask => {
                            // A synchronous check with the service.
                            let code = if counted < limit {
                                counted += 1;
                                passed += 1;
                                Code::Ok
                            } else {
                                Code::OverLimit
                            };
                            let left = limit.saturating_sub(counted) as u32;
                            w.learn(&k, 4, &answer(code, left, 60_000), false, round);
                        }
                    }
                }
            }
            for w in workers.iter_mut() {
                for (key, hits) in w.due(10) {
                    // The service counts reported hits; a batch over the
                    // limit is refused whole (as limitador does).
                    let code = if counted + hits <= limit {
                        counted += hits;
                        Code::Ok
                    } else {
                        Code::OverLimit
                    };
                    let left = limit.saturating_sub(counted) as u32;
                    w.learn(&key, 4, &answer(code, left, 60_000), true, round);
                }
            }
        }
        assert!(passed >= limit, "{passed}");
        assert!(passed <= limit + 3 * 4, "{passed}");
    }
}
