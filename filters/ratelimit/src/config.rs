//! The plugin configuration: JSON as operators write it, validated and
//! compiled once into an immutable [`Config`].
//!
//! ```
//! use palisade_ratelimit::config::Config;
//! let config = Config::from_json(br#"{
//!   "rules": [{
//!     "name": "per_client",
//!     "token_bucket": {"max_tokens": 100, "tokens_per_fill": 10, "fill_interval": "1s"},
//!     "key": ["client_address"]
//!   }]
//! }"#).unwrap();
//! assert_eq!(config.rules[0].bucket.capacity(), 100);
//! ```

use serde::Deserialize;

use palisade_shared::config::{field_path, parse_json, ConfigError};
use palisade_shared::forwarded::{ForwardedHeader, TrustedProxies};
use palisade_shared::matcher::{RequestMatch, RequestMatcher};

use crate::bucket::{BucketSpec, MAX_CAPACITY, MAX_INTERVAL_NS, MIN_INTERVAL_NS};
use crate::key::{
    key_hash, ClientAddressSpec, ClientKey, Descriptor, HashKey, IdentityClaim, RequestFacts,
};
use crate::table::{TableFullAction, TableSpec};

/// The most slots one rule's table may have.
pub const MAX_SLOTS: u32 = 262_144;
/// Slots of a rule whose key varies per request, unless configured.
pub const DEFAULT_SLOTS: u32 = 4096;
/// CAS attempts after the first, unless configured.
pub const DEFAULT_MAX_CAS_RETRIES: u32 = 32;

// ---------------------------------------------------------------- raw JSON

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_domain")]
    domain: String,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default = "yes")]
    problem_body: bool,
    #[serde(default)]
    rate_limit_headers: HeaderMode,
    #[serde(default = "default_retries")]
    max_cas_retries: u32,
    #[serde(default)]
    on_store_failure: FailureMode,
    #[serde(default)]
    client_address: RawClientAddress,
    #[serde(default)]
    rules: Vec<RawRule>,
}

fn default_domain() -> String {
    "default".into()
}
fn default_status() -> u16 {
    429
}
fn yes() -> bool {
    true
}
fn default_retries() -> u32 {
    DEFAULT_MAX_CAS_RETRIES
}
fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientAddress {
    #[serde(default)]
    xff_trusted_hops: u32,
    #[serde(default)]
    forwarded_header: ForwardedHeader,
    #[serde(default = "default_v4_prefix")]
    ipv4_prefix: u8,
    #[serde(default = "default_v6_prefix")]
    ipv6_prefix: u8,
}

fn default_v4_prefix() -> u8 {
    32
}
fn default_v6_prefix() -> u8 {
    128
}

impl Default for RawClientAddress {
    fn default() -> Self {
        RawClientAddress {
            xff_trusted_hops: 0,
            forwarded_header: ForwardedHeader::default(),
            ipv4_prefix: default_v4_prefix(),
            ipv6_prefix: default_v6_prefix(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    request_match: RequestMatch,
    token_bucket: RawTokenBucket,
    #[serde(default = "one")]
    cost: u64,
    #[serde(default)]
    key: Vec<RawDescriptor>,
    #[serde(default)]
    when_key_missing: WhenKeyMissing,
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    on_table_full: RawTableFull,
    #[serde(default)]
    shadow: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenBucket {
    max_tokens: u64,
    #[serde(default = "one")]
    tokens_per_fill: u64,
    fill_interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawDescriptor {
    ClientAddress,
    Header(String),
    Identity(String),
    Path,
    Method,
    Host,
    RouteName,
    Constant(String),
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawTableFull {
    Deny,
    Allow,
    #[default]
    Evict,
}

// ---------------------------------------------------------------- compiled

/// When the `RateLimit-Policy` / `RateLimit` fields are sent.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMode {
    /// On refusals only (the default).
    #[default]
    Limited,
    /// On refusals and on every response to a request a rule matched.
    Always,
    /// Never.
    Never,
}

/// What happens when the shared buckets cannot be read or updated (the host
/// refused, or every CAS attempt met a concurrent writer).
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Refuse the request (the default).
    #[default]
    Deny,
    /// Let it through without spending from that bucket.
    Allow,
}

/// What a rule does with a request whose key cannot be built (a header or an
/// identity claim it names is absent).
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenKeyMissing {
    /// Every such request shares one bucket of the rule (the default).
    #[default]
    SharedBucket,
    /// The rule does not apply to the request.
    SkipRule,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name: in metrics, headers, filter state and logs.
    pub name: String,
    /// Which requests the rule applies to.
    pub matcher: RequestMatcher,
    /// The bucket every client of this rule gets.
    pub bucket: BucketSpec,
    /// Tokens per request.
    pub cost: u64,
    /// What the client key is made of; empty: one bucket for everyone.
    pub key: Vec<Descriptor>,
    /// The key hash when the key is the same for every request (only
    /// constants, or empty), computed once.
    pub fixed_key_hash: Option<u64>,
    /// Requests without the key.
    pub when_key_missing: WhenKeyMissing,
    /// The rule's slot table.
    pub table: TableSpec,
    /// What to do when a client finds no free slot.
    pub on_table_full: TableFullAction,
    /// Count and log, never refuse.
    pub shadow: bool,
}

/// What parts of a request the rules look at, so the adapter fetches
/// nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// `:method`.
    pub method: bool,
    /// `:authority`.
    pub host: bool,
    /// `:path`.
    pub path: bool,
    /// `xds.route_name`.
    pub route_name: bool,
    /// The peer address and, with trusted hops, `x-forwarded-for`.
    pub client_address: bool,
    /// `palisade.identity`.
    pub identity: bool,
    /// Request headers named by keys, lower case.
    pub headers: Vec<String>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The shared-data namespace: rules of different domains never share buckets.
    pub domain: String,
    /// The status of a refusal.
    pub status: u16,
    /// Whether refusals carry an RFC 9457 problem body.
    pub problem_body: bool,
    /// When the RateLimit header fields are sent.
    pub rate_limit_headers: HeaderMode,
    /// CAS attempts after the first.
    pub max_cas_retries: u32,
    /// What a store failure does.
    pub on_store_failure: FailureMode,
    /// How the client address is found.
    pub client_address: ClientAddressSpec,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// What the rules need from a request.
    pub needs: Needs,
    /// The client-key hash key: all zero from [`Config::from_json`], the
    /// process's random key once the stage agreed on it
    /// ([`crate::hash_key::agree`]).
    pub hash_key: HashKey,
}

impl Config {
    /// Parses and validates a JSON plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        compile(raw)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An HTTP field name (RFC 9110 token), or a pseudo-header such as `:authority`.
fn valid_header_name(name: &str) -> bool {
    let token = name.strip_prefix(':').unwrap_or(name);
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

const NAME_RULE: &str = "must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`";

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    if !valid_name(&raw.domain) {
        return Err(ConfigError::invalid("domain", NAME_RULE));
    }
    if !(400..=599).contains(&raw.status) {
        return Err(ConfigError::invalid(
            "status",
            format!("must be a 4xx or 5xx status, not {}", raw.status),
        ));
    }
    if raw.max_cas_retries > 10_000 {
        return Err(ConfigError::invalid(
            "max_cas_retries",
            "must be at most 10000",
        ));
    }
    let ca = &raw.client_address;
    if ca.ipv4_prefix == 0 || ca.ipv4_prefix > 32 {
        return Err(ConfigError::invalid(
            "client_address.ipv4_prefix",
            "must be between 1 and 32",
        ));
    }
    if ca.ipv6_prefix == 0 || ca.ipv6_prefix > 128 {
        return Err(ConfigError::invalid(
            "client_address.ipv6_prefix",
            "must be between 1 and 128",
        ));
    }
    let client_address = ClientAddressSpec {
        trusted: TrustedProxies {
            hops: ca.xff_trusted_hops,
            header: ca.forwarded_header,
        },
        ipv4_prefix: ca.ipv4_prefix,
        ipv6_prefix: ca.ipv6_prefix,
    };

    let mut needs = Needs::default();
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let at = format!("rules[{i}]");
        let rule = compile_rule(r, &at, &raw.domain, &mut needs)?;
        if rules.iter().any(|other: &Rule| other.name == rule.name) {
            return Err(ConfigError::invalid(
                field_path(&at, "name"),
                format!("`{}` is the name of an earlier rule", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(Config {
        domain: raw.domain,
        status: raw.status,
        problem_body: raw.problem_body,
        rate_limit_headers: raw.rate_limit_headers,
        max_cas_retries: raw.max_cas_retries,
        on_store_failure: raw.on_store_failure,
        client_address,
        rules,
        needs,
        hash_key: HashKey::default(),
    })
}

fn compile_rule(
    r: RawRule,
    at: &str,
    domain: &str,
    needs: &mut Needs,
) -> Result<Rule, ConfigError> {
    if !valid_name(&r.name) {
        return Err(ConfigError::invalid(field_path(at, "name"), NAME_RULE));
    }
    let matcher = RequestMatcher::compile(&r.request_match, &field_path(at, "match"))?;
    needs.method |= !r.request_match.methods.is_empty();
    needs.host |= r.request_match.host.is_some();
    needs.path |= r.request_match.path.is_some();
    needs.route_name |= r.request_match.route_name.is_some();

    let tb = &r.token_bucket;
    let tb_at = field_path(at, "token_bucket");
    if tb.max_tokens == 0 || tb.max_tokens > MAX_CAPACITY {
        return Err(ConfigError::invalid(
            field_path(&tb_at, "max_tokens"),
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    if tb.tokens_per_fill == 0 || tb.tokens_per_fill > MAX_CAPACITY {
        return Err(ConfigError::invalid(
            field_path(&tb_at, "tokens_per_fill"),
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    let interval = parse_duration(&tb.fill_interval)
        .filter(|ns| (MIN_INTERVAL_NS..=MAX_INTERVAL_NS).contains(ns))
        .ok_or_else(|| {
            ConfigError::invalid(
                field_path(&tb_at, "fill_interval"),
                format!(
                    "`{}` is not a duration between 1ms and 366d (such as \"1s\", \"0.5s\", \"250ms\", \"1m\", \"1h\")",
                    tb.fill_interval
                ),
            )
        })?;
    let bucket = BucketSpec::new(tb.max_tokens, tb.tokens_per_fill, interval);
    if r.cost == 0 || r.cost > tb.max_tokens {
        return Err(ConfigError::invalid(
            field_path(at, "cost"),
            format!(
                "must be between 1 and token_bucket.max_tokens ({})",
                tb.max_tokens
            ),
        ));
    }

    let mut key = Vec::with_capacity(r.key.len());
    for (j, d) in r.key.into_iter().enumerate() {
        let d_at = field_path(at, &format!("key[{j}]"));
        key.push(match d {
            RawDescriptor::ClientAddress => {
                needs.client_address = true;
                Descriptor::ClientAddress
            }
            RawDescriptor::Header(name) => {
                let name = name.to_ascii_lowercase();
                if !valid_header_name(&name) {
                    return Err(ConfigError::invalid(
                        field_path(&d_at, "header"),
                        format!("`{name}` is not a header name"),
                    ));
                }
                if !needs.headers.contains(&name) {
                    needs.headers.push(name.clone());
                }
                Descriptor::Header(name)
            }
            RawDescriptor::Identity(claim) => {
                let claim = IdentityClaim::parse(&claim).ok_or_else(|| {
                    ConfigError::invalid(
                        field_path(&d_at, "identity"),
                        format!(
                            "`{claim}` is not an identity claim usable as a key (one of {})",
                            IdentityClaim::NAMES.join(", ")
                        ),
                    )
                })?;
                needs.identity = true;
                Descriptor::Identity(claim)
            }
            RawDescriptor::Path => {
                needs.path = true;
                Descriptor::Path
            }
            RawDescriptor::Method => {
                needs.method = true;
                Descriptor::Method
            }
            RawDescriptor::Host => {
                needs.host = true;
                Descriptor::Host
            }
            RawDescriptor::RouteName => {
                needs.route_name = true;
                Descriptor::RouteName
            }
            RawDescriptor::Constant(value) => Descriptor::Constant(value),
        });
    }

    let per_request_key = key.iter().any(|d| !matches!(d, Descriptor::Constant(_)));
    let slots = match r.slots {
        Some(0) => {
            return Err(ConfigError::invalid(
                field_path(at, "slots"),
                "must be at least 1",
            ))
        }
        Some(n) if n > MAX_SLOTS => {
            return Err(ConfigError::invalid(
                field_path(at, "slots"),
                format!("must be at most {MAX_SLOTS}"),
            ))
        }
        Some(n) => n,
        None if per_request_key => DEFAULT_SLOTS,
        None => 1,
    };
    let table = TableSpec::new(slots, table_key_prefix(domain, &r.name));
    let on_table_full = match r.on_table_full {
        RawTableFull::Deny => TableFullAction::Deny,
        RawTableFull::Allow => TableFullAction::Allow,
        RawTableFull::Evict => TableFullAction::Evict,
    };
    let fixed_key_hash = if per_request_key {
        None
    } else {
        // One bucket for every request: no key an attacker could choose.
        key_hash(
            &HashKey::default(),
            &key,
            &RequestFacts::default(),
            &ClientKey::default(),
        )
    };
    Ok(Rule {
        name: r.name,
        matcher,
        bucket,
        cost: r.cost,
        key,
        fixed_key_hash,
        when_key_missing: r.when_key_missing,
        table,
        on_table_full,
        shadow: r.shadow,
    })
}

/// Parses a duration: `"1s"`, `"0.25s"` (protobuf JSON style, up to 9
/// decimals), `"250ms"`, `"5m"`, `"1h"`, `"1d"`. Returns nanoseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit_ns): (&str, u64) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60 * 1_000_000_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600 * 1_000_000_000)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, 86_400 * 1_000_000_000)
    } else {
        return None;
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut ns = whole.checked_mul(unit_ns)?;
    if !frac.is_empty() {
        let digits: u64 = frac.parse().ok()?;
        let scale = 10u64.pow(u32::try_from(frac.len()).ok()?);
        // unit_ns * digits / scale, exact for every unit used here.
        let part = u128::from(unit_ns) * u128::from(digits) / u128::from(scale);
        ns = ns.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(ns)
}

/// The shared-data key prefix of a rule's table: `rl:`, the 64-bit FNV-1a
/// hash of `<domain>/<rule>` in 11 URL-safe base64 characters, and `/`; the
/// set number follows. At most 20 characters with the set number, so Envoy
/// (libc++, whose strings hold up to 22 characters without a heap block)
/// copies the key without an allocation on every shared-data call; the
/// readable `palisade.ratelimit/<domain>/<rule>/` with default names already
/// took 34. Names are `[A-Za-z0-9_-]`, so `/` separates them unambiguously;
/// two (domain, rule) pairs share keys only on a 64-bit hash collision.
pub fn table_key_prefix(domain: &str, rule: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in domain
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(rule.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut key = String::with_capacity(15);
    key.push_str("rl:");
    for i in 0..11 {
        let sextet = (hash >> (6 * i)) & 63;
        let c = ALPHABET.get(usize::try_from(sextet).unwrap_or(0)).copied();
        key.push(char::from(c.unwrap_or(b'A')));
    }
    key.push('/');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).unwrap_err()
    }

    const BUCKET: &str = r#""token_bucket":{"max_tokens":10,"fill_interval":"1s"}"#;

    #[test]
    fn durations() {
        let cases = [
            ("1s", Some(1_000_000_000)),
            ("0.5s", Some(500_000_000)),
            (".25s", Some(250_000_000)),
            ("1.000000001s", Some(1_000_000_001)),
            ("250ms", Some(250_000_000)),
            ("2m", Some(120_000_000_000)),
            ("1h", Some(3_600_000_000_000)),
            ("1d", Some(86_400_000_000_000)),
            ("1.5m", Some(90_000_000_000)),
            ("1", None),
            ("s", None),
            ("-1s", None),
            ("1 s", None),
            ("1.0000000001s", None),
            ("1e3s", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), want, "{text}");
        }
    }

    #[test]
    fn a_full_config_compiles() {
        let config = Config::from_json(
            br#"{
              "domain": "api",
              "status": 503,
              "problem_body": false,
              "rate_limit_headers": "always",
              "max_cas_retries": 5,
              "on_store_failure": "allow",
              "client_address": {"xff_trusted_hops": 1, "ipv6_prefix": 64},
              "rules": [{
                "name": "login",
                "match": {"path": {"exact": "/login"}, "methods": ["POST"]},
                "token_bucket": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "12s"},
                "cost": 2,
                "key": ["client_address", {"header": "X-Tenant"}, {"identity": "sub"}, "path",
                        "method", "host", "route_name", {"constant": "v1"}],
                "when_key_missing": "skip_rule",
                "slots": 100,
                "on_table_full": "evict",
                "shadow": true
              }]
            }"#,
        )
        .unwrap();
        assert_eq!(config.domain, "api");
        assert_eq!(config.status, 503);
        assert!(!config.problem_body);
        assert_eq!(config.rate_limit_headers, HeaderMode::Always);
        assert_eq!(config.on_store_failure, FailureMode::Allow);
        assert_eq!(config.client_address.trusted.hops, 1);
        assert_eq!(
            config.client_address.trusted.header,
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(config.client_address.ipv6_prefix, 64);
        let rule = &config.rules[0];
        assert_eq!(rule.cost, 2);
        assert_eq!(rule.bucket, BucketSpec::new(5, 1, 12_000_000_000));
        assert_eq!(rule.table.slots(), 104);
        assert_eq!(
            rule.table.key(3),
            format!("{}3", table_key_prefix("api", "login"))
        );
        assert_eq!(rule.on_table_full, TableFullAction::Evict);
        assert_eq!(rule.when_key_missing, WhenKeyMissing::SkipRule);
        assert!(rule.shadow);
        assert_eq!(rule.key.len(), 8);
        assert_eq!(
            config.needs,
            Needs {
                method: true,
                host: true,
                path: true,
                route_name: true,
                client_address: true,
                identity: true,
                headers: vec!["x-tenant".into()],
            }
        );
    }

    #[test]
    fn defaults() {
        let config = Config::from_json(
            format!(r#"{{"rules":[{{"name":"all",{BUCKET}}},{{"name":"ip",{BUCKET},"key":["client_address"]}}]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(config.domain, "default");
        assert_eq!(config.status, 429);
        assert!(config.problem_body);
        assert_eq!(config.rate_limit_headers, HeaderMode::Limited);
        assert_eq!(config.max_cas_retries, DEFAULT_MAX_CAS_RETRIES);
        assert_eq!(config.on_store_failure, FailureMode::Deny);
        assert_eq!(config.client_address.ipv4_prefix, 32);
        assert_eq!(config.client_address.ipv6_prefix, 128);
        let all = &config.rules[0];
        assert_eq!(all.cost, 1);
        assert_eq!(all.bucket.refill_tokens(), 1);
        assert_eq!(all.table.slots(), 1, "a constant key needs one slot");
        assert_eq!(all.on_table_full, TableFullAction::Evict);
        assert_eq!(all.when_key_missing, WhenKeyMissing::SharedBucket);
        assert!(!all.shadow);
        assert_eq!(config.rules[1].table.slots(), u64::from(DEFAULT_SLOTS));
        // A key that is the same for every request is hashed once, here.
        let facts = RequestFacts {
            path: "/x".into(),
            peer_address: Some("10.0.0.1:1".into()),
            ..RequestFacts::default()
        };
        assert_eq!(
            all.fixed_key_hash,
            key_hash(&HashKey::default(), &[], &facts, &ClientKey::default())
        );
        assert!(all.fixed_key_hash.is_some());
        assert_eq!(config.rules[1].fixed_key_hash, None);
        assert_eq!(config.needs.headers, Vec::<String>::new());
        assert!(config.needs.client_address && !config.needs.path);
        // No configuration at all: no rules, nothing limited.
        assert!(Config::from_json(b"").unwrap().rules.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"domain":"a b"}"#.to_string(), "domain"),
            (r#"{"status":200}"#.to_string(), "status"),
            (r#"{"max_cas_retries":10001}"#.to_string(), "max_cas_retries"),
            (r#"{"client_address":{"ipv4_prefix":33}}"#.to_string(), "client_address.ipv4_prefix"),
            (r#"{"client_address":{"ipv6_prefix":0}}"#.to_string(), "client_address.ipv6_prefix"),
            (r#"{"client_address":{"forwarded_header":"x-real-ip"}}"#.to_string(), "client_address.forwarded_header"),
            (r#"{"rules":[{"name":"a.b","token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#.to_string(), "rules[0].name"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET}}},{{"name":"a",{BUCKET}}}]}}"#), "rules[1].name"),
            (r#"{"rules":[{"name":"a","token_bucket":{"max_tokens":0,"fill_interval":"1s"}}]}"#.to_string(), "rules[0].token_bucket.max_tokens"),
            (r#"{"rules":[{"name":"a","token_bucket":{"max_tokens":1,"tokens_per_fill":0,"fill_interval":"1s"}}]}"#.to_string(), "rules[0].token_bucket.tokens_per_fill"),
            (r#"{"rules":[{"name":"a","token_bucket":{"max_tokens":1,"fill_interval":"1us"}}]}"#.to_string(), "rules[0].token_bucket.fill_interval"),
            (r#"{"rules":[{"name":"a","token_bucket":{"max_tokens":1,"fill_interval":"0.5ms"}}]}"#.to_string(), "rules[0].token_bucket.fill_interval"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"cost":11}}]}}"#), "rules[0].cost"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"cost":0}}]}}"#), "rules[0].cost"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"slots":0}}]}}"#), "rules[0].slots"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"slots":262145}}]}}"#), "rules[0].slots"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"key":[{{"header":"bad name"}}]}}]}}"#), "rules[0].key[0].header"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"key":[{{"identity":"email"}}]}}]}}"#), "rules[0].key[0].identity"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"match":{{"path":{{"regex":"("}}}}}}]}}"#), "rules[0].match.path.regex"),
        ];
        for (json, path) in cases {
            assert_eq!(err(&json).path, path, "{json}");
        }
    }

    #[test]
    fn unknown_fields_and_values_are_rejected() {
        let cases = [
            r#"{"rulez":[]}"#.to_string(),
            format!(r#"{{"rules":[{{"name":"a",{BUCKET},"shadow_mode":true}}]}}"#),
            format!(r#"{{"rules":[{{"name":"a",{BUCKET},"key":["cookie"]}}]}}"#),
            format!(r#"{{"rules":[{{"name":"a",{BUCKET},"on_table_full":"panic"}}]}}"#),
            format!(r#"{{"rules":[{{"name":"a",{BUCKET},"when_key_missing":"deny"}}]}}"#),
            r#"{"rate_limit_headers":"sometimes"}"#.to_string(),
            r#"{"rules":[{"name":"a","token_bucket":{"max_tokens":1,"fill_interval":"1s","burst":2}}]}"#.to_string(),
            r#"{"rules":[{"name":"a"}]}"#.to_string(),
        ];
        for json in cases {
            assert!(Config::from_json(json.as_bytes()).is_err(), "{json}");
        }
    }

    #[test]
    fn table_keys_are_short_stable_and_distinct() {
        // Stable across builds and VMs: every worker must find the same keys.
        let prefix = table_key_prefix("default", "bench");
        assert_eq!(prefix, "rl:X-P2jGIeeQA/");
        assert!(prefix.starts_with("rl:") && prefix.ends_with('/'));
        assert_eq!(prefix.len(), 15);
        // With the largest set number, within libc++'s 22-character strings.
        assert!(prefix.len() + (MAX_SLOTS / 8).to_string().len() <= 22);
        let mut seen = std::collections::HashSet::new();
        for domain in ["default", "api", "a", "ab"] {
            for rule in ["bench", "login", "b", "b-a", "a_b"] {
                assert!(
                    seen.insert(table_key_prefix(domain, rule)),
                    "{domain}/{rule}"
                );
            }
        }
        // The separator keeps ("a", "b/c")-like splits apart.
        assert_ne!(table_key_prefix("ab", "c"), table_key_prefix("a", "bc"));
    }
}
