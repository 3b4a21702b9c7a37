//! The proxy-wasm adapter: gathers the request head and body, asks the core,
//! applies the verdict. Nothing here decides anything.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

use palisade_shared::contract;
use palisade_shared::headers::first_value;
use palisade_shared::host::{self, Counter};

use crate::config::Config;
use crate::inspect::{Action as WafAction, Inspection, Verdict, Waf};
use crate::request::RequestHead;
use crate::response;

proxy_wasm::main! {{
    host::install_panic_hook();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(WafRoot::default()) });
}}

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
    fn define(config: &Config) -> Self {
        Metrics {
            actions: ACTIONS
                .iter()
                .map(|a| Counter::define(&format!("palisade.waf.requests.{a}")))
                .collect(),
            families: config
                .families
                .iter()
                .map(|f| {
                    let counters = ACTIONS
                        .iter()
                        .map(|a| Counter::define(&format!("palisade.waf.family.{f}.{a}")))
                        .collect();
                    (f.clone(), counters)
                })
                .collect(),
        }
    }

    fn record(&self, verdict: &Verdict) {
        let Some(i) = ACTIONS.iter().position(|a| *a == verdict.decision.action) else {
            return;
        };
        if let Some(c) = self.actions.get(i) {
            c.inc();
        }
        for family in &verdict.families {
            if let Some((_, counters)) = self.families.iter().find(|(f, _)| f == family) {
                if let Some(c) = counters.get(i) {
                    c.inc();
                }
            }
        }
    }
}

struct Loaded {
    waf: Waf,
    metrics: Metrics,
    /// `palisade.waf` for a request that matched nothing, serialized once:
    /// it is what nearly every request publishes. Indexed by whether the
    /// body was inspected.
    clean_allow: [Vec<u8>; 2],
}

#[derive(Default)]
struct WafRoot {
    loaded: Option<Rc<Loaded>>,
}

impl Context for WafRoot {}

impl RootContext for WafRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let started = host::now_unix_millis();
        let config = match Config::from_json(&host::plugin_configuration()) {
            Ok(c) => c,
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade.waf: {e}"));
                return false;
            }
        };
        host::log(
            LogLevel::Info,
            &format!(
                "palisade.waf: {} rule(s) at paranoia level {} in {} automata ({} without prefilter literals, {} transformation pipeline(s)), compiled in {} ms; mode {:?}, threshold {}",
                config.rules.rules().len(),
                config.paranoia_level,
                config.rules.automaton_count(),
                config.rules.unfiltered_count(),
                config.rules.pipeline_count(),
                host::now_unix_millis().saturating_sub(started),
                config.mode,
                config.anomaly_threshold
            ),
        );
        let clean_allow = [false, true].map(|body_inspected| {
            serde_json::to_vec(&contract::WafDecision {
                score: 0,
                matches: Vec::new(),
                action: "allowed".into(),
                body_inspected,
            })
            .unwrap_or_default()
        });
        self.loaded = Some(Rc::new(Loaded {
            metrics: Metrics::define(&config),
            waf: Waf::new(config),
            clean_allow,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(WafFilter {
            loaded: self.loaded.clone(),
            headers: Vec::new(),
            inspection: None,
            done: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct WafFilter {
    loaded: Option<Rc<Loaded>>,
    headers: Vec<(String, String)>,
    inspection: Option<Inspection>,
    done: bool,
}

impl Context for WafFilter {}

/// Envoy's route name when a route match needs it (the attribute costs a
/// host call and a serialization per request; most configurations never
/// match on it).
fn route_name(waf: &Waf) -> String {
    if waf.config.needs_route_name {
        host::property_string(&["xds", "route_name"]).unwrap_or_default()
    } else {
        String::new()
    }
}

impl WafFilter {
    fn request_id(&self) -> Option<String> {
        first_value(&self.headers, "x-request-id").map(str::to_string)
    }

    fn head<'a>(headers: &'a [(String, String)], route_name: &'a str) -> RequestHead<'a> {
        let header = |name| first_value(headers, name).unwrap_or("");
        let authority = match header(":authority") {
            "" => header("host"),
            a => a,
        };
        RequestHead {
            method: header(":method"),
            path: header(":path"),
            authority,
            route_name,
            headers,
        }
    }

    /// Publishes, counts and applies a verdict. Returns whether the request
    /// was refused (a local reply was sent).
    fn finish(&mut self, loaded: &Loaded, verdict: &Verdict) -> bool {
        self.done = true;
        loaded.metrics.record(verdict);
        publish(loaded, &verdict.decision);
        if verdict.decision.action != "allowed" {
            let rules: Vec<String> = verdict
                .decision
                .matches
                .iter()
                .map(|m| format!("{}@{}", m.rule_id, m.location))
                .collect();
            host::log(
                LogLevel::Info,
                &format!(
                    "palisade.waf: {} (score {}, csrf {:?}): {}",
                    verdict.decision.action,
                    verdict.decision.score,
                    verdict.csrf.map(|c| c.reason()),
                    rules.join(" ")
                ),
            );
        }
        if !matches!(verdict.action, WafAction::Refuse { .. }) {
            return false;
        }
        if let Some(d) = response::denial(verdict) {
            host::publish_json("palisade_waf", contract::DENIAL, &d);
        }
        // From the headers read at the start: once they have gone on, the
        // host may no longer serve them.
        let request_id = self.request_id();
        if let Some(reply) =
            response::refusal(verdict, request_id, loaded.waf.config.expose_rule_ids)
        {
            host::send_reply(
                reply.status,
                &[("content-type", palisade_shared::problem::CONTENT_TYPE)],
                &reply.body,
            );
        }
        true
    }
}

/// Publishes a decision as `palisade.waf`.
fn publish(loaded: &Loaded, decision: &contract::WafDecision) {
    let clean = decision.score == 0 && decision.matches.is_empty() && decision.action == "allowed";
    let clean_allow = &loaded.clean_allow[usize::from(decision.body_inspected)];
    if clean && !clean_allow.is_empty() {
        if let Err(status) = host::set_filter_state(contract::WAF, clean_allow) {
            host::log(
                LogLevel::Warn,
                &format!("palisade_waf: cannot publish {}: {status:?}", contract::WAF),
            );
        }
    } else {
        host::publish_json("palisade_waf", contract::WAF, decision);
    }
}

impl HttpContext for WafFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(loaded) = self.loaded.clone() else {
            // on_configure failed, so Envoy should not be sending requests;
            // if it does, nothing was inspected and the request stays out.
            host::log(
                LogLevel::Error,
                "palisade.waf: no valid configuration; refusing the request",
            );
            host::send_reply(500, &[], b"");
            return Action::Pause;
        };
        self.headers = host::request_headers();
        let route = route_name(&loaded.waf);
        let waf = &loaded.waf;
        let head = Self::head(&self.headers, &route);
        let inspection = waf.inspect_head(&head);
        let verdict = waf.verdict(&inspection);
        // Decide now when there is no body, when the head alone is refused,
        // or when the route needs no body inspection.
        if end_of_stream
            || matches!(verdict.action, WafAction::Refuse { .. })
            || !waf.wants_body(&inspection)
        {
            return if self.finish(&loaded, &verdict) {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        self.inspection = Some(inspection);
        // The decision so far, made without the body (`body_inspected:
        // false`): a request whose stream ends before its body reaches the
        // WAF (a `direct_response` route, a later filter refusing at the
        // headers) still carries it; the body's inspection replaces it.
        publish(&loaded, &verdict.decision);
        // Envoy turns a paused header callback into "stop all iteration",
        // which would also withhold the body; so the headers go on, and the
        // body is held (buffered) in `on_http_request_body` until inspected:
        // the upstream sees no byte of it before the verdict.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.done {
            return Action::Continue;
        }
        let Some(loaded) = self.loaded.clone() else {
            return Action::Continue;
        };
        let max = loaded.waf.config.max_body_bytes;
        if !end_of_stream && body_size <= max {
            // Keep buffering until the whole body (or the limit) is here.
            return Action::Pause;
        }
        let Some(mut inspection) = self.inspection.take() else {
            return Action::Continue;
        };
        // Read one byte past the limit so the core sees that it was exceeded.
        let read = body_size.min(max.saturating_add(1));
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, read) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                // The body cannot be inspected: refuse rather than pass it unseen.
                host::log(
                    LogLevel::Error,
                    &format!("palisade.waf: cannot read the request body ({status:?}); refusing"),
                );
                host::send_reply(
                    500,
                    &[("content-type", palisade_shared::problem::CONTENT_TYPE)],
                    &palisade_shared::problem::Problem::new(500, "Internal Server Error")
                        .with_detail("the request body could not be inspected")
                        .with_request_id(self.request_id())
                        .to_json(),
                );
                self.done = true;
                return Action::Pause;
            }
        };
        let route = route_name(&loaded.waf);
        let head = Self::head(&self.headers, &route);
        loaded.waf.inspect_body(&head, &body, &mut inspection);
        let verdict = loaded.waf.verdict(&inspection);
        if self.finish(&loaded, &verdict) {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}
