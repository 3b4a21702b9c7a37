//! The bundle, `palisade.wasm`, as such: sections turn stages on and off, an
//! unknown section is refused at load, and every refusal (WAF, JWT, step-up,
//! rate limit) gives the client and the audit log exactly what the chain of
//! separate modules gives. (Every other end-to-end test also runs against
//! the bundle: `make test` runs the policy tests a second time with
//! `PALISADE_E2E_DEPLOYMENT=bundle`.)

use palisade_e2e::tokens::{now, TestIssuer};
use palisade_e2e::{Deployment, EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.bundle.test";

fn issuer() -> TestIssuer {
    TestIssuer::new(ISSUER, "bundle-1", 0x3c)
}

fn token(sub: &str, acr: &str) -> String {
    issuer().token(json!({"sub": sub, "acr": acr, "auth_time": now() - 10}))
}

/// The whole suite, as `envoy/demo.yaml` chains it.
fn suite(deployment: Deployment, upstream: &EchoUpstream) -> Envoy {
    EnvoyConfig::new()
        .deployment(deployment)
        .wasm_filter(
            "audit",
            json!({"schema": "ecs", "request_headers": ["x-tenant"], "response_headers": ["retry-after"]}),
        )
        .wasm_filter("waf", json!({"paranoia_level": 1, "expose_rule_ids": true}))
        .wasm_filter(
            "jwt",
            json!({
                "providers": {"corp": {"issuer": ISSUER, "audiences": ["api"], "jwks": issuer().jwks(),
                                       "claim_headers": [{"claim": "sub", "header": "x-user"}]}},
                "rules": [{"match": {"path": {"prefix": "/public"}}}, {"match": {}, "requires": {"provider": "corp"}}]
            }),
        )
        .wasm_filter(
            "mfa",
            json!({
                "acr_ranking": ["pwd", "mfa"],
                "policies": {"admin": {"acr_values": ["mfa"], "max_age": 300}},
                "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"}]
            }),
        )
        .wasm_filter(
            "ratelimit",
            json!({"rate_limit_headers": "always", "rules": [{
                "name": "per_user", "key": [{"identity": "sub"}], "when_key_missing": "skip_rule",
                "token_bucket": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "3600s"}
            }]}),
        )
        .upstream(upstream)
        .start()
}

/// What a client sees, without what differs by nature from run to run.
fn answer(r: &Response) -> Value {
    let mut body = serde_json::from_slice::<Value>(&r.body).unwrap_or(json!(r.text()));
    if let Some(obj) = body.as_object_mut() {
        obj.remove("request_id");
        // The echo upstream's copy of the request headers.
        if let Some(headers) = obj.get_mut("headers").and_then(Value::as_object_mut) {
            headers.remove("x-request-id");
        }
    }
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "date"
                    | "x-request-id"
                    | "x-envoy-upstream-service-time"
                    | "content-length"
                    | "server"
            )
        })
        .cloned()
        .collect();
    json!({"status": r.status, "headers": headers, "body": body})
}

/// An audit record without its times, ids, ports and sizes.
fn record(line: &str) -> Value {
    let mut v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    fn scrub(v: &mut Value) {
        if let Some(obj) = v.as_object_mut() {
            for key in [
                "@timestamp",
                "id",
                "duration",
                "start",
                "end",
                "port",
                "bytes",
                "address",
                "ip",
                "request_id",
            ] {
                obj.remove(key);
            }
            for value in obj.values_mut() {
                scrub(value);
            }
        }
    }
    scrub(&mut v);
    v
}

/// The same requests (and tokens) for either deployment.
fn exchange(envoy: &Envoy, weak: &str, strong: &str) -> Vec<(Value, Value)> {
    let bearer = |t: &str| format!("Bearer {t}");
    let requests = [
        Request::get("/public/search?q=1%27%20OR%201%3D1--"),
        Request::get("/orders"),
        Request::get("/orders").header("authorization", "Bearer not.a.token"),
        Request::get("/admin").header("authorization", &bearer(weak)),
        Request::get("/orders")
            .header("authorization", &bearer(strong))
            .header("x-tenant", "acme"),
        Request::get("/orders").header("authorization", &bearer(strong)),
        Request::get("/orders").header("authorization", &bearer(strong)),
    ];
    let answers: Vec<Value> = requests
        .into_iter()
        .map(|r| answer(&envoy.request(r)))
        .collect();
    let lines = envoy.wait_access_log(answers.len());
    assert_eq!(lines.len(), answers.len(), "{lines:?}");
    answers
        .into_iter()
        .zip(lines.iter().map(|l| record(l)))
        .collect()
}

#[test]
fn every_refusal_is_the_same_from_the_bundle_as_from_the_module_chain() {
    let upstream = EchoUpstream::start();
    let (weak, strong) = (token("alice", "pwd"), token("bob", "mfa"));
    let modules = exchange(&suite(Deployment::Modules, &upstream), &weak, &strong);
    let bundle = exchange(&suite(Deployment::Bundle, &upstream), &weak, &strong);
    let statuses: Vec<u64> = modules
        .iter()
        .map(|(a, _)| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [403, 401, 401, 401, 200, 200, 429],
        "{modules:#?}"
    );
    for (i, ((ma, mr), (ba, br))) in modules.iter().zip(&bundle).enumerate() {
        assert_eq!(ma, ba, "request {i}: the client's answer differs");
        assert_eq!(mr, br, "request {i}: the audit record differs");
    }
    // Who refused each, as the records say.
    let denied_by: Vec<&str> = bundle
        .iter()
        .map(|(_, r)| r["palisade"]["denial"]["filter"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        denied_by,
        ["waf", "jwt", "jwt", "mfa", "-", "-", "ratelimit"],
        "{bundle:#?}"
    );
}

#[test]
fn a_section_left_out_turns_its_stage_off() {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .deployment(Deployment::Bundle)
        .wasm_filter("waf", json!({"paranoia_level": 1}))
        .wasm_filter("audit", json!({}))
        .upstream(&upstream)
        .start();
    // No JWT section: no token needed.
    assert_eq!(envoy.get("/orders").status, 200);
    assert_eq!(
        envoy
            .get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
            .status,
        403
    );
    let lines = envoy.wait_access_log(2);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["outcome"], "allowed");
    assert!(first.get("identity").is_none());
    assert_eq!(
        envoy.counter("palisade.jwt.allowed"),
        None,
        "no JWT stage, no JWT metrics"
    );
}

#[test]
fn an_unknown_section_or_field_is_refused_at_load() {
    let log = EnvoyConfig::new()
        .deployment(Deployment::Bundle)
        .wasm_filter("waf", json!({}))
        .wasm_filter("audit", json!({}))
        .native_filter(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "palisade-typo", "root_id": "palisade",
                    "vm_config": {"vm_id": "palisade-typo", "runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": palisade_e2e::bundle_path().display().to_string()}}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": "{\"waf\": {}, \"jwtt\": {}}"}
                }
            }
        }))
        .start_expecting_failure();
    assert!(
        log.contains("palisade: invalid configuration at `jwtt`: unknown section `jwtt`"),
        "{log}"
    );
    let log = EnvoyConfig::new()
        .deployment(Deployment::Bundle)
        .wasm_filter("waf", json!({"paranoia": 2}))
        .start_expecting_failure();
    assert!(
        log.contains("palisade: invalid configuration at `waf.paranoia`"),
        "{log}"
    );
}
