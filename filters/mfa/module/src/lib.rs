//! `palisade_mfa.wasm`: MFA step-up as its own module, the engine with one
//! stage. `make build` writes it to `dist/palisade_mfa.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_mfa::MfaModule>();
}}
