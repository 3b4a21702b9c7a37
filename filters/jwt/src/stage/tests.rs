//! The JWT stage in the engine, against the fake host: requests that wait
//! for remote keys, the fetch through an HTTP call, the refetch on an
//! unknown `kid`, and keys that never come.

use ed25519_dalek::Signer;
use palisade_shared::contract;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::{Action, Engine, Module};
use serde_json::{json, Value};

use super::*;
use crate::jws::b64url_encode;
use palisade_shared::engine::Flow;

const NOW_S: i64 = 1_800_000_000;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn jwks(keys: &[(u8, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(seed, kid)| {
            let x = b64url_encode(key(*seed).verifying_key().as_bytes());
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token(seed: u8, kid: &str) -> String {
    let header = b64url_encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#).as_bytes());
    let claims = json!({"iss": "https://idp", "aud": "api", "sub": "alice", "exp": NOW_S + 600});
    let input = format!("{header}.{}", b64url_encode(claims.to_string().as_bytes()));
    let signature = key(seed).sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature.to_bytes()))
}

fn remote_config() -> String {
    json!({
        "providers": {"corp": {
            "issuer": "https://idp", "audiences": ["api"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000}
        }},
        "key_wait_ms": 2000
    })
    .to_string()
}

struct Setup {
    host: FakeHost,
    engine: Engine<JwtStage>,
}

fn setup() -> Setup {
    let host = FakeHost::new();
    host.set_now_ms(NOW_S * 1000);
    let stage = JwtModule::configure(remote_config().as_bytes(), &host).unwrap();
    let engine = Engine::new(stage, JwtModule::NAME, 1, &host).unwrap();
    Setup { host, engine }
}

impl Setup {
    fn request(&self, context_id: u32, token: &str) -> (Action, Option<Flow<()>>) {
        self.host.set_request(
            &[
                (":method", "GET"),
                (":path", "/orders"),
                ("authorization", &format!("Bearer {token}")),
            ],
            b"",
        );
        let mut slot = None;
        let action = self
            .engine
            .on_request_headers(context_id, &mut slot, true, &self.host);
        (action, slot)
    }

    /// Answers the stage's last HTTP call.
    fn answer(&self, status: &str, body: &str) {
        let call = self.host.calls().last().cloned().expect("a call");
        self.host.set_call_response(status, body.as_bytes());
        self.engine
            .on_http_call_response(call.token, 1, body.len(), &self.host);
    }
}

#[test]
fn a_request_waits_for_the_first_keys_and_goes_on_when_they_come() {
    let s = setup();
    let (action, slot) = s.request(7, &token(1, "k1"));
    assert_eq!(action, Action::Pause, "no keys yet: the request waits");
    assert!(slot.is_none(), "parked with the engine");
    assert_eq!(s.host.metric("palisade.jwt.waited_for_keys"), 1);
    // The tick starts the fetch, through the configured cluster.
    s.engine.on_tick(&s.host);
    let call = s.host.calls().last().cloned().unwrap();
    assert_eq!(call.cluster, "idp");
    assert!(call.headers.contains(&(":path".into(), "/jwks".into())));
    // The keys arrive: the waiting request is decided again and resumed.
    s.answer("200", &jwks(&[(1, "k1")]));
    assert_eq!(s.host.resumed(), [7]);
    assert!(s.host.replies().is_empty());
    assert_eq!(s.host.metric("palisade.jwt.jwks_fetch_ok"), 1);
    assert_eq!(
        s.host.property_json(contract::IDENTITY).unwrap()["sub"],
        "alice"
    );
    assert!(s.host.logged("palisade.jwt: provider `corp`: keys fetched"));
    // Every worker takes them from shared data.
    assert!(s.host.shared_value("palisade.jwt.keys.corp").is_some());
    // The next request needs no wait.
    let (action, _) = s.request(8, &token(1, "k1"));
    assert_eq!(action, Action::Continue);
}

#[test]
fn keys_that_never_come_refuse_with_503_at_the_deadline() {
    let s = setup();
    s.request(7, &token(1, "k1"));
    s.engine.on_tick(&s.host);
    s.answer("500", "oops");
    // A failed fetch wakes the waiter: keys unavailable, closed.
    let reply = s.host.last_reply().expect("a refusal");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(s.host.metric("palisade.jwt.denied.keys_unavailable"), 1);
    assert_eq!(s.host.metric("palisade.jwt.jwks_fetch_failed"), 1);
    assert_eq!(
        s.host.property_json(contract::DENIAL).unwrap()["reason"],
        "keys_unavailable"
    );

    // A request whose keys are still loading when its wait runs out.
    let s = setup();
    s.request(9, &token(1, "k1"));
    s.host.advance_ms(2_500);
    s.engine.on_tick(&s.host);
    assert_eq!(s.host.last_reply().unwrap().status, 503);
    assert!(s.host.resumed().is_empty());
}

#[test]
fn an_unknown_kid_triggers_one_refetch_and_the_rotated_key_is_accepted() {
    let s = setup();
    s.request(7, &token(1, "k1"));
    s.engine.on_tick(&s.host);
    s.answer("200", &jwks(&[(1, "k1")]));
    let calls = s.host.calls().len();
    // A token signed with a key the set does not have yet: the stage asks
    // for the keys again and holds the request.
    let (action, _) = s.request(8, &token(2, "k2"));
    assert_eq!(action, Action::Pause);
    assert_eq!(s.host.metric("palisade.jwt.kid_refetch"), 1);
    s.engine.on_tick(&s.host);
    assert_eq!(s.host.calls().len(), calls + 1, "one refetch");
    s.answer("200", &jwks(&[(1, "k1"), (2, "k2")]));
    assert!(s.host.resumed().contains(&8));
    // A second unknown kid right after is refused at once: refetches are
    // rate-bounded across workers.
    let (action, _) = s.request(9, &token(3, "k3"));
    assert_eq!(action, Action::Pause);
    let reply = s.host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

/// A rule that guards an MCP server as an OAuth protected resource: the
/// RFC 9728 metadata is served, challenges point to it, and tokens must
/// name the resource (RFC 8707).
#[test]
fn a_protected_resource_serves_its_metadata_and_binds_the_audience() {
    let config = json!({
        "providers": {"corp": {"issuer": "https://idp", "jwks": serde_json::from_str::<Value>(&jwks(&[(1, "k1")])).unwrap()}},
        "rules": [{"match": {"path": {"prefix": "/mcp"}}, "requires": {"provider": "corp"},
                   "scopes": {"all_of": ["mcp"]},
                   "protected_resource": {"resource": "https://tools.example.com/mcp"}}]
    })
    .to_string();
    let host = FakeHost::new();
    host.set_now_ms(NOW_S * 1000);
    let engine = Engine::new(
        JwtModule::configure(config.as_bytes(), &host).unwrap(),
        JwtModule::NAME,
        1,
        &host,
    )
    .unwrap();
    let send = |path: &str, token: Option<String>| {
        let mut headers = vec![(":method", "GET".to_string()), (":path", path.to_string())];
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        host.set_request(&refs, b"");
        let mut slot = None;
        engine.on_request_headers(2, &mut slot, true, &host)
    };
    let signed = |aud: &str| {
        let header = b64url_encode(br#"{"alg":"EdDSA","kid":"k1"}"#);
        let claims = json!({"iss": "https://idp", "aud": aud, "sub": "alice", "scope": "mcp", "exp": NOW_S + 600});
        let input = format!("{header}.{}", b64url_encode(claims.to_string().as_bytes()));
        format!(
            "{input}.{}",
            b64url_encode(&key(1).sign(input.as_bytes()).to_bytes())
        )
    };

    assert_eq!(
        send("/.well-known/oauth-protected-resource/mcp", None),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"resource": "https://tools.example.com/mcp", "authorization_servers": ["https://idp"],
               "scopes_supported": ["mcp"], "bearer_methods_supported": ["header"]})
    );
    assert_eq!(host.metric("palisade.jwt.resource_metadata_served"), 1);
    assert!(
        host.property_json(contract::DENIAL).is_none(),
        "a service, not a refusal"
    );

    assert_eq!(send("/mcp", None), Action::Pause);
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            r#"Bearer realm="palisade", scope="mcp", resource_metadata="https://tools.example.com/.well-known/oauth-protected-resource/mcp""#
        )
    );

    assert_eq!(
        send("/mcp", Some(signed("https://tools.example.com/mcp"))),
        Action::Continue
    );
    assert_eq!(
        send("/mcp", Some(signed("https://other.example.com/mcp"))),
        Action::Pause
    );
    let reply = host.last_reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("resource_metadata="));
    assert_eq!(
        host.property_json(contract::DENIAL).unwrap()["reason"],
        "audience_mismatch"
    );
}
