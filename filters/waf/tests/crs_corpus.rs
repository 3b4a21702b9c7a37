//! Replays the CoreRuleSet regression corpus against the WAF core (no
//! Envoy; the end-to-end replay is `tests/tests/waf_corpus.rs`) and reports,
//! per family, the share of attack tests refused and of near-miss tests
//! passed, at paranoia 1 and 2. Fails when an injection family at paranoia 1
//! falls below the target.
//!
//! `WAF_CORPUS_SHOW=942` prints the attacks of family 942 that passed and the
//! near misses it refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use palisade_waf::config::Config;
use palisade_waf::inspect::{Action, Waf};
use palisade_waf::request::RequestHead;
use support::ftw::{self, FtwCase, Kind};

/// Families whose paranoia-1 attack tests must be refused at >= 90%.
const INJECTION_FAMILIES: &[u32] = &[930, 931, 932, 933, 934, 941, 942, 944];

fn refused(waf: &Waf, case: &FtwCase) -> (bool, Vec<u32>) {
    let mut headers: Vec<(String, String)> = case
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let authority = headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "localhost".into());
    headers.retain(|(k, _)| k != "host");
    // go-ftw sends a form content type with `data` unless the test names one;
    // ModSecurity then parsed those bodies as forms.
    if case.body.is_some() && !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    let head = RequestHead {
        method: &case.method,
        path: &case.uri,
        authority: &authority,
        route_name: "",
        headers: &headers,
    };
    let verdict = waf.inspect(&head, case.body.as_deref());
    let ids = verdict.decision.matches.iter().map(|m| m.rule_id).collect();
    (matches!(verdict.action, Action::Refuse { .. }), ids)
}

#[derive(Default)]
struct Tally {
    attacks: usize,
    refused: usize,
    near: usize,
    passed: usize,
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "   -  ".into()
    } else {
        format!("{:5.1}%", 100.0 * n as f64 / d as f64)
    }
}

#[test]
fn crs_regression_corpus() {
    let Some(dir) = ftw::corpus_dir() else {
        println!("skipped: ../shared/corpora/crs-regression is not present");
        return;
    };
    let (cases, skipped) = ftw::load(&dir);
    assert!(
        cases.len() > 1000,
        "corpus looks truncated: {} cases",
        cases.len()
    );
    let map = ftw::paranoia_map();
    let show: Option<u32> = std::env::var("WAF_CORPUS_SHOW")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut failures = Vec::new();
    println!(
        "{} tests loaded, {skipped} skipped (encoded_request or unreadable)",
        cases.len()
    );
    println!("| family | PL | attacks | refused | near misses | passed |");
    println!("|---|---|---|---|---|---|");
    let mut tallies: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    for pl in [1u8, 2] {
        // The CSRF check is about browsers; the corpus replays tool requests.
        let config = format!(r#"{{"paranoia_level": {pl}, "csrf": {{"enabled": false}}}}"#);
        let waf = Waf::new(Config::from_json(config.as_bytes()).unwrap());
        for case in &cases {
            let kind = ftw::classify(case, pl, &map);
            if kind == Kind::Other {
                continue;
            }
            let (was_refused, ids) = refused(&waf, case);
            let t = tallies.entry((pl, case.family())).or_default();
            match kind {
                Kind::Attack => {
                    t.attacks += 1;
                    if was_refused {
                        t.refused += 1;
                    } else if show == Some(case.family()) && pl == 1 {
                        println!(
                            "MISSED {} {} {:?} body={:?} headers={:?}",
                            case.name(),
                            case.method,
                            case.uri,
                            case.body.as_ref().map(|b| String::from_utf8_lossy(b)
                                .chars()
                                .take(200)
                                .collect::<String>()),
                            case.headers
                        );
                    }
                }
                Kind::NearMiss => {
                    t.near += 1;
                    if !was_refused {
                        t.passed += 1;
                    } else if show == Some(case.family()) && pl == 1 {
                        println!(
                            "FALSE+ {} {:?} {:?} body={:?}",
                            case.name(),
                            ids,
                            case.uri,
                            case.body.as_ref().map(|b| String::from_utf8_lossy(b)
                                .chars()
                                .take(200)
                                .collect::<String>())
                        );
                    }
                }
                Kind::Other => {}
            }
        }
    }
    for ((pl, family), t) in &tallies {
        println!(
            "| {family} | {pl} | {} | {} | {} | {} |",
            t.attacks,
            pct(t.refused, t.attacks),
            t.near,
            pct(t.passed, t.near)
        );
        if *pl == 1 && INJECTION_FAMILIES.contains(family) && t.refused * 10 < t.attacks * 9 {
            failures.push(format!(
                "family {family}: {}/{} attacks refused at PL1",
                t.refused, t.attacks
            ));
        }
    }
    assert!(failures.is_empty(), "below the 90% target: {failures:?}");
}
