use super::*;
use crate::jws::b64url_encode;
use crate::sender::Nothing;
use crate::verify::Portable;
use ed25519_dalek::Signer;
use serde_json::json;
use std::collections::HashMap;

const NOW: i64 = 1_800_000_000;

fn signing_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn jwks(seed: u8, kid: &str) -> Value {
    let x = b64url_encode(signing_key(seed).verifying_key().as_bytes());
    json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":x,"kid":kid}]})
}

fn mint(seed: u8, kid: &str, claims: Value) -> String {
    let header =
        b64url_encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#).as_bytes());
    let payload = b64url_encode(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let sig = signing_key(seed).sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(&sig.to_bytes()))
}

fn good_claims(iss: &str) -> Value {
    json!({"iss": iss, "aud": "api", "sub": "alice", "exp": NOW + 300, "iat": NOW,
           "scope": "read write", "roles": ["admin"], "org": {"id": "o1"}})
}

struct Keys(HashMap<usize, KeyState>);

impl KeyLookup for Keys {
    fn keys(&self, index: usize) -> KeyState {
        self.0.get(&index).cloned().unwrap_or(KeyState::Unavailable)
    }
}

fn inline_keys(config: &Config) -> Keys {
    let mut m = HashMap::new();
    for (i, p) in config.providers.iter().enumerate() {
        if let crate::config::KeySource::Inline(set) = &p.keys {
            m.insert(i, KeyState::Ready(set.clone()));
        }
    }
    Keys(m)
}

fn config(rules: Value) -> Config {
    let doc = json!({
        "providers": {
            "a": {"issuer": "https://a", "audiences": ["api"], "jwks": jwks(1, "ka"),
                  "claim_headers": [{"claim": "sub", "header": "x-sub"}, {"claim": "roles", "header": "x-roles"}],
                  "payload_header": "x-jwt-payload"},
            "b": {"issuer": "https://b", "jwks": jwks(2, "kb"), "from": [{"header": "x-b-token"}], "forward": true},
            "q": {"issuer": "https://a", "jwks": jwks(1, "ka"), "from": [{"query": "access_token"}, {"cookie": "at"}]}
        },
        "rules": rules
    });
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(config: &Config, method: &str, path: &str, hs: &[(&str, &str)]) -> Decision {
    let hs = headers(hs);
    let req = Request {
        view: RequestView {
            method,
            host: "h",
            path,
            route_name: "",
        },
        headers: &hs,
    };
    decide(
        config,
        &req,
        &inline_keys(config),
        &Portable,
        &mut TokenCache::new(16),
        NOW,
        &mut Nothing,
    )
}

fn denied(d: Decision) -> Reason {
    match d {
        Decision::Deny(r) => r.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn allowed(d: Decision) -> Vec<Verified> {
    match d {
        Decision::Allow { verified, .. } => verified,
        other => panic!("expected allow, got {other:?}"),
    }
}

#[test]
fn single_provider_allow_and_deny() {
    let c = config(json!([{"match": {"path": {"prefix": "/public"}}},
                          {"match": {}, "requires": {"provider": "a"}}]));
    let token = mint(1, "ka", good_claims("https://a"));
    let bearer = format!("Bearer {token}");
    let v = allowed(run(&c, "GET", "/x", &[("authorization", &bearer)]));
    assert_eq!(v.len(), 1);
    assert_eq!(identity_of(&v).unwrap().sub.as_deref(), Some("alice"));
    assert!(allowed(run(&c, "GET", "/public/x", &[])).is_empty());
    assert_eq!(denied(run(&c, "GET", "/x", &[])), Reason::TokenMissing);
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", "Bearer a.b")])),
        Reason::Malformed("not three dot-separated segments")
    );
    let other_key = format!("Bearer {}", mint(9, "ka", good_claims("https://a")));
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", &other_key)])),
        Reason::SignatureInvalid
    );
    let unknown = format!("Bearer {}", mint(1, "nope", good_claims("https://a")));
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", &unknown)])),
        Reason::UnknownKid
    );
    let mut expired = good_claims("https://a");
    expired["exp"] = json!(NOW - 61);
    let expired = format!("Bearer {}", mint(1, "ka", expired));
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", &expired)])),
        Reason::Expired
    );
    let mut wrong_aud = good_claims("https://a");
    wrong_aud["aud"] = json!("other");
    let wrong_aud = format!("Bearer {}", mint(1, "ka", wrong_aud));
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", &wrong_aud)])),
        Reason::AudienceMismatch
    );
    let not_json = {
        let header = b64url_encode(br#"{"alg":"EdDSA","kid":"ka"}"#);
        let input = format!("{header}.{}", b64url_encode(b"hello"));
        let sig = signing_key(1).sign(input.as_bytes());
        format!("Bearer {input}.{}", b64url_encode(&sig.to_bytes()))
    };
    assert_eq!(
        denied(run(&c, "GET", "/x", &[("authorization", &not_json)])),
        Reason::Malformed("payload is not JSON")
    );
}

#[test]
fn no_matching_rule_is_refused_and_cors_preflight_passes() {
    let c = config(json!([{"match": {"path": {"prefix": "/api"}}, "requires": {"provider": "a"}}]));
    assert_eq!(denied(run(&c, "GET", "/other", &[])), Reason::TokenMissing);
    let pre = [
        ("origin", "https://app"),
        ("access-control-request-method", "POST"),
    ];
    assert!(allowed(run(&c, "OPTIONS", "/api", &pre)).is_empty());
    // A preflight with a bad token still passes, without identity; one with
    // a valid token is handled like any request.
    let bad = [
        ("origin", "https://app"),
        ("access-control-request-method", "POST"),
        ("authorization", "Bearer x.y.z"),
    ];
    assert!(allowed(run(&c, "OPTIONS", "/api", &bad)).is_empty());
    let good = format!("Bearer {}", mint(1, "ka", good_claims("https://a")));
    let with_token = [
        ("origin", "https://app"),
        ("access-control-request-method", "POST"),
        ("authorization", good.as_str()),
    ];
    assert_eq!(allowed(run(&c, "OPTIONS", "/api", &with_token)).len(), 1);
    let off = {
        let mut c = c.clone();
        c.bypass_cors_preflight = false;
        c
    };
    assert_eq!(
        denied(run(&off, "OPTIONS", "/api", &pre)),
        Reason::TokenMissing
    );
    assert_eq!(
        denied(run(&c, "OPTIONS", "/api", &[("origin", "https://app")])),
        Reason::TokenMissing
    );
}

#[test]
fn any_all_and_tolerance() {
    let a = format!("Bearer {}", mint(1, "ka", good_claims("https://a")));
    let b = mint(2, "kb", good_claims("https://b"));
    let any = config(json!([{"requires": {"any": ["a", "b"]}}]));
    assert_eq!(
        allowed(run(&any, "GET", "/", &[("authorization", &a)]))[0].provider,
        0
    );
    assert_eq!(
        allowed(run(&any, "GET", "/", &[("x-b-token", &b)]))[0].provider,
        1
    );
    // A token from issuer b in the Authorization header: a's failure is an
    // issuer mismatch, b finds no token: the answer names the mismatch.
    let b_in_auth = format!("Bearer {b}");
    assert_eq!(
        denied(run(&any, "GET", "/", &[("authorization", &b_in_auth)])),
        Reason::IssuerMismatch
    );
    let all = config(json!([{"requires": {"all": ["a", "b"]}}]));
    assert_eq!(
        denied(run(&all, "GET", "/", &[("authorization", &a)])),
        Reason::TokenMissing
    );
    let both = allowed(run(
        &all,
        "GET",
        "/",
        &[("authorization", &a), ("x-b-token", &b)],
    ));
    assert_eq!(both.len(), 2);
    // Every identity is published for an `all` rule, in the rule's order.
    let ids: Vec<Identity> = serde_json::from_slice(&identities_json(&both).unwrap()).unwrap();
    let providers: Vec<&str> = ids.iter().map(|i| i.provider.as_str()).collect();
    assert_eq!(providers, ["a", "b"]);
    assert_eq!(ids[1].iss, "https://b");
    let one = allowed(run(&any, "GET", "/", &[("authorization", &a)]));
    assert!(
        identities_json(&one).is_none(),
        "one token: palisade.identity only"
    );
    let missing_ok = config(json!([{"requires": {"provider": "a"}, "allow_missing": true}]));
    assert!(allowed(run(&missing_ok, "GET", "/", &[])).is_empty());
    assert_eq!(
        denied(run(
            &missing_ok,
            "GET",
            "/",
            &[("authorization", "Bearer x.y.z")]
        )),
        Reason::Malformed("header is not base64url")
    );
    let failed_ok =
        config(json!([{"requires": {"provider": "a"}, "allow_missing_or_failed": true}]));
    assert!(allowed(run(
        &failed_ok,
        "GET",
        "/",
        &[("authorization", "Bearer x.y.z")]
    ))
    .is_empty());
    assert_eq!(
        allowed(run(&failed_ok, "GET", "/", &[("authorization", &a)])).len(),
        1
    );
}

#[test]
fn scopes_and_claims() {
    let a = format!("Bearer {}", mint(1, "ka", good_claims("https://a")));
    let cases = [
        (json!({"all_of": ["read"]}), json!([]), None),
        (
            json!({"all_of": ["read", "admin"]}),
            json!([]),
            Some((Reason::InsufficientScope, Some("read admin"))),
        ),
        (json!({"any_of": ["delete", "write"]}), json!([]), None),
        (
            json!({"any_of": ["delete"]}),
            json!([]),
            Some((Reason::InsufficientScope, Some("delete"))),
        ),
        (
            json!({}),
            json!([{"claim": "org.id", "equals": "o1"}]),
            None,
        ),
        (
            json!({}),
            json!([{"claim": "org.id", "one_of": ["o2", "o1"]}]),
            None,
        ),
        (
            json!({}),
            json!([{"claim": "roles", "contains": "admin"}]),
            None,
        ),
        (
            json!({}),
            json!([{"claim": "scope", "contains": "write"}]),
            None,
        ),
        (
            json!({}),
            json!([{"claim": "roles", "contains": "root"}]),
            Some((Reason::ClaimMismatch, None)),
        ),
        (
            json!({}),
            json!([{"claim": "missing", "equals": 1}]),
            Some((Reason::ClaimMismatch, None)),
        ),
    ];
    for (scopes, claims, want) in cases {
        let c =
            config(json!([{"requires": {"provider": "a"}, "scopes": scopes, "claims": claims}]));
        let d = run(&c, "GET", "/", &[("authorization", &a)]);
        match want {
            None => assert_eq!(allowed(d).len(), 1, "{scopes} {claims}"),
            Some((reason, scope)) => match d {
                Decision::Deny(r) => {
                    assert_eq!(r.reason, reason, "{scopes} {claims}");
                    assert_eq!(r.scope.as_deref(), scope);
                }
                other => panic!("{other:?}"),
            },
        }
    }
}

#[test]
fn keys_loading_unavailable_and_cache() {
    let c = config(json!([{"requires": {"provider": "a"}}]));
    let a = format!("Bearer {}", mint(1, "ka", good_claims("https://a")));
    let hs = headers(&[("authorization", &a)]);
    let req = Request {
        view: RequestView {
            method: "GET",
            host: "h",
            path: "/",
            route_name: "",
        },
        headers: &hs,
    };
    let loading = Keys(HashMap::from([(0, KeyState::Loading)]));
    let mut cache = TokenCache::new(16);
    assert_eq!(
        decide(&c, &req, &loading, &Portable, &mut cache, NOW, &mut Nothing),
        Decision::WaitForKeys(vec![0])
    );
    let down = Keys(HashMap::new());
    assert_eq!(
        denied(decide(
            &c,
            &req,
            &down,
            &Portable,
            &mut cache,
            NOW,
            &mut Nothing
        )),
        Reason::KeysUnavailable
    );
    let ready = inline_keys(&c);
    let first = decide(&c, &req, &ready, &Portable, &mut cache, NOW, &mut Nothing);
    assert!(matches!(first, Decision::Allow { cache_hits: 0, .. }));
    // The second time the cache answers, even without keys...
    let second = decide(
        &c,
        &req,
        &down,
        &Portable,
        &mut cache,
        NOW + 10,
        &mut Nothing,
    );
    assert!(
        matches!(second, Decision::Allow { cache_hits: 1, .. }),
        "{second:?}"
    );
    // ...but never past the token's expiry.
    assert_eq!(
        denied(decide(
            &c,
            &req,
            &ready,
            &Portable,
            &mut cache,
            NOW + 300 + 60,
            &mut Nothing
        )),
        Reason::Expired
    );
    // A malformed token never waits for keys.
    let bad = headers(&[("authorization", "Bearer a.b")]);
    let req = Request {
        headers: &bad,
        ..req
    };
    assert!(matches!(
        decide(&c, &req, &loading, &Portable, &mut cache, NOW, &mut Nothing),
        Decision::Deny(_)
    ));
}

#[test]
fn upstream_edits_remove_client_copies_and_tokens() {
    let c = config(
        json!([{"match": {"path": {"prefix": "/q"}}, "requires": {"provider": "q"}},
                          {"requires": {"any": ["a", "b"]}}]),
    );
    let token = mint(1, "ka", good_claims("https://a"));
    let bearer = format!("Bearer {token}");
    let hs = headers(&[("authorization", &bearer), ("x-sub", "forged")]);
    let req = Request {
        view: RequestView {
            method: "GET",
            host: "h",
            path: "/",
            route_name: "",
        },
        headers: &hs,
    };
    let v = allowed(decide(
        &c,
        &req,
        &inline_keys(&c),
        &Portable,
        &mut TokenCache::new(4),
        NOW,
        &mut Nothing,
    ));
    let edits = upstream_edits(&c, &req, &v);
    // Set headers replace the client's copies; the token header goes.
    assert_eq!(edits.remove, vec!["authorization"]);
    assert!(edits.set.contains(&("x-sub", "alice")));
    assert!(edits.set.contains(&("x-roles", "admin")));
    let payload = edits
        .set
        .iter()
        .find(|(k, _)| *k == "x-jwt-payload")
        .unwrap();
    let decoded: Value =
        serde_json::from_slice(&crate::jws::b64url_decode(payload.1).unwrap()).unwrap();
    assert_eq!(decoded["sub"], "alice");
    // No token needed, still the client's copies go.
    let none = upstream_edits(&c, &req, &[]);
    assert_eq!(none.remove, vec!["x-sub", "x-roles", "x-jwt-payload"]);
    // A claim the token lacks: its header is removed, not set.
    let mut no_roles = good_claims("https://a");
    no_roles.as_object_mut().unwrap().remove("roles");
    let bearer = format!("Bearer {}", mint(1, "ka", no_roles));
    let hs = headers(&[("authorization", &bearer), ("x-roles", "forged")]);
    let req2 = Request {
        headers: &hs,
        ..req
    };
    let v = allowed(decide(
        &c,
        &req2,
        &inline_keys(&c),
        &Portable,
        &mut TokenCache::new(4),
        NOW,
        &mut Nothing,
    ));
    let edits = upstream_edits(&c, &req2, &v);
    assert_eq!(edits.remove, vec!["x-roles", "authorization"]);
    assert!(edits.set.iter().all(|(k, _)| *k != "x-roles"));
    assert!(none.set.is_empty());
    // Query and cookie tokens are taken out when not forwarded.
    let path = format!("/q?access_token={token}&keep=1");
    let hs = headers(&[("cookie", "a=1")]);
    let req = Request {
        view: RequestView {
            method: "GET",
            host: "h",
            path: &path,
            route_name: "",
        },
        headers: &hs,
    };
    let v = allowed(decide(
        &c,
        &req,
        &inline_keys(&c),
        &Portable,
        &mut TokenCache::new(4),
        NOW,
        &mut Nothing,
    ));
    assert_eq!(
        upstream_edits(&c, &req, &v).path.as_deref(),
        Some("/q?keep=1")
    );
    let cookie = format!("a=1; at={token}");
    let hs = headers(&[("cookie", &cookie)]);
    let req = Request {
        view: RequestView {
            method: "GET",
            host: "h",
            path: "/q",
            route_name: "",
        },
        headers: &hs,
    };
    let v = allowed(decide(
        &c,
        &req,
        &inline_keys(&c),
        &Portable,
        &mut TokenCache::new(4),
        NOW,
        &mut Nothing,
    ));
    assert_eq!(
        upstream_edits(&c, &req, &v).cookie,
        Some(Some("a=1".to_string()))
    );
}
