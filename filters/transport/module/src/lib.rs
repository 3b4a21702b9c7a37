//! `palisade_transport.wasm`: the transport policy as its own module, the
//! engine with one stage. `make build` writes it to
//! `dist/palisade_transport.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_transport::TransportModule>();
}}
