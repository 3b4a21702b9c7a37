//! The MCP stage in the engine against the fake host: the identity from the
//! JWT module's filter state, refusals with their JSON-RPC body and
//! challenge, the decision published, listings held and filtered, metrics.

use palisade_shared::contract;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::{Action, Engine, FlowSlot, Module};
use serde_json::{json, Value};

use super::*;

const CONFIG: &str = r#"{"routes":[{
    "match": {"path": {"prefix": "/mcp"}},
    "allowed_origins": ["https://app.example.com"],
    "tools": {"search": "allow", "deploy": {"scopes": ["deploy"], "log_arguments": ["env"]}, "admin_*": "deny"},
    "realm": "mcp",
    "resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
}]}"#;

const IDENTITY: &[u8] = br#"{"provider":"op","iss":"https://idp","sub":"alice","aud":["https://mcp.example.com/mcp"],"scope":["read"],"amr":[]}"#;

fn host(body: &str, identity: Option<&[u8]>) -> FakeHost {
    let host = FakeHost::new()
        .with_request("POST", "/mcp")
        .with_request_header("accept", "application/json, text/event-stream")
        .with_request_header("content-type", "application/json")
        .with_request_header("mcp-protocol-version", "2025-06-18")
        .with_request_body(body.as_bytes());
    match identity {
        Some(id) => host.with_property(&[contract::IDENTITY], id),
        None => host,
    }
}

fn engine(host: &FakeHost) -> Engine<McpStage> {
    let stage = McpModule::configure(CONFIG.as_bytes(), host).unwrap();
    Engine::new(stage, McpModule::NAME, 1, host).unwrap()
}

/// Sends the request headers and the whole body.
fn send(
    engine: &Engine<McpStage>,
    host: &FakeHost,
    slot: &mut FlowSlot<McpRequest>,
    len: usize,
) -> Action {
    assert_eq!(
        engine.on_request_headers(2, slot, false, host),
        Action::Continue
    );
    engine.on_request_body(2, slot, len, true, host)
}

fn call(tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":tool,"arguments":{"env":"prod","token":"s3cret"}}}).to_string()
}

#[test]
fn an_allowed_call_goes_on_and_publishes_its_decision() {
    let text = call("search");
    let host = host(&text, Some(IDENTITY));
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(
        send(&engine, &host, &mut slot, text.len()),
        Action::Continue
    );
    assert!(host.last_reply().is_none());
    let d = host.property_json(contract::MCP).unwrap();
    assert_eq!(d["method"], "tools/call");
    assert_eq!(d["tool"], "search");
    assert_eq!(d["id"], "c1");
    assert_eq!(d["decision"], "allowed");
    assert!(d.get("arguments").is_none(), "search logs no argument");
    assert_eq!(host.metric("palisade.mcp.allowed"), 1);
    assert_eq!(host.metric("palisade.mcp.method.tools_call.allowed"), 1);
    assert_eq!(host.metric("palisade.mcp.tool.search.allowed"), 1);
}

#[test]
fn a_call_without_the_scope_gets_the_challenge_that_names_it() {
    let text = call("deploy");
    let host = host(&text, Some(IDENTITY));
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(send(&engine, &host, &mut slot, text.len()), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            r#"Bearer realm="mcp", error="insufficient_scope", error_description="the token lacks a scope this call needs", scope="deploy", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        )
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["id"], "c1");
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["reason"],
        "insufficient_scope"
    );
    let d = host.property_json(contract::MCP).unwrap();
    assert_eq!(d["decision"], "denied");
    assert_eq!(
        d["arguments"],
        json!({"env": "prod"}),
        "only the listed argument"
    );
    assert_eq!(
        host.metric("palisade.mcp.tool.deploy.refused.insufficient_scope"),
        1
    );
    assert_eq!(host.metric("palisade.mcp.refused.insufficient_scope"), 1);
}

#[test]
fn without_an_identity_the_challenge_is_401() {
    let text = call("deploy");
    let host = host(&text, None);
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(send(&engine, &host, &mut slot, text.len()), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            r#"Bearer realm="mcp", scope="deploy", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        )
    );
    assert_eq!(reply.json()["error"]["code"], -32004);
}

#[test]
fn malformed_json_and_a_bad_origin_are_refused_without_reaching_the_server() {
    let host = host("{\"jsonrpc\":", None);
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(send(&engine, &host, &mut slot, 11), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32700);
    assert_eq!(reply.json()["id"], Value::Null);
    assert_eq!(
        host.property_json(contract::MCP).unwrap()["decision"],
        "invalid"
    );

    let evil = FakeHost::new()
        .with_request("POST", "/mcp")
        .with_request_header("origin", "https://evil.example");
    let engine = self::engine(&evil);
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(2, &mut slot, false, &evil),
        Action::Pause
    );
    assert_eq!(evil.last_reply().unwrap().status, 403);
    assert_eq!(
        evil.property_json(contract::DENIAL).unwrap()["reason"],
        "origin_not_allowed"
    );
    assert_eq!(evil.metric("palisade.mcp.refused.origin_not_allowed"), 1);
}

#[test]
fn other_paths_pass_untouched() {
    let host = FakeHost::new().with_request("PUT", "/api/orders");
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(
        engine.on_request_headers(2, &mut slot, false, &host),
        Action::Continue
    );
    assert!(host.property_json(contract::MCP).is_none());
}

const LISTING: &str = r#"{"jsonrpc":"2.0","id":"l1","result":{"tools":[{"name":"search"},{"name":"deploy"},{"name":"admin_drop"}]}}"#;

fn listed(framing: &str, body: &str, identity: &[u8]) -> Vec<String> {
    let text = json!({"jsonrpc":"2.0","id":"l1","method":"tools/list"}).to_string();
    let host = host(&text, Some(identity));
    let engine = engine(&host);
    let mut slot = None;
    assert_eq!(
        send(&engine, &host, &mut slot, text.len()),
        Action::Continue
    );
    host.set_response_headers(&[
        (":status", "200"),
        ("content-type", framing),
        ("content-length", "999"),
    ]);
    engine.on_response_headers(2, &mut slot, &host);
    assert!(
        !host
            .response_headers()
            .iter()
            .any(|(n, _)| n == "content-length"),
        "the length goes: the body may change"
    );
    let bytes = body.as_bytes();
    host.set_response_body(&bytes[..bytes.len() / 2]);
    assert_eq!(
        engine.on_response_body(2, &mut slot, bytes.len() / 2, false, &host),
        Action::Pause
    );
    host.set_response_body(bytes);
    assert_eq!(
        engine.on_response_body(2, &mut slot, bytes.len(), true, &host),
        Action::Continue
    );
    let out = String::from_utf8(host.response_body()).unwrap();
    let json = if framing.starts_with("text/event-stream") {
        out.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap()
            .to_string()
    } else {
        out
    };
    let v: Value = serde_json::from_str(&json).unwrap();
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn listings_are_filtered_per_identity_in_json_and_sse() {
    let deployer =
        br#"{"provider":"op","iss":"i","sub":"bob","aud":[],"scope":["deploy"],"amr":[]}"#;
    assert_eq!(listed("application/json", LISTING, IDENTITY), ["search"]);
    assert_eq!(
        listed("application/json", LISTING, deployer),
        ["search", "deploy"]
    );
    let sse = format!("event: message\r\ndata: {LISTING}\r\n\r\n");
    assert_eq!(listed("text/event-stream", &sse, IDENTITY), ["search"]);
    assert_eq!(
        listed("text/event-stream; charset=utf-8", &sse, deployer),
        ["search", "deploy"]
    );
}

#[test]
fn a_listing_too_large_to_filter_is_replaced_by_an_error() {
    let config = CONFIG.replace("\"realm\"", "\"max_list_response_bytes\": 64, \"realm\"");
    let text = json!({"jsonrpc":"2.0","id":"l1","method":"tools/list"}).to_string();
    let host = host(&text, Some(IDENTITY));
    let stage = McpModule::configure(config.as_bytes(), &host).unwrap();
    let engine = Engine::new(stage, McpModule::NAME, 1, &host).unwrap();
    let mut slot = None;
    send(&engine, &host, &mut slot, text.len());
    host.set_response_headers(&[(":status", "200"), ("content-type", "application/json")]);
    engine.on_response_headers(2, &mut slot, &host);
    host.set_response_body(LISTING.as_bytes());
    engine.on_response_body(2, &mut slot, LISTING.len(), false, &host);
    let v: Value = serde_json::from_slice(&host.response_body()).unwrap();
    assert_eq!(v["id"], "l1");
    assert_eq!(v["error"]["data"]["reason"], "listing_too_large");
    assert_eq!(host.metric("palisade.mcp.listing.too_large"), 1);
}
