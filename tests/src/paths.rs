//! Where the built modules, Envoy and the shared corpora are.

use std::path::{Path, PathBuf};

/// The repository root (the workspace that holds this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The folder of the built `.wasm` modules.
pub fn dist_dir() -> PathBuf {
    match std::env::var_os("PALISADE_DIST") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("dist"),
    }
}

/// The path of a built module, such as `module_path("audit")` for
/// `dist/palisade_audit.wasm`. Fails the test with a hint when it is missing.
pub fn module_path(filter: &str) -> PathBuf {
    let path = dist_dir().join(format!("palisade_{filter}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make build` first (or `make test`, which builds)",
        path.display()
    );
    path
}

/// The path of the bundle, `dist/palisade.wasm`. Fails the test with a hint
/// when it is missing.
pub fn bundle_path() -> PathBuf {
    let path = dist_dir().join("palisade.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make build` first (or `make test`, which builds)",
        path.display()
    );
    path
}

/// The Envoy binary to run.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let tools = repo_root().join(".tools/bin/envoy");
    if tools.exists() {
        return tools;
    }
    PathBuf::from("envoy")
}

/// `../shared/corpora/<name>` beside the checkout, when it is there. Tests
/// that use a corpus skip (and say so) when it is not.
pub fn shared_corpora(name: &str) -> Option<PathBuf> {
    let dir = repo_root().join("../shared/corpora").join(name);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("skipping: corpus {} is not present", dir.display());
        None
    }
}
