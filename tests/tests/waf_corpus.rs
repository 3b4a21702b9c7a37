//! Replays the CoreRuleSet regression corpus (`../shared/corpora/crs-regression`,
//! go-ftw YAML) through a real Envoy running the WAF at paranoia 1 and 2, and
//! reports per family (930 to 944) the share of attack tests refused and of
//! near-miss tests passed. Fails when an injection family at paranoia 1 is
//! below 90%. Skipped, with a message, when the corpus is absent.
//!
//! The bulk of the evaluation runs natively against the core
//! (`filters/waf/tests/corpora.rs`); this replay checks that what Envoy
//! delivers to the module gives the same verdicts.

#[path = "../../filters/waf/tests/support/ftw.rs"]
mod ftw;

use std::collections::BTreeMap;
use std::sync::Mutex;

use ftw::{FtwCase, Kind};
use palisade_e2e::{send, EchoUpstream, EnvoyConfig, Request};
use serde_json::json;

const INJECTION_FAMILIES: &[u32] = &[930, 931, 932, 933, 934, 941, 942, 944];

#[derive(Default, Clone)]
struct Tally {
    attacks: usize,
    refused_by_waf: usize,
    rejected_by_envoy: usize,
    near: usize,
    passed: usize,
    errors: usize,
}

fn request_of(case: &FtwCase) -> Request {
    let mut r = Request::new(&case.method, &case.uri);
    let mut has_type = false;
    for (k, v) in &case.headers {
        let lower = k.to_ascii_lowercase();
        // The client computes the framing of the body it sends.
        if lower == "content-length" || lower == "transfer-encoding" {
            continue;
        }
        has_type |= lower == "content-type";
        r = r.header(k, v);
    }
    if let Some(body) = &case.body {
        // As go-ftw does for `data` without a content type.
        if !has_type {
            r = r.header("content-type", "application/x-www-form-urlencoded");
        }
        r = r.body(body.clone());
    }
    r
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / d as f64)
    }
}

#[test]
fn crs_regression_corpus_through_envoy() {
    let Some(dir) = ftw::corpus_dir() else {
        println!("skipped: ../shared/corpora/crs-regression is not present");
        return;
    };
    let (cases, skipped) = ftw::load(&dir);
    let map = ftw::paranoia_map();
    let cases: Vec<FtwCase> = cases
        .into_iter()
        .filter(|c| (930..=944).contains(&c.family()))
        .collect();
    println!(
        "{} tests of families 930-944 ({skipped} skipped: encoded_request or unreadable)",
        cases.len()
    );
    let upstream = EchoUpstream::start();
    let mut table: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    for pl in [1u8, 2] {
        let envoy = EnvoyConfig::new()
            .wasm_filter(
                "waf",
                json!({"paranoia_level": pl, "csrf": {"enabled": false}}),
            )
            .upstream(&upstream)
            .concurrency(2)
            .start();
        let work: Vec<(&FtwCase, Kind)> = cases
            .iter()
            .map(|c| (c, ftw::classify(c, pl, &map)))
            .filter(|(_, k)| *k != Kind::Other)
            .collect();
        let results = Mutex::new(BTreeMap::<u32, Tally>::new());
        let chunks: Vec<&[(&FtwCase, Kind)]> = work.chunks(work.len().div_ceil(6).max(1)).collect();
        std::thread::scope(|s| {
            for chunk in chunks {
                let envoy = &envoy;
                let results = &results;
                s.spawn(move || {
                    for (case, kind) in chunk {
                        let outcome = send(envoy.addr(), &request_of(case));
                        let mut all = results.lock().unwrap();
                        let t = all.entry(case.family()).or_default();
                        let Ok(response) = outcome else {
                            t.errors += 1;
                            continue;
                        };
                        let by_waf = response.status == 403
                            && response.header("content-type") == Some("application/problem+json");
                        let by_envoy = !by_waf && response.status != 200;
                        match kind {
                            Kind::Attack => {
                                t.attacks += 1;
                                t.refused_by_waf += usize::from(by_waf);
                                t.rejected_by_envoy += usize::from(by_envoy);
                            }
                            Kind::NearMiss => {
                                t.near += 1;
                                t.passed += usize::from(response.status == 200);
                            }
                            Kind::Other => {}
                        }
                    }
                });
            }
        });
        for (family, t) in results.into_inner().unwrap() {
            table.insert((pl, family), t);
        }
    }
    println!("| family | PL | attacks | refused by the WAF | + rejected by Envoy | near misses | passed | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for ((pl, family), t) in &table {
        println!(
            "| {family} | {pl} | {} | {} | {} | {} | {} | {} |",
            t.attacks,
            pct(t.refused_by_waf, t.attacks),
            pct(t.refused_by_waf + t.rejected_by_envoy, t.attacks),
            t.near,
            pct(t.passed, t.near),
            t.errors
        );
        if *pl == 1 && INJECTION_FAMILIES.contains(family) && t.refused_by_waf * 10 < t.attacks * 9
        {
            failures.push(format!("{family}: {}/{}", t.refused_by_waf, t.attacks));
        }
    }
    assert!(failures.is_empty(), "below 90% at paranoia 1: {failures:?}");
}
