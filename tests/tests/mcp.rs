//! MCP governance end to end, with real MCP parts: a server and a client
//! built on the official MCP Python SDK (PyPI `mcp`, installed by `make
//! mcp-deps` into .tools/mcp; tests/mcp_server.py and tests/mcp_client.py)
//! talk Streamable HTTP through Envoy running the JWT stage (an OAuth
//! protected resource, RFC 9728 and 8707) and the MCP stage, with tokens from
//! the `oidc-provider` IdP. The client knows only the server's URL and its
//! client credentials: it finds the authorization server from the metadata
//! named in the first 401, and steps up to the scope a 403 names.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_e2e::oidc::{OidcProvider, CLIENT, READER};
use palisade_e2e::{Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

/// The SDK server on loopback; dropping it stops it.
struct McpServer {
    child: Child,
    port: u16,
}

impl McpServer {
    fn start() -> McpServer {
        let port = OidcProvider::free_port();
        let tests = palisade_e2e::repo_root().join("tests");
        let mut child = Command::new(python())
            .arg(tests.join("mcp_server.py"))
            .arg(port.to_string())
            .current_dir(&tests)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python");
        palisade_e2e::wait_until_ready(&mut child, "the MCP server");
        McpServer { child, port }
    }

    /// Every JSON-RPC message (or unparsable body) the server was handed.
    fn received(&self) -> Vec<Value> {
        let r = palisade_e2e::send(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            &Request::get("/received").header("host", "127.0.0.1"),
        )
        .unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    /// The `tools/call` messages the server was handed, by tool.
    fn tool_calls(&self, tool: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == tool)
            .collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter of the venv `make mcp-deps` installs the SDK into.
fn python() -> std::path::PathBuf {
    palisade_e2e::repo_root().join(".tools/mcp/bin/python")
}

fn installed() -> bool {
    let sdk = python();
    if !sdk.exists() {
        println!("skipping: {} is absent (make mcp-deps)", sdk.display());
    }
    OidcProvider::installed() && sdk.exists()
}

/// Envoy on `port` in front of the MCP server: JWT (the MCP endpoint is an
/// OAuth protected resource), MCP governance, audit.
fn mcp_envoy(op: &OidcProvider, server: &McpServer, port: u16) -> Envoy {
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let metadata = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    EnvoyConfig::new()
        .listener_port(port)
        .wasm_filter("audit", json!({}))
        .wasm_filter(
            "jwt",
            json!({
                "providers": {"op": {
                    "issuer": op.issuer(),
                    "discovery": {"cluster": "idp", "timeout_ms": 2000}
                }},
                "rules": [{
                    "match": {"path": {"exact": "/mcp"}},
                    "requires": {"provider": "op"},
                    "scopes": {"any_of": ["mcp:read"]},
                    "protected_resource": {
                        "resource": resource,
                        "scopes_supported": ["mcp:read", "mcp:write"],
                        "resource_name": "notes"
                    }
                }]
            }),
        )
        .wasm_filter(
            "mcp",
            json!({"routes": [{
                "match": {"path": {"exact": "/mcp"}},
                "allowed_origins": [format!("http://127.0.0.1:{port}")],
                "require_session": true,
                "resource_metadata": metadata,
                "tools": {
                    "search_notes": {"any_scopes": ["mcp:read"], "log_arguments": ["query"]},
                    "write_note": {
                        "scopes": ["mcp:write"],
                        "arguments": {"text": {"type": "string", "max_length": 1000, "required": true}},
                        "only_listed_arguments": true
                    },
                    "admin_reset": "deny"
                },
                "resources": [{"prefix": "notes://public/", "access": {"any_scopes": ["mcp:read"]}}]
            }]}),
        )
        .cluster("idp", op.addr())
        .cluster("upstream", SocketAddr::from(([127, 0, 0, 1], server.port)))
        .start()
}

/// Runs the SDK client against `url` as `client`; its report.
fn run_client(url: &str, issuer: &str, client: (&str, &str)) -> Value {
    let tests = palisade_e2e::repo_root().join("tests");
    let out = Command::new(python())
        .arg(tests.join("mcp_client.py"))
        .args([url, issuer, client.0, client.1])
        .current_dir(&tests)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        let log = String::from_utf8_lossy(&out.stderr);
        panic!("client report {e}: {text}\n{log}")
    })
}

fn ok(report: &Value, step: &str) -> Value {
    let s = &report["steps"][step];
    assert_eq!(s["ok"], true, "{step}: {s}");
    s["result"].clone()
}

/// `status`: the HTTP status of the step's last request to the MCP
/// endpoint; `code`: the JSON-RPC error of its body, which the SDK raises.
fn refused(report: &Value, step: &str, status: u16, code: i64) {
    let s = &report["steps"][step];
    assert_eq!(s["ok"], false, "{step} should be refused: {s}");
    let statuses = s["statuses"].as_array().cloned().unwrap_or_default();
    assert_eq!(statuses.last(), Some(&json!(status)), "{step}: {s}");
    assert_eq!(s["code"], code, "{step}: {s}");
}

/// Whether the client made a `method` request to a URL ending in `suffix`
/// that was answered with `status`.
fn fetched_by(exchanges: &[Value], method: &str, suffix: &str, status: u64) -> bool {
    exchanges.iter().any(|x| {
        x["method"] == method
            && x["url"].as_str().is_some_and(|u| u.ends_with(suffix))
            && x["status"] == status
    })
}

/// Whether an MCP request was refused with a 403 whose challenge names the
/// write tool's scope.
fn challenged_for_write(exchanges: &[Value]) -> bool {
    exchanges.iter().any(|x| {
        x["status"] == 403
            && x["www_authenticate"].as_str().is_some_and(|c| {
                c.contains("insufficient_scope") && c.contains(r#"scope="mcp:write""#)
            })
    })
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .or_else(|| result["contents"][0]["text"].as_str())
        .unwrap_or_default()
}

#[test]
fn sdk_client_discovers_the_issuer_and_is_governed_per_tool_and_resource() {
    if !installed() {
        return;
    }
    let op = OidcProvider::start(OidcProvider::free_port(), "k1");
    let server = McpServer::start();
    let port = OidcProvider::free_port();
    let envoy = mcp_envoy(&op, &server, port);
    let url = format!("http://127.0.0.1:{port}/mcp");

    // A client the IdP grants both scopes.
    let full = run_client(&url, &op.issuer(), CLIENT);
    let exchanges = full["exchanges"].as_array().unwrap();
    let first = &exchanges[0];
    assert_eq!(
        (first["method"].as_str(), first["status"].as_u64()),
        (Some("POST"), Some(401)),
        "{first}"
    );
    let challenge = first["www_authenticate"].as_str().unwrap_or_default();
    assert!(
        challenge.contains(&format!(
            r#"resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp""#
        )),
        "{challenge}"
    );
    assert!(
        fetched_by(
            exchanges,
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            200
        ),
        "{exchanges:?}"
    );
    assert!(
        fetched_by(exchanges, "POST", "/token", 200),
        "{exchanges:?}"
    );
    assert_eq!(
        ok(&full, "connect")["protocol_version"],
        "2025-11-25",
        "{full}"
    );
    // The first token carries the scope the 401 named: the listing shows
    // what it may call, never the denied tool nor the write tool.
    assert_eq!(ok(&full, "list_tools"), json!(["search_notes"]));
    assert_eq!(text_of(&ok(&full, "search")), "searched: q3");
    refused(&full, "admin", 403, -32003);
    assert_eq!(text_of(&ok(&full, "read_public")), "public note 1");
    refused(&full, "read_private", 403, -32003);
    // The write tool's 403 names the scope it needs; the SDK gets a token
    // with it too (this client may have it) and the call goes through.
    assert!(challenged_for_write(exchanges), "{exchanges:?}");
    let write = &full["steps"]["write"];
    assert_eq!(
        write["statuses"].as_array().and_then(|s| s.first()),
        Some(&json!(403)),
        "{write}"
    );
    assert_eq!(text_of(&ok(&full, "write")), "written: 5 characters");
    assert_eq!(
        ok(&full, "list_tools_after_write"),
        json!(["search_notes", "write_note"])
    );
    refused(&full, "write_oversized", 400, -32602);
    // The server gave the client a session, which the client ended (a
    // DELETE carries the session id, and the SDK sends one only then).
    assert!(
        fetched_by(exchanges, "DELETE", "/mcp", 200),
        "{exchanges:?}"
    );

    // A client the IdP grants the read scope only: the write tool is neither
    // listed nor callable, and its refusal names the scope it needs.
    let reader = run_client(&url, &op.issuer(), READER);
    assert_eq!(ok(&reader, "list_tools"), json!(["search_notes"]));
    assert_eq!(text_of(&ok(&reader, "search")), "searched: q3");
    assert_eq!(text_of(&ok(&reader, "read_public")), "public note 1");
    let reader_exchanges = reader["exchanges"].as_array().unwrap();
    assert!(
        challenged_for_write(reader_exchanges),
        "{reader_exchanges:?}"
    );
    // The IdP refuses it the scope: the SDK raises the token error (and
    // drops the connection, its way of failing a step-up).
    assert!(
        fetched_by(reader_exchanges, "POST", "/token", 400),
        "{reader_exchanges:?}"
    );
    let write = &reader["steps"]["write"];
    assert!(
        write["ok"] == false
            && write["error"]
                .as_str()
                .is_some_and(|e| e.contains("invalid_scope")),
        "{write}"
    );

    // What was refused never reached the server: not the admin tool, not the
    // oversized or the reader's write, not the private note (each client
    // read the public one).
    assert!(server.tool_calls("admin_reset").is_empty());
    assert_eq!(server.tool_calls("write_note").len(), 1);
    assert_eq!(server.tool_calls("search_notes").len(), 2);
    let reads: Vec<Value> = server
        .received()
        .into_iter()
        .filter(|m| m["method"] == "resources/read")
        .map(|m| m["params"]["uri"].clone())
        .collect();
    assert_eq!(reads, vec![json!("notes://public/1"); 2]);

    // The audit record: the MCP decision, the argument the route lists, never
    // another one.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut log = envoy.access_log();
    // Envoy flushes its access log file in the background.
    while !log.iter().any(|l| l.contains(r#""tool":"admin_reset""#)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        log = envoy.access_log();
    }
    let record = |needle: &str| -> Value {
        let line = log
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {log:?}"));
        serde_json::from_str(line).unwrap()
    };
    let admin = record(r#""tool":"admin_reset""#);
    let mcp = &admin["mcp"];
    assert_eq!(
        (&mcp["method"], &mcp["decision"], &mcp["reason"]),
        (
            &json!("tools/call"),
            &json!("denied"),
            &json!("tool_denied")
        ),
        "{admin}"
    );
    let search = record(r#""tool":"search_notes""#);
    assert_eq!(search["mcp"]["arguments"]["query"], "q3", "{search}");
    assert!(
        !log.iter().any(|l| l.contains("hello")),
        "an unlisted argument was logged"
    );

    assert!(envoy.counter("palisade.mcp.tool.admin_reset.refused.tool_denied") >= Some(1));
    assert!(envoy.counter("palisade.mcp.tool.search_notes.allowed") >= Some(2));
    assert!(envoy.counter("palisade.mcp.refused.insufficient_scope") >= Some(1));
}

/// A POST of one body to the MCP endpoint, as a 2025-06-18 client sends it.
fn post(token: &str, body: &str) -> Request {
    Request::post("/mcp", body.to_string())
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
}

fn jsonrpc_error(r: &Response) -> (Value, i64) {
    let body = r.json();
    (
        body["id"].clone(),
        body["error"]["code"].as_i64().unwrap_or(0),
    )
}

#[test]
fn bad_origin_batch_and_malformed_json_never_reach_the_sdk_server() {
    if !installed() {
        return;
    }
    let op = OidcProvider::start(OidcProvider::free_port(), "k1");
    let server = McpServer::start();
    let port = OidcProvider::free_port();
    let envoy = mcp_envoy(&op, &server, port);
    let token = op.token_for(
        CLIENT,
        "mcp:read mcp:write",
        &format!("http://127.0.0.1:{port}/mcp"),
    );
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

    // The token works: the SDK server opens a session.
    let r = envoy.request(post(&token, initialize));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("mcp-session-id").is_some());

    // A page from another origin (DNS rebinding) is refused.
    let r = envoy.request(post(&token, initialize).header("origin", "http://evil.example"));
    assert_eq!(r.status, 403, "{}", r.text());

    // A batch (the 2025-03-26 revision only, not allowed on this route).
    let batch = format!("[{initialize}]");
    let r = envoy.request(post(&token, &batch));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(jsonrpc_error(&r), (Value::Null, -32600));

    // Malformed JSON.
    let r = envoy.request(post(&token, r#"{"jsonrpc":"2.0","id":7,"method":"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(jsonrpc_error(&r), (Value::Null, -32700));

    // A token for another resource is not for this server (RFC 8707).
    let other = op.token_for(CLIENT, "mcp:read", "http://127.0.0.1:1/mcp");
    let r = envoy.request(post(&other, initialize));
    assert_eq!(r.status, 401, "{}", r.text());

    // Only the first initialize reached the server.
    assert_eq!(server.received().len(), 1, "{:?}", server.received());

    assert_eq!(
        envoy.counter("palisade.mcp.refused.origin_not_allowed"),
        Some(1)
    );
    assert_eq!(
        envoy.counter("palisade.mcp.refused.batch_not_allowed"),
        Some(1)
    );
    assert_eq!(envoy.counter("palisade.mcp.refused.parse_error"), Some(1));
}
