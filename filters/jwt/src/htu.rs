//! The `htu` of a DPoP proof against the request's URL (RFC 9449 section
//! 4.3, check 9): both without query and fragment, compared after RFC 3986
//! syntax-based normalization (case of the scheme and host, percent-encoding
//! case and unreserved characters, dot segments) and scheme-based
//! normalization (default port, empty path).

/// The normalized form of an `http(s)` URL without its query and fragment;
/// `None` when it is not one (another scheme, userinfo, a bad escape).
pub fn normalize(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.trim_start_matches('0');
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if !port.is_empty() && port != default_port {
        out.push(':');
        out.push_str(port);
    }
    let path = normalize_escapes(path)?;
    out.push_str(&remove_dot_segments(if path.is_empty() {
        "/"
    } else {
        &path
    }));
    Some(out)
}

/// Upper-case hex in escapes, and unreserved characters unescaped.
fn normalize_escapes(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            let value = u8::from_str_radix(hex, 16).ok()?;
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            if b <= b' ' || b >= 0x7f {
                return None;
            }
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    output.pop();
                }
                // A trailing `.` or `..` leaves a trailing slash.
                if i == last {
                    output.push("");
                }
            }
            s => output.push(s),
        }
    }
    format!("/{}", output.join("/"))
}

/// The URL a request was sent to, as its `htu` should name it: `:scheme`,
/// `:authority` and `:path` without the query.
pub fn of_request(scheme: &str, authority: &str, path: &str) -> Option<String> {
    normalize(&format!("{scheme}://{authority}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_rfc_3986_says() {
        let cases = [
            (
                "https://api.example.com/orders",
                Some("https://api.example.com/orders"),
            ),
            (
                "HTTPS://API.Example.COM/orders",
                Some("https://api.example.com/orders"),
            ),
            (
                "https://api.example.com:443/orders",
                Some("https://api.example.com/orders"),
            ),
            (
                "http://api.example.com:80/x",
                Some("http://api.example.com/x"),
            ),
            (
                "https://api.example.com:8443/x",
                Some("https://api.example.com:8443/x"),
            ),
            (
                "https://api.example.com:08443/x",
                Some("https://api.example.com:8443/x"),
            ),
            ("https://api.example.com", Some("https://api.example.com/")),
            (
                "https://api.example.com?x=1",
                Some("https://api.example.com/"),
            ),
            (
                "https://api.example.com/a?x=1#f",
                Some("https://api.example.com/a"),
            ),
            (
                "https://api.example.com/a#f",
                Some("https://api.example.com/a"),
            ),
            ("https://h/%7euser/%2f%41", Some("https://h/~user/%2FA")),
            ("https://h/a/./b/../c", Some("https://h/a/c")),
            ("https://h/a/b/..", Some("https://h/a/")),
            ("https://h/../../a", Some("https://h/a")),
            ("https://[::1]:443/a", Some("https://[::1]/a")),
            ("https://[::1]/a", Some("https://[::1]/a")),
            ("https://h:/a", Some("https://h/a")),
            ("https://user@h/a", None),
            ("ftp://h/a", None),
            ("https:/h/a", None),
            ("https://h/%zz", None),
            ("https://h/a b", None),
            ("https://h:x/a", None),
            ("https:///a", None),
        ];
        for (url, want) in cases {
            assert_eq!(normalize(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn the_request_url_matches_equivalent_spellings() {
        let request = of_request("https", "API.example.com:443", "/orders/%7e1?page=2").unwrap();
        for htu in [
            "https://api.example.com/orders/~1",
            "https://api.example.com:443/orders/%7E1",
            "HTTPS://api.EXAMPLE.com/orders/./~1#top",
        ] {
            assert_eq!(normalize(htu).unwrap(), request, "{htu}");
        }
        for other in [
            "http://api.example.com/orders/~1",
            "https://api.example.com:8443/orders/~1",
            "https://api.example.com/orders/~2",
            "https://evil.example.com/orders/~1",
        ] {
            assert_ne!(normalize(other).unwrap(), request, "{other}");
        }
    }
}
