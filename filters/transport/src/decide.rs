//! The decision: does this connection meet the route's transport policy?
//!
//! Pure: the connection's facts (read by the stage from Envoy's attributes
//! of the connection it terminated) and the request line come in, a
//! [`Decision`] comes out. The checks run in a fixed order, and the first
//! requirement that fails is the one the refusal names: TLS at all, the
//! version, the cipher, a client certificate, then its fingerprint,
//! subject, issuer, DNS SAN and URI SAN allowlists.

use palisade_shared::contract::TlsDecision;
use palisade_shared::x509::Certificate;

use crate::config::{ClientCertificateRule, Config, PlaintextAction, Policy, TlsVersion};

/// The downstream connection, as Envoy terminated it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `connection.tls_version`; `None`: plaintext.
    pub version: Option<String>,
    /// The cipher suite, when Envoy was configured to make it known.
    pub cipher: Option<String>,
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The client certificate, when one was presented.
    pub peer: Option<Peer>,
}

/// The client certificate of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// What it says, when it could be read.
    pub certificate: Option<Certificate>,
}

/// The request line, as far as the decision needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLine<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path`, with its query.
    pub path: &'a str,
}

/// Which requirement of a policy a connection did not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// TLS at all.
    Tls,
    /// The minimum TLS version.
    MinTlsVersion,
    /// The cipher allowlist.
    Cipher,
    /// A client certificate.
    ClientCertificate,
    /// The fingerprint allowlist.
    Fingerprint,
    /// The subject allowlist.
    Subject,
    /// The issuer allowlist.
    Issuer,
    /// The DNS SAN allowlist.
    DnsSan,
    /// The URI SAN (SPIFFE ID) allowlist.
    UriSan,
}

impl Requirement {
    /// Every requirement, in checking order.
    pub const ALL: [Requirement; 9] = [
        Requirement::Tls,
        Requirement::MinTlsVersion,
        Requirement::Cipher,
        Requirement::ClientCertificate,
        Requirement::Fingerprint,
        Requirement::Subject,
        Requirement::Issuer,
        Requirement::DnsSan,
        Requirement::UriSan,
    ];

    /// The name in `palisade.tls`, the problem body, the denial and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::Tls => "tls",
            Requirement::MinTlsVersion => "min_tls_version",
            Requirement::Cipher => "cipher",
            Requirement::ClientCertificate => "client_certificate",
            Requirement::Fingerprint => "client_certificate.sha256_fingerprint",
            Requirement::Subject => "client_certificate.subject",
            Requirement::Issuer => "client_certificate.issuer",
            Requirement::DnsSan => "client_certificate.dns_san",
            Requirement::UriSan => "client_certificate.uri_san",
        }
    }
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy applies.
    NoPolicy,
    /// The connection meets the policy.
    Pass {
        /// The policy.
        policy: usize,
    },
    /// Plaintext, redirected to `https`.
    Redirect {
        /// The policy.
        policy: usize,
        /// The `Location`.
        location: String,
    },
    /// Refused.
    Refuse {
        /// The policy.
        policy: usize,
        /// What failed.
        requirement: Requirement,
        /// 403, or 426 for plaintext when so configured.
        status: u16,
        /// Why, for the problem body (no secret, no certificate contents).
        detail: String,
        /// The `Upgrade` header of a 426.
        upgrade: Option<String>,
    },
}

/// Decides for the policy at `policy` (from [`Config::policy_index_for`]).
pub fn decide(
    config: &Config,
    policy: Option<usize>,
    request: &RequestLine<'_>,
    connection: &Connection,
) -> Decision {
    let Some((index, p)) = policy.and_then(|i| config.policies.get(i).map(|p| (i, p))) else {
        return Decision::NoPolicy;
    };
    let refuse = |requirement: Requirement, detail: String| Decision::Refuse {
        policy: index,
        requirement,
        status: 403,
        detail,
        upgrade: None,
    };
    let Some(version) = &connection.version else {
        if !p.require_tls {
            return Decision::Pass { policy: index };
        }
        return plaintext(index, p, request);
    };
    if let Some(min) = p.min_tls_version {
        if TlsVersion::from_envoy(version).is_none_or(|v| v < min) {
            return refuse(
                Requirement::MinTlsVersion,
                format!(
                    "this route requires TLS {} or later; the connection uses {version}",
                    min.number()
                ),
            );
        }
    }
    if let Some(allowed) = &p.ciphers {
        match &connection.cipher {
            Some(c) if allowed.iter().any(|a| a == c) => {}
            Some(c) => {
                return refuse(
                    Requirement::Cipher,
                    format!("the cipher suite {c} is not allowed on this route"),
                )
            }
            None => {
                return refuse(
                    Requirement::Cipher,
                    "this route allows only some cipher suites, and the connection's is not known"
                        .into(),
                )
            }
        }
    }
    if let Some(rule) = &p.client_certificate {
        if let Some((requirement, detail)) = certificate_failure(rule, connection.peer.as_ref()) {
            return refuse(requirement, detail.into());
        }
    }
    Decision::Pass { policy: index }
}

fn plaintext(index: usize, p: &Policy, request: &RequestLine<'_>) -> Decision {
    if p.plaintext == PlaintextAction::Redirect
        && p.redirect_methods.iter().any(|m| m == request.method)
    {
        if let Some(location) = https_location(request, p.https_port) {
            return Decision::Redirect {
                policy: index,
                location,
            };
        }
    }
    let min = p.min_tls_version.unwrap_or(TlsVersion::V1_2);
    Decision::Refuse {
        policy: index,
        requirement: Requirement::Tls,
        status: p.plaintext_status,
        detail: "this route requires TLS (https)".into(),
        upgrade: (p.plaintext_status == 426).then(|| format!("TLS/{}, HTTP/1.1", min.number())),
    }
}

/// The `https` URL of a request: its host (without the plaintext port)
/// and `port` unless it is 443, then the path with its query. `None` for an
/// authority that is not a plain host name or address: a redirect is not
/// built from text that could carry anything else.
pub fn https_location(request: &RequestLine<'_>, port: u16) -> Option<String> {
    let authority = request.authority;
    let host = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            &authority[..end + 2]
        }
        None => authority.split(':').next().unwrap_or(""),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    let path_ok = request.path.starts_with('/') && !request.path.starts_with("//");
    if !host_ok || !path_ok || request.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    Some(if port == 443 {
        format!("https://{host}{}", request.path)
    } else {
        format!("https://{host}:{port}{}", request.path)
    })
}

fn certificate_failure(
    rule: &ClientCertificateRule,
    peer: Option<&Peer>,
) -> Option<(Requirement, &'static str)> {
    let Some(peer) = peer else {
        return Some((
            Requirement::ClientCertificate,
            "this route requires a client certificate",
        ));
    };
    if !rule.sha256_fingerprints.is_empty()
        && !peer
            .sha256
            .as_ref()
            .is_some_and(|f| rule.sha256_fingerprints.contains(f))
    {
        return Some((
            Requirement::Fingerprint,
            "the client certificate's fingerprint is not allowed on this route",
        ));
    }
    if !rule.reads_certificate() {
        return None;
    }
    let Some(cert) = &peer.certificate else {
        return Some((
            Requirement::ClientCertificate,
            "the client certificate could not be read",
        ));
    };
    if !rule.subjects.is_empty() && !rule.subjects.contains(&cert.subject) {
        return Some((
            Requirement::Subject,
            "the client certificate's subject is not allowed on this route",
        ));
    }
    if !rule.issuers.is_empty() && !rule.issuers.contains(&cert.issuer) {
        return Some((
            Requirement::Issuer,
            "the client certificate's issuer is not allowed on this route",
        ));
    }
    if !rule.dns_sans.is_empty()
        && !cert
            .dns_sans
            .iter()
            .any(|n| rule.dns_sans.iter().any(|m| m.matches(n)))
    {
        return Some((
            Requirement::DnsSan,
            "no DNS name of the client certificate is allowed on this route",
        ));
    }
    if !rule.uri_sans.is_empty()
        && !cert
            .uri_sans
            .iter()
            .any(|u| rule.uri_sans.iter().any(|m| m.matches(u)))
    {
        return Some((
            Requirement::UriSan,
            "no URI (SPIFFE ID) of the client certificate is allowed on this route",
        ));
    }
    None
}

/// `palisade.tls` for a decision.
pub fn published(config: &Config, decision: &Decision, connection: &Connection) -> TlsDecision {
    let (policy, outcome, failed) = match decision {
        Decision::NoPolicy => (None, "no_policy", None),
        Decision::Pass { policy } => (Some(*policy), "passed", None),
        Decision::Redirect { policy, .. } => (Some(*policy), "redirected", Some(Requirement::Tls)),
        Decision::Refuse {
            policy,
            requirement,
            ..
        } => (Some(*policy), "refused", Some(*requirement)),
    };
    let peer = connection.peer.as_ref();
    let cert = peer.and_then(|p| p.certificate.as_ref());
    TlsDecision {
        policy: policy
            .and_then(|i| config.policies.get(i))
            .map(|p| p.name.clone()),
        outcome: outcome.into(),
        failed: failed.map(|r| r.name().to_string()),
        version: connection.version.clone(),
        cipher: connection.cipher.clone(),
        sni: connection.sni.clone(),
        peer_certificate_presented: peer.is_some(),
        // Envoy completes a handshake with a client certificate only after
        // validating it against the listener's CA (unless told to accept
        // untrusted ones, which a listener in front of this policy must not).
        peer_certificate_validated: peer.is_some(),
        peer_subject: cert.map(|c| c.subject.clone()),
        peer_issuer: cert.map(|c| c.issuer.clone()),
        peer_dns_sans: cert.map(|c| c.dns_sans.clone()).unwrap_or_default(),
        peer_uri_sans: cert.map(|c| c.uri_sans.clone()).unwrap_or_default(),
        peer_sha256: peer.and_then(|p| p.sha256.clone()),
        peer_serial_number: cert.map(|c| c.serial_number.clone()),
        peer_not_before: cert.and_then(|c| c.not_before_ms).map(|ms| ms / 1000),
        peer_not_after: cert.and_then(|c| c.not_after_ms).map(|ms| ms / 1000),
    }
}

#[cfg(test)]
mod tests;
