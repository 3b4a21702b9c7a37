//! URI templates (RFC 6570) as resource matchers: a template matches the
//! URIs it can expand to. Compiled once into an anchored `regex-lite`
//! expression, which runs in linear time.
//!
//! | expression | matches |
//! |---|---|
//! | `{var}` | one or more characters, none of `/ ? #` (one path segment) |
//! | `{+var}`, `{var*}` | one or more characters but `#` (reserved expansion: may span segments) |
//! | `{/var}` | `/` and one segment |
//! | `{?a,b}`, `{&a}` | an optional query (`?` or `&` and what follows, but `#`) |
//! | `{#var}` | an optional fragment |

use regex_lite::Regex;

/// A compiled URI template.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    source: String,
    regex: Regex,
}

fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl UriTemplate {
    /// Compiles a template; an error says what is wrong with it.
    pub fn compile(template: &str) -> Result<Self, String> {
        if template.is_empty() {
            return Err("a template must not be empty".into());
        }
        let mut pattern = String::from("^");
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let literal = &rest[..open];
            if literal.contains('}') {
                return Err("`}` without `{`".into());
            }
            pattern.push_str(&escape(literal));
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or("`{` without `}`")?;
            let expr = &after[..close];
            let (operator, names) = match expr.chars().next() {
                Some(c @ ('+' | '#' | '/' | '?' | '&' | '.' | ';')) => (Some(c), &expr[1..]),
                _ => (None, expr),
            };
            let valid_name = |n: &str| {
                let n = n.strip_suffix('*').unwrap_or(n);
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            };
            if !names.split(',').all(valid_name) {
                return Err(format!("`{{{expr}}}` is not a template expression"));
            }
            let exploded = names.split(',').any(|n| n.ends_with('*'));
            pattern.push_str(match operator {
                None if exploded => "[^#]+",
                None => "[^/?#]+",
                Some('+') => "[^#]+",
                Some('/') if exploded => "(?:/[^?#]+)",
                Some('/') => "/[^/?#]+",
                Some('.') => "\\.[^/?#]+",
                Some(';') => "(?:;[^/?#]*)?",
                Some('?' | '&') => "(?:[?&][^#]*)?",
                _ => "(?:#.*)?",
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("`}` without `{`".into());
        }
        pattern.push_str(&escape(rest));
        pattern.push('$');
        let regex = Regex::new(&pattern).map_err(|e| e.to_string())?;
        Ok(UriTemplate {
            source: template.to_string(),
            regex,
        })
    }

    /// Whether `uri` is one of the template's expansions.
    pub fn matches(&self, uri: &str) -> bool {
        self.regex.is_match(uri)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansions_match_and_others_do_not() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "db://{table}/rows",
                &["db://users/rows", "db://a.b/rows"],
                &[
                    "db:///rows",
                    "db://users/x/rows",
                    "db://users/rows/",
                    "db://users/rows?x",
                ],
            ),
            (
                "file:///docs/{+path}",
                &["file:///docs/a", "file:///docs/a/b/c.md"],
                &["file:///docs/", "file:///etc/passwd", "file:///docsx/a"],
            ),
            (
                "file:///docs/{path*}",
                &["file:///docs/a/b"],
                &["file:///docs/"],
            ),
            (
                "repo://{owner}{/name}",
                &["repo://me/x"],
                &["repo://me", "repo://me/x/y"],
            ),
            (
                "search://items{?q,limit}",
                &["search://items", "search://items?q=1&limit=2"],
                &["search://itemsx"],
            ),
            ("a.b+c://{x}", &["a.b+c://1"], &["aXb+c://1", "a.bbc://1"]),
            (
                "doc://{id}{#section}",
                &["doc://1", "doc://1#top"],
                &["doc://1/2"],
            ),
        ];
        for (template, yes, no) in cases {
            let t = UriTemplate::compile(template).unwrap();
            for uri in *yes {
                assert!(t.matches(uri), "{template} should match {uri}");
            }
            for uri in *no {
                assert!(!t.matches(uri), "{template} should not match {uri}");
            }
        }
    }

    #[test]
    fn malformed_templates_are_refused() {
        for t in ["", "a{", "a}", "a{}", "a{ x}", "a{b}}", "{-x}"] {
            assert!(UriTemplate::compile(t).is_err(), "{t}");
        }
    }
}
