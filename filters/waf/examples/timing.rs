//! Times the core on the benchmark requests: `cargo run --release --example
//! timing --no-default-features -p palisade-waf`. `WAF_TIMING_N` sets the
//! iterations per row (default 20000) and `WAF_TIMING_ROW` keeps only the
//! rows whose name contains it: with a small N under `valgrind
//! --tool=callgrind` this gives instruction counts, which a busy machine
//! does not disturb.

use std::time::Instant;

use palisade_waf::config::Config;
use palisade_waf::inspect::Waf;
use palisade_waf::request::RequestHead;

fn main() {
    let started = Instant::now();
    let waf = match Config::from_json(br#"{"paranoia_level": 1}"#) {
        Ok(c) => Waf::new(c),
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    println!(
        "compile: {:?} ({} rules, {} automata)",
        started.elapsed(),
        waf.config.rules.rules().len(),
        waf.config.rules.automaton_count()
    );
    let scenario: serde_json::Value =
        serde_json::from_str(include_str!("../../../bench/scenarios/waf.json")).unwrap_or_default();
    let n: u32 = std::env::var("WAF_TIMING_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let only = std::env::var("WAF_TIMING_ROW").unwrap_or_default();
    for row in scenario["rows"].as_array().into_iter().flatten() {
        if !row["name"].as_str().unwrap_or("").contains(&only) {
            continue;
        }
        let req = &row["request"];
        let headers: Vec<(String, String)> = req["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        let method = req["method"].as_str().unwrap_or("GET");
        let path = req["path"].as_str().unwrap_or("/");
        let body = req["body"].as_str().map(str::as_bytes);
        let head = RequestHead {
            method,
            path,
            authority: "127.0.0.1:10000",
            route_name: "",
            headers: &headers,
        };
        let verdict = waf.inspect(&head, body);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(waf.inspect(&head, body));
        }
        println!(
            "{}: {:?} per request, verdict {} {:?}",
            row["name"],
            t.elapsed() / n,
            verdict.decision.action,
            verdict.decision.matches
        );
    }
}
