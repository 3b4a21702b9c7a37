//! The LLM gateway as a stage of the engine: recognizes the call, reads its
//! body, asks the policy and the budgets, watches the response for its
//! usage and settles the budgets when it ends. Nothing here decides
//! anything: the decisions are in [`crate::policy`], [`crate::api`] and the
//! rate limiter's core.

use std::rc::Rc;

use palisade_ratelimit::clock::MonotonicClock;
use palisade_ratelimit::key::RequestFacts;
use palisade_ratelimit::limiter::{create_tables, decide, Decision, RefusalReason, StoreCounts};
use palisade_ratelimit::response::{allowed_headers, refusal_reply};
use palisade_ratelimit::settle::{settle, Settlement};
use palisade_ratelimit::RateLimitStage;
use palisade_shared::config::ConfigError;
use palisade_shared::contract::{self, Identity, LlmDecision};
use palisade_shared::engine::{
    self, BodyStep, Counter, DecisionKind, DecisionSet, Exchange, Host, HostStore, LogLevel,
    Module, Needs, Refusal, ResponseBodyStep, ResponseStep, Stage, Step,
};

use crate::api::{self, Api, Call, Capped};
use crate::budget::{self, estimated_usage, provisional_cost, set_model};
use crate::config::{CapAction, Config};
use crate::policy::{permits, rule_for, ModelRule, NotPermitted};
use crate::reply::{self, ErrorKind};
use crate::usage::{Usage, UsageReader};

/// The counters of one model rule (and of `other`).
struct ModelMetrics {
    requests: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
    refused: Counter,
}

struct Metrics {
    /// One per model rule, then `other`.
    models: Vec<ModelMetrics>,
    /// One per budget rule.
    budget_limited: Vec<Counter>,
    denied: Counter,
    invalid_requests: Counter,
    capped: Counter,
    usage_estimated: Counter,
    cas_retries: Counter,
    cas_exhausted: Counter,
    store_errors: Counter,
}

impl Metrics {
    fn define(host: &dyn Host, config: &Config) -> Self {
        let global = |what: &str| Counter::define(host, &format!("palisade.llm.{what}"));
        let model = |name: &str| {
            let m =
                |what: &str| Counter::define(host, &format!("palisade.llm.model.{name}.{what}"));
            ModelMetrics {
                requests: m("requests"),
                input_tokens: m("input_tokens"),
                output_tokens: m("output_tokens"),
                refused: m("refused"),
            }
        };
        let mut models: Vec<ModelMetrics> = config.models.iter().map(|r| model(&r.name)).collect();
        models.push(model("other"));
        Metrics {
            models,
            budget_limited: config
                .budgets
                .iter()
                .flat_map(|b| b.rules.iter())
                .map(|r| Counter::define(host, &format!("palisade.llm.budget.{}.limited", r.name)))
                .collect(),
            denied: global("denied"),
            invalid_requests: global("invalid_requests"),
            capped: global("capped"),
            usage_estimated: global("usage_estimated"),
            cas_retries: global("cas_retries"),
            cas_exhausted: global("cas_exhausted"),
            store_errors: global("store_errors"),
        }
    }

    fn model(&self, index: usize) -> Option<&ModelMetrics> {
        self.models.get(index)
    }

    fn store(&self, host: &dyn Host, counts: &StoreCounts) {
        for (counter, n) in [
            (self.cas_retries, counts.cas_retries),
            (self.cas_exhausted, counts.cas_exhausted),
            (self.store_errors, counts.store_errors),
        ] {
            if n > 0 {
                counter.add(host, n);
            }
        }
    }
}

/// The LLM gateway stage.
pub struct LlmStage {
    config: Config,
    metrics: Metrics,
    clock: MonotonicClock,
}

/// The standalone module `palisade_llm.wasm`.
pub struct LlmModule;

impl Module for LlmModule {
    type Stage = LlmStage;
    const NAME: &'static str = "llm";

    fn configure(config: &[u8], host: &dyn Host) -> Result<LlmStage, ConfigError> {
        LlmStage::configure(config, host)
    }
}

/// An admitted call, until its response ends.
#[derive(Debug)]
struct Admitted {
    /// Index of its model rule in the configuration (`models.len()`: other).
    rule: usize,
    /// The budgets' decision, when budgets apply.
    budgets: Option<Decision>,
    /// The output-token limit sent upstream.
    max_tokens: Option<u64>,
    /// The usage read from the response so far.
    reader: Option<UsageReader>,
    /// Whether the provider answered with an error status.
    failed: bool,
    /// What is published, updated when the call ends.
    decision: LlmDecision,
    /// Whether the call has been settled.
    settled: bool,
}

/// What the stage keeps for one request.
#[derive(Debug, Default)]
pub struct LlmRequest {
    api: Option<Api>,
    identity: Option<Rc<Identity>>,
    facts: Option<RequestFacts>,
    admitted: Option<Admitted>,
}

impl LlmStage {
    /// The stage for a configuration: metrics defined, budget tables created.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        if let Some(budgets) = &config.budgets {
            create_tables(budgets, &HostStore(host))
                .map_err(|e| ConfigError::invalid("budgets", e))?;
        }
        Self::log(
            host,
            LogLevel::Info,
            &format!(
                "{} model rule(s){}, {} budget(s)",
                config.models.len(),
                if config.other.is_some() {
                    " and other models allowed"
                } else {
                    ""
                },
                config.budgets.as_ref().map_or(0, |b| b.rules.len())
            ),
        );
        Ok(LlmStage {
            metrics: Metrics::define(host, &config),
            config,
            clock: MonotonicClock::new(),
        })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, LlmModule::NAME, level, message);
    }

    fn rule(&self, index: usize) -> Option<&ModelRule> {
        self.config.models.get(index).or(self.config.other.as_ref())
    }

    fn publish(cx: &mut Exchange<'_>, decision: &LlmDecision) {
        engine::publish_json(cx.host, LlmModule::NAME, contract::LLM, decision);
        cx.decisions.set_llm(decision.clone());
    }

    /// Refuses a call: publishes what is known of it, counts it.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        cx: &mut Exchange<'_>,
        api: &Api,
        mut decision: LlmDecision,
        status: u16,
        kind: ErrorKind,
        reason: &str,
        message: &str,
        headers: Vec<(String, String)>,
    ) -> BodyStep {
        let host = cx.host;
        decision.outcome = reason.to_string();
        decision.usage = "pending".into();
        Self::publish(cx, &decision);
        self.metrics.denied.inc(host);
        Self::log(
            host,
            LogLevel::Debug,
            &format!("refused ({reason}): {message}"),
        );
        BodyStep::Refuse(Refusal {
            filter: LlmModule::NAME,
            reason: reason.to_string(),
            reply: reply::reply(api.provider, status, kind, reason, message, headers),
        })
    }

    fn invalid(
        &self,
        cx: &mut Exchange<'_>,
        api: &Api,
        status: u16,
        kind: ErrorKind,
        message: &str,
    ) -> BodyStep {
        self.metrics.invalid_requests.inc(cx.host);
        let decision = LlmDecision {
            provider: api.provider.as_str().into(),
            operation: api.operation.as_str().into(),
            ..LlmDecision::default()
        };
        let reason = if status == 413 {
            "body_too_large"
        } else {
            "invalid_request"
        };
        self.refuse(cx, api, decision, status, kind, reason, message, Vec::new())
    }

    /// Decides a call from its body.
    fn decide_call(
        &self,
        request: &mut LlmRequest,
        cx: &mut Exchange<'_>,
        api: Api,
        body: &[u8],
    ) -> BodyStep {
        let config = &self.config;
        let host = cx.host;
        if body.len() > config.max_body_bytes {
            let message = format!(
                "the request body is larger than {} bytes",
                config.max_body_bytes
            );
            return self.invalid(cx, &api, 413, ErrorKind::TooLarge, &message);
        }
        let call: Call = match api::read(&api, body) {
            Ok(call) => call,
            Err(e) => return self.invalid(cx, &api, 400, ErrorKind::InvalidRequest, &e.message()),
        };
        let mut decision = LlmDecision {
            provider: api.provider.as_str().into(),
            operation: api.operation.as_str().into(),
            model: call.model.clone(),
            stream: call.stream,
            max_tokens: call.max_tokens(),
            ..LlmDecision::default()
        };
        let other = config.models.len();
        let Some(rule) = rule_for(&config.models, config.other.as_ref(), &call.model) else {
            if let Some(m) = self.metrics.model(other) {
                m.refused.inc(host);
            }
            let message = format!("the model `{}` is not allowed here", call.model);
            let why = NotPermitted::Unlisted.reason();
            return self.refuse(
                cx,
                &api,
                decision,
                403,
                ErrorKind::Permission,
                why,
                &message,
                Vec::new(),
            );
        };
        let index = config
            .models
            .iter()
            .position(|r| std::ptr::eq(r, rule))
            .unwrap_or(other);
        let metrics = self.metrics.model(index);
        if let Err(why) = permits(rule, request.identity.as_deref()) {
            if let Some(m) = metrics {
                m.refused.inc(host);
            }
            let message = match &why {
                NotPermitted::NoIdentity => format!(
                    "the model `{}` requires an authenticated caller",
                    call.model
                ),
                NotPermitted::Scope(scope) => {
                    format!("the model `{}` requires the scope `{scope}`", call.model)
                }
                _ => format!("the caller may not use the model `{}`", call.model),
            };
            return self.refuse(
                cx,
                &api,
                decision,
                403,
                ErrorKind::Permission,
                why.reason(),
                &message,
                Vec::new(),
            );
        }

        // The output-token cap.
        let mut replaced: Option<Vec<u8>> = None;
        if let (Some(cap), Some(field)) = (rule.cap, api.cap_field) {
            let over = call.limits.is_empty()
                || call
                    .limits
                    .iter()
                    .any(|l| l.value.is_none_or(|v| v > cap.limit));
            if over && cap.action == CapAction::Refuse {
                if let Some(m) = metrics {
                    m.refused.inc(host);
                }
                let message = format!(
                    "the model `{}` allows at most {} output tokens per request: set `{field}` to {} or less",
                    call.model, cap.limit, cap.limit
                );
                return self.refuse(
                    cx,
                    &api,
                    decision,
                    400,
                    ErrorKind::InvalidRequest,
                    "max_tokens_exceeded",
                    &message,
                    Vec::new(),
                );
            }
            if over {
                if let Capped::Rewritten(b) = api::cap(&api, body, &call, cap.limit) {
                    replaced = Some(b);
                    decision.capped = true;
                    decision.max_tokens =
                        Some(call.max_tokens().unwrap_or(cap.limit).min(cap.limit));
                    self.metrics.capped.inc(host);
                }
            }
        }

        // The budgets.
        let mut budgets_decision = None;
        if let (Some(budgets), Some(facts)) = (&config.budgets, request.facts.as_mut()) {
            set_model(facts, &call.model);
            facts.cost = Some(provisional_cost(
                config,
                rule,
                api.operation,
                decision.max_tokens,
            ));
            let d = decide(budgets, &HostStore(host), facts, self.clock.now_ns());
            self.metrics.store(host, &d.counts);
            let chosen = d.refusing().next().or_else(|| {
                d.reports
                    .iter()
                    .filter(|r| r.metered && !r.shadow)
                    .min_by_key(|r| r.remaining)
            });
            if let Some(r) = chosen {
                decision.budget = budgets.rules.get(r.rule).map(|rule| rule.name.clone());
                decision.budget_key = Some(budget::key_description(budgets, r.rule, facts));
                decision.remaining = Some(r.remaining);
            }
            if let Some(refusal) = &d.refusal {
                for r in d.refusing() {
                    if let Some(c) = self.metrics.budget_limited.get(r.rule) {
                        c.inc(host);
                    }
                }
                if let Some(m) = metrics {
                    m.refused.inc(host);
                }
                let headers = refusal_reply(budgets, &d, None)
                    .map(|r| r.headers)
                    .unwrap_or_default();
                let (reason, message) = match refusal.reason {
                    RefusalReason::RateLimited => (
                        "budget_exceeded",
                        format!(
                            "token budget `{}` exhausted; retry in {} s",
                            decision.budget.as_deref().unwrap_or("?"),
                            refusal.retry_after
                        ),
                    ),
                    RefusalReason::TableFull => (
                        "table_full",
                        format!(
                            "too many clients hold a token budget at once; retry in {} s",
                            refusal.retry_after
                        ),
                    ),
                    RefusalReason::StoreFailure => (
                        "store_failure",
                        "the token budgets could not be read or updated; retry later".to_string(),
                    ),
                    RefusalReason::ServiceFailure => (
                        "service_failure",
                        "the rate-limit service did not answer; retry later".to_string(),
                    ),
                };
                return self.refuse(
                    cx,
                    &api,
                    decision,
                    budgets.status,
                    ErrorKind::RateLimited,
                    reason,
                    &message,
                    headers,
                );
            }
            budgets_decision = Some(d);
        }

        decision.outcome = "allowed".into();
        decision.usage = "pending".into();
        if let Some(m) = metrics {
            m.requests.inc(host);
        }
        Self::publish(cx, &decision);
        request.admitted = Some(Admitted {
            rule: index,
            budgets: budgets_decision,
            max_tokens: decision.max_tokens,
            reader: None,
            failed: false,
            decision,
            settled: false,
        });
        replaced.map_or(BodyStep::Continue, BodyStep::Replace)
    }

    /// The call is over: charges its usage (reported, else estimated, or
    /// nothing for an error answer), settles the budgets, publishes.
    fn finish(&self, request: &mut LlmRequest, cx: &mut Exchange<'_>) {
        let host = cx.host;
        let Some(api) = request.api else { return };
        let Some(call) = request.admitted.as_mut().filter(|c| !c.settled) else {
            return;
        };
        call.settled = true;
        let reported = call.reader.as_ref().and_then(UsageReader::usage);
        let (usage, source) = match reported {
            Some(usage) => (usage, "reported"),
            // The provider answered an error without usage: it bills none.
            None if call.failed => (Usage::default(), "none"),
            None => {
                self.metrics.usage_estimated.inc(host);
                (
                    estimated_usage(&self.config.estimate, api.operation, call.max_tokens),
                    "estimated",
                )
            }
        };
        let Some(rule) = self.rule(call.rule) else {
            return;
        };
        let cost = rule.cost(usage);
        if let Some(m) = self.metrics.model(call.rule) {
            if usage.input > 0 {
                m.input_tokens.add(host, usage.input);
            }
            if usage.output > 0 {
                m.output_tokens.add(host, usage.output);
            }
        }
        let d = &mut call.decision;
        d.input_tokens = usage.input;
        d.output_tokens = usage.output;
        d.usage = source.into();
        d.charged = cost;
        d.response_model = call
            .reader
            .as_ref()
            .and_then(|r| r.model())
            .map(str::to_string);
        if let (Some(budgets), Some(facts), Some(decided)) = (
            &self.config.budgets,
            request.facts.as_ref(),
            call.budgets.as_ref(),
        ) {
            let s: Settlement = settle(
                budgets,
                &HostStore(host),
                facts,
                decided,
                cost,
                self.clock.now_ns(),
            );
            self.metrics.store(host, &s.counts);
            if let Some(r) = s
                .rules
                .iter()
                .filter(|r| !r.shadow)
                .min_by_key(|r| r.remaining)
            {
                d.budget = budgets.rules.get(r.rule).map(|rule| rule.name.clone());
                d.budget_key = Some(budget::key_description(budgets, r.rule, facts));
                d.remaining = Some(r.remaining);
            }
        }
        let decision = call.decision.clone();
        Self::publish(cx, &decision);
    }
}

impl Stage for LlmStage {
    type Request = LlmRequest;

    fn needs(&self) -> Needs {
        let mut headers: Vec<String> = [":method", ":path", ":authority"]
            .map(String::from)
            .to_vec();
        if let Some(budgets) = &self.config.budgets {
            for name in budget::request_headers(budgets) {
                if !headers.contains(&name) {
                    headers.push(name);
                }
            }
        }
        Needs {
            request_headers: headers,
            provides: DecisionSet::of(&[DecisionKind::Llm, DecisionKind::Denial]),
            request_body: true,
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut LlmRequest, cx: &mut Exchange<'_>) -> Step {
        let config = &self.config;
        if cx.request.method() != "POST" {
            return Step::Continue;
        }
        let Some(api) = api::recognize(cx.request.path()) else {
            return Step::Continue;
        };
        if !config.matcher.matches(&cx.view(config.match_route_name)) {
            return Step::Continue;
        }
        request.api = Some(api);
        if cx.end_of_stream {
            self.metrics.invalid_requests.inc(cx.host);
            self.metrics.denied.inc(cx.host);
            return Step::Refuse(Refusal {
                filter: LlmModule::NAME,
                reason: "invalid_request".into(),
                reply: reply::reply(
                    api.provider,
                    400,
                    ErrorKind::InvalidRequest,
                    "invalid_request",
                    "the request has no body",
                    Vec::new(),
                ),
            });
        }
        request.identity = cx.decisions.identity(cx.host).cloned();
        if let Some(budgets) = &config.budgets {
            request.facts = Some(RateLimitStage::request_facts(budgets, cx));
        }
        if config.rewrites {
            // The body may be rewritten after the headers have gone on.
            cx.remove_request_header("content-length");
        }
        Step::ReadBody {
            max_bytes: config.max_body_bytes,
        }
    }

    fn on_request_body(
        &self,
        request: &mut LlmRequest,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        match request.api {
            Some(api) => self.decide_call(request, cx, api, body),
            None => BodyStep::Continue,
        }
    }

    fn on_response_headers(&self, request: &mut LlmRequest, cx: &mut Exchange<'_>) -> ResponseStep {
        let host = cx.host;
        let Some(call) = request.admitted.as_mut() else {
            return ResponseStep::Continue;
        };
        let status: u16 = cx
            .response
            .header(host, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        call.failed = !(200..400).contains(&status);
        let event_stream = cx.response.header(host, "content-type").is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        call.reader = Some(UsageReader::new(event_stream));
        if let (Some(budgets), Some(d)) = (&self.config.budgets, &call.budgets) {
            for (name, value) in allowed_headers(budgets, d) {
                cx.response.add(host, &name, &value);
            }
        }
        ResponseStep::ObserveBody
    }

    fn on_response_body(
        &self,
        request: &mut LlmRequest,
        cx: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        let mut ended = false;
        if let Some(reader) = request.admitted.as_mut().and_then(|c| c.reader.as_mut()) {
            reader.feed(body);
            ended = reader.ended();
        }
        // Settled at the stream's last event: a client that hangs up right
        // after it (as SDKs do) must not leave the record without usage.
        if complete || ended {
            self.finish(request, cx);
        }
        ResponseBodyStep::Continue
    }

    fn on_log(&self, request: &mut LlmRequest, cx: &mut Exchange<'_>) {
        // A response that had no body, or a stream cut short.
        self.finish(request, cx);
    }
}

#[cfg(test)]
mod tests;
