//! Where a provider finds its token: a header with a prefix (by default
//! `Authorization: Bearer`), a query parameter, or a cookie; and how the
//! token is taken out of the request when it is not to be forwarded.

/// One place to look for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header (lower-case name); the value must start with `prefix`
    /// (compared case-insensitively, as auth schemes are) and the token is the rest.
    Header { name: String, prefix: String },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

impl TokenSource {
    /// `Authorization: Bearer <token>`.
    pub fn bearer() -> Self {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    /// `Authorization: DPoP <token>` (RFC 9449 section 7.1).
    pub fn dpop() -> Self {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "DPoP ".into(),
        }
    }

    /// Whether a token found here came with the `DPoP` scheme.
    pub fn is_dpop(&self) -> bool {
        matches!(self, TokenSource::Header { name, prefix }
            if name == "authorization" && prefix.trim().eq_ignore_ascii_case("dpop"))
    }
}

use std::borrow::Cow;

/// The request parts a token can come from.
#[derive(Debug, Clone, Copy)]
pub struct TokenPlaces<'a> {
    /// Request headers, names in lower case as Envoy gives them.
    pub headers: &'a [(String, String)],
    /// `:path` with its query.
    pub path: &'a str,
}

impl<'a> TokenPlaces<'a> {
    fn header<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The first token found in `sources`, in order, with the source it came from.
pub fn find<'a>(
    sources: &'a [TokenSource],
    places: &TokenPlaces<'a>,
) -> Option<(Cow<'a, str>, &'a TokenSource)> {
    for source in sources {
        let token: Option<Cow<'a, str>> = match source {
            TokenSource::Header { name, prefix } => places.header(name).find_map(|v| {
                let v = v.trim();
                let head = v.get(..prefix.len())?;
                head.eq_ignore_ascii_case(prefix)
                    .then(|| Cow::Borrowed(v[prefix.len()..].trim()))
            }),
            TokenSource::Query(param) => query_param(places.path, param).map(Cow::Owned),
            TokenSource::Cookie(name) => places
                .header("cookie")
                .flat_map(|h| h.split(';'))
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k.trim() == name).then(|| Cow::Borrowed(v.trim().trim_matches('"')))
                }),
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            return Some((token, source));
        }
    }
    None
}

fn query_param(path: &str, param: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == param).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b,
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` without the query parameter `param` (every occurrence).
pub fn path_without_param(path: &str, param: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| percent_decode(pair.split_once('=').map_or(*pair, |(k, _)| k)) != param)
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// A `Cookie` header value without the cookie `name`; `None` when nothing is left.
pub fn cookie_without(cookie: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = cookie
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty() && pair.split_once('=').map_or(*pair, |(k, _)| k).trim() != name
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn finds_tokens_in_order() {
        let sources = vec![
            TokenSource::bearer(),
            TokenSource::Header {
                name: "x-token".into(),
                prefix: String::new(),
            },
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("at".into()),
        ];
        let find_in = |h: &[(&str, &str)], path: &str| {
            let hs = headers(h);
            find(&sources, &TokenPlaces { headers: &hs, path })
                .map(|(t, s)| (t.into_owned(), s.clone()))
        };
        assert_eq!(
            find_in(&[("authorization", "bearer abc")], "/").unwrap().0,
            "abc"
        );
        assert_eq!(
            find_in(&[("authorization", "BEARER  abc ")], "/")
                .unwrap()
                .0,
            "abc"
        );
        assert!(find_in(&[("authorization", "Basic abc")], "/").is_none());
        assert!(find_in(&[("authorization", "Bearer ")], "/").is_none());
        assert_eq!(
            find_in(&[("authorization", "Basic x"), ("x-token", "t2")], "/")
                .unwrap()
                .0,
            "t2"
        );
        let (t, s) = find_in(&[], "/p?a=1&access_token=t%2E3").unwrap();
        assert_eq!(
            (t.as_str(), s),
            ("t.3", TokenSource::Query("access_token".into()))
        );
        assert_eq!(
            find_in(&[("cookie", "a=1; at=t4; b=2")], "/").unwrap().0,
            "t4"
        );
        assert!(find_in(&[("cookie", "xat=t4")], "/?access_token=").is_none());
    }

    #[test]
    fn removal() {
        assert_eq!(
            path_without_param("/p?a=1&access_token=x&b=2", "access_token"),
            "/p?a=1&b=2"
        );
        assert_eq!(
            path_without_param("/p?access_token=x", "access_token"),
            "/p"
        );
        assert_eq!(path_without_param("/p", "access_token"), "/p");
        assert_eq!(
            cookie_without("a=1; at=t; b=2", "at").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(cookie_without("at=t", "at"), None);
    }
}
