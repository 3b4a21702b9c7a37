//! The plugin configuration: serde types as operators write them, compiled
//! once into [`Config`] when the module loads. See the README for every field.

use std::collections::BTreeMap;
use std::rc::Rc;

use palisade_shared::config::{field_path, ConfigError};
use palisade_shared::matcher::{RequestMatch, RequestMatcher};
use serde::Deserialize;
use serde_json::Value;

use crate::claims::{normalize_typ, ClaimsPolicy, SubjectRule};
use crate::jwk::{parse_jwks_value, KeySet, Symmetric};
use crate::jws::Algorithm;
use crate::source::TokenSource;

fn yes() -> bool {
    true
}
fn default_realm() -> String {
    "palisade".into()
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_key_wait_ms() -> u64 {
    3000
}
fn default_cache_entries() -> usize {
    1024
}
fn default_skew() -> u64 {
    60
}
fn default_typ() -> Vec<String> {
    vec!["JWT".into(), "at+jwt".into()]
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_cache_duration_s() -> u64 {
    600
}
fn default_stale_if_error_s() -> u64 {
    3600
}
fn default_refetch_interval_s() -> u64 {
    30
}

/// The whole plugin configuration, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Providers by name.
    pub providers: BTreeMap<String, RawProvider>,
    /// Route rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Whether refusals carry an RFC 9457 problem body.
    #[serde(default = "yes")]
    pub problem_body: bool,
    /// Whether CORS preflight requests pass without a token.
    #[serde(default = "yes")]
    pub bypass_cors_preflight: bool,
    /// Longest accepted token, bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// How long a request may wait for keys being fetched, ms.
    #[serde(default = "default_key_wait_ms")]
    pub key_wait_ms: u64,
    /// Entries of the per-worker cache of verified tokens; 0 turns it off.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Which signature verifier to use.
    #[serde(default)]
    pub verifier: VerifierChoice,
}

/// Which signature verifier to use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerifierChoice {
    /// The host's `verify_signature` where it works, else portable.
    #[default]
    Auto,
    /// Always the portable (pure-Rust) verifier.
    Portable,
}

/// A provider, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Accepted `aud` values (any of); empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A rule `sub` must meet.
    #[serde(default)]
    pub subject: Option<StringMatch>,
    /// Inline JWK set.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// A JWK set fetched through an Envoy cluster.
    #[serde(default)]
    pub remote_jwks: Option<RawRemote>,
    /// OIDC discovery through an Envoy cluster.
    #[serde(default)]
    pub discovery: Option<RawRemote>,
    /// Accepted algorithms; default: every algorithm the keys fit.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Whether `exp` is required.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Tolerated clock difference, seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    /// Longest accepted token lifetime, seconds.
    #[serde(default)]
    pub max_lifetime_s: Option<u64>,
    /// Accepted `typ` values; empty: any.
    #[serde(default = "default_typ")]
    pub typ: Vec<String>,
    /// Where tokens are looked for; default `Authorization: Bearer`.
    #[serde(default)]
    pub from: Vec<RawSource>,
    /// Whether the token goes on to the upstream.
    #[serde(default)]
    pub forward: bool,
    /// Claims copied into upstream headers.
    #[serde(default)]
    pub claim_headers: Vec<RawClaimHeader>,
    /// A header that receives the whole payload, base64url.
    #[serde(default)]
    pub payload_header: Option<String>,
    /// Whether tokens must be bound to the client: `none`, `mtls` (RFC
    /// 8705), `dpop` (RFC 9449) or `either`.
    #[serde(default)]
    pub sender_constraint: SenderConstraint,
    /// DPoP proof rules (with `dpop` or `either`).
    #[serde(default)]
    pub dpop: Option<RawDpop>,
}

/// How a provider's tokens are bound to their client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderConstraint {
    /// Bearer tokens: whoever holds one may use it.
    #[default]
    None,
    /// Certificate-bound (RFC 8705): `cnf.x5t#S256` is the SHA-256 of the
    /// client certificate of the connection.
    Mtls,
    /// DPoP-bound (RFC 9449): `cnf.jkt` is the thumbprint of the key that
    /// signs the request's `DPoP` proof.
    Dpop,
    /// Either binding; a token must carry at least one, and every binding
    /// it carries is checked.
    Either,
}

impl SenderConstraint {
    /// Whether DPoP tokens are accepted.
    pub fn accepts_dpop(self) -> bool {
        matches!(self, SenderConstraint::Dpop | SenderConstraint::Either)
    }

    /// Whether tokens come with the `Bearer` scheme.
    pub fn accepts_bearer(self) -> bool {
        !matches!(self, SenderConstraint::Dpop)
    }
}

fn default_dpop_max_age_s() -> u64 {
    60
}
fn default_dpop_skew_s() -> u64 {
    5
}
fn default_replay_entries() -> u32 {
    65_536
}
fn default_nonce_lifetime_s() -> u64 {
    300
}

/// DPoP proof rules, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// Accepted proof algorithms (asymmetric); default ES256, ES384, ES512,
    /// RS256, PS256, EdDSA.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// How old a proof's `iat` may be, seconds.
    #[serde(default = "default_dpop_max_age_s")]
    pub max_age_s: u64,
    /// Tolerated clock difference for `iat`, seconds.
    #[serde(default = "default_dpop_skew_s")]
    pub clock_skew_s: u64,
    /// Proofs remembered at once (across workers) to refuse replays.
    #[serde(default = "default_replay_entries")]
    pub replay_entries: u32,
    /// Server nonces: proofs must carry one this proxy issued.
    #[serde(default)]
    pub nonce: Option<RawNonce>,
}

/// DPoP server nonces, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNonce {
    /// How long a nonce is accepted, seconds (a nonce is good for one to
    /// two lifetimes).
    #[serde(default = "default_nonce_lifetime_s")]
    pub lifetime_s: u64,
    /// The MAC key of the nonces, base64url, 32 bytes or more: set the same
    /// on every proxy behind one load balancer. Absent: one random key per
    /// proxy, shared by its workers.
    #[serde(default)]
    pub secret: Option<String>,
}

/// DPoP proof rules, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    /// Accepted proof algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `algs` of the `WWW-Authenticate: DPoP` challenge.
    pub algs: String,
    /// Oldest accepted `iat`, seconds before now.
    pub max_age_s: i64,
    /// Clock skew, seconds.
    pub clock_skew_s: i64,
    /// Replay table size.
    pub replay_entries: u32,
    /// Nonces, when required.
    pub nonce: Option<NoncePolicy>,
}

/// DPoP nonces, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoncePolicy {
    /// Lifetime, seconds.
    pub lifetime_s: i64,
    /// The configured secret, if any.
    pub secret: Option<Vec<u8>>,
}

/// A remote key source, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemote {
    /// The Envoy cluster to send the request through.
    pub cluster: String,
    /// `:authority`; default: the issuer's host (discovery) or the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// Path; required for `remote_jwks`, default
    /// `<issuer path>/.well-known/openid-configuration` for `discovery`.
    #[serde(default)]
    pub path: Option<String>,
    /// Request timeout, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long fetched keys are used before a refresh, seconds.
    #[serde(default = "default_cache_duration_s")]
    pub cache_duration_s: u64,
    /// How long past `cache_duration_s` keys stay in use while refreshes fail, seconds.
    #[serde(default = "default_stale_if_error_s")]
    pub stale_if_error_s: u64,
    /// Least time between refreshes triggered by an unknown `kid`, seconds.
    #[serde(default = "default_refetch_interval_s")]
    pub refetch_unknown_kid_interval_s: u64,
}

/// A string rule, as written: exactly one of the three.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum StringMatch {
    /// Exactly.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches the whole string.
    Regex(String),
}

/// A token source, as written: exactly one of `header`, `query`, `cookie`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// A header name.
    #[serde(default)]
    pub header: Option<String>,
    /// The value prefix before the token (with `header`), such as `Bearer `.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A query parameter.
    #[serde(default)]
    pub query: Option<String>,
    /// A cookie.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A claim to copy into a header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimHeader {
    /// Claim path, dotted for nested objects.
    pub claim: String,
    /// Header name.
    pub header: String,
}

/// A route rule, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Which requests.
    #[serde(rename = "match", default)]
    pub matcher: RequestMatch,
    /// Which providers; absent: no token needed.
    #[serde(default)]
    pub requires: Option<RawRequires>,
    /// A request without a token passes (one with a bad token does not).
    #[serde(default)]
    pub allow_missing: bool,
    /// A request without a token or with a bad one passes (without identity).
    #[serde(default)]
    pub allow_missing_or_failed: bool,
    /// Scopes the token must carry.
    #[serde(default)]
    pub scopes: Option<RawScopes>,
    /// Claim values the token must carry.
    #[serde(default)]
    pub claims: Vec<RawClaimRequirement>,
}

/// Which providers a rule requires: exactly one field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequires {
    /// One provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Any of these.
    #[serde(default)]
    pub any: Option<Vec<String>>,
    /// All of these (each with its own token).
    #[serde(default)]
    pub all: Option<Vec<String>>,
}

/// Scopes a rule requires.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScopes {
    /// Every one of these.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// At least one of these.
    #[serde(default)]
    pub any_of: Vec<String>,
}

/// A claim value a rule requires: exactly one of `equals`, `one_of`, `contains`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRequirement {
    /// Claim path, dotted for nested objects.
    pub claim: String,
    /// The claim equals this JSON value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// The claim equals one of these.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// The claim is an array containing this value (or a space-separated string containing it).
    #[serde(default)]
    pub contains: Option<Value>,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// From the configuration.
    Inline(Rc<KeySet>),
    /// Fetched.
    Remote(RemoteSpec),
}

/// A remote key source, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Whether `path` is a discovery document (else a JWK set).
    pub discovery: bool,
    /// The cluster.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Timeout, ms.
    pub timeout_ms: u64,
    /// Fresh for, ms.
    pub cache_duration_ms: i64,
    /// Usable past freshness while refreshes fail, ms.
    pub stale_if_error_ms: i64,
    /// Least time between unknown-`kid` refreshes, ms.
    pub refetch_interval_ms: i64,
}

/// One provider, compiled.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Its name.
    pub name: String,
    /// Its claims policy.
    pub claims: ClaimsPolicy,
    /// Its keys.
    pub keys: KeySource,
    /// Accepted algorithms, `None`: any the keys fit.
    pub algorithms: Option<Vec<Algorithm>>,
    /// Token sources.
    pub sources: Vec<TokenSource>,
    /// Whether the token is forwarded.
    pub forward: bool,
    /// `(claim path, header)`.
    pub claim_headers: Vec<(String, String)>,
    /// Payload header.
    pub payload_header: Option<String>,
    /// How its tokens are bound to their client.
    pub sender: SenderConstraint,
    /// DPoP proof rules (`dpop` or `either`).
    pub dpop: Option<DpopPolicy>,
}

/// Which providers a rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed.
    None,
    /// Any one of these providers (indexes).
    Any(Vec<usize>),
    /// Every one of these providers.
    All(Vec<usize>),
}

/// A compiled claim requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCheck {
    /// Equals.
    Equals(Value),
    /// One of.
    OneOf(Vec<Value>),
    /// Contains.
    Contains(Value),
}

/// A route rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which requests.
    pub matcher: RequestMatcher,
    /// Which providers.
    pub requirement: Requirement,
    /// See [`RawRule::allow_missing`].
    pub allow_missing: bool,
    /// See [`RawRule::allow_missing_or_failed`].
    pub allow_missing_or_failed: bool,
    /// Required scopes (all).
    pub scopes_all: Vec<String>,
    /// Required scopes (any).
    pub scopes_any: Vec<String>,
    /// Required claims.
    pub claims: Vec<(String, ClaimCheck)>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Providers, in name order.
    pub providers: Vec<Provider>,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// Challenge realm.
    pub realm: String,
    /// Problem bodies on.
    pub problem_body: bool,
    /// CORS preflight bypass.
    pub bypass_cors_preflight: bool,
    /// Token size bound.
    pub max_token_bytes: usize,
    /// Key wait bound, ms.
    pub key_wait_ms: u64,
    /// Token cache size.
    pub cache_entries: usize,
    /// Verifier choice.
    pub verifier: VerifierChoice,
    /// Whether any rule matches on Envoy's route name (the adapter reads
    /// that property only then).
    pub needs_route_name: bool,
    /// Every header the filter may set toward the upstream; a client-sent
    /// copy of each is replaced or removed on every request.
    pub managed: Vec<String>,
    /// The request headers the decision reads, worked out once.
    pub needs: RequestNeeds,
}

/// Which request headers a decision reads (besides the CORS preflight
/// headers, which the adapter reads only when a preflight could change the
/// answer). Reading one header costs a host call that returns data, about
/// as much as reading the whole map would cost for two: so with two or more
/// to read the adapter takes the whole map, else it asks by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestNeeds {
    /// Headers to read (pseudo-headers for the rules, then the token
    /// headers), lower case, each once.
    pub headers: Vec<String>,
    /// Whether reading the whole map is the cheaper way.
    pub whole_map: bool,
}

impl RequestNeeds {
    fn of(rules: &[RawRule], providers: &[Provider]) -> RequestNeeds {
        let mut headers: Vec<String> = Vec::new();
        let mut want = |name: &str| {
            if !headers.iter().any(|h| h == name) {
                headers.push(name.to_string());
            }
        };
        if rules.iter().any(|r| !r.matcher.methods.is_empty()) {
            want(":method");
        }
        if rules.iter().any(|r| r.matcher.host.is_some()) {
            want(":authority");
        }
        let query_tokens = providers
            .iter()
            .flat_map(|p| &p.sources)
            .any(|s| matches!(s, TokenSource::Query(_)));
        if query_tokens || rules.iter().any(|r| r.matcher.path.is_some()) {
            want(":path");
        }
        if providers.iter().any(|p| p.dpop.is_some()) {
            // A proof is checked against the request's method and URL.
            for name in [":method", ":scheme", ":authority", ":path", "dpop"] {
                want(name);
            }
        }
        for source in providers.iter().flat_map(|p| &p.sources) {
            match source {
                TokenSource::Header { name, .. } => want(name),
                TokenSource::Cookie(_) => want("cookie"),
                TokenSource::Query(_) => {}
            }
        }
        let whole_map = headers.len() >= 2;
        RequestNeeds { headers, whole_map }
    }
}

impl Config {
    /// Parses and compiles a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = palisade_shared::config::parse_json(bytes)?;
        Config::compile(raw)
    }

    /// Compiles a parsed configuration.
    pub fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.providers.is_empty() {
            return Err(ConfigError::invalid(
                "providers",
                "at least one provider is required",
            ));
        }
        let names: Vec<String> = raw.providers.keys().cloned().collect();
        let mut providers = Vec::new();
        for (name, p) in &raw.providers {
            providers.push(compile_provider(name, p, &format!("providers.{name}"))?);
        }
        let index = |n: &str, at: String| {
            names
                .iter()
                .position(|x| x == n)
                .ok_or_else(|| ConfigError::invalid(at, format!("no provider named `{n}`")))
        };
        let mut rules = Vec::new();
        if raw.rules.is_empty() {
            rules.push(Rule {
                matcher: RequestMatcher::any(),
                requirement: Requirement::Any((0..names.len()).collect()),
                allow_missing: false,
                allow_missing_or_failed: false,
                scopes_all: vec![],
                scopes_any: vec![],
                claims: vec![],
            });
        }
        for (i, r) in raw.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let requirement = match &r.requires {
                None => Requirement::None,
                Some(req) => match (&req.provider, &req.any, &req.all) {
                    (Some(p), None, None) => {
                        Requirement::Any(vec![index(p, field_path(&at, "requires.provider"))?])
                    }
                    (None, Some(list), None) | (None, None, Some(list)) => {
                        if list.is_empty() {
                            return Err(ConfigError::invalid(
                                field_path(&at, "requires"),
                                "names no provider",
                            ));
                        }
                        let idx = list
                            .iter()
                            .enumerate()
                            .map(|(j, p)| index(p, field_path(&at, &format!("requires[{j}]"))))
                            .collect::<Result<Vec<_>, _>>()?;
                        if req.any.is_some() {
                            Requirement::Any(idx)
                        } else {
                            Requirement::All(idx)
                        }
                    }
                    _ => {
                        return Err(ConfigError::invalid(
                            field_path(&at, "requires"),
                            "exactly one of `provider`, `any`, `all`",
                        ))
                    }
                },
            };
            if requirement == Requirement::None
                && (r.allow_missing
                    || r.allow_missing_or_failed
                    || r.scopes.is_some()
                    || !r.claims.is_empty())
            {
                return Err(ConfigError::invalid(
                    at,
                    "`allow_missing`, `allow_missing_or_failed`, `scopes` and `claims` need `requires`",
                ));
            }
            let mut claims = Vec::new();
            for (j, c) in r.claims.iter().enumerate() {
                let check = match (&c.equals, &c.one_of, &c.contains) {
                    (Some(v), None, None) => ClaimCheck::Equals(v.clone()),
                    (None, Some(v), None) => ClaimCheck::OneOf(v.clone()),
                    (None, None, Some(v)) => ClaimCheck::Contains(v.clone()),
                    _ => {
                        return Err(ConfigError::invalid(
                            field_path(&at, &format!("claims[{j}]")),
                            "exactly one of `equals`, `one_of`, `contains`",
                        ))
                    }
                };
                claims.push((c.claim.clone(), check));
            }
            let scopes = r.scopes.clone().unwrap_or_default();
            rules.push(Rule {
                matcher: RequestMatcher::compile(&r.matcher, &field_path(&at, "match"))?,
                requirement,
                allow_missing: r.allow_missing,
                allow_missing_or_failed: r.allow_missing_or_failed,
                scopes_all: scopes.all_of,
                scopes_any: scopes.any_of,
                claims,
            });
        }
        if raw.max_token_bytes < 64 || raw.max_token_bytes > 64 * 1024 {
            return Err(ConfigError::invalid(
                "max_token_bytes",
                "must be between 64 and 65536",
            ));
        }
        if raw.cache_entries > 100_000 {
            return Err(ConfigError::invalid(
                "cache_entries",
                "must be at most 100000",
            ));
        }
        if raw.key_wait_ms > 60_000 {
            return Err(ConfigError::invalid("key_wait_ms", "must be at most 60000"));
        }
        if raw.realm.contains('"') || raw.realm.contains('\\') {
            return Err(ConfigError::invalid(
                "realm",
                "must not contain `\"` or `\\`",
            ));
        }
        let managed = managed_headers(&providers);
        let needs = RequestNeeds::of(&raw.rules, &providers);
        Ok(Config {
            managed,
            needs,
            providers,
            rules,
            realm: raw.realm,
            problem_body: raw.problem_body,
            bypass_cors_preflight: raw.bypass_cors_preflight,
            max_token_bytes: raw.max_token_bytes,
            key_wait_ms: raw.key_wait_ms,
            cache_entries: raw.cache_entries,
            verifier: raw.verifier,
            needs_route_name: raw.rules.iter().any(|r| r.matcher.route_name.is_some()),
        })
    }
}

fn managed_headers(providers: &[Provider]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in providers {
        for name in p
            .claim_headers
            .iter()
            .map(|(_, h)| h)
            .chain(p.payload_header.iter())
        {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(':')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn compile_provider(name: &str, p: &RawProvider, at: &str) -> Result<Provider, ConfigError> {
    if p.issuer.is_empty() {
        return Err(ConfigError::invalid(
            field_path(at, "issuer"),
            "must not be empty",
        ));
    }
    let keys = match (&p.jwks, &p.remote_jwks, &p.discovery) {
        (Some(doc), None, None) => KeySource::Inline(Rc::new(
            parse_jwks_value(doc, Symmetric::Allowed)
                .map_err(|e| ConfigError::invalid(field_path(at, "jwks"), e.to_string()))?,
        )),
        (None, Some(r), None) => KeySource::Remote(compile_remote(
            r,
            false,
            &p.issuer,
            &field_path(at, "remote_jwks"),
        )?),
        (None, None, Some(r)) => KeySource::Remote(compile_remote(
            r,
            true,
            &p.issuer,
            &field_path(at, "discovery"),
        )?),
        _ => {
            return Err(ConfigError::invalid(
                at,
                "exactly one key source: `jwks`, `remote_jwks` or `discovery`",
            ))
        }
    };
    let algorithms = match &p.algorithms {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, a)| {
                    Algorithm::from_name(a).ok_or_else(|| {
                        ConfigError::invalid(
                            field_path(at, &format!("algorithms[{i}]")),
                            format!("`{a}` is not a supported JWS algorithm"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let subject = match &p.subject {
        None => None,
        Some(StringMatch::Exact(s)) => Some(SubjectRule::Exact(s.clone())),
        Some(StringMatch::Prefix(s)) => Some(SubjectRule::Prefix(s.clone())),
        Some(StringMatch::Regex(r)) => Some(SubjectRule::Regex(
            regex_lite::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                ConfigError::invalid(
                    field_path(at, "subject.regex"),
                    format!("not a valid regular expression: {e}"),
                )
            })?,
        )),
    };
    let mut sources = Vec::new();
    for (i, s) in p.from.iter().enumerate() {
        let sat = field_path(at, &format!("from[{i}]"));
        sources.push(match (&s.header, &s.query, &s.cookie) {
            (Some(h), None, None) => {
                let name = h.to_ascii_lowercase();
                if !valid_header_name(&name) {
                    return Err(ConfigError::invalid(
                        field_path(&sat, "header"),
                        "not a header name",
                    ));
                }
                TokenSource::Header {
                    name,
                    prefix: s.prefix.clone().unwrap_or_default(),
                }
            }
            (None, Some(q), None) if s.prefix.is_none() && !q.is_empty() => {
                TokenSource::Query(q.clone())
            }
            (None, None, Some(c)) if s.prefix.is_none() && !c.is_empty() => {
                TokenSource::Cookie(c.clone())
            }
            _ => {
                return Err(ConfigError::invalid(
                    sat,
                    "exactly one of `header` (with an optional `prefix`), `query`, `cookie`",
                ))
            }
        });
    }
    if sources.is_empty() {
        if p.sender_constraint.accepts_bearer() {
            sources.push(TokenSource::bearer());
        }
        if p.sender_constraint.accepts_dpop() {
            sources.push(TokenSource::dpop());
        }
    } else if p.sender_constraint.accepts_dpop() {
        // RFC 9449 section 7.1: a DPoP-bound token comes in `Authorization: DPoP`.
        return Err(ConfigError::invalid(
            field_path(at, "from"),
            "DPoP tokens come in `Authorization: DPoP <token>`: leave `from` out with `sender_constraint` dpop or either",
        ));
    }
    let mut claim_headers = Vec::new();
    for (i, c) in p.claim_headers.iter().enumerate() {
        let header = c.header.to_ascii_lowercase();
        if !valid_header_name(&header) || c.claim.is_empty() {
            return Err(ConfigError::invalid(
                field_path(at, &format!("claim_headers[{i}]")),
                "needs a claim path and a header name",
            ));
        }
        claim_headers.push((c.claim.clone(), header));
    }
    let payload_header = match &p.payload_header {
        Some(h) if !valid_header_name(&h.to_ascii_lowercase()) => {
            return Err(ConfigError::invalid(
                field_path(at, "payload_header"),
                "not a header name",
            ))
        }
        other => other.as_ref().map(|h| h.to_ascii_lowercase()),
    };
    if p.clock_skew_s > 3600 {
        return Err(ConfigError::invalid(
            field_path(at, "clock_skew_s"),
            "must be at most 3600",
        ));
    }
    let dpop = match (&p.dpop, p.sender_constraint.accepts_dpop()) {
        (Some(_), false) => {
            return Err(ConfigError::invalid(
                field_path(at, "dpop"),
                "needs `sender_constraint` dpop or either",
            ))
        }
        (None, false) => None,
        (raw, true) => Some(compile_dpop(raw.as_ref(), &field_path(at, "dpop"))?),
    };
    Ok(Provider {
        sender: p.sender_constraint,
        dpop,
        name: name.to_string(),
        claims: ClaimsPolicy {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            subject,
            require_exp: p.require_exp,
            clock_skew_s: p.clock_skew_s as i64,
            max_lifetime_s: p.max_lifetime_s.map(|s| s.min(i64::MAX as u64) as i64),
            typ: p.typ.iter().map(|t| normalize_typ(t)).collect(),
        },
        keys,
        algorithms,
        sources,
        forward: p.forward,
        claim_headers,
        payload_header,
    })
}

fn compile_dpop(raw: Option<&RawDpop>, at: &str) -> Result<DpopPolicy, ConfigError> {
    let defaults = RawDpop {
        algorithms: None,
        max_age_s: default_dpop_max_age_s(),
        clock_skew_s: default_dpop_skew_s(),
        replay_entries: default_replay_entries(),
        nonce: None,
    };
    let d = raw.unwrap_or(&defaults);
    let algorithms = match &d.algorithms {
        None => vec![
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::EdDSA,
        ],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::invalid(
                field_path(at, "algorithms"),
                "must name at least one algorithm",
            ))
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, name)| match Algorithm::from_name(name) {
                Some(a) if !a.is_hmac() => Ok(a),
                _ => Err(ConfigError::invalid(
                    field_path(at, &format!("algorithms[{i}]")),
                    format!("`{name}` is not an asymmetric JWS algorithm (RFC 9449 needs one)"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if d.max_age_s == 0 || d.max_age_s > 3600 {
        return Err(ConfigError::invalid(
            field_path(at, "max_age_s"),
            "must be between 1 and 3600",
        ));
    }
    if d.clock_skew_s > 300 {
        return Err(ConfigError::invalid(
            field_path(at, "clock_skew_s"),
            "must be at most 300",
        ));
    }
    if !(64..=1 << 20).contains(&d.replay_entries) {
        return Err(ConfigError::invalid(
            field_path(at, "replay_entries"),
            "must be between 64 and 1048576",
        ));
    }
    let nonce = match &d.nonce {
        None => None,
        Some(n) => {
            if !(10..=86_400).contains(&n.lifetime_s) {
                return Err(ConfigError::invalid(
                    field_path(at, "nonce.lifetime_s"),
                    "must be between 10 and 86400",
                ));
            }
            let secret = match &n.secret {
                None => None,
                Some(text) => match crate::jws::b64url_decode(text) {
                    Some(bytes) if bytes.len() >= 32 => Some(bytes),
                    _ => {
                        return Err(ConfigError::invalid(
                            field_path(at, "nonce.secret"),
                            "must be base64url of 32 bytes or more",
                        ))
                    }
                },
            };
            Some(NoncePolicy {
                lifetime_s: n.lifetime_s as i64,
                secret,
            })
        }
    };
    Ok(DpopPolicy {
        algs: algorithms
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(" "),
        algorithms,
        max_age_s: d.max_age_s as i64,
        clock_skew_s: d.clock_skew_s as i64,
        replay_entries: d.replay_entries,
        nonce,
    })
}

/// The host and path of an `https://host[:port]/path` URL.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then(|| (host.to_string(), path.to_string()))
}

fn compile_remote(
    r: &RawRemote,
    discovery: bool,
    issuer: &str,
    at: &str,
) -> Result<RemoteSpec, ConfigError> {
    if r.cluster.is_empty() {
        return Err(ConfigError::invalid(
            field_path(at, "cluster"),
            "must not be empty",
        ));
    }
    let issuer_url = split_url(issuer);
    let path = match (&r.path, discovery) {
        (Some(p), _) if p.starts_with('/') => p.clone(),
        (Some(_), _) => {
            return Err(ConfigError::invalid(
                field_path(at, "path"),
                "must start with `/`",
            ))
        }
        (None, true) => {
            let (_, ipath) = issuer_url.clone().ok_or_else(|| {
                ConfigError::invalid(
                    field_path(at, "path"),
                    "the issuer is not a URL: give the discovery path",
                )
            })?;
            format!(
                "{}/.well-known/openid-configuration",
                ipath.trim_end_matches('/')
            )
        }
        (None, false) => return Err(ConfigError::invalid(field_path(at, "path"), "is required")),
    };
    let authority = r
        .authority
        .clone()
        .or_else(|| discovery.then(|| issuer_url.map(|(h, _)| h)).flatten())
        .unwrap_or_else(|| r.cluster.clone());
    if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
        return Err(ConfigError::invalid(
            field_path(at, "timeout_ms"),
            "must be between 1 and 60000",
        ));
    }
    if r.cache_duration_s < 1 {
        return Err(ConfigError::invalid(
            field_path(at, "cache_duration_s"),
            "must be at least 1",
        ));
    }
    let ms = |s: u64| (s.min(10 * 365 * 86_400) * 1000) as i64;
    Ok(RemoteSpec {
        discovery,
        cluster: r.cluster.clone(),
        authority,
        path,
        timeout_ms: r.timeout_ms,
        cache_duration_ms: ms(r.cache_duration_s),
        stale_if_error_ms: ms(r.stale_if_error_s),
        refetch_interval_ms: ms(r.refetch_unknown_kid_interval_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k"}]}"#;

    fn cfg(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes())
    }

    #[test]
    fn minimal_config_requires_any_provider_everywhere() {
        let c = cfg(&format!(
            r#"{{"providers":{{"a":{{"issuer":"https://a","jwks":{ED}}}}}}}"#
        ))
        .unwrap();
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].requirement, Requirement::Any(vec![0]));
        assert_eq!(c.providers[0].sources, vec![TokenSource::bearer()]);
        assert_eq!(c.providers[0].claims.typ, vec!["jwt", "at+jwt"]);
        assert_eq!(c.providers[0].claims.clock_skew_s, 60);
        assert!(c.problem_body && c.bypass_cors_preflight);
        assert!(!c.needs_route_name);
        let r = cfg(&format!(r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED}}}}},"rules":[{{"match":{{"route_name":"x"}}}}]}}"#)).unwrap();
        assert!(r.needs_route_name);
    }

    #[test]
    fn remote_defaults() {
        let c = cfg(r#"{"providers":{
            "d":{"issuer":"https://idp.example.com/realms/x/","discovery":{"cluster":"idp"}},
            "r":{"issuer":"i","remote_jwks":{"cluster":"idp","path":"/jwks"}}}}"#)
        .unwrap();
        let KeySource::Remote(d) = &c.providers[0].keys else {
            panic!()
        };
        assert_eq!(d.path, "/realms/x/.well-known/openid-configuration");
        assert_eq!(d.authority, "idp.example.com");
        assert!(d.discovery);
        assert_eq!(
            (
                d.cache_duration_ms,
                d.stale_if_error_ms,
                d.refetch_interval_ms
            ),
            (600_000, 3_600_000, 30_000)
        );
        let KeySource::Remote(r) = &c.providers[1].keys else {
            panic!()
        };
        assert_eq!(
            (r.authority.as_str(), r.path.as_str(), r.discovery),
            ("idp", "/jwks", false)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let p = format!(r#""a":{{"issuer":"https://a","jwks":{ED}}}"#);
        let cases = [
            (r#"{"providers":{}}"#.to_string(), "providers"),
            (
                r#"{"providers":{"a":{"issuer":"i"}}}"#.to_string(),
                "providers.a",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"remote_jwks":{{"cluster":"c","path":"/"}}}}}}}}"#
                ),
                "providers.a",
            ),
            (
                r#"{"providers":{"a":{"issuer":"i","jwks":{"keys":[]}}}}"#.to_string(),
                "providers.a.jwks",
            ),
            (
                r#"{"providers":{"a":{"issuer":"i","remote_jwks":{"cluster":"c"}}}}"#.to_string(),
                "providers.a.remote_jwks.path",
            ),
            (
                r#"{"providers":{"a":{"issuer":"i","discovery":{"cluster":"c"}}}}"#.to_string(),
                "providers.a.discovery.path",
            ),
            (
                format!(r#"{{"providers":{{{p}}},"rules":[{{"requires":{{"provider":"b"}}}}]}}"#),
                "rules[0].requires.provider",
            ),
            (
                format!(
                    r#"{{"providers":{{{p}}},"rules":[{{"requires":{{"provider":"a","any":["a"]}}}}]}}"#
                ),
                "rules[0].requires",
            ),
            (
                format!(r#"{{"providers":{{{p}}},"rules":[{{"allow_missing":true}}]}}"#),
                "rules[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{{p}}},"rules":[{{"requires":{{"any":["a"]}},"claims":[{{"claim":"x"}}]}}]}}"#
                ),
                "rules[0].claims[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{{p}}},"rules":[{{"match":{{"path":{{"regex":"("}}}}}}]}}"#
                ),
                "rules[0].match.path.regex",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"algorithms":["none"]}}}}}}"#
                ),
                "providers.a.algorithms[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"from":[{{"query":"q","cookie":"c"}}]}}}}}}"#
                ),
                "providers.a.from[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"claim_headers":[{{"claim":"sub","header":"x y"}}]}}}}}}"#
                ),
                "providers.a.claim_headers[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"subject":{{"regex":"["}}}}}}}}"#
                ),
                "providers.a.subject.regex",
            ),
            (
                format!(r#"{{"providers":{{{p}}},"max_token_bytes":10}}"#),
                "max_token_bytes",
            ),
            (
                format!(r#"{{"providers":{{{p}}},"realm":"a\"b"}}"#),
                "realm",
            ),
            (
                format!(r#"{{"providers":{{{p}}},"verifier":"fast"}}"#),
                "verifier",
            ),
            (format!(r#"{{"providers":{{{p}}},"ruels":[]}}"#), "ruels"),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"dpop","from":[{{"header":"x-t"}}]}}}}}}"#
                ),
                "providers.a.from",
            ),
            (
                format!(r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"dpop":{{}}}}}}}}"#),
                "providers.a.dpop",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"either","dpop":{{"algorithms":["HS256"]}}}}}}}}"#
                ),
                "providers.a.dpop.algorithms[0]",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"dpop","dpop":{{"max_age_s":0}}}}}}}}"#
                ),
                "providers.a.dpop.max_age_s",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"dpop","dpop":{{"replay_entries":8}}}}}}}}"#
                ),
                "providers.a.dpop.replay_entries",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"dpop","dpop":{{"nonce":{{"secret":"c2hvcnQ"}}}}}}}}}}"#
                ),
                "providers.a.dpop.nonce.secret",
            ),
            (
                format!(
                    r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"sender_constraint":"bound"}}}}}}"#
                ),
                "providers.a.sender_constraint",
            ),
        ];
        for (json, path) in cases {
            let err = cfg(&json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }

    #[test]
    fn sender_constraints_compile() {
        let c = cfg(&format!(
            r#"{{"providers":{{
                "d":{{"issuer":"i","jwks":{ED},"sender_constraint":"dpop"}},
                "e":{{"issuer":"j","jwks":{ED},"sender_constraint":"either","dpop":{{"algorithms":["ES256","EdDSA"],"nonce":{{}}}}}},
                "m":{{"issuer":"k","jwks":{ED},"sender_constraint":"mtls"}}}}}}"#
        ))
        .unwrap();
        let (d, e, m) = (&c.providers[0], &c.providers[1], &c.providers[2]);
        assert_eq!(d.sources, vec![TokenSource::dpop()]);
        assert_eq!(e.sources, vec![TokenSource::bearer(), TokenSource::dpop()]);
        assert_eq!(m.sources, vec![TokenSource::bearer()]);
        let dp = d.dpop.as_ref().unwrap();
        assert_eq!(dp.algs, "ES256 ES384 ES512 RS256 PS256 EdDSA");
        assert_eq!(
            (dp.max_age_s, dp.clock_skew_s, dp.replay_entries),
            (60, 5, 65_536)
        );
        assert!(dp.nonce.is_none());
        let nonce = e.dpop.as_ref().unwrap().nonce.as_ref().unwrap();
        assert_eq!((nonce.lifetime_s, nonce.secret.is_none()), (300, true));
        assert!(m.dpop.is_none());
        assert_eq!(
            c.needs.headers,
            vec![
                ":method",
                ":scheme",
                ":authority",
                ":path",
                "dpop",
                "authorization"
            ]
        );
    }

    #[test]
    fn managed_headers_are_collected_once() {
        let c = cfg(&format!(
            r#"{{"providers":{{
                "a":{{"issuer":"i","jwks":{ED},"claim_headers":[{{"claim":"sub","header":"X-Sub"}}],"payload_header":"x-payload"}},
                "b":{{"issuer":"j","jwks":{ED},"claim_headers":[{{"claim":"sub","header":"x-sub"}}]}}}}}}"#
        ))
        .unwrap();
        assert_eq!(c.managed, vec!["x-sub", "x-payload"]);
    }

    #[test]
    fn request_needs_are_worked_out_once() {
        let needs = |doc: String| cfg(&doc).unwrap().needs;
        // The common case: one catch-all rule, bearer tokens: one header by name.
        let n = needs(format!(
            r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED}}}}}}}"#
        ));
        assert_eq!(n.headers, vec!["authorization"]);
        assert!(!n.whole_map);
        // Rules on path and method, a query and a cookie source: the whole map.
        let n = needs(format!(
            r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED},"from":[{{"query":"t"}},{{"cookie":"c"}},{{"header":"X-T"}}]}}}},
                "rules":[{{"match":{{"methods":["GET"],"path":{{"prefix":"/a"}}}},"requires":{{"provider":"a"}}}}]}}"#
        ));
        assert_eq!(n.headers, vec![":method", ":path", "cookie", "x-t"]);
        assert!(n.whole_map);
        // A host rule and bearer tokens: two headers, the whole map is cheaper.
        let n = needs(format!(
            r#"{{"providers":{{"a":{{"issuer":"i","jwks":{ED}}}}},
                "rules":[{{"match":{{"host":"api.example.com"}},"requires":{{"provider":"a"}}}}]}}"#
        ));
        assert_eq!(n.headers, vec![":authority", "authorization"]);
        assert!(n.whole_map);
    }

    #[test]
    fn url_split() {
        assert_eq!(
            split_url("https://h:8443/a/b"),
            Some(("h:8443".into(), "/a/b".into()))
        );
        assert_eq!(split_url("http://h"), Some(("h".into(), "/".into())));
        assert_eq!(split_url("h/a"), None);
    }
}
