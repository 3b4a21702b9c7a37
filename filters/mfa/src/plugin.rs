//! The proxy-wasm adapter: reads the request line, the identity filter state,
//! the connection's client certificate and the clock, asks the core, and
//! applies the decision. Nothing here decides anything.

use std::rc::Rc;

use palisade_shared::contract;
use palisade_shared::headers::first_value;
use palisade_shared::host::{self, Counter};
use palisade_shared::matcher::RequestView;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::Config;
use crate::decide::{self, Decision, Refused, RequestFacts};

proxy_wasm::main! {{
    host::install_panic_hook();
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MfaRoot::default()) });
}}

#[derive(Clone, Copy, Default)]
struct Outcomes {
    passed: Counter,
    challenged: Counter,
    redirected: Counter,
    unauthenticated: Counter,
}

impl Outcomes {
    fn define(prefix: &str) -> Self {
        Outcomes {
            passed: Counter::define(&format!("{prefix}.passed")),
            challenged: Counter::define(&format!("{prefix}.challenged")),
            redirected: Counter::define(&format!("{prefix}.redirected")),
            unauthenticated: Counter::define(&format!("{prefix}.unauthenticated")),
        }
    }

    fn refused(&self, how: Refused) {
        match how {
            Refused::Challenged => self.challenged.inc(),
            Refused::Redirected => self.redirected.inc(),
            Refused::Unauthenticated | Refused::Unreadable => self.unauthenticated.inc(),
        }
    }
}

#[derive(Default)]
struct Metrics {
    total: Outcomes,
    per_policy: Vec<Outcomes>,
    no_policy: Counter,
    identity_unreadable: Counter,
}

impl Metrics {
    fn define(config: &Config) -> Self {
        Metrics {
            total: Outcomes::define("palisade.mfa"),
            per_policy: config
                .policies
                .iter()
                .map(|p| Outcomes::define(&format!("palisade.mfa.policy.{}", p.name)))
                .collect(),
            no_policy: Counter::define("palisade.mfa.no_policy"),
            identity_unreadable: Counter::define("palisade.mfa.identity_unreadable"),
        }
    }
}

#[derive(Default)]
struct MfaRoot {
    shared: Option<Rc<(Config, Metrics)>>,
}

impl Context for MfaRoot {}

impl RootContext for MfaRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match Config::from_json(&host::plugin_configuration()) {
            Ok(config) => {
                let metrics = Metrics::define(&config);
                self.shared = Some(Rc::new((config, metrics)));
                true
            }
            Err(e) => {
                host::log(LogLevel::Error, &format!("palisade_mfa: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration `on_configure` has refused the module.
        let shared = self.shared.clone()?;
        Some(Box::new(MfaFilter { shared }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct MfaFilter {
    shared: Rc<(Config, Metrics)>,
}

impl Context for MfaFilter {}

impl HttpContext for MfaFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (config, metrics) = &*self.shared;
        // One read of the whole request map costs less than two lookups by
        // name (each value handed back is a call into the VM; see
        // docs/performance.md), and the decision needs at least the method
        // and the path.
        let headers = host::request_headers();
        let find = |name: &str| first_value(&headers, name);
        // Client copies of the headers this filter sets never reach the upstream.
        for name in config.upstream_headers.names() {
            if find(name).is_some() {
                host::remove_request_header(name);
            }
        }
        let header = |name: &str| find(name).unwrap_or_default();
        let (method, path) = (header(":method"), header(":path"));
        let authority = if config.needs_host {
            header(":authority")
        } else {
            ""
        };
        let route_name = if config.needs_route_name {
            host::property_string(&["xds", "route_name"]).unwrap_or_default()
        } else {
            String::new()
        };
        let view = RequestView {
            method,
            host: authority,
            path,
            route_name: &route_name,
        };
        let Some(policy) = config.policy_index_for(&view) else {
            metrics.no_policy.inc();
            return Action::Continue;
        };
        let identity = host::property_bytes(&[contract::IDENTITY]).filter(|b| !b.is_empty());
        let (wants_certificate, wants_accept) =
            config.policies.get(policy).map_or((false, false), |p| {
                (p.client_certificate_amr.is_some(), p.browser_redirect)
            });
        let client_certificate = wants_certificate && identity.is_some() && verified_peer();
        let accept = if wants_accept { find("accept") } else { None };
        let request = RequestFacts {
            view,
            accept,
            identity: identity.as_deref(),
            client_certificate,
            now_unix_ms: host::now_unix_millis(),
        };
        match decide::decide(config, Some(policy), &request) {
            Decision::NoPolicy => {
                metrics.no_policy.inc();
                Action::Continue
            }
            Decision::Pass {
                policy,
                headers,
                state,
            } => {
                for (name, value) in &headers {
                    host::set_request_header(name, value);
                }
                host::publish_json("palisade_mfa", contract::MFA, &state);
                metrics.total.passed.inc();
                if let Some(m) = metrics.per_policy.get(policy) {
                    m.passed.inc();
                }
                Action::Continue
            }
            Decision::Refuse {
                policy,
                how,
                reply,
                state,
                denial,
            } => {
                host::publish_json("palisade_mfa", contract::MFA, &state);
                host::publish_json("palisade_mfa", contract::DENIAL, &denial);
                metrics.total.refused(how);
                if let Some(m) = metrics.per_policy.get(policy) {
                    m.refused(how);
                }
                let level = if how == Refused::Unreadable {
                    metrics.identity_unreadable.inc();
                    LogLevel::Error
                } else {
                    LogLevel::Debug
                };
                host::log(
                    level,
                    &format!(
                        "palisade_mfa: policy `{}` refused the request: {} ({})",
                        state.policy, denial.reason, reply.status
                    ),
                );
                let headers: Vec<(&str, &str)> = reply
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                // The request id is read only for the refusals that show it.
                let body = reply.body(|| host::request_header("x-request-id"));
                host::send_reply(reply.status, &headers, &body);
                Action::Pause
            }
        }
    }
}

/// Whether the downstream connection carries a client certificate. Envoy
/// only asks for one when the listener has a validation context, and then
/// (unless `trust_chain_verification: ACCEPT_UNTRUSTED`) completes the
/// handshake only with a certificate it verified.
fn verified_peer() -> bool {
    let mtls = host::property_bytes(&["connection", "mtls"])
        .and_then(|b| b.first().copied())
        .is_some_and(|b| b != 0);
    mtls && host::property_string(&["connection", "subject_peer_certificate"]).is_some()
}
