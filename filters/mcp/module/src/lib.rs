//! `palisade_mcp.wasm`: MCP governance as its own module, the engine with
//! one stage. `make build` writes it to `dist/palisade_mcp.wasm`.

#[cfg(feature = "proxy-wasm")]
proxy_wasm::main! {{
    palisade_shared::engine::wasm::start::<palisade_mcp::McpModule>();
}}
