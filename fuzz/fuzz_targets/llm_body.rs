//! The LLM policy's reading of a request body, and its rewrite to an
//! output-token cap, against serde_json as the provider's parser: a body
//! the stage reads names the model, stream flag and limits the provider
//! would read, and a capped body is still the same JSON with every limit at
//! most the cap. The first byte picks the API, the next two the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_llm::api::{cap, read, recognize, Capped};
use serde_json::{Map, Value};

const PATHS: [&str; 5] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
];

fuzz_target!(|data: &[u8]| {
    let [which, hi, lo, body @ ..] = data else {
        return;
    };
    let Some(api) = recognize(PATHS[usize::from(*which) % PATHS.len()]) else {
        return;
    };
    let limit = 1 + u64::from(u16::from_be_bytes([*hi, *lo]));
    let Ok(call) = read(&api, body) else {
        return;
    };
    // The stage read it, so it is one JSON object. RFC 8259 lets a parser
    // limit the range of numbers: serde_json's Value refuses one past f64's,
    // which the grammar (and the stage, reading no number outside its
    // limits) accept.
    let provider: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(provider) => provider,
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => panic!("a body the stage read is a JSON object: {e}"),
    };
    assert_eq!(
        provider.get("model").and_then(Value::as_str),
        Some(call.model.as_str())
    );
    assert_eq!(
        provider
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        call.stream
    );
    let limits: Vec<Option<u64>> = api
        .limit_fields
        .iter()
        .filter_map(|f| provider.get(*f))
        .map(Value::as_u64)
        .collect();
    let mut read_limits: Vec<Option<u64>> = call.limits.iter().map(|l| l.value).collect();
    let mut expected = limits.clone();
    read_limits.sort();
    expected.sort();
    assert_eq!(read_limits, expected, "the limits the provider reads");

    match cap(&api, body, &call, limit) {
        Capped::Within => {
            if api.cap_field.is_some() {
                assert!(!limits.is_empty());
                assert!(limits.iter().all(|v| v.is_some_and(|v| v <= limit)));
            }
        }
        Capped::Rewritten(out) => {
            let capped: Map<String, Value> =
                serde_json::from_slice(&out).expect("a capped body is JSON");
            let again = read(&api, &out).expect("the stage reads a capped body");
            assert_eq!(again.model, call.model);
            assert!(!again.limits.is_empty());
            assert!(again
                .limits
                .iter()
                .all(|l| l.value.is_some_and(|v| v <= limit)));
            for (key, value) in &provider {
                if !api.limit_fields.contains(&key.as_str()) {
                    assert_eq!(capped.get(key), Some(value), "`{key}` changed");
                }
            }
        }
    }
});
