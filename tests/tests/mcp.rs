//! MCP governance end to end, with real MCP parts: a server and a client
//! built on the official MCP TypeScript SDK (`@modelcontextprotocol/sdk`,
//! tests/mcp-server.mjs and tests/mcp-client.mjs) talk Streamable HTTP
//! through Envoy running the JWT stage (an OAuth protected resource, RFC 9728
//! and 8707) and the MCP stage, with tokens from the `oidc-provider` IdP.
//! The client knows only the server's URL and its client credentials: it
//! finds the authorization server from the metadata named in the first 401.

use std::io::{BufRead, BufReader};
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
        let mut child = Command::new("node")
            .arg(tests.join("mcp-server.mjs"))
            .arg(port.to_string())
            .current_dir(&tests)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.starts_with("ready") {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("the MCP server did not start");
            }
        }
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

fn installed() -> bool {
    let sdk = palisade_e2e::repo_root().join("tests/node_modules/@modelcontextprotocol/sdk");
    if !sdk.exists() {
        println!("skipping: {} is absent (make node-deps)", sdk.display());
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
fn run_client(url: &str, issuer: &str, client: (&str, &str), scope: &str) -> Value {
    let tests = palisade_e2e::repo_root().join("tests");
    let out = Command::new("node")
        .arg(tests.join("mcp-client.mjs"))
        .args([url, issuer, client.0, client.1, scope])
        .current_dir(&tests)
        .stderr(Stdio::inherit())
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("client report {e}: {text}"))
}

fn ok(report: &Value, step: &str) -> Value {
    let s = &report["steps"][step];
    assert_eq!(s["ok"], true, "{step}: {s}");
    s["result"].clone()
}

/// `code`: the JSON-RPC error the body must carry; `None` where the SDK
/// raises its own error (after a 403 for a missing scope it asks for a
/// token with that scope, and gives up when the IdP will not grant it).
fn refused(report: &Value, step: &str, status: u16, code: Option<i64>) {
    let s = &report["steps"][step];
    assert_eq!(s["ok"], false, "{step} should be refused: {s}");
    // The SDK raises the HTTP status as the error's code, with the body
    // (the JSON-RPC error) in its message.
    assert_eq!(s["code"], status, "{step}: {s}");
    if let Some(code) = code {
        let error = s["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!(r#""code":{code}"#)),
            "{step}: {error}"
        );
    }
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

    // A client with both scopes.
    let full = run_client(&url, &op.issuer(), CLIENT, "mcp:read mcp:write");
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
    let fetched = |suffix: &str, status: u64| {
        exchanges.iter().any(|x| {
            x["url"].as_str().is_some_and(|u| u.ends_with(suffix)) && x["status"] == status
        })
    };
    assert!(
        fetched("/.well-known/oauth-protected-resource/mcp", 200),
        "{exchanges:?}"
    );
    assert!(fetched("/token", 200), "{exchanges:?}");
    let connect = ok(&full, "connect");
    assert!(connect["session"].is_string(), "{connect}");
    // The listing shows what this caller may call: never the denied tool.
    assert_eq!(
        ok(&full, "list_tools"),
        json!(["search_notes", "write_note"])
    );
    assert_eq!(text_of(&ok(&full, "search")), "searched: q3");
    assert_eq!(text_of(&ok(&full, "write")), "written: 5 characters");
    refused(&full, "write_oversized", 400, Some(-32602));
    refused(&full, "admin", 403, Some(-32003));
    assert_eq!(text_of(&ok(&full, "read_public")), "public note 1");
    refused(&full, "read_private", 403, Some(-32003));
    ok(&full, "close");

    // A client with the read scope only: the write tool is neither listed
    // nor callable, and its refusal names the scope it needs.
    let reader = run_client(&url, &op.issuer(), READER, "mcp:read");
    assert_eq!(ok(&reader, "list_tools"), json!(["search_notes"]));
    assert_eq!(text_of(&ok(&reader, "search")), "searched: q3");
    refused(&reader, "write", 403, None);
    assert!(
        reader["exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["status"] == 403
                && x["www_authenticate"].as_str().is_some_and(|c| c
                    .contains("insufficient_scope")
                    && c.contains(r#"scope="mcp:write""#))),
        "{}",
        reader["exchanges"]
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
