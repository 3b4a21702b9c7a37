//! The rate limiter as a stage of the engine: reads what the rules need,
//! asks the limiter, publishes the decision and applies it. Nothing here
//! decides anything.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Counter, DecisionKind, DecisionSet, Exchange, Host, HostStore, LogLevel,
    Module, Needs, Refusal, ResponseStep, Stage, Step, Wake,
};

use crate::clock::MonotonicClock;
use crate::config::Config;
use crate::key::RequestFacts;
use crate::limiter::{create_tables, decide_at_tick, Decision, RuleOutcome};
use crate::optimistic::WriteCache;
use crate::response::{allowed_headers, decision_json_into, denial, published, refusal_reply};

/// How often the root context ticks: batched counters reach Envoy and the
/// tick clock is read.
const TICK_PERIOD: Duration = Duration::from_millis(250);

/// A counter bumped on every allowed request: counted in the VM and added to
/// Envoy's counter on every tick, since a metric host call per request
/// costs as much as a tenth of the stage's whole work. The counter lags by
/// at most the tick period; counts of the last period are lost when the VM
/// stops (flushing them would need `proxy_on_done`, a VM call per request).
struct Batched {
    counter: Counter,
    pending: Cell<u64>,
}

impl Batched {
    fn define(host: &dyn Host, name: &str) -> Self {
        Batched {
            counter: Counter::define(host, name),
            pending: Cell::new(0),
        }
    }

    fn inc(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self, host: &dyn Host) {
        let n = self.pending.replace(0);
        if n > 0 {
            self.counter.add(host, n);
        }
    }
}

struct RuleMetrics {
    allowed: Batched,
    limited: Counter,
    shadow_limited: Counter,
    table_full: Counter,
    unmetered: Counter,
}

struct Metrics {
    rules: Vec<RuleMetrics>,
    denied: Counter,
    cas_retries: Counter,
    cas_exhausted: Counter,
    cas_guess_missed: Counter,
    store_errors: Counter,
    store_failure_allowed: Counter,
    given_back: Counter,
    slot_claims: Counter,
    slot_evictions: Counter,
    client_address_fallback: Counter,
}

impl Metrics {
    fn define(host: &dyn Host, config: &Config) -> Self {
        let global = |what: &str| Counter::define(host, &format!("palisade.ratelimit.{what}"));
        Metrics {
            rules: config
                .rules
                .iter()
                .map(|r| {
                    let name = |what: &str| format!("palisade.ratelimit.rule.{}.{what}", r.name);
                    RuleMetrics {
                        allowed: Batched::define(host, &name("allowed")),
                        limited: Counter::define(host, &name("limited")),
                        shadow_limited: Counter::define(host, &name("shadow_limited")),
                        table_full: Counter::define(host, &name("table_full")),
                        unmetered: Counter::define(host, &name("unmetered")),
                    }
                })
                .collect(),
            denied: global("denied"),
            cas_retries: global("cas_retries"),
            cas_exhausted: global("cas_exhausted"),
            cas_guess_missed: global("cas_guess_missed"),
            store_errors: global("store_errors"),
            store_failure_allowed: global("store_failure_allowed"),
            given_back: global("given_back"),
            slot_claims: global("slot_claims"),
            slot_evictions: global("slot_evictions"),
            client_address_fallback: global("client_address_fallback"),
        }
    }

    fn flush(&self, host: &dyn Host) {
        for rule in &self.rules {
            rule.allowed.flush(host);
        }
    }

    fn record(&self, host: &dyn Host, d: &Decision) {
        let refused = d.refusal.is_some();
        for r in &d.reports {
            let Some(m) = self.rules.get(r.rule) else {
                continue;
            };
            match r.outcome {
                RuleOutcome::Spent if !refused => m.allowed.inc(),
                RuleOutcome::Limited if r.shadow => m.shadow_limited.inc(host),
                RuleOutcome::Limited => m.limited.inc(host),
                RuleOutcome::TableFull => {
                    m.table_full.inc(host);
                    if r.shadow {
                        m.shadow_limited.inc(host);
                    } else {
                        m.limited.inc(host);
                    }
                }
                RuleOutcome::Unmetered => m.unmetered.inc(host),
                RuleOutcome::FailedOpen => self.store_failure_allowed.inc(host),
                _ => {}
            }
            if r.claimed {
                self.slot_claims.inc(host);
            }
            if r.evicted {
                self.slot_evictions.inc(host);
            }
        }
        if refused {
            self.denied.inc(host);
        }
        if d.client_address_fallback.is_some() {
            self.client_address_fallback.inc(host);
        }
        let c = &d.counts;
        for (counter, n) in [
            (self.cas_retries, c.cas_retries),
            (self.cas_exhausted, c.cas_exhausted),
            (self.cas_guess_missed, c.guess_missed),
            (self.store_errors, c.store_errors),
            (self.given_back, c.given_back),
        ] {
            if n > 0 {
                counter.add(host, n);
            }
        }
    }
}

/// The rate-limit stage.
pub struct RateLimitStage {
    config: Config,
    metrics: Metrics,
    clock: MonotonicClock,
    /// This worker's remembered bucket writes (one VM per worker thread).
    cache: RefCell<WriteCache>,
    /// The monotonic clock as read at the last tick (or refusal): see
    /// [`decide_at_tick`].
    tick_ns: Cell<u64>,
    /// The buffer `palisade.ratelimit` is written into, request after request.
    scratch: RefCell<Vec<u8>>,
}

/// The standalone module `palisade_ratelimit.wasm`.
pub struct RateLimitModule;

impl Module for RateLimitModule {
    type Stage = RateLimitStage;
    const NAME: &'static str = "ratelimit";

    fn configure(config: &[u8], host: &dyn Host) -> Result<RateLimitStage, ConfigError> {
        RateLimitStage::configure(config, host)
    }
}

/// What the stage keeps for one request: the RateLimit fields for the response.
#[derive(Debug, Default)]
pub struct RateLimitRequest {
    response_headers: Vec<(String, String)>,
}

impl RateLimitStage {
    /// The stage for a configuration: metrics defined, slot tables created.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        let created = create_tables(&config, &HostStore(host))
            .map_err(|e| ConfigError::invalid("rules", e))?;
        let slots: u64 = config.rules.iter().map(|r| r.table.slots()).sum();
        Self::log(
            host,
            LogLevel::Info,
            &format!(
                "{} rule(s) in domain `{}`, {slots} bucket slot(s), {created} shared-data key(s) created",
                config.rules.len(),
                config.domain
            ),
        );
        let clock = MonotonicClock::new();
        Ok(RateLimitStage {
            metrics: Metrics::define(host, &config),
            tick_ns: Cell::new(clock.now_ns()),
            clock,
            config,
            cache: RefCell::new(WriteCache::new()),
            scratch: RefCell::new(Vec::with_capacity(128)),
        })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, RateLimitModule::NAME, level, message);
    }

    fn advance_tick_clock(&self, now_ns: u64) {
        if now_ns > self.tick_ns.get() {
            self.tick_ns.set(now_ns);
        }
    }

    /// Decides at the tick clock, and at the clock's time when that refuses
    /// the request (see [`decide_at_tick`]).
    fn decide(&self, host: &dyn Host, facts: &RequestFacts) -> Decision {
        let now = || {
            let now_ns = self.clock.now_ns();
            self.advance_tick_clock(now_ns);
            now_ns
        };
        let mut fresh = WriteCache::disabled();
        let mut cache = self.cache.try_borrow_mut();
        let cache = cache.as_deref_mut().unwrap_or(&mut fresh);
        decide_at_tick(
            &self.config,
            &HostStore(host),
            cache,
            facts,
            self.tick_ns.get(),
            now,
        )
    }

    /// Reads what `config`'s rules need from the request, and nothing else
    /// (also for a stage that spends from these buckets in other units:
    /// the LLM stage's token budgets).
    pub fn request_facts(config: &Config, cx: &mut Exchange<'_>) -> RequestFacts {
        let needs = &config.needs;
        let host = cx.host;
        let text = |s: &str| s.to_string();
        let mut facts = RequestFacts::default();
        if needs.method {
            facts.method = text(cx.request.method());
        }
        if needs.host {
            facts.host = text(cx.request.authority());
        }
        if needs.path {
            facts.path = text(cx.request.path());
        }
        if needs.route_name {
            facts.route_name = text(cx.attributes.route_name(host));
        }
        if needs.client_address {
            facts.peer_address = cx
                .attributes
                .string(host, Attribute::SourceAddress)
                .map(str::to_string);
            let trusted = &config.client_address.trusted;
            if trusted.hops > 0 {
                facts.forwarded = cx.request.header(trusted.header.name()).map(str::to_string);
            }
        }
        for name in &needs.headers {
            if let Some(value) = cx.request.header(name) {
                facts.headers.push((name.clone(), value.to_string()));
            }
        }
        if needs.identity {
            facts.identity = cx.decisions.identity(host).cloned();
        }
        facts
    }

    /// The request headers [`Self::request_facts`] reads for `config`.
    pub fn request_headers(config: &Config) -> Vec<String> {
        let n = &config.needs;
        let trusted = &config.client_address.trusted;
        let mut headers: Vec<String> = Vec::new();
        for (wanted, name) in [
            (n.method, ":method"),
            (n.host, ":authority"),
            (n.path, ":path"),
            (n.client_address && trusted.hops > 0, trusted.header.name()),
        ] {
            if wanted {
                headers.push(name.to_string());
            }
        }
        headers.extend(n.headers.iter().cloned());
        headers
    }

    fn log_decision(&self, host: &dyn Host, d: &Decision) {
        let config = &self.config;
        let name = |i: usize| config.rules.get(i).map_or("?", |r| r.name.as_str());
        for r in d.reports.iter().filter(|r| r.would_refuse()) {
            Self::log(
                host,
                LogLevel::Info,
                &format!(
                    "shadow rule `{}` would have limited this request ({:?}, retry in {} s)",
                    name(r.rule),
                    r.outcome,
                    r.reset
                ),
            );
        }
        if d.counts.cas_exhausted + d.counts.store_errors > 0 {
            Self::log(
                host,
                LogLevel::Warn,
                &format!(
                    "shared buckets unavailable ({} CAS loop(s) out of retries, {} host error(s)); on_store_failure = {:?}",
                    d.counts.cas_exhausted, d.counts.store_errors, config.on_store_failure
                ),
            );
        }
        if let Some(refusal) = &d.refusal {
            let rules: Vec<&str> = d.refusing().map(|r| name(r.rule)).collect();
            Self::log(
                host,
                LogLevel::Debug,
                &format!(
                    "refused ({}) by rule(s) {}; retry in {} s",
                    refusal.reason.as_str(),
                    rules.join(", "),
                    refusal.retry_after
                ),
            );
        }
    }
}

impl Stage for RateLimitStage {
    type Request = RateLimitRequest;

    fn needs(&self) -> Needs {
        Needs {
            request_headers: Self::request_headers(&self.config),
            tick: Some(TICK_PERIOD),
            provides: DecisionSet::of(&[DecisionKind::RateLimit, DecisionKind::Denial]),
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut RateLimitRequest, cx: &mut Exchange<'_>) -> Step {
        let config = &self.config;
        if config.rules.is_empty() {
            return Step::Continue;
        }
        let host = cx.host;
        let facts = Self::request_facts(&self.config, cx);
        let decision = self.decide(host, &facts);
        self.metrics.record(host, &decision);
        self.log_decision(host, &decision);
        if let Some(state) = published(config, &decision) {
            let mut fresh = Vec::new();
            let mut scratch = self.scratch.try_borrow_mut();
            let json = scratch.as_deref_mut().unwrap_or(&mut fresh);
            decision_json_into(&state, json);
            engine::publish(host, RateLimitModule::NAME, contract::RATELIMIT, json);
            cx.decisions.set_ratelimit(state);
        }
        if decision.refusal.is_some() {
            // The request id is read only for a refusal.
            let reply = refusal_reply(config, &decision, cx.request.request_id(host));
            if let (Some(reply), Some(denial)) = (reply, denial(config, &decision)) {
                return Step::Refuse(Refusal {
                    filter: RateLimitModule::NAME,
                    reason: denial.reason,
                    reply,
                });
            }
        }
        request.response_headers = allowed_headers(config, &decision);
        Step::Continue
    }

    fn on_response_headers(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
    ) -> ResponseStep {
        for (name, value) in std::mem::take(&mut request.response_headers) {
            cx.response.add(cx.host, &name, &value);
        }
        ResponseStep::Continue
    }

    fn on_tick(&self, host: &dyn Host) -> Wake {
        self.advance_tick_clock(self.clock.now_ns());
        self.metrics.flush(host);
        Wake::No
    }
}

#[cfg(test)]
mod tests {
    //! The rate-limit stage in the engine against the fake host: buckets in
    //! shared data, the RateLimit fields on the response, the refusal.

    use palisade_shared::contract;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::{Action, Engine, Module};

    use super::*;

    #[test]
    fn a_bucket_of_two_allows_two_then_refuses_with_its_fields() {
        let host = FakeHost::new()
            .with_request("GET", "/")
            .with_property(&["source", "address"], b"10.0.0.1:4000");
        let stage = RateLimitModule::configure(
            br#"{"rate_limit_headers": "always", "rules": [{"name": "two", "key": ["client_address"],
                 "token_bucket": {"max_tokens": 2, "fill_interval": "3600s"}}]}"#,
            &host,
        )
        .unwrap();
        let engine = Engine::new(stage, RateLimitModule::NAME, 1, &host).unwrap();
        assert_eq!(host.tick_period(), Some(TICK_PERIOD));
        // One token per hour: the bucket is full again an hour per token spent.
        for (remaining, full_in) in [(1, 3600), (0, 7200)] {
            host.set_response_headers(&[(":status", "200")]);
            let mut slot = None;
            assert_eq!(
                engine.on_request_headers(2, &mut slot, true, &host),
                Action::Continue
            );
            engine.on_response_headers(2, &mut slot, &host);
            let fields: Vec<(String, String)> = host.response_headers();
            assert!(
                fields.contains(&(
                    "ratelimit".into(),
                    format!("\"two\";r={remaining};t={full_in}")
                )),
                "{fields:?}"
            );
            assert_eq!(
                host.property_json(contract::RATELIMIT).unwrap()["remaining"],
                remaining
            );
        }
        assert_eq!(
            engine.on_request_headers(2, &mut None, true, &host),
            Action::Pause
        );
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.header("retry-after"), Some("3600"));
        assert_eq!(host.metric("palisade.ratelimit.denied"), 1);
        assert_eq!(host.metric("palisade.ratelimit.rule.two.limited"), 1);
        // Allowed requests are counted in the VM and reach Envoy at the tick.
        assert_eq!(host.metric("palisade.ratelimit.rule.two.allowed"), 0);
        engine.on_tick(&host);
        assert_eq!(host.metric("palisade.ratelimit.rule.two.allowed"), 2);
    }
}
