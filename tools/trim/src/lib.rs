//! Removes the proxy-wasm callback exports a filter does not implement.
//!
//! Envoy calls an HTTP-stream callback (`proxy_on_response_headers`,
//! `proxy_on_log`, ...) only when the module exports it, and each call into
//! the VM costs about 2k instructions even when the filter does nothing in it
//! (docs/performance.md). The proxy-wasm Rust SDK exports all of them, so a
//! filter that acts on request headers alone would pay for six calls it does
//! not need on every request. Each filter lists the stream callbacks it
//! implements in its `Cargo.toml`:
//!
//! ```toml
//! [package.metadata.palisade]
//! http_callbacks = ["on_http_request_headers", "on_log"]
//! ```
//!
//! and `make build` removes the exports of the others. Only exports change:
//! the code stays, unreferenced, and the result is validated before it is
//! written. Root-context callbacks (`on_configure`, `on_tick`, HTTP call
//! responses) and `proxy_on_delete`, which frees the SDK's per-stream state,
//! are never removed. `proxy_on_done` serves both the streams and the root
//! context (when the VM stops): a filter that implements `on_done` on either
//! must declare it, and pays for a call per request.

use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload, Validator};

/// The SDK's stream callbacks (trait method names, as the filters write
/// them) and the exports Envoy looks for.
pub const STREAM_CALLBACKS: [(&str, &str); 8] = [
    ("on_http_request_headers", "proxy_on_request_headers"),
    ("on_http_request_body", "proxy_on_request_body"),
    ("on_http_request_trailers", "proxy_on_request_trailers"),
    ("on_http_response_headers", "proxy_on_response_headers"),
    ("on_http_response_body", "proxy_on_response_body"),
    ("on_http_response_trailers", "proxy_on_response_trailers"),
    ("on_log", "proxy_on_log"),
    ("on_done", "proxy_on_done"),
];

/// The stream callbacks a filter's `Cargo.toml` declares under
/// `[package.metadata.palisade] http_callbacks`.
pub fn declared_callbacks(manifest: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = toml::from_str(manifest).map_err(|e| format!("Cargo.toml: {e}"))?;
    let list = table
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("palisade"))
        .and_then(|p| p.get("http_callbacks"))
        .ok_or("Cargo.toml has no [package.metadata.palisade] http_callbacks")?
        .as_array()
        .ok_or("http_callbacks must be a list of callback names")?;
    let mut names = Vec::new();
    for item in list {
        let name = item
            .as_str()
            .ok_or("http_callbacks must be a list of callback names")?;
        if !STREAM_CALLBACKS.iter().any(|(method, _)| *method == name) {
            let known: Vec<&str> = STREAM_CALLBACKS.iter().map(|(m, _)| *m).collect();
            return Err(format!(
                "http_callbacks: unknown callback `{name}` (known: {})",
                known.join(", ")
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// The exports to remove for a filter implementing `declared`.
pub fn unused_exports(declared: &[String]) -> Vec<&'static str> {
    STREAM_CALLBACKS
        .iter()
        .filter(|(method, _)| !declared.iter().any(|d| d == method))
        .map(|(_, export)| *export)
        .collect()
}

/// `wasm` with the exports named in `remove` taken out, and the names that
/// were actually present and removed.
pub fn remove_exports(wasm: &[u8], remove: &[&str]) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut module = Module::new();
    let mut removed = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("not a valid wasm module: {e}"))?;
        if let Payload::ExportSection(reader) = payload {
            let mut exports = ExportSection::new();
            for export in reader {
                let export = export.map_err(|e| format!("export section: {e}"))?;
                if remove.contains(&export.name) {
                    removed.push(export.name.to_string());
                    continue;
                }
                exports.export(export.name, export_kind(export.kind), export.index);
            }
            module.section(&exports);
        } else if let Some((id, range)) = payload.as_section() {
            let start = usize::try_from(range.start).ok();
            let end = usize::try_from(range.end).ok();
            let data = start
                .zip(end)
                .and_then(|(start, end)| wasm.get(start..end))
                .ok_or("section extends past the end of the module")?;
            module.section(&RawSection { id, data });
        }
    }
    let out = module.finish();
    Validator::new()
        .validate_all(&out)
        .map_err(|e| format!("the trimmed module does not validate: {e}"))?;
    Ok((out, removed))
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, TypeSection};

    /// A module with one function exported under each of `names`.
    fn module_exporting(names: &[&str]) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut exports = ExportSection::new();
        for name in names {
            exports.export(name, ExportKind::Func, 0);
        }
        module.section(&exports);
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instruction(&Instruction::End);
        code.function(&body);
        module.section(&code);
        module.finish()
    }

    fn export_names(wasm: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Ok(Payload::ExportSection(reader)) = payload {
                names.extend(reader.into_iter().map(|e| e.unwrap().name.to_string()));
            }
        }
        names
    }

    #[test]
    fn removes_only_the_named_exports() {
        let wasm = module_exporting(&[
            "proxy_on_request_headers",
            "proxy_on_log",
            "proxy_on_delete",
            "proxy_on_context_create",
        ]);
        let (out, removed) = remove_exports(&wasm, &["proxy_on_log", "proxy_on_done"]).unwrap();
        assert_eq!(removed, ["proxy_on_log"]);
        assert_eq!(
            export_names(&out),
            [
                "proxy_on_request_headers",
                "proxy_on_delete",
                "proxy_on_context_create"
            ]
        );
        // Removing nothing gives back the same bytes.
        let (same, none) = remove_exports(&wasm, &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, wasm);
    }

    #[test]
    fn keeps_the_declared_callbacks_and_never_the_lifecycle_ones() {
        let declared = vec!["on_http_request_headers".to_string(), "on_log".to_string()];
        let unused = unused_exports(&declared);
        assert_eq!(
            unused,
            [
                "proxy_on_request_body",
                "proxy_on_request_trailers",
                "proxy_on_response_headers",
                "proxy_on_response_body",
                "proxy_on_response_trailers",
                "proxy_on_done"
            ]
        );
        for lifecycle in [
            "proxy_on_delete",
            "proxy_on_context_create",
            "proxy_on_configure",
        ] {
            assert!(!unused.contains(&lifecycle));
        }
    }

    #[test]
    fn reads_the_declaration_and_refuses_unknown_names() {
        let manifest = "[package]\nname = \"x\"\n[package.metadata.palisade]\nhttp_callbacks = [\"on_http_request_headers\", \"on_log\"]\n";
        assert_eq!(
            declared_callbacks(manifest).unwrap(),
            ["on_http_request_headers", "on_log"]
        );
        let typo = "[package.metadata.palisade]\nhttp_callbacks = [\"on_request_headers\"]\n";
        assert!(declared_callbacks(typo)
            .unwrap_err()
            .contains("unknown callback `on_request_headers`"));
        assert!(declared_callbacks("[package]\nname = \"x\"\n")
            .unwrap_err()
            .contains("no [package.metadata.palisade]"));
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        assert!(remove_exports(b"not wasm", &["proxy_on_log"])
            .unwrap_err()
            .contains("not a valid wasm module"));
    }
}
