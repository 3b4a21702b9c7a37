//! Resource URIs: normalized before any rule sees them, and matched
//! exactly, by prefix or by URI template.
//!
//! A prefix rule `file:///docs/` must not let `file:///docs/../etc/passwd`
//! or `file:///%64ocs/x` through, nor a deny rule be stepped around by
//! encoding: so percent-encoded unreserved characters are decoded and the
//! scheme lower-cased (RFC 3986 6.2.2), and a URI whose path still holds a
//! dot segment, an encoded `/` or `\`, a backslash or a control character
//! is refused before matching: a server could read it as another path.

use crate::access::Access;
use crate::template::UriTemplate;

/// How a rule matches a URI.
#[derive(Debug, Clone)]
pub enum UriMatch {
    /// The normalized URI equals this.
    Exact(String),
    /// The normalized URI starts with this.
    Prefix(String),
    /// The normalized URI is an expansion of this template.
    Template(UriTemplate),
}

/// A resource rule.
#[derive(Debug, Clone)]
pub struct ResourceRule {
    /// Which URIs.
    pub matcher: UriMatch,
    /// Who may read them.
    pub access: Access,
}

impl UriMatch {
    /// Whether the (normalized) URI matches.
    pub fn matches(&self, uri: &str) -> bool {
        match self {
            UriMatch::Exact(e) => uri == e,
            UriMatch::Prefix(p) => uri.starts_with(p.as_str()),
            UriMatch::Template(t) => t.matches(uri),
        }
    }
}

/// The first rule matching a normalized URI.
pub fn rule_for<'a>(rules: &'a [ResourceRule], uri: &str) -> Option<&'a ResourceRule> {
    rules.iter().find(|r| r.matcher.matches(uri))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The URI in normal form, or `None` when it may name something else
/// than it seems to (see the module documentation).
pub fn normalize(uri: &str) -> Option<String> {
    let bytes = uri.as_bytes();
    if bytes.is_empty() || bytes.len() > 8192 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b < 0x20 || b == 0x7f || b == b'\\' {
            return None;
        }
        if b == b'%' {
            let h = bytes.get(i + 1).copied().and_then(hex);
            let l = bytes.get(i + 2).copied().and_then(hex);
            let (Some(h), Some(l)) = (h, l) else {
                return None;
            };
            let decoded = h << 4 | l;
            if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                out.push(decoded);
            } else if decoded == b'/' || decoded == b'\\' || decoded < 0x20 || decoded == 0x7f {
                return None;
            } else {
                out.push(b'%');
                out.push(h_digit(h));
                out.push(h_digit(l));
            }
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    let mut text = String::from_utf8(out).ok()?;
    if let Some(colon) = text.find(':') {
        let scheme = &text[..colon];
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            let lower = scheme.to_ascii_lowercase();
            text.replace_range(..colon, &lower);
        }
    }
    let path = text.split(['?', '#']).next().unwrap_or("");
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return None;
    }
    Some(text)
}

fn h_digit(v: u8) -> u8 {
    b"0123456789ABCDEF"
        .get(usize::from(v))
        .copied()
        .unwrap_or(b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let cases = [
            ("file:///docs/a.md", Some("file:///docs/a.md")),
            ("FILE:///docs/a.md", Some("file:///docs/a.md")),
            ("file:///%64ocs/a%2Emd", Some("file:///docs/a.md")),
            ("db://x/a%20b", Some("db://x/a%20b")),
            ("db://x/a%3fb", Some("db://x/a%3Fb")),
            ("file:///docs/../etc/passwd", None),
            ("file:///docs/%2e%2E/etc/passwd", None),
            ("file:///docs/./a", None),
            ("file:///docs/..", None),
            ("file:///docs/a%2Fb", None),
            ("file:///docs/a%5cb", None),
            ("file:///docs\\..\\x", None),
            ("file:///docs/a\nb", None),
            ("file:///docs/a%0ab", None),
            ("file:///docs/a%zz", None),
            ("file:///docs/a%2", None),
            ("", None),
            ("file:///docs/..a/b", Some("file:///docs/..a/b")),
            ("search://x?q=../..", Some("search://x?q=../..")),
        ];
        for (uri, want) in cases {
            assert_eq!(normalize(uri).as_deref(), want, "{uri:?}");
        }
    }

    #[test]
    fn rules_match_in_order() {
        let rules = vec![
            ResourceRule {
                matcher: UriMatch::Exact("config://app".into()),
                access: Access::Deny,
            },
            ResourceRule {
                matcher: UriMatch::Template(UriTemplate::compile("db://{table}/rows").unwrap()),
                access: Access::Deny,
            },
            ResourceRule {
                matcher: UriMatch::Prefix("file:///docs/".into()),
                access: Access::Allow,
            },
        ];
        let which = |uri: &str| rule_for(&rules, uri).map(|r| r.access.clone());
        assert_eq!(which("config://app"), Some(Access::Deny));
        assert_eq!(which("config://app2"), None);
        assert_eq!(which("db://users/rows"), Some(Access::Deny));
        assert_eq!(which("file:///docs/x"), Some(Access::Allow));
        assert_eq!(which("file:///etc/passwd"), None);
    }
}
