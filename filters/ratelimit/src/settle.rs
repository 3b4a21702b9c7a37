//! Settling a request's cost once it is known.
//!
//! A request whose price is only known after its response (the tokens an
//! LLM reports) is decided with a provisional cost ([`RequestFacts::cost`]:
//! a reservation, or one token), then settled: each bucket it spent from
//! gets the difference back, or is charged the rest. A charge never refuses
//! (the request is over); it empties a bucket that holds less, so usage is
//! never forgiven beyond what the bucket held. Both are CAS updates of the
//! same slot tables as the decision, so they stay exact across workers.

use palisade_shared::store::{update, SharedStore, UpdateOutcome};

use crate::bucket::{seconds_ceil, BucketState};
use crate::config::Config;
use crate::key::{client_key, ClientKey, RequestFacts};
use crate::limiter::{active_rules, Decision, RuleOutcome, StoreCounts};
use crate::table::{bucket_of, charge, give_back, Ask};

/// One bucket after settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledRule {
    /// Index of the rule in [`Config::rules`].
    pub rule: usize,
    /// Whether the rule is in shadow mode.
    pub shadow: bool,
    /// Whole tokens left.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// What settling did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// The buckets the request had spent from, after settling, in
    /// configuration order.
    pub rules: Vec<SettledRule>,
    /// Tokens given back over all buckets.
    pub given_back: u64,
    /// Tokens charged beyond the provisional cost over all buckets.
    pub charged: u64,
    /// Store activity (a failed update leaves the provisional cost).
    pub counts: StoreCounts,
}

/// Settles a request decided with `facts` (and its provisional
/// [`RequestFacts::cost`]) at `cost`, its real cost, at monotonic time
/// `now_ns`. Only the buckets `decision` spent from are touched.
pub fn settle<S: SharedStore + ?Sized>(
    config: &Config,
    store: &S,
    facts: &RequestFacts,
    decision: &Decision,
    cost: u64,
    now_ns: u64,
) -> Settlement {
    let mut out = Settlement::default();
    if decision.refusal.is_some() {
        return out;
    }
    let client = if config.needs.client_address {
        client_key(&config.client_address, facts)
    } else {
        ClientKey::default()
    };
    for a in active_rules(config, facts, &client) {
        let spent = decision
            .reports
            .iter()
            .any(|r| r.rule == a.index && r.outcome == RuleOutcome::Spent);
        if !spent {
            continue;
        }
        let provisional = a.cost;
        let ask = Ask {
            cost: provisional.abs_diff(cost),
            ..a.ask(now_ns)
        };
        let outcome = update(store, &a.key, config.max_cas_retries, |value| {
            if cost < provisional {
                let new = give_back(value, &ask);
                (bucket_of(new.as_deref().or(value), &ask), new)
            } else if cost > provisional {
                charge(value, &ask)
            } else {
                (bucket_of(value, &ask), None)
            }
        });
        let state: Option<BucketState> = match outcome {
            UpdateOutcome::Done { result, retries } => {
                out.counts.cas_retries += u64::from(retries);
                if cost < provisional {
                    out.given_back += ask.cost;
                } else {
                    out.charged += ask.cost;
                }
                result
            }
            UpdateOutcome::RetriesExhausted { retries } => {
                out.counts.cas_retries += u64::from(retries);
                out.counts.cas_exhausted += 1;
                continue;
            }
            UpdateOutcome::HostError => {
                out.counts.store_errors += 1;
                continue;
            }
        };
        let spec = &a.local.bucket;
        // No slot: the bucket refilled to full and was handed on.
        let state = state.unwrap_or_else(|| BucketState::full(spec, now_ns));
        out.rules.push(SettledRule {
            rule: a.index,
            shadow: a.rule.shadow,
            remaining: state.tokens(spec),
            reset: seconds_ceil(state.nanos_until_full(spec)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::{create_tables, decide};
    use palisade_shared::store::MemoryStore;

    const SEC: u64 = 1_000_000_000;

    fn setup(json: &str) -> (Config, MemoryStore) {
        let config = Config::from_json(json.as_bytes()).unwrap();
        let store = MemoryStore::new();
        create_tables(&config, &store).unwrap();
        (config, store)
    }

    fn costing(cost: u64, ip: &str) -> RequestFacts {
        RequestFacts {
            peer_address: Some(format!("{ip}:4000")),
            cost: Some(cost),
            ..RequestFacts::default()
        }
    }

    fn remaining(config: &Config, store: &MemoryStore, ip: &str, now_ns: u64) -> u64 {
        // A probe of cost 1, given back: what the bucket holds.
        let facts = costing(1, ip);
        let d = decide(config, store, &facts, now_ns);
        settle(config, store, &facts, &d, 0, now_ns);
        d.reports[0].remaining + 1
    }

    const DAY: &str = r#"{"rules":[{"name":"team","key":["client_address"],
        "token_bucket":{"max_tokens":1000,"tokens_per_fill":1000,"fill_interval":"1d"}}]}"#;

    #[test]
    fn a_reservation_is_settled_down_to_what_was_used() {
        let (c, store) = setup(DAY);
        let facts = costing(300, "10.0.0.1");
        let d = decide(&c, &store, &facts, 0);
        assert!(d.refusal.is_none());
        assert_eq!(d.reports[0].remaining, 700);
        let s = settle(&c, &store, &facts, &d, 120, 0);
        assert_eq!(s.given_back, 180);
        assert_eq!(s.rules[0].remaining, 880);
        assert_eq!(remaining(&c, &store, "10.0.0.1", 0), 880);
    }

    #[test]
    fn usage_above_the_provisional_cost_is_charged_and_empties_at_most() {
        let (c, store) = setup(DAY);
        let facts = costing(1, "10.0.0.1");
        let d = decide(&c, &store, &facts, 0);
        let s = settle(&c, &store, &facts, &d, 400, 0);
        assert_eq!((s.charged, s.rules[0].remaining), (399, 600));
        // A second one uses more than is left: the bucket is empty, and the
        // next request is refused until refill.
        let d = decide(&c, &store, &facts, 0);
        let s = settle(&c, &store, &facts, &d, 5000, 0);
        assert_eq!(s.rules[0].remaining, 0);
        assert!(decide(&c, &store, &facts, 0).refusal.is_some());
        // Another client is untouched.
        assert_eq!(remaining(&c, &store, "10.0.0.2", 0), 1000);
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        // Three requests reserve 400 each from 1000: the third is refused
        // until the first two settle what they used.
        let (c, store) = setup(DAY);
        let facts = costing(400, "10.0.0.1");
        let first = decide(&c, &store, &facts, 0);
        let second = decide(&c, &store, &facts, 0);
        let third = decide(&c, &store, &facts, 0);
        assert!(first.refusal.is_none() && second.refusal.is_none());
        // 200 tokens short, at one token per 86.4 s.
        assert_eq!(third.refusal.as_ref().unwrap().retry_after, 17_280);
        settle(&c, &store, &facts, &first, 50, 0);
        settle(&c, &store, &facts, &second, 50, 0);
        assert_eq!(remaining(&c, &store, "10.0.0.1", 0), 900);
        // A refused request settles nothing.
        assert_eq!(
            settle(&c, &store, &facts, &third, 50, 0),
            Settlement::default()
        );
    }

    #[test]
    fn a_reservation_above_the_capacity_takes_the_whole_bucket() {
        let (c, store) = setup(DAY);
        let facts = costing(5000, "10.0.0.1");
        let d = decide(&c, &store, &facts, 0);
        assert!(d.refusal.is_none());
        assert_eq!(d.reports[0].remaining, 0);
        let s = settle(&c, &store, &facts, &d, 10, 0);
        assert_eq!(s.rules[0].remaining, 990);
    }

    #[test]
    fn the_bucket_refills_while_a_request_runs() {
        let (c, store) = setup(DAY);
        let facts = costing(1000, "10.0.0.1");
        let d = decide(&c, &store, &facts, 0);
        // 86.4 s later 1 token has refilled; settling at 100 gives 900 back.
        let s = settle(&c, &store, &facts, &d, 100, 86_400 * SEC / 1000);
        assert_eq!(s.rules[0].remaining, 901);
    }
}
