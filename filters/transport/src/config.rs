//! The plugin configuration: serde types as operators write them, validated
//! and compiled once into a [`Config`]. See the README for every field.

use std::collections::BTreeMap;

use palisade_shared::config::{field_path, is_name, parse_json, ConfigError};
use palisade_shared::matcher::{RequestMatch, RequestMatcher, RequestView};
use serde::Deserialize;

fn yes() -> bool {
    true
}

fn default_redirect_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into()]
}

fn default_https_port() -> u16 {
    443
}

fn default_plaintext_status() -> u16 {
    403
}

fn default_max_age() -> u64 {
    31_536_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "yes")]
    problem_body: bool,
    policies: BTreeMap<String, RawPolicy>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "yes")]
    require_tls: bool,
    #[serde(default)]
    plaintext: PlaintextAction,
    #[serde(default = "default_plaintext_status")]
    plaintext_status: u16,
    #[serde(default = "default_redirect_methods")]
    redirect_methods: Vec<String>,
    #[serde(default = "default_https_port")]
    https_port: u16,
    #[serde(default)]
    min_tls_version: Option<String>,
    #[serde(default)]
    ciphers: Option<Vec<String>>,
    #[serde(default)]
    client_certificate: Option<RawClientCertificate>,
    #[serde(default)]
    hsts: Option<RawHsts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientCertificate {
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    dns_sans: Vec<String>,
    #[serde(default)]
    uri_sans: Vec<RawUriMatch>,
    #[serde(default)]
    sha256_fingerprints: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawUriMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsts {
    #[serde(default = "default_max_age")]
    max_age_s: u64,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default)]
    preload: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match", default)]
    matches: RequestMatch,
    #[serde(default)]
    policy: Option<String>,
}

/// What a policy does with a request that came over plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaintextAction {
    /// Refuse it with `plaintext_status` (403, or 426 with `Upgrade`).
    #[default]
    Refuse,
    /// Redirect it (308) to the same URL over `https`, for the
    /// `redirect_methods`; refuse the others.
    Redirect,
}

/// TLS versions, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0 (Envoy: `TLSv1`).
    V1_0,
    /// TLS 1.1.
    V1_1,
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

impl TlsVersion {
    /// The version of Envoy's `connection.tls_version` (`TLSv1.2`), `None`
    /// for anything else (SSLv3, an unknown future name).
    pub fn from_envoy(name: &str) -> Option<TlsVersion> {
        match name {
            "TLSv1" => Some(TlsVersion::V1_0),
            "TLSv1.1" => Some(TlsVersion::V1_1),
            "TLSv1.2" => Some(TlsVersion::V1_2),
            "TLSv1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }

    /// `1.2`, as the configuration and the `Upgrade` header write it.
    pub fn number(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "1.0",
            TlsVersion::V1_1 => "1.1",
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// A DNS SAN rule: a name exactly (case-insensitive), or any subdomain of a
/// domain (`*.example.com`, not the apex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsMatch {
    /// Exactly this name, lower case.
    Exact(String),
    /// Any name ending in this (`.example.com`), lower case.
    Subdomain(String),
}

impl DnsMatch {
    /// Whether `name` fits.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        match self {
            DnsMatch::Exact(want) => name == *want,
            DnsMatch::Subdomain(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        }
    }
}

/// A URI SAN rule (SPIFFE IDs): exactly, or starting with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriMatch {
    /// Exactly this URI.
    Exact(String),
    /// Any URI starting with this (`spiffe://cluster.local/ns/shop/`).
    Prefix(String),
}

impl UriMatch {
    /// Whether `uri` fits.
    pub fn matches(&self, uri: &str) -> bool {
        match self {
            UriMatch::Exact(want) => uri == want,
            UriMatch::Prefix(prefix) => uri.starts_with(prefix.as_str()),
        }
    }
}

/// What a route asks of the client certificate. Every list that is not
/// empty must be met (any entry of it); a certificate is always required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificateRule {
    /// Accepted subjects, RFC 4514 as Envoy prints them.
    pub subjects: Vec<String>,
    /// Accepted issuers, RFC 4514.
    pub issuers: Vec<String>,
    /// Accepted DNS SANs (one of the certificate's must fit one).
    pub dns_sans: Vec<DnsMatch>,
    /// Accepted URI SANs (one of the certificate's must fit one).
    pub uri_sans: Vec<UriMatch>,
    /// Accepted SHA-256 fingerprints, lower-case hex.
    pub sha256_fingerprints: Vec<String>,
}

impl ClientCertificateRule {
    /// Whether a rule needs the whole certificate (its issuer or its SANs)
    /// rather than the digest alone.
    pub fn reads_certificate(&self) -> bool {
        !self.subjects.is_empty()
            || !self.issuers.is_empty()
            || !self.dns_sans.is_empty()
            || !self.uri_sans.is_empty()
    }
}

/// One transport policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name (metrics, `palisade.tls`).
    pub name: String,
    /// Whether plaintext is refused or redirected.
    pub require_tls: bool,
    /// What happens to plaintext.
    pub plaintext: PlaintextAction,
    /// The status of a plaintext refusal: 403 or 426.
    pub plaintext_status: u16,
    /// Methods a plaintext request is redirected for (upper case).
    pub redirect_methods: Vec<String>,
    /// The port of the `https` URL a redirect points to.
    pub https_port: u16,
    /// The lowest TLS version accepted.
    pub min_tls_version: Option<TlsVersion>,
    /// Accepted cipher suites, as Envoy names them (`TLS_AES_128_GCM_SHA256`,
    /// `ECDHE-ECDSA-AES128-GCM-SHA256`); `None`: any.
    pub ciphers: Option<Vec<String>>,
    /// The client certificate rule; `None`: no certificate needed.
    pub client_certificate: Option<ClientCertificateRule>,
    /// The `Strict-Transport-Security` value for responses over TLS.
    pub hsts: Option<String>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// When it applies.
    pub matcher: RequestMatcher,
    /// Index into [`Config::policies`]; `None`: no transport policy here.
    pub policy: Option<usize>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether refusals carry an RFC 9457 problem body.
    pub problem_body: bool,
    /// The policies, in name order.
    pub policies: Vec<Policy>,
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// Whether a rule matches on Envoy's route name.
    pub needs_route_name: bool,
    /// The request pseudo-headers the rules and the redirects read.
    pub request_headers: Vec<String>,
}

impl Config {
    /// Parses, validates and compiles a JSON plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        let mut policies = Vec::with_capacity(raw.policies.len());
        for (name, p) in &raw.policies {
            policies.push(compile_policy(name, p, &format!("policies.{name}"))?);
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let policy = match &r.policy {
                None => None,
                Some(name) => Some(policies.iter().position(|p| &p.name == name).ok_or_else(
                    || {
                        ConfigError::invalid(
                            field_path(&at, "policy"),
                            format!("no policy named `{name}`"),
                        )
                    },
                )?),
            };
            rules.push(Rule {
                matcher: RequestMatcher::compile(&r.matches, &field_path(&at, "match"))?,
                policy,
            });
        }
        let redirects = policies
            .iter()
            .any(|p| p.require_tls && p.plaintext == PlaintextAction::Redirect);
        let mut request_headers = Vec::new();
        for (name, needed) in [
            (
                ":method",
                redirects || raw.rules.iter().any(|r| !r.matches.methods.is_empty()),
            ),
            (
                ":authority",
                redirects || raw.rules.iter().any(|r| r.matches.host.is_some()),
            ),
            (
                ":path",
                redirects || raw.rules.iter().any(|r| r.matches.path.is_some()),
            ),
        ] {
            if needed {
                request_headers.push(name.to_string());
            }
        }
        Ok(Config {
            problem_body: raw.problem_body,
            needs_route_name: raw.rules.iter().any(|r| r.matches.route_name.is_some()),
            request_headers,
            policies,
            rules,
        })
    }

    /// The index of the policy for a request: the first rule that matches
    /// decides; `None` when no rule matches or the rule names none.
    pub fn policy_index_for(&self, view: &RequestView<'_>) -> Option<usize> {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(view))
            .and_then(|r| r.policy)
    }
}

fn compile_policy(name: &str, p: &RawPolicy, at: &str) -> Result<Policy, ConfigError> {
    if !is_name(name) {
        return Err(ConfigError::invalid(
            at,
            "a policy name is letters, digits, `_` and `-` (it is part of metric names)",
        ));
    }
    if !matches!(p.plaintext_status, 403 | 426) {
        return Err(ConfigError::invalid(
            field_path(at, "plaintext_status"),
            "must be 403 or 426",
        ));
    }
    let mut redirect_methods = Vec::new();
    for (i, m) in p.redirect_methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ConfigError::invalid(
                field_path(at, &format!("redirect_methods[{i}]")),
                format!("`{m}` is not an HTTP method"),
            ));
        }
        redirect_methods.push(m.to_ascii_uppercase());
    }
    if p.https_port == 0 {
        return Err(ConfigError::invalid(
            field_path(at, "https_port"),
            "must be a port (1-65535)",
        ));
    }
    let min_tls_version = match p.min_tls_version.as_deref() {
        None => None,
        Some("1.2") => Some(TlsVersion::V1_2),
        Some("1.3") => Some(TlsVersion::V1_3),
        Some(other) => {
            return Err(ConfigError::invalid(
                field_path(at, "min_tls_version"),
                format!("`{other}` is not `1.2` or `1.3` (older versions are never a minimum worth requiring)"),
            ))
        }
    };
    let ciphers = match &p.ciphers {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::invalid(
                    field_path(at, "ciphers"),
                    "must name at least one cipher suite (leave it out to accept any)",
                ));
            }
            for (i, c) in list.iter().enumerate() {
                if !is_name(c) {
                    return Err(ConfigError::invalid(
                        field_path(at, &format!("ciphers[{i}]")),
                        format!("`{c}` is not a cipher suite name"),
                    ));
                }
            }
            Some(list.clone())
        }
    };
    let client_certificate = match &p.client_certificate {
        None => None,
        Some(c) => Some(compile_certificate_rule(
            c,
            &field_path(at, "client_certificate"),
        )?),
    };
    if !p.require_tls
        && (min_tls_version.is_some() || ciphers.is_some() || client_certificate.is_some())
    {
        return Err(ConfigError::invalid(
            field_path(at, "require_tls"),
            "`min_tls_version`, `ciphers` and `client_certificate` can only be met over TLS: they need `require_tls`",
        ));
    }
    let hsts = match &p.hsts {
        None => None,
        Some(h) => Some(compile_hsts(h, &field_path(at, "hsts"))?),
    };
    Ok(Policy {
        name: name.to_string(),
        require_tls: p.require_tls,
        plaintext: p.plaintext,
        plaintext_status: p.plaintext_status,
        redirect_methods,
        https_port: p.https_port,
        min_tls_version,
        ciphers,
        client_certificate,
        hsts,
    })
}

fn printable(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

fn compile_certificate_rule(
    c: &RawClientCertificate,
    at: &str,
) -> Result<ClientCertificateRule, ConfigError> {
    for (field, list) in [("subjects", &c.subjects), ("issuers", &c.issuers)] {
        for (i, dn) in list.iter().enumerate() {
            if !printable(dn) || !dn.contains('=') {
                return Err(ConfigError::invalid(
                    field_path(at, &format!("{field}[{i}]")),
                    format!("`{dn}` is not a distinguished name such as `CN=checkout,O=Shop`"),
                ));
            }
        }
    }
    let mut dns_sans = Vec::new();
    for (i, name) in c.dns_sans.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        dns_sans.push(match lower.strip_prefix("*.") {
            Some(domain) if valid(domain) => DnsMatch::Subdomain(format!(".{domain}")),
            None if valid(&lower) => DnsMatch::Exact(lower),
            _ => {
                return Err(ConfigError::invalid(
                    field_path(at, &format!("dns_sans[{i}]")),
                    format!("`{name}` is not a DNS name or `*.domain`"),
                ))
            }
        });
    }
    let mut uri_sans = Vec::new();
    for (i, m) in c.uri_sans.iter().enumerate() {
        let (text, compiled) = match m {
            RawUriMatch::Exact(u) => (u, UriMatch::Exact(u.clone())),
            RawUriMatch::Prefix(u) => (u, UriMatch::Prefix(u.clone())),
        };
        if !printable(text) || !text.contains(':') || text.contains(' ') {
            return Err(ConfigError::invalid(
                field_path(at, &format!("uri_sans[{i}]")),
                format!(
                    "`{text}` is not a URI such as `spiffe://cluster.local/ns/shop/sa/checkout`"
                ),
            ));
        }
        uri_sans.push(compiled);
    }
    let mut sha256_fingerprints = Vec::new();
    for (i, f) in c.sha256_fingerprints.iter().enumerate() {
        // openssl prints `AB:CD:...`; Envoy's digest is lower-case hex.
        let hex: String = f
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::invalid(
                field_path(at, &format!("sha256_fingerprints[{i}]")),
                "must be 64 hex digits (colons allowed)",
            ));
        }
        sha256_fingerprints.push(hex);
    }
    Ok(ClientCertificateRule {
        subjects: c.subjects.clone(),
        issuers: c.issuers.clone(),
        dns_sans,
        uri_sans,
        sha256_fingerprints,
    })
}

fn compile_hsts(h: &RawHsts, at: &str) -> Result<String, ConfigError> {
    if h.max_age_s > 2 * 31_536_000 {
        return Err(ConfigError::invalid(
            field_path(at, "max_age_s"),
            "must be at most two years (63072000)",
        ));
    }
    // The preload list's own requirements (hstspreload.org): a year or more,
    // and every subdomain.
    if h.preload && (h.max_age_s < 31_536_000 || !h.include_subdomains) {
        return Err(ConfigError::invalid(
            field_path(at, "preload"),
            "the preload list requires `max_age_s` of at least 31536000 and `include_subdomains`",
        ));
    }
    let mut value = format!("max-age={}", h.max_age_s);
    if h.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if h.preload {
        value.push_str("; preload");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes())
    }

    #[test]
    fn defaults_and_compiled_values() {
        let c = cfg(r#"{
            "policies": {"api": {
                "min_tls_version": "1.3",
                "client_certificate": {
                    "dns_sans": ["*.Shop.svc", "gateway.example.com"],
                    "uri_sans": [{"prefix": "spiffe://cluster.local/ns/shop/"}],
                    "sha256_fingerprints": ["26:EA:33:3A:4F:22:51:83:02:4D:92:C4:CD:54:BC:1C:DC:48:6C:64:38:96:F3:88:3B:3B:4B:EE:EC:D6:F3:50"]
                },
                "hsts": {"include_subdomains": true, "preload": true}
            }},
            "rules": [{"match": {"path": {"prefix": "/api"}}, "policy": "api"}, {"match": {}}]
        }"#)
        .unwrap();
        let p = &c.policies[0];
        assert!(p.require_tls && c.problem_body);
        assert_eq!(p.plaintext, PlaintextAction::Refuse);
        assert_eq!(p.plaintext_status, 403);
        assert_eq!(p.redirect_methods, ["GET", "HEAD"]);
        assert_eq!(p.https_port, 443);
        assert_eq!(p.min_tls_version, Some(TlsVersion::V1_3));
        let cert = p.client_certificate.as_ref().unwrap();
        assert_eq!(
            cert.dns_sans,
            [
                DnsMatch::Subdomain(".shop.svc".into()),
                DnsMatch::Exact("gateway.example.com".into())
            ]
        );
        assert_eq!(
            cert.sha256_fingerprints,
            ["26ea333a4f225183024d92c4cd54bc1cdc486c643896f3883b3b4beeecd6f350"]
        );
        assert!(cert.reads_certificate());
        assert_eq!(
            p.hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains; preload")
        );
        let view = |path| RequestView {
            method: "GET",
            host: "h",
            path,
            route_name: "",
        };
        assert_eq!(c.policy_index_for(&view("/api/x")), Some(0));
        assert_eq!(c.policy_index_for(&view("/other")), None);
        assert!(!c.needs_route_name);
        assert_eq!(c.request_headers, [":path"]);
        let redirect =
            cfg(r#"{"policies": {"p": {"plaintext": "redirect"}}, "rules": [{"policy": "p"}]}"#)
                .unwrap();
        assert_eq!(redirect.request_headers, [":method", ":authority", ":path"]);
    }

    #[test]
    fn san_rules_match() {
        let sub = DnsMatch::Subdomain(".shop.svc".into());
        assert!(sub.matches("Checkout.Shop.SVC"));
        assert!(!sub.matches("shop.svc"), "not the apex");
        assert!(!sub.matches("evilshop.svc"));
        assert!(DnsMatch::Exact("a.example".into()).matches("A.example"));
        let prefix = UriMatch::Prefix("spiffe://cluster.local/ns/shop/".into());
        assert!(prefix.matches("spiffe://cluster.local/ns/shop/sa/checkout"));
        assert!(!prefix.matches("spiffe://cluster.local/ns/shopping/sa/x"));
        assert!(UriMatch::Exact("spiffe://a/b".into()).matches("spiffe://a/b"));
        assert!(!UriMatch::Exact("spiffe://a/b".into()).matches("spiffe://a/b/c"));
    }

    #[test]
    fn versions_in_order() {
        assert!(TlsVersion::from_envoy("TLSv1.2") < TlsVersion::from_envoy("TLSv1.3"));
        assert_eq!(TlsVersion::from_envoy("TLSv1"), Some(TlsVersion::V1_0));
        assert_eq!(TlsVersion::from_envoy("SSLv3"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let p = |policy: &str| format!(r#"{{"policies": {{"p": {policy}}}, "rules": []}}"#);
        let cases = [
            (r#"{"rules": []}"#.to_string(), "."),
            (p(r#"{"plaintext": "drop"}"#), "policies.p.plaintext"),
            (
                p(r#"{"plaintext_status": 400}"#),
                "policies.p.plaintext_status",
            ),
            (
                p(r#"{"redirect_methods": ["G T"]}"#),
                "policies.p.redirect_methods[0]",
            ),
            (p(r#"{"https_port": 0}"#), "policies.p.https_port"),
            (
                p(r#"{"min_tls_version": "1.1"}"#),
                "policies.p.min_tls_version",
            ),
            (p(r#"{"ciphers": []}"#), "policies.p.ciphers"),
            (p(r#"{"ciphers": ["AES 128"]}"#), "policies.p.ciphers[0]"),
            (
                p(r#"{"client_certificate": {"subjects": ["alice"]}}"#),
                "policies.p.client_certificate.subjects[0]",
            ),
            (
                p(r#"{"client_certificate": {"dns_sans": ["*."]}}"#),
                "policies.p.client_certificate.dns_sans[0]",
            ),
            (
                p(r#"{"client_certificate": {"uri_sans": [{"exact": "checkout"}]}}"#),
                "policies.p.client_certificate.uri_sans[0]",
            ),
            (
                p(r#"{"client_certificate": {"uri_sans": [{"suffix": "x"}]}}"#),
                "policies.p.client_certificate.uri_sans[0]",
            ),
            (
                p(r#"{"client_certificate": {"sha256_fingerprints": ["abcd"]}}"#),
                "policies.p.client_certificate.sha256_fingerprints[0]",
            ),
            (
                p(r#"{"require_tls": false, "min_tls_version": "1.2"}"#),
                "policies.p.require_tls",
            ),
            (
                p(r#"{"hsts": {"preload": true}}"#),
                "policies.p.hsts.preload",
            ),
            (
                p(r#"{"hsts": {"max_age_s": 99999999}}"#),
                "policies.p.hsts.max_age_s",
            ),
            (p(r#"{"tls": true}"#), "policies.p.tls"),
            (
                r#"{"policies": {"a b": {}}, "rules": []}"#.to_string(),
                "policies.a b",
            ),
            (
                r#"{"policies": {}, "rules": [{"policy": "x"}]}"#.to_string(),
                "rules[0].policy",
            ),
            (
                r#"{"policies": {}, "rules": [{"match": {"path": {"regex": "("}}}]}"#.to_string(),
                "rules[0].match.path.regex",
            ),
        ];
        for (json, path) in cases {
            let err = cfg(&json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }
}
