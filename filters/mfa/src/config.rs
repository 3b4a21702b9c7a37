//! The plugin configuration: serde types as operators write them, validated
//! and compiled once into a [`Config`].

use std::collections::BTreeMap;

use palisade_shared::config::{field_path, is_name, parse_json, ConfigError};
use palisade_shared::matcher::{RequestMatch, RequestMatcher, RequestView};
use serde::Deserialize;

/// The configuration document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    acr_ranking: Vec<String>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default = "default_true")]
    problem_body: bool,
    #[serde(default)]
    unauthenticated_challenge: Option<String>,
    #[serde(default)]
    upstream_headers: RawUpstreamHeaders,
    #[serde(default)]
    browser_redirect: Option<RawRedirect>,
    policies: BTreeMap<String, RawPolicy>,
    rules: Vec<RawRule>,
}

fn default_skew() -> u64 {
    60
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamHeaders {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    acr: Option<String>,
    #[serde(default)]
    amr: Option<String>,
    #[serde(default)]
    age: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    authorization_endpoint: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default = "default_response_type")]
    response_type: String,
}

fn default_scope() -> String {
    "openid".into()
}

fn default_response_type() -> String {
    "code".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    acr_values: Vec<String>,
    #[serde(default)]
    amr: Option<RawAmr>,
    #[serde(default)]
    max_age: Option<u64>,
    #[serde(default)]
    client_certificate_amr: Option<String>,
    #[serde(default)]
    browser_redirect: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmr {
    #[serde(default)]
    all_of: Option<Vec<String>>,
    #[serde(default)]
    any_of: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    matches: RequestMatch,
    #[serde(default)]
    policy: Option<String>,
}

/// Which authentication methods a policy needs. Both parts, when present,
/// must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmrRequirement {
    /// Every one of these methods.
    pub all_of: Vec<String>,
    /// At least one of these methods (empty: no such requirement).
    pub any_of: Vec<String>,
}

/// A step-up policy: what a route asks of the authentication behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpPolicy {
    /// The policy's name (metrics, filter state, logs).
    pub name: String,
    /// Accepted `acr` values, in order of preference; empty: any `acr`.
    pub acr_values: Vec<String>,
    /// The lowest rank in [`Config::acr_ranking`] that satisfies the policy:
    /// the weakest accepted value's, when any accepted value is ranked.
    pub min_rank: Option<usize>,
    /// The authentication methods needed.
    pub amr: Option<AmrRequirement>,
    /// The longest time since `auth_time`, in seconds.
    pub max_age: Option<u64>,
    /// A verified client certificate on the connection counts as this
    /// authentication method (`hwk`, `sc`).
    pub client_certificate_amr: Option<String>,
    /// Whether browsers (GET/HEAD, `Accept: text/html`) are redirected to the
    /// authorization endpoint instead of challenged.
    pub browser_redirect: bool,
}

/// The browser redirect's OpenID Connect client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRedirect {
    /// The provider's authorization endpoint.
    pub authorization_endpoint: String,
    /// `client_id`.
    pub client_id: String,
    /// `redirect_uri`.
    pub redirect_uri: String,
    /// `scope`.
    pub scope: String,
    /// `response_type`.
    pub response_type: String,
}

/// The request headers the filter sets toward the upstream on a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    /// The rank of the token's `acr` in the ranking (1 = weakest).
    pub level: Option<String>,
    /// The token's `acr`.
    pub acr: Option<String>,
    /// The methods, comma separated (the client certificate's included).
    pub amr: Option<String>,
    /// Seconds since `auth_time`.
    pub age: Option<String>,
}

impl UpstreamHeaders {
    /// Every configured header name, to remove client-sent copies.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [&self.level, &self.acr, &self.amr, &self.age]
            .into_iter()
            .filter_map(|h| h.as_deref())
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// When it applies.
    pub matcher: RequestMatcher,
    /// Index into [`Config::policies`]; `None`: no step-up on these routes.
    pub policy: Option<usize>,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `realm` in every challenge, when set.
    pub realm: Option<String>,
    /// `acr` values from weakest to strongest.
    pub acr_ranking: Vec<String>,
    /// How far in the future `auth_time` may be (clocks differ), in seconds.
    pub clock_skew_seconds: u64,
    /// Whether refusals carry an RFC 9457 problem body.
    pub problem_body: bool,
    /// The `WWW-Authenticate` value when there is no identity.
    pub unauthenticated_challenge: String,
    /// Headers toward the upstream.
    pub upstream_headers: UpstreamHeaders,
    /// The browser redirect's client, when configured.
    pub browser_redirect: Option<BrowserRedirect>,
    /// The policies, in name order.
    pub policies: Vec<StepUpPolicy>,
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// Whether a rule matches on Envoy's route name (so the adapter reads it).
    pub needs_route_name: bool,
}

/// Characters allowed inside a quoted challenge parameter (RFC 6750 section 3:
/// `%x20-21 / %x23-5B / %x5D-7E`), so a configured value can never break out
/// of its quotes.
fn quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b'\\' != b)
}

/// An `acr` or `amr` value: one space-free token of quotable characters.
fn check_token(value: &str, at: &str) -> Result<(), ConfigError> {
    if value.is_empty() || !quotable(value) || value.contains(' ') {
        return Err(ConfigError::invalid(
            at,
            format!("`{value}` must be non-empty printable ASCII without spaces, `\"` or `\\`"),
        ));
    }
    Ok(())
}

fn check_header_name(name: &str, at: &str) -> Result<(), ConfigError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::invalid(
            at,
            format!("`{name}` is not a valid header name"),
        ));
    }
    if name.starts_with(':')
        || matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "authorization" | "cookie"
        )
    {
        return Err(ConfigError::invalid(
            at,
            format!("`{name}` may not be set by this filter"),
        ));
    }
    Ok(())
}

fn check_header_value(value: &str, at: &str) -> Result<(), ConfigError> {
    if value.is_empty() || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ConfigError::invalid(
            at,
            "must be non-empty printable ASCII",
        ));
    }
    Ok(())
}

fn check_list(values: &[String], at: &str) -> Result<(), ConfigError> {
    for (i, v) in values.iter().enumerate() {
        check_token(v, &field_path(at, &format!("[{i}]")))?;
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(ConfigError::invalid(
                field_path(at, &format!("[{i}]")),
                format!("`{v}` is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_url(url: &str, at: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && url.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !ok {
        return Err(ConfigError::invalid(
            at,
            format!("`{url}` is not an absolute http(s) URL"),
        ));
    }
    Ok(())
}

impl Config {
    /// Parses, validates and compiles a JSON plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        Self::compile(raw)
    }

    fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
        if let Some(realm) = &raw.realm {
            if !quotable(realm) {
                return Err(ConfigError::invalid(
                    "realm",
                    "must be printable ASCII without `\"` or `\\`",
                ));
            }
        }
        check_list(&raw.acr_ranking, "acr_ranking")?;
        if raw.clock_skew_seconds > 3600 {
            return Err(ConfigError::invalid(
                "clock_skew_seconds",
                "must be at most 3600",
            ));
        }
        let unauthenticated_challenge = match raw.unauthenticated_challenge {
            Some(c) => {
                check_header_value(&c, "unauthenticated_challenge")?;
                c
            }
            None => match &raw.realm {
                Some(realm) => format!("Bearer realm=\"{realm}\""),
                None => "Bearer".to_string(),
            },
        };
        let h = &raw.upstream_headers;
        let mut names: Vec<String> = Vec::new();
        for (field, name) in [
            ("level", &h.level),
            ("acr", &h.acr),
            ("amr", &h.amr),
            ("age", &h.age),
        ] {
            if let Some(name) = name {
                let at = format!("upstream_headers.{field}");
                check_header_name(name, &at)?;
                let lower = name.to_ascii_lowercase();
                if names.contains(&lower) {
                    return Err(ConfigError::invalid(at, format!("`{name}` is used twice")));
                }
                names.push(lower);
            }
        }
        let lower = |h: &Option<String>| h.as_ref().map(|n| n.to_ascii_lowercase());
        let upstream_headers = UpstreamHeaders {
            level: lower(&h.level),
            acr: lower(&h.acr),
            amr: lower(&h.amr),
            age: lower(&h.age),
        };
        if upstream_headers.level.is_some() && raw.acr_ranking.is_empty() {
            return Err(ConfigError::invalid(
                "upstream_headers.level",
                "needs `acr_ranking`: the level is the acr's rank in it",
            ));
        }
        let browser_redirect = match raw.browser_redirect {
            None => None,
            Some(r) => {
                check_url(
                    &r.authorization_endpoint,
                    "browser_redirect.authorization_endpoint",
                )?;
                check_url(&r.redirect_uri, "browser_redirect.redirect_uri")?;
                for (field, value) in [
                    ("client_id", &r.client_id),
                    ("scope", &r.scope),
                    ("response_type", &r.response_type),
                ] {
                    check_header_value(value, &format!("browser_redirect.{field}"))?;
                }
                Some(BrowserRedirect {
                    authorization_endpoint: r.authorization_endpoint,
                    client_id: r.client_id,
                    redirect_uri: r.redirect_uri,
                    scope: r.scope,
                    response_type: r.response_type,
                })
            }
        };

        let mut policies = Vec::with_capacity(raw.policies.len());
        for (name, p) in raw.policies {
            let at = format!("policies.{name}");
            if !is_name(&name) {
                return Err(ConfigError::invalid(
                    at,
                    "a policy name is letters, digits, `_` and `-` (it is part of metric names)",
                ));
            }
            check_list(&p.acr_values, &field_path(&at, "acr_values"))?;
            // A value outside the ranking is accepted only as itself.
            let min_rank = p
                .acr_values
                .iter()
                .filter_map(|v| raw.acr_ranking.iter().position(|r| r == v))
                .min();
            let amr = match p.amr {
                None => None,
                Some(a) => {
                    let at_amr = field_path(&at, "amr");
                    if a.all_of.is_none() && a.any_of.is_none() {
                        return Err(ConfigError::invalid(
                            at_amr,
                            "needs `all_of`, `any_of` or both",
                        ));
                    }
                    for (field, list) in [("all_of", &a.all_of), ("any_of", &a.any_of)] {
                        if let Some(list) = list {
                            let at_list = field_path(&at_amr, field);
                            if list.is_empty() {
                                return Err(ConfigError::invalid(at_list, "must not be empty"));
                            }
                            check_list(list, &at_list)?;
                        }
                    }
                    Some(AmrRequirement {
                        all_of: a.all_of.unwrap_or_default(),
                        any_of: a.any_of.unwrap_or_default(),
                    })
                }
            };
            if let Some(m) = &p.client_certificate_amr {
                check_token(m, &field_path(&at, "client_certificate_amr"))?;
                if amr.is_none() {
                    return Err(ConfigError::invalid(
                        field_path(&at, "client_certificate_amr"),
                        "counts toward an `amr` requirement, and this policy has none",
                    ));
                }
            }
            if p.max_age == Some(0) {
                // Zero is legal in OIDC (always re-authenticate) but never
                // satisfiable by a token that already exists.
                return Err(ConfigError::invalid(
                    field_path(&at, "max_age"),
                    "must be at least 1 second",
                ));
            }
            if p.browser_redirect && browser_redirect.is_none() {
                return Err(ConfigError::invalid(
                    field_path(&at, "browser_redirect"),
                    "needs the top-level `browser_redirect` client",
                ));
            }
            policies.push(StepUpPolicy {
                name,
                acr_values: p.acr_values,
                min_rank,
                amr,
                max_age: p.max_age,
                client_certificate_amr: p.client_certificate_amr,
                browser_redirect: p.browser_redirect,
            });
        }

        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let matcher = RequestMatcher::compile(&r.matches, &field_path(&at, "match"))?;
            let policy = match &r.policy {
                None => None,
                Some(name) => Some(policies.iter().position(|p| p.name == *name).ok_or_else(
                    || {
                        ConfigError::invalid(
                            field_path(&at, "policy"),
                            format!("no policy named `{name}`"),
                        )
                    },
                )?),
            };
            rules.push(Rule { matcher, policy });
        }

        Ok(Config {
            realm: raw.realm,
            acr_ranking: raw.acr_ranking,
            clock_skew_seconds: raw.clock_skew_seconds,
            problem_body: raw.problem_body,
            needs_route_name: raw.rules.iter().any(|r| r.matches.route_name.is_some()),
            unauthenticated_challenge,
            upstream_headers,
            browser_redirect,
            policies,
            rules,
        })
    }

    /// The policy for a request: the first matching rule's, `None` when no
    /// rule matches or the matching rule names no policy.
    pub fn policy_for(&self, request: &RequestView<'_>) -> Option<&StepUpPolicy> {
        self.policies.get(self.policy_index_for(request)?)
    }

    /// [`Config::policy_for`] as an index into [`Config::policies`].
    pub fn policy_index_for(&self, request: &RequestView<'_>) -> Option<usize> {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(request))?
            .policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_full_config_compiles() {
        let c = Config::from_json(
            br#"{
            "realm": "api",
            "acr_ranking": ["pwd", "mfa", "phr"],
            "upstream_headers": {"level": "X-Auth-Level", "acr": "x-auth-acr", "amr": "x-auth-amr", "age": "x-auth-age"},
            "browser_redirect": {"authorization_endpoint": "https://idp/authorize", "client_id": "web",
                                 "redirect_uri": "https://app/cb"},
            "policies": {
                "admin": {"acr_values": ["phr", "mfa"], "max_age": 300, "browser_redirect": true},
                "pay": {"amr": {"all_of": ["pwd"], "any_of": ["otp", "hwk"]}, "client_certificate_amr": "hwk"}
            },
            "rules": [
                {"match": {"path": {"prefix": "/admin/health"}}},
                {"match": {"path": {"prefix": "/admin"}}, "policy": "admin"},
                {"match": {"methods": ["POST"]}, "policy": "pay"}
            ]
        }"#,
        )
        .unwrap();
        assert_eq!(c.unauthenticated_challenge, r#"Bearer realm="api""#);
        assert_eq!(c.clock_skew_seconds, 60);
        assert!(c.problem_body);
        assert_eq!(c.upstream_headers.level.as_deref(), Some("x-auth-level"));
        assert_eq!(c.upstream_headers.names().count(), 4);
        let admin = &c.policies[0];
        assert_eq!((admin.name.as_str(), admin.min_rank), ("admin", Some(1)));
        assert_eq!(c.browser_redirect.as_ref().unwrap().scope, "openid");
        let view = |method, path| RequestView {
            method,
            host: "h",
            path,
            route_name: "",
        };
        assert!(c.policy_for(&view("GET", "/admin/health")).is_none());
        assert_eq!(
            c.policy_for(&view("GET", "/admin/x")).unwrap().name,
            "admin"
        );
        assert_eq!(c.policy_for(&view("POST", "/orders")).unwrap().name, "pay");
        assert!(c.policy_for(&view("GET", "/orders")).is_none());
    }

    #[test]
    fn the_readme_example_compiles() {
        let readme = include_str!("../README.md");
        let start = readme.find("```json\n").unwrap() + "```json\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let c = Config::from_json(&readme.as_bytes()[start..end]).unwrap();
        assert_eq!(c.policies.len(), 4);
        assert_eq!(c.rules.len(), 5);
        assert!(c.needs_route_name);
    }

    #[test]
    fn defaults() {
        let c = Config::from_json(br#"{"policies": {}, "rules": []}"#).unwrap();
        assert_eq!(c.unauthenticated_challenge, "Bearer");
        assert!(c.realm.is_none() && c.browser_redirect.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"policies": {}}"#, "."),
            (r#"{"policies": {}, "rules": [], "polices": 1}"#, "polices"),
            (
                r#"{"policies": {"a": {"acr_values": ["x y"]}}, "rules": []}"#,
                "policies.a.acr_values[0]",
            ),
            (
                r#"{"policies": {"a": {"acr_values": ["x\""]}}, "rules": []}"#,
                "policies.a.acr_values[0]",
            ),
            (
                r#"{"policies": {"a": {"acr_values": ["x", "x"]}}, "rules": []}"#,
                "policies.a.acr_values[1]",
            ),
            (
                r#"{"policies": {"p": {"amr": {}}}, "rules": []}"#,
                "policies.p.amr",
            ),
            (
                r#"{"policies": {"p": {"amr": {"any_of": []}}}, "rules": []}"#,
                "policies.p.amr.any_of",
            ),
            (
                r#"{"policies": {"p": {"client_certificate_amr": "hwk"}}, "rules": []}"#,
                "policies.p.client_certificate_amr",
            ),
            (
                r#"{"policies": {"p": {"max_age": 0}}, "rules": []}"#,
                "policies.p.max_age",
            ),
            (
                r#"{"policies": {"p": {"max_age": -1}}, "rules": []}"#,
                "policies.p.max_age",
            ),
            (
                r#"{"policies": {"p": {"browser_redirect": true}}, "rules": []}"#,
                "policies.p.browser_redirect",
            ),
            (r#"{"policies": {"a.b": {}}, "rules": []}"#, "policies.a.b"),
            (
                r#"{"policies": {}, "rules": [{"match": {}, "policy": "nope"}]}"#,
                "rules[0].policy",
            ),
            (
                r#"{"policies": {}, "rules": [{"match": {"path": {"regex": "("}}}]}"#,
                "rules[0].match.path.regex",
            ),
            (
                r#"{"upstream_headers": {"acr": "bad name"}, "policies": {}, "rules": []}"#,
                "upstream_headers.acr",
            ),
            (
                r#"{"upstream_headers": {"acr": "authorization"}, "policies": {}, "rules": []}"#,
                "upstream_headers.acr",
            ),
            (
                r#"{"upstream_headers": {"acr": "x-a", "amr": "X-A"}, "policies": {}, "rules": []}"#,
                "upstream_headers.amr",
            ),
            (
                r#"{"upstream_headers": {"level": "x-l"}, "policies": {}, "rules": []}"#,
                "upstream_headers.level",
            ),
            (r#"{"realm": "a\"b", "policies": {}, "rules": []}"#, "realm"),
            (
                r#"{"clock_skew_seconds": 7200, "policies": {}, "rules": []}"#,
                "clock_skew_seconds",
            ),
            (
                r#"{"unauthenticated_challenge": "Bearer\n", "policies": {}, "rules": []}"#,
                "unauthenticated_challenge",
            ),
            (
                r#"{"browser_redirect": {"authorization_endpoint": "idp/authorize", "client_id": "c", "redirect_uri": "https://a/cb"}, "policies": {}, "rules": []}"#,
                "browser_redirect.authorization_endpoint",
            ),
            (
                r#"{"browser_redirect": {"authorization_endpoint": "https://idp/a", "client_id": "c"}, "policies": {}, "rules": []}"#,
                "browser_redirect",
            ),
        ];
        for (json, path) in cases {
            let e = err(json);
            assert_eq!(e.path, *path, "{json}: {e}");
        }
    }
}
