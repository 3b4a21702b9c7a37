//! Redaction: what never reaches a log.
//!
//! - query parameters whose (decoded, case-insensitive) names are configured
//!   keep their name with the value `REDACTED`;
//! - userinfo (`user:password@`) in an authority or URL is dropped;
//! - headers are logged only from an allowlist that cannot name
//!   `Authorization`, `Proxy-Authorization`, `Cookie` or `Set-Cookie`
//!   (enforced when the configuration loads).

use std::collections::BTreeSet;

/// The value that replaces a redacted one.
pub const REDACTED: &str = "REDACTED";

/// Redacts the values of the named parameters in a query string (without `?`).
/// Parameter names are compared after percent-decoding, case-insensitively,
/// so `%61ccess_token` and `ACCESS_TOKEN` are caught too.
pub fn redact_query(query: &str, redacted: &BTreeSet<String>) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            let decoded = percent_decode(name).to_ascii_lowercase();
            if redacted.contains(decoded.trim()) && value.is_some() {
                format!("{name}={REDACTED}")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Splits a request target into path and redacted query. An absolute-form
/// target (`http://user:pw@host/p?q`) loses its userinfo.
pub fn split_target(target: &str, redacted: &BTreeSet<String>) -> (String, Option<String>) {
    let target = strip_url_userinfo(target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q)),
        None => (target.clone(), None),
    };
    // A fragment is never sent by a well-behaved client; drop it rather than
    // log whatever a client put there.
    let query = query.map(|q| redact_query(q.split('#').next().unwrap_or(q), redacted));
    (path, query)
}

/// Drops `user:password@` from an authority (`Host` / `:authority`).
pub fn strip_authority_userinfo(authority: &str) -> &str {
    match authority.rsplit_once('@') {
        Some((_, host)) => host,
        None => authority,
    }
}

/// Drops userinfo from a URL such as a `Referer`: `https://u:p@h/x` becomes
/// `https://h/x`. Also redacts the URL's query with the same rules.
pub fn redact_url(url: &str, redacted: &BTreeSet<String>) -> String {
    let url = strip_url_userinfo(url);
    match url.split_once('?') {
        Some((base, query)) => {
            let query = query.split('#').next().unwrap_or(query);
            format!("{base}?{}", redact_query(query, redacted))
        }
        None => url.split('#').next().unwrap_or(&url).to_string(),
    }
}

fn strip_url_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = url.get(rest_start..).unwrap_or("");
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or("");
    match authority.rfind('@') {
        Some(at) => format!(
            "{}{}{}",
            url.get(..rest_start).unwrap_or(""),
            authority.get(at + 1..).unwrap_or(""),
            rest.get(authority_end..).unwrap_or("")
        ),
        None => url.to_string(),
    }
}

/// Percent-decodes (and turns `+` into a space), leaving invalid escapes as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            Some(b'+') => out.push(b' '),
            Some(&b) => out.push(b),
            None => {}
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_ascii_lowercase()).collect()
    }

    #[test]
    fn query_table() {
        let r = names(&["access_token", "code", "X-Amz-Signature"]);
        let cases = [
            (
                "a=1&access_token=SECRET&b=2",
                "a=1&access_token=REDACTED&b=2",
            ),
            ("ACCESS_TOKEN=SECRET", "ACCESS_TOKEN=REDACTED"),
            ("%61ccess_token=SECRET", "%61ccess_token=REDACTED"),
            ("x-amz-signature=abc", "x-amz-signature=REDACTED"),
            ("code=1&code=2", "code=REDACTED&code=REDACTED"),
            ("access_token", "access_token"),
            ("access_token=", "access_token=REDACTED"),
            ("codex=1", "codex=1"),
            ("", ""),
            ("a=%zz&code=%", "a=%zz&code=REDACTED"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input, &r), want, "{input}");
        }
    }

    #[test]
    fn targets_and_urls() {
        let r = names(&["token"]);
        assert_eq!(
            split_target("/a/b?token=T&x=1", &r),
            ("/a/b".into(), Some("token=REDACTED&x=1".into()))
        );
        assert_eq!(split_target("/a", &r), ("/a".into(), None));
        assert_eq!(
            split_target("http://u:pw@h/p?token=T#frag", &r),
            ("http://h/p".into(), Some("token=REDACTED".into()))
        );
        assert_eq!(
            redact_url("https://alice:pw@example.com/x?token=T#t=1", &r),
            "https://example.com/x?token=REDACTED"
        );
        assert_eq!(
            redact_url("https://example.com/a@b", &r),
            "https://example.com/a@b"
        );
        assert_eq!(
            redact_url("not a url?token=T", &r),
            "not a url?token=REDACTED"
        );
        assert_eq!(
            strip_authority_userinfo("user:pw@api.example.com:8443"),
            "api.example.com:8443"
        );
        assert_eq!(
            strip_authority_userinfo("api.example.com"),
            "api.example.com"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
