use serde_json::{json, Value};

use super::*;

const NOW_S: i64 = 1_800_000_000;
const NOW_MS: i64 = NOW_S * 1000;

fn config(extra: Value) -> Config {
    let mut doc = json!({
        "acr_ranking": ["pwd", "mfa", "phr"],
        "upstream_headers": {"level": "x-auth-level", "acr": "x-auth-acr", "amr": "x-auth-amr", "age": "x-auth-age"},
        "policies": {
            "any": {},
            "acr": {"acr_values": ["mfa"]},
            "acr_exact": {"acr_values": ["urn:corp:gold"]},
            "acr_mixed": {"acr_values": ["urn:corp:gold", "phr"]},
            "acr_pref": {"acr_values": ["phr", "mfa"]},
            "all": {"amr": {"all_of": ["pwd", "otp"]}},
            "some": {"amr": {"any_of": ["otp", "hwk", "fpt"]}},
            "both": {"amr": {"all_of": ["pwd"], "any_of": ["otp", "hwk"]}},
            "cert": {"amr": {"all_of": ["pwd", "hwk"]}, "client_certificate_amr": "hwk"},
            "cert_only": {"amr": {"any_of": ["sc"]}, "client_certificate_amr": "sc"},
            "age": {"max_age": 300},
            "strict": {"acr_values": ["phr"], "amr": {"all_of": ["hwk"]}, "max_age": 60}
        },
        "rules": []
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

fn policy<'a>(c: &'a Config, name: &str) -> &'a StepUpPolicy {
    c.policies.iter().find(|p| p.name == name).unwrap()
}

/// A verified identity from its JSON (the contract's shape).
fn verified(identity: Value) -> Identity {
    serde_json::from_value(identity).unwrap()
}

fn eval(c: &Config, name: &str, identity: Value, cert: bool) -> Result<Strength, Unmet> {
    let id = verified(identity);
    evaluate(
        c,
        policy(c, name),
        &AuthFacts::from_identity(&id),
        cert,
        NOW_S,
    )
}

/// Filter state `palisade.identity` as the stage reads it: an identity, or
/// unreadable. Leaked: tests hold it for the request's lifetime.
fn state(json: &[u8]) -> Result<&'static Identity, Unreadable> {
    serde_json::from_slice::<Identity>(json)
        .map(|id| &*Box::leak(Box::new(id)))
        .map_err(|_| Unreadable)
}

#[test]
fn every_policy_combination() {
    use Unmet::*;
    let c = config(json!({}));
    let fresh = NOW_S - 10;
    let cases: Vec<(&str, Value, bool, Result<(), Unmet>)> = vec![
        // No requirement: any identity passes.
        ("any", json!({}), false, Ok(())),
        // acr, exact and ranked.
        ("acr", json!({"acr": "mfa"}), false, Ok(())),
        ("acr", json!({"acr": "phr"}), false, Ok(())),
        ("acr", json!({"acr": "pwd"}), false, Err(AcrNotAccepted)),
        (
            "acr",
            json!({"acr": "urn:other"}),
            false,
            Err(AcrNotAccepted),
        ),
        ("acr", json!({"acr": "MFA"}), false, Err(AcrNotAccepted)),
        ("acr", json!({}), false, Err(AcrMissing)),
        ("acr", json!({"acr": ""}), false, Err(AcrMissing)),
        ("acr_pref", json!({"acr": "mfa"}), false, Ok(())),
        ("acr_pref", json!({"acr": "phr"}), false, Ok(())),
        (
            "acr_pref",
            json!({"acr": "pwd"}),
            false,
            Err(AcrNotAccepted),
        ),
        // Values outside the ranking match only themselves.
        ("acr_exact", json!({"acr": "urn:corp:gold"}), false, Ok(())),
        (
            "acr_exact",
            json!({"acr": "phr"}),
            false,
            Err(AcrNotAccepted),
        ),
        ("acr_mixed", json!({"acr": "urn:corp:gold"}), false, Ok(())),
        ("acr_mixed", json!({"acr": "phr"}), false, Ok(())),
        (
            "acr_mixed",
            json!({"acr": "mfa"}),
            false,
            Err(AcrNotAccepted),
        ),
        // amr all_of.
        ("all", json!({"amr": ["pwd", "otp"]}), false, Ok(())),
        ("all", json!({"amr": ["otp", "pwd", "mfa"]}), false, Ok(())),
        ("all", json!({"amr": ["pwd"]}), false, Err(AmrNotSatisfied)),
        ("all", json!({"amr": []}), false, Err(AmrMissing)),
        ("all", json!({}), false, Err(AmrMissing)),
        // amr any_of.
        ("some", json!({"amr": ["fpt"]}), false, Ok(())),
        ("some", json!({"amr": ["pwd", "hwk"]}), false, Ok(())),
        ("some", json!({"amr": ["pwd"]}), false, Err(AmrNotSatisfied)),
        ("some", json!({"amr": ["OTP"]}), false, Err(AmrNotSatisfied)),
        // all_of and any_of together.
        ("both", json!({"amr": ["pwd", "hwk"]}), false, Ok(())),
        ("both", json!({"amr": ["hwk"]}), false, Err(AmrNotSatisfied)),
        (
            "both",
            json!({"amr": ["pwd", "sms"]}),
            false,
            Err(AmrNotSatisfied),
        ),
        // A client certificate as possession factor.
        ("cert", json!({"amr": ["pwd"]}), true, Ok(())),
        ("cert", json!({"amr": ["pwd"]}), false, Err(AmrNotSatisfied)),
        ("cert", json!({"amr": ["pwd", "hwk"]}), false, Ok(())),
        ("cert", json!({}), true, Err(AmrNotSatisfied)),
        ("cert_only", json!({}), true, Ok(())),
        ("cert_only", json!({}), false, Err(AmrMissing)),
        // A certificate counts only where the policy says so.
        ("some", json!({"amr": ["pwd"]}), true, Err(AmrNotSatisfied)),
        // max_age.
        ("age", json!({"auth_time": fresh}), false, Ok(())),
        ("age", json!({}), false, Err(AuthTimeMissing)),
        (
            "age",
            json!({"auth_time": NOW_S - 301}),
            false,
            Err(AuthTooOld),
        ),
        (
            "age",
            json!({"auth_time": NOW_S + 3600}),
            false,
            Err(AuthTimeInFuture),
        ),
        // Everything at once, failures reported in order acr, amr, auth_time.
        (
            "strict",
            json!({"acr": "phr", "amr": ["hwk"], "auth_time": fresh}),
            false,
            Ok(()),
        ),
        (
            "strict",
            json!({"acr": "mfa", "amr": [], "auth_time": 0}),
            false,
            Err(AcrNotAccepted),
        ),
        (
            "strict",
            json!({"acr": "phr", "amr": ["otp"], "auth_time": 0}),
            false,
            Err(AmrNotSatisfied),
        ),
        (
            "strict",
            json!({"acr": "phr", "amr": ["hwk"], "auth_time": NOW_S - 61}),
            false,
            Err(AuthTooOld),
        ),
        (
            "strict",
            json!({"acr": "phr", "amr": ["hwk"]}),
            false,
            Err(AuthTimeMissing),
        ),
    ];
    for (name, identity, cert, expected) in cases {
        let got = eval(&c, name, identity.clone(), cert).map(|_| ());
        assert_eq!(got, expected, "{name} {identity} cert={cert}");
    }
}

#[test]
fn exact_acr_without_ranking_and_outside_it() {
    let c = config(json!({"acr_ranking": [], "upstream_headers": {}}));
    assert!(eval(&c, "acr", json!({"acr": "mfa"}), false).is_ok());
    // Without a ranking, a stronger class is just a different class.
    assert_eq!(
        eval(&c, "acr", json!({"acr": "phr"}), false).unwrap_err(),
        Unmet::AcrNotAccepted
    );
    assert!(eval(&c, "acr_exact", json!({"acr": "urn:corp:gold"}), false).is_ok());
}

#[test]
fn clock_edges() {
    let c = config(json!({}));
    let at = |auth_time: i64| eval(&c, "age", json!({ "auth_time": auth_time }), false);
    // Exactly max_age old passes; one second more does not (OIDC: "greater than").
    assert_eq!(at(NOW_S - 300).unwrap().age, Some(300));
    assert_eq!(at(NOW_S - 301).unwrap_err(), Unmet::AuthTooOld);
    assert_eq!(at(NOW_S).unwrap().age, Some(0));
    // Up to the skew in the future is clock drift: age 0. Beyond it, refused.
    assert_eq!(at(NOW_S + 60).unwrap().age, Some(0));
    assert_eq!(at(NOW_S + 61).unwrap_err(), Unmet::AuthTimeInFuture);
    assert_eq!(at(0).unwrap_err(), Unmet::AuthTooOld);
    assert_eq!(at(i64::MAX).unwrap_err(), Unmet::AuthTimeInFuture);

    // Milliseconds round down to the second the token's times are in.
    let p = policy(&c, "age");
    let id = format!(r#"{{"auth_time":{}}}"#, NOW_S - 300);
    let request = |now_unix_ms| RequestFacts {
        identity: Some(state(id.as_bytes())),
        now_unix_ms,
        ..RequestFacts::default()
    };
    let index = c.policies.iter().position(|q| q == p);
    assert!(matches!(
        decide(&c, index, &request(NOW_MS + 999)),
        Decision::Pass { .. }
    ));
    assert!(matches!(
        decide(&c, index, &request(NOW_MS + 1000)),
        Decision::Refuse { .. }
    ));

    // No skew: the future starts one second after now.
    let strict = config(json!({"clock_skew_seconds": 0}));
    let e = eval(&strict, "age", json!({"auth_time": NOW_S + 1}), false);
    assert_eq!(e.unwrap_err(), Unmet::AuthTimeInFuture);
    // A host clock that reads 0 puts every auth_time in the future: refused.
    let id = verified(json!({"auth_time": NOW_S}));
    let zero = evaluate(&c, p, &AuthFacts::from_identity(&id), false, 0);
    assert_eq!(zero.unwrap_err(), Unmet::AuthTimeInFuture);
}

#[test]
fn strength_for_the_upstream() {
    let c = config(json!({}));
    let s = eval(
        &c,
        "cert",
        json!({"acr": "mfa", "amr": ["pwd"], "auth_time": NOW_S - 42}),
        true,
    )
    .unwrap();
    assert_eq!(
        s,
        Strength {
            acr: Some("mfa".into()),
            level: Some(2),
            amr: vec!["pwd".into(), "hwk".into()],
            age: Some(42),
        }
    );
    // Unranked acr: no level. Future auth_time on a policy without max_age: no age.
    let s = eval(
        &c,
        "any",
        json!({"acr": "x", "auth_time": NOW_S + 999}),
        false,
    )
    .unwrap();
    assert_eq!((s.level, s.age, s.acr.as_deref()), (None, None, Some("x")));
}

fn request<'a>(method: &'a str, path: &'a str, identity: Option<&[u8]>) -> RequestFacts<'a> {
    RequestFacts {
        view: RequestView {
            method,
            host: "api.example.com",
            path,
            route_name: "",
        },
        accept: None,
        identity: identity.map(state),
        client_certificate: false,
        now_unix_ms: NOW_MS,
    }
}

fn routed(extra: Value) -> Config {
    let mut e = json!({
        "rules": [
            {"match": {"path": {"prefix": "/admin/health"}}},
            {"match": {"path": {"prefix": "/admin"}}, "policy": "strict"},
            {"match": {"path": {"prefix": "/pay"}}, "policy": "acr_pref"},
            {"match": {"path": {"prefix": "/fresh"}}, "policy": "age"},
            {"match": {"path": {"prefix": "/who"}}, "policy": "any"},
            {"match": {"path": {"prefix": "/mfa"}}, "policy": "all"}
        ]
    });
    if let (Some(d), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            d.insert(k.clone(), v.clone());
        }
    }
    config(e)
}

fn run(c: &Config, r: &RequestFacts<'_>) -> Decision {
    decide(c, c.policy_index_for(&r.view), r)
}

fn refusal(d: Decision) -> (Refused, Reply, MfaDecision, Denial) {
    match d {
        Decision::Refuse {
            how,
            reply,
            state,
            denial,
            ..
        } => (how, reply, state, denial),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn challenges_are_rfc_9470_byte_for_byte() {
    let c = routed(json!({}));
    let id = br#"{"acr":"mfa","amr":["pwd"],"auth_time":0}"#;
    let (how, reply, state, denial) = refusal(run(&c, &request("GET", "/admin/x", Some(id))));
    assert_eq!(how, Refused::Challenged);
    assert_eq!(reply.status, 401);
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr", max_age=60"#
        )
    );
    assert_eq!(
        header(&reply, "content-type"),
        Some("application/problem+json")
    );
    let body: Value = serde_json::from_slice(&reply.body(|| Some("req-1".into()))).unwrap();
    assert_eq!(
        body,
        json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
               "detail": "A different authentication level is required", "request_id": "req-1"})
    );
    assert_eq!(
        state,
        MfaDecision {
            policy: "strict".into(),
            outcome: "challenged".into(),
            required_acr: vec!["phr".into()],
            max_age: Some(60),
        }
    );
    assert_eq!(
        denial,
        Denial {
            filter: "mfa".into(),
            status: 401,
            reason: "acr_not_accepted".into()
        }
    );

    // Only the parameters the policy has: acr_values in order of preference ...
    let (_, reply, _, _) = refusal(run(&c, &request("GET", "/pay", Some(br#"{"acr":"pwd"}"#))));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr mfa""#
        )
    );
    // ... max_age alone ...
    let old = format!(r#"{{"auth_time":{}}}"#, NOW_S - 301);
    let (_, reply, _, denial) = refusal(run(&c, &request("GET", "/fresh", Some(old.as_bytes()))));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", max_age=300"#
        )
    );
    assert_eq!(denial.reason, "auth_too_old");
    // ... or neither, for methods.
    let (_, reply, _, _) = refusal(run(
        &c,
        &request("GET", "/mfa", Some(br#"{"amr":["pwd"]}"#)),
    ));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="Additional authentication methods are required""#
        )
    );

    // A realm goes first.
    let c = routed(json!({"realm": "api"}));
    let (_, reply, _, _) = refusal(run(
        &c,
        &request("GET", "/mfa", Some(br#"{"amr":["pwd"]}"#)),
    ));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="Additional authentication methods are required""#
        )
    );
}

#[test]
fn unmet_claims_are_challenged_with_their_reason() {
    let c = routed(json!({}));
    let cases: &[(&str, &[u8], &str, &str)] = &[
        (
            "/fresh",
            br#"{"auth_time":1800003600}"#,
            "auth_time_in_future",
            "The auth_time claim is in the future",
        ),
        (
            "/fresh",
            br#"{"acr":"phr"}"#,
            "auth_time_missing",
            "The time of authentication is unknown",
        ),
    ];
    for (path, id, reason, description) in cases {
        let (how, reply, _, denial) = refusal(run(&c, &request("GET", path, Some(id))));
        assert_eq!(how, Refused::Challenged);
        assert_eq!(denial.reason, *reason, "{path}");
        let challenge = header(&reply, "www-authenticate").unwrap();
        assert!(
            challenge.contains(&format!("error_description=\"{description}\"")),
            "{challenge}"
        );
    }
}

#[test]
fn no_identity_and_unreadable_identity() {
    let c = routed(json!({}));
    let (how, reply, state, denial) = refusal(run(&c, &request("GET", "/admin", None)));
    assert_eq!(how, Refused::Unauthenticated);
    assert_eq!(reply.status, 401);
    assert_eq!(header(&reply, "www-authenticate"), Some("Bearer"));
    assert_eq!(state.outcome, "unauthenticated");
    assert_eq!(denial.reason, "no_identity");
    // Even the policy without requirements needs an identity.
    let (_, reply, _, _) = refusal(run(&c, &request("GET", "/who", None)));
    assert_eq!(reply.status, 401);

    let c = routed(json!({"realm": "api"}));
    let (_, reply, _, _) = refusal(run(&c, &request("GET", "/admin", None)));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(r#"Bearer realm="api""#)
    );
    let c = routed(json!({"unauthenticated_challenge": "Bearer realm=\"corp\", scope=\"openid\""}));
    let (_, reply, _, _) = refusal(run(&c, &request("GET", "/admin", None)));
    assert_eq!(
        header(&reply, "www-authenticate"),
        Some(r#"Bearer realm="corp", scope="openid""#)
    );

    // Filter state that is not an identity: the filter cannot decide, so it refuses.
    for bad in [&b"not json"[..], b"[1]", b"null", br#"{"acr": 2}"#] {
        let (how, reply, state, denial) = refusal(run(&c, &request("GET", "/who", Some(bad))));
        assert_eq!(how, Refused::Unreadable);
        assert_eq!(reply.status, 500);
        assert_eq!(header(&reply, "www-authenticate"), None);
        assert_eq!(state.outcome, "unauthenticated");
        assert_eq!(denial.reason, "identity_unreadable");
    }
}

#[test]
fn problem_bodies_can_be_turned_off() {
    let c = routed(json!({"problem_body": false}));
    let (_, reply, _, _) = refusal(run(&c, &request("GET", "/pay", Some(br#"{"acr":"pwd"}"#))));
    assert!(reply.body(|| panic!("no body, no request id")).is_empty());
    assert_eq!(header(&reply, "content-type"), None);
    assert!(header(&reply, "www-authenticate").is_some());
}

#[test]
fn passes_publish_headers_and_state() {
    let c = routed(json!({}));
    let id = format!(
        r#"{{"sub":"alice","acr":"phr","amr":["hwk","pwd"],"auth_time":{}}}"#,
        NOW_S - 5
    );
    match run(&c, &request("GET", "/admin", Some(id.as_bytes()))) {
        Decision::Pass { headers, state, .. } => {
            assert_eq!(
                headers,
                vec![
                    ("x-auth-level".to_string(), "3".to_string()),
                    ("x-auth-acr".to_string(), "phr".to_string()),
                    ("x-auth-amr".to_string(), "hwk,pwd".to_string()),
                    ("x-auth-age".to_string(), "5".to_string()),
                ]
            );
            assert_eq!(state.outcome, "passed");
            assert_eq!(state.policy, "strict");
        }
        other => panic!("{other:?}"),
    }
    // Headers for what the token lacks are left out.
    match run(&c, &request("GET", "/who", Some(br#"{"amr":["a\nb"]}"#))) {
        Decision::Pass { headers, .. } => assert!(headers.is_empty(), "{headers:?}"),
        other => panic!("{other:?}"),
    }
    // Routes without a policy, and rules that name none.
    assert_eq!(run(&c, &request("GET", "/other", None)), Decision::NoPolicy);
    assert_eq!(
        run(&c, &request("GET", "/admin/health", None)),
        Decision::NoPolicy
    );
}

#[test]
fn browser_navigation_is_redirected_to_the_provider() {
    let redirect = json!({
        "browser_redirect": {"authorization_endpoint": "https://idp.example.com/authorize",
                             "client_id": "web app", "redirect_uri": "https://app.example.com/cb?x=1"},
        "policies": {"strict": {"acr_values": ["phr", "mfa"], "max_age": 60, "browser_redirect": true},
                     "plain": {"acr_values": ["mfa"]}},
        "acr_ranking": [],
        "upstream_headers": {},
        "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "strict"},
                  {"match": {}, "policy": "plain"}]
    });
    let c = Config::from_json(redirect.to_string().as_bytes()).unwrap();
    let expected = "https://idp.example.com/authorize?response_type=code&client_id=web%20app&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%3Fx%3D1&scope=openid&acr_values=phr%20mfa&max_age=60&prompt=login";
    let mut r = request("GET", "/admin", Some(br#"{"acr":"pwd"}"#));
    r.accept = Some("text/html,application/xhtml+xml,*/*;q=0.8");
    let (how, reply, state, denial) = refusal(run(&c, &r));
    assert_eq!(how, Refused::Redirected);
    assert_eq!(reply.status, 302);
    assert_eq!(header(&reply, "location"), Some(expected));
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    assert!(reply.problem.is_none());
    assert_eq!(state.outcome, "challenged");
    assert_eq!(
        (denial.status, denial.reason.as_str()),
        (302, "acr_not_accepted")
    );

    // No identity at all: a login, just as strong.
    r.identity = None;
    let (how, reply, _, _) = refusal(run(&c, &r));
    assert_eq!((how, reply.status), (Refused::Unauthenticated, 302));
    assert_eq!(header(&reply, "location"), Some(expected));

    // APIs, POSTs, html refused with q=0, and policies without the option: challenged.
    for (method, path, accept) in [
        ("GET", "/admin", Some("application/json")),
        ("GET", "/admin", None),
        ("POST", "/admin", Some("text/html")),
        ("GET", "/admin", Some("text/html;q=0, */*")),
        ("GET", "/other", Some("text/html")),
    ] {
        let mut r = request(method, path, Some(br#"{"acr":"pwd"}"#));
        r.accept = accept;
        let (how, reply, _, _) = refusal(run(&c, &r));
        assert_eq!(
            (how, reply.status),
            (Refused::Challenged, 401),
            "{method} {path} {accept:?}"
        );
    }
    // An endpoint that already has a query.
    let client = c.browser_redirect.clone().unwrap();
    let with_query = BrowserRedirect {
        authorization_endpoint: "https://idp/auth?tenant=a".into(),
        ..client
    };
    let url = authorization_url(&with_query, policy(&c, "plain"));
    assert!(
        url.starts_with("https://idp/auth?tenant=a&response_type=code&"),
        "{url}"
    );
    assert!(
        url.ends_with("&scope=openid&acr_values=mfa&prompt=login"),
        "{url}"
    );
}

#[test]
fn accept_header_forms() {
    let check = |accept: &str| {
        let mut r = request("GET", "/", None);
        r.accept = Some(accept);
        is_browser_navigation(&r)
    };
    assert!(check("text/html"));
    assert!(check("TEXT/HTML; charset=utf-8"));
    assert!(check("application/json, text/html;q=0.5"));
    assert!(!check("text/html;q=0"));
    assert!(!check("text/html; q=0.0"));
    assert!(!check("text/htmlx"));
    assert!(!check("*/*"));
}
