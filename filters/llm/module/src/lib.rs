//! `palisade_llm.wasm`: the LLM gateway policy as its own module, the
//! engine with one stage. `make build` writes it to `dist/palisade_llm.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_llm::LlmModule>();
}}
