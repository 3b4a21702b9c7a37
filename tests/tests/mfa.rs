//! The MFA step-up filter behind the JWT filter in a real Envoy: tokens minted
//! here (ES256, our own key) with and without `acr` / `amr` / `auth_time`,
//! challenges checked byte for byte, and the client-certificate factor over a
//! TLS listener with certificates generated here (openssl) and requests sent
//! with curl.

use palisade_e2e::tls::{curl_https, downstream_tls_context, Pki};
use palisade_e2e::tokens::{now, TestIssuer};
use palisade_e2e::{config_error, EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.mfa.test";

fn issuer() -> TestIssuer {
    TestIssuer::new(ISSUER, "mfa-1", 0x5a)
}

/// A token for alice with the standard claims plus `extra` (acr, amr, auth_time, ...).
fn token(extra: Value) -> String {
    let mut claims = json!({"sub": "alice"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer().token(claims)
}

/// The JWT filter: verifies tokens from our issuer, lets requests without a
/// token through (so the MFA filter sees anonymous requests too).
fn jwt_config() -> Value {
    json!({
        "providers": {"corp": {"issuer": ISSUER, "audiences": ["api"], "jwks": issuer().jwks()}},
        "rules": [{"match": {}, "requires": {"provider": "corp"}, "allow_missing": true}]
    })
}

fn mfa_config() -> Value {
    json!({
        "acr_ranking": ["pwd", "mfa", "phr"],
        "upstream_headers": {"level": "x-auth-level", "acr": "x-auth-acr", "amr": "x-auth-amr", "age": "x-auth-age"},
        "policies": {
            "admin": {"acr_values": ["phr", "mfa"], "max_age": 300},
            "methods": {"amr": {"all_of": ["pwd"], "any_of": ["otp", "hwk"]}},
            "recent": {"max_age": 60}
        },
        "rules": [
            {"match": {"path": {"prefix": "/admin/health"}}},
            {"match": {"path": {"prefix": "/admin"}}, "policy": "admin"},
            {"match": {"path": {"prefix": "/transfer"}, "methods": ["POST"]}, "policy": "methods"},
            {"match": {"path": {"prefix": "/recent"}}, "policy": "recent"}
        ]
    })
}

fn get(envoy: &Envoy, path: &str, token: Option<&str>) -> Response {
    let mut r = Request::get(path);
    if let Some(t) = token {
        r = r.header("authorization", &format!("Bearer {t}"));
    }
    envoy.request(r)
}

const ACR_CHALLENGE: &str = r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr mfa", max_age=300"#;

#[test]
fn step_up_policies_challenge_pass_and_publish() {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", jwt_config())
        .wasm_filter("mfa", mfa_config())
        .upstream(&upstream)
        .access_log_format(
            "%RESPONSE_CODE% %FILTER_STATE(wasm.palisade.mfa:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n",
        )
        .start();

    // No token at all: the plain Bearer challenge and a problem body.
    let r = get(&envoy, "/admin/users", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header_all("www-authenticate"), vec!["Bearer"]);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let problem = r.json();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["detail"], "No verified identity");
    assert_eq!(problem["request_id"].as_str().unwrap().len(), 36);

    // A token without acr / amr / auth_time, and one with too weak an acr.
    for t in [
        token(json!({})),
        token(json!({"acr": "pwd", "auth_time": now()})),
    ] {
        let r = get(&envoy, "/admin/users", Some(&t));
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.header_all("www-authenticate"), vec![ACR_CHALLENGE]);
        assert_eq!(
            r.json()["detail"],
            "A different authentication level is required"
        );
    }

    // Strong enough, but authenticated too long ago.
    let old = token(json!({"acr": "phr", "amr": ["pwd", "hwk"], "auth_time": now() - 301 - 5}));
    let r = get(&envoy, "/admin/users", Some(&old));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="phr mfa", max_age=300"#
        )
    );

    // mfa is accepted; phr ranks above mfa, so it is too. Client-sent copies
    // of the strength headers are replaced.
    for (acr, level) in [("mfa", "2"), ("phr", "3")] {
        let t = token(json!({"acr": acr, "amr": ["pwd", "otp"], "auth_time": now() - 20}));
        let r = envoy.request(
            Request::get("/admin/users")
                .header("authorization", &format!("Bearer {t}"))
                .header("x-auth-acr", "phr")
                .header("x-auth-level", "99")
                .header("x-auth-age", "0"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let h = &r.json()["headers"];
        assert_eq!(h["x-auth-acr"], acr, "{h}");
        assert_eq!(h["x-auth-level"], level);
        assert_eq!(h["x-auth-amr"], "pwd,otp");
        let age: i64 = h["x-auth-age"].as_str().unwrap().parse().unwrap();
        assert!((20..=30).contains(&age), "{age}");
    }

    // Routes without a policy pass, and still lose forged strength headers.
    for path in ["/admin/health", "/elsewhere"] {
        let r = envoy.request(
            Request::get(path)
                .header("x-auth-acr", "phr")
                .header("X-Auth-Level", "3"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let h = &r.json()["headers"];
        assert!(
            h.get("x-auth-acr").is_none() && h.get("x-auth-level").is_none(),
            "{h}"
        );
    }

    // amr: all_of pwd and any_of otp/hwk.
    let post = |t: &str| {
        envoy.request(
            Request::post("/transfer", "{}").header("authorization", &format!("Bearer {t}")),
        )
    };
    let r = post(&token(json!({"amr": ["pwd"]})));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="Additional authentication methods are required""#
        )
    );
    assert_eq!(post(&token(json!({"amr": ["pwd", "hwk"]}))).status, 200);
    // Only POST is guarded.
    assert_eq!(
        get(&envoy, "/transfer", Some(&token(json!({"amr": ["pwd"]})))).status,
        200
    );

    // max_age without auth_time fails; the challenge carries max_age only.
    let r = get(&envoy, "/recent", Some(&token(json!({"acr": "phr"}))));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="The time of authentication is unknown", max_age=60"#
        )
    );
    // auth_time far in the future (beyond the 60 s skew) is refused too.
    let r = get(
        &envoy,
        "/recent",
        Some(&token(json!({"auth_time": now() + 3600}))),
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error_description="The auth_time claim is in the future""#));
    assert_eq!(
        get(
            &envoy,
            "/recent",
            Some(&token(json!({"auth_time": now() - 5})))
        )
        .status,
        200
    );

    // Metrics per policy and in total.
    let c = |name: &str| envoy.counter(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(c("palisade.mfa.policy.admin.passed"), 2);
    assert_eq!(c("palisade.mfa.policy.admin.challenged"), 3);
    assert_eq!(c("palisade.mfa.policy.admin.unauthenticated"), 1);
    assert_eq!(c("palisade.mfa.policy.methods.passed"), 1);
    assert_eq!(c("palisade.mfa.policy.methods.challenged"), 1);
    assert_eq!(c("palisade.mfa.policy.recent.challenged"), 2);
    assert_eq!(c("palisade.mfa.policy.recent.passed"), 1);
    assert_eq!(c("palisade.mfa.passed"), 4);
    assert_eq!(c("palisade.mfa.challenged"), 6);
    assert_eq!(c("palisade.mfa.unauthenticated"), 1);
    assert_eq!(c("palisade.mfa.no_policy"), 3);
    assert!(envoy
        .prometheus()
        .contains("palisade_mfa_policy_admin_passed"));

    // Filter state for the audit log: the decision, and who refused.
    let lines = envoy.wait_access_log(16);
    let first: Vec<&str> = lines[0].splitn(3, ' ').collect();
    assert_eq!(first[0], "401");
    let state: Value = serde_json::from_str(first[1]).unwrap();
    assert_eq!(
        state,
        json!({"policy": "admin", "outcome": "unauthenticated", "required_acr": ["phr", "mfa"], "max_age": 300})
    );
    let denial: Value = serde_json::from_str(first[2]).unwrap();
    assert_eq!(
        denial,
        json!({"filter": "mfa", "status": 401, "reason": "no_identity"})
    );
    let old_line: Vec<&str> = lines[3].splitn(3, ' ').collect();
    let denial: Value = serde_json::from_str(old_line[2]).unwrap();
    assert_eq!(denial["reason"], "auth_too_old");
    let passed: Vec<&str> = lines[4].splitn(3, ' ').collect();
    assert_eq!(passed[0], "200");
    let state: Value = serde_json::from_str(passed[1]).unwrap();
    assert_eq!(state["outcome"], "passed");
    assert_eq!(passed[2], "-");
}

#[test]
fn realm_redirects_and_bodies_off() {
    let upstream = EchoUpstream::start();
    let mfa = json!({
        "realm": "api",
        "problem_body": false,
        "browser_redirect": {"authorization_endpoint": "https://idp.mfa.test/authorize",
                             "client_id": "console", "redirect_uri": "https://console.mfa.test/callback"},
        "policies": {"console": {"acr_values": ["mfa"], "max_age": 900, "browser_redirect": true}},
        "rules": [{"match": {"path": {"prefix": "/console"}}, "policy": "console"}]
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", jwt_config())
        .wasm_filter("mfa", mfa)
        .upstream(&upstream)
        .start();
    let weak = token(json!({"acr": "pwd", "auth_time": now()}));
    let location = "https://idp.mfa.test/authorize?response_type=code&client_id=console&redirect_uri=https%3A%2F%2Fconsole.mfa.test%2Fcallback&scope=openid&acr_values=mfa&max_age=900&prompt=login";

    // A browser page load goes to the provider, for a weak token or none.
    for t in [Some(weak.as_str()), None] {
        let mut r = Request::get("/console/home").header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        );
        if let Some(t) = t {
            r = r.header("authorization", &format!("Bearer {t}"));
        }
        let r = envoy.request(r);
        assert_eq!(r.status, 302, "{}", r.text());
        assert_eq!(r.header("location"), Some(location));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    // An API call gets the challenge, with the realm, and no body.
    let r = envoy.request(
        Request::get("/console/api")
            .header("accept", "application/json")
            .header("authorization", &format!("Bearer {weak}")),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="api", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa", max_age=900"#
        )
    );
    assert!(r.body.is_empty(), "{}", r.text());
    assert_eq!(r.header("content-type"), None);
    let r = get(&envoy, "/console/api", None);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));

    let strong = token(json!({"acr": "mfa", "auth_time": now()}));
    assert_eq!(get(&envoy, "/console/api", Some(&strong)).status, 200);
    assert_eq!(
        envoy.counter("palisade.mfa.policy.console.redirected"),
        Some(1)
    );
    assert_eq!(envoy.counter("palisade.mfa.redirected"), Some(1));
    assert_eq!(
        envoy.counter("palisade.mfa.policy.console.unauthenticated"),
        Some(2)
    );
}

#[test]
fn the_audit_record_carries_the_decision() {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", jwt_config())
        .wasm_filter("mfa", mfa_config())
        .wasm_filter("audit", json!({}))
        .upstream(&upstream)
        .start();
    let strong = token(json!({"acr": "mfa", "auth_time": now()}));
    let weak = token(json!({"acr": "pwd", "auth_time": now()}));
    assert_eq!(get(&envoy, "/admin", Some(&strong)).status, 200);
    assert_eq!(get(&envoy, "/admin", Some(&weak)).status, 401);
    let records: Vec<Value> = envoy
        .wait_access_log(2)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["outcome"], "allowed", "{}", records[0]);
    assert_eq!(records[0]["mfa"]["outcome"], "passed");
    assert_eq!(records[0]["mfa"]["policy"], "admin");
    assert_eq!(records[1]["outcome"], "denied", "{}", records[1]);
    assert_eq!(records[1]["denied_by"], "mfa");
    assert_eq!(records[1]["denial"]["reason"], "acr_not_accepted");
    assert_eq!(records[1]["mfa"]["outcome"], "challenged");
    assert_eq!(envoy.counter("palisade.audit.denied.mfa"), Some(1));
}

#[test]
fn a_bad_config_is_refused_with_its_field_path() {
    let bad = json!({"policies": {"p": {"max_age": 0}}, "rules": []});
    let log = EnvoyConfig::new()
        .wasm_filter("mfa", bad)
        .start_expecting_failure();
    assert!(
        log.contains(&config_error("mfa", "policies.p.max_age")),
        "{log}"
    );
}

#[test]
fn a_verified_client_certificate_is_a_possession_factor() {
    let pki = Pki::generate();
    let upstream = EchoUpstream::start();
    let mfa = json!({
        "upstream_headers": {"amr": "x-auth-amr"},
        "policies": {
            "pay": {"amr": {"all_of": ["pwd", "hwk"]}, "client_certificate_amr": "hwk"},
            "otp": {"amr": {"all_of": ["pwd", "otp"]}}
        },
        "rules": [
            {"match": {"path": {"prefix": "/pay"}}, "policy": "pay"},
            {"match": {"path": {"prefix": "/otp"}}, "policy": "otp"}
        ]
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("jwt", jwt_config())
        .wasm_filter("mfa", mfa)
        .upstream(&upstream)
        .listener_tls(downstream_tls_context(&pki))
        .start();
    let addr = envoy.addr();
    let pwd = token(json!({"amr": ["pwd"], "auth_time": now()}));
    let auth = format!("Bearer {pwd}");

    // Password plus the certificate: two factors.
    let r = curl_https(
        &pki,
        addr,
        "GET",
        "/pay/1",
        &[("authorization", &auth), ("x-auth-amr", "pwd,hwk,otp")],
        true,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.envoy_log());
    assert_eq!(r.json()["headers"]["x-auth-amr"], "pwd,hwk");

    // The same token without the certificate: one factor short.
    let r = curl_https(
        &pki,
        addr,
        "GET",
        "/pay/1",
        &[("authorization", &auth)],
        false,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer error="insufficient_user_authentication", error_description="Additional authentication methods are required""#
        )
    );
    // A header claiming a certificate changes nothing.
    let r = curl_https(
        &pki,
        addr,
        "GET",
        "/pay/1",
        &[
            ("authorization", &auth),
            (
                "x-forwarded-client-cert",
                "Hash=00;Subject=\"CN=alice-laptop\"",
            ),
            ("x-auth-amr", "pwd,hwk"),
        ],
        false,
    );
    assert_eq!(r.status, 401);

    // The certificate counts only where the policy says so.
    let r = curl_https(&pki, addr, "GET", "/otp", &[("authorization", &auth)], true);
    assert_eq!(r.status, 401, "{}", r.text());

    // The certificate alone is no identity.
    let r = curl_https(&pki, addr, "GET", "/pay/1", &[], true);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    assert_eq!(envoy.counter("palisade.mfa.policy.pay.passed"), Some(1));
    assert_eq!(envoy.counter("palisade.mfa.policy.pay.challenged"), Some(2));
    assert_eq!(
        envoy.counter("palisade.mfa.policy.pay.unauthenticated"),
        Some(1)
    );
    assert_eq!(envoy.counter("palisade.mfa.policy.otp.challenged"), Some(1));
}
