//! CSRF origin checks: configured origins, and the Origin / Referer /
//! Host a browser (or anyone) sends. A request from the request's own
//! origin is never refused as cross-site.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_waf::csrf::{AllowedOrigin, CsrfPolicy};
use palisade_waf::request::RequestHead;

#[derive(Debug, Arbitrary)]
struct Input {
    allowed: Vec<String>,
    method: String,
    authority: String,
    origin: Option<String>,
    referer: Option<String>,
    require_origin: bool,
}

fuzz_target!(|input: Input| {
    let allowed: Vec<AllowedOrigin> = input
        .allowed
        .iter()
        .filter_map(|o| AllowedOrigin::parse(o))
        .collect();
    let policy = CsrfPolicy {
        methods: vec!["POST".into(), input.method.to_ascii_uppercase()],
        allowed,
        require_origin: input.require_origin,
    };
    let mut headers = Vec::new();
    if let Some(origin) = &input.origin {
        headers.push(("origin".to_string(), origin.clone()));
    }
    if let Some(referer) = &input.referer {
        headers.push(("referer".to_string(), referer.clone()));
    }
    for method in ["POST", "GET", input.method.as_str()] {
        let head = RequestHead {
            method,
            path: "/",
            authority: &input.authority,
            route_name: "",
            headers: &headers,
        };
        let _ = policy.check(&head);
    }
    // Same origin: the browser's Origin is the scheme and the Host.
    let authority = input.authority.trim();
    // A host (an authority that is only a port names none).
    if !authority.is_empty()
        && !authority.starts_with(':')
        && authority.is_ascii()
        && !authority.contains(|c: char| {
            "/?#@,;".contains(c) || c.is_ascii_whitespace() || c.is_ascii_control()
        })
    {
        for scheme in ["http", "https"] {
            let headers = vec![("origin".to_string(), format!("{scheme}://{authority}"))];
            let head = RequestHead {
                method: "POST",
                path: "/",
                authority,
                route_name: "",
                headers: &headers,
            };
            assert_eq!(
                policy.check(&head),
                None,
                "same-origin POST from {scheme}://{authority}"
            );
        }
    }
});
