//! The plugin configuration: serde types as operators write them, compiled
//! once into [`Config`] when the module loads. See the README for every field.

use std::collections::BTreeMap;
use std::fmt;

use palisade_shared::config::{field_path, ConfigError};
use palisade_shared::matcher::{RequestMatch, RequestMatcher};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::access::{Access, NameTable, Requirement};
use crate::arguments::{ArgCheck, ArgType, ArgumentPolicy};
use crate::resource::{ResourceRule, UriMatch};
use crate::template::UriTemplate;
use palisade_shared::contract::IdentityClaim;

/// The protocol revision whose clients may send JSON-RPC batches and
/// may omit `MCP-Protocol-Version` (it did not exist yet).
pub const BATCH_VERSION: &str = "2025-03-26";

/// The revisions that open a session with `initialize` (the later,
/// stateless revisions carry their version in every request).
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

fn default_versions() -> Vec<String> {
    vec!["2025-06-18".into(), "2025-11-25".into()]
}
fn default_realm() -> String {
    "palisade".into()
}
fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_max_depth() -> usize {
    32
}
fn default_max_argument_bytes() -> usize {
    64 * 1024
}
fn default_max_list_bytes() -> usize {
    4 * 1024 * 1024
}

/// The whole plugin configuration, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The MCP endpoints, first match wins; other requests pass untouched.
    pub routes: Vec<RawRoute>,
}

/// One MCP endpoint, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Which requests are this endpoint's.
    #[serde(rename = "match", default)]
    pub matcher: RequestMatch,
    /// `Origin` values allowed (a request without `Origin` is not checked).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Accepted `MCP-Protocol-Version` values.
    #[serde(default = "default_versions")]
    pub protocol_versions: Vec<String>,
    /// Whether every request but `initialize` must carry `Mcp-Session-Id`.
    #[serde(default)]
    pub require_session: bool,
    /// Largest accepted POST body.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Deepest accepted nesting of arrays and objects.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Largest `params.arguments` of a tool call, unless its tool says otherwise.
    #[serde(default = "default_max_argument_bytes")]
    pub max_argument_bytes: usize,
    /// Largest listing answer that is filtered (a larger one is replaced by an error).
    #[serde(default = "default_max_list_bytes")]
    pub max_list_response_bytes: usize,
    /// Rules by JSON-RPC method; absent: every method.
    #[serde(default)]
    pub methods: Option<BTreeMap<String, RawRule>>,
    /// Rules by tool name; a tool no rule names is refused.
    #[serde(default)]
    pub tools: BTreeMap<String, RawRule>,
    /// Rules by resource URI, first match wins; a URI no rule matches is refused.
    #[serde(default)]
    pub resources: Vec<RawResourceRule>,
    /// Rules by prompt name; a prompt no rule names is refused.
    #[serde(default)]
    pub prompts: BTreeMap<String, RawRule>,
    /// `realm` of the `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The RFC 9728 metadata URL named in every challenge.
    #[serde(default)]
    pub resource_metadata: Option<String>,
}

/// A rule, as written: `"allow"`, `"deny"`, or an object.
#[derive(Debug, Clone)]
pub enum RawRule {
    /// `"allow"` or `"deny"`.
    Word(String),
    /// The long form.
    Detailed(RawDetailedRule),
}

/// A rule's long form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetailedRule {
    /// `allow` (the default) or `deny`.
    #[serde(default)]
    pub access: Option<String>,
    /// Whether a verified identity is needed (implied by scopes and claims).
    #[serde(default)]
    pub authenticated: bool,
    /// Every one of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// At least one of these scopes.
    #[serde(default)]
    pub any_scopes: Vec<String>,
    /// Claim values of the identity.
    #[serde(default)]
    pub claims: Vec<RawClaim>,
    /// Tools only: the largest `params.arguments`.
    #[serde(default)]
    pub max_argument_bytes: Option<usize>,
    /// Tools only: checks by argument name.
    #[serde(default)]
    pub arguments: BTreeMap<String, RawArgument>,
    /// Tools only: arguments not in `arguments` are refused.
    #[serde(default)]
    pub only_listed_arguments: bool,
    /// Tools only: arguments whose values go into the decision and the
    /// audit record (redacted there like query parameters).
    #[serde(default)]
    pub log_arguments: Vec<String>,
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = RawRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"allow\", \"deny\" or a rule object")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRule, E> {
                Ok(RawRule::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
                RawDetailedRule::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawRule::Detailed)
            }
        }
        deserializer.deserialize_any(RuleVisitor)
    }
}

/// A claim check, as written: the claim has one of these values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    /// One of `provider`, `iss`, `sub`, `client_id`, `acr`, `aud`, `amr`, `scope`.
    pub claim: String,
    /// The value (exactly one of `equals`, `one_of`).
    #[serde(default)]
    pub equals: Option<String>,
    /// The values.
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
}

/// An argument check, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgument {
    /// The JSON type: string, integer, number, boolean, array, object.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Longest string (characters) or array (items).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// The allowed values.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// A regular expression the whole string must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Whether the argument must be there.
    #[serde(default)]
    pub required: bool,
}

/// A resource rule, as written: one of `exact`, `prefix`, `template`, and the rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceRule {
    /// The URI exactly.
    #[serde(default)]
    pub exact: Option<String>,
    /// URIs starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// URIs an RFC 6570 template expands to.
    #[serde(default)]
    pub template: Option<String>,
    /// What to do.
    pub access: RawRule,
}

/// One MCP endpoint, compiled.
#[derive(Debug, Clone)]
pub struct Route {
    /// Which requests.
    pub matcher: RequestMatcher,
    /// Allowed `Origin` values, lower case.
    pub allowed_origins: Vec<String>,
    /// Accepted protocol versions.
    pub protocol_versions: Vec<String>,
    /// Whether a session id is required after `initialize`.
    pub require_session: bool,
    /// Largest POST body.
    pub max_message_bytes: usize,
    /// Deepest nesting.
    pub max_depth: usize,
    /// Default largest tool arguments.
    pub max_argument_bytes: usize,
    /// Largest listing answer to filter.
    pub max_list_response_bytes: usize,
    /// Method rules; `None`: every method.
    pub methods: Option<NameTable<Access>>,
    /// Tool rules.
    pub tools: NameTable<ToolRule>,
    /// Resource rules, first match wins.
    pub resources: Vec<ResourceRule>,
    /// Prompt rules.
    pub prompts: NameTable<Access>,
    /// Challenge realm.
    pub realm: String,
    /// RFC 9728 metadata URL for challenges.
    pub resource_metadata: Option<String>,
}

impl Route {
    /// Whether this route accepts the 2025-03-26 revision (batches, no
    /// version header).
    pub fn allows_batches(&self) -> bool {
        self.protocol_versions.iter().any(|v| v == BATCH_VERSION)
    }
}

/// A tool's rule: who may call it, and what its arguments may be.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// Who.
    pub access: Access,
    /// What.
    pub arguments: ArgumentPolicy,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The endpoints, first match wins.
    pub routes: Vec<Route>,
    /// Whether a route matches on Envoy's route name.
    pub needs_route_name: bool,
    /// Every tool name a rule names exactly (for per-tool metrics).
    pub tool_names: Vec<String>,
}

impl Config {
    /// Parses and compiles a configuration document.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = palisade_shared::config::parse_json(bytes)?;
        Config::compile(raw)
    }

    /// Compiles a parsed configuration.
    pub fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "at least one MCP route is required",
            ));
        }
        let mut routes = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            routes.push(compile_route(r, &format!("routes[{i}]"))?);
        }
        let mut tool_names: Vec<String> = Vec::new();
        for route in &routes {
            for name in route.tools.exact_names() {
                if !tool_names.iter().any(|n| n == name) {
                    tool_names.push(name.to_string());
                }
            }
        }
        Ok(Config {
            needs_route_name: raw.routes.iter().any(|r| r.matcher.route_name.is_some()),
            routes,
            tool_names,
        })
    }
}

fn compile_route(r: &RawRoute, at: &str) -> Result<Route, ConfigError> {
    if r.protocol_versions.is_empty() {
        return Err(ConfigError::invalid(
            field_path(at, "protocol_versions"),
            "names no protocol version",
        ));
    }
    for (i, v) in r.protocol_versions.iter().enumerate() {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                field_path(at, &format!("protocol_versions[{i}]")),
                "not a protocol version",
            ));
        }
    }
    for (i, o) in r.allowed_origins.iter().enumerate() {
        if o.is_empty() || o.ends_with('/') || !o.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                field_path(at, &format!("allowed_origins[{i}]")),
                "an origin is `scheme://host[:port]`, without a path",
            ));
        }
    }
    let bounded = |name: &str, value: usize, min: usize, max: usize| {
        if value < min || value > max {
            Err(ConfigError::invalid(
                field_path(at, name),
                format!("must be between {min} and {max}"),
            ))
        } else {
            Ok(value)
        }
    };
    bounded("max_message_bytes", r.max_message_bytes, 64, 64 << 20)?;
    bounded("max_depth", r.max_depth, 2, 64)?;
    bounded("max_argument_bytes", r.max_argument_bytes, 2, 64 << 20)?;
    bounded(
        "max_list_response_bytes",
        r.max_list_response_bytes,
        64,
        64 << 20,
    )?;
    if r.realm.contains(['"', '\\']) {
        return Err(ConfigError::invalid(
            field_path(at, "realm"),
            "must not contain `\"` or `\\`",
        ));
    }
    if let Some(url) = &r.resource_metadata {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(['"', '\\', ' '])
        {
            return Err(ConfigError::invalid(
                field_path(at, "resource_metadata"),
                "must be an http(s) URL without quotes or spaces",
            ));
        }
    }
    let methods = match &r.methods {
        None => None,
        Some(map) => Some(compile_table(map, &field_path(at, "methods"), access_only)?),
    };
    let tools = compile_table(&r.tools, &field_path(at, "tools"), |rule, at| {
        compile_tool(rule, r.max_argument_bytes, at)
    })?;
    let prompts = compile_table(&r.prompts, &field_path(at, "prompts"), access_only)?;
    let mut resources = Vec::new();
    for (i, rr) in r.resources.iter().enumerate() {
        let rat = field_path(at, &format!("resources[{i}]"));
        let matcher = match (&rr.exact, &rr.prefix, &rr.template) {
            (Some(e), None, None) => UriMatch::Exact(e.clone()),
            (None, Some(p), None) => UriMatch::Prefix(p.clone()),
            (None, None, Some(t)) => UriMatch::Template(
                UriTemplate::compile(t)
                    .map_err(|e| ConfigError::invalid(field_path(&rat, "template"), e))?,
            ),
            _ => {
                return Err(ConfigError::invalid(
                    rat,
                    "exactly one of `exact`, `prefix`, `template`",
                ))
            }
        };
        resources.push(ResourceRule {
            matcher,
            access: access_only(&rr.access, &field_path(&rat, "access"))?,
        });
    }
    Ok(Route {
        matcher: RequestMatcher::compile(&r.matcher, &field_path(at, "match"))?,
        allowed_origins: r
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        protocol_versions: r.protocol_versions.clone(),
        require_session: r.require_session,
        max_message_bytes: r.max_message_bytes,
        max_depth: r.max_depth,
        max_argument_bytes: r.max_argument_bytes,
        max_list_response_bytes: r.max_list_response_bytes,
        methods,
        tools,
        resources,
        prompts,
        realm: r.realm.clone(),
        resource_metadata: r.resource_metadata.clone(),
    })
}

fn compile_table<T>(
    map: &BTreeMap<String, RawRule>,
    at: &str,
    compile: impl Fn(&RawRule, &str) -> Result<T, ConfigError>,
) -> Result<NameTable<T>, ConfigError> {
    let mut table = NameTable::default();
    for (name, rule) in map {
        let rat = field_path(at, name);
        if name.is_empty() {
            return Err(ConfigError::invalid(rat, "a name must not be empty"));
        }
        table.insert(name, compile(rule, &rat)?);
    }
    Ok(table)
}

/// A rule's access part; the tool-only fields are refused outside tools.
fn access_only(rule: &RawRule, at: &str) -> Result<Access, ConfigError> {
    if let RawRule::Detailed(d) = rule {
        if d.max_argument_bytes.is_some()
            || !d.arguments.is_empty()
            || d.only_listed_arguments
            || !d.log_arguments.is_empty()
        {
            return Err(ConfigError::invalid(
                at,
                "`max_argument_bytes`, `arguments`, `only_listed_arguments` and `log_arguments` are for tools",
            ));
        }
    }
    compile_access(rule, at)
}

fn compile_access(rule: &RawRule, at: &str) -> Result<Access, ConfigError> {
    let d = match rule {
        RawRule::Word(w) if w == "allow" => return Ok(Access::Allow),
        RawRule::Word(w) if w == "deny" => return Ok(Access::Deny),
        RawRule::Word(w) => {
            return Err(ConfigError::invalid(
                at,
                format!("`{w}`: expected \"allow\", \"deny\" or a rule object"),
            ))
        }
        RawRule::Detailed(d) => d,
    };
    let requires = d.authenticated || !d.scopes.is_empty() || !d.any_scopes.is_empty();
    let requires = requires || !d.claims.is_empty();
    match d.access.as_deref() {
        None | Some("allow") => {}
        Some("deny") if !requires => return Ok(Access::Deny),
        Some("deny") => {
            return Err(ConfigError::invalid(
                at,
                "a `deny` rule takes no `authenticated`, `scopes`, `any_scopes` or `claims`",
            ))
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                field_path(at, "access"),
                format!("`{other}`: expected `allow` or `deny`"),
            ))
        }
    }
    if !requires {
        return Ok(Access::Allow);
    }
    for (i, s) in d.scopes.iter().chain(&d.any_scopes).enumerate() {
        if s.is_empty() || s.contains([' ', '"', '\\']) {
            return Err(ConfigError::invalid(
                field_path(at, "scopes"),
                format!("scope {i} is not a scope token"),
            ));
        }
    }
    let mut claims = Vec::new();
    for (i, c) in d.claims.iter().enumerate() {
        let cat = field_path(at, &format!("claims[{i}]"));
        let field = IdentityClaim::parse(&c.claim).ok_or_else(|| {
            ConfigError::invalid(
                field_path(&cat, "claim"),
                format!(
                    "`{}` is not a claim of the verified identity (one of {})",
                    c.claim,
                    IdentityClaim::names(|_| true)
                ),
            )
        })?;
        let values = match (&c.equals, &c.one_of) {
            (Some(v), None) => vec![v.clone()],
            (None, Some(list)) if !list.is_empty() => list.clone(),
            _ => {
                return Err(ConfigError::invalid(
                    cat,
                    "exactly one of `equals`, `one_of` (not empty)",
                ))
            }
        };
        claims.push((field, values));
    }
    Ok(Access::Require(Requirement {
        scopes_all: d.scopes.clone(),
        scopes_any: d.any_scopes.clone(),
        claims,
    }))
}

fn compile_tool(rule: &RawRule, default_max: usize, at: &str) -> Result<ToolRule, ConfigError> {
    let access = compile_access(rule, at)?;
    let d = match rule {
        RawRule::Detailed(d) => d.clone(),
        RawRule::Word(_) => RawDetailedRule::default(),
    };
    let max_bytes = d.max_argument_bytes.unwrap_or(default_max);
    if !(2..=64 << 20).contains(&max_bytes) {
        return Err(ConfigError::invalid(
            field_path(at, "max_argument_bytes"),
            "must be between 2 and 67108864",
        ));
    }
    let mut checks = Vec::new();
    for (name, a) in &d.arguments {
        let aat = field_path(&field_path(at, "arguments"), name);
        let kind = match a.kind.as_deref() {
            None => None,
            Some(t) => Some(ArgType::parse(t).ok_or_else(|| {
                ConfigError::invalid(
                    field_path(&aat, "type"),
                    format!("`{t}`: expected one of {}", ArgType::NAMES.join(", ")),
                )
            })?),
        };
        let pattern = match &a.pattern {
            None => None,
            Some(p) => Some(regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                ConfigError::invalid(
                    field_path(&aat, "pattern"),
                    format!("not a valid regular expression: {e}"),
                )
            })?),
        };
        checks.push((
            name.clone(),
            ArgCheck {
                kind,
                max_length: a.max_length,
                one_of: a.one_of.clone(),
                pattern,
                required: a.required,
            },
        ));
    }
    for (i, name) in d.log_arguments.iter().enumerate() {
        if name.is_empty() {
            return Err(ConfigError::invalid(
                field_path(at, &format!("log_arguments[{i}]")),
                "must not be empty",
            ));
        }
    }
    Ok(ToolRule {
        access,
        arguments: ArgumentPolicy {
            max_bytes,
            checks,
            only_listed: d.only_listed_arguments,
            log: d.log_arguments.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes())
    }

    #[test]
    fn defaults() {
        let c = cfg(r#"{"routes":[{"match":{"path":{"exact":"/mcp"}}}]}"#).unwrap();
        let r = &c.routes[0];
        assert_eq!(r.protocol_versions, ["2025-06-18", "2025-11-25"]);
        assert!(!r.allows_batches() && !r.require_session);
        assert!(r.methods.is_none());
        assert!(
            r.tools.lookup("anything").is_none(),
            "a tool no rule names is refused"
        );
        assert_eq!((r.max_depth, r.max_message_bytes), (32, 1 << 20));
        assert_eq!(r.realm, "palisade");
        assert!(!c.needs_route_name);
    }

    #[test]
    fn rules_compile_in_both_forms() {
        let c = cfg(r#"{"routes":[{
            "protocol_versions": ["2025-03-26", "2025-06-18"],
            "methods": {"initialize": "allow", "notifications/*": "allow", "*": {"authenticated": true}},
            "tools": {
                "search": "allow",
                "delete_*": "deny",
                "write_file": {"scopes": ["files:write"], "max_argument_bytes": 100,
                    "arguments": {"path": {"type": "string", "max_length": 64, "pattern": "/srv/[a-z/]+", "required": true}},
                    "only_listed_arguments": true, "log_arguments": ["path"]}
            },
            "resources": [{"prefix": "file:///docs/", "access": "allow"},
                          {"template": "db://{table}/rows", "access": {"any_scopes": ["db:read", "db:admin"]}}],
            "prompts": {"*": {"claims": [{"claim": "amr", "equals": "mfa"}]}}
        }]}"#)
        .unwrap();
        let r = &c.routes[0];
        assert!(r.allows_batches());
        let m = r.methods.as_ref().unwrap();
        assert_eq!(m.lookup("initialize"), Some(&Access::Allow));
        assert_eq!(m.lookup("notifications/initialized"), Some(&Access::Allow));
        assert!(matches!(m.lookup("tools/call"), Some(Access::Require(_))));
        assert_eq!(
            r.tools.lookup("delete_all").map(|t| &t.access),
            Some(&Access::Deny)
        );
        let w = r.tools.lookup("write_file").unwrap();
        assert_eq!(w.arguments.max_bytes, 100);
        assert!(w.arguments.only_listed);
        assert_eq!(
            r.tools.lookup("search").unwrap().arguments.max_bytes,
            64 * 1024
        );
        assert_eq!(c.tool_names, ["search", "write_file"]);
        assert_eq!(r.resources.len(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"routes":[]}"#, "routes"),
            (
                r#"{"routes":[{"protocol_versions":[]}]}"#,
                "routes[0].protocol_versions",
            ),
            (
                r#"{"routes":[{"allowed_origins":["https://a/"]}]}"#,
                "routes[0].allowed_origins[0]",
            ),
            (r#"{"routes":[{"max_depth":100}]}"#, "routes[0].max_depth"),
            (
                r#"{"routes":[{"max_message_bytes":1}]}"#,
                "routes[0].max_message_bytes",
            ),
            (r#"{"routes":[{"realm":"a\"b"}]}"#, "routes[0].realm"),
            (
                r#"{"routes":[{"resource_metadata":"ftp://x"}]}"#,
                "routes[0].resource_metadata",
            ),
            (
                r#"{"routes":[{"tools":{"a":"permit"}}]}"#,
                "routes[0].tools.a",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"acess":"allow"}}}]}"#,
                "routes[0].tools.a.acess",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"access":"deny","scopes":["x"]}}}]}"#,
                "routes[0].tools.a",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"access":"maybe"}}}]}"#,
                "routes[0].tools.a.access",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"scopes":["a b"]}}}]}"#,
                "routes[0].tools.a.scopes",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"claims":[{"claim":"email","equals":"x"}]}}}]}"#,
                "routes[0].tools.a.claims[0].claim",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"claims":[{"claim":"sub"}]}}}]}"#,
                "routes[0].tools.a.claims[0]",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"arguments":{"p":{"type":"text"}}}}}]}"#,
                "routes[0].tools.a.arguments.p.type",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"arguments":{"p":{"pattern":"("}}}}}]}"#,
                "routes[0].tools.a.arguments.p.pattern",
            ),
            (
                r#"{"routes":[{"tools":{"a":{"max_argument_bytes":0}}}]}"#,
                "routes[0].tools.a.max_argument_bytes",
            ),
            (
                r#"{"routes":[{"prompts":{"p":{"arguments":{}, "max_argument_bytes": 5}}}]}"#,
                "routes[0].prompts.p",
            ),
            (
                r#"{"routes":[{"resources":[{"access":"allow"}]}]}"#,
                "routes[0].resources[0]",
            ),
            (
                r#"{"routes":[{"resources":[{"template":"x{","access":"allow"}]}]}"#,
                "routes[0].resources[0].template",
            ),
            (
                r#"{"routes":[{"resources":[{"exact":"x","access":{"max_argument_bytes":3}}]}]}"#,
                "routes[0].resources[0].access",
            ),
            (
                r#"{"routes":[{"match":{"path":{"regex":"("}}}]}"#,
                "routes[0].match.path.regex",
            ),
            (
                r#"{"routes":[{"methods":{"":"allow"}}]}"#,
                "routes[0].methods.",
            ),
            (r#"{"routez":[]}"#, "routez"),
        ];
        for (json, path) in cases {
            let err = cfg(json).unwrap_err();
            assert_eq!(err.path, path, "{json}: {err}");
        }
    }
}
