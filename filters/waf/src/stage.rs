//! The WAF as a stage of the engine: inspects the request head, asks for the
//! body when the route inspects it, and applies the verdict. Nothing here
//! decides anything.

use palisade_shared::config::ConfigError;
use palisade_shared::contract::{self, WafDecision};
use palisade_shared::engine::{
    self, BodyStep, Counter, DecisionKind, DecisionSet, Exchange, Host, LogLevel, Module, Needs,
    Refusal, Reply, Stage, Step,
};
use palisade_shared::problem;

use crate::config::Config;
use crate::inspect::{Action as WafAction, Inspection, Verdict, Waf};
use crate::request::RequestHead;
use crate::response;

/// The actions a decision is counted under.
const ACTIONS: [&str; 6] = [
    "allowed",
    "blocked",
    "detected",
    "csrf_blocked",
    "csrf_shadow",
    "body_too_large",
];

struct Metrics {
    /// `palisade.waf.requests.<action>`.
    actions: Vec<Counter>,
    /// `palisade.waf.family.<family>.<action>`, per family then per action.
    families: Vec<(String, Vec<Counter>)>,
}

impl Metrics {
    fn define(host: &dyn Host, config: &Config) -> Self {
        Metrics {
            actions: ACTIONS
                .iter()
                .map(|a| Counter::define(host, &format!("palisade.waf.requests.{a}")))
                .collect(),
            families: config
                .families
                .iter()
                .map(|f| {
                    let counters = ACTIONS
                        .iter()
                        .map(|a| Counter::define(host, &format!("palisade.waf.family.{f}.{a}")))
                        .collect();
                    (f.clone(), counters)
                })
                .collect(),
        }
    }

    fn record(&self, host: &dyn Host, verdict: &Verdict) {
        let Some(i) = ACTIONS.iter().position(|a| *a == verdict.decision.action) else {
            return;
        };
        if let Some(c) = self.actions.get(i) {
            c.inc(host);
        }
        for family in &verdict.families {
            if let Some((_, counters)) = self.families.iter().find(|(f, _)| f == family) {
                if let Some(c) = counters.get(i) {
                    c.inc(host);
                }
            }
        }
    }
}

/// The WAF stage.
pub struct WafStage {
    waf: Waf,
    metrics: Metrics,
    /// `palisade.waf` for a request that matched nothing, serialized once:
    /// it is what nearly every request publishes. Indexed by whether the
    /// body was inspected.
    clean_allow: [Vec<u8>; 2],
}

/// The standalone module `palisade_waf.wasm`.
pub struct WafModule;

impl Module for WafModule {
    type Stage = WafStage;
    const NAME: &'static str = "waf";

    fn configure(config: &[u8], host: &dyn Host) -> Result<WafStage, ConfigError> {
        WafStage::configure(config, host)
    }
}

/// What the WAF keeps for one request: the head's evidence, while the body
/// is on its way.
#[derive(Debug, Default)]
pub struct WafRequest {
    inspection: Option<Inspection>,
}

impl WafStage {
    /// Compiles the rules of a configuration and defines the metrics.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let started = host.now_unix_ms();
        let config = Config::from_json(config)?;
        Self::log(
            host,
            LogLevel::Info,
            &format!(
                "{} rule(s) at paranoia level {} in {} automata ({} without prefilter literals, {} transformation pipeline(s)), compiled in {} ms; mode {:?}, threshold {}",
                config.rules.rules().len(),
                config.paranoia_level,
                config.rules.automaton_count(),
                config.rules.unfiltered_count(),
                config.rules.pipeline_count(),
                host.now_unix_ms().saturating_sub(started),
                config.mode,
                config.anomaly_threshold
            ),
        );
        let clean_allow = [false, true].map(|body_inspected| {
            serde_json::to_vec(&WafDecision {
                score: 0,
                matches: Vec::new(),
                action: "allowed".into(),
                body_inspected,
            })
            .unwrap_or_default()
        });
        Ok(WafStage {
            metrics: Metrics::define(host, &config),
            waf: Waf::new(config),
            clean_allow,
        })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, WafModule::NAME, level, message);
    }

    /// Publishes, counts and applies a verdict: the refusal, when it is one.
    fn finish(&self, cx: &mut Exchange<'_>, verdict: Verdict) -> Option<Refusal> {
        let host = cx.host;
        self.metrics.record(host, &verdict);
        self.publish(host, &verdict.decision);
        if verdict.decision.action != "allowed" {
            let rules: Vec<String> = verdict
                .decision
                .matches
                .iter()
                .map(|m| format!("{}@{}", m.rule_id, m.location))
                .collect();
            Self::log(
                host,
                LogLevel::Info,
                &format!(
                    "{} (score {}, csrf {:?}): {}",
                    verdict.decision.action,
                    verdict.decision.score,
                    verdict.csrf.map(|c| c.reason()),
                    rules.join(" ")
                ),
            );
        }
        let refusal = match &verdict.action {
            WafAction::Refuse { reason, .. } => response::refusal(
                &verdict,
                cx.request.request_id(host),
                self.waf.config.expose_rule_ids,
            )
            .map(|reply| Refusal {
                filter: WafModule::NAME,
                reason: reason.clone(),
                reply: Reply {
                    status: reply.status,
                    headers: vec![("content-type".into(), problem::CONTENT_TYPE.into())],
                    body: reply.body,
                },
            }),
            WafAction::Allow => None,
        };
        cx.decisions.set_waf(verdict.decision);
        refusal
    }

    /// Publishes a decision as `palisade.waf`.
    fn publish(&self, host: &dyn Host, decision: &WafDecision) {
        let clean =
            decision.score == 0 && decision.matches.is_empty() && decision.action == "allowed";
        let clean_allow = &self.clean_allow[usize::from(decision.body_inspected)];
        if clean && !clean_allow.is_empty() {
            engine::publish(host, WafModule::NAME, contract::WAF, clean_allow);
        } else {
            engine::publish_json(host, WafModule::NAME, contract::WAF, decision);
        }
    }

    fn route_name(&self, cx: &mut Exchange<'_>) -> String {
        // The attribute costs a host call; most configurations never match on it.
        if self.waf.config.needs_route_name {
            cx.attributes.route_name(cx.host).to_string()
        } else {
            String::new()
        }
    }
}

fn head<'a>(cx: &'a Exchange<'_>, route_name: &'a str) -> RequestHead<'a> {
    RequestHead {
        method: cx.request.method(),
        path: cx.request.path(),
        authority: cx.request.authority(),
        route_name,
        headers: cx.request.headers(),
    }
}

impl Stage for WafStage {
    type Request = WafRequest;

    fn needs(&self) -> Needs {
        Needs {
            whole_request_map: true,
            provides: DecisionSet::of(&[DecisionKind::Waf, DecisionKind::Denial]),
            request_body: true,
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut WafRequest, cx: &mut Exchange<'_>) -> Step {
        let route_name = self.route_name(cx);
        let inspection = self.waf.inspect_head(&head(cx, &route_name));
        let verdict = self.waf.verdict(&inspection);
        // Decide now when there is no body, when the head alone is refused,
        // or when the route inspects no body.
        if cx.end_of_stream
            || matches!(verdict.action, WafAction::Refuse { .. })
            || !self.waf.wants_body(&inspection)
        {
            return match self.finish(cx, verdict) {
                Some(refusal) => Step::Refuse(refusal),
                None => Step::Continue,
            };
        }
        request.inspection = Some(inspection);
        // The decision so far, made without the body (`body_inspected:
        // false`): a request whose stream ends before its body reaches the
        // WAF (a `direct_response` route, a later stage refusing at the
        // headers) still carries it, in filter state and to the audit; the
        // body's inspection replaces it. Not counted: the body's is.
        self.publish(cx.host, &verdict.decision);
        cx.decisions.set_waf(verdict.decision);
        Step::ReadBody {
            max_bytes: self.waf.config.max_body_bytes,
        }
    }

    fn on_request_body(
        &self,
        request: &mut WafRequest,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        let Some(mut inspection) = request.inspection.take() else {
            return BodyStep::Continue;
        };
        let route_name = self.route_name(cx);
        self.waf
            .inspect_body(&head(cx, &route_name), body, &mut inspection);
        let verdict = self.waf.verdict(&inspection);
        match self.finish(cx, verdict) {
            Some(refusal) => BodyStep::Refuse(refusal),
            None => BodyStep::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The WAF stage in the engine against the fake host: a body held and
    //! inspected before it reaches the upstream, and a head refused at once.

    use palisade_shared::contract;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::{Action, Engine, Module};

    use super::*;

    fn engine(host: &FakeHost) -> Engine<WafStage> {
        let stage = WafModule::configure(br#"{"paranoia_level": 1}"#, host).unwrap();
        Engine::new(stage, WafModule::NAME, 1, host).unwrap()
    }

    #[test]
    fn a_json_body_is_held_and_refused_before_the_upstream_sees_it() {
        let host = FakeHost::new().with_request("POST", "/api/items");
        host.set_request(
            &[
                (":method", "POST"),
                (":path", "/api/items"),
                ("content-type", "application/json"),
            ],
            br#"{"name": "x' OR 1=1--"}"#,
        );
        let engine = engine(&host);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(2, &mut slot, false, &host),
            Action::Continue
        );
        // The head's decision stands until the body's replaces it: a
        // request that ends before its body carries it.
        assert_eq!(
            host.property_text(contract::WAF).unwrap(),
            r#"{"score":0,"matches":[],"action":"allowed","body_inspected":false}"#
        );
        assert_eq!(host.metric("palisade.waf.requests.allowed"), 0);
        assert_eq!(
            engine.on_request_body(2, &mut slot, 10, false, &host),
            Action::Pause
        );
        assert_eq!(
            engine.on_request_body(2, &mut slot, 24, true, &host),
            Action::Pause
        );
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        let waf = host.property_json(contract::WAF).unwrap();
        assert_eq!(waf["action"], "blocked");
        assert_eq!(waf["matches"][0]["location"], "json.name");
        assert_eq!(waf["body_inspected"], true);
        assert_eq!(host.metric("palisade.waf.requests.blocked"), 1);
    }

    #[test]
    fn a_clean_get_publishes_the_allow_without_reading_a_body() {
        let host = FakeHost::new().with_request("GET", "/search?q=shoes");
        let engine = engine(&host);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(2, &mut slot, true, &host),
            Action::Continue
        );
        assert_eq!(
            host.property_text(contract::WAF).unwrap(),
            r#"{"score":0,"matches":[],"action":"allowed","body_inspected":false}"#
        );
        assert_eq!(host.metric("palisade.waf.requests.allowed"), 1);
        assert!(host.replies().is_empty());
    }
}
