//! A whole request through the WAF (head, then body), at paranoia 1 with
//! the defaults and at paranoia 4 with custom rules, exclusions, CSRF and a
//! small body limit. The input is a request as text (`fuzz/src/lib.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::TextRequest;
use palisade_waf::config::Config;
use palisade_waf::inspect::{Waf, MAX_LISTED_MATCHES};
use palisade_waf::request::RequestHead;

const STRICT: &str = r#"{
    "paranoia_level": 4,
    "anomaly_threshold": 3,
    "max_body_bytes": 512,
    "inspect_headers": ["user-agent", "referer", "x-api-key", "content-type"],
    "expose_rule_ids": true,
    "exclusions": [
        {"match": {"path": {"prefix": "/upload"}}, "parameters": ["file"], "headers": ["referer"]},
        {"match": {"methods": ["PUT"]}, "families": ["xss"], "cookies": ["session"]}
    ],
    "custom_rules": [
        {"id": 100001, "targets": ["args", "body", "headers"], "transforms": ["url_decode", "lowercase", "cmd_line"],
         "regex": "(?:evil|x{2,}y)"},
        {"id": 100002, "targets": ["arg_names", "cookie_names", "files"], "phrases": ["passwd", "shadow"],
         "whole_words": true, "severity": "warning"}
    ],
    "csrf": {"allowed_origins": ["https://*.example.com", "http://app.test"], "require_origin": true}
}"#;

thread_local! {
    // Compiled once: a WAF keeps per-worker caches (its lazy DFAs) and is
    // not shared between threads, as in Envoy.
    static WAFS: [Waf; 2] = [
        Waf::new(Config::from_json(b"{}").unwrap()),
        Waf::new(Config::from_json(STRICT.as_bytes()).unwrap()),
    ];
}

fuzz_target!(|data: &[u8]| {
    let request = TextRequest::parse(data);
    let head = RequestHead {
        method: &request.method,
        path: &request.path,
        authority: &request.authority,
        route_name: "",
        headers: &request.headers,
    };
    WAFS.with(|wafs| {
        for waf in wafs {
            let verdict = waf.inspect(&head, Some(&request.body));
            assert!(verdict.decision.matches.len() <= MAX_LISTED_MATCHES);
            // The same request in two steps, as the stage runs it.
            let mut inspection = waf.inspect_head(&head);
            if waf.wants_body(&inspection) {
                waf.inspect_body(&head, &request.body, &mut inspection);
            }
            let _ = waf.verdict(&inspection);
            let _ = waf.inspect(&head, None);
        }
    });
});
