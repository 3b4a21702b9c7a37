//! Every WAF transformation, on any text. The one-pass profile that lets the
//! WAF skip a transformation must be sound: a transformation it rules out
//! changes nothing a case-insensitive match could see, or an attacker
//! could hide a payload behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::transform::{
    applicable, apply, apply_one, form_decode, json_string_run, may_change, url_decode_once,
    Transform, TransformSet,
};

const ALL: [Transform; 9] = [
    Transform::UrlDecode,
    Transform::HtmlEntityDecode,
    Transform::UnicodeUnescape,
    Transform::Lowercase,
    Transform::CompressWhitespace,
    Transform::RemoveComments,
    Transform::NormalizePath,
    Transform::RemoveNulls,
    Transform::CmdLine,
];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let set = applicable(value.as_bytes());
    let changes = may_change(value);
    for t in ALL {
        let out = apply_one(value, t);
        if !out.eq_ignore_ascii_case(value) {
            assert!(
                set.has(t),
                "{t:?} changed {value:?} to {out:?}, but the profile ruled it out"
            );
            assert!(changes, "{t:?} changed {value:?}, but may_change said no");
        }
    }
    // Chains, in the orders the built-in rules use and reversed.
    let _ = apply(value, &ALL);
    let mut reversed = ALL;
    reversed.reverse();
    let _ = apply(value, &reversed);
    let _ = url_decode_once(value);
    let _ = form_decode(value);
    // A JSON string's run profile is the profile of the run's bytes.
    for start in [0, 1, value.len() / 2] {
        let (end, run) = json_string_run(value.as_bytes(), start);
        if let Some(bytes) = value.as_bytes().get(start..end) {
            let whole = applicable(bytes);
            assert_eq!(run.or(whole), run, "run {start}..{end} of {value:?}");
            assert!(TransformSet::of(&ALL).or(run) == TransformSet::of(&ALL));
        }
    }
});
