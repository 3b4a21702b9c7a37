//! Every module declares exactly the stream callbacks its stages act on: a
//! callback a stage implements but its module does not declare would never
//! run once `make build` removes its export, and one declared for nothing
//! costs a VM call per request.
//!
//! A module is `filters/<name>/module` (one stage) or `filters/bundle` (all
//! of them); its stages are the policy crates it depends on. A stage acts on
//! an event when its code implements the engine's method for it.

// Test code: a manifest that cannot be read must stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use palisade_trim::declared_callbacks;

/// The engine's stage methods and the proxy-wasm callbacks that deliver
/// them. The request body also needs the trailers: a stream that ends with
/// trailers hands its held body over there. A stage that waits needs the
/// body and trailers callbacks too: with Envoy's
/// `allow_on_headers_stop_iteration`, they reach a paused request, which the
/// engine keeps paused only if it is called.
const STAGE_EVENTS: [(&str, &[&str]); 7] = [
    ("on_request_headers", &["on_http_request_headers"]),
    (
        "on_request_body",
        &["on_http_request_body", "on_http_request_trailers"],
    ),
    ("on_response_headers", &["on_http_response_headers"]),
    (
        "on_response_body",
        &["on_http_response_body", "on_http_response_trailers"],
    ),
    ("on_log", &["on_log"]),
    (
        "on_resume",
        &["on_http_request_body", "on_http_request_trailers"],
    ),
    (
        "on_call_response",
        &["on_http_request_body", "on_http_request_trailers"],
    ),
];

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

/// The policy crates a module's manifest depends on, as their folders.
fn stage_crates(filters: &Path, manifest: &str) -> Vec<PathBuf> {
    let table: toml::Table = toml::from_str(manifest).unwrap();
    let deps = table["dependencies"].as_table().unwrap();
    deps.keys()
        .filter_map(|name| name.strip_prefix("palisade-"))
        .filter(|name| *name != "shared")
        .map(|name| filters.join(name))
        .collect()
}

fn callbacks_of(crates: &[PathBuf]) -> Vec<String> {
    let mut code = String::new();
    for dir in crates {
        let mut sources = Vec::new();
        rust_sources(&dir.join("src"), &mut sources);
        for path in sources {
            code.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    let mut callbacks: Vec<String> = STAGE_EVENTS
        .iter()
        .filter(|(method, _)| code.contains(&format!("fn {method}(")))
        .flat_map(|(_, callbacks)| callbacks.iter().map(|c| c.to_string()))
        .collect();
    callbacks.sort();
    callbacks.dedup();
    callbacks
}

#[test]
fn each_module_declares_the_callbacks_its_stages_act_on() {
    let filters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filters");
    let mut modules: Vec<PathBuf> = std::fs::read_dir(&filters)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("module/Cargo.toml"))
        .filter(|p| p.exists())
        .collect();
    modules.push(filters.join("bundle/Cargo.toml"));
    for manifest_path in &modules {
        let manifest = std::fs::read_to_string(manifest_path).unwrap();
        let mut declared = declared_callbacks(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
        declared.sort();
        let crates = stage_crates(&filters, &manifest);
        assert!(!crates.is_empty(), "{}: no stage", manifest_path.display());
        assert_eq!(
            declared,
            callbacks_of(&crates),
            "{}: http_callbacks must list exactly the callbacks its stages act on",
            manifest_path.display()
        );
    }
    assert!(
        modules.len() >= 6,
        "found only {} modules under {}",
        modules.len(),
        filters.display()
    );
}

#[test]
fn the_bundle_runs_every_policy() {
    let filters = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filters");
    let bundle = std::fs::read_to_string(filters.join("bundle/Cargo.toml")).unwrap();
    let in_bundle = stage_crates(&filters, &bundle);
    for entry in std::fs::read_dir(&filters).unwrap().flatten() {
        let dir = entry.path();
        if dir.join("module").is_dir() {
            assert!(
                in_bundle.contains(&dir),
                "{} has a module but is not in the bundle",
                dir.display()
            );
        }
    }
}
