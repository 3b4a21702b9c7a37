//! The WAF's walkers over a body: form, JSON (and the paths of what it
//! visits), multipart with a boundary, XML, raw text, and query strings.
//! The input is `boundary\nbody`; every walker reads every body.
//!
//! A field whose transformations the parser worked out must list every
//! transformation that could change its value (else rules skip them), and
//! every location is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::json;
use palisade_waf::request::{
    body_fields, form_fields, BodyKind, Field, FormSource, MAX_LOCATION_BYTES,
};
use palisade_waf::transform::applicable;

fn check(field: &Field<'_>) {
    if let Some(found) = field.transforms {
        let needed = applicable(field.value.as_bytes());
        assert_eq!(
            found.or(needed),
            found,
            "transformations of {:?} missed by the parser",
            field.value
        );
    }
    assert!(field.location().len() <= MAX_LOCATION_BYTES + 3);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (boundary, body) = text.split_once('\n').unwrap_or(("", text));
    let content_types = [
        "application/x-www-form-urlencoded".to_string(),
        "application/json".to_string(),
        format!("multipart/form-data; boundary=\"{boundary}\""),
        format!("multipart/mixed; charset=x; boundary={boundary}"),
        "text/xml".to_string(),
        boundary.to_string(),
    ];
    let mut json_offsets = Vec::new();
    for content_type in &content_types {
        let kind = BodyKind::from_content_type(Some(content_type));
        body_fields(&kind, body, &mut |field| {
            check(field);
            if let palisade_waf::request::Location::JsonAt(at) = field.location {
                json_offsets.push(at);
            }
        });
    }
    // Every offset the walk reported is found again, with a bounded path.
    if !json_offsets.is_empty() {
        for path in json::paths(body, &json_offsets) {
            let path = path.expect("a visited offset has a path");
            assert!(path.len() <= MAX_LOCATION_BYTES + 3);
        }
    }
    let mut out = Vec::new();
    form_fields(body, FormSource::Query, &mut out);
    out.iter().for_each(check);
});
