//! Global rate limits in real Envoys: `backend: global` rules asking
//! `palisade-rls` (Envoy's RLS gRPC API over limitador, counters in a real
//! Redis) through an Envoy cluster. One limit across two Envoys of two
//! workers each, refill after the window, identity-keyed limits behind the
//! JWT stage, Redis or the service failing (each rule's failure mode, never
//! past its timeout) and recovering, the two tiers, and Envoy's own
//! ratelimit filter against the same service.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade_e2e::rls::{RateLimitService, Redis};
use palisade_e2e::tokens::TestIssuer;
use palisade_e2e::{EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

/// The access-log line these tests read: the published decision and denial.
const DECISION_LOG: &str =
    "%FILTER_STATE(wasm.palisade.ratelimit:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n";

/// A limitador limit on one global rule's descriptor (`rule` entry), per
/// value of `variables` (descriptor entry keys).
fn limit(namespace: &str, rule: &str, max: u64, seconds: u64, variables: &[&str]) -> Value {
    json!({
        "namespace": namespace,
        "name": rule,
        "max_value": max,
        "seconds": seconds,
        "conditions": [format!("descriptors[0].rule == '{rule}'")],
        "variables": variables.iter().map(|v| format!("descriptors[0]['{v}']")).collect::<Vec<_>>(),
    })
}

/// An Envoy (two workers) with `filters` in front of an echo upstream, and
/// the cluster `ratelimit` to the service.
fn envoy_with(rls: &RateLimitService, filters: &[(&str, Value)]) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let mut config = EnvoyConfig::new();
    for (name, value) in filters {
        config = config.wasm_filter(name, value.clone());
    }
    let envoy = config
        .upstream(&upstream)
        .cluster_json(rls.cluster("ratelimit"))
        .concurrency(2)
        .access_log_format(DECISION_LOG)
        .start();
    (upstream, envoy)
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(name).unwrap_or(0)
}

/// Waits up to 3 s for a batched counter to reach at least `expected`.
fn settled(envoy: &Envoy, name: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = counter(envoy, name);
        if n >= expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_limit_across_two_envoys_lets_exactly_that_many_through() {
    const LIMIT: u32 = 50;
    const THREADS: u32 = 24;
    const PER_THREAD: u32 = 15;
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, &json!([limit("fleet", "fleet", 50, 60, &[])]));
    let config = json!({
        "global_service": {"cluster": "ratelimit", "domain": "fleet"},
        "rules": [{"name": "fleet", "backend": "global", "global": {"timeout": "2s"}}]
    });
    let (_ua, a) = envoy_with(&rls, &[("ratelimit", config.clone())]);
    let (_ub, b) = envoy_with(&rls, &[("ratelimit", config)]);
    let ok = [AtomicU32::new(0), AtomicU32::new(0)];
    let limited = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (envoy, ok) = if t % 2 == 0 {
                (&a, &ok[0])
            } else {
                (&b, &ok[1])
            };
            let limited = &limited;
            s.spawn(move || {
                for _ in 0..PER_THREAD {
                    match envoy.get("/").status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            });
        }
    });
    let (ok_a, ok_b) = (ok[0].load(Ordering::Relaxed), ok[1].load(Ordering::Relaxed));
    assert_eq!(ok_a + ok_b, LIMIT, "exactly the limit, across both Envoys");
    assert!(
        ok_a > 0 && ok_b > 0,
        "both Envoys let some through: {ok_a} + {ok_b}"
    );
    assert_eq!(
        limited.load(Ordering::Relaxed),
        THREADS * PER_THREAD - LIMIT
    );
    for envoy in [&a, &b] {
        assert_eq!(counter(envoy, "palisade.ratelimit.service_errors"), 0);
        assert_eq!(counter(envoy, "palisade.ratelimit.service_timeouts"), 0);
        // Every worker of each Envoy asked the service.
        let calls = counter(envoy, "palisade.ratelimit.service_calls");
        assert_eq!(calls, u64::from(THREADS * PER_THREAD / 2));
    }
    // A refusal carries the service's numbers as the draft-10 fields.
    let refused = a.get("/");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"fleet\";q=50;w=60")
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(
        refused.header("ratelimit"),
        Some(format!("\"fleet\";r=0;t={retry}").as_str())
    );
    assert_eq!(refused.json()["violated-policies"][0], "fleet");
    let log = a.wait_access_log((THREADS * PER_THREAD / 2 + 1) as usize);
    assert!(
        log.iter()
            .any(|l| l.contains(r#""rule":"fleet","limited":true"#)
                && l.contains(r#""reason":"rate_limited""#)),
        "{log:?}"
    );
}

#[test]
fn a_window_refills_after_it_ends() {
    let redis = Redis::start();
    let rls = RateLimitService::start(
        &redis,
        &json!([limit("w", "short", 3, 2, &["client_address"])]),
    );
    let config = json!({
        "rate_limit_headers": "always",
        "global_service": {"cluster": "ratelimit", "domain": "w"},
        "rules": [{"name": "short", "backend": "global", "key": ["client_address"],
                   "global": {"timeout": "1s"}}]
    });
    let (_u, envoy) = envoy_with(&rls, &[("ratelimit", config)]);
    let start = Instant::now();
    let first = envoy.get("/");
    assert_eq!(first.status, 200);
    // A two-second window is no unit of the RLS API: `w` is left out.
    assert_eq!(first.header("ratelimit-policy"), Some("\"short\";q=3"));
    assert!(first
        .header("ratelimit")
        .unwrap()
        .starts_with("\"short\";r=2;t="));
    assert_eq!(envoy.get("/").status, 200);
    assert_eq!(envoy.get("/").status, 200);
    let refused = envoy.get("/");
    assert_eq!(refused.status, 429);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "too slow to test refill"
    );
    // After the window the counter starts over.
    std::thread::sleep(Duration::from_millis(2300).saturating_sub(start.elapsed()));
    assert_eq!(envoy.get("/").status, 200);
}

const ISSUER: &str = "https://idp.global.test";

fn issuer() -> TestIssuer {
    TestIssuer::new(ISSUER, "global-key", 23)
}

#[test]
fn identity_keyed_global_limits_behind_the_jwt_stage() {
    let redis = Redis::start();
    let rls = RateLimitService::start(
        &redis,
        &json!([limit(
            "users",
            "per_user",
            3,
            60,
            &["identity.iss", "identity.sub"]
        )]),
    );
    let jwt = json!({
        "providers": {"corp": {"issuer": ISSUER, "audiences": ["api"], "jwks": issuer().jwks()}},
        "rules": [{"match": {}, "requires": {"provider": "corp"}, "allow_missing": true}]
    });
    let ratelimit = json!({
        "global_service": {"cluster": "ratelimit", "domain": "users"},
        "rules": [{"name": "per_user", "backend": "global", "when_key_missing": "skip_rule",
                   "key": [{"identity": "iss"}, {"identity": "sub"}], "global": {"timeout": "1s"}}]
    });
    let filters = [("jwt", jwt), ("ratelimit", ratelimit)];
    let (_ua, a) = envoy_with(&rls, &filters);
    let (_ub, b) = envoy_with(&rls, &filters);
    let as_user = |envoy: &Envoy, sub: &str| -> Response {
        let token = issuer().token(json!({"sub": sub}));
        envoy.request(Request::get("/").header("authorization", &format!("Bearer {token}")))
    };
    // Alice's three requests are counted across both Envoys.
    assert_eq!(as_user(&a, "alice").status, 200);
    assert_eq!(as_user(&b, "alice").status, 200);
    assert_eq!(as_user(&a, "alice").status, 200);
    assert_eq!(as_user(&b, "alice").status, 429);
    assert_eq!(as_user(&a, "alice").status, 429);
    // Bob has his own counter.
    assert_eq!(as_user(&b, "bob").status, 200);
    // Anonymous requests are not keyed by identity (skip_rule), and a
    // header claiming an identity changes nothing.
    for _ in 0..5 {
        let forged = Request::get("/").header("x-palisade-identity", r#"{"sub":"bob"}"#);
        assert_eq!(b.request(forged).status, 200);
    }
    assert_eq!(as_user(&b, "bob").status, 200);
}

#[test]
fn redis_or_the_service_failing_holds_each_failure_mode_within_the_timeout() {
    let mut redis = Redis::start();
    let rls = RateLimitService::start(
        &redis,
        &json!([
            limit("f", "closed", 1000, 60, &[]),
            limit("f", "open", 1000, 60, &[])
        ]),
    );
    let config = json!({
        "global_service": {"cluster": "ratelimit", "domain": "f"},
        "rules": [
            {"name": "closed", "backend": "global", "match": {"path": {"prefix": "/closed"}},
             "global": {"timeout": "300ms", "on_failure": "deny"}},
            {"name": "open", "backend": "global", "match": {"path": {"prefix": "/open"}},
             "global": {"timeout": "300ms", "on_failure": "allow"}}
        ]
    });
    let (_u, envoy) = envoy_with(&rls, &[("ratelimit", config)]);
    let timed = |path: &str| {
        let start = Instant::now();
        let response = envoy.get(path);
        (response, start.elapsed())
    };
    assert_eq!(envoy.get("/closed").status, 200);
    assert_eq!(envoy.get("/open").status, 200);

    // Redis down: the service answers UNAVAILABLE at once.
    redis.stop();
    for _ in 0..3 {
        let (closed, took) = timed("/closed");
        assert_eq!(closed.status, 429, "{}", closed.text());
        assert_eq!(closed.header("retry-after"), Some("1"));
        assert!(
            closed.text().contains("did not answer in time"),
            "{}",
            closed.text()
        );
        assert!(took < Duration::from_millis(1000), "{took:?}");
        let (open, took) = timed("/open");
        assert_eq!(open.status, 200);
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }
    assert_eq!(
        counter(
            &envoy,
            "palisade.ratelimit.rule.closed.service_failure_denied"
        ),
        3
    );
    assert_eq!(
        counter(
            &envoy,
            "palisade.ratelimit.rule.open.service_failure_allowed"
        ),
        3
    );
    // Most calls fail at once (UNAVAILABLE); the first ones may wait for
    // the service to notice Redis is gone, up to the timeout.
    let errors = counter(&envoy, "palisade.ratelimit.service_errors");
    let timeouts = counter(&envoy, "palisade.ratelimit.service_timeouts");
    assert_eq!(errors + timeouts, 6);
    assert!(errors > 0);
    let log = envoy.wait_access_log(8);
    assert!(
        log.iter()
            .any(|l| l.contains(r#""reason":"service_failure""#)),
        "{log:?}"
    );

    // The service hangs (frozen): Envoy ends each call at the rule's
    // timeout, and the rule decides; nothing waits longer.
    redis.restart();
    rls.freeze(true);
    for path in ["/closed", "/open"] {
        let (response, took) = timed(path);
        assert_eq!(response.status, if path == "/closed" { 429 } else { 200 });
        assert!(took >= Duration::from_millis(250), "{path} {took:?}");
        assert!(took < Duration::from_millis(1100), "{path} {took:?}");
    }
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.service_timeouts"),
        timeouts + 2
    );
    rls.freeze(false);

    // Redis is back: the service decides again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if envoy.get("/closed").status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(envoy.get("/open").status, 200);
}

#[test]
fn a_local_tier_sheds_a_flood_before_the_service() {
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, &json!([limit("t", "tiered", 1000, 60, &[])]));
    let config = json!({
        "global_service": {"cluster": "ratelimit", "domain": "t"},
        "rules": [{"name": "tiered", "backend": "global", "global": {"timeout": "1s"},
                   "token_bucket": {"max_tokens": 5, "tokens_per_fill": 1, "fill_interval": "1h"}}]
    });
    let (_u, envoy) = envoy_with(&rls, &[("ratelimit", config)]);
    let statuses: Vec<u16> = (0..20).map(|_| envoy.get("/").status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    // Only what the tier let through reached the service.
    assert_eq!(counter(&envoy, "palisade.ratelimit.service_calls"), 5);
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.tiered.limited"),
        15
    );
    let refused = envoy.get("/");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"tiered\";q=5;w=18000")
    );
}

#[test]
fn an_async_rule_admits_from_shares_within_its_bound() {
    const LIMIT: u64 = 20;
    const SHARE: u64 = 4;
    let redis = Redis::start();
    let rls = RateLimitService::start(&redis, &json!([limit("a", "fast", LIMIT, 60, &[])]));
    let config = json!({
        "global_service": {"cluster": "ratelimit", "domain": "a"},
        "rules": [{"name": "fast", "backend": "global",
                   "global": {"timeout": "1s", "mode": "async", "local_share": SHARE}}]
    });
    let (_u, envoy) = envoy_with(&rls, &[("ratelimit", config)]);
    let ok = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    if envoy.get("/").status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
    });
    let ok = u64::from(ok.load(Ordering::Relaxed));
    // Two workers, each holding at most one share the service has not
    // confirmed.
    assert!((LIMIT..=LIMIT + 2 * SHARE).contains(&ok), "{ok} admitted");
    assert!(
        settled(
            &envoy,
            "palisade.ratelimit.rule.fast.admitted_from_share",
            1
        ) > 0
    );
    assert!(counter(&envoy, "palisade.ratelimit.service_reports") > 0);
    // Once the service said the limit is reached, requests are refused in
    // the workers without asking it.
    std::thread::sleep(Duration::from_millis(600));
    let calls = counter(&envoy, "palisade.ratelimit.service_calls");
    for _ in 0..10 {
        assert_eq!(envoy.get("/").status, 429);
    }
    assert!(
        counter(&envoy, "palisade.ratelimit.service_calls") <= calls + 2,
        "refusals in the workers, not at the service"
    );
}

#[test]
fn envoys_own_ratelimit_filter_speaks_to_the_same_service() {
    let redis = Redis::start();
    let native_limit = json!({
        "namespace": "native", "name": "per_address", "max_value": 2, "seconds": 60,
        "conditions": ["descriptors[0].generic_key == 'native-route'"],
        "variables": ["descriptors[0].remote_address"]
    });
    let rls = RateLimitService::start(
        &redis,
        &json!([native_limit, limit("palisade", "fleet", 1, 60, &[])]),
    );
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .native_filter(json!({
            "name": "envoy.filters.http.ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                "domain": "native",
                "failure_mode_deny": true,
                "timeout": "1s",
                "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
                "rate_limit_service": {
                    "grpc_service": {"envoy_grpc": {"cluster_name": "ratelimit"}},
                    "transport_api_version": "V3"
                }
            }
        }))
        .routes(json!([{
            "match": {"prefix": "/"},
            "route": {"cluster": "upstream", "rate_limits": [{"actions": [
                {"generic_key": {"descriptor_value": "native-route"}},
                {"remote_address": {}}
            ]}]}
        }]))
        .upstream(&upstream)
        .cluster_json(rls.cluster("ratelimit"))
        .access_log_format(DECISION_LOG)
        .start();
    let first = envoy.get("/");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("x-ratelimit-limit"),
        Some("2, 2;w=60;name=\"per_address\"")
    );
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(envoy.get("/").status, 200);
    let refused = envoy.get("/");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("x-envoy-ratelimited"), Some("true"));
    // The same service serves Palisade's global rules at the same time.
    let palisade = json!({
        "global_service": {"cluster": "ratelimit", "domain": "palisade"},
        "rules": [{"name": "fleet", "backend": "global", "global": {"timeout": "1s"}}]
    });
    let (_u, wasm) = envoy_with(&rls, &[("ratelimit", palisade)]);
    assert_eq!(wasm.get("/").status, 200);
    assert_eq!(wasm.get("/").status, 429);
}

#[test]
fn a_cluster_envoy_does_not_have_is_a_failure_not_a_crash() {
    let upstream = EchoUpstream::start();
    let config = json!({
        "global_service": {"cluster": "no_such_cluster"},
        "rules": [
            {"name": "closed", "backend": "global", "match": {"path": {"prefix": "/closed"}}},
            {"name": "open", "backend": "global", "match": {"path": {"prefix": "/open"}},
             "global": {"on_failure": "allow"}}
        ]
    });
    let envoy = EnvoyConfig::new()
        .wasm_filter("ratelimit", config)
        .upstream(&upstream)
        .access_log_format(DECISION_LOG)
        .start();
    for _ in 0..3 {
        let start = Instant::now();
        let closed = envoy.get("/closed");
        assert_eq!(closed.status, 429, "{}", closed.text());
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(envoy.get("/open").status, 200);
    }
    let failed = counter(&envoy, "palisade.ratelimit.service_errors")
        + counter(&envoy, "palisade.ratelimit.service_timeouts");
    assert_eq!(failed, 6);
}
