//! The decision: may this request spend from every bucket it falls into?
//!
//! All matching rules apply. A request passes only if every enforced bucket
//! has the tokens, and a refused request spends nothing anywhere:
//!
//! 1. With two or more matching rules, every bucket is read first and the
//!    request is refused without writing anything if an enforced one lacks
//!    tokens (a refusal is a read, so a flood of refused requests is cheap).
//! 2. Then each bucket is spent with its own compare-and-swap loop. A bucket
//!    that another worker emptied in between refuses the request, and the
//!    tokens already taken from the earlier buckets are given back.
//!
//! With one matching rule, step 2 alone is exact: checking and spending are
//! the same CAS update. The give-back in step 2 can briefly make an earlier
//! bucket look poorer than it is (a concurrent request may be refused in that
//! window); it never lets a request through that should have been refused.
//!
//! Shadow rules spend like enforced ones when the request goes through, but
//! never refuse: a shadow bucket that lacks tokens is reported as "would have
//! limited" and spends nothing.

use std::borrow::Cow;

use palisade_shared::store::{SharedStore, UpdateOutcome};

use crate::bucket::{seconds_ceil, BucketState};
use crate::config::{Config, FailureMode, LocalBucket, Rule, WhenKeyMissing};
use crate::key::{client_key, key_hash, missing_key_hash, ClientKey, RequestFacts};
use crate::optimistic::{self, Guess, Read, Target, WriteCache};
use crate::table::{evaluate, give_back, written_after_ns, Ask, Verdict};
use palisade_shared::forwarded::Fallback;

/// What happened to one matching rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Tokens were spent.
    Spent,
    /// The bucket had too few tokens: the rule refused the request (a shadow
    /// rule: would have).
    Limited,
    /// The client had no slot and the rule denies in that case (a shadow
    /// rule: would have).
    TableFull,
    /// The request passed this rule without spending: the client had no slot
    /// and the rule allows that (`on_table_full: allow`).
    Unmetered,
    /// The shared store failed for this enforced rule and
    /// `on_store_failure: allow` let the request pass without spending.
    FailedOpen,
    /// The bucket had the tokens, but another rule refused the request, so
    /// nothing was spent here.
    NotSpent,
    /// The shared store failed for this rule.
    StoreFailure,
    /// A global rule's rate-limit service did not answer in time, or not
    /// with a verdict, and the rule fails closed (`on_failure: deny`).
    ServiceFailure,
    /// The same, and the rule fails open (`on_failure: allow`): the request
    /// passed this rule unmetered.
    ServiceFailedOpen,
}

/// A limit as `RateLimit-Policy` advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// `q`: the quota (a bucket's capacity, a service limit's requests per unit).
    pub quota: u64,
    /// `w`: the seconds the quota is for, when known.
    pub window: Option<u64>,
}

/// One matching rule's part in the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleReport {
    /// Index of the rule in [`Config::rules`].
    pub rule: usize,
    /// What happened.
    pub outcome: RuleOutcome,
    /// Whether the rule is in shadow mode.
    pub shadow: bool,
    /// Whether `remaining` and `reset` describe a real bucket.
    pub metered: bool,
    /// The limit `remaining` and `reset` are counted against, as the
    /// `RateLimit-Policy` field advertises it.
    pub policy: Policy,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Seconds until the bucket is full again or, when the rule limited,
    /// until it holds the request's cost.
    pub reset: u64,
    /// Whether this request claimed a slot for its client.
    pub claimed: bool,
    /// Whether that slot was taken from a busy owner.
    pub evicted: bool,
}

impl RuleReport {
    /// Whether this rule refuses the request (enforced rules only).
    pub fn refuses(&self) -> bool {
        !self.shadow
            && matches!(
                self.outcome,
                RuleOutcome::Limited
                    | RuleOutcome::TableFull
                    | RuleOutcome::StoreFailure
                    | RuleOutcome::ServiceFailure
            )
    }

    /// Whether this shadow rule would have refused the request.
    pub fn would_refuse(&self) -> bool {
        self.shadow && matches!(self.outcome, RuleOutcome::Limited | RuleOutcome::TableFull)
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// A bucket is empty.
    RateLimited,
    /// No slot is free for the client.
    TableFull,
    /// The shared store failed and `on_store_failure` is `deny`.
    StoreFailure,
    /// The rate-limit service failed and the global rule's `on_failure` is `deny`.
    ServiceFailure,
}

impl RefusalReason {
    /// The machine-readable reason published in `palisade.denial`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::TableFull => "table_full",
            RefusalReason::StoreFailure => "store_failure",
            RefusalReason::ServiceFailure => "service_failure",
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RefusalReason,
    /// Seconds the client should wait (`Retry-After`).
    pub retry_after: u64,
}

/// Shared-store activity, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// CAS mismatches that were retried.
    pub cas_retries: u64,
    /// Updates that ran out of retries.
    pub cas_exhausted: u64,
    /// Host errors on shared data.
    pub store_errors: u64,
    /// Spends given back because another rule refused the request.
    pub given_back: u64,
    /// Presumed-token writes that met a mismatch (see [`crate::optimistic`]).
    pub guess_missed: u64,
}

impl StoreCounts {
    /// Adds `other`'s counts (a request decided twice reports both).
    pub fn add(&mut self, other: &StoreCounts) {
        self.cas_retries += other.cas_retries;
        self.cas_exhausted += other.cas_exhausted;
        self.store_errors += other.store_errors;
        self.given_back += other.given_back;
        self.guess_missed += other.guess_missed;
    }
}

/// The decision for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// `None` when the request goes through.
    pub refusal: Option<Refusal>,
    /// One report per matching rule, in configuration order.
    pub reports: Vec<RuleReport>,
    /// Store activity.
    pub counts: StoreCounts,
    /// Set when a rule keys on the client address and the trusted hop was
    /// no address (or missing): a nearer trusted hop or the peer was used
    /// (see [`crate::key::ClientKey::fallback`]). Counted by the adapter.
    pub client_address_fallback: Option<Fallback>,
}

impl Decision {
    /// The reports of rules that refused the request.
    pub fn refusing(&self) -> impl Iterator<Item = &RuleReport> {
        self.reports.iter().filter(|r| r.refuses())
    }
}

pub(crate) struct Active<'a> {
    pub(crate) index: usize,
    pub(crate) rule: &'a Rule,
    pub(crate) local: &'a LocalBucket,
    pub(crate) key: Cow<'a, str>,
    pub(crate) set: u32,
    pub(crate) owner: u64,
    /// Tokens this request takes from the rule's bucket: the rule's `cost`,
    /// or the request's own ([`RequestFacts::cost`]) up to the capacity.
    pub(crate) cost: u64,
}

impl Active<'_> {
    /// Which remembered write or reading belongs to this bucket's set.
    fn id(&self) -> u64 {
        (u64::try_from(self.index).unwrap_or(u64::MAX) << 32) | u64::from(self.set)
    }

    fn target(&self, config: &Config, now_ns: u64) -> Target<'_> {
        Target {
            key: &self.key,
            id: self.id(),
            max_retries: config.max_cas_retries,
            now_ns,
        }
    }

    pub(crate) fn ask(&self, now_ns: u64) -> Ask<'_> {
        Ask {
            bucket: &self.local.bucket,
            table: &self.local.table,
            owner: self.owner,
            cost: self.cost,
            on_full: self.local.on_table_full,
            now_ns,
        }
    }

    fn report(&self, outcome: RuleOutcome) -> RuleReport {
        RuleReport {
            rule: self.index,
            outcome,
            shadow: self.rule.shadow,
            metered: false,
            policy: Policy {
                quota: self.local.bucket.capacity(),
                window: Some(self.local.bucket.window_seconds()),
            },
            remaining: 0,
            reset: 0,
            claimed: false,
            evicted: false,
        }
    }

    /// The report for a verdict; `spent` says whether a `Spend` was written.
    fn report_verdict(&self, verdict: &Verdict, spent: bool) -> RuleReport {
        let spec = &self.local.bucket;
        let metered = |outcome, state: BucketState, reset_ns: u64| RuleReport {
            metered: true,
            remaining: state.tokens(spec),
            reset: seconds_ceil(reset_ns),
            ..self.report(outcome)
        };
        match *verdict {
            Verdict::Spend {
                after,
                claimed,
                evicted,
            } if spent => RuleReport {
                claimed,
                evicted,
                ..metered(RuleOutcome::Spent, after, after.nanos_until_full(spec))
            },
            Verdict::Spend { after, .. } => {
                let before = after.give_back(spec, self.cost);
                metered(RuleOutcome::NotSpent, before, before.nanos_until_full(spec))
            }
            Verdict::Empty { state } => {
                let mut r = metered(
                    RuleOutcome::Limited,
                    state,
                    state.nanos_until(spec, self.cost),
                );
                r.reset = r.reset.max(1);
                r
            }
            Verdict::TableFull { retry_ns } => RuleReport {
                metered: true,
                remaining: 0,
                reset: seconds_ceil(retry_ns).max(1),
                ..self.report(RuleOutcome::TableFull)
            },
            Verdict::Unmetered => self.report(RuleOutcome::Unmetered),
        }
    }
}

/// The rules with a bucket in this proxy (local rules, and global rules'
/// local tiers) that apply to a request, with their client keys.
pub(crate) fn active_rules<'a>(
    config: &'a Config,
    facts: &RequestFacts,
    client: &ClientKey,
) -> Vec<Active<'a>> {
    let view = facts.view();
    let mut active = Vec::with_capacity(config.rules.len());
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(local) = &rule.local else { continue };
        if !rule.matcher.matches(&view) {
            continue;
        }
        let computed = match rule.fixed_key_hash {
            Some(fixed) => Some(fixed),
            None => key_hash(&config.hash_key, &rule.key, facts, client),
        };
        let hash = match computed {
            Some(h) => h,
            None => match rule.when_key_missing {
                WhenKeyMissing::SkipRule => continue,
                WhenKeyMissing::SharedBucket => missing_key_hash(&config.hash_key),
            },
        };
        let (set, owner) = local.table.place(hash);
        active.push(Active {
            index,
            rule,
            local,
            key: local.table.key(set),
            set,
            owner,
            cost: facts
                .cost
                .map_or(rule.cost, |c| c.clamp(1, local.bucket.capacity())),
        });
    }
    active
}

/// Decides a request at monotonic time `now_ns`, spending from the buckets
/// in `store` when it goes through. Every bucket update reads the bucket
/// first; [`decide_with`] can skip the read.
pub fn decide<S: SharedStore + ?Sized>(
    config: &Config,
    store: &S,
    facts: &RequestFacts,
    now_ns: u64,
) -> Decision {
    decide_with(config, store, &mut WriteCache::disabled(), facts, now_ns)
}

/// [`decide`] with this worker's remembered writes: a bucket this worker
/// wrote last is updated with one presumed-token write instead of a read and
/// a write (see [`crate::optimistic`]). Only for a store whose CAS tokens
/// come from one counter for every key and writer, as Envoy's shared data.
pub fn decide_with<S: SharedStore + ?Sized>(
    config: &Config,
    store: &S,
    cache: &mut WriteCache,
    facts: &RequestFacts,
    now_ns: u64,
) -> Decision {
    // The client address is resolved once, for every rule that keys on it.
    let client = if config.needs.client_address {
        client_key(&config.client_address, facts)
    } else {
        ClientKey::default()
    };
    let active = active_rules(config, facts, &client);
    let mut decision = Decision {
        client_address_fallback: client.fallback,
        ..Decision::default()
    };
    if active.is_empty() {
        return decision;
    }

    // Step 1: with several buckets, check them all before spending any. The
    // readings serve the first spending attempt of step 2. A bucket this
    // worker wrote last is checked from its remembered value, without a
    // read: step 2 then spends it with one presumed-token write, which fails
    // (and reads) if anyone else wrote it since. A refusal is never decided
    // from a remembered value: it is checked with a read.
    let mut readings: Vec<Option<Read>> = Vec::new();
    let checked: Vec<Option<Verdict>> = if active.len() > 1 {
        let verdicts: Vec<Option<Verdict>> = active
            .iter()
            .map(|a| {
                let kept = cache.take_read(a.id());
                if kept.is_none() {
                    if let Some(copy) = cache.peek(a.id(), now_ns) {
                        let verdict = evaluate(Some(copy), &a.ask(now_ns)).0;
                        if matches!(verdict, Verdict::Spend { .. } | Verdict::Unmetered) {
                            readings.push(None);
                            return Some(verdict);
                        }
                    }
                }
                match kept.map_or_else(|| store.get(&a.key), Ok) {
                    Ok(read) => {
                        cache.observe_read(&read, written_after_ns, now_ns);
                        let verdict = evaluate(read.0.as_deref(), &a.ask(now_ns)).0;
                        readings.push(Some(read));
                        Some(verdict)
                    }
                    Err(_) => {
                        decision.counts.store_errors += 1;
                        readings.push(None);
                        None
                    }
                }
            })
            .collect();
        let reports: Vec<RuleReport> = active
            .iter()
            .zip(&verdicts)
            .map(|(a, v)| match v {
                Some(v) => a.report_verdict(v, false),
                None => a.report(RuleOutcome::StoreFailure),
            })
            .collect();
        let limited = reports
            .iter()
            .any(|r| r.refuses() && r.outcome != RuleOutcome::StoreFailure);
        let failed = reports.iter().any(|r| r.refuses());
        if limited || (failed && config.on_store_failure == FailureMode::Deny) {
            for (a, read) in active.iter().zip(readings) {
                if let Some(read) = read {
                    cache.record_read(a.id(), read);
                }
            }
            decision.reports = reports;
            decision.refusal = Some(refusal_for(&decision.reports));
            return decision;
        }
        verdicts
    } else {
        // One bucket: nothing checked ahead (no allocation either).
        Vec::new()
    };

    // Step 2: spend, one CAS loop per bucket.
    let mut reports: Vec<RuleReport> = Vec::with_capacity(active.len());
    let mut spent: Vec<(usize, Verdict)> = Vec::new();
    for (i, a) in active.iter().enumerate() {
        if active.len() > 1 {
            match checked.get(i).copied().flatten() {
                // Failed in step 1 and not refusing (shadow, or failure allowed).
                None => {
                    let mut r = a.report(RuleOutcome::StoreFailure);
                    if !a.rule.shadow {
                        r.outcome = RuleOutcome::FailedOpen;
                    }
                    reports.push(r);
                    continue;
                }
                Some(v @ Verdict::Unmetered) => {
                    reports.push(a.report_verdict(&v, false));
                    continue;
                }
                // A shadow bucket that would refuse spends nothing.
                Some(v @ (Verdict::Empty { .. } | Verdict::TableFull { .. })) => {
                    reports.push(a.report_verdict(&v, false));
                    continue;
                }
                Some(Verdict::Spend { .. }) => {}
            }
        }
        let ask = a.ask(now_ns);
        let reading = readings.get_mut(i).and_then(Option::take);
        let (outcome, guess) = optimistic::update(
            store,
            cache,
            a.target(config, now_ns),
            reading,
            written_after_ns,
            |value| evaluate(value, &ask),
        );
        if guess == Guess::Missed {
            decision.counts.guess_missed += 1;
        }
        let failure = match outcome {
            UpdateOutcome::Done { result, retries } => {
                decision.counts.cas_retries += u64::from(retries);
                let report = a.report_verdict(&result, true);
                match result {
                    // Only an earlier bucket's spend is ever given back.
                    Verdict::Spend { .. } if i + 1 < active.len() => spent.push((i, result)),
                    Verdict::Spend { .. } => {}
                    Verdict::Unmetered => {}
                    Verdict::Empty { .. } | Verdict::TableFull { .. } if a.rule.shadow => {}
                    Verdict::Empty { .. } | Verdict::TableFull { .. } => {
                        reports.push(report);
                        return refuse_after_spending(
                            config, store, cache, &active, &checked, reports, spent, decision,
                            now_ns,
                        );
                    }
                }
                reports.push(report);
                continue;
            }
            UpdateOutcome::RetriesExhausted { retries } => {
                decision.counts.cas_retries += u64::from(retries);
                decision.counts.cas_exhausted += 1;
                a.report(RuleOutcome::StoreFailure)
            }
            UpdateOutcome::HostError => {
                decision.counts.store_errors += 1;
                a.report(RuleOutcome::StoreFailure)
            }
        };
        if a.rule.shadow {
            reports.push(failure);
        } else if config.on_store_failure == FailureMode::Allow {
            reports.push(RuleReport {
                outcome: RuleOutcome::FailedOpen,
                ..failure
            });
        } else {
            reports.push(failure);
            return refuse_after_spending(
                config, store, cache, &active, &checked, reports, spent, decision, now_ns,
            );
        }
    }
    decision.reports = reports;
    decision
}

/// Decides a request first at `tick_ns`, a recent reading of the monotonic
/// clock (the adapter's root context reads it every 250 ms), and only when
/// that refuses the request, again at `now()`, the clock's current time.
///
/// Reading the clock costs about a tenth of the filter's work per request in
/// Envoy. A tick time is never ahead of the real time, so a bucket is
/// credited no more refill than it has earned, and refill not credited now
/// is credited by the next update (token arithmetic does not depend on how
/// time is cut up): a request allowed at the tick time is one the bucket
/// really has the tokens for. A refusal at the tick time may be due to
/// refill the tick has not seen yet, so every refusal is decided again at
/// the clock's time, and that decision is the answer: refusals, and the
/// `Retry-After` and `RateLimit` values they carry, are exact. A refused
/// request spends nothing (spends are given back), so deciding it twice
/// spends nothing twice; the store counts of both attempts are reported, and
/// the second starts from the first one's readings (no second read).
///
/// What lags by up to a tick: the `remaining` tokens reported on allowed
/// requests, and shadow rules, which may count a request as "would have
/// limited" that refill during the lag would have let through (an allowed
/// request is never decided twice: it has spent).
pub fn decide_at_tick<S, N>(
    config: &Config,
    store: &S,
    cache: &mut WriteCache,
    facts: &RequestFacts,
    tick_ns: u64,
    now: N,
) -> Decision
where
    S: SharedStore + ?Sized,
    N: FnOnce() -> u64,
{
    cache.record_reads();
    let first = decide_with(config, store, cache, facts, tick_ns);
    cache.stop_recording();
    if first.refusal.is_none() {
        cache.forget_reads();
        return first;
    }
    // The second decision starts from the readings the first one refused
    // on, instead of reading the buckets again: a write from them is a CAS
    // with their real tokens, and a refusal from them is as fresh as the
    // first decision's.
    let mut exact = decide_with(config, store, cache, facts, now().max(tick_ns));
    cache.forget_reads();
    exact.counts.add(&first.counts);
    exact
}

/// A bucket refused in step 2: give back what the earlier buckets spent and
/// report the rules after the refusing one from their step-1 reading.
#[allow(clippy::too_many_arguments)]
fn refuse_after_spending<S: SharedStore + ?Sized>(
    config: &Config,
    store: &S,
    cache: &mut WriteCache,
    active: &[Active<'_>],
    checked: &[Option<Verdict>],
    mut reports: Vec<RuleReport>,
    spent: Vec<(usize, Verdict)>,
    mut decision: Decision,
    now_ns: u64,
) -> Decision {
    for (i, verdict) in spent {
        let Some(a) = active.get(i) else { continue };
        let ask = a.ask(now_ns);
        let (outcome, guess) = optimistic::update(
            store,
            cache,
            a.target(config, now_ns),
            None,
            written_after_ns,
            |value| ((), give_back(value, &ask)),
        );
        if guess == Guess::Missed {
            decision.counts.guess_missed += 1;
        }
        match outcome {
            UpdateOutcome::Done { retries, .. } => {
                decision.counts.cas_retries += u64::from(retries);
                decision.counts.given_back += 1;
            }
            UpdateOutcome::RetriesExhausted { retries } => {
                decision.counts.cas_retries += u64::from(retries);
                decision.counts.cas_exhausted += 1;
            }
            UpdateOutcome::HostError => decision.counts.store_errors += 1,
        }
        if let Some(r) = reports.get_mut(i) {
            *r = a.report_verdict(&verdict, false);
        }
    }
    for (j, a) in active.iter().enumerate().skip(reports.len()) {
        let report = match checked.get(j).copied().flatten() {
            Some(v) => a.report_verdict(&v, false),
            None => a.report(RuleOutcome::StoreFailure),
        };
        reports.push(report);
    }
    decision.reports = reports;
    decision.refusal = Some(refusal_for(&decision.reports));
    decision
}

/// The refusal the refusing reports add up to: rate limited if any bucket is
/// empty, else table full, else store failure; wait for the slowest.
pub(crate) fn refusal_for(reports: &[RuleReport]) -> Refusal {
    let refusing: Vec<&RuleReport> = reports.iter().filter(|r| r.refuses()).collect();
    let reason = if refusing.iter().any(|r| r.outcome == RuleOutcome::Limited) {
        RefusalReason::RateLimited
    } else if refusing.iter().any(|r| r.outcome == RuleOutcome::TableFull) {
        RefusalReason::TableFull
    } else if refusing
        .iter()
        .any(|r| r.outcome == RuleOutcome::ServiceFailure)
    {
        RefusalReason::ServiceFailure
    } else {
        RefusalReason::StoreFailure
    };
    let retry_after = refusing
        .iter()
        .filter(|r| r.metered)
        .map(|r| r.reset)
        .max()
        .unwrap_or(1)
        .max(1);
    Refusal {
        reason,
        retry_after,
    }
}

/// Creates every slot-table key of `config` that does not exist yet, with
/// all slots free; returns how many it created. Envoy's CAS token 0 means
/// "write unconditionally", so updates are exact only on keys that exist:
/// creating them when the configuration loads, before this worker serves a
/// request, is what makes every later update a true CAS.
pub fn create_tables<S: SharedStore + ?Sized>(config: &Config, store: &S) -> Result<u64, String> {
    let mut created = 0;
    for local in config.rules.iter().filter_map(|r| r.local.as_ref()) {
        let empty = local.table.empty_value(&local.bucket);
        for set in 0..local.table.sets() {
            let key = local.table.key(set);
            match store.get(&key) {
                Ok((Some(_), _)) => {}
                Ok((None, _)) => {
                    store
                        .set(&key, &empty, None)
                        .map_err(|e| format!("cannot create shared-data key {key}: {e:?}"))?;
                    created += 1;
                }
                Err(e) => return Err(format!("cannot read shared-data key {key}: {e:?}")),
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimistic::fake::EnvoyStore;
    use palisade_shared::store::{MemoryStore, StoreError};
    use std::cell::Cell;

    const SEC: u64 = 1_000_000_000;

    fn config(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    /// Creates every set key up front, as the adapter does at configuration.
    fn create_tables<S: SharedStore>(config: &Config, store: &S) {
        super::create_tables(config, store).unwrap();
    }

    fn get(path: &str) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            host: "api.example.com".into(),
            path: path.into(),
            peer_address: Some("10.0.0.1:4000".into()),
            ..RequestFacts::default()
        }
    }

    fn from(ip: &str) -> RequestFacts {
        RequestFacts {
            peer_address: Some(format!("{ip}:4000")),
            ..get("/")
        }
    }

    fn allowed(d: &Decision) -> bool {
        d.refusal.is_none()
    }

    #[test]
    fn no_matching_rule_decides_nothing() {
        let c = config(
            r#"{"rules":[{"name":"admin","match":{"path":{"prefix":"/admin"}},
                "token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        let d = decide(&c, &store, &get("/public"), 0);
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn a_bucket_lets_capacity_through_then_refuses_then_refills() {
        let c = config(
            r#"{"rules":[{"name":"all","token_bucket":{"max_tokens":3,"tokens_per_fill":1,"fill_interval":"10s"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        for left in [2, 1, 0] {
            let d = decide(&c, &store, &get("/"), 0);
            assert!(allowed(&d));
            assert_eq!(d.reports[0].outcome, RuleOutcome::Spent);
            assert_eq!(d.reports[0].remaining, left);
        }
        let d = decide(&c, &store, &get("/"), SEC);
        assert_eq!(
            d.refusal,
            Some(Refusal {
                reason: RefusalReason::RateLimited,
                retry_after: 9
            })
        );
        assert_eq!(d.reports[0].outcome, RuleOutcome::Limited);
        assert_eq!((d.reports[0].remaining, d.reports[0].reset), (0, 9));
        // 10 s later one token is back, and only one.
        assert!(allowed(&decide(&c, &store, &get("/"), 10 * SEC)));
        assert!(!allowed(&decide(&c, &store, &get("/"), 10 * SEC)));
    }

    /// 50 clients behind a trusted CDN edge that writes `unknown` for each
    /// of them (`X-Forwarded-For: unknown, <edge>`, two trusted hops): they
    /// spend from one bucket, the edge's, which is what the proxies vouch
    /// for; every one of their requests reports the fallback (the adapter
    /// counts `palisade.ratelimit.client_address_fallback`). A client the
    /// edge names, and the clients of another edge, keep their own buckets.
    #[test]
    fn clients_a_trusted_proxy_calls_unknown_share_its_bucket_and_are_counted() {
        let c = config(
            r#"{"client_address":{"xff_trusted_hops":2},
                "rules":[{"name":"ip","key":["client_address"],"slots":64,
                "token_bucket":{"max_tokens":5,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        let via = |xff: String| RequestFacts {
            forwarded: Some(xff),
            ..from("10.0.0.2")
        };
        let mut allowed_n = 0;
        let mut fallbacks = 0;
        for i in 0..50 {
            // Each client also writes its own garbage further left.
            let d = decide(
                &c,
                &store,
                &via(format!("client-{i}, unknown, 192.0.2.10")),
                0,
            );
            allowed_n += usize::from(allowed(&d));
            fallbacks += usize::from(d.client_address_fallback == Some(Fallback::NotAnAddress));
        }
        assert_eq!(allowed_n, 5, "one bucket of 5 for every hidden client");
        assert_eq!(fallbacks, 50, "every hidden client is reported");
        let named = decide(&c, &store, &via("198.51.100.7, 192.0.2.10".into()), 0);
        assert!(allowed(&named));
        assert_eq!(named.client_address_fallback, None);
        let other_edge = decide(&c, &store, &via("unknown, 192.0.2.11".into()), 0);
        assert!(allowed(&other_edge));
        assert_eq!(
            other_edge.client_address_fallback,
            Some(Fallback::NotAnAddress)
        );
    }

    #[test]
    fn clients_are_isolated() {
        let c = config(
            r#"{"rules":[{"name":"ip","key":["client_address"],
                "token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        assert!(allowed(&decide(&c, &store, &from("10.0.0.1"), 0)));
        assert!(!allowed(&decide(&c, &store, &from("10.0.0.1"), 0)));
        assert!(allowed(&decide(&c, &store, &from("10.0.0.2"), 0)));
        assert!(!allowed(&decide(&c, &store, &from("10.0.0.2"), 0)));
    }

    #[test]
    fn a_refused_request_spends_nothing_in_other_buckets() {
        let c = config(
            r#"{"rules":[
                {"name":"global","token_bucket":{"max_tokens":100,"fill_interval":"1h"}},
                {"name":"login","match":{"path":{"exact":"/login"}},
                 "token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        assert!(allowed(&decide(&c, &store, &get("/login"), 0)));
        for _ in 0..10 {
            let d = decide(&c, &store, &get("/login"), 0);
            assert_eq!(d.refusal.unwrap().reason, RefusalReason::RateLimited);
            assert_eq!(d.reports[0].outcome, RuleOutcome::NotSpent);
            assert_eq!(d.reports[1].outcome, RuleOutcome::Limited);
        }
        // Only the one allowed /login spent from `global`.
        let d = decide(&c, &store, &get("/other"), 0);
        assert_eq!(d.reports[0].remaining, 98);
    }

    /// A store whose values can be changed behind the limiter's back between
    /// its read and its write, as another worker would.
    struct RacingStore {
        inner: MemoryStore,
        /// On the n-th get (0-based), run the interference after answering.
        interfere_at: Cell<Option<u32>>,
        gets: Cell<u32>,
        interference: Box<dyn Fn(&MemoryStore)>,
    }

    impl SharedStore for RacingStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            let n = self.gets.get();
            self.gets.set(n + 1);
            let answer = self.inner.get(key);
            if self.interfere_at.get() == Some(n) {
                self.interfere_at.set(None);
                (self.interference)(&self.inner);
            }
            answer
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_bucket_emptied_between_check_and_spend_gives_back_the_others() {
        let json = r#"{"rules":[
            {"name":"first","token_bucket":{"max_tokens":10,"fill_interval":"1h"}},
            {"name":"second","token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#;
        let c = config(json);
        let c2 = config(json);
        let store = RacingStore {
            inner: MemoryStore::new(),
            // Gets: 0 = check first, 1 = check second; the spends start
            // from those readings, and the spend of `second` meets a
            // mismatch and reads again (2). After the check of `second`,
            // another worker takes its only token.
            interfere_at: Cell::new(Some(1)),
            gets: Cell::new(0),
            interference: Box::new(move |inner| {
                let d = decide(&c2, inner, &get("/"), 0);
                assert!(d.refusal.is_none());
            }),
        };
        create_tables(&c, &store.inner);
        let d = decide(&c, &store, &get("/"), 0);
        assert_eq!(
            d.refusal.as_ref().unwrap().reason,
            RefusalReason::RateLimited
        );
        assert_eq!(d.counts.given_back, 1);
        assert_eq!(d.reports[0].outcome, RuleOutcome::NotSpent);
        assert_eq!(d.reports[1].outcome, RuleOutcome::Limited);
        // `first` lost only the other worker's token: 9 left, and this
        // request takes one more.
        let only_first = config(
            r#"{"rules":[{"name":"first","token_bucket":{"max_tokens":10,"fill_interval":"1h"}}]}"#,
        );
        let d = decide(&only_first, &store.inner, &get("/"), 0);
        assert_eq!(d.reports[0].remaining, 8);
    }

    #[test]
    fn cas_mismatches_are_retried_then_the_failure_mode_decides() {
        let deny = config(
            r#"{"max_cas_retries":3,"rules":[{"name":"all","token_bucket":{"max_tokens":5,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&deny, &store);
        store.inject_conflicts(3);
        let d = decide(&deny, &store, &get("/"), 0);
        assert!(allowed(&d));
        assert_eq!(d.counts.cas_retries, 3);
        assert_eq!(d.reports[0].remaining, 4);

        store.inject_conflicts(4);
        let d = decide(&deny, &store, &get("/"), 0);
        assert_eq!(
            d.refusal,
            Some(Refusal {
                reason: RefusalReason::StoreFailure,
                retry_after: 1
            })
        );
        assert_eq!(d.counts.cas_exhausted, 1);
        assert_eq!(d.reports[0].outcome, RuleOutcome::StoreFailure);

        let allow = config(
            r#"{"max_cas_retries":3,"on_store_failure":"allow",
                "rules":[{"name":"all","token_bucket":{"max_tokens":5,"fill_interval":"1h"}}]}"#,
        );
        store.inject_conflicts(4);
        let d = decide(&allow, &store, &get("/"), 0);
        assert!(allowed(&d));
        assert_eq!(d.counts.cas_exhausted, 1);
        assert_eq!(d.reports[0].outcome, RuleOutcome::FailedOpen);
        // Nothing was spent by the two failed requests.
        assert_eq!(decide(&allow, &store, &get("/"), 0).reports[0].remaining, 3);
    }

    struct BrokenStore;
    impl SharedStore for BrokenStore {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Err(StoreError::Host)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Host)
        }
    }

    #[test]
    fn host_errors_fail_closed_by_default() {
        for rules in [
            r#"[{"name":"a","token_bucket":{"max_tokens":5,"fill_interval":"1h"}}]"#,
            r#"[{"name":"a","token_bucket":{"max_tokens":5,"fill_interval":"1h"}},
                {"name":"b","token_bucket":{"max_tokens":5,"fill_interval":"1h"}}]"#,
        ] {
            let deny = config(&format!(r#"{{"rules":{rules}}}"#));
            let d = decide(&deny, &BrokenStore, &get("/"), 0);
            assert_eq!(d.refusal.unwrap().reason, RefusalReason::StoreFailure);
            assert!(d.counts.store_errors >= 1);
            let allow = config(&format!(
                r#"{{"on_store_failure":"allow","rules":{rules}}}"#
            ));
            let d = decide(&allow, &BrokenStore, &get("/"), 0);
            assert!(allowed(&d), "{d:?}");
            assert!(d
                .reports
                .iter()
                .all(|r| r.outcome == RuleOutcome::FailedOpen));
        }
    }

    #[test]
    fn shadow_rules_count_but_never_refuse() {
        let c = config(
            r#"{"rules":[
                {"name":"enforced","token_bucket":{"max_tokens":10,"fill_interval":"1h"}},
                {"name":"trial","shadow":true,"token_bucket":{"max_tokens":2,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        for _ in 0..2 {
            let d = decide(&c, &store, &get("/"), 0);
            assert!(allowed(&d));
            assert_eq!(d.reports[1].outcome, RuleOutcome::Spent);
        }
        for enforced_left in [7, 6, 5] {
            let d = decide(&c, &store, &get("/"), 0);
            assert!(allowed(&d));
            assert!(d.reports[1].would_refuse());
            assert_eq!(d.reports[0].remaining, enforced_left);
        }
        // Alone, a shadow rule also only reports.
        let alone = config(
            r#"{"rules":[{"name":"trial","shadow":true,"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&alone, &store);
        assert!(allowed(&decide(&alone, &store, &get("/"), 0)));
        let d = decide(&alone, &store, &get("/"), 0);
        assert!(allowed(&d));
        assert_eq!(d.reports[0].outcome, RuleOutcome::Limited);
        assert!(d.reports[0].would_refuse() && !d.reports[0].refuses());
    }

    #[test]
    fn missing_keys_share_a_bucket_or_skip_the_rule() {
        let c = config(
            r#"{"rules":[
                {"name":"tenant","key":[{"header":"x-tenant"}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
                {"name":"user","key":[{"identity":"sub"}],"when_key_missing":"skip_rule",
                 "token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        // No tenant header, no identity: one shared `tenant` bucket, `user` skipped.
        let d = decide(&c, &store, &get("/"), 0);
        assert!(allowed(&d));
        assert_eq!(d.reports.len(), 1);
        assert!(!allowed(&decide(&c, &store, &get("/"), 0)));
        // With a tenant header the request has its own bucket.
        let mut with_tenant = get("/");
        with_tenant.headers.push(("x-tenant".into(), "t1".into()));
        assert!(allowed(&decide(&c, &store, &with_tenant, 0)));
    }

    #[test]
    fn identity_claims_key_buckets() {
        use palisade_shared::contract::Identity;
        let c = config(
            r#"{"rules":[{"name":"per_user","key":[{"identity":"iss"},{"identity":"sub"}],
                "when_key_missing":"skip_rule",
                "token_bucket":{"max_tokens":2,"fill_interval":"1h"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        let as_user = |sub: &str| RequestFacts {
            identity: Some(std::rc::Rc::new(Identity {
                iss: "https://idp".into(),
                sub: Some(sub.into()),
                ..Identity::default()
            })),
            ..get("/")
        };
        assert!(allowed(&decide(&c, &store, &as_user("alice"), 0)));
        assert!(allowed(&decide(&c, &store, &as_user("alice"), 0)));
        assert!(!allowed(&decide(&c, &store, &as_user("alice"), 0)));
        assert!(allowed(&decide(&c, &store, &as_user("bob"), 0)));
        // Anonymous requests are not limited by a skip_rule identity rule.
        for _ in 0..5 {
            assert!(decide(&c, &store, &get("/"), 0).reports.is_empty());
        }
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_clients() {
        let c = config(
            r#"{"rules":[{"name":"ip","key":["client_address"],"slots":16,
                "on_table_full":"deny",
                "token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        let keys = store.len();
        assert_eq!(keys, 2, "16 slots: 2 sets of 8");
        let mut full = 0;
        let mut ok = 0;
        for i in 0..10_000u32 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            match decide(&c, &store, &from(&ip), 0).refusal {
                None => ok += 1,
                Some(r) => {
                    assert_eq!(r.reason, RefusalReason::TableFull);
                    assert_eq!(r.retry_after, 1);
                    full += 1;
                }
            }
        }
        assert_eq!(ok, 16, "exactly one client per slot got a bucket");
        assert_eq!(full, 10_000 - 16);
        assert_eq!(store.len(), keys, "no key was added");
        // Once the buckets have refilled, their slots serve new clients.
        let d = decide(&c, &store, &from("192.168.0.1"), SEC);
        assert!(allowed(&d));
        assert!(d.reports[0].claimed);
    }

    // Threads race on one store here; a wasm VM has no threads (Envoy runs
    // one VM per worker thread, and `make test-wasm` one VM per test binary).
    #[cfg(not(target_family = "wasm"))]
    mod concurrency {
        use super::*;
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};

        /// A thread-safe store with Envoy's CAS semantics, for real concurrency.
        type Entries = HashMap<String, (Vec<u8>, u32)>;

        #[derive(Default, Clone)]
        struct ThreadStore(Arc<Mutex<(Entries, u32)>>);

        impl SharedStore for ThreadStore {
            fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                let g = self.0.lock().unwrap();
                Ok(match g.0.get(key) {
                    Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                    None => (None, None),
                })
            }
            fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
                let mut g = self.0.lock().unwrap();
                if let (Some(cas), Some((_, current))) = (cas.filter(|c| *c != 0), g.0.get(key)) {
                    if cas != *current {
                        return Err(StoreError::CasMismatch);
                    }
                }
                // One token counter for every key, as Envoy's; a failed set
                // takes no token.
                g.1 += 1;
                let next = g.1;
                g.0.insert(key.to_string(), (value.to_vec(), next));
                // Widen the race window between another thread's get and set.
                drop(g);
                std::thread::yield_now();
                Ok(())
            }
        }

        #[test]
        fn exact_under_real_concurrency() {
            let c = Arc::new(config(
                r#"{"max_cas_retries":10000,"rules":[
                    {"name":"global","token_bucket":{"max_tokens":500,"fill_interval":"1h"}},
                    {"name":"ip","key":["client_address"],"token_bucket":{"max_tokens":100,"fill_interval":"1h"}}]}"#,
            ));
            let store = ThreadStore::default();
            create_tables(&c, &store);
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let c = Arc::clone(&c);
                    let store = store.clone();
                    std::thread::spawn(move || {
                        // Each thread is a worker with its own remembered writes.
                        let mut cache = WriteCache::new();
                        let mut ok = 0u32;
                        for i in 0..200u32 {
                            // 4 clients, each hammered by two threads.
                            let facts = from(&format!("10.0.0.{}", (t + i) % 4));
                            if decide_with(&c, &store, &mut cache, &facts, 0)
                                .refusal
                                .is_none()
                            {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            // Each of the 4 clients gets exactly its 100: 400 of 1600, and
            // `global` (500) never ran dry.
            assert_eq!(total, 400);
            let probe = config(
                r#"{"rules":[{"name":"global","token_bucket":{"max_tokens":500,"fill_interval":"1h"}}]}"#,
            );
            let d = decide(&probe, &store, &get("/"), 0);
            assert_eq!(
                d.reports[0].remaining, 99,
                "global spent exactly 400 (+1 probe)"
            );
        }
    }

    /// Worker A's store: before each of A's writes, worker B may serve a
    /// whole request (with its own remembered writes) on the same store.
    struct Interleaved<'a> {
        inner: &'a EnvoyStore,
        schedule: Cell<u64>,
        other: Box<dyn Fn() + 'a>,
    }

    impl SharedStore for Interleaved<'_> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            let s = self
                .schedule
                .get()
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.schedule.set(s);
            if (s >> 33).is_multiple_of(3) {
                (self.other)();
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn two_workers_interleaving_with_presumed_tokens_let_exactly_the_capacity_through() {
        use std::cell::RefCell;
        let json = r#"{"rules":[
            {"name":"global","token_bucket":{"max_tokens":150,"fill_interval":"1h"}},
            {"name":"ip","key":["client_address"],"token_bucket":{"max_tokens":40,"fill_interval":"1h"}}]}"#;
        let single = r#"{"rules":[{"name":"global","token_bucket":{"max_tokens":150,"fill_interval":"1h"}}]}"#;
        for (json, expected) in [(single, 150), (json, 120)] {
            for seed in 0..20 {
                let c = config(json);
                let inner = EnvoyStore::default();
                create_tables(&c, &inner);
                let b_cache = RefCell::new(WriteCache::new());
                let b_ok = Cell::new(0u32);
                let b_turn = Cell::new(0u32);
                let store = Interleaved {
                    inner: &inner,
                    schedule: Cell::new(seed),
                    other: Box::new(|| {
                        let i = b_turn.get();
                        b_turn.set(i + 1);
                        let facts = from(&format!("10.0.0.{}", i % 3));
                        let d = decide_with(&c, &inner, &mut b_cache.borrow_mut(), &facts, 5 * SEC);
                        b_ok.set(b_ok.get() + u32::from(d.refusal.is_none()));
                    }),
                };
                let mut a_cache = WriteCache::new();
                let mut a_ok = 0;
                for i in 0..300u32 {
                    let facts = from(&format!("10.0.0.{}", i % 3));
                    let d = decide_with(&c, &store, &mut a_cache, &facts, 5 * SEC);
                    a_ok += u32::from(d.refusal.is_none());
                    assert_eq!(d.counts.cas_exhausted, 0);
                }
                // Three clients of 40 under a global 150: 120 with both
                // rules; 150 with the global rule alone.
                assert_eq!(a_ok + b_ok.get(), expected, "seed {seed}");
                assert!(b_turn.get() > 20, "B served requests in between");
            }
        }
    }

    #[test]
    fn one_worker_updates_a_hot_bucket_with_one_write() {
        let c = config(
            r#"{"rules":[{"name":"all","token_bucket":{"max_tokens":1000,"fill_interval":"1s"}}]}"#,
        );
        let store = EnvoyStore::default();
        create_tables(&c, &store);
        store.gets.set(0);
        store.sets.set(0);
        let mut cache = WriteCache::new();
        for i in 0..100u64 {
            let d = decide_with(&c, &store, &mut cache, &get("/"), 5 * SEC + i);
            assert!(allowed(&d));
            assert_eq!(d.counts, StoreCounts::default());
        }
        // The created value is too old to trust its token, our first write
        // is not: two reads, then writes only.
        assert_eq!(store.gets.get(), 2);
        assert_eq!(store.sets.get(), 100);
        let d = decide(&c, &store, &get("/"), 5 * SEC + 100);
        assert_eq!(d.reports[0].remaining, 899);
    }

    #[test]
    fn one_worker_checks_and_spends_several_buckets_with_writes_only() {
        let c = config(
            r#"{"rules":[
                {"name":"global","token_bucket":{"max_tokens":1000,"fill_interval":"1h"}},
                {"name":"per_client","key":["client_address"],"token_bucket":{"max_tokens":1000,"fill_interval":"1h"}}]}"#,
        );
        let store = EnvoyStore::default();
        create_tables(&c, &store);
        let mut cache = WriteCache::new();
        for i in 0..3u64 {
            assert!(allowed(&decide_with(
                &c,
                &store,
                &mut cache,
                &from("10.0.0.1"),
                5 * SEC + i
            )));
        }
        let (gets, sets) = (store.gets.get(), store.sets.get());
        for i in 3..53u64 {
            let d = decide_with(&c, &store, &mut cache, &from("10.0.0.1"), 5 * SEC + i);
            assert!(allowed(&d));
        }
        assert_eq!(
            store.gets.get(),
            gets,
            "checked from this worker's last writes"
        );
        assert_eq!(store.sets.get(), sets + 100, "one write per bucket");
        // Another writer in between: the presumed write misses, the bucket
        // is read, and the counts stay exact.
        let other = decide(&c, &store, &from("10.0.0.1"), 5 * SEC + 60);
        assert!(allowed(&other));
        let d = decide_with(&c, &store, &mut cache, &from("10.0.0.1"), 5 * SEC + 61);
        assert!(allowed(&d));
        assert_eq!(d.counts.guess_missed, 1, "{d:?}");
        let probe = decide(&c, &store, &from("10.0.0.1"), 5 * SEC + 62);
        assert_eq!(
            probe.reports[0].remaining,
            1000 - 56,
            "53 + 1 + 1 + this probe"
        );
        assert_eq!(probe.reports[1].remaining, 1000 - 56);
    }

    #[test]
    fn a_refusal_at_the_tick_time_is_decided_again_at_the_clock_time() {
        let c = config(
            r#"{"rules":[
                {"name":"global","token_bucket":{"max_tokens":100,"fill_interval":"1h"}},
                {"name":"fast","token_bucket":{"max_tokens":2,"tokens_per_fill":1,"fill_interval":"100ms"}}]}"#,
        );
        let store = EnvoyStore::default();
        create_tables(&c, &store);
        let mut cache = WriteCache::new();
        let tick = 5 * SEC;
        let clock_reads = Cell::new(0);
        let mut at_tick = |now_ns: u64| {
            decide_at_tick(&c, &store, &mut cache, &get("/"), tick, || {
                clock_reads.set(clock_reads.get() + 1);
                now_ns
            })
        };
        // Allowed at the tick time: the clock is not read.
        assert!(allowed(&at_tick(tick + SEC / 20)));
        assert!(allowed(&at_tick(tick + SEC / 20)));
        assert_eq!(clock_reads.get(), 0);
        // Empty at the tick time, but 150 ms later one token has refilled:
        // decided again at the clock's time, allowed.
        let d = at_tick(tick + 150 * SEC / 1000);
        assert!(allowed(&d), "{d:?}");
        assert_eq!(clock_reads.get(), 1);
        // Still at the tick time the bucket is empty, and at the clock's
        // time too: refused with the exact wait (50 ms, rounded up to 1 s),
        // and nothing was spent from `global` by the refusals. Only the
        // refusing bucket is read (`global` is checked from this worker's
        // last write), and the second decision reads nothing: it starts from
        // the first one's reading.
        let gets = store.gets.get();
        let d = at_tick(tick + 150 * SEC / 1000);
        assert_eq!(d.refusal.as_ref().unwrap().retry_after, 1);
        assert_eq!(d.reports[1].outcome, RuleOutcome::Limited);
        assert_eq!(clock_reads.get(), 2);
        assert_eq!(
            store.gets.get(),
            gets + 1,
            "one reading, of the refusing bucket"
        );
        let probe = config(
            r#"{"rules":[{"name":"global","token_bucket":{"max_tokens":100,"fill_interval":"1h"}}]}"#,
        );
        let d = decide(&probe, &store, &get("/"), tick + SEC);
        assert_eq!(d.reports[0].remaining, 96, "3 allowed + this probe");
    }

    #[test]
    fn a_refusal_at_the_tick_time_spends_from_its_reading_when_refill_allows() {
        let c = config(
            r#"{"rules":[{"name":"fast","token_bucket":{"max_tokens":1,"fill_interval":"100ms"}}]}"#,
        );
        let store = EnvoyStore::default();
        create_tables(&c, &store);
        let mut cache = WriteCache::new();
        let tick = 5 * SEC;
        assert!(allowed(&decide_at_tick(
            &c,
            &store,
            &mut cache,
            &get("/"),
            tick,
            || tick
        )));
        // Empty at the tick time; at the clock's time (200 ms on) refilled:
        // one read (the first decision's), one write.
        let (gets, sets) = (store.gets.get(), store.sets.get());
        let later = tick + SEC / 5;
        let d = decide_at_tick(&c, &store, &mut cache, &get("/"), tick, || later);
        assert!(allowed(&d), "{d:?}");
        assert_eq!((store.gets.get() - gets, store.sets.get() - sets), (1, 1));
        // Another worker spends the refill in between: the CAS from the
        // kept reading misses and the request is refused, exactly.
        let mut other = WriteCache::new();
        let again = later + SEC / 5;
        let d = decide_at_tick(&c, &store, &mut cache, &get("/"), tick, || {
            assert!(allowed(&decide_with(
                &c,
                &store,
                &mut other,
                &get("/"),
                again
            )));
            again
        });
        assert_eq!(d.refusal.unwrap().reason, RefusalReason::RateLimited);
        assert_eq!(d.counts.cas_retries, 1);
    }

    #[test]
    fn a_tick_time_never_lets_more_through_than_the_clock_time() {
        // One bucket, 10 tokens a second: over 3 s of requests every 7 ms
        // decided at a tick time that lags up to 250 ms, at most the burst
        // plus 3 s of refill pass, and as many as with the clock's time
        // within the refill of one lag.
        let c = config(
            r#"{"rules":[{"name":"r","token_bucket":{"max_tokens":5,"tokens_per_fill":10,"fill_interval":"1s"}}]}"#,
        );
        let run = |lagging: bool| {
            let store = EnvoyStore::default();
            create_tables(&c, &store);
            let mut cache = WriteCache::new();
            let mut ok = 0;
            let start = 10 * SEC;
            for i in 0..430u64 {
                let now = start + i * 7_000_000;
                let tick = if lagging { now - now % (SEC / 4) } else { now };
                let d = decide_at_tick(&c, &store, &mut cache, &get("/"), tick, || now);
                ok += u32::from(allowed(&d));
            }
            ok
        };
        let exact = run(false);
        let lagging = run(true);
        assert!(exact <= 5 + 31, "{exact}");
        assert!(lagging <= exact, "{lagging} > {exact}");
        assert!(lagging + 3 >= exact, "{lagging} vs {exact}");
    }

    #[test]
    fn retry_after_waits_for_the_slowest_empty_bucket() {
        let c = config(
            r#"{"rules":[
                {"name":"fast","token_bucket":{"max_tokens":1,"fill_interval":"2s"}},
                {"name":"slow","token_bucket":{"max_tokens":1,"fill_interval":"30s"}}]}"#,
        );
        let store = MemoryStore::new();
        create_tables(&c, &store);
        assert!(allowed(&decide(&c, &store, &get("/"), 0)));
        let d = decide(&c, &store, &get("/"), 0);
        assert_eq!(d.refusal.as_ref().unwrap().retry_after, 30);
        assert_eq!(d.refusing().count(), 2);
    }
}
