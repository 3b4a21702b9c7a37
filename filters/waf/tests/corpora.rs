//! Both sides of the WAF's trade-off in one run, at paranoia 1 and 2:
//!
//! - benign: tens of thousands of values of real text found on the machine
//!   (`support/benign.rs`: crate READMEs and doc comments, npm READMEs, man
//!   pages), each sent as a query value, a JSON string, a form field and a
//!   header value; the share refused per source and per rule;
//! - attacks: the CoreRuleSet regression corpus (`../shared/corpora/crs-regression`,
//!   skipped when absent) per CRS family, attack tests refused and near
//!   misses passed; and this project's own payload shapes (`payloads.txt`)
//!   for the attacks CRS does not test the way they arrive.
//!
//! It fails when a rate misses its target (the constants below).
//! Release-mode only: `make test` runs it with `cargo test --release`.
//!
//! Environment (`make waf-report` sets `WAF_REPORT`):
//! - `WAF_REPORT=1`: all the text, unsampled; targets are printed, not
//!   enforced (a tuning run);
//! - `WAF_CONFIG=config.json`: the plugin configuration to test (its
//!   exclusions, disabled rules, custom rules); the paranoia level is set
//!   to 1 and then 2;
//! - `WAF_BENIGN=values.txt`: the user's own values, one per line, as one
//!   more benign source;
//! - `WAF_SHOW=<what>[@2]`: print the values behind a number at paranoia 1
//!   (or 2): a rule id (`22002`, or several: `22002,40005`) or `benign` for
//!   the benign values refused, a CRS family (`942`) for its missed attacks
//!   and refused near misses, `crs:<rule id>` for the CRS attacks a rule
//!   matched, `crs-status` for every CRS attack's outcome, a payload class
//!   (`ldap`) or `payloads` for the payloads on the wrong side;
//! - `WAF_DUMP=file`: write the benign values to a file and stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use palisade_waf::config::Config;
use palisade_waf::inspect::{Action, Waf};
use palisade_waf::request::RequestHead;
use support::benign::{self, Limits, SOURCES};
use support::ftw::{self, FtwCase, Kind};
use support::payloads::{self, Expect, Payload};
use support::text;

/// At most this share of benign requests refused, per context, at
/// paranoia 1 and 2.
const BENIGN_MAX: [(u8, f64); 2] = [(1, 1.0), (2, 3.0)];
/// CRS family -> lowest share of its attack tests refused at paranoia 1
/// (the rates before the precision work: detection must not drop; 943 was
/// 7.1% and must reach 90%).
const CRS_PL1_FLOOR: &[(u32, f64)] = &[
    (930, 96.4),
    (931, 100.0),
    (932, 92.5),
    (933, 98.5),
    (934, 96.6),
    (941, 95.7),
    (942, 92.5),
    (943, 90.0),
    (944, 93.5),
];
/// Every injection family at paranoia 2 refuses at least this share of the
/// CRS tests up to paranoia 2.
const CRS_PL2_FLOOR: f64 = 85.0;
const INJECTION_FAMILIES: &[u32] = &[930, 931, 932, 933, 934, 941, 942, 943, 944];
/// The fewest benign values worth a rate.
const MIN_BENIGN_VALUES: usize = 10_000;
/// Values sampled in `make test`, the same share of every source (all of
/// them in a report): enough for a rate to a tenth of a percent, few enough
/// for seconds (each new value builds states of the gates' lazy DFAs).
const SAMPLED_VALUES: usize = 12_000;

/// Where a benign value is sent.
const CONTEXTS: [&str; 4] = ["query", "json", "form", "header"];

/// A header inspected by every injection family (like `User-Agent`).
const VALUE_HEADER: &str = "x-comment";

/// The WAF at a paranoia level: the test's configuration, or the user's
/// (`WAF_CONFIG`) at that level. CSRF is off (the corpora replay tool
/// requests, and the check is not about content) and the value header is
/// inspected by every family.
fn waf(paranoia: u8, base: Option<&serde_json::Value>) -> Waf {
    let mut config = base.cloned().unwrap_or_else(|| serde_json::json!({}));
    let object = config
        .as_object_mut()
        .expect("WAF_CONFIG must be a JSON object");
    object.insert("paranoia_level".into(), paranoia.into());
    object.insert("csrf".into(), serde_json::json!({"enabled": false}));
    let mut headers: Vec<serde_json::Value> = object
        .get("inspect_headers")
        .and_then(|h| h.as_array().cloned())
        .unwrap_or_else(|| vec!["user-agent".into(), "referer".into()]);
    headers.push(VALUE_HEADER.into());
    object.insert("inspect_headers".into(), headers.into());
    Waf::new(Config::from_json(&serde_json::to_vec(&config).unwrap()).unwrap())
}

/// A request as the core sees it.
struct Request {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    fn new(method: &str, path: String) -> Self {
        Request {
            method: method.into(),
            path,
            authority: "api.example.com".into(),
            headers: vec![
                (
                    "user-agent".into(),
                    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0".into(),
                ),
                ("accept".into(), "application/json, text/plain, */*".into()),
                ("accept-language".into(), "en-US,en;q=0.9".into()),
            ],
            body: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.body = Some(body);
        self
    }

    /// Whether the WAF refuses it, and the rule ids that matched.
    fn send(&self, waf: &Waf) -> (bool, Vec<u32>) {
        let head = RequestHead {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            route_name: "",
            headers: &self.headers,
        };
        let verdict = waf.inspect(&head, self.body.as_deref());
        let ids = verdict.decision.matches.iter().map(|m| m.rule_id).collect();
        (matches!(verdict.action, Action::Refuse { .. }), ids)
    }
}

/// A form field's encoding, as a browser sends it.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A benign value in one of the [`CONTEXTS`].
fn benign_request(context: usize, value: &str) -> Request {
    match context {
        0 => Request::new("GET", format!("/search?q={}", form_encode(value))),
        1 => Request::new("POST", "/api/items".into()).body(
            "application/json",
            serde_json::to_vec(&serde_json::json!({"name": "item", "comment": value})).unwrap(),
        ),
        2 => Request::new("POST", "/api/items".into()).body(
            "application/x-www-form-urlencoded",
            format!("name=item&comment={}", form_encode(value)).into_bytes(),
        ),
        _ => Request::new("GET", "/api/items".into()).header(VALUE_HEADER, value),
    }
}

/// A payload where its line says.
fn payload_request(p: &Payload) -> Request {
    let v = p.value.as_str();
    match p.place.as_str() {
        "query" => benign_request(0, v),
        "json" => benign_request(1, v),
        "form" => benign_request(2, v),
        "header" => benign_request(3, v),
        "query_string" => Request::new("GET", format!("/search?{v}")),
        "path" => Request::new("GET", v.to_string()),
        "json_body" => Request::new("POST", "/api/items".into()).body("application/json", v.into()),
        "form_body" => Request::new("POST", "/api/items".into())
            .body("application/x-www-form-urlencoded", v.into()),
        "cookie" => Request::new("GET", "/api/items".into()).header("cookie", v),
        other => panic!("payloads.txt: unknown place {other:?}"),
    }
}

/// A CRS test as go-ftw sends it.
fn crs_request(case: &FtwCase) -> Request {
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
    Request {
        method: case.method.clone(),
        path: case.uri.clone(),
        authority,
        headers,
        body: case.body.clone(),
    }
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * n as f64 / d as f64)
    }
}

fn share(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Requests and refusals.
#[derive(Default, Clone, Copy)]
struct Count {
    sent: usize,
    refused: usize,
}

impl Count {
    fn add(&mut self, refused: bool) {
        self.sent += 1;
        self.refused += usize::from(refused);
    }
}

/// What `WAF_SHOW` asks for, at one level.
struct Show<'a> {
    what: &'a str,
    here: bool,
}

impl<'a> Show<'a> {
    fn new(show: &'a str, paranoia: u8) -> Self {
        let (what, level) = show.split_once('@').unwrap_or((show, "1"));
        Show {
            what,
            here: !what.is_empty() && level == paranoia.to_string(),
        }
    }

    fn is(&self, what: &str) -> bool {
        self.here && self.what == what
    }

    /// Whether `list` (comma-separated rule ids, after `prefix`) names one of `ids`.
    fn names_rule(&self, prefix: &str, ids: &[u32]) -> bool {
        self.here
            && self.what.strip_prefix(prefix).is_some_and(|list| {
                ids.iter()
                    .any(|id| list.split(',').any(|r| r == id.to_string()))
            })
    }
}

/// What one paranoia level did.
#[derive(Default)]
struct LevelResult {
    /// (source, kind, context) -> count.
    benign: BTreeMap<(usize, text::Kind, usize), Count>,
    /// Rule -> benign requests it matched, and of those refused.
    benign_rules: BTreeMap<u32, Count>,
    /// CRS family -> attacks (refused), near misses (refused).
    crs: BTreeMap<u32, (Count, Count)>,
    /// Rule -> CRS attack tests it matched.
    crs_rules: BTreeMap<u32, usize>,
    /// Payload class -> attacks (refused), near misses (refused).
    payloads: BTreeMap<String, (Count, Count)>,
    /// Lines to print on request (`WAF_SHOW`).
    shown: Vec<String>,
}

struct Inputs<'a> {
    corpus: &'a [benign::Value],
    crs: &'a [FtwCase],
    payloads: &'a [Payload],
    config: Option<&'a serde_json::Value>,
    show: &'a str,
}

fn run_level(paranoia: u8, inputs: &Inputs<'_>) -> LevelResult {
    let waf = waf(paranoia, inputs.config);
    let map = ftw::paranoia_map();
    let show = Show::new(inputs.show, paranoia);
    let mut out = LevelResult::default();
    for value in inputs.corpus {
        for c in 0..CONTEXTS.len() {
            let (refused, ids) = benign_request(c, &value.text).send(&waf);
            out.benign
                .entry((value.source, value.kind, c))
                .or_default()
                .add(refused);
            for id in &ids {
                out.benign_rules.entry(*id).or_default().add(refused);
            }
            if refused && c == 0 && (show.is("benign") || show.names_rule("", &ids)) {
                out.shown.push(format!(
                    "BENIGN REFUSED {ids:?} [{}] {}",
                    SOURCES[value.source], value.text
                ));
            }
        }
    }
    for case in inputs.crs {
        let kind = ftw::classify(case, paranoia, &map);
        if kind == Kind::Other {
            continue;
        }
        let (refused, ids) = crs_request(case).send(&waf);
        let t = out.crs.entry(case.family()).or_default();
        let family_shown = show.is(&case.family().to_string());
        let body = case
            .body
            .as_ref()
            .map(|b| shorten(&String::from_utf8_lossy(b)));
        if kind == Kind::Attack {
            t.0.add(refused);
            for id in &ids {
                *out.crs_rules.entry(*id).or_default() += 1;
            }
            if show.is("crs-status") {
                let outcome = if refused { "refused" } else { "missed" };
                out.shown
                    .push(format!("CRS STATUS {} {outcome} {ids:?}", case.name()));
            }
            if show.names_rule("crs:", &ids) {
                out.shown.push(format!(
                    "CRS MATCHED {} {ids:?} {:?} body={body:?}",
                    case.name(),
                    case.uri
                ));
            }
            if !refused && family_shown {
                out.shown.push(format!(
                    "CRS MISSED {} {} {:?} body={body:?} headers={:?}",
                    case.name(),
                    case.method,
                    case.uri,
                    case.headers
                ));
            }
        } else {
            t.1.add(refused);
            if refused && family_shown {
                out.shown.push(format!(
                    "CRS NEAR MISS REFUSED {} {ids:?} {:?} body={body:?}",
                    case.name(),
                    case.uri
                ));
            }
        }
    }
    for p in inputs.payloads {
        let (refused, ids) = payload_request(p).send(&waf);
        let t = out.payloads.entry(p.class.clone()).or_default();
        let wrong = match p.expect {
            Expect::Attack => {
                t.0.add(refused);
                !refused
            }
            Expect::Pass => {
                t.1.add(refused);
                refused
            }
        };
        if wrong && (show.is(&p.class) || show.is("payloads")) {
            out.shown.push(format!(
                "PAYLOAD WRONG at PL{paranoia}: {:?} {} {} {:?} {ids:?}",
                p.expect, p.class, p.place, p.value
            ));
        }
    }
    out
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release-mode test: `make test` runs it with `cargo test --release`"
)]
fn benign_and_attack_corpora() {
    let report = std::env::var_os("WAF_REPORT").is_some();
    let show = std::env::var("WAF_SHOW").unwrap_or_default();
    let config: Option<serde_json::Value> = std::env::var_os("WAF_CONFIG").map(|path| {
        let text = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("WAF_CONFIG={}: {e}", PathBuf::from(&path).display()));
        serde_json::from_slice(&text).expect("WAF_CONFIG is not JSON")
    });
    let given = std::env::var_os("WAF_BENIGN").map(PathBuf::from);
    let limits = if report {
        Limits {
            values: None,
            man_pages_per_family: 400,
        }
    } else {
        Limits {
            values: Some(SAMPLED_VALUES),
            man_pages_per_family: 40,
        }
    };
    let corpus = benign::build(limits, given.as_deref());
    if let Some(path) = std::env::var_os("WAF_DUMP") {
        let text: Vec<&str> = corpus.values.iter().map(|v| v.text.as_str()).collect();
        std::fs::write(path, text.join("\n")).unwrap();
        return;
    }
    let (crs, skipped) = match ftw::corpus_dir() {
        Some(dir) => ftw::load(&dir),
        None => {
            println!("CRS corpus skipped: ../shared/corpora/crs-regression is not present");
            (Vec::new(), 0)
        }
    };
    let payloads = payloads::load();
    let inputs = Inputs {
        corpus: &corpus.values,
        crs: &crs,
        payloads: &payloads,
        config: config.as_ref(),
        show: &show,
    };
    // One thread per level (each with its own WAF: a gate's cache is per VM).
    let levels: Vec<(u8, LevelResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = BENIGN_MAX
            .iter()
            .map(|(pl, _)| (*pl, s.spawn(|| run_level(*pl, &inputs))))
            .collect();
        handles
            .into_iter()
            .map(|(pl, h)| (pl, h.join().unwrap()))
            .collect()
    });

    let mut failures: Vec<String> = Vec::new();
    print_benign(&corpus, report, &levels, &mut failures);
    if !crs.is_empty() {
        print_crs(crs.len(), skipped, &levels, &mut failures);
    }
    print_payloads(&levels, &mut failures);
    print_rules(&levels);
    for (_, r) in &levels {
        for line in &r.shown {
            println!("{line}");
        }
    }
    if corpus.values.len() < MIN_BENIGN_VALUES {
        failures.push(format!(
            "only {} benign values found (at least {MIN_BENIGN_VALUES} needed for a rate)",
            corpus.values.len()
        ));
    }
    if report || config.is_some() {
        if !failures.is_empty() {
            println!("\nTargets missed (reported, not enforced in this run):");
            for f in &failures {
                println!("- {f}");
            }
        }
        return;
    }
    assert!(
        failures.is_empty(),
        "targets missed:\n{}",
        failures.join("\n")
    );
}

fn print_benign(
    corpus: &benign::Corpus,
    report: bool,
    levels: &[(u8, LevelResult)],
    failures: &mut Vec<String>,
) {
    println!("\n## Benign corpus\n");
    println!(
        "{} values from real text on this machine ({}):\n",
        corpus.values.len(),
        if report {
            "all of them"
        } else {
            "a sample, the same share of each source"
        }
    );
    println!("| source | files | values found | values used | sentences | code lines |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (s, name) in SOURCES.iter().enumerate() {
        if corpus.files[s] == 0 {
            continue;
        }
        let used = corpus.values.iter().filter(|v| v.source == s);
        let sentences = used
            .clone()
            .filter(|v| v.kind == text::Kind::Sentence)
            .count();
        let code = used.clone().filter(|v| v.kind == text::Kind::Code).count();
        println!(
            "| {name} | {} | {} | {} | {sentences} | {code} |",
            corpus.files[s],
            corpus.found[s],
            used.count(),
        );
    }
    for (pl, result) in levels {
        let max = BENIGN_MAX
            .iter()
            .find(|(p, _)| p == pl)
            .map_or(0.0, |m| m.1);
        println!("\nParanoia {pl}: benign requests refused (target <= {max}% per context)\n");
        println!("| source | kind | values | query | json | form | header |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        let mut per_context = [Count::default(); CONTEXTS.len()];
        for (s, name) in SOURCES.iter().enumerate() {
            for kind in [text::Kind::Sentence, text::Kind::Code, text::Kind::Given] {
                let counts: Vec<Count> = (0..CONTEXTS.len())
                    .map(|c| {
                        result
                            .benign
                            .get(&(s, kind, c))
                            .copied()
                            .unwrap_or_default()
                    })
                    .collect();
                if counts[0].sent == 0 {
                    continue;
                }
                let cells: Vec<String> = counts
                    .iter()
                    .map(|c| format!("{} ({})", pct(c.refused, c.sent), c.refused))
                    .collect();
                println!(
                    "| {name} | {} | {} | {} |",
                    kind.name(),
                    counts[0].sent,
                    cells.join(" | ")
                );
                for (c, count) in counts.iter().enumerate() {
                    per_context[c].sent += count.sent;
                    per_context[c].refused += count.refused;
                }
            }
        }
        let cells: Vec<String> = per_context
            .iter()
            .map(|c| format!("**{}** ({})", pct(c.refused, c.sent), c.refused))
            .collect();
        println!(
            "| all | | {} | {} |",
            per_context[0].sent,
            cells.join(" | ")
        );
        for (c, count) in per_context.iter().enumerate() {
            if share(count.refused, count.sent) > max {
                failures.push(format!(
                    "PL{pl} {}: {} of benign values refused (target <= {max}%)",
                    CONTEXTS[c],
                    pct(count.refused, count.sent)
                ));
            }
        }
    }
}

fn print_crs(
    loaded: usize,
    skipped: usize,
    levels: &[(u8, LevelResult)],
    failures: &mut Vec<String>,
) {
    println!("\n## CRS regression corpus\n");
    println!("{loaded} tests loaded, {skipped} skipped (encoded_request or unreadable)\n");
    println!("| family | PL1 attacks | refused | near misses | passed | PL2 attacks | refused | near misses | passed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let families: Vec<u32> = levels[0].1.crs.keys().copied().collect();
    for family in families {
        let cells: Vec<String> = levels
            .iter()
            .map(|(_, r)| {
                let (a, n) = r.crs.get(&family).copied().unwrap_or_default();
                format!(
                    "{} | {} | {} | {}",
                    a.sent,
                    pct(a.refused, a.sent),
                    n.sent,
                    pct(n.sent - n.refused, n.sent)
                )
            })
            .collect();
        println!("| {family} | {} |", cells.join(" | "));
        for (pl, r) in levels {
            let (a, _) = r.crs.get(&family).copied().unwrap_or_default();
            let got = share(a.refused, a.sent);
            let floor = match pl {
                1 => CRS_PL1_FLOOR
                    .iter()
                    .find(|(f, _)| *f == family)
                    .map(|f| f.1),
                _ => INJECTION_FAMILIES
                    .contains(&family)
                    .then_some(CRS_PL2_FLOOR),
            };
            // The floors are rates printed to one decimal: compare at that precision.
            if let Some(floor) = floor.filter(|f| (got * 10.0).round() < (f * 10.0).round()) {
                failures.push(format!(
                    "CRS {family} at PL{pl}: {got:.1}% of attacks refused (floor {floor}%)"
                ));
            }
        }
    }
}

fn print_payloads(levels: &[(u8, LevelResult)], failures: &mut Vec<String>) {
    println!("\n## Payload shapes of this project (`payloads.txt`)\n");
    println!("Attacks must be refused and near misses passed at paranoia 1.\n");
    println!("| class | PL1 attacks refused | near misses passed | PL2 attacks refused | near misses passed |");
    println!("|---|---:|---:|---:|---:|");
    let classes: Vec<String> = levels[0].1.payloads.keys().cloned().collect();
    for class in &classes {
        let cells: Vec<String> = levels
            .iter()
            .map(|(_, r)| {
                let (a, n) = r.payloads.get(class).copied().unwrap_or_default();
                format!(
                    "{}/{} | {}/{}",
                    a.refused,
                    a.sent,
                    n.sent - n.refused,
                    n.sent
                )
            })
            .collect();
        println!("| {class} | {} |", cells.join(" | "));
        let (a, n) = levels[0].1.payloads.get(class).copied().unwrap_or_default();
        if a.refused < a.sent {
            failures.push(format!(
                "payloads {class}: {}/{} attacks refused at PL1",
                a.refused, a.sent
            ));
        }
        if n.refused > 0 {
            failures.push(format!(
                "payloads {class}: {} near misses refused at PL1",
                n.refused
            ));
        }
    }
}

/// Per rule: the benign requests it matched (and of those, refused), and
/// the CRS attack tests it matched, at each level.
fn print_rules(levels: &[(u8, LevelResult)]) {
    println!("\n## Per rule\n");
    println!("Benign: requests that matched the rule (four per value), of which refused. CRS: attack tests it matched.\n");
    println!("| rule | family | PL | PL1 benign matched | refused | PL1 CRS | PL2 benign matched | refused | PL2 CRS |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (id, family, rule_pl) in palisade_waf::signatures::catalog() {
        let cells: Vec<String> = levels
            .iter()
            .map(|(pl, r)| {
                if rule_pl > *pl {
                    return "- | - | -".into();
                }
                let b = r.benign_rules.get(&id).copied().unwrap_or_default();
                format!(
                    "{} | {} | {}",
                    b.sent,
                    b.refused,
                    r.crs_rules.get(&id).copied().unwrap_or(0)
                )
            })
            .collect();
        println!("| {id} | {family} | {rule_pl} | {} |", cells.join(" | "));
    }
}
