//! `palisade_waf.wasm`: the WAF as its own module, the engine with one
//! stage. `make build` writes it to `dist/palisade_waf.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_waf::WafModule>();
}}
