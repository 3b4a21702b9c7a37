//! The rate-limit service's answer (`RateLimitResponse`, protobuf from the
//! network): decoded, turned into a global rule's report, combined into the
//! request's decision and written as the RateLimit fields or the refusal.
//! A service that answers garbage, huge numbers or a deep nesting may make
//! the rule fail by its mode, never the proxy panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_ratelimit::config::Config;
use palisade_ratelimit::global::{combine, report, Answer, Failure};
use palisade_ratelimit::limiter::Decision;
use palisade_ratelimit::response::{allowed_headers, denial, refusal_reply};
use palisade_ratelimit::rls::decode_response;

const CONFIG: &str = r#"{"rate_limit_headers": "always",
    "global_service": {"cluster": "ratelimit"},
    "rules": [{"name": "fleet", "backend": "global", "cost": 7}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::from_json(CONFIG.as_bytes()) else {
        return;
    };
    // As the stage reads it: an answer that does not decode is a failure.
    let answer =
        decode_response(data).map_or(Answer::Failed(Failure::BadAnswer), Answer::of_response);
    let decision = combine(Decision::default(), vec![report(&config, 0, &answer)]);
    let _ = allowed_headers(&config, &decision);
    let _ = refusal_reply(&config, &decision, None);
    let _ = denial(&config, &decision);
});
