//! The audit record: what the adapter gathered, redacted and assembled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use palisade_shared::contract::{
    Denial, Identity, LlmDecision, McpDecision, MfaDecision, RateLimitDecision, TlsDecision,
    WafDecision,
};
use palisade_shared::forwarded::{
    client_address_from, hops, parse_peer_address, AddressSource, ClientAddress, Forwarding, Node,
};
use palisade_shared::headers::first_value;
use palisade_shared::time::rfc3339_millis;
use serde::Serialize;

use crate::certificate::{self, PeerCertificate};
use crate::config::{AuditConfig, NEVER_LOGGED_HEADERS};
use crate::redact::{redact_url, split_target, strip_authority_userinfo};

/// The header Envoy puts the client certificate in (see [`crate::certificate`]).
pub const XFCC: &str = "x-forwarded-client-cert";

/// Everything the adapter read from Envoy about one finished request. Raw:
/// nothing here is redacted yet, and nothing here is ever logged as is.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// When the request started, milliseconds since the epoch.
    pub start_unix_ms: i64,
    /// How long the stream lasted, in nanoseconds.
    pub duration_ns: Option<i64>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// `:method`.
    pub method: Option<String>,
    /// `:scheme`.
    pub scheme: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:path`, with its query.
    pub path: Option<String>,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: Option<String>,
    /// The response status.
    pub status: Option<u16>,
    /// Envoy's response code details (`via_upstream`, `direct_response`, ...).
    pub code_details: Option<String>,
    /// Bytes received (headers and body).
    pub bytes_in: Option<u64>,
    /// Bytes sent (headers and body).
    pub bytes_out: Option<u64>,
    /// The peer of the downstream connection, `ip:port`.
    pub source_address: Option<String>,
    /// Request headers, names in lower case.
    pub request_headers: Vec<(String, String)>,
    /// Response headers, names in lower case.
    pub response_headers: Vec<(String, String)>,
    /// Envoy's route name.
    pub route_name: Option<String>,
    /// The upstream cluster.
    pub upstream_cluster: Option<String>,
    /// The upstream host, `ip:port`.
    pub upstream_host: Option<String>,
    /// The downstream TLS version, when TLS.
    pub tls_version: Option<String>,
    /// The client certificate's subject, when one was presented.
    pub peer_subject: Option<String>,
    /// The client certificate's SHA-256 digest, hex, when one was presented.
    pub peer_sha256: Option<String>,
    /// What the other Palisade filters published.
    pub states: FilterStates,
}

/// The decisions of the other filters, from filter state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FilterStates {
    /// `palisade.identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// `palisade.mfa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaDecision>,
    /// `palisade.ratelimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimitDecision>,
    /// `palisade.waf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafDecision>,
    /// `palisade.denial`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// `palisade.mcp`: the MCP method, tool, resource or prompt, JSON-RPC
    /// id and decision (logged arguments redacted like query parameters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpDecision>,
    /// `palisade.llm`: the model, its tokens and budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmDecision>,
    /// `palisade.tls`: the transport policy's decision (named `transport` in
    /// the record, beside the record's own `tls` part).
    #[serde(rename = "transport", skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDecision>,
}

impl FilterStates {
    /// Reads each property's JSON; one that is missing or cannot be read is
    /// left out (and counted by the adapter), never guessed.
    pub fn from_json(
        identity: Option<&[u8]>,
        mfa: Option<&[u8]>,
        ratelimit: Option<&[u8]>,
        waf: Option<&[u8]>,
        denial: Option<&[u8]>,
        mcp: Option<&[u8]>,
    ) -> Self {
        fn parse<T: serde::de::DeserializeOwned>(bytes: Option<&[u8]>) -> Option<T> {
            bytes.and_then(|b| serde_json::from_slice(b).ok())
        }
        FilterStates {
            identity: parse(identity),
            mfa: parse(mfa),
            ratelimit: parse(ratelimit),
            waf: parse(waf),
            denial: parse(denial),
            mcp: parse(mcp),
            llm: None,
            tls: None,
        }
    }
}

/// The overall outcome of the request, as far as Palisade is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// No Palisade filter refused it.
    Allowed,
    /// A filter refused it.
    Denied {
        /// `jwt`, `mfa`, `ratelimit` or `waf`.
        denied_by: String,
        /// Its reason.
        reason: String,
    },
}

impl Outcome {
    /// The refusal a filter published wins; without one, a decision that
    /// says it refused (a WAF block, a rate limit out of shadow mode, an MFA
    /// challenge) still counts as a denial by that filter.
    pub fn of(states: &FilterStates) -> Outcome {
        if let Some(d) = &states.denial {
            return Outcome::Denied {
                denied_by: d.filter.clone(),
                reason: d.reason.clone(),
            };
        }
        if let Some(w) = &states.waf {
            if w.action == "blocked" || w.action == "csrf_blocked" {
                return Outcome::Denied {
                    denied_by: "waf".into(),
                    reason: w.action.clone(),
                };
            }
        }
        if let Some(r) = &states.ratelimit {
            if r.limited && !r.shadow {
                return Outcome::Denied {
                    denied_by: "ratelimit".into(),
                    reason: format!("rule {}", r.rule),
                };
            }
        }
        if let Some(m) = &states.mcp {
            if m.decision == "denied" || m.decision == "invalid" {
                return Outcome::Denied {
                    denied_by: "mcp".into(),
                    reason: m.reason.clone().unwrap_or_else(|| m.decision.clone()),
                };
            }
        }
        if let Some(m) = &states.mfa {
            if m.outcome == "challenged" || m.outcome == "unauthenticated" {
                return Outcome::Denied {
                    denied_by: "mfa".into(),
                    reason: m.outcome.clone(),
                };
            }
        }
        Outcome::Allowed
    }

    /// Whether the request was refused.
    pub fn is_denied(&self) -> bool {
        matches!(self, Outcome::Denied { .. })
    }

    /// The refusing filter, if any.
    pub fn denied_by(&self) -> Option<&str> {
        match self {
            Outcome::Denied { denied_by, .. } => Some(denied_by),
            Outcome::Allowed => None,
        }
    }
}

/// The redacted record, in Palisade's own layout (the other schemas are
/// rendered from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 with milliseconds, UTC: when the request started.
    pub time: String,
    /// Milliseconds since the epoch (the same instant).
    #[serde(skip)]
    pub time_unix_ms: i64,
    /// `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The service, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Allowed, or denied and by which filter.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The request.
    pub request: RequestPart,
    /// The response.
    pub response: ResponsePart,
    /// Stream duration in milliseconds (fractional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Who sent it.
    pub client: ClientPart,
    /// Envoy's route name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Where it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamPart>,
    /// The downstream TLS session, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsPart>,
    /// The other filters' decisions.
    #[serde(flatten)]
    pub decisions: FilterStates,
}

/// The request part of a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestPart {
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `http` or `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The authority, without userinfo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// The path, without the query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The query, with sensitive parameters redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `User-Agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `Referer`, without userinfo and with its query redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// Allowlisted headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Bytes received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// The response part of a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponsePart {
    /// The status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Envoy's response code details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_details: Option<String>,
    /// Allowlisted headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Bytes sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Who sent the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientPart {
    /// The client IP: the connection's peer, or the hop the trusted proxies
    /// vouch for (see `palisade_shared::forwarded`). Always an IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Envoy's downstream address (`source.address`, `ip:port`): the
    /// connection's peer, or the address Envoy's connection manager took
    /// from `X-Forwarded-For` (then with port 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The forwarding header's hops as written, left to right, when proxies
    /// are trusted (the ones left of the trusted part were written by the
    /// client: any text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forwarded_for: Vec<String>,
    /// Why `address` is not the trusted hop itself: `not_an_address` (it was
    /// `unknown`, obfuscated or garbage: the next trusted hop or the peer was
    /// taken), `too_few_hops` (the peer was taken) or `malformed_header`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_fallback: Option<&'static str>,
    /// The client address, typed.
    #[serde(skip)]
    pub resolved: Option<ClientAddress>,
    /// The peer, typed.
    #[serde(skip)]
    pub peer_ip: Option<(IpAddr, Option<u16>)>,
    /// Every hop of the header that is an address, left to right.
    #[serde(skip)]
    pub hop_ips: Vec<IpAddr>,
    /// The proxies between the client and Envoy, when the client address
    /// came from the header: the trusted hops to its right, then the peer.
    #[serde(skip)]
    pub intermediate_ips: Vec<IpAddr>,
}

/// Where the request went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpstreamPart {
    /// The cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The host, `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The downstream TLS session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsPart {
    /// `TLSv1.3`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cipher suite (from the transport policy's `palisade.tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The server name the client asked for (from `palisade.tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The client certificate's DNS SANs (from `palisade.tls`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_dns_sans: Vec<String>,
    /// The client certificate's URI SANs (from `palisade.tls`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_uri_sans: Vec<String>,
    /// The client certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_subject: Option<String>,
    /// The client certificate's SHA-256 digest, lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_sha256: Option<String>,
    /// The client certificate's issuer, serial number and validity, when
    /// Envoy forwards the certificate (see [`crate::certificate`]).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub peer_certificate: Option<CertificatePart>,
}

/// The client certificate beyond its subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificatePart {
    /// The issuer's distinguished name (RFC 4514).
    pub peer_issuer: String,
    /// The serial number, upper-case hex.
    pub peer_serial_number: String,
    /// `notBefore`, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_not_before: Option<String>,
    /// `notAfter`, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_not_after: Option<String>,
    /// The same, typed.
    #[serde(skip)]
    pub parsed: PeerCertificate,
}

impl ClientPart {
    /// Finds the client: the peer, or the trusted proxies' hop.
    fn of(facts: &RequestFacts, config: &AuditConfig) -> ClientPart {
        let trusted = &config.trusted;
        let peer = facts.source_address.as_deref();
        let value = (trusted.hops > 0)
            .then(|| first_value(&facts.request_headers, trusted.header.name()))
            .flatten();
        let parsed = value.map(|v| hops(trusted.header, v));
        let nodes: Vec<Node> = match &parsed {
            Some(Some(hops)) => hops.iter().map(|h| h.node).collect(),
            _ => Vec::new(),
        };
        let forwarding = match &parsed {
            _ if trusted.hops == 0 => Forwarding::Ignored,
            None => Forwarding::Absent,
            Some(None) => Forwarding::Malformed,
            Some(Some(_)) => Forwarding::Nodes(&nodes),
        };
        let resolved = client_address_from(peer, forwarding, trusted.hops);
        let peer_ip = peer.and_then(parse_peer_address);
        let forwarded_for = match parsed {
            Some(Some(hops)) => hops.into_iter().map(|h| h.text).collect(),
            _ => Vec::new(),
        };
        let mut intermediate_ips: Vec<IpAddr> = match resolved {
            Some(c) if c.source == AddressSource::Header => nodes
                .get(nodes.len().saturating_sub(c.hops_to_the_right)..)
                .unwrap_or(&[])
                .iter()
                .filter_map(Node::ip)
                .chain(peer_ip.map(|(ip, _)| ip))
                .filter(|ip| *ip != c.ip)
                .collect(),
            _ => Vec::new(),
        };
        // Envoy's `source.address` may be the last hop itself (see
        // `parse_peer_address`): one proxy, once.
        intermediate_ips.dedup();
        let hop_ips = nodes.iter().filter_map(Node::ip).collect();
        ClientPart {
            address: resolved.map(|c| c.ip.to_string()),
            peer: facts.source_address.clone(),
            forwarded_for,
            address_fallback: resolved.and_then(|c| c.fallback).map(|f| f.as_str()),
            resolved,
            peer_ip,
            hop_ips,
            intermediate_ips,
        }
    }
}

impl TlsPart {
    /// The TLS facts: the transport policy's view of the connection when it
    /// ran (`palisade.tls`, read from the connection itself), else Envoy's
    /// attributes, with the certificate Envoy forwarded when it is the
    /// connection's.
    fn of(facts: &RequestFacts) -> Option<TlsPart> {
        if let Some(t) = facts.states.tls.as_ref().filter(|t| t.version.is_some()) {
            return Some(Self::from_transport(t));
        }
        if facts.tls_version.is_none() && facts.peer_subject.is_none() {
            return None;
        }
        let peer_certificate = match (
            &facts.peer_sha256,
            first_value(&facts.request_headers, XFCC),
        ) {
            (Some(digest), Some(xfcc)) => {
                certificate::from_xfcc(xfcc, digest).map(CertificatePart::of)
            }
            _ => None,
        };
        Some(TlsPart {
            version: facts.tls_version.clone(),
            peer_subject: facts.peer_subject.clone(),
            peer_sha256: facts.peer_sha256.clone(),
            peer_certificate,
            ..TlsPart::default()
        })
    }

    fn from_transport(t: &TlsDecision) -> TlsPart {
        let peer_certificate = match (&t.peer_issuer, &t.peer_serial_number) {
            (Some(issuer), Some(serial)) => Some(CertificatePart::of(PeerCertificate {
                subject: t.peer_subject.clone().unwrap_or_default(),
                issuer: issuer.clone(),
                serial_number: serial.clone(),
                not_before_ms: t.peer_not_before.and_then(|s| s.checked_mul(1000)),
                not_after_ms: t.peer_not_after.and_then(|s| s.checked_mul(1000)),
                dns_sans: t.peer_dns_sans.clone(),
                uri_sans: t.peer_uri_sans.clone(),
            })),
            _ => None,
        };
        TlsPart {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            sni: t.sni.clone(),
            peer_subject: t.peer_subject.clone(),
            peer_sha256: t.peer_sha256.clone(),
            peer_dns_sans: t.peer_dns_sans.clone(),
            peer_uri_sans: t.peer_uri_sans.clone(),
            peer_certificate,
        }
    }
}

impl CertificatePart {
    fn of(c: PeerCertificate) -> CertificatePart {
        CertificatePart {
            peer_issuer: c.issuer.clone(),
            peer_serial_number: c.serial_number.clone(),
            peer_not_before: c.not_before_ms.map(rfc3339_millis),
            peer_not_after: c.not_after_ms.map(rfc3339_millis),
            parsed: c,
        }
    }
}

/// The allowlisted headers, by lower-case name. A value that holds a URL
/// (`Referer`, `Origin`, `Location`, a callback header) gets the same
/// redaction as the request's own URL.
fn allowlisted(
    headers: &[(String, String)],
    allow: &[String],
    redacted: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        // The allowlist cannot name these (config validation), and this check
        // keeps it so even if that ever changed.
        if NEVER_LOGGED_HEADERS.contains(&lower.as_str()) || !allow.contains(&lower) {
            continue;
        }
        let value = if value.contains("://") || value.contains('?') {
            redact_url(value, redacted)
        } else {
            value.clone()
        };
        out.entry(lower)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// The decisions as logged: the MCP tool arguments an operator listed for
/// logging are redacted like query parameters of the same names.
fn redacted_states(states: &FilterStates, redacted: &BTreeSet<String>) -> FilterStates {
    let mut states = states.clone();
    if let Some(mcp) = &mut states.mcp {
        for (name, value) in mcp.arguments.iter_mut() {
            if redacted.contains(name.to_ascii_lowercase().trim()) {
                *value = crate::redact::REDACTED.to_string();
            }
        }
    }
    states
}

impl AuditRecord {
    /// Redacts and assembles the record.
    pub fn build(facts: &RequestFacts, config: &AuditConfig) -> AuditRecord {
        let (path, query) = match &facts.path {
            Some(target) => {
                let (p, q) = split_target(target, &config.redacted_params);
                (Some(p), q)
            }
            None => (None, None),
        };
        let upstream =
            (facts.upstream_cluster.is_some() || facts.upstream_host.is_some()).then(|| {
                UpstreamPart {
                    cluster: facts.upstream_cluster.clone(),
                    host: facts.upstream_host.clone(),
                }
            });
        AuditRecord {
            time: rfc3339_millis(facts.start_unix_ms),
            time_unix_ms: facts.start_unix_ms,
            request_id: facts.request_id.clone(),
            service: config.service_name.clone(),
            outcome: Outcome::of(&facts.states),
            request: RequestPart {
                method: facts.method.clone(),
                scheme: facts.scheme.clone(),
                authority: facts
                    .authority
                    .as_deref()
                    .map(|a| strip_authority_userinfo(a).to_string()),
                path,
                query,
                protocol: facts.protocol.clone(),
                user_agent: first_value(&facts.request_headers, "user-agent").map(str::to_string),
                referer: first_value(&facts.request_headers, "referer")
                    .map(|r| redact_url(r, &config.redacted_params)),
                headers: allowlisted(
                    &facts.request_headers,
                    &config.request_headers,
                    &config.redacted_params,
                ),
                bytes: facts.bytes_in,
            },
            response: ResponsePart {
                status: facts.status,
                code_details: facts.code_details.clone(),
                headers: allowlisted(
                    &facts.response_headers,
                    &config.response_headers,
                    &config.redacted_params,
                ),
                bytes: facts.bytes_out,
            },
            duration_ms: facts.duration_ns.map(|ns| ns as f64 / 1_000_000.0),
            client: ClientPart::of(facts, config),
            route: facts.route_name.clone(),
            upstream,
            tls: TlsPart::of(facts),
            decisions: redacted_states(&facts.states, &config.redacted_params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RequestFacts {
        RequestFacts {
            start_unix_ms: 1_795_890_605_123,
            duration_ns: Some(2_500_000),
            request_id: Some("req-1".into()),
            method: Some("POST".into()),
            scheme: Some("https".into()),
            authority: Some("api.example.com".into()),
            path: Some("/v1/orders?page=2&access_token=SECRET".into()),
            protocol: Some("HTTP/1.1".into()),
            status: Some(201),
            code_details: Some("via_upstream".into()),
            bytes_in: Some(300),
            bytes_out: Some(120),
            source_address: Some("10.0.0.7:51000".into()),
            request_headers: vec![
                ("user-agent".into(), "curl/8".into()),
                ("authorization".into(), "Bearer SECRET".into()),
                ("cookie".into(), "session=SECRET".into()),
                ("x-tenant".into(), "acme".into()),
                ("x-forwarded-for".into(), "198.51.100.4, 203.0.113.9".into()),
                (
                    "referer".into(),
                    "https://u:SECRET@app.example.com/cb?code=SECRET".into(),
                ),
            ],
            response_headers: vec![
                ("set-cookie".into(), "s=SECRET".into()),
                ("x-served-by".into(), "a".into()),
            ],
            route_name: Some("orders".into()),
            upstream_cluster: Some("backend".into()),
            upstream_host: Some("10.1.0.2:8080".into()),
            ..RequestFacts::default()
        }
    }

    fn config(json: &str) -> AuditConfig {
        AuditConfig::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn record_has_the_fields_and_no_secret() {
        let c = config(
            r#"{"request_headers":["x-tenant","referer"],"response_headers":["x-served-by"],"xff_trusted_hops":1}"#,
        );
        let r = AuditRecord::build(&facts(), &c);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["time"], "2026-11-28T18:30:05.123Z");
        assert_eq!(json["outcome"], "allowed");
        assert_eq!(json["request"]["path"], "/v1/orders");
        assert_eq!(json["request"]["query"], "page=2&access_token=REDACTED");
        assert_eq!(json["request"]["headers"]["x-tenant"], "acme");
        assert_eq!(
            json["request"]["headers"]["referer"],
            "https://app.example.com/cb?code=REDACTED"
        );
        assert_eq!(
            json["request"]["referer"],
            "https://app.example.com/cb?code=REDACTED"
        );
        assert_eq!(json["response"]["headers"]["x-served-by"], "a");
        assert_eq!(json["client"]["address"], "203.0.113.9");
        assert_eq!(json["client"]["forwarded_for"][0], "198.51.100.4");
        assert_eq!(json["duration_ms"], 2.5);
        assert_eq!(json["upstream"]["cluster"], "backend");
        assert!(json.get("tls").is_none());
        assert!(!json.to_string().contains("SECRET"), "{json}");
    }

    #[test]
    fn untrusted_forwarded_for_is_ignored() {
        let r = AuditRecord::build(&facts(), &config("{}"));
        assert_eq!(r.client.address.as_deref(), Some("10.0.0.7"));
        assert!(r.client.forwarded_for.is_empty());
    }

    #[test]
    fn outcome_table() {
        let denial = Denial {
            filter: "jwt".into(),
            status: 401,
            reason: "token_expired".into(),
        };
        let waf = |action: &str| WafDecision {
            action: action.into(),
            ..WafDecision::default()
        };
        let rl = |limited, shadow| RateLimitDecision {
            rule: "api".into(),
            limited,
            shadow,
            ..RateLimitDecision::default()
        };
        let cases = [
            (FilterStates::default(), None),
            (
                FilterStates {
                    denial: Some(denial),
                    ..Default::default()
                },
                Some("jwt"),
            ),
            (
                FilterStates {
                    waf: Some(waf("blocked")),
                    ..Default::default()
                },
                Some("waf"),
            ),
            (
                FilterStates {
                    waf: Some(waf("detected")),
                    ..Default::default()
                },
                None,
            ),
            (
                FilterStates {
                    ratelimit: Some(rl(true, false)),
                    ..Default::default()
                },
                Some("ratelimit"),
            ),
            (
                FilterStates {
                    ratelimit: Some(rl(true, true)),
                    ..Default::default()
                },
                None,
            ),
            (
                FilterStates {
                    mfa: Some(MfaDecision {
                        outcome: "challenged".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Some("mfa"),
            ),
        ];
        for (states, want) in cases {
            assert_eq!(Outcome::of(&states).denied_by(), want, "{states:?}");
        }
    }

    #[test]
    fn malformed_filter_state_is_left_out() {
        let s = FilterStates::from_json(
            Some(b"{not json"),
            None,
            Some(br#"{"rule":"a","limited":true}"#),
            None,
            None,
            Some(br#"{"method":"tools/call","tool":"search","decision":"allowed"}"#),
        );
        assert_eq!(s.mcp.as_ref().unwrap().tool.as_deref(), Some("search"));
        assert!(s.identity.is_none());
        assert!(s.ratelimit.unwrap().limited);
    }

    #[test]
    fn mcp_decisions_are_logged_with_listed_arguments_redacted() {
        let mut f = facts();
        f.states.mcp = Some(McpDecision {
            method: "tools/call".into(),
            tool: Some("login".into()),
            id: Some("7".into()),
            decision: "denied".into(),
            reason: Some("tool_denied".into()),
            arguments: [
                ("user".to_string(), "bob".to_string()),
                ("Password".to_string(), "hunter2".to_string()),
            ]
            .into_iter()
            .collect(),
            ..McpDecision::default()
        });
        let c = config(r#"{"extra_redact_query_params":["password"]}"#);
        let json = serde_json::to_value(AuditRecord::build(&f, &c)).unwrap();
        assert_eq!(json["mcp"]["tool"], "login");
        assert_eq!(json["mcp"]["id"], "7");
        assert_eq!(json["mcp"]["arguments"]["user"], "bob");
        assert_eq!(json["mcp"]["arguments"]["Password"], "REDACTED");
        assert_eq!(
            (json["outcome"].as_str(), json["denied_by"].as_str()),
            (Some("denied"), Some("mcp"))
        );
    }

    #[test]
    fn denied_record_flattens_the_outcome() {
        let mut f = facts();
        f.states.denial = Some(Denial {
            filter: "waf".into(),
            status: 403,
            reason: "sqli".into(),
        });
        let json = serde_json::to_value(AuditRecord::build(&f, &config("{}"))).unwrap();
        assert_eq!(json["outcome"], "denied");
        assert_eq!(json["denied_by"], "waf");
        assert_eq!(json["reason"], "sqli");
        assert_eq!(json["denial"]["status"], 403);
    }
}
