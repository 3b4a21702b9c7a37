//! `palisade_audit.wasm`: the audit log as its own module, the engine with one
//! stage. `make build` writes it to `dist/palisade_audit.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_audit::AuditModule>();
}}
