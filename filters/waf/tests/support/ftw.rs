//! Loads the CoreRuleSet regression tests (go-ftw YAML) from
//! `../shared/corpora/crs-regression` into plain requests, for the native
//! corpus test and the end-to-end replay through Envoy.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// One go-ftw test, reduced to its (last) request and expectation.
#[derive(Debug, Clone)]
pub struct FtwCase {
    /// The CRS rule file it belongs to (942100).
    pub rule_id: u32,
    /// Its test id within the file.
    pub test_id: String,
    /// `:method`.
    pub method: String,
    /// The request target as sent (path and query).
    pub uri: String,
    /// Request headers (names as written in the test).
    pub headers: Vec<(String, String)>,
    /// The body, when there is one.
    pub body: Option<Vec<u8>>,
    /// Rules CRS must report.
    pub expect_ids: Vec<u32>,
    /// Rules CRS must not report.
    pub no_expect_ids: Vec<u32>,
}

impl FtwCase {
    /// The family, the rule id's first three digits (942).
    pub fn family(&self) -> u32 {
        let mut id = self.rule_id;
        while id >= 1000 {
            id /= 10;
        }
        id
    }

    /// A short name for reports.
    pub fn name(&self) -> String {
        format!("{}-{}", self.rule_id, self.test_id)
    }
}

/// What a test is at a paranoia level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// It expects a rule at or below the paranoia level: an attack to refuse.
    Attack,
    /// It expects no rule, only names rules that must not fire: a near miss to pass.
    NearMiss,
    /// It expects only rules above the level (not counted).
    Other,
}

/// CRS rule id -> paranoia level.
pub fn paranoia_map() -> HashMap<u32, u8> {
    include_str!("../crs_paranoia.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (id, pl) = l.split_once(' ')?;
            Some((id.parse().ok()?, pl.trim().parse().ok()?))
        })
        .collect()
}

/// Classifies a test at a paranoia level.
pub fn classify(case: &FtwCase, paranoia: u8, map: &HashMap<u32, u8>) -> Kind {
    if !case.expect_ids.is_empty() {
        let lowest = case
            .expect_ids
            .iter()
            .map(|id| map.get(id).copied().unwrap_or(9))
            .min()
            .unwrap_or(9);
        if lowest <= paranoia {
            Kind::Attack
        } else {
            Kind::Other
        }
    } else if !case.no_expect_ids.is_empty() {
        Kind::NearMiss
    } else {
        Kind::Other
    }
}

/// The corpus folder, when present.
pub fn corpus_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in manifest.ancestors() {
        let candidate = up.join("../shared/corpora/crs-regression");
        if candidate.is_dir() {
            return Some(candidate);
        }
    }
    None
}

fn ids(v: Option<&Value>) -> Vec<u32> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_u64())
                .filter_map(|x| u32::try_from(x).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Loads every request-side test (families 911 to 944). Returns the cases
/// and the number skipped (raw `encoded_request` tests, unreadable files).
pub fn load(dir: &Path) -> (Vec<FtwCase>, usize) {
    let mut cases = Vec::new();
    let mut skipped = 0;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    folders.retain(|p| {
        p.is_dir()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("REQUEST-9"))
    });
    folders.sort();
    for folder in folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
        files.sort();
        for file in files {
            let Ok(source) = std::fs::read_to_string(&file) else {
                skipped += 1;
                continue;
            };
            let Ok(doc) = serde_norway::from_str::<Value>(&source) else {
                skipped += 1;
                continue;
            };
            let Some(rule_id) = doc
                .get("rule_id")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
            else {
                skipped += 1;
                continue;
            };
            let Some(tests) = doc.get("tests").and_then(Value::as_sequence) else {
                continue;
            };
            for t in tests {
                let test_id = t.get("test_id").and_then(text).unwrap_or_default();
                let Some(stage) = t
                    .get("stages")
                    .and_then(Value::as_sequence)
                    .and_then(|s| s.last())
                else {
                    skipped += 1;
                    continue;
                };
                let input = stage.get("input");
                let output = stage.get("output").and_then(|o| o.get("log"));
                let Some(input) = input else {
                    skipped += 1;
                    continue;
                };
                if input.get("encoded_request").is_some() {
                    skipped += 1;
                    continue;
                }
                let mut headers = Vec::new();
                if let Some(map) = input.get("headers").and_then(Value::as_mapping) {
                    for (k, v) in map {
                        if let (Some(k), Some(v)) = (text(k), text(v)) {
                            headers.push((k, v));
                        }
                    }
                }
                cases.push(FtwCase {
                    rule_id,
                    test_id,
                    method: input
                        .get("method")
                        .and_then(text)
                        .unwrap_or_else(|| "GET".into()),
                    uri: input
                        .get("uri")
                        .and_then(text)
                        .filter(|u| !u.is_empty())
                        .unwrap_or_else(|| "/".into()),
                    headers,
                    body: input.get("data").and_then(text).map(String::into_bytes),
                    expect_ids: ids(output.and_then(|o| o.get("expect_ids"))),
                    no_expect_ids: ids(output.and_then(|o| o.get("no_expect_ids"))),
                });
            }
        }
    }
    (cases, skipped)
}
