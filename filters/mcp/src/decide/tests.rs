//! The decision, table by table: headers, message hygiene, versions and
//! sessions, each rule kind, batches, listings.

use palisade_shared::contract::Identity;
use serde_json::{json, Value};

use super::*;
use crate::config::Config;

const CONFIG: &str = r#"{"routes":[{
    "match": {"path": {"exact": "/mcp"}},
    "allowed_origins": ["https://app.example.com"],
    "require_session": true,
    "max_message_bytes": 2048,
    "methods": {"initialize": "allow", "ping": "allow", "notifications/*": "allow",
                "logging/setLevel": "deny", "*": {"authenticated": true}},
    "tools": {
        "search": "allow",
        "create_issue": {"scopes": ["issues:write"], "max_argument_bytes": 200,
                         "arguments": {"title": {"type": "string", "max_length": 80}},
                         "log_arguments": ["title"]},
        "team_report": {"claims": [{"claim": "sub", "one_of": ["alice"]}]},
        "admin_*": "deny"
    },
    "resources": [
        {"prefix": "file:///docs/", "access": "allow"},
        {"template": "db://{table}/rows", "access": {"scopes": ["db:read"]}}
    ],
    "prompts": {"summarize": "allow", "*": "deny"},
    "realm": "mcp",
    "resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
}, {
    "match": {"path": {"exact": "/legacy"}},
    "protocol_versions": ["2025-03-26", "2025-06-18"],
    "tools": {"*": "allow", "admin_*": "deny"}
}]}"#;

fn config() -> Config {
    Config::from_json(CONFIG.as_bytes()).unwrap()
}

const SESSION: Head<'static> = Head {
    http_method: "POST",
    accept: Some("application/json, text/event-stream"),
    content_type: Some("application/json"),
    origin: None,
    protocol_version: Some("2025-06-18"),
    session_id: Some("s-1"),
    mcp_method: None,
    mcp_name: None,
};

fn alice(scopes: &[&str]) -> Identity {
    Identity {
        provider: "op".into(),
        iss: "https://idp".into(),
        sub: Some("alice".into()),
        scope: scopes.iter().map(|s| s.to_string()).collect(),
        ..Identity::default()
    }
}

fn call(tool: &str, arguments: Value) -> String {
    json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":arguments}}).to_string()
}

fn request(method: &str, params: Value) -> String {
    json!({"jsonrpc":"2.0","id":"r1","method":method,"params":params}).to_string()
}

fn body(route: usize, head: &Head<'_>, text: &str, identity: Option<&Identity>) -> BodyVerdict {
    let c = config();
    decide_body(&c.routes[route], head, text.as_bytes(), true, identity)
}

/// The refusal's reason and status, or `None` when allowed.
fn outcome(v: &BodyVerdict) -> Option<(Reason, u16)> {
    v.refused.as_ref().map(|r| (r.reason, r.status))
}

#[test]
fn headers() {
    let c = config();
    let route = &c.routes[0];
    let h = |f: &dyn Fn(&mut Head<'static>)| {
        let mut head = SESSION;
        f(&mut head);
        decide_head(route, &head, false)
    };
    let reason = |v: HeadVerdict| match v {
        HeadVerdict::Refuse(r) => Some((r.reason, r.status)),
        _ => None,
    };
    assert_eq!(h(&|_| {}), HeadVerdict::ReadBody { max_bytes: 2048 });
    assert_eq!(
        reason(h(&|h| h.origin = Some("https://app.example.com"))),
        None
    );
    assert_eq!(
        reason(h(&|h| h.origin = Some("HTTPS://APP.example.com"))),
        None
    );
    assert_eq!(
        reason(h(&|h| h.origin = Some("https://evil.example"))),
        Some((Reason::OriginNotAllowed, 403))
    );
    assert_eq!(
        reason(h(&|h| h.origin = Some("null"))),
        Some((Reason::OriginNotAllowed, 403))
    );
    for accept in [
        None,
        Some("application/json"),
        Some("text/event-stream"),
        Some("application/json, text/event-stream;q=0"),
    ] {
        assert_eq!(
            reason(h(&|h| h.accept = accept)),
            Some((Reason::NotAcceptable, 406)),
            "{accept:?}"
        );
    }
    for accept in [
        "*/*",
        "application/*, text/*",
        "text/event-stream; q=0.5, application/json",
    ] {
        assert_eq!(reason(h(&|h| h.accept = Some(accept))), None, "{accept}");
    }
    assert_eq!(
        reason(h(&|h| h.content_type = Some("text/plain"))),
        Some((Reason::UnsupportedMediaType, 415))
    );
    assert_eq!(
        reason(h(
            &|h| h.content_type = Some("application/json; charset=utf-8")
        )),
        None
    );
    assert_eq!(
        reason(decide_head(route, &SESSION, true)),
        Some((Reason::ParseError, 400)),
        "a POST without a body"
    );
    assert_eq!(
        reason(h(&|h| h.http_method = "PUT")),
        Some((Reason::HttpMethodNotAllowed, 405))
    );
    assert_eq!(reason(h(&|h| h.http_method = "OPTIONS")), None);
    // GET: the server's stream.
    let get = |f: &dyn Fn(&mut Head<'static>)| {
        h(&|h| {
            h.http_method = "GET";
            h.accept = Some("text/event-stream");
            f(h)
        })
    };
    assert_eq!(get(&|_| {}), HeadVerdict::Pass);
    assert_eq!(
        reason(get(&|h| h.accept = Some("application/json"))),
        Some((Reason::NotAcceptable, 406))
    );
    assert_eq!(
        reason(get(&|h| h.session_id = None)),
        Some((Reason::SessionRequired, 400))
    );
    assert_eq!(
        reason(get(&|h| h.protocol_version = None)),
        Some((Reason::ProtocolVersion, 400))
    );
    assert_eq!(
        reason(get(&|h| h.protocol_version = Some("2024-11-05"))),
        Some((Reason::ProtocolVersion, 400))
    );
    // DELETE ends a session: it needs one.
    assert_eq!(h(&|h| h.http_method = "DELETE"), HeadVerdict::Pass);
    assert_eq!(
        reason(h(&|h| {
            h.http_method = "DELETE";
            h.session_id = None
        })),
        Some((Reason::SessionRequired, 400))
    );
}

#[test]
fn each_message_field_wrong_is_a_json_rpc_error() {
    let cases: &[(&str, Reason, i64, Value)] = &[
        ("not json", Reason::ParseError, -32700, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","id":2}"#,
            Reason::ParseError,
            -32700,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            Reason::InvalidRequest,
            -32600,
            json!(1),
        ),
        (
            r#"{"id":1,"method":"ping"}"#,
            Reason::InvalidRequest,
            -32600,
            json!(1),
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            Reason::InvalidRequest,
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            Reason::InvalidRequest,
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"a","method":7}"#,
            Reason::InvalidRequest,
            -32600,
            json!("a"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"a","method":"ping","params":"x"}"#,
            Reason::InvalidRequest,
            -32600,
            json!("a"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"a"}"#,
            Reason::InvalidRequest,
            -32600,
            json!("a"),
        ),
        (
            r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
            Reason::InvalidRequest,
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#,
            Reason::InvalidParams,
            -32602,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":5}}"#,
            Reason::InvalidParams,
            -32602,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"resources/read"}"#,
            Reason::InvalidParams,
            -32602,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":null}}"#,
            Reason::InvalidParams,
            -32602,
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"completion/complete","params":{"ref":{"type":"ref/x"}}}"#,
            Reason::InvalidParams,
            -32602,
            json!(7),
        ),
    ];
    let id = alice(&[]);
    for (text, reason, code, rid) in cases {
        let v = body(0, &SESSION, text, Some(&id));
        let refused = v
            .refused
            .as_ref()
            .unwrap_or_else(|| panic!("{text} passed"));
        assert_eq!((refused.reason, refused.status), (*reason, 400), "{text}");
        let e = &refused.errors[0];
        assert_eq!((e.code, &e.id), (*code, rid), "{text}");
        assert_eq!(e.data["reason"], reason.as_str());
        assert!(v.decision.decision == "invalid", "{text}: {:?}", v.decision);
    }
    let c = config();
    let big = decide_body(&c.routes[0], &SESSION, &[b' '; 2049], false, None);
    assert_eq!(outcome(&big), Some((Reason::TooLarge, 413)));
}

#[test]
fn versions_and_sessions_after_initialize() {
    let init = request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let bare = Head {
        protocol_version: None,
        session_id: None,
        ..SESSION
    };
    assert_eq!(
        outcome(&body(0, &bare, &init, None)),
        None,
        "initialize needs neither"
    );
    let ping = request("ping", json!({}));
    assert_eq!(outcome(&body(0, &SESSION, &ping, None)), None);
    let no_version = Head {
        protocol_version: None,
        ..SESSION
    };
    assert_eq!(
        outcome(&body(0, &no_version, &ping, None)),
        Some((Reason::ProtocolVersion, 400))
    );
    let modern = Head {
        protocol_version: Some("2026-07-28"),
        ..SESSION
    };
    let v = body(0, &modern, &ping, None);
    assert_eq!(outcome(&v), Some((Reason::ProtocolVersion, 400)));
    let e = &v.refused.unwrap().errors[0];
    assert_eq!(e.code, -32022);
    assert_eq!(e.id, "r1");
    assert_eq!(e.data["supported"], json!(["2025-06-18", "2025-11-25"]));
    let no_session = Head {
        session_id: None,
        ..SESSION
    };
    assert_eq!(
        outcome(&body(0, &no_session, &ping, None)),
        Some((Reason::SessionRequired, 400))
    );
    let bad_session = Head {
        session_id: Some("a b"),
        ..SESSION
    };
    assert_eq!(
        outcome(&body(0, &bad_session, &ping, None)),
        Some((Reason::SessionRequired, 400))
    );
    // A route that accepts 2025-03-26 reads a missing header as that revision.
    assert_eq!(outcome(&body(1, &no_version, &ping, None)), None);
}

#[test]
fn every_rule_kind() {
    let reader = alice(&["db:read"]);
    let writer = alice(&["issues:write"]);
    let bob = Identity {
        sub: Some("bob".into()),
        ..alice(&[])
    };
    let read = |uri: &str| request("resources/read", json!({"uri": uri}));
    type Case<'a> = (String, Option<&'a Identity>, Option<(Reason, u16)>);
    let cases: Vec<Case<'_>> = vec![
        // Methods.
        (request("ping", json!({})), None, None),
        (
            request("logging/setLevel", json!({"level": "debug"})),
            Some(&writer),
            Some((Reason::MethodDenied, 403)),
        ),
        (
            request("tools/list", json!({})),
            None,
            Some((Reason::Unauthenticated, 401)),
        ),
        (request("tools/list", json!({})), Some(&bob), None),
        // Tools: allow, deny by prefix, unnamed, scopes, claims.
        (call("search", json!({"q": "x"})), Some(&bob), None),
        (
            call("admin_drop", json!({})),
            Some(&writer),
            Some((Reason::ToolDenied, 403)),
        ),
        (
            call("unknown", json!({})),
            Some(&writer),
            Some((Reason::ToolDenied, 403)),
        ),
        (
            call("create_issue", json!({"title": "t"})),
            Some(&reader),
            Some((Reason::InsufficientScope, 403)),
        ),
        (
            call("create_issue", json!({"title": "t"})),
            Some(&writer),
            None,
        ),
        (call("team_report", json!({})), Some(&writer), None),
        (
            call("team_report", json!({})),
            Some(&bob),
            Some((Reason::ClaimMismatch, 403)),
        ),
        // Arguments.
        (
            call("create_issue", json!({"title": 5})),
            Some(&writer),
            Some((Reason::InvalidArguments, 400)),
        ),
        (
            call("create_issue", json!({"title": "x".repeat(81)})),
            Some(&writer),
            Some((Reason::InvalidArguments, 400)),
        ),
        (
            call(
                "create_issue",
                json!({"title": "t", "body": "x".repeat(200)}),
            ),
            Some(&writer),
            Some((Reason::InvalidArguments, 400)),
        ),
        // Resources: prefix, template with scopes, outside, not normal.
        (read("file:///docs/guide.md"), Some(&bob), None),
        (
            read("file:///etc/passwd"),
            Some(&writer),
            Some((Reason::ResourceDenied, 403)),
        ),
        (
            read("file:///docs/../etc/passwd"),
            Some(&writer),
            Some((Reason::ResourceDenied, 403)),
        ),
        (
            read("file:///docs/%2e%2e/etc/passwd"),
            Some(&writer),
            Some((Reason::ResourceDenied, 403)),
        ),
        (read("db://users/rows"), Some(&reader), None),
        (
            read("db://users/rows"),
            Some(&bob),
            Some((Reason::InsufficientScope, 403)),
        ),
        (
            read("db://users/x/rows"),
            Some(&reader),
            Some((Reason::ResourceDenied, 403)),
        ),
        (
            request("resources/subscribe", json!({"uri": "file:///secret"})),
            Some(&reader),
            Some((Reason::ResourceDenied, 403)),
        ),
        // Prompts.
        (
            request("prompts/get", json!({"name": "summarize"})),
            Some(&bob),
            None,
        ),
        (
            request("prompts/get", json!({"name": "leak"})),
            Some(&bob),
            Some((Reason::PromptDenied, 403)),
        ),
        (
            request(
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "leak"}, "argument": {"name": "a", "value": "b"}}),
            ),
            Some(&bob),
            Some((Reason::PromptDenied, 403)),
        ),
        (
            request(
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "file:///docs/{x}"}, "argument": {"name": "x", "value": ""}}),
            ),
            Some(&bob),
            None,
        ),
        // A client's answer to a server request is not a call.
        (
            json!({"jsonrpc":"2.0","id":5,"result":{}}).to_string(),
            None,
            None,
        ),
    ];
    for (text, identity, want) in &cases {
        let v = body(0, &SESSION, text, *identity);
        assert_eq!(
            outcome(&v),
            *want,
            "{text} as {:?}",
            identity.and_then(|i| i.scope.first())
        );
    }
}

#[test]
fn refusals_carry_the_id_the_challenge_and_the_decision() {
    let reader = alice(&[]);
    let v = body(
        0,
        &SESSION,
        &call("create_issue", json!({"title": "hello", "token": "s3cret"})),
        Some(&reader),
    );
    let r = v.refused.unwrap();
    assert_eq!(r.errors[0].id, 7);
    assert_eq!(r.errors[0].code, -32003);
    assert_eq!(
        r.challenge,
        Challenge::InsufficientScope("issues:write".into())
    );
    assert_eq!(v.decision.tool.as_deref(), Some("create_issue"));
    assert_eq!(v.decision.id.as_deref(), Some("7"));
    assert_eq!(
        (v.decision.decision.as_str(), v.decision.reason.as_deref()),
        ("denied", Some("insufficient_scope"))
    );
    assert_eq!(
        v.decision.arguments.into_iter().collect::<Vec<_>>(),
        [("title".to_string(), "hello".to_string())],
        "only the listed argument, never the others"
    );
    let anon = body(0, &SESSION, &call("create_issue", json!({})), None);
    let r = anon.refused.unwrap();
    assert_eq!((r.status, r.errors[0].code), (401, -32004));
    assert_eq!(
        r.challenge,
        Challenge::Unauthenticated { scope: None },
        "the method rule asks first"
    );
    let ok = body(0, &SESSION, &read("file:///docs/a"), Some(&reader));
    assert_eq!(ok.refused, None);
    assert_eq!(ok.decision.resource.as_deref(), Some("file:///docs/a"));
    assert_eq!(ok.decision.decision, "allowed");
}

fn read(uri: &str) -> String {
    request("resources/read", json!({"uri": uri}))
}

#[test]
fn mirrored_headers_must_agree_with_the_body() {
    let text = call("search", json!({}));
    let id = alice(&[]);
    let agree = Head {
        mcp_method: Some("tools/call"),
        mcp_name: Some("search"),
        ..SESSION
    };
    assert_eq!(outcome(&body(0, &agree, &text, Some(&id))), None);
    for (method, name) in [
        (Some("tools/list"), None),
        (None, Some("admin_drop")),
        (Some("tools/call"), Some("x")),
    ] {
        let h = Head {
            mcp_method: method,
            mcp_name: name,
            ..SESSION
        };
        let v = body(0, &h, &text, Some(&id));
        assert_eq!(outcome(&v), Some((Reason::HeaderMismatch, 400)));
        assert_eq!(v.refused.unwrap().errors[0].code, -32020);
    }
}

#[test]
fn batches_only_where_2025_03_26_is_allowed() {
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{}},
        {"jsonrpc":"2.0","id":2,"method":"tools/list"}
    ])
    .to_string();
    let v = body(0, &SESSION, &batch, None);
    assert_eq!(outcome(&v), Some((Reason::BatchNotAllowed, 400)));
    assert_eq!(v.decision.batch, Some(3));
    let old = Head {
        protocol_version: None,
        session_id: None,
        ..SESSION
    };
    let ok = body(1, &old, &batch, None);
    assert_eq!(outcome(&ok), None);
    assert_eq!(ok.listings, [(json!(2), ListKind::Tools)]);
    assert_eq!(ok.counted.len(), 3);
    // A 2025-06-18 client on the same route: no batches.
    assert_eq!(
        outcome(&body(1, &SESSION, &batch, None)),
        Some((Reason::BatchNotAllowed, 400))
    );
    // One refused member refuses the batch; each request gets an error.
    let mixed = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_drop"}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{}}
    ])
    .to_string();
    let v = body(1, &old, &mixed, None);
    let r = v.refused.clone().unwrap();
    assert_eq!(
        (r.status, r.reason, r.batch),
        (403, Reason::ToolDenied, true)
    );
    let ids: Vec<(Value, i64)> = r.errors.iter().map(|e| (e.id.clone(), e.code)).collect();
    assert_eq!(ids, [(json!(1), -32600), (json!(2), -32003)]);
    assert_eq!(v.decision.tool.as_deref(), Some("admin_drop"));
    // An invalid member, or initialize in a batch: the batch is invalid.
    let invalid =
        json!([{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","id":"x"}]).to_string();
    let r = body(1, &old, &invalid, None).refused.unwrap();
    assert_eq!(
        (r.reason, r.errors.len(), r.errors[0].id.clone()),
        (Reason::InvalidRequest, 1, json!("x"))
    );
    let init = json!([{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]).to_string();
    assert_eq!(
        outcome(&body(1, &old, &init, None)),
        Some((Reason::InvalidRequest, 400))
    );
}

#[test]
fn listings_show_only_what_the_caller_may_use() {
    let c = config();
    let route = &c.routes[0];
    let writer = alice(&["issues:write"]);
    let bob = Identity {
        sub: Some("bob".into()),
        ..alice(&[])
    };
    let tools = [
        "search",
        "create_issue",
        "team_report",
        "admin_drop",
        "other",
    ];
    let shown = |id: Option<&Identity>| -> Vec<&str> {
        tools
            .iter()
            .copied()
            .filter(|t| may_list(route, ListKind::Tools, t, id))
            .collect()
    };
    assert_eq!(
        shown(Some(&writer)),
        ["search", "create_issue", "team_report"]
    );
    assert_eq!(shown(Some(&bob)), ["search"]);
    assert_eq!(
        shown(None),
        Vec::<&str>::new(),
        "tools/call needs an identity on this route"
    );
    assert!(may_list(
        route,
        ListKind::Resources,
        "file:///docs/a",
        Some(&bob)
    ));
    assert!(
        !may_list(route, ListKind::Resources, "file:///docs/a", None),
        "resources/read needs an identity"
    );
    assert!(!may_list(
        route,
        ListKind::Resources,
        "db://t/rows",
        Some(&bob)
    ));
    assert!(may_list(
        route,
        ListKind::Resources,
        "db://t/rows",
        Some(&alice(&["db:read"]))
    ));
    assert!(may_list(route, ListKind::Prompts, "summarize", Some(&bob)));
    assert!(!may_list(route, ListKind::Prompts, "leak", Some(&writer)));
    let v = body(0, &SESSION, &request("tools/list", json!({})), Some(&bob));
    assert_eq!(v.listings, [(json!("r1"), ListKind::Tools)]);
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string();
    assert!(body(0, &SESSION, &note, None).listings.is_empty());
}
