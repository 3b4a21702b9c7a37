//! The rate limiter as a stage of the engine: reads what the rules need,
//! asks the limiter, publishes the decision and applies it. Nothing here
//! decides anything.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Body, BodyStep, CallResponse, Counter, DecisionKind, DecisionSet, Exchange,
    Host, HostStore, LogLevel, Module, Needs, Refusal, ResponseStep, Stage, Step, Wake,
};

use crate::clock::MonotonicClock;
use crate::config::{Config, GlobalMode};
use crate::global::{self, Answer, Entries, Failure};
use crate::hash_key;
use crate::key::{HashKey, RequestFacts};
use crate::limiter::{create_tables, decide_at_tick, Decision, RuleOutcome, RuleReport};
use crate::optimistic::WriteCache;
use crate::response::{allowed_headers, decision_json_into, denial, published, refusal_reply};
use crate::rls;
use crate::share::{Admission, ShareKey, ShareTable};

/// How often the root context ticks: batched counters reach Envoy, the
/// tick clock is read, and asynchronous global rules report their hits.
const TICK_PERIOD: Duration = Duration::from_millis(250);
/// A request waiting for the rate-limit service is decided by its rule's
/// failure mode once Envoy ends the call at the rule's timeout (Envoy
/// answers every call). The engine's deadline, checked on ticks, is a
/// backstop one tick later: should Envoy not end a call, the engine
/// refuses the request (503) rather than hold it.
const DEADLINE_MARGIN_MS: i64 = 250;
/// How much earlier than its timeout a failed call still counts as timed out.
const TIMEOUT_SLACK_MS: u64 = 5;
/// The most background reports one worker sends per tick.
const MAX_REPORTS_PER_TICK: usize = 256;
/// The largest answer read from the rate-limit service.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often a worker warns that the rate-limit service fails (it fails
/// for every request while it is down; the metrics count each).
const SERVICE_WARNING_INTERVAL_MS: i64 = 10_000;

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
    /// Global rules only.
    service: Option<ServiceRuleMetrics>,
}

struct ServiceRuleMetrics {
    failure_allowed: Counter,
    failure_denied: Counter,
    admitted_from_share: Batched,
}

/// The rate-limit service's calls, for every global rule.
struct ServiceMetrics {
    calls: Counter,
    errors: Counter,
    timeouts: Counter,
    reports: Counter,
}

impl ServiceMetrics {
    fn define(host: &dyn Host) -> Self {
        let name =
            |what: &str| Counter::define(host, &format!("palisade.ratelimit.service_{what}"));
        ServiceMetrics {
            calls: name("calls"),
            errors: name("errors"),
            timeouts: name("timeouts"),
            reports: name("reports"),
        }
    }

    /// Counts a call's failure.
    fn failed(&self, host: &dyn Host, answer: &Answer) {
        match answer {
            Answer::Failed(Failure::Timeout) => self.timeouts.inc(host),
            Answer::Failed(_) => self.errors.inc(host),
            Answer::Verdict { .. } => {}
        }
    }
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
                        service: r.global.map(|_| ServiceRuleMetrics {
                            failure_allowed: Counter::define(
                                host,
                                &name("service_failure_allowed"),
                            ),
                            failure_denied: Counter::define(host, &name("service_failure_denied")),
                            admitted_from_share: Batched::define(
                                host,
                                &name("admitted_from_share"),
                            ),
                        }),
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
            if let Some(service) = &rule.service {
                service.admitted_from_share.flush(host);
            }
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
                RuleOutcome::ServiceFailure if !r.shadow => {
                    if let Some(service) = &m.service {
                        service.failure_denied.inc(host);
                    }
                }
                RuleOutcome::ServiceFailedOpen => {
                    if let Some(service) = &m.service {
                        service.failure_allowed.inc(host);
                    }
                }
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
    /// The rate-limit service's calls (defined when a rule is global).
    service_metrics: Option<ServiceMetrics>,
    /// This worker's shares of the asynchronous global rules.
    shares: RefCell<ShareTable>,
    /// Background reports in flight: call token, the key reported and
    /// when (host clock, ms).
    reports: RefCell<HashMap<u32, (ShareKey, i64)>>,
    /// When this worker last warned that the service fails.
    service_warned_ms: Cell<i64>,
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

/// What the stage keeps for one request: the RateLimit fields for the
/// response, and while it waits for the rate-limit service, what it waits for.
#[derive(Debug, Default)]
pub struct RateLimitRequest {
    response_headers: Vec<(String, String)>,
    waiting: Option<Box<Waiting>>,
}

/// A request waiting for the rate-limit service.
#[derive(Debug)]
struct Waiting {
    /// The local rules' decision (it let the request through).
    local: Decision,
    /// The global rules decided so far.
    reports: Vec<RuleReport>,
    /// The calls not answered yet.
    calls: Vec<PendingCall>,
    /// When the engine stops waiting regardless.
    deadline_ms: i64,
}

impl Waiting {
    /// Waiting for the first call not answered yet; `None` when every call
    /// has answered.
    fn await_next(&self) -> Option<Step> {
        self.calls.first().map(|call| Step::AwaitCall {
            token: call.token,
            deadline_ms: self.deadline_ms,
        })
    }
}

/// A call a request waits for.
#[derive(Debug)]
struct PendingCall {
    token: u32,
    rule: usize,
    /// When it was sent (host clock, ms): a call that fails at its timeout
    /// or later timed out.
    sent_ms: i64,
    /// For an asynchronous rule, the descriptor, to renew its share.
    share_key: Option<ShareKey>,
}

impl RateLimitStage {
    /// Spends from the request's buckets (asking the rate-limit service for
    /// global rules): refuses the request, waits, or notes the headers for
    /// its response.
    fn limit(&self, request: &mut RateLimitRequest, cx: &mut Exchange<'_>) -> Step {
        let config = &self.config;
        if config.rules.is_empty() {
            return Step::Continue;
        }
        let host = cx.host;
        let facts = Self::request_facts(&self.config, cx);
        let decision = self.decide(host, &facts);
        if decision.refusal.is_some() || config.global_service.is_none() {
            return self.finish(request, cx, decision);
        }
        self.ask_service(request, cx, &facts, decision)
    }

    /// The stage for a configuration: metrics defined, slot tables created.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let mut config = Config::from_json(config)?;
        let created = create_tables(&config, &HostStore(host))
            .map_err(|e| ConfigError::invalid("rules", e))?;
        config.hash_key = hash_key::agree(&HostStore(host), HashKey::random)
            .map_err(|e| ConfigError::invalid("rules", e))?;
        let slots: u64 = config
            .rules
            .iter()
            .filter_map(|r| r.local.as_ref())
            .map(|l| l.table.slots())
            .sum();
        let service = match &config.global_service {
            Some(g) => format!(
                ", {} global rule(s) through cluster `{}` (domain `{}`)",
                config.rules.iter().filter(|r| r.global.is_some()).count(),
                g.cluster,
                g.domain
            ),
            None => String::new(),
        };
        Self::log(
            host,
            LogLevel::Info,
            &format!(
                "{} rule(s) in domain `{}`, {slots} bucket slot(s), {created} shared-data key(s) created{service}",
                config.rules.len(),
                config.domain
            ),
        );
        let clock = MonotonicClock::new();
        let max_async_keys = config
            .global_service
            .as_ref()
            .map_or(0, |g| g.max_async_keys);
        Ok(RateLimitStage {
            metrics: Metrics::define(host, &config),
            service_metrics: config
                .global_service
                .as_ref()
                .map(|_| ServiceMetrics::define(host)),
            shares: RefCell::new(ShareTable::new(max_async_keys)),
            reports: RefCell::new(HashMap::new()),
            service_warned_ms: Cell::new(i64::MIN),
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
        if needs.mcp {
            facts.mcp = cx.decisions.mcp(host).cloned();
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

    /// Records, logs and publishes a decision, and applies it: a refusal,
    /// or the RateLimit fields for the response.
    fn finish(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
        decision: Decision,
    ) -> Step {
        let config = &self.config;
        let host = cx.host;
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

    /// The global rules of a request the local rules let through: decided
    /// from this worker's share (asynchronous rules), or asked of the
    /// service, the request waiting for the answers.
    fn ask_service(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
        facts: &RequestFacts,
        local: Decision,
    ) -> Step {
        let config = &self.config;
        let host = cx.host;
        let client = global::client_for_global(config, facts);
        let asks = global::asks(config, facts, &client);
        if asks.is_empty() {
            return self.finish(request, cx, local);
        }
        let now_ms = cx.now_ms();
        let mut reports = Vec::new();
        let mut to_send = Vec::new();
        for ask in asks {
            let Some(rule) = config.rules.get(ask.rule) else {
                continue;
            };
            let Some(share) = self.share_of(ask.rule) else {
                to_send.push((ask, None));
                continue;
            };
            let key = ShareKey {
                rule: ask.rule,
                entries: ask.entries,
            };
            let admission = match self.shares.try_borrow_mut() {
                Ok(mut shares) => shares.admit(&key, rule.cost, share, rule.shadow, now_ms),
                Err(_) => Admission::Ask,
            };
            match admission {
                Admission::Admitted(report) => {
                    if let Some(s) = self
                        .metrics
                        .rules
                        .get(ask.rule)
                        .and_then(|m| m.service.as_ref())
                    {
                        s.admitted_from_share.inc();
                    }
                    reports.push(report);
                }
                Admission::Refused(report) => reports.push(report),
                Admission::Ask => {
                    let entries = key.entries.clone();
                    to_send.push((
                        global::Ask {
                            rule: ask.rule,
                            entries,
                            hits: ask.hits,
                        },
                        Some(key),
                    ));
                }
            }
        }
        // A request a share already refuses is not sent to the service.
        if to_send.is_empty() || reports.iter().any(RuleReport::refuses) {
            return self.finish(request, cx, global::combine(local, reports));
        }
        let mut calls = Vec::with_capacity(to_send.len());
        let mut longest_ms = 0;
        for (ask, share_key) in to_send {
            let timeout_ms = config
                .rules
                .get(ask.rule)
                .and_then(|r| r.global)
                .map_or(0, |g| g.timeout_ms);
            match self.send(host, &ask.entries, ask.hits, timeout_ms) {
                Ok(token) => {
                    longest_ms = longest_ms.max(timeout_ms);
                    calls.push(PendingCall {
                        token,
                        rule: ask.rule,
                        sent_ms: now_ms,
                        share_key,
                    });
                }
                Err(answer) => {
                    self.warn_service_failure(host, &answer, now_ms);
                    reports.push(global::report(config, ask.rule, &answer));
                }
            }
        }
        let deadline_ms = now_ms
            .saturating_add(i64::try_from(longest_ms).unwrap_or(i64::MAX))
            .saturating_add(DEADLINE_MARGIN_MS);
        let waiting = Waiting {
            local,
            reports,
            calls,
            deadline_ms,
        };
        let Some(step) = waiting.await_next() else {
            return self.finish(request, cx, global::combine(waiting.local, waiting.reports));
        };
        request.waiting = Some(Box::new(waiting));
        step
    }

    /// Sends one `ShouldRateLimit` call; a call the host refuses is a failure.
    fn send(
        &self,
        host: &dyn Host,
        entries: &Entries,
        hits: u32,
        timeout_ms: u64,
    ) -> Result<u32, Answer> {
        let Some(service) = &self.config.global_service else {
            return Err(Answer::Failed(Failure::NotSent));
        };
        let message = rls::encode_request(&service.domain, std::slice::from_ref(entries), hits);
        let sent = host.dispatch_grpc_call(
            &service.cluster,
            rls::SERVICE,
            rls::METHOD,
            &[],
            &message,
            Duration::from_millis(timeout_ms),
        );
        if let Some(m) = &self.service_metrics {
            m.calls.inc(host);
        }
        sent.map_err(|_| {
            if let Some(m) = &self.service_metrics {
                m.errors.inc(host);
            }
            Answer::Failed(Failure::NotSent)
        })
    }

    /// Whether a call of rule `rule` that took `elapsed_ms` reached its
    /// timeout: Envoy ends such a call with `UNAVAILABLE` (its HTTP timeout
    /// is a 504), not `DEADLINE_EXCEEDED`. Both times are whole
    /// milliseconds of the host's clock, and Envoy's timer may fire a
    /// little before the clock shows the full timeout: a few milliseconds
    /// short still count.
    fn timed_out(&self, rule: usize, elapsed_ms: i64) -> bool {
        let timeout_ms = self
            .config
            .rules
            .get(rule)
            .and_then(|r| r.global)
            .map_or(0, |g| g.timeout_ms);
        u64::try_from(elapsed_ms).is_ok_and(|ms| ms.saturating_add(TIMEOUT_SLACK_MS) >= timeout_ms)
    }

    /// What a call brought: the decoded verdict, or why there is none
    /// (`at_timeout`: the call ended when its timeout was reached).
    fn read_answer(&self, host: &dyn Host, response: &CallResponse, at_timeout: bool) -> Answer {
        match response.grpc_status {
            Some(0) => {}
            Some(_) if at_timeout => return Answer::Failed(Failure::Timeout),
            Some(code) => return Answer::Failed(Failure::of_status(code)),
            None => return Answer::Failed(Failure::BadAnswer),
        }
        match host.body(Body::GrpcResponse, response.body_size.min(MAX_ANSWER_BYTES)) {
            Ok(bytes) => match rls::decode_response(&bytes) {
                Ok(decoded) => Answer::of_response(decoded),
                Err(_) => Answer::Failed(Failure::BadAnswer),
            },
            Err(_) => Answer::Failed(Failure::BadAnswer),
        }
    }

    /// Counts a request's call answered, and renews its share.
    fn answered(&self, host: &dyn Host, call: &PendingCall, answer: &Answer, now_ms: i64) {
        if let Some(m) = &self.service_metrics {
            m.failed(host, answer);
        }
        self.warn_service_failure(host, answer, now_ms);
        if let (Some(key), Some(share)) = (&call.share_key, self.share_of(call.rule)) {
            if let Ok(mut shares) = self.shares.try_borrow_mut() {
                shares.learn(key, share, answer, false, now_ms);
            }
        }
    }

    /// The local share of rule `rule` when it is asynchronous.
    fn share_of(&self, rule: usize) -> Option<u64> {
        match self.config.rules.get(rule)?.global?.mode {
            GlobalMode::Async { share } => Some(share),
            GlobalMode::Sync => None,
        }
    }

    /// Reports the hits this worker admitted from its shares since the last
    /// report (the root context's calls).
    fn report_shares(&self, host: &dyn Host) {
        if self.config.global_service.is_none() {
            return;
        }
        let due = match self.shares.try_borrow_mut() {
            Ok(mut shares) if !shares.is_empty() => shares.due(MAX_REPORTS_PER_TICK),
            _ => return,
        };
        let now_ms = host.now_unix_ms();
        for (key, hits) in due {
            let timeout_ms = self
                .config
                .rules
                .get(key.rule)
                .and_then(|r| r.global)
                .map_or(0, |g| g.timeout_ms);
            let hits = u32::try_from(hits).unwrap_or(u32::MAX);
            match self.send(host, &key.entries, hits, timeout_ms) {
                Ok(token) => {
                    if let Some(m) = &self.service_metrics {
                        m.reports.inc(host);
                    }
                    if let Ok(mut reports) = self.reports.try_borrow_mut() {
                        reports.insert(token, (key, now_ms));
                    }
                }
                Err(answer) => {
                    if let (Some(share), Ok(mut shares)) =
                        (self.share_of(key.rule), self.shares.try_borrow_mut())
                    {
                        shares.learn(&key, share, &answer, true, now_ms);
                    }
                }
            }
        }
    }

    /// Warns (at most every ten seconds per worker) that the service failed.
    fn warn_service_failure(&self, host: &dyn Host, answer: &Answer, now_ms: i64) {
        let Answer::Failed(failure) = answer else {
            return;
        };
        if now_ms.saturating_sub(self.service_warned_ms.get()) < SERVICE_WARNING_INTERVAL_MS {
            return;
        }
        self.service_warned_ms.set(now_ms);
        let cluster = self
            .config
            .global_service
            .as_ref()
            .map_or("", |g| g.cluster.as_str());
        Self::log(
            host,
            LogLevel::Warn,
            &format!(
                "the rate-limit service (cluster `{cluster}`) failed: {failure:?}; each global rule applies its on_failure (counted in service_errors / service_timeouts)"
            ),
        );
    }
}

impl Stage for RateLimitStage {
    type Request = RateLimitRequest;

    fn needs(&self) -> Needs {
        Needs {
            request_headers: Self::request_headers(&self.config),
            tick: Some(TICK_PERIOD),
            provides: DecisionSet::of(&[DecisionKind::RateLimit, DecisionKind::Denial]),
            request_body: self.config.needs.mcp,
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut RateLimitRequest, cx: &mut Exchange<'_>) -> Step {
        if self.config.needs.mcp && !cx.end_of_stream {
            // The MCP decision is made on the body: decide once it is read
            // (after the MCP stage, which runs first).
            return Step::ReadBody { max_bytes: 0 };
        }
        self.limit(request, cx)
    }

    fn on_request_body(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
        _body: &[u8],
    ) -> BodyStep {
        // Only local rules decide here: configurations that key on the MCP
        // decision have no global rules (refused at load), so nothing waits.
        match self.limit(request, cx) {
            Step::Refuse(refusal) => BodyStep::Refuse(refusal),
            _ => BodyStep::Continue,
        }
    }

    fn on_call_response(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
        token: u32,
        response: &CallResponse,
    ) -> Option<Step> {
        let waiting = request.waiting.as_mut()?;
        let at = waiting.calls.iter().position(|c| c.token == token)?;
        let call = waiting.calls.swap_remove(at);
        let elapsed_ms = cx.now_ms().saturating_sub(call.sent_ms);
        let answer = self.read_answer(cx.host, response, self.timed_out(call.rule, elapsed_ms));
        self.answered(cx.host, &call, &answer, cx.now_ms());
        waiting
            .reports
            .push(global::report(&self.config, call.rule, &answer));
        // The engine resumes the request on the answer it awaits; the
        // others arrive as news. Either way, one outstanding call is next.
        if let Some(step) = waiting.await_next() {
            return Some(step);
        }
        let waiting = request.waiting.take()?;
        let decision = global::combine(waiting.local, waiting.reports);
        Some(self.finish(request, cx, decision))
    }

    fn on_resume(
        &self,
        request: &mut RateLimitRequest,
        cx: &mut Exchange<'_>,
        timed_out: bool,
    ) -> Step {
        let Some(mut waiting) = request.waiting.take() else {
            return Step::Continue;
        };
        if !timed_out {
            // Only calls are awaited, so no root event concerns this
            // request: it still waits for them.
            if let Some(step) = waiting.await_next() {
                request.waiting = Some(waiting);
                return step;
            }
        }
        // Calls still outstanding at the deadline are decided as timed out
        // (a late answer finds no request waiting for it).
        let answer = Answer::Failed(Failure::Timeout);
        for call in std::mem::take(&mut waiting.calls) {
            self.answered(cx.host, &call, &answer, cx.now_ms());
            waiting
                .reports
                .push(global::report(&self.config, call.rule, &answer));
        }
        let decision = global::combine(waiting.local, waiting.reports);
        self.finish(request, cx, decision)
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
        self.report_shares(host);
        Wake::No
    }

    fn on_root_call_response(
        &self,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) -> Option<Wake> {
        let (key, sent_ms) = self.reports.try_borrow_mut().ok()?.remove(&token)?;
        let now_ms = host.now_unix_ms();
        let at_timeout = self.timed_out(key.rule, now_ms.saturating_sub(sent_ms));
        let answer = self.read_answer(host, response, at_timeout);
        if let Some(m) = &self.service_metrics {
            m.failed(host, &answer);
        }
        self.warn_service_failure(host, &answer, now_ms);
        if let Some(share) = self.share_of(key.rule) {
            if let Ok(mut shares) = self.shares.try_borrow_mut() {
                shares.learn(&key, share, &answer, true, now_ms);
            }
        }
        Some(Wake::No)
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

    const SPRAYED: &str = r#"{"rules":[{"name":"k","key":[{"header":"x-k"}],
        "token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#;

    #[test]
    fn workers_of_one_process_agree_on_a_random_hash_key() {
        // Two VMs of one Envoy share one host's shared data.
        let envoy = FakeHost::new();
        let first = RateLimitStage::configure(SPRAYED.as_bytes(), &envoy).unwrap();
        let second = RateLimitStage::configure(SPRAYED.as_bytes(), &envoy).unwrap();
        assert_eq!(first.config.hash_key, second.config.hash_key);
        assert_ne!(
            first.config.hash_key,
            HashKey::default(),
            "not the fixed key"
        );
        // Another Envoy process draws another key (a 2^-128 chance otherwise).
        let other = RateLimitStage::configure(SPRAYED.as_bytes(), &FakeHost::new()).unwrap();
        assert_ne!(other.config.hash_key, first.config.hash_key);
    }

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

#[cfg(test)]
mod global_tests {
    //! Global rules in the engine against the fake host: the call, the
    //! wait, the answer as RateLimit fields or a refusal, failure modes,
    //! timeouts, and asynchronous shares reconciled on ticks.

    use palisade_shared::contract;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::{Action, CallResponse, Engine, Module};

    use super::*;

    /// A `RateLimitResponse`: `code` (1 OK, 2 OVER_LIMIT) overall and for
    /// its one descriptor, a limit of 10 per minute, `remaining`, and a
    /// reset in `reset_s` seconds.
    fn answer(code: u8, remaining: u8, reset_s: u8) -> Vec<u8> {
        let status = [
            0x08, code, 0x12, 0x04, 0x08, 0x0a, 0x10, 0x02, 0x18, remaining, 0x22, 0x02, 0x08,
            reset_s,
        ];
        let mut out = vec![0x08, code, 0x12, status.len() as u8];
        out.extend_from_slice(&status);
        out
    }

    fn ok(size: usize) -> CallResponse {
        CallResponse {
            grpc_status: Some(0),
            body_size: size,
            ..CallResponse::default()
        }
    }

    fn failed(code: u32) -> CallResponse {
        CallResponse {
            grpc_status: Some(code),
            ..CallResponse::default()
        }
    }

    fn engine(config: &str, host: &FakeHost) -> Engine<RateLimitStage> {
        let stage = RateLimitModule::configure(config.as_bytes(), host).unwrap();
        Engine::new(stage, RateLimitModule::NAME, 1, host).unwrap()
    }

    fn host() -> FakeHost {
        let host = FakeHost::new()
            .with_request("GET", "/")
            .with_property(&["source", "address"], b"10.0.0.1:4000");
        host.set_now_ms(1_000_000);
        host
    }

    const SYNC: &str = r#"{"rate_limit_headers": "always",
        "global_service": {"cluster": "ratelimit", "domain": "fleet"},
        "rules": [{"name": "per_client", "backend": "global", "key": ["client_address"],
                   "global": {"timeout": "40ms"}}]}"#;

    /// Answers the request's last call (context 2) with `response` and `body`.
    fn respond(
        engine: &Engine<RateLimitStage>,
        host: &FakeHost,
        slot: &mut Option<palisade_shared::engine::Flow<RateLimitRequest>>,
        response: CallResponse,
        body: &[u8],
    ) {
        let call = host.grpc_calls().pop().unwrap();
        host.set_call_response("200", body);
        host.set_effective_context(2).unwrap();
        engine.on_request_call_response(2, slot, call.token, &response, host);
    }

    #[test]
    fn a_request_waits_for_the_service_and_carries_its_numbers() {
        let host = host();
        let engine = engine(SYNC, &host);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(2, &mut slot, true, &host),
            Action::Pause
        );
        let call = host.grpc_calls().pop().unwrap();
        assert_eq!(call.cluster, "ratelimit");
        assert_eq!(call.service, "envoy.service.ratelimit.v3.RateLimitService");
        assert_eq!(call.method, "ShouldRateLimit");
        assert_eq!(call.timeout, Duration::from_millis(40));
        assert_eq!(
            call.message,
            rls::encode_request(
                "fleet",
                &[vec![("rule", "per_client"), ("client_address", "10.0.0.1")]],
                1
            )
        );
        let body = answer(1, 9, 60);
        respond(&engine, &host, &mut slot, ok(body.len()), &body);
        assert_eq!(host.resumed(), [2]);
        host.set_response_headers(&[(":status", "200")]);
        engine.on_response_headers(2, &mut slot, &host);
        let fields = host.response_headers();
        assert!(
            fields.contains(&("ratelimit-policy".into(), "\"per_client\";q=10;w=60".into())),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("ratelimit".into(), "\"per_client\";r=9;t=60".into())),
            "{fields:?}"
        );
        assert_eq!(
            host.property_json(contract::RATELIMIT).unwrap()["remaining"],
            9
        );
        assert_eq!(host.metric("palisade.ratelimit.service_calls"), 1);
        engine.on_tick(&host);
        assert_eq!(host.metric("palisade.ratelimit.rule.per_client.allowed"), 1);
    }

    #[test]
    fn over_limit_is_a_refusal_like_a_local_one() {
        let host = host();
        let engine = engine(SYNC, &host);
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host);
        let body = answer(2, 0, 30);
        respond(&engine, &host, &mut slot, ok(body.len()), &body);
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.header("retry-after"), Some("30"));
        assert_eq!(reply.header("ratelimit"), Some("\"per_client\";r=0;t=30"));
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"per_client\";q=10;w=60")
        );
        assert_eq!(reply.json()["violated-policies"][0], "per_client");
        assert_eq!(host.resumed(), Vec::<u32>::new(), "refused, not resumed");
        assert_eq!(host.metric("palisade.ratelimit.rule.per_client.limited"), 1);
        assert_eq!(host.metric("palisade.ratelimit.denied"), 1);
        let denial = host.property_json(contract::DENIAL).unwrap();
        assert_eq!(denial["reason"], "rate_limited");
    }

    #[test]
    fn a_request_with_two_global_rules_waits_for_both_answers_in_any_order() {
        let config = r#"{"global_service": {"cluster": "ratelimit"}, "rules": [
            {"name": "first", "backend": "global"},
            {"name": "second", "backend": "global"}]}"#;
        // (which call answers first, the second call's verdict, the status)
        for (second_answers_first, verdict, status) in [
            (false, 1, None),
            (true, 1, None),
            (false, 2, Some(429)),
            (true, 2, Some(429)),
        ] {
            let host = host();
            let engine = engine(config, &host);
            let mut slot = None;
            assert_eq!(
                engine.on_request_headers(2, &mut slot, true, &host),
                Action::Pause
            );
            let calls = host.grpc_calls();
            assert_eq!(calls.len(), 2);
            let mut order = [(calls[0].token, 1), (calls[1].token, verdict)];
            if second_answers_first {
                order.reverse();
            }
            for (at, (token, code)) in order.into_iter().enumerate() {
                let body = answer(code, 5, 60);
                host.set_call_response("200", &body);
                host.set_effective_context(2).unwrap();
                engine.on_request_call_response(2, &mut slot, token, &ok(body.len()), &host);
                if at == 0 {
                    // One answer is not a decision, whichever it is.
                    assert_eq!(engine.waiting(), 1);
                    assert!(host.resumed().is_empty() && host.last_reply().is_none());
                }
            }
            assert_eq!(engine.waiting(), 0);
            assert_eq!(host.last_reply().map(|r| r.status), status);
            let resumed = if status.is_none() { vec![2] } else { vec![] };
            assert_eq!(host.resumed(), resumed);
        }
    }

    #[test]
    fn failure_modes_hold_and_are_counted() {
        let config = r#"{"status": 503, "global_service": {"cluster": "ratelimit"}, "rules": [
            {"name": "closed", "backend": "global", "match": {"path": {"prefix": "/closed"}}},
            {"name": "open", "backend": "global", "match": {"path": {"prefix": "/open"}},
             "global": {"on_failure": "allow"}}]}"#;
        // UNAVAILABLE (the service or its Redis is down), DEADLINE_EXCEEDED
        // (the rule's timeout), and an answer that does not decode.
        for (response, body, timeout) in [
            (failed(14), &b""[..], false),
            (failed(4), &b""[..], true),
            (ok(3), &b"\x08\xff\xff"[..], false),
        ] {
            let host = host();
            let engine = engine(config, &host);
            host.set_request(&[(":method", "GET"), (":path", "/closed")], b"");
            let mut slot = None;
            assert_eq!(
                engine.on_request_headers(2, &mut slot, true, &host),
                Action::Pause
            );
            respond(&engine, &host, &mut slot, response.clone(), body);
            let reply = host.last_reply().unwrap();
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("retry-after"), Some("1"));
            assert_eq!(
                host.property_json(contract::DENIAL).unwrap()["reason"],
                "service_failure"
            );
            assert_eq!(
                host.metric("palisade.ratelimit.rule.closed.service_failure_denied"),
                1
            );
            host.set_request(&[(":method", "GET"), (":path", "/open")], b"");
            let mut slot = None;
            engine.on_request_headers(2, &mut slot, true, &host);
            respond(&engine, &host, &mut slot, response, body);
            assert_eq!(host.resumed(), [2], "the open rule lets it through");
            assert_eq!(
                host.metric("palisade.ratelimit.rule.open.service_failure_allowed"),
                1
            );
            let (timeouts, errors) = if timeout { (2, 0) } else { (0, 2) };
            assert_eq!(host.metric("palisade.ratelimit.service_timeouts"), timeouts);
            assert_eq!(host.metric("palisade.ratelimit.service_errors"), errors);
            assert!(host.logged("the rate-limit service (cluster `ratelimit`) failed"));
        }
    }

    #[test]
    fn an_error_at_the_timeout_is_a_timeout() {
        // Envoy ends a call at its timeout with UNAVAILABLE (a 504 inside).
        let host = host();
        let engine = engine(SYNC, &host);
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host);
        host.advance_ms(30);
        respond(&engine, &host, &mut slot, failed(14), b"");
        assert_eq!(host.metric("palisade.ratelimit.service_errors"), 1);
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host);
        host.advance_ms(39);
        respond(&engine, &host, &mut slot, failed(14), b"");
        assert_eq!(host.metric("palisade.ratelimit.service_timeouts"), 1);
        assert_eq!(host.metric("palisade.ratelimit.service_errors"), 1);
    }

    #[test]
    fn a_call_envoy_never_ends_is_refused_at_the_deadline() {
        let host = host();
        let engine = engine(SYNC, &host);
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host);
        assert_eq!(engine.waiting(), 1);
        // A tick before the deadline (40 ms + one tick): still waiting.
        host.advance_ms(100);
        engine.on_tick(&host);
        assert_eq!(engine.waiting(), 1);
        // Past it: the engine refuses the request (Envoy answers every
        // call, so only a call it never ended gets here).
        host.advance_ms(200);
        engine.on_tick(&host);
        assert_eq!(engine.waiting(), 0);
        assert_eq!(host.last_reply().unwrap().status, 503);
        // The late answer finds no request waiting for it.
        let call = host.grpc_calls().pop().unwrap();
        host.set_call_response("200", &answer(1, 9, 60));
        let mut slot = None;
        engine.on_request_call_response(2, &mut slot, call.token, &ok(14), &host);
        assert_eq!(host.replies().len(), 1);
    }

    #[test]
    fn a_local_tier_sheds_before_the_service_is_asked() {
        let config = r#"{"global_service": {"cluster": "ratelimit"}, "rules": [
            {"name": "tiered", "backend": "global",
             "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}]}"#;
        let host = host();
        let engine = engine(config, &host);
        for _ in 0..2 {
            let mut slot = None;
            assert_eq!(
                engine.on_request_headers(2, &mut slot, true, &host),
                Action::Pause
            );
            let body = answer(1, 5, 60);
            respond(&engine, &host, &mut slot, ok(body.len()), &body);
        }
        assert_eq!(host.grpc_calls().len(), 2);
        assert_eq!(host.metric("palisade.ratelimit.service_calls"), 2);
        // The tier is empty: refused without a call, with the tier's numbers.
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(2, &mut slot, true, &host),
            Action::Pause
        );
        assert_eq!(host.metric("palisade.ratelimit.service_calls"), 2);
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some("\"tiered\";q=2;w=7200")
        );
    }

    #[test]
    fn an_async_rule_admits_from_its_share_and_reports_on_ticks() {
        let config = r#"{"global_service": {"cluster": "ratelimit"}, "rules": [
            {"name": "fast", "backend": "global", "cost": 2,
             "global": {"mode": "async", "local_share": 4}}]}"#;
        let host = host();
        let engine = engine(config, &host);
        // Within the share (4 tokens, cost 2): no call, no wait.
        for _ in 0..2 {
            let mut slot = None;
            assert_eq!(
                engine.on_request_headers(2, &mut slot, true, &host),
                Action::Continue
            );
        }
        assert!(host.grpc_calls().is_empty());
        // The tick reports the 4 hits from the root context.
        engine.on_tick(&host);
        let report = host.grpc_calls().pop().unwrap();
        assert_eq!(
            report.message,
            rls::encode_request("default", &[vec![("rule", "fast")]], 4)
        );
        assert_eq!(host.metric("palisade.ratelimit.service_reports"), 1);
        assert_eq!(
            host.metric("palisade.ratelimit.rule.fast.admitted_from_share"),
            2
        );
        // Beyond the share, before the answer: the request asks and waits.
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(3, &mut slot, true, &host),
            Action::Pause
        );
        let asked = host.grpc_calls().pop().unwrap();
        assert_eq!(
            asked.message,
            rls::encode_request("default", &[vec![("rule", "fast")]], 2)
        );
        // The report's answer: over the limit for 20 s.
        let body = answer(2, 0, 20);
        host.set_call_response("200", &body);
        engine.on_grpc_call_response(report.token, 0, body.len(), &host);
        // The request's own answer says the same: refused.
        host.set_effective_context(3).unwrap();
        engine.on_request_call_response(3, &mut slot, asked.token, &ok(body.len()), &host);
        assert_eq!(host.last_reply().unwrap().status, 429);
        // Later requests are refused in the worker, without a call.
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(4, &mut slot, true, &host),
            Action::Pause
        );
        assert_eq!(
            host.grpc_calls().len(),
            2,
            "the report and the one that asked"
        );
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.header("retry-after"), Some("20"));
        // After the reset, the key asks again and a fresh share follows.
        host.advance_ms(21_000);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(5, &mut slot, true, &host),
            Action::Pause
        );
        let body = answer(1, 8, 60);
        let call = host.grpc_calls().pop().unwrap();
        host.set_call_response("200", &body);
        host.set_effective_context(5).unwrap();
        engine.on_request_call_response(5, &mut slot, call.token, &ok(body.len()), &host);
        assert_eq!(host.resumed(), [5]);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(6, &mut slot, true, &host),
            Action::Continue,
            "from the renewed share"
        );
    }
}
