//! `palisade_ratelimit.wasm`: the rate limiter as its own module, the engine with one
//! stage. `make build` writes it to `dist/palisade_ratelimit.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_ratelimit::RateLimitModule>();
}}
