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
//! assert_eq!(config.rules[0].local.as_ref().unwrap().bucket.capacity(), 100);
//! ```

use serde::Deserialize;

use palisade_shared::config::{field_path, is_name, parse_json, ConfigError};
use palisade_shared::forwarded::{ForwardedHeader, TrustedProxies};
use palisade_shared::matcher::{RequestMatch, RequestMatcher};

use crate::bucket::{BucketSpec, MAX_CAPACITY, MAX_INTERVAL_NS, MIN_INTERVAL_NS};
use crate::key::{
    key_hash, ClientAddressSpec, ClientKey, Descriptor, HashKey, IdentityClaim, McpField,
    RequestFacts,
};
use crate::table::{TableFullAction, TableSpec};

/// The most slots one rule's table may have.
pub const MAX_SLOTS: u32 = 262_144;
/// Slots of a rule whose key varies per request, unless configured.
pub const DEFAULT_SLOTS: u32 = 4096;
/// CAS attempts after the first, unless configured.
pub const DEFAULT_MAX_CAS_RETRIES: u32 = 32;
/// How long a global rule waits for the rate-limit service, unless configured.
pub const DEFAULT_GLOBAL_TIMEOUT_MS: u64 = 100;
/// The longest a global rule may be configured to wait.
pub const MAX_GLOBAL_TIMEOUT_MS: u64 = 10_000;
/// Keys each worker tracks for asynchronous global rules, unless configured.
pub const DEFAULT_ASYNC_KEYS: u32 = 4096;
/// The most keys each worker may track for asynchronous global rules.
pub const MAX_ASYNC_KEYS: u32 = 65_536;

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
    global_service: Option<RawGlobalService>,
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
struct RawGlobalService {
    cluster: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default = "default_async_keys")]
    max_async_keys: u32,
}

fn default_async_keys() -> u32 {
    DEFAULT_ASYNC_KEYS
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobalRule {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    on_failure: FailureMode,
    #[serde(default)]
    header_values: HeaderValues,
    #[serde(default)]
    mode: RawGlobalMode,
    #[serde(default)]
    local_share: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawGlobalMode {
    #[default]
    Sync,
    Async,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    request_match: RequestMatch,
    #[serde(default)]
    backend: Backend,
    #[serde(default)]
    global: Option<RawGlobalRule>,
    #[serde(default)]
    token_bucket: Option<RawTokenBucket>,
    #[serde(default = "one")]
    cost: u64,
    #[serde(default)]
    key: Vec<RawDescriptor>,
    #[serde(default)]
    when_key_missing: WhenKeyMissing,
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    on_table_full: Option<RawTableFull>,
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
    Mcp(String),
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

/// Where a rule's limit is held.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In this proxy's shared data (the default): exact across its workers.
    #[default]
    Local,
    /// In a rate-limit service shared by every proxy, asked over Envoy's
    /// rate-limit service API.
    Global,
}

/// How a global rule sends the values of `header` key descriptors.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HeaderValues {
    /// As a 128-bit hash (the default): a header used as a key is often a
    /// credential (an API key), which the service then never sees or stores.
    #[default]
    Hashed,
    /// As they came, for services whose limits match particular values.
    Plain,
}

/// When a global rule learns the service's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalMode {
    /// Every request waits for the service's answer: as exact as the service.
    Sync,
    /// Each worker admits up to `share` tokens per key on its own, reports
    /// them to the service in the background and learns from its answers;
    /// past its share a request waits for the service as in `Sync`.
    Async {
        /// Tokens a worker admits per key between two answers.
        share: u64,
    },
}

/// How a global rule asks the rate-limit service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalRule {
    /// How long a request waits for the service, in milliseconds.
    pub timeout_ms: u64,
    /// What the rule does when the service does not answer in time, or not
    /// with a verdict.
    pub on_failure: FailureMode,
    /// How `header` key values are sent.
    pub header_values: HeaderValues,
    /// Synchronous or asynchronous.
    pub mode: GlobalMode,
}

/// A bucket in this proxy's shared data: a local rule's limit, or the tier
/// a global rule keeps in front of the service.
#[derive(Debug, Clone)]
pub struct LocalBucket {
    /// The bucket every client of the rule gets.
    pub bucket: BucketSpec,
    /// The rule's slot table.
    pub table: TableSpec,
    /// What to do when a client finds no free slot.
    pub on_table_full: TableFullAction,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name: in metrics, headers, filter state and logs.
    pub name: String,
    /// Which requests the rule applies to.
    pub matcher: RequestMatcher,
    /// Tokens per request.
    pub cost: u64,
    /// What the client key is made of; empty: one bucket for everyone.
    pub key: Vec<Descriptor>,
    /// The key hash when the key is the same for every request (only
    /// constants, or empty), computed once.
    pub fixed_key_hash: Option<u64>,
    /// Requests without the key.
    pub when_key_missing: WhenKeyMissing,
    /// The bucket in this proxy: always for a local rule; for a global
    /// rule, the optional tier that sheds a flood before it reaches the
    /// service.
    pub local: Option<LocalBucket>,
    /// For a global rule, how the service is asked.
    pub global: Option<GlobalRule>,
    /// Count and log, never refuse.
    pub shadow: bool,
}

/// The rate-limit service of the global rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalService {
    /// The Envoy cluster the gRPC calls go to.
    pub cluster: String,
    /// The `domain` of every `RateLimitRequest`.
    pub domain: String,
    /// Keys each worker tracks for asynchronous rules.
    pub max_async_keys: usize,
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
    /// `palisade.mcp` (decided on the request body: the rules then decide
    /// when the body has been read).
    pub mcp: bool,
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
    /// The rate-limit service, when a rule is global.
    pub global_service: Option<GlobalService>,
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
    name.len() <= 64 && is_name(name)
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

    let global_service = match raw.global_service {
        None => None,
        Some(g) => {
            if g.cluster.is_empty() {
                return Err(ConfigError::invalid(
                    "global_service.cluster",
                    "must name an Envoy cluster",
                ));
            }
            let domain = g.domain.unwrap_or_else(|| raw.domain.clone());
            if domain.is_empty() {
                return Err(ConfigError::invalid(
                    "global_service.domain",
                    "must not be empty",
                ));
            }
            if g.max_async_keys == 0 || g.max_async_keys > MAX_ASYNC_KEYS {
                return Err(ConfigError::invalid(
                    "global_service.max_async_keys",
                    format!("must be between 1 and {MAX_ASYNC_KEYS}"),
                ));
            }
            Some(GlobalService {
                cluster: g.cluster,
                domain,
                max_async_keys: usize::try_from(g.max_async_keys).unwrap_or(usize::MAX),
            })
        }
    };

    let mut needs = Needs::default();
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let at = format!("rules[{i}]");
        if r.backend == Backend::Global && global_service.is_none() {
            return Err(ConfigError::invalid(
                field_path(&at, "backend"),
                "a global rule needs `global_service` (the Envoy cluster of the rate-limit service)",
            ));
        }
        let rule = compile_rule(r, &at, &raw.domain, &mut needs)?;
        if rules.iter().any(|other: &Rule| other.name == rule.name) {
            return Err(ConfigError::invalid(
                field_path(&at, "name"),
                format!("`{}` is the name of an earlier rule", rule.name),
            ));
        }
        rules.push(rule);
    }
    if needs.mcp {
        // Rules keyed on the MCP decision decide once the body is read, where
        // a request can no longer wait for the rate-limit service.
        if let Some(i) = rules.iter().position(|r| r.global.is_some()) {
            return Err(ConfigError::invalid(
                field_path(&format!("rules[{i}]"), "backend"),
                "global rules cannot be combined with rules keyed on `mcp` (those decide on the request body, where a request cannot wait for the rate-limit service)",
            ));
        }
    }
    Ok(Config {
        domain: raw.domain,
        status: raw.status,
        problem_body: raw.problem_body,
        rate_limit_headers: raw.rate_limit_headers,
        max_cas_retries: raw.max_cas_retries,
        on_store_failure: raw.on_store_failure,
        client_address,
        global_service,
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

    let global = match (r.backend, r.global) {
        (Backend::Local, Some(_)) => {
            return Err(ConfigError::invalid(
                field_path(at, "global"),
                "only a rule with `backend: global` asks the rate-limit service",
            ))
        }
        (Backend::Local, None) => None,
        (Backend::Global, g) => Some(compile_global(g.unwrap_or_default(), at, r.cost)?),
    };
    let bucket = match &r.token_bucket {
        Some(tb) => Some(compile_bucket(tb, &field_path(at, "token_bucket"))?),
        None if global.is_some() => None,
        None => {
            return Err(ConfigError::invalid(
                field_path(at, "token_bucket"),
                "a local rule needs its token bucket",
            ))
        }
    };
    let max_cost = match &bucket {
        Some(b) => b.capacity(),
        None => u64::from(u32::MAX),
    };
    if r.cost == 0 || r.cost > max_cost {
        return Err(ConfigError::invalid(
            field_path(at, "cost"),
            match &bucket {
                Some(_) => format!("must be between 1 and token_bucket.max_tokens ({max_cost})"),
                None => format!("must be between 1 and {max_cost}"),
            },
        ));
    }
    if bucket.is_none() && (r.slots.is_some() || r.on_table_full.is_some()) {
        let field = if r.slots.is_some() {
            "slots"
        } else {
            "on_table_full"
        };
        return Err(ConfigError::invalid(
            field_path(at, field),
            "sizes the local bucket table: only with `token_bucket`",
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
                let usable = |c: IdentityClaim| !c.is_list();
                let claim = IdentityClaim::parse(&claim)
                    .filter(|c| usable(*c))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            field_path(&d_at, "identity"),
                            format!(
                                "`{claim}` is not an identity claim usable as a key (one of {})",
                                IdentityClaim::names(usable)
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
            RawDescriptor::Mcp(field) => {
                let field = McpField::parse(&field).ok_or_else(|| {
                    ConfigError::invalid(
                        field_path(&d_at, "mcp"),
                        format!(
                            "`{field}` is not a part of the MCP decision usable as a key (one of {})",
                            McpField::NAMES.join(", ")
                        ),
                    )
                })?;
                needs.mcp = true;
                Descriptor::Mcp(field)
            }
        });
    }

    let per_request_key = key.iter().any(|d| !matches!(d, Descriptor::Constant(_)));
    let local = match bucket {
        None => None,
        Some(bucket) => {
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
            Some(LocalBucket {
                bucket,
                table: TableSpec::new(slots, table_key_prefix(domain, &r.name)),
                on_table_full: match r.on_table_full.unwrap_or_default() {
                    RawTableFull::Deny => TableFullAction::Deny,
                    RawTableFull::Allow => TableFullAction::Allow,
                    RawTableFull::Evict => TableFullAction::Evict,
                },
            })
        }
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
        cost: r.cost,
        key,
        fixed_key_hash,
        when_key_missing: r.when_key_missing,
        local,
        global,
        shadow: r.shadow,
    })
}

fn compile_bucket(tb: &RawTokenBucket, tb_at: &str) -> Result<BucketSpec, ConfigError> {
    if tb.max_tokens == 0 || tb.max_tokens > MAX_CAPACITY {
        return Err(ConfigError::invalid(
            field_path(tb_at, "max_tokens"),
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    if tb.tokens_per_fill == 0 || tb.tokens_per_fill > MAX_CAPACITY {
        return Err(ConfigError::invalid(
            field_path(tb_at, "tokens_per_fill"),
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    let interval = parse_duration(&tb.fill_interval)
        .filter(|ns| (MIN_INTERVAL_NS..=MAX_INTERVAL_NS).contains(ns))
        .ok_or_else(|| {
            ConfigError::invalid(
                field_path(tb_at, "fill_interval"),
                format!(
                    "`{}` is not a duration between 1ms and 366d (such as \"1s\", \"0.5s\", \"250ms\", \"1m\", \"1h\")",
                    tb.fill_interval
                ),
            )
        })?;
    Ok(BucketSpec::new(tb.max_tokens, tb.tokens_per_fill, interval))
}

fn compile_global(g: RawGlobalRule, at: &str, cost: u64) -> Result<GlobalRule, ConfigError> {
    let g_at = field_path(at, "global");
    let timeout_ms = match &g.timeout {
        None => DEFAULT_GLOBAL_TIMEOUT_MS,
        Some(text) => parse_duration(text)
            .map(|ns| ns / 1_000_000)
            .filter(|ms| (1..=MAX_GLOBAL_TIMEOUT_MS).contains(ms))
            .ok_or_else(|| {
                ConfigError::invalid(
                    field_path(&g_at, "timeout"),
                    format!("`{text}` is not a duration between 1ms and 10s (such as \"50ms\")"),
                )
            })?,
    };
    let mode = match (g.mode, g.local_share) {
        (RawGlobalMode::Sync, None) => GlobalMode::Sync,
        (RawGlobalMode::Sync, Some(_)) => {
            return Err(ConfigError::invalid(
                field_path(&g_at, "local_share"),
                "only for `mode: async`",
            ))
        }
        (RawGlobalMode::Async, None) => {
            return Err(ConfigError::invalid(
                field_path(&g_at, "local_share"),
                "`mode: async` needs the tokens each worker may admit per key between two answers of the service",
            ))
        }
        (RawGlobalMode::Async, Some(share)) if share < cost || share > u64::from(u32::MAX) => {
            return Err(ConfigError::invalid(
                field_path(&g_at, "local_share"),
                format!("must be between the rule's cost ({cost}) and {}", u32::MAX),
            ))
        }
        (RawGlobalMode::Async, Some(share)) => GlobalMode::Async { share },
    };
    Ok(GlobalRule {
        timeout_ms,
        on_failure: g.on_failure,
        header_values: g.header_values,
        mode,
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
        assert_eq!(
            rule.local.as_ref().unwrap().bucket,
            BucketSpec::new(5, 1, 12_000_000_000)
        );
        assert_eq!(rule.local.as_ref().unwrap().table.slots(), 104);
        assert_eq!(
            rule.local.as_ref().unwrap().table.key(3),
            format!("{}3", table_key_prefix("api", "login"))
        );
        assert_eq!(
            rule.local.as_ref().unwrap().on_table_full,
            TableFullAction::Evict
        );
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
                mcp: false,
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
        assert_eq!(all.local.as_ref().unwrap().bucket.refill_tokens(), 1);
        assert_eq!(
            all.local.as_ref().unwrap().table.slots(),
            1,
            "a constant key needs one slot"
        );
        assert_eq!(
            all.local.as_ref().unwrap().on_table_full,
            TableFullAction::Evict
        );
        assert_eq!(all.when_key_missing, WhenKeyMissing::SharedBucket);
        assert!(!all.shadow);
        assert_eq!(
            config.rules[1].local.as_ref().unwrap().table.slots(),
            u64::from(DEFAULT_SLOTS)
        );
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
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"key":[{{"identity":"scope"}}]}}]}}"#), "rules[0].key[0].identity"),
            (format!(r#"{{"rules":[{{"name":"a",{BUCKET},"key":[{{"mcp":"arguments"}}]}}]}}"#), "rules[0].key[0].mcp"),
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
    fn global_rules_compile() {
        let config = Config::from_json(
            br#"{
              "domain": "api",
              "global_service": {"cluster": "ratelimit", "domain": "fleet", "max_async_keys": 100},
              "rules": [
                {"name": "plain", "backend": "global", "key": ["client_address"]},
                {"name": "tuned", "backend": "global", "cost": 500,
                 "global": {"timeout": "20ms", "on_failure": "allow", "header_values": "plain",
                            "mode": "async", "local_share": 1000},
                 "token_bucket": {"max_tokens": 1000, "fill_interval": "1s"}, "slots": 16},
                {"name": "local", "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}
              ]
            }"#,
        )
        .unwrap();
        assert_eq!(
            config.global_service,
            Some(GlobalService {
                cluster: "ratelimit".into(),
                domain: "fleet".into(),
                max_async_keys: 100,
            })
        );
        let plain = &config.rules[0];
        assert!(plain.local.is_none(), "no local tier");
        assert_eq!(
            plain.global,
            Some(GlobalRule {
                timeout_ms: DEFAULT_GLOBAL_TIMEOUT_MS,
                on_failure: FailureMode::Deny,
                header_values: HeaderValues::Hashed,
                mode: GlobalMode::Sync,
            })
        );
        let tuned = &config.rules[1];
        assert_eq!(
            tuned.global,
            Some(GlobalRule {
                timeout_ms: 20,
                on_failure: FailureMode::Allow,
                header_values: HeaderValues::Plain,
                mode: GlobalMode::Async { share: 1000 },
            })
        );
        assert_eq!(tuned.local.as_ref().unwrap().table.slots(), 16);
        assert_eq!(tuned.cost, 500);
        assert!(config.rules[2].global.is_none());
        // The service's domain defaults to the configuration's.
        let config = Config::from_json(
            br#"{"domain": "d", "global_service": {"cluster": "c"},
                 "rules": [{"name": "g", "backend": "global"}]}"#,
        )
        .unwrap();
        let service = config.global_service.unwrap();
        assert_eq!(service.domain, "d");
        assert_eq!(service.max_async_keys, DEFAULT_ASYNC_KEYS as usize);
    }

    #[test]
    fn global_errors_name_the_field() {
        const SERVICE: &str = r#""global_service":{"cluster":"rls"}"#;
        let cases = [
            (
                r#"{"rules":[{"name":"g","backend":"global"}]}"#.to_string(),
                "rules[0].backend",
            ),
            (
                r#"{"rules":[{"name":"l"}]}"#.to_string(),
                "rules[0].token_bucket",
            ),
            (
                format!(r#"{{{SERVICE},"rules":[{{"name":"l",{BUCKET},"global":{{}}}}]}}"#),
                "rules[0].global",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"t",{BUCKET},"key":[{{"mcp":"tool"}}]}},{{"name":"g","backend":"global"}}]}}"#
                ),
                "rules[1].backend",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"timeout":"0ms"}}}}]}}"#
                ),
                "rules[0].global.timeout",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"timeout":"11s"}}}}]}}"#
                ),
                "rules[0].global.timeout",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"mode":"async"}}}}]}}"#
                ),
                "rules[0].global.local_share",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","cost":5,"global":{{"mode":"async","local_share":4}}}}]}}"#
                ),
                "rules[0].global.local_share",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"local_share":4}}}}]}}"#
                ),
                "rules[0].global.local_share",
            ),
            (
                format!(r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","cost":0}}]}}"#),
                "rules[0].cost",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","cost":4294967296}}]}}"#
                ),
                "rules[0].cost",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global",{BUCKET},"cost":11}}]}}"#
                ),
                "rules[0].cost",
            ),
            (
                format!(r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","slots":8}}]}}"#),
                "rules[0].slots",
            ),
            (
                format!(
                    r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","on_table_full":"allow"}}]}}"#
                ),
                "rules[0].on_table_full",
            ),
            (
                r#"{"global_service":{"cluster":""}}"#.to_string(),
                "global_service.cluster",
            ),
            (
                r#"{"global_service":{"cluster":"c","domain":""}}"#.to_string(),
                "global_service.domain",
            ),
            (
                r#"{"global_service":{"cluster":"c","max_async_keys":0}}"#.to_string(),
                "global_service.max_async_keys",
            ),
        ];
        for (json, path) in cases {
            assert_eq!(err(&json).path, path, "{json}");
        }
        for json in [
            format!(r#"{{{SERVICE},"rules":[{{"name":"g","backend":"remote"}}]}}"#),
            format!(
                r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"retries":1}}}}]}}"#
            ),
            format!(
                r#"{{{SERVICE},"rules":[{{"name":"g","backend":"global","global":{{"header_values":"salted"}}}}]}}"#
            ),
            r#"{"global_service":{"domain":"d"}}"#.to_string(),
        ] {
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
