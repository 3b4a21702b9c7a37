//! Looking up a header in a list of `(name, value)` pairs, as the adapters
//! hold a header map after reading it whole (one host call instead of one per
//! header; see `docs/performance.md`).

/// The first value of header `name` (compared ASCII case-insensitively, as
/// HTTP header names are), `None` when absent.
pub fn first_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_ignores_case_and_takes_the_first() {
        let headers = vec![
            (":path".to_string(), "/a".to_string()),
            ("x-tenant".to_string(), "acme".to_string()),
            ("x-tenant".to_string(), "evil".to_string()),
        ];
        assert_eq!(first_value(&headers, "X-Tenant"), Some("acme"));
        assert_eq!(first_value(&headers, ":path"), Some("/a"));
        assert_eq!(first_value(&headers, "cookie"), None);
    }
}
