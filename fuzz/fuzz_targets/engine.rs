//! The bundle (every stage in one engine) over the fake host, driven by
//! arbitrary events in arbitrary order: request heads with any headers and
//! signed or forged tokens, bodies in chunks, trailers, response headers,
//! logs, ticks, time passing, and answers (good, bad, late) to the JWT
//! stage's key fetches. Nothing panics; every reply sent is a refusal.
//!
//! Each configuration's engine is built once per process (compiling the
//! WAF's rules takes far longer than a request) and serves every input, as
//! a worker serves requests: what the stages keep (key sets, buckets, the
//! token cache) carries over from one input to the next. Each input's
//! requests are ended (logged and forgotten) before the next one starts.
#![no_main]

use std::collections::HashMap;
use std::rc::Rc;

use arbitrary::Arbitrary;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use palisade::{Bundle, BundleStage};
use palisade_fuzz::Header;
use palisade_jwt::jws::b64url_encode;
use palisade_shared::engine::fake::FakeHost;
use palisade_shared::engine::{Engine, FlowSlot, Host, Module, Stage};

const NOW_S: i64 = 1_700_000_000;

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn jwks(kid: &str) -> String {
    let x = b64url_encode(signing_key().verifying_key().as_bytes());
    format!(r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "{x}", "kid": "{kid}"}}]}}"#)
}

/// The configurations: every stage with inline and remote keys; a strict
/// WAF with small bodies and transport policies (plaintext: refused or
/// let through with HSTS); remote keys only (requests wait for them).
fn config(which: u8) -> String {
    let waf_strict = r#"{"paranoia_level": 4, "anomaly_threshold": 3, "max_body_bytes": 256,
        "body_limit_action": "reject", "expose_rule_ids": true,
        "csrf": {"allowed_origins": ["https://*.example.com"], "require_origin": true}}"#;
    let remote = r#"{"issuer": "https://remote", "audiences": ["api"],
        "remote_jwks": {"cluster": "idp", "path": "/jwks"}}"#;
    let mfa = r#"{"policies": {"admin": {"acr_values": ["mfa", "hwk"], "max_age": 300},
        "strong": {"amr": {"all_of": ["hwk"]}}},
        "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"},
                  {"match": {"methods": ["DELETE"]}, "policy": "strong"}]}"#;
    match which % 3 {
        0 => format!(
            r#"{{"waf": {{"paranoia_level": 1}},
            "jwt": {{"providers": {{
                "corp": {{"issuer": "https://idp", "audiences": ["api"], "jwks": {inline}}},
                "remote": {remote}}},
                "rules": [{{"match": {{"path": {{"prefix": "/public"}}}}}},
                          {{"match": {{}}, "requires": {{"any": ["corp", "remote"]}}}}]}},
            "mfa": {mfa},
            "ratelimit": {{"client_address": {{"xff_trusted_hops": 1}}, "rules": [
                {{"name": "user", "key": [{{"identity": "sub"}}], "when_key_missing": "skip_rule",
                  "token_bucket": {{"max_tokens": 3, "fill_interval": "1s"}}}},
                {{"name": "client", "key": ["client_address"], "slots": 16,
                  "token_bucket": {{"max_tokens": 5, "fill_interval": "10s"}}}}]}},
            "audit": {{"request_headers": ["user-agent", "referer"], "xff_trusted_hops": 1}}}}"#,
            inline = jwks("k1")
        ),
        1 => format!(
            r#"{{"waf": {waf_strict},
            "transport": {{"policies": {{
                "tls": {{"client_certificate": {{"uri_sans": [{{"prefix": "spiffe://shop/"}}]}}}},
                "open": {{"require_tls": false, "hsts": {{"max_age_s": 600}}}}}},
                "rules": [{{"match": {{"path": {{"prefix": "/tls"}}}}, "policy": "tls"}},
                          {{"match": {{}}, "policy": "open"}}]}},
            "ratelimit": {{"rules": [{{"name": "key", "key": [{{"header": "x-api-key"}}],
                "when_key_missing": "shared_bucket", "slots": 4,
                "token_bucket": {{"max_tokens": 2, "fill_interval": "1h"}}}}]}},
            "audit": {{"schema": "ecs", "forwarded_header": "forwarded", "xff_trusted_hops": 2}}}}"#
        ),
        _ => format!(
            r#"{{"jwt": {{"providers": {{"remote": {remote}}}}},
            "mfa": {mfa},
            "audit": {{"schema": "ocsf"}}}}"#
        ),
    }
}

#[derive(Debug, Arbitrary)]
struct Claims {
    remote: bool,
    sub: String,
    acr: u8,
    amr: Vec<u8>,
    auth_age_s: u16,
    lifetime_s: i16,
    audience: bool,
    scope: String,
    forged: bool,
}

impl Claims {
    fn token(&self, now_s: i64) -> String {
        let (iss, kid) = if self.remote {
            ("https://remote", "r1")
        } else {
            ("https://idp", "k1")
        };
        let names = ["pwd", "mfa", "hwk", "otp", "sms"];
        let acr = names[usize::from(self.acr) % names.len()];
        let amr: Vec<&str> = self
            .amr
            .iter()
            .map(|a| names[usize::from(*a) % names.len()])
            .collect();
        let claims = serde_json::json!({
            "iss": iss, "sub": self.sub, "aud": if self.audience { "api" } else { "other" },
            "acr": acr, "amr": amr, "scope": self.scope,
            "iat": now_s, "auth_time": now_s - i64::from(self.auth_age_s),
            "exp": now_s + i64::from(self.lifetime_s),
        });
        let header =
            b64url_encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#).as_bytes());
        let input = format!("{header}.{}", b64url_encode(claims.to_string().as_bytes()));
        let mut signature = signing_key().sign(input.as_bytes()).to_bytes();
        if self.forged {
            signature[0] ^= 1;
        }
        format!("{input}.{}", b64url_encode(&signature))
    }
}

#[derive(Debug, Arbitrary)]
enum CallBody {
    Keys,
    OtherKeys,
    Bytes(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Event {
    Headers {
        ctx: u8,
        method: u8,
        path: String,
        headers: Vec<Header>,
        token: Option<Claims>,
        body: Vec<u8>,
        end_of_stream: bool,
    },
    Body {
        ctx: u8,
        size: u16,
        end_of_stream: bool,
    },
    Trailers {
        ctx: u8,
    },
    Response {
        ctx: u8,
        status: u16,
    },
    Log {
        ctx: u8,
    },
    Tick,
    Advance {
        ms: u16,
    },
    CallResponse {
        call: u8,
        status: u16,
        body: CallBody,
    },
    Ended {
        ctx: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: u8,
    events: Vec<Event>,
}

type Request = <BundleStage as Stage>::Request;

struct Worker {
    host: FakeHost,
    engine: Engine<BundleStage>,
}

thread_local! {
    static WORKERS: std::cell::RefCell<HashMap<u8, Rc<Worker>>> = Default::default();
}

fn worker(config_index: u8) -> Rc<Worker> {
    WORKERS.with(|workers| {
        workers
            .borrow_mut()
            .entry(config_index % 3)
            .or_insert_with(|| {
                let host = FakeHost::new();
                host.set_now_ms(NOW_S * 1000);
                let stage = Bundle::configure(config(config_index).as_bytes(), &host)
                    .expect("the fuzz configurations load");
                let engine = Engine::new(stage, Bundle::NAME, 1, &host).expect("the engine starts");
                Rc::new(Worker { host, engine })
            })
            .clone()
    })
}

fuzz_target!(|input: Input| {
    let worker = worker(input.config);
    let (host, engine) = (&worker.host, &worker.engine);
    let mut slots: HashMap<u32, FlowSlot<Request>> = HashMap::new();
    let methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
    for event in input.events.into_iter().take(64) {
        match event {
            Event::Headers {
                ctx,
                method,
                path,
                headers,
                token,
                body,
                end_of_stream,
            } => {
                let ctx = 2 + u32::from(ctx % 4);
                let path = format!("/{path}");
                let token = token.map(|c| format!("Bearer {}", c.token(host.now_unix_ms() / 1000)));
                let mut list: Vec<(&str, &str)> = vec![
                    (":method", methods[usize::from(method) % methods.len()]),
                    (":path", &path),
                    (":authority", "api.example.com"),
                    (":scheme", "https"),
                ];
                if let Some(token) = &token {
                    list.push(("authorization", token));
                }
                list.extend(headers.iter().map(|Header(n, v)| (n.as_str(), v.as_str())));
                host.set_request(&list, &body);
                host.set_property_raw(&["source", "address"], b"192.0.2.9:4711");
                let slot = slots.entry(ctx).or_default();
                let _ = engine.on_request_headers(ctx, slot, end_of_stream, host);
            }
            Event::Body {
                ctx,
                size,
                end_of_stream,
            } => {
                let ctx = 2 + u32::from(ctx % 4);
                let slot = slots.entry(ctx).or_default();
                let _ = engine.on_request_body(ctx, slot, usize::from(size), end_of_stream, host);
            }
            Event::Trailers { ctx } => {
                let ctx = 2 + u32::from(ctx % 4);
                let slot = slots.entry(ctx).or_default();
                let _ = engine.on_request_trailers(ctx, slot, host);
            }
            Event::Response { ctx, status } => {
                let ctx = 2 + u32::from(ctx % 4);
                let status = status.to_string();
                host.set_response_headers(&[(":status", &status)]);
                let slot = slots.entry(ctx).or_default();
                let _ = engine.on_response_headers(ctx, slot, host);
            }
            Event::Log { ctx } => {
                let ctx = 2 + u32::from(ctx % 4);
                let mut slot = slots.remove(&ctx).unwrap_or_default();
                engine.on_log(ctx, &mut slot, host);
                engine.forget(ctx);
            }
            Event::Tick => engine.on_tick(host),
            Event::Advance { ms } => host.advance_ms(i64::from(ms) * 16),
            Event::CallResponse { call, status, body } => {
                let calls = host.calls();
                let Some(dispatched) = calls.get(usize::from(call) % calls.len().max(1)) else {
                    continue;
                };
                let body = match body {
                    CallBody::Keys => jwks("r1").into_bytes(),
                    CallBody::OtherKeys => jwks("r2").into_bytes(),
                    CallBody::Bytes(bytes) => bytes,
                };
                let status = if status % 4 == 0 { 200 } else { status };
                host.set_call_response(&status.to_string(), &body);
                engine.on_http_call_response(dispatched.token, 1, body.len(), host);
            }
            Event::Ended { ctx } => {
                let ctx = 2 + u32::from(ctx % 4);
                host.end_request(ctx);
            }
        }
    }
    // The input's requests end, as streams do.
    for ctx in 2..6 {
        let mut slot = slots.remove(&ctx).unwrap_or_default();
        engine.on_log(ctx, &mut slot, host);
        engine.forget(ctx);
    }
    for reply in host.replies() {
        assert!(
            (400..600).contains(&reply.status),
            "a reply that is no refusal: {reply:?}"
        );
    }
    host.clear_records();
});
