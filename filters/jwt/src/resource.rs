//! The JWT filter as an OAuth 2.1 resource server for MCP clients (the MCP
//! authorization specification):
//!
//! - **RFC 9728 Protected Resource Metadata**: a rule that names a
//!   `protected_resource` serves its metadata document at
//!   `/.well-known/oauth-protected-resource` followed by the resource's
//!   path (and, for the first such rule, at the bare well-known path), so a
//!   client that got a 401 finds the authorization server;
//! - **`resource_metadata`** in every challenge of that rule points there;
//! - **audience binding** (RFC 8707): a token must name the resource's
//!   canonical URI in `aud`, so a token minted for another resource server
//!   is refused here even when both trust the same issuer.

use palisade_shared::config::{field_path, ConfigError};
use palisade_shared::engine::Reply;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The well-known path prefix of RFC 9728.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A rule's protected resource, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtectedResource {
    /// The resource identifier: the canonical `https://` URI of the server.
    pub resource: String,
    /// The authorization servers' issuer URLs; default: the issuers of the
    /// rule's providers.
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    /// Scopes to advertise; default: the scopes the rule requires.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// How tokens may be sent; default `["header"]`.
    #[serde(default)]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// A human-readable name.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// A documentation URL.
    #[serde(default)]
    pub resource_documentation: Option<String>,
    /// Whether tokens must name the resource in `aud` (default true).
    #[serde(default = "yes")]
    pub bind_audience: bool,
}

fn yes() -> bool {
    true
}

/// A protected resource, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The canonical resource URI (scheme and host lower case, no trailing `/`).
    pub canonical: String,
    /// The path the metadata is served at.
    pub metadata_path: String,
    /// The metadata URL named in challenges.
    pub metadata_url: String,
    /// The metadata document.
    pub document: Vec<u8>,
    /// Whether `aud` must name the resource.
    pub bind_audience: bool,
    /// The scopes named in a challenge for a missing token (space separated).
    pub challenge_scope: Option<String>,
}

/// The canonical form of a resource URI: scheme and host lower case, no
/// fragment, no trailing `/` (RFC 8707 and the MCP specification);
/// `None` when it is not an absolute http(s) URI.
pub fn canonical(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or(rest);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    Some(format!(
        "{scheme}://{}{path}",
        authority.to_ascii_lowercase()
    ))
}

/// Whether a token's audiences name the resource.
pub fn audience_matches(aud: &[String], canonical_uri: &str) -> bool {
    aud.iter()
        .any(|a| self::canonical(a).is_some_and(|c| c == canonical_uri))
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl ProtectedResource {
    /// Compiles a rule's protected resource; `issuers` are the rule's
    /// providers' issuers, `scopes` the scopes it requires.
    pub fn compile(
        raw: &RawProtectedResource,
        issuers: &[String],
        scopes: &[String],
        at: &str,
    ) -> Result<Self, ConfigError> {
        let canonical = canonical(&raw.resource)
            .filter(|c| !raw.resource.contains(['"', '\\', ' ']) && !c.contains('?'))
            .ok_or_else(|| {
                ConfigError::invalid(
                    field_path(at, "resource"),
                    "must be an absolute http(s) URI without query, fragment or userinfo",
                )
            })?;
        let servers = raw
            .authorization_servers
            .clone()
            .unwrap_or_else(|| issuers.to_vec());
        if servers.is_empty() || servers.iter().any(|s| canonical_server(s).is_none()) {
            return Err(ConfigError::invalid(
                field_path(at, "authorization_servers"),
                "needs at least one http(s) issuer URL (the rule requires no provider to take it from)",
            ));
        }
        let scopes_supported = raw
            .scopes_supported
            .clone()
            .unwrap_or_else(|| scopes.to_vec());
        if let Some(bad) = scopes_supported.iter().find(|s| !valid_token(s)) {
            return Err(ConfigError::invalid(
                field_path(at, "scopes_supported"),
                format!("`{bad}` is not a scope"),
            ));
        }
        let methods = raw
            .bearer_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["header".into()]);
        if let Some(bad) = methods
            .iter()
            .find(|m| !matches!(m.as_str(), "header" | "body" | "query"))
        {
            return Err(ConfigError::invalid(
                field_path(at, "bearer_methods_supported"),
                format!("`{bad}`: expected header, body or query (RFC 6750)"),
            ));
        }
        let (origin, path) = split_origin(&canonical);
        let metadata_path = format!("{WELL_KNOWN}{path}");
        let mut doc = Map::new();
        doc.insert("resource".into(), json!(canonical));
        doc.insert("authorization_servers".into(), json!(servers));
        if !scopes_supported.is_empty() {
            doc.insert("scopes_supported".into(), json!(scopes_supported));
        }
        doc.insert("bearer_methods_supported".into(), json!(methods));
        if let Some(name) = &raw.resource_name {
            doc.insert("resource_name".into(), json!(name));
        }
        if let Some(url) = &raw.resource_documentation {
            doc.insert("resource_documentation".into(), json!(url));
        }
        Ok(ProtectedResource {
            metadata_url: format!("{origin}{metadata_path}"),
            metadata_path,
            document: serde_json::to_vec(&Value::Object(doc)).unwrap_or_default(),
            bind_audience: raw.bind_audience,
            challenge_scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            canonical,
        })
    }

    /// The metadata document as a reply.
    pub fn reply(&self) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "public, max-age=3600".into()),
                // Public metadata: browser-based clients read it cross-origin.
                ("access-control-allow-origin".into(), "*".into()),
            ],
            body: self.document.clone(),
        }
    }
}

fn canonical_server(s: &str) -> Option<String> {
    canonical(s).filter(|_| valid_token(s))
}

/// `https://host[:port]` and the path of a canonical URI.
fn split_origin(canonical: &str) -> (&str, &str) {
    let after_scheme = canonical.find("://").map_or(0, |i| i + 3);
    match canonical[after_scheme..].find('/') {
        Some(i) => canonical.split_at(after_scheme + i),
        None => (canonical, ""),
    }
}

/// The resource whose metadata `path` (without query) asks for: the
/// path-suffixed form, or the bare well-known path for the first resource.
pub fn for_metadata_path<'a>(
    resources: impl Iterator<Item = &'a ProtectedResource>,
    path: &str,
) -> Option<&'a ProtectedResource> {
    let path = path.split('?').next().unwrap_or(path);
    if !path.starts_with(WELL_KNOWN) {
        return None;
    }
    let mut first = None;
    for r in resources {
        if r.metadata_path == path {
            return Some(r);
        }
        first = first.or(Some(r));
    }
    (path == WELL_KNOWN || path == "/.well-known/oauth-protected-resource/")
        .then_some(first)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(resource: &str) -> RawProtectedResource {
        RawProtectedResource {
            resource: resource.into(),
            authorization_servers: None,
            scopes_supported: None,
            bearer_methods_supported: None,
            resource_name: Some("Tools".into()),
            resource_documentation: None,
            bind_audience: true,
        }
    }

    #[test]
    fn canonical_uris() {
        let cases = [
            (
                "https://MCP.Example.com/mcp",
                Some("https://mcp.example.com/mcp"),
            ),
            (
                "HTTPS://mcp.example.com/mcp/",
                Some("https://mcp.example.com/mcp"),
            ),
            ("https://mcp.example.com", Some("https://mcp.example.com")),
            ("https://mcp.example.com/", Some("https://mcp.example.com")),
            (
                "http://127.0.0.1:8080/mcp#x",
                Some("http://127.0.0.1:8080/mcp"),
            ),
            (
                "https://mcp.example.com/Path",
                Some("https://mcp.example.com/Path"),
            ),
            ("ftp://x/y", None),
            ("mcp.example.com/mcp", None),
            ("https:///mcp", None),
            ("https://u:p@x/mcp", None),
        ];
        for (uri, want) in cases {
            assert_eq!(canonical(uri).as_deref(), want, "{uri}");
        }
        let aud = vec![
            "api".to_string(),
            "https://MCP.example.com/mcp/".to_string(),
        ];
        assert!(audience_matches(&aud, "https://mcp.example.com/mcp"));
        assert!(!audience_matches(&aud, "https://mcp.example.com/other"));
        assert!(!audience_matches(
            &["https://mcp.example.com".into()],
            "https://mcp.example.com/mcp"
        ));
    }

    #[test]
    fn metadata_documents_and_urls() {
        let r = ProtectedResource::compile(
            &raw("https://mcp.example.com/mcp"),
            &["https://idp.example.com".into()],
            &["mcp:read".into()],
            "rules[0].protected_resource",
        )
        .unwrap();
        assert_eq!(r.metadata_path, "/.well-known/oauth-protected-resource/mcp");
        assert_eq!(
            r.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let doc: Value = serde_json::from_slice(&r.document).unwrap();
        assert_eq!(
            doc,
            json!({"resource": "https://mcp.example.com/mcp",
                   "authorization_servers": ["https://idp.example.com"],
                   "scopes_supported": ["mcp:read"],
                   "bearer_methods_supported": ["header"],
                   "resource_name": "Tools"})
        );
        assert_eq!(r.challenge_scope.as_deref(), Some("mcp:read"));
        let root = ProtectedResource::compile(
            &raw("https://api.example.com"),
            &["https://idp".into()],
            &[],
            "r",
        )
        .unwrap();
        assert_eq!(root.metadata_path, WELL_KNOWN);
        let all = [r.clone(), root.clone()];
        let find = |p: &str| for_metadata_path(all.iter(), p).map(|r| r.canonical.as_str());
        assert_eq!(
            find("/.well-known/oauth-protected-resource/mcp"),
            Some("https://mcp.example.com/mcp")
        );
        assert_eq!(
            find("/.well-known/oauth-protected-resource/mcp?x=1"),
            Some("https://mcp.example.com/mcp")
        );
        assert_eq!(
            find("/.well-known/oauth-protected-resource"),
            Some("https://api.example.com"),
            "the resource at the origin's root"
        );
        let only = [r.clone()];
        assert_eq!(
            for_metadata_path(only.iter(), WELL_KNOWN).map(|r| r.canonical.as_str()),
            Some("https://mcp.example.com/mcp"),
            "else the first resource"
        );
        assert_eq!(find("/.well-known/oauth-protected-resource/other"), None);
        assert_eq!(find("/mcp"), None);
        let reply = r.reply();
        assert_eq!(reply.status, 200);
        assert!(reply
            .headers
            .contains(&("content-type".into(), "application/json".into())));
    }

    #[test]
    fn errors_name_the_field() {
        let at = "rules[0].protected_resource";
        let err = |r: RawProtectedResource, issuers: &[String]| {
            ProtectedResource::compile(&r, issuers, &[], at)
                .unwrap_err()
                .path
        };
        assert_eq!(
            err(raw("mcp.example.com"), &["https://i".into()]),
            format!("{at}.resource")
        );
        assert_eq!(
            err(raw("https://x/mcp?a=1"), &["https://i".into()]),
            format!("{at}.resource")
        );
        assert_eq!(
            err(raw("https://x/mcp"), &[]),
            format!("{at}.authorization_servers")
        );
        assert_eq!(
            err(raw("https://x/mcp"), &["not a url".into()]),
            format!("{at}.authorization_servers")
        );
        let mut bad = raw("https://x/mcp");
        bad.bearer_methods_supported = Some(vec!["cookie".into()]);
        assert_eq!(
            err(bad, &["https://i".into()]),
            format!("{at}.bearer_methods_supported")
        );
        let mut bad = raw("https://x/mcp");
        bad.scopes_supported = Some(vec!["a b".into()]);
        assert_eq!(
            err(bad, &["https://i".into()]),
            format!("{at}.scopes_supported")
        );
    }
}
