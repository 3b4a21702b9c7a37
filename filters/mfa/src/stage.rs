//! The MFA step-up policy as a stage of the engine: reads the request line,
//! the verified identity (from the JWT stage in memory, or from filter state
//! when the JWT filter runs as its own module) and the connection's client
//! certificate, asks [`decide`], and applies the decision.

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Counter, DecisionKind, DecisionSet, Exchange, Host, LogLevel, Module, Needs,
    Refusal, Reply, Stage, Step,
};

use crate::config::Config;
use crate::decide::{self, Decision, Refused, RequestFacts};
use crate::identity::Unreadable;

#[derive(Clone, Copy, Default)]
struct Outcomes {
    passed: Counter,
    challenged: Counter,
    redirected: Counter,
    unauthenticated: Counter,
}

impl Outcomes {
    fn define(host: &dyn Host, prefix: &str) -> Self {
        let c = |what: &str| Counter::define(host, &format!("{prefix}.{what}"));
        Outcomes {
            passed: c("passed"),
            challenged: c("challenged"),
            redirected: c("redirected"),
            unauthenticated: c("unauthenticated"),
        }
    }

    fn refused(&self, host: &dyn Host, how: Refused) {
        match how {
            Refused::Challenged => self.challenged.inc(host),
            Refused::Redirected => self.redirected.inc(host),
            Refused::Unauthenticated | Refused::Unreadable => self.unauthenticated.inc(host),
        }
    }
}

struct Metrics {
    total: Outcomes,
    per_policy: Vec<Outcomes>,
    no_policy: Counter,
    identity_unreadable: Counter,
}

/// The MFA step-up stage.
pub struct MfaStage {
    config: Config,
    metrics: Metrics,
}

/// The standalone module `palisade_mfa.wasm`.
pub struct MfaModule;

impl Module for MfaModule {
    type Stage = MfaStage;
    const NAME: &'static str = "mfa";

    fn configure(config: &[u8], host: &dyn Host) -> Result<MfaStage, ConfigError> {
        MfaStage::configure(config, host)
    }
}

impl MfaStage {
    /// The stage for a configuration, its metrics defined.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        let metrics = Metrics {
            total: Outcomes::define(host, "palisade.mfa"),
            per_policy: config
                .policies
                .iter()
                .map(|p| Outcomes::define(host, &format!("palisade.mfa.policy.{}", p.name)))
                .collect(),
            no_policy: Counter::define(host, "palisade.mfa.no_policy"),
            identity_unreadable: Counter::define(host, "palisade.mfa.identity_unreadable"),
        };
        Ok(MfaStage { config, metrics })
    }

    fn log(host: &dyn Host, level: LogLevel, message: &str) {
        engine::log(host, MfaModule::NAME, level, message);
    }
}

/// Whether the downstream connection carries a client certificate. Envoy
/// only asks for one when the listener has a validation context, and then
/// (unless `trust_chain_verification: ACCEPT_UNTRUSTED`) completes the
/// handshake only with a certificate it verified.
fn verified_peer(cx: &mut Exchange<'_>) -> bool {
    cx.attributes.flag(cx.host, Attribute::Mtls)
        && cx
            .attributes
            .string(cx.host, Attribute::PeerSubject)
            .is_some()
}

impl Stage for MfaStage {
    type Request = ();

    fn needs(&self) -> Needs {
        // The whole map: the decision needs the method and the path, and
        // client copies of the upstream headers are looked for by name.
        Needs {
            whole_request_map: true,
            provides: DecisionSet::of(&[DecisionKind::Mfa, DecisionKind::Denial]),
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, _: &mut (), cx: &mut Exchange<'_>) -> Step {
        let (config, metrics, host) = (&self.config, &self.metrics, cx.host);
        // Client copies of the headers this stage sets never reach the upstream.
        for name in config.upstream_headers.names() {
            if cx.request.header(name).is_some() {
                cx.remove_request_header(name);
            }
        }
        let route_name = if config.needs_route_name {
            cx.attributes.route_name(host).to_string()
        } else {
            String::new()
        };
        let Some(policy) = config.policy_index_for(&cx.request.view(&route_name)) else {
            metrics.no_policy.inc(host);
            return Step::Continue;
        };
        let (wants_certificate, wants_accept) =
            config.policies.get(policy).map_or((false, false), |p| {
                (p.client_certificate_amr.is_some(), p.browser_redirect)
            });
        let identity = cx.decisions.identity(host).cloned();
        let unreadable = cx.decisions.unreadable().contains(DecisionKind::Identity);
        let identity = match (&identity, unreadable) {
            (Some(id), _) => Some(Ok(&**id)),
            (None, true) => Some(Err(Unreadable)),
            (None, false) => None,
        };
        let client_certificate =
            wants_certificate && matches!(identity, Some(Ok(_))) && verified_peer(cx);
        let request = RequestFacts {
            view: cx.request.view(&route_name),
            accept: if wants_accept {
                cx.request.header("accept")
            } else {
                None
            },
            identity,
            client_certificate,
            now_unix_ms: cx.now_ms(),
        };
        match decide::decide(config, Some(policy), &request) {
            Decision::NoPolicy => {
                metrics.no_policy.inc(host);
                Step::Continue
            }
            Decision::Pass {
                policy,
                headers,
                state,
            } => {
                for (name, value) in &headers {
                    cx.set_request_header(name, value);
                }
                engine::publish_json(host, MfaModule::NAME, contract::MFA, &state);
                cx.decisions.set_mfa(state);
                metrics.total.passed.inc(host);
                if let Some(m) = metrics.per_policy.get(policy) {
                    m.passed.inc(host);
                }
                Step::Continue
            }
            Decision::Refuse {
                policy,
                how,
                reply,
                state,
                denial,
            } => {
                metrics.total.refused(host, how);
                if let Some(m) = metrics.per_policy.get(policy) {
                    m.refused(host, how);
                }
                let level = if how == Refused::Unreadable {
                    metrics.identity_unreadable.inc(host);
                    LogLevel::Error
                } else {
                    LogLevel::Debug
                };
                Self::log(
                    host,
                    level,
                    &format!(
                        "policy `{}` refused the request: {} ({})",
                        state.policy, denial.reason, reply.status
                    ),
                );
                engine::publish_json(host, MfaModule::NAME, contract::MFA, &state);
                cx.decisions.set_mfa(state);
                // The request id is read only for the refusals that show it.
                let body = reply.body(|| cx.request.request_id(host));
                Step::Refuse(Refusal {
                    filter: MfaModule::NAME,
                    reason: denial.reason,
                    reply: Reply {
                        status: reply.status,
                        headers: reply.headers,
                        body,
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The MFA stage in the engine against the fake host: the identity from
    //! another module's filter state, unreadable state, client copies of the
    //! upstream headers.

    use palisade_shared::contract;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::{Action, Engine, Module};

    use super::*;

    const CONFIG: &[u8] = br#"{
        "acr_ranking": ["pwd", "mfa"],
        "upstream_headers": {"acr": "x-auth-acr"},
        "policies": {"admin": {"acr_values": ["mfa"]}},
        "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"}]
    }"#;

    fn run(host: &FakeHost) -> Action {
        let stage = MfaModule::configure(CONFIG, host).unwrap();
        let engine = Engine::new(stage, MfaModule::NAME, 1, host).unwrap();
        engine.on_request_headers(2, &mut None, true, host)
    }

    #[test]
    fn a_strong_identity_from_the_jwt_module_passes_and_forged_headers_are_dropped() {
        let host = FakeHost::new()
            .with_request("GET", "/admin")
            .with_request_header("x-auth-acr", "phr")
            .with_property(&[contract::IDENTITY], br#"{"provider":"corp","iss":"i","sub":"a","aud":[],"scope":[],"acr":"mfa","amr":[]}"#);
        assert_eq!(run(&host), Action::Continue);
        let upstream = host.request_headers();
        let acr: Vec<&str> = upstream
            .iter()
            .filter(|(n, _)| n == "x-auth-acr")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            acr,
            ["mfa"],
            "the client's copy is replaced by the verified value"
        );
        assert_eq!(
            host.property_json(contract::MFA).unwrap()["outcome"],
            "passed"
        );
        assert_eq!(host.metric("palisade.mfa.policy.admin.passed"), 1);
    }

    #[test]
    fn an_unreadable_identity_is_refused_closed() {
        let host = FakeHost::new()
            .with_request("GET", "/admin")
            .with_property(&[contract::IDENTITY], br#"{"acr": 2}"#);
        assert_eq!(run(&host), Action::Pause);
        assert_eq!(host.last_reply().unwrap().status, 500);
        assert_eq!(host.metric("palisade.mfa.identity_unreadable"), 1);
        assert_eq!(
            host.property_json(contract::DENIAL).unwrap()["reason"],
            "identity_unreadable"
        );
    }

    #[test]
    fn no_identity_is_a_plain_challenge() {
        let host = FakeHost::new().with_request("GET", "/admin");
        assert_eq!(run(&host), Action::Pause);
        let reply = host.last_reply().unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
}
