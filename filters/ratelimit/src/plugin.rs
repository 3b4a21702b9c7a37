//! The proxy-wasm adapter: reads the request, asks the core, applies the
//! decision. Nothing here decides anything.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use palisade_shared::contract::{self, Identity};
use palisade_shared::forwarded::TrustedProxies;
use palisade_shared::host::{self, Counter, HostSharedData};
use palisade_shared::store::SharedStore;

use crate::clock::MonotonicClock;
use crate::config::{Config, Needs};
use crate::key::RequestFacts;
use crate::limiter::{decide_at_tick, decide_with, Decision, RuleOutcome};
use crate::optimistic::WriteCache;
use crate::response::{allowed_headers, denial, published_json_into, refusal_reply};

proxy_wasm::main! {{
    host::install_panic_hook();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RateLimitRoot::default()) });
}}

/// A counter bumped on every allowed request: counted in the VM and added to
/// Envoy's counter on every root context tick, since a metric host call per
/// request costs as much as a tenth of the filter's whole work. The counter
/// lags by at most the tick period. Counts of the last tick period are lost
/// when the VM stops (a configuration change or shutdown): flushing them in
/// `on_done` would keep the `proxy_on_done` export, which Envoy then calls
/// on every request as well (about 2k instructions, see tools/trim).
struct Batched {
    counter: Counter,
    pending: Cell<u64>,
}

impl Batched {
    fn define(name: &str) -> Self {
        Batched {
            counter: Counter::define(name),
            pending: Cell::new(0),
        }
    }

    fn inc(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self) {
        let n = self.pending.replace(0);
        if n > 0 {
            self.counter.add(n);
        }
    }
}

/// How often the root context ticks: batched counters reach Envoy and the
/// tick clock is read.
const TICK_PERIOD: Duration = Duration::from_millis(250);

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
    fn define(config: &Config) -> Self {
        let global = |what: &str| Counter::define(&format!("palisade.ratelimit.{what}"));
        Metrics {
            rules: config
                .rules
                .iter()
                .map(|r| {
                    let c = |what: &str| {
                        Counter::define(&format!("palisade.ratelimit.rule.{}.{what}", r.name))
                    };
                    RuleMetrics {
                        allowed: Batched::define(&format!(
                            "palisade.ratelimit.rule.{}.allowed",
                            r.name
                        )),
                        limited: c("limited"),
                        shadow_limited: c("shadow_limited"),
                        table_full: c("table_full"),
                        unmetered: c("unmetered"),
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

    fn flush(&self) {
        for rule in &self.rules {
            rule.allowed.flush();
        }
    }

    fn record(&self, d: &Decision) {
        let refused = d.refusal.is_some();
        for r in &d.reports {
            let Some(m) = self.rules.get(r.rule) else {
                continue;
            };
            match r.outcome {
                RuleOutcome::Spent if !refused => m.allowed.inc(),
                RuleOutcome::Limited if r.shadow => m.shadow_limited.inc(),
                RuleOutcome::Limited => m.limited.inc(),
                RuleOutcome::TableFull => {
                    m.table_full.inc();
                    if r.shadow {
                        m.shadow_limited.inc();
                    } else {
                        m.limited.inc();
                    }
                }
                RuleOutcome::Unmetered => m.unmetered.inc(),
                RuleOutcome::FailedOpen => self.store_failure_allowed.inc(),
                _ => {}
            }
            if r.claimed {
                self.slot_claims.inc();
            }
            if r.evicted {
                self.slot_evictions.inc();
            }
        }
        if refused {
            self.denied.inc();
        }
        if d.client_address_fallback.is_some() {
            self.client_address_fallback.inc();
        }
        let c = &d.counts;
        if c.cas_retries > 0 {
            self.cas_retries.add(c.cas_retries);
        }
        if c.cas_exhausted > 0 {
            self.cas_exhausted.add(c.cas_exhausted);
        }
        if c.guess_missed > 0 {
            self.cas_guess_missed.add(c.guess_missed);
        }
        if c.store_errors > 0 {
            self.store_errors.add(c.store_errors);
        }
        if c.given_back > 0 {
            self.given_back.add(c.given_back);
        }
    }
}

struct Loaded {
    config: Config,
    metrics: Metrics,
    clock: MonotonicClock,
    /// This worker's remembered bucket writes (one VM per worker thread).
    cache: RefCell<WriteCache>,
    /// Whether the root context ticks: batched counters are flushed by the
    /// tick (else at once), and requests read the tick clock (else the clock).
    ticking: bool,
    /// The monotonic clock as read at the last tick (or refusal): see
    /// [`Loaded::decide`].
    tick_ns: Cell<u64>,
    /// The buffer `palisade.ratelimit` is written into, request after request.
    scratch: RefCell<Vec<u8>>,
}

impl Loaded {
    fn advance_tick_clock(&self, now_ns: u64) {
        if now_ns > self.tick_ns.get() {
            self.tick_ns.set(now_ns);
        }
    }

    fn decide_at(&self, facts: &RequestFacts, now_ns: u64) -> Decision {
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => decide_with(&self.config, &HostSharedData, &mut cache, facts, now_ns),
            // Not reachable (one request at a time per VM); read instead.
            Err(_) => decide_with(
                &self.config,
                &HostSharedData,
                &mut WriteCache::disabled(),
                facts,
                now_ns,
            ),
        }
    }

    /// Decides a request at the tick clock, and at the clock's time when
    /// that refuses it (see [`decide_at_tick`]); without ticks, at the
    /// clock's time.
    fn decide(&self, facts: &RequestFacts) -> Decision {
        if !self.ticking {
            return self.decide_at(facts, self.clock.now_ns());
        }
        let now = || {
            let now_ns = self.clock.now_ns();
            self.advance_tick_clock(now_ns);
            now_ns
        };
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => decide_at_tick(
                &self.config,
                &HostSharedData,
                &mut cache,
                facts,
                self.tick_ns.get(),
                now,
            ),
            // Not reachable (one request at a time per VM).
            Err(_) => self.decide_at(facts, now()),
        }
    }
}

#[derive(Default)]
struct RateLimitRoot {
    loaded: Option<Rc<Loaded>>,
}

impl Context for RateLimitRoot {}

/// Creates every set key that does not exist yet, with all slots free.
/// Envoy's CAS token 0 means "write unconditionally", so the request path
/// is exact only on keys that exist: creating them here, before this worker
/// serves a request, is what makes every later update a true CAS.
fn create_tables(config: &Config) -> Result<u64, String> {
    let store = HostSharedData;
    let mut created = 0;
    for rule in &config.rules {
        let empty = rule.table.empty_value(&rule.bucket);
        for set in 0..rule.table.sets() {
            let key = rule.table.key(set);
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

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = match Config::from_json(&host::plugin_configuration()) {
            Ok(c) => c,
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade.ratelimit: {e}"));
                return false;
            }
        };
        let created = match create_tables(&config) {
            Ok(n) => n,
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade.ratelimit: {e}"));
                return false;
            }
        };
        let slots: u64 = config.rules.iter().map(|r| r.table.slots()).sum();
        host::log(
            LogLevel::Info,
            &format!(
                "palisade.ratelimit: {} rule(s) in domain `{}`, {slots} bucket slot(s), {created} shared-data key(s) created",
                config.rules.len(),
                config.domain
            ),
        );
        // Counts of the configuration being replaced reach Envoy first.
        if let Some(old) = &self.loaded {
            old.metrics.flush();
        }
        let ticking = match proxy_wasm::hostcalls::set_tick_period(TICK_PERIOD) {
            Ok(()) => true,
            Err(status) => {
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "palisade.ratelimit: no tick ({status:?}); counting every request at once and reading the clock per request"
                    ),
                );
                false
            }
        };
        let clock = MonotonicClock::new();
        self.loaded = Some(Rc::new(Loaded {
            metrics: Metrics::define(&config),
            config,
            tick_ns: Cell::new(clock.now_ns()),
            clock,
            cache: RefCell::new(WriteCache::new()),
            ticking,
            scratch: RefCell::new(Vec::with_capacity(128)),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(loaded) = &self.loaded {
            loaded.advance_tick_clock(loaded.clock.now_ns());
            loaded.metrics.flush();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitFilter {
            loaded: self.loaded.clone(),
            response_headers: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimitFilter {
    loaded: Option<Rc<Loaded>>,
    response_headers: Vec<(String, String)>,
}

impl Context for RateLimitFilter {}

/// Reads what the rules need from the request, and nothing else.
fn gather(needs: &Needs, trusted: &TrustedProxies) -> RequestFacts {
    let header = |name: &str| host::request_header(name).unwrap_or_default();
    let mut facts = RequestFacts::default();
    if needs.method {
        facts.method = header(":method");
    }
    if needs.host {
        facts.host = header(":authority");
    }
    if needs.path {
        facts.path = header(":path");
    }
    if needs.route_name {
        facts.route_name = host::property_string(&["xds", "route_name"]).unwrap_or_default();
    }
    if needs.client_address {
        facts.peer_address = host::property_string(&["source", "address"]);
        if trusted.hops > 0 {
            facts.forwarded = host::request_header(trusted.header.name());
        }
    }
    for name in &needs.headers {
        if let Some(value) = host::request_header(name) {
            facts.headers.push((name.clone(), value));
        }
    }
    if needs.identity {
        facts.identity = host::property_bytes(&[contract::IDENTITY]).and_then(|bytes| {
            match serde_json::from_slice::<Identity>(&bytes) {
                Ok(id) => Some(id),
                Err(e) => {
                    host::log(
                        LogLevel::Warn,
                        &format!("palisade.ratelimit: unreadable {}: {e}", contract::IDENTITY),
                    );
                    None
                }
            }
        });
    }
    facts
}

fn log_decision(config: &Config, d: &Decision) {
    let name = |i: usize| config.rules.get(i).map_or("?", |r| r.name.as_str());
    for r in d.reports.iter().filter(|r| r.would_refuse()) {
        host::log(
            LogLevel::Info,
            &format!(
                "palisade.ratelimit: shadow rule `{}` would have limited this request ({:?}, retry in {} s)",
                name(r.rule),
                r.outcome,
                r.reset
            ),
        );
    }
    if d.counts.cas_exhausted + d.counts.store_errors > 0 {
        host::log(
            LogLevel::Warn,
            &format!(
                "palisade.ratelimit: shared buckets unavailable ({} CAS loop(s) out of retries, {} host error(s)); on_store_failure = {:?}",
                d.counts.cas_exhausted, d.counts.store_errors, config.on_store_failure
            ),
        );
    }
    if let Some(refusal) = &d.refusal {
        let rules: Vec<&str> = d.refusing().map(|r| name(r.rule)).collect();
        host::log(
            LogLevel::Debug,
            &format!(
                "palisade.ratelimit: refused ({}) by rule(s) {}; retry in {} s",
                refusal.reason.as_str(),
                rules.join(", "),
                refusal.retry_after
            ),
        );
    }
}

impl HttpContext for RateLimitFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(loaded) = self.loaded.clone() else {
            // on_configure failed, so Envoy should not be sending requests;
            // if it does, the limit stays closed.
            host::log(
                LogLevel::Error,
                "palisade.ratelimit: no valid configuration; refusing the request",
            );
            host::send_reply(500, &[], b"");
            return Action::Pause;
        };
        let config = &loaded.config;
        if config.rules.is_empty() {
            return Action::Continue;
        }
        let facts = gather(&config.needs, &config.client_address.trusted);
        let decision = loaded.decide(&facts);
        loaded.metrics.record(&decision);
        if !loaded.ticking {
            loaded.metrics.flush();
        }
        log_decision(config, &decision);
        {
            let mut fresh = Vec::new();
            let mut scratch = loaded.scratch.try_borrow_mut();
            let state = scratch.as_deref_mut().unwrap_or(&mut fresh);
            if published_json_into(config, &decision, state) {
                if let Err(status) = host::set_filter_state(contract::RATELIMIT, state) {
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "palisade.ratelimit: cannot publish {}: {status:?}",
                            contract::RATELIMIT
                        ),
                    );
                }
            }
        }
        // The request id is read only for a refusal: allowed requests make
        // no host call they do not need.
        let reply = decision
            .refusal
            .is_some()
            .then(|| refusal_reply(config, &decision, host::request_header("x-request-id")))
            .flatten();
        if let Some(reply) = reply {
            if let Some(denial) = denial(config, &decision) {
                host::publish_json("palisade_ratelimit", contract::DENIAL, &denial);
            }
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            host::send_reply(reply.status, &headers, &reply.body);
            return Action::Pause;
        }
        self.response_headers = allowed_headers(config, &decision);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in std::mem::take(&mut self.response_headers) {
            host::add_response_header(&name, &value);
        }
        Action::Continue
    }
}
