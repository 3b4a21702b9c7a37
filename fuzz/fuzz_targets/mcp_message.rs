//! The MCP stage's decisions on what a client sends: the request headers
//! (Origin, Accept, Content-Type, protocol version, session, the mirrored
//! method and name) and the POST body (JSON-RPC messages, batches, tool
//! arguments, resource URIs against prefixes and templates), with or
//! without an identity; and the server-sent-events splitter of the answers.
//! Nothing panics, a refusal is an HTTP error with one JSON-RPC error per
//! message, and an allowed body was one well-formed message (or a batch
//! where the route allows batches).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use palisade_mcp::config::Config;
use palisade_mcp::decide::{decide_body, decide_head, Head, HeadVerdict};
use palisade_mcp::sse::Splitter;
use palisade_shared::contract::Identity;

#[derive(Debug, Arbitrary)]
struct Input {
    route: bool,
    http_method: String,
    accept: Option<String>,
    content_type: Option<String>,
    origin: Option<String>,
    protocol_version: Option<String>,
    session_id: Option<String>,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    end_of_stream: bool,
    complete: bool,
    scopes: Option<Vec<String>>,
    body: Vec<u8>,
    sse_split: usize,
}

/// Two routes: the current revisions with sessions, and one that also
/// accepts 2025-03-26 (batches), each with every kind of rule.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let rules = r#""tools": {
                "search": {"any_scopes": ["read"], "log_arguments": ["q"]},
                "write": {"scopes": ["write"], "max_argument_bytes": 256,
                          "arguments": {"text": {"type": "string", "max_length": 40, "required": true},
                                        "mode": {"one_of": ["a", "b"]},
                                        "path": {"type": "string", "pattern": "/srv/[a-z]+"}},
                          "only_listed_arguments": true},
                "admin*": "deny",
                "*": {"authenticated": true}
            },
            "resources": [
                {"prefix": "file:///srv/public/", "access": "allow"},
                {"template": "notes://{user}/items/{id}", "access": {"scopes": ["read"]}},
                {"exact": "config://app", "access": "deny"}
            ],
            "prompts": {"summary": "allow", "*": {"claims": [{"claim": "sub", "one_of": ["alice"]}]}}"#;
        let doc = format!(
            r#"{{"routes": [
                {{"match": {{"path": {{"exact": "/mcp"}}}}, "allowed_origins": ["https://app.example"],
                  "require_session": true, "max_message_bytes": 4096, "max_depth": 8,
                  "resource_metadata": "https://api.example/.well-known/oauth-protected-resource/mcp", {rules}}},
                {{"match": {{"path": {{"exact": "/old"}}}}, "protocol_versions": ["2025-03-26", "2025-06-18"],
                  "methods": {{"initialize": "allow", "tools/*": "allow", "resources/read": "allow", "ping": "deny"}}, {rules}}}
            ]}}"#
        );
        Config::from_json(doc.as_bytes()).unwrap()
    })
}

fuzz_target!(|input: Input| {
    let config = config();
    let route = &config.routes[usize::from(input.route)];
    let head = Head {
        http_method: &input.http_method,
        accept: input.accept.as_deref(),
        content_type: input.content_type.as_deref(),
        origin: input.origin.as_deref(),
        protocol_version: input.protocol_version.as_deref(),
        session_id: input.session_id.as_deref(),
        mcp_method: input.mcp_method.as_deref(),
        mcp_name: input.mcp_name.as_deref(),
    };
    if let HeadVerdict::Refuse(refused) = decide_head(route, &head, input.end_of_stream) {
        assert!((400..500).contains(&refused.status), "{refused:?}");
        assert_eq!(refused.errors.len(), 1);
    }
    let identity = input.scopes.map(|scope| Identity {
        provider: "corp".into(),
        iss: "https://idp".into(),
        sub: Some("alice".into()),
        scope,
        ..Identity::default()
    });
    let verdict = decide_body(route, &head, &input.body, input.complete, identity.as_ref());
    match &verdict.refused {
        Some(refused) => {
            assert!((400..500).contains(&refused.status), "{refused:?}");
            assert!(!refused.errors.is_empty());
            assert!(refused.batch || refused.errors.len() == 1);
        }
        None => {
            let value: serde_json::Value = serde_json::from_slice(&input.body).unwrap();
            assert!(value.is_object() || (value.is_array() && route.allows_batches()));
            assert_eq!(verdict.decision.decision, "allowed");
        }
    }

    let mut splitter = Splitter::default();
    let at = input.sse_split.min(input.body.len());
    let mut events = splitter.push(&input.body[..at]);
    events.extend(splitter.push(&input.body[at..]));
    events.extend(splitter.finish());
    for event in &events {
        let _ = event.data();
    }
});
