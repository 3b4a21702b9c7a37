//! A benign corpus built at test time from real text already on the
//! machine, none of it committed: the READMEs and doc comments of the
//! crates pinned in `Cargo.lock` (from the cargo registry), the READMEs of
//! `tests/node_modules` (when `make node-deps` has run) and the man pages
//! in `/usr/share/man`. Each is split into sentences and code-bearing lines
//! (`text.rs`); duplicates count once. A user's own values (a file, one
//! value per line) can be added as a fifth source.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::text::{self, Kind};

/// Where values come from.
pub const SOURCES: [&str; 5] = [
    "crate READMEs",
    "crate doc comments",
    "npm READMEs",
    "man pages",
    "given values",
];
/// The index of the user's own values in [`SOURCES`].
pub const GIVEN: usize = 4;

/// One benign value.
#[derive(Debug, Clone)]
pub struct Value {
    /// Index into [`SOURCES`].
    pub source: usize,
    pub kind: Kind,
    pub text: String,
}

/// How much of the text to use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most about this many values in all, the same share of every
    /// source (a sample by hash, the same on every run over the same text),
    /// so that the sample's rate estimates the whole corpus's; `None`: all.
    pub values: Option<usize>,
    /// At most this many man pages per command family (the name before its
    /// first `_`: one tool's hundreds of generated subcommand pages would
    /// otherwise be most of the corpus).
    pub man_pages_per_family: usize,
}

/// The corpus and what it was read from.
pub struct Corpus {
    pub values: Vec<Value>,
    /// Per source: files read, values found (before sampling).
    pub files: [usize; 5],
    pub found: [usize; 5],
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").is_file())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
}

/// `name-version` of every registry package in `Cargo.lock`.
fn pinned_crates(root: &Path) -> HashSet<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let mut out = HashSet::new();
    for package in lock.split("[[package]]") {
        let field = |key: &str| {
            package.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(name), Some(version), Some(source)) =
            (field("name "), field("version "), field("source "))
        {
            if source.starts_with("registry+") || source.starts_with("sparse+") {
                out.insert(format!("{name}-{version}"));
            }
        }
    }
    out
}

/// The extracted sources of the pinned crates, in name order.
fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let pinned = pinned_crates(root);
    let mut dirs = Vec::new();
    let src = cargo_home().join("registry").join("src");
    for index in read_dir(&src) {
        for dir in read_dir(&index) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| pinned.contains(&n)) && dir.is_dir() {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    dirs.dedup_by(|a, b| a.file_name() == b.file_name());
    dirs
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn readmes(dir: &Path) -> Vec<PathBuf> {
    read_dir(dir)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy().to_ascii_lowercase();
                    n == "readme" || n.starts_with("readme.")
                })
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for p in read_dir(dir) {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The packages of `tests/node_modules` (scoped ones included), not the
/// copies nested inside other packages.
fn npm_packages(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in read_dir(&root.join("tests").join("node_modules")) {
        let scoped = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('@'));
        if scoped {
            out.extend(read_dir(&p).into_iter().filter(|p| p.is_dir()));
        } else if p.is_dir() {
            out.push(p);
        }
    }
    out
}

/// The man pages of sections 1, 5, 7 and 8 (commands, file formats,
/// overviews, administration), at most `per_family` per command family.
fn man_pages(per_family: usize) -> Vec<PathBuf> {
    let mut families: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for section in ["man1", "man5", "man7", "man8"] {
        for p in read_dir(&Path::new("/usr/share/man").join(section)) {
            let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if !name.ends_with(".gz") {
                continue;
            }
            let family = name.split(['_', '.']).next().unwrap_or("").to_string();
            families.entry(family).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    for (_, mut pages) in families {
        pages.sort_by_key(|p| fnv(p.to_string_lossy().as_bytes()));
        pages.truncate(per_family);
        out.extend(pages);
    }
    out
}

/// Decompresses man pages with `gzip` (always there where man pages are),
/// a batch per process.
fn man_sources(pages: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in pages.chunks(200) {
        let Ok(output) = Command::new("gzip").arg("-dc").args(batch).output() else {
            return out;
        };
        out.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    out
}

/// FNV-1a: a stable hash for sampling (the same on every machine).
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads every source and samples it; `given`: a file of the user's own
/// values, one per line (never sampled).
pub fn build(limits: Limits, given: Option<&Path>) -> Corpus {
    let root = workspace_root();
    let mut per_source: [Vec<(Kind, String)>; 5] = Default::default();
    let mut files = [0usize; 5];
    let mut seen: HashSet<u64> = HashSet::new();
    let mut add = |source: usize, text: &str, per_source: &mut [Vec<(Kind, String)>; 5]| {
        let mut emit = |kind: Kind, value: String| {
            if seen.insert(fnv(value.as_bytes())) {
                per_source[source].push((kind, value));
            }
        };
        match source {
            1 => text::rust_doc_comments(text, &mut emit),
            3 => text::roff(text, &mut emit),
            GIVEN => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .for_each(|l| emit(Kind::Given, l.to_string())),
            _ => text::markdown(text, &mut emit),
        }
    };
    let crates = crate_dirs(&root);
    for dir in &crates {
        for readme in readmes(dir) {
            if let Ok(text) = std::fs::read_to_string(&readme) {
                files[0] += 1;
                add(0, &text, &mut per_source);
            }
        }
    }
    for dir in &crates {
        let mut sources = Vec::new();
        rust_files(&dir.join("src"), &mut sources);
        for file in sources {
            if let Ok(text) = std::fs::read_to_string(&file) {
                files[1] += 1;
                add(1, &text, &mut per_source);
            }
        }
    }
    for package in npm_packages(&root) {
        for readme in readmes(&package) {
            if let Ok(text) = std::fs::read_to_string(&readme) {
                files[2] += 1;
                add(2, &text, &mut per_source);
            }
        }
    }
    let pages = man_pages(limits.man_pages_per_family);
    files[3] = pages.len();
    for text in man_sources(&pages) {
        add(3, &text, &mut per_source);
    }
    if let Some(path) = given {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("WAF_BENIGN={}: {e}", path.display()));
        files[GIVEN] = 1;
        add(GIVEN, &text, &mut per_source);
    }
    let found = [0, 1, 2, 3, 4].map(|s| per_source[s].len());
    let sampled: usize = found[..GIVEN].iter().sum();
    let mut values = Vec::new();
    for (source, mut list) in per_source.into_iter().enumerate() {
        if let Some(total) = limits.values.filter(|_| source != GIVEN) {
            let cap = (list.len() * total).div_ceil(sampled.max(1));
            if list.len() > cap {
                list.sort_by_key(|(_, v)| fnv(v.as_bytes()));
                list.truncate(cap);
            }
        }
        values.extend(
            list.into_iter()
                .map(|(kind, text)| Value { source, kind, text }),
        );
    }
    Corpus {
        values,
        files,
        found,
    }
}
