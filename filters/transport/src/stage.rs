//! The transport policy as a stage of the engine: reads the connection's
//! facts from Envoy's attributes (never from a header), asks [`decide`],
//! publishes `palisade.tls`, refuses or redirects, and adds
//! `Strict-Transport-Security` to responses sent over TLS.

use palisade_shared::config::ConfigError;
use palisade_shared::contract;
use palisade_shared::engine::{
    self, Attribute, Counter, DecisionKind, DecisionSet, Exchange, Host, HostFeature, LogLevel,
    Module, Needs, Refusal, ResponseStep, Stage, Step,
};
use palisade_shared::x509;

use crate::config::Config;
use crate::decide::{self, Connection, Decision, Peer, RequestLine, Requirement};
use crate::reply;

struct Metrics {
    passed: Counter,
    redirected: Counter,
    no_policy: Counter,
    refused: [Counter; Requirement::ALL.len()],
}

impl Metrics {
    fn define(host: &dyn Host) -> Self {
        let c = |what: &str| Counter::define(host, &format!("palisade.transport.{what}"));
        Metrics {
            passed: c("passed"),
            redirected: c("redirected"),
            no_policy: c("no_policy"),
            refused: Requirement::ALL.map(|r| c(&format!("refused.{}", r.name()))),
        }
    }

    fn refused(&self, host: &dyn Host, requirement: Requirement) {
        if let Some(i) = Requirement::ALL.iter().position(|r| *r == requirement) {
            if let Some(c) = self.refused.get(i) {
                c.inc(host);
            }
        }
    }
}

/// The transport stage.
pub struct TransportStage {
    config: Config,
    metrics: Metrics,
}

/// The standalone module `palisade_transport.wasm`.
pub struct TransportModule;

impl Module for TransportModule {
    type Stage = TransportStage;
    const NAME: &'static str = "transport";

    fn configure(config: &[u8], host: &dyn Host) -> Result<TransportStage, ConfigError> {
        TransportStage::configure(config, host)
    }
}

/// What the stage keeps for one request: the `Strict-Transport-Security`
/// value its response gets (a policy with HSTS, over TLS).
#[derive(Debug, Default)]
pub struct TransportRequest {
    hsts: Option<usize>,
}

impl TransportStage {
    /// The stage for a configuration, its metrics defined.
    /// A policy whose client-certificate rule reads the certificate
    /// (subjects, issuers, SANs) is refused on an Envoy that cannot give it
    /// ([`HostFeature::PeerCertificate`]): every such request would be
    /// refused otherwise.
    pub fn configure(config: &[u8], host: &dyn Host) -> Result<Self, ConfigError> {
        let config = Config::from_json(config)?;
        for policy in &config.policies {
            if policy
                .client_certificate
                .as_ref()
                .is_some_and(|rule| rule.reads_certificate())
            {
                HostFeature::PeerCertificate.check(host).map_err(|needs| {
                    ConfigError::invalid(
                        format!("policies.{}.client_certificate", policy.name),
                        format!(
                            "{needs}: subjects, issuers and SANs are read from it \
                             (the `sha256_fingerprints` allowlist works on every Envoy)"
                        ),
                    )
                })?;
            }
        }
        Ok(TransportStage {
            config,
            metrics: Metrics::define(host),
        })
    }
}

/// The connection's facts, from Envoy's attributes of the connection it
/// terminated. Plaintext costs one attribute read (absent); the client
/// certificate is read whole only when one was presented.
fn read_connection(cx: &mut Exchange<'_>) -> Connection {
    let (host, a) = (cx.host, &mut *cx.attributes);
    let Some(version) = a.string(host, Attribute::TlsVersion).map(str::to_string) else {
        return Connection::default();
    };
    let mut text = |attribute| a.string(host, attribute).map(str::to_string);
    let sni = text(Attribute::RequestedServerName);
    let cipher = text(Attribute::TlsCipher);
    let peer = a.flag(host, Attribute::Mtls).then(|| {
        let der = a
            .bytes(host, Attribute::PeerCertificate)
            .and_then(x509::der_from_pem_text);
        let sha256 = match &der {
            Some(der) => Some(x509::sha256_hex(der)),
            None => a
                .string(host, Attribute::PeerSha256)
                .map(str::to_ascii_lowercase),
        };
        Peer {
            sha256,
            certificate: der.as_deref().and_then(x509::parse),
        }
    });
    Connection {
        version: Some(version),
        cipher,
        sni,
        peer,
    }
}

impl Stage for TransportStage {
    type Request = TransportRequest;

    fn needs(&self) -> Needs {
        Needs {
            request_headers: self.config.request_headers.clone(),
            provides: DecisionSet::of(&[DecisionKind::Tls, DecisionKind::Denial]),
            ..Needs::default()
        }
    }

    fn on_request_headers(&self, request: &mut TransportRequest, cx: &mut Exchange<'_>) -> Step {
        let (config, host) = (&self.config, cx.host);
        let policy = config.policy_index_for(&cx.view(config.needs_route_name));
        if policy.is_none() {
            self.metrics.no_policy.inc(host);
            return Step::Continue;
        }
        let connection = read_connection(cx);
        let line = RequestLine {
            method: cx.request.method(),
            authority: cx.request.authority(),
            path: cx.request.path(),
        };
        let decision = decide::decide(config, policy, &line, &connection);
        let state = decide::published(config, &decision, &connection);
        engine::publish_json(host, TransportModule::NAME, contract::TLS, &state);
        cx.decisions.set_tls(state);
        // HSTS goes on every response over TLS under a policy that has it,
        // refusals included; never over plaintext.
        let hsts = policy.filter(|&p| {
            connection.version.is_some() && config.policies.get(p).is_some_and(|p| p.hsts.is_some())
        });
        match decision {
            Decision::NoPolicy => Step::Continue,
            Decision::Pass { .. } => {
                self.metrics.passed.inc(host);
                request.hsts = hsts;
                Step::Continue
            }
            Decision::Redirect { location, .. } => {
                self.metrics.redirected.inc(host);
                Step::Refuse(Refusal {
                    filter: TransportModule::NAME,
                    reason: "redirected_to_https".into(),
                    reply: reply::redirect(&location),
                })
            }
            Decision::Refuse {
                requirement,
                status,
                detail,
                upgrade,
                ..
            } => {
                self.metrics.refused(host, requirement);
                engine::log(
                    host,
                    TransportModule::NAME,
                    LogLevel::Debug,
                    &format!("refused: {} ({status})", requirement.name()),
                );
                let hsts_value = hsts
                    .and_then(|p| config.policies.get(p))
                    .and_then(|p| p.hsts.as_deref());
                let request_id = cx.request.request_id(host);
                Step::Refuse(Refusal {
                    filter: TransportModule::NAME,
                    reason: requirement.name().to_string(),
                    reply: reply::refusal(
                        config.problem_body,
                        status,
                        requirement,
                        &detail,
                        upgrade.as_deref(),
                        hsts_value,
                        request_id,
                    ),
                })
            }
        }
    }

    fn on_response_headers(
        &self,
        request: &mut TransportRequest,
        cx: &mut Exchange<'_>,
    ) -> ResponseStep {
        let value = request
            .hsts
            .and_then(|p| self.config.policies.get(p))
            .and_then(|p| p.hsts.as_deref());
        if let Some(value) = value {
            cx.response.set(cx.host, "strict-transport-security", value);
        }
        ResponseStep::Continue
    }
}

#[cfg(test)]
mod tests;
