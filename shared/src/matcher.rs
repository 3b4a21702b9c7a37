//! The request rule matcher every filter uses to pick its per-route policy.
//!
//! A rule's `match` names any of: a host (exact, or `*.example.com` for any
//! subdomain), a path (`prefix`, `exact` or `regex`, against the path without
//! its query), methods, and Envoy's route name. A request matches a rule when
//! every part that the rule names matches; a rule that names nothing matches
//! every request. Regexes use `regex-lite`, which runs in linear time: a rule
//! cannot be turned into a denial of service by a crafted path.
//!
//! ```
//! use palisade_shared::matcher::{RequestMatch, RequestMatcher, RequestView};
//! let rule: RequestMatch = serde_json::from_str(
//!     r#"{"host": "*.example.com", "path": {"prefix": "/admin"}, "methods": ["POST"]}"#,
//! ).unwrap();
//! let matcher = RequestMatcher::compile(&rule, "rules[0].match").unwrap();
//! let request = RequestView {
//!     method: "POST",
//!     host: "api.example.com:443",
//!     path: "/admin/users?page=2",
//!     route_name: "",
//! };
//! assert!(matcher.matches(&request));
//! ```

use serde::Deserialize;

use crate::config::{field_path, ConfigError};

/// The configuration of a request match, as operators write it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// `api.example.com` (exact, case-insensitive, port ignored) or
    /// `*.example.com` (any subdomain, not the apex).
    #[serde(default)]
    pub host: Option<String>,
    /// How the path (without the query) must look.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// Any of these methods (upper case, as sent). Empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Envoy's route name (`xds.route_name`), exactly.
    #[serde(default)]
    pub route_name: Option<String>,
}

/// One way of matching a path.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatch {
    /// The path starts with this string.
    Prefix(String),
    /// The path is exactly this string.
    Exact(String),
    /// The whole path matches this regular expression (anchored at both ends).
    Regex(String),
}

/// The parts of a request that rules can match on, borrowed from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, possibly with a port.
    pub host: &'a str,
    /// `:path`, possibly with a query string (ignored for matching).
    pub path: &'a str,
    /// Envoy's route name, empty when the route has none.
    pub route_name: &'a str,
}

impl RequestView<'_> {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(self.path)
    }

    /// The host in lower case, without a port.
    pub fn host_only(&self) -> String {
        strip_port(self.host).to_ascii_lowercase()
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[derive(Debug, Clone)]
enum HostMatcher {
    Exact(String),
    Suffix(String),
}

#[derive(Debug, Clone)]
enum PathMatcher {
    Prefix(String),
    Exact(String),
    Regex(regex_lite::Regex),
}

/// A compiled [`RequestMatch`].
#[derive(Debug, Clone, Default)]
pub struct RequestMatcher {
    host: Option<HostMatcher>,
    path: Option<PathMatcher>,
    methods: Vec<String>,
    route_name: Option<String>,
}

impl RequestMatcher {
    /// Compiles a match; `at` is its field path, for errors.
    pub fn compile(config: &RequestMatch, at: &str) -> Result<Self, ConfigError> {
        let host = match &config.host {
            None => None,
            Some(h) if h.is_empty() => {
                return Err(ConfigError::invalid(
                    field_path(at, "host"),
                    "must not be empty",
                ))
            }
            Some(h) => Some(match h.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() => {
                    HostMatcher::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
                }
                Some(_) => {
                    return Err(ConfigError::invalid(
                        field_path(at, "host"),
                        "`*.` must be followed by a domain",
                    ))
                }
                None => HostMatcher::Exact(h.to_ascii_lowercase()),
            }),
        };
        let path = match &config.path {
            None => None,
            Some(PathMatch::Prefix(p)) => Some(PathMatcher::Prefix(p.clone())),
            Some(PathMatch::Exact(p)) => Some(PathMatcher::Exact(p.clone())),
            Some(PathMatch::Regex(r)) => {
                let anchored = format!("^(?:{r})$");
                let re = regex_lite::Regex::new(&anchored).map_err(|e| {
                    ConfigError::invalid(
                        field_path(at, "path.regex"),
                        format!("not a valid regular expression: {e}"),
                    )
                })?;
                Some(PathMatcher::Regex(re))
            }
        };
        for (i, m) in config.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                return Err(ConfigError::invalid(
                    field_path(at, &format!("methods[{i}]")),
                    format!("`{m}` is not an HTTP method"),
                ));
            }
        }
        Ok(RequestMatcher {
            host,
            path,
            methods: config
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            route_name: config.route_name.clone(),
        })
    }

    /// A matcher that matches every request.
    pub fn any() -> Self {
        RequestMatcher::default()
    }

    /// Whether the request matches every part this matcher names.
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        if let Some(host) = &self.host {
            let actual = request.host_only();
            let ok = match host {
                HostMatcher::Exact(h) => actual == *h,
                HostMatcher::Suffix(s) => actual.len() > s.len() && actual.ends_with(s.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if let Some(path) = &self.path {
            let actual = request.path_only();
            let ok = match path {
                PathMatcher::Prefix(p) => actual.starts_with(p.as_str()),
                PathMatcher::Exact(p) => actual == p,
                PathMatcher::Regex(re) => re.is_match(actual),
            };
            if !ok {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == request.method) {
            return false;
        }
        if let Some(route) = &self.route_name {
            if route != request.route_name {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> RequestMatcher {
        let m: RequestMatch = serde_json::from_str(json).unwrap();
        RequestMatcher::compile(&m, "match").unwrap()
    }

    fn view<'a>(method: &'a str, host: &'a str, path: &'a str, route: &'a str) -> RequestView<'a> {
        RequestView {
            method,
            host,
            path,
            route_name: route,
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, RequestView, bool)] = &[
            ("{}", view("GET", "a", "/", ""), true),
            (
                r#"{"host":"API.example.com"}"#,
                view("GET", "api.example.com:8443", "/", ""),
                true,
            ),
            (
                r#"{"host":"api.example.com"}"#,
                view("GET", "www.example.com", "/", ""),
                false,
            ),
            (
                r#"{"host":"*.example.com"}"#,
                view("GET", "a.b.example.com", "/", ""),
                true,
            ),
            (
                r#"{"host":"*.example.com"}"#,
                view("GET", "example.com", "/", ""),
                false,
            ),
            (
                r#"{"host":"*.example.com"}"#,
                view("GET", "badexample.com", "/", ""),
                false,
            ),
            (r#"{"host":"::1"}"#, view("GET", "[::1]:80", "/", ""), true),
            (
                r#"{"path":{"prefix":"/api"}}"#,
                view("GET", "h", "/api/v1?x=/y", ""),
                true,
            ),
            (
                r#"{"path":{"prefix":"/api"}}"#,
                view("GET", "h", "/ap?/api", ""),
                false,
            ),
            (
                r#"{"path":{"exact":"/login"}}"#,
                view("GET", "h", "/login?next=/", ""),
                true,
            ),
            (
                r#"{"path":{"exact":"/login"}}"#,
                view("GET", "h", "/login/", ""),
                false,
            ),
            (
                r#"{"path":{"regex":"/users/[0-9]+"}}"#,
                view("GET", "h", "/users/42", ""),
                true,
            ),
            (
                r#"{"path":{"regex":"/users/[0-9]+"}}"#,
                view("GET", "h", "/users/42/x", ""),
                false,
            ),
            (
                r#"{"methods":["post","PUT"]}"#,
                view("POST", "h", "/", ""),
                true,
            ),
            (r#"{"methods":["POST"]}"#, view("GET", "h", "/", ""), false),
            (
                r#"{"route_name":"admin"}"#,
                view("GET", "h", "/", "admin"),
                true,
            ),
            (
                r#"{"route_name":"admin"}"#,
                view("GET", "h", "/", ""),
                false,
            ),
            (
                r#"{"host":"h","path":{"prefix":"/a"},"methods":["GET"],"route_name":"r"}"#,
                view("GET", "h", "/a", "r"),
                true,
            ),
        ];
        for (json, request, expected) in cases {
            assert_eq!(
                compile(json).matches(request),
                *expected,
                "{json} vs {request:?}"
            );
        }
    }

    #[test]
    fn bad_matches_are_config_errors() {
        let bad = |json: &str| {
            let m: RequestMatch = serde_json::from_str(json).unwrap();
            RequestMatcher::compile(&m, "rules[3].match").unwrap_err()
        };
        assert_eq!(
            bad(r#"{"path":{"regex":"("}}"#).path,
            "rules[3].match.path.regex"
        );
        assert_eq!(bad(r#"{"host":""}"#).path, "rules[3].match.host");
        assert_eq!(bad(r#"{"host":"*."}"#).path, "rules[3].match.host");
        assert_eq!(
            bad(r#"{"methods":["GET","P OST"]}"#).path,
            "rules[3].match.methods[1]"
        );
        assert!(serde_json::from_str::<RequestMatch>(r#"{"paht":{}}"#).is_err());
        assert!(serde_json::from_str::<RequestMatch>(r#"{"path":{"suffix":"x"}}"#).is_err());
    }
}
