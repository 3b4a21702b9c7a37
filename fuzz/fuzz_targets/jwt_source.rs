//! Where tokens come from (a header with a prefix, a query parameter, a
//! cookie), and their removal before the request goes upstream: once
//! removed, the same source finds no token any more.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{header_pairs, Header};
use palisade_jwt::source::{cookie_without, find, path_without_param, TokenPlaces, TokenSource};

#[derive(Debug, Arbitrary)]
struct Input {
    path: String,
    headers: Vec<Header>,
    header_name: String,
    prefix: String,
    param: String,
    cookie: String,
}

fuzz_target!(|input: Input| {
    let headers = header_pairs(&input.headers);
    let sources = [
        TokenSource::bearer(),
        TokenSource::Header {
            name: input.header_name.to_ascii_lowercase(),
            prefix: input.prefix.clone(),
        },
        TokenSource::Query(input.param.clone()),
        TokenSource::Cookie(input.cookie.clone()),
    ];
    let places = TokenPlaces {
        headers: &headers,
        path: &input.path,
    };
    if let Some((token, source)) = find(&sources, &places) {
        assert!(!token.is_empty());
        assert!(sources.contains(source));
    }
    // A query token is gone from the path that goes upstream.
    let query = [TokenSource::Query(input.param.clone())];
    let stripped = path_without_param(&input.path, &input.param);
    let places = TokenPlaces {
        headers: &headers,
        path: &stripped,
    };
    assert!(
        find(&query, &places).is_none(),
        "query token left in {stripped:?}"
    );
    // A cookie token is gone from every Cookie header that goes upstream.
    let cookie = [TokenSource::Cookie(input.cookie.clone())];
    let kept: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| match n.as_str() {
            "cookie" => cookie_without(v, &input.cookie).map(|v| (n.clone(), v)),
            _ => Some((n.clone(), v.clone())),
        })
        .collect();
    let places = TokenPlaces {
        headers: &kept,
        path: &input.path,
    };
    assert!(
        find(&cookie, &places).is_none(),
        "cookie token left in {kept:?}"
    );
});
