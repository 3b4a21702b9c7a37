//! The bundle against the fake host: its configuration, and requests through
//! every stage in one VM, decisions handed on in memory.

use palisade_jwt::jws::b64url_encode;
use palisade_shared::contract;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::{Action, Engine, Module};
use serde_json::{json, Value};

use super::*;

const NOW_S: i64 = 1_700_000_000;

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

fn token(claims: Value) -> String {
    use ed25519_dalek::Signer;
    let header = b64url_encode(br#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#);
    let payload = b64url_encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = signing_key().sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}

fn suite() -> Value {
    let x = b64url_encode(signing_key().verifying_key().as_bytes());
    json!({
        "waf": {"paranoia_level": 1},
        "transport": {
            "policies": {"internal": {"client_certificate": {}, "hsts": {}}},
            "rules": [{"match": {"path": {"prefix": "/internal"}}, "policy": "internal"}]
        },
        "jwt": {
            "providers": {"corp": {
                "issuer": "https://idp", "audiences": ["api"],
                "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]}
            }},
            "rules": [{"match": {"path": {"prefix": "/public"}}}, {"match": {}, "requires": {"provider": "corp"}}]
        },
        "mfa": {
            "policies": {"admin": {"acr_values": ["mfa"]}},
            "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"}]
        },
        "llm": {"models": [{"name": "gpt4", "match": {"prefix": "gpt-4"}, "scopes": ["llm:gpt4"]}]},
        "ratelimit": {"rules": [{"name": "per_user", "key": [{"identity": "sub"}], "when_key_missing": "skip_rule",
                                 "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}]},
        "audit": {}
    })
}

fn configure(config: &Value, host: &FakeHost) -> Result<BundleStage, ConfigError> {
    Bundle::configure(config.to_string().as_bytes(), host)
}

fn engine(config: &Value, host: &FakeHost) -> Engine<BundleStage> {
    Engine::new(configure(config, host).unwrap(), Bundle::NAME, 1, host).unwrap()
}

fn bearer(acr: &str) -> String {
    let claims = json!({"iss": "https://idp", "aud": "api", "sub": "alice", "acr": acr,
                        "iat": NOW_S, "exp": NOW_S + 3600});
    format!("Bearer {}", token(claims))
}

/// Sends one request through the engine: headers, then the log.
fn request(
    engine: &Engine<BundleStage>,
    host: &FakeHost,
    path: &str,
    auth: Option<&str>,
) -> Action {
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "http"),
        ("x-request-id", "req-7"),
    ];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    host.set_request(&headers, b"");
    host.set_response_headers(&[(":status", "200")]);
    let mut slot = None;
    let action = engine.on_request_headers(3, &mut slot, true, host);
    engine.on_response_headers(3, &mut slot, host);
    engine.on_log(3, &mut slot, host);
    action
}

fn audit_record(host: &FakeHost) -> Value {
    host.property_json(contract::AUDIT).unwrap()
}

#[test]
fn a_missing_section_turns_its_stage_off() {
    let host = FakeHost::new();
    let stage = configure(&json!({"audit": {}}), &host).unwrap();
    assert!(stage.first.is_some());
    assert!(stage.then.first.is_none(), "no waf section, no WAF");
    let all = configure(&suite(), &host).unwrap();
    assert!(all.then.first.is_some() && all.then.then.first.is_some());
    assert!(all.then.then.then.first.is_some(), "jwt");
}

#[test]
fn unknown_sections_and_fields_are_refused_naming_them() {
    let host = FakeHost::new();
    let err = configure(&json!({"waf": {}, "jwtt": {}}), &host)
        .err()
        .unwrap();
    assert_eq!(err.path, "jwtt");
    assert!(err.message.contains("unknown section `jwtt`"), "{err}");
    let err = configure(&json!({"waf": {"paranoia": 2}}), &host)
        .err()
        .unwrap();
    assert_eq!(err.path, "waf.paranoia");
    let err = configure(&json!({"ratelimit": {"rules": [{"name": "x"}]}}), &host)
        .err()
        .unwrap();
    assert!(err.path.starts_with("ratelimit.rules[0]"), "{err}");
    let err = configure(&json!({"audit": []}), &host).err().unwrap();
    assert_eq!(err.path, "audit");
    for empty in ["", "{}", "  "] {
        let err = Bundle::configure(empty.as_bytes(), &host).err().unwrap();
        assert!(err.message.contains("no stage configured"), "{err}");
    }
}

#[test]
fn a_verified_request_passes_every_stage_and_is_audited_from_memory() {
    let host = FakeHost::new();
    host.set_now_ms(NOW_S * 1000);
    let engine = engine(&suite(), &host);
    let auth = bearer("pwd");
    assert_eq!(
        request(&engine, &host, "/orders?id=42", Some(&auth)),
        Action::Continue
    );
    assert!(host.replies().is_empty());
    let record = audit_record(&host);
    assert_eq!(record["identity"]["sub"], "alice", "{record}");
    assert_eq!(record["ratelimit"]["rule"], "per_user");
    assert_eq!(record["ratelimit"]["remaining"], 1);
    assert_eq!(record["waf"]["action"], "allowed");
    // Decisions came from memory: the only properties read are Envoy's
    // attributes, never another stage's filter state (but `palisade.denial`,
    // which a module beside the bundle may have written for the audit).
    let read = host.properties_read();
    assert!(
        read.iter()
            .all(|p| !p.starts_with("palisade.") || p == contract::DENIAL),
        "filter state read back inside one VM: {read:?}"
    );
    // Still published for Envoy's access log and other modules.
    assert_eq!(
        host.property_json(contract::IDENTITY).unwrap()["sub"],
        "alice"
    );
    assert_eq!(
        host.header_reads(),
        2,
        "the request map once, the response status once"
    );
}

#[test]
fn each_stage_refuses_with_its_own_answer_and_the_audit_record_says_who() {
    let host = FakeHost::new();
    host.set_now_ms(NOW_S * 1000);
    let engine = engine(&suite(), &host);

    // The WAF refuses before the JWT stage looks for a token.
    request(&engine, &host, "/public/search?q=1'%20OR%201=1--", None);
    assert_eq!(host.last_reply().unwrap().status, 403);
    assert_eq!(audit_record(&host)["denied_by"], "waf");
    assert_eq!(host.metric("palisade.jwt.denied.token_missing"), 0);

    // No token: the JWT challenge.
    request(&engine, &host, "/orders", None);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(audit_record(&host)["denied_by"], "jwt");

    // A token too weak for /admin: the RFC 9470 step-up challenge.
    request(&engine, &host, "/admin", Some(&bearer("pwd")));
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_user_authentication"));
    assert_eq!(audit_record(&host)["denied_by"], "mfa");

    // Identity-keyed rate limit: alice's bucket of 2 runs out (the refusals
    // above came before the rate limiter, so they spent nothing).
    let replies = host.replies().len();
    assert_eq!(
        request(&engine, &host, "/orders", Some(&bearer("mfa"))),
        Action::Continue
    );
    assert_eq!(
        request(&engine, &host, "/orders", Some(&bearer("mfa"))),
        Action::Continue
    );
    assert_eq!(host.replies().len(), replies);
    assert_eq!(
        request(&engine, &host, "/orders", Some(&bearer("mfa"))),
        Action::Pause
    );
    assert_eq!(host.last_reply().unwrap().status, 429);
    let record = audit_record(&host);
    assert_eq!(record["denied_by"], "ratelimit", "{record}");
    assert_eq!(record["identity"]["sub"], "alice");
}

/// An MCP `tools/call` through the bundle: the JWT stage's identity reaches
/// the MCP stage in memory, the rate limiter keys on the tool, the audit
/// record names it.
#[test]
fn mcp_calls_are_governed_per_tool_with_the_identity_in_memory() {
    let mut config = suite();
    config["mcp"] = json!({"routes": [{
        "match": {"path": {"prefix": "/mcp"}},
        "tools": {"search": "allow", "deploy": {"scopes": ["deploy"]}}
    }]});
    config["ratelimit"] = json!({"rules": [{"name": "per_tool", "key": [{"mcp": "tool"}],
        "when_key_missing": "skip_rule", "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}}]});
    let host = FakeHost::new();
    let engine = engine(&config, &host);
    let call = |tool: &str| {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}})
                .to_string();
        let auth = bearer("mfa");
        host.set_request(
            &[
                (":method", "POST"),
                (":path", "/mcp"),
                (":authority", "api.example.com"),
                (":scheme", "http"),
                ("authorization", &auth),
                ("accept", "application/json, text/event-stream"),
                ("content-type", "application/json"),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            body.as_bytes(),
        );
        host.set_response_headers(&[(":status", "200")]);
        let mut slot = None;
        assert_eq!(
            engine.on_request_headers(5, &mut slot, false, &host),
            Action::Continue
        );
        let action = engine.on_request_body(5, &mut slot, body.len(), true, &host);
        engine.on_log(5, &mut slot, &host);
        action
    };
    assert_eq!(call("search"), Action::Continue);
    let record = audit_record(&host);
    assert_eq!(record["mcp"]["tool"], "search");
    assert_eq!(record["outcome"], "allowed");
    assert_eq!(call("search"), Action::Pause, "the tool's bucket is spent");
    assert_eq!(host.last_reply().unwrap().status, 429);
    assert_eq!(audit_record(&host)["denied_by"], "ratelimit");
    assert_eq!(call("deploy"), Action::Pause, "no deploy scope");
    assert_eq!(host.last_reply().unwrap().status, 403);
    let record = audit_record(&host);
    assert_eq!(
        (
            record["denied_by"].as_str(),
            record["mcp"]["reason"].as_str()
        ),
        (Some("mcp"), Some("insufficient_scope"))
    );
}
