//! `palisade_jwt.wasm`: JWT / OIDC validation as its own module, the engine with one
//! stage. `make build` writes it to `dist/palisade_jwt.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_jwt::JwtModule>();
}}
