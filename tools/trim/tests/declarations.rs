//! Every filter declares exactly the stream callbacks its code implements: a
//! callback implemented but not declared would never run once `make build`
//! removes its export, and one declared but not implemented costs a VM call
//! per request for nothing.

use std::path::{Path, PathBuf};

use palisade_trim::{declared_callbacks, STREAM_CALLBACKS};

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn each_filter_declares_the_callbacks_it_implements() {
    let filters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filters");
    let mut checked = 0;
    for entry in std::fs::read_dir(&filters).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let declared = declared_callbacks(&std::fs::read_to_string(&manifest).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let mut sources = Vec::new();
        rust_sources(&dir.join("src"), &mut sources);
        let code: String = sources
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let mut implemented: Vec<String> = STREAM_CALLBACKS
            .iter()
            .filter(|(method, _)| code.contains(&format!("fn {method}(")))
            .map(|(method, _)| method.to_string())
            .collect();
        let mut declared_sorted = declared.clone();
        implemented.sort();
        declared_sorted.sort();
        assert_eq!(
            declared_sorted,
            implemented,
            "{}: http_callbacks must list exactly the stream callbacks the filter implements",
            manifest.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "found only {checked} filters under {}",
        filters.display()
    );
}
