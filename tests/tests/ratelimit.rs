//! The rate-limit filter in a real Envoy: exact counts across worker
//! threads, refill, isolation between clients, the RateLimit header fields
//! byte for byte, shadow mode, filter state, metrics and bounded memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade_e2e::{config_error, EchoUpstream, Envoy, EnvoyConfig, Request, Response};
use serde_json::{json, Value};

/// The access-log line these tests read: the published decision and denial.
const DECISION_LOG: &str =
    "%FILTER_STATE(wasm.palisade.ratelimit:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n";

fn envoy_with(config: Value, concurrency: u32) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let envoy = EnvoyConfig::new()
        .wasm_filter("ratelimit", config)
        .upstream(&upstream)
        .concurrency(concurrency)
        .access_log_format(DECISION_LOG)
        // Envoy behind one trusted proxy, which wrote the last
        // X-Forwarded-For entry; the HCM does not append the peer.
        .connection_manager("use_remote_address", json!(false))
        .start();
    (upstream, envoy)
}

fn get_from(envoy: &Envoy, path: &str, client: &str) -> Response {
    envoy.request(Request::get(path).header("x-forwarded-for", client))
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(name)
        .unwrap_or_else(|| panic!("no counter {name} in {:?}", envoy.stats()))
}

/// A counter the filter adds to once a second (the per-rule `allowed`
/// counts): waits up to 3 s for it to reach `expected`, then returns it.
fn settled_counter(envoy: &Envoy, name: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = envoy.counter(name).unwrap_or(0);
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Many connections over `concurrency` workers spend one bucket of
/// `capacity` tokens (no refill) with 360 requests: exactly `capacity` pass.
fn hammer_exact(concurrency: u32, capacity: u32) {
    const THREADS: u32 = 24;
    const PER_THREAD: u32 = 15;
    let (_up, envoy) = envoy_with(
        json!({"rules": [{
            "name": "exact",
            "token_bucket": {"max_tokens": capacity, "tokens_per_fill": 1, "fill_interval": "24h"}
        }]}),
        concurrency,
    );
    let ok = AtomicU32::new(0);
    let limited = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
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
    let total = THREADS * PER_THREAD;
    assert_eq!(
        ok.load(Ordering::Relaxed),
        capacity,
        "exactly the capacity went through"
    );
    assert_eq!(limited.load(Ordering::Relaxed), total - capacity);
    // Every worker took part: the limit held across VMs, not within one.
    let workers = envoy.connections_per_worker();
    assert_eq!(workers.len(), concurrency as usize, "{workers:?}");
    assert!(workers.iter().all(|n| *n > 0), "idle worker: {workers:?}");
    assert_eq!(
        settled_counter(
            &envoy,
            "palisade.ratelimit.rule.exact.allowed",
            u64::from(capacity)
        ),
        u64::from(capacity)
    );
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.exact.limited"),
        u64::from(total - capacity)
    );
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.denied"),
        u64::from(total - capacity)
    );
    assert_eq!(counter(&envoy, "palisade.ratelimit.cas_exhausted"), 0);
    assert!(envoy.counter("palisade.ratelimit.cas_retries").is_some());
    assert!(envoy
        .counter("palisade.ratelimit.cas_guess_missed")
        .is_some());
}

#[test]
fn exact_count_with_two_workers_mostly_allowed() {
    // Most requests spend: the workers' presumed-token writes (one write
    // instead of a read and a write) race each other on the one bucket.
    hammer_exact(2, 330);
}

#[test]
fn one_worker_presumes_its_own_tokens_right() {
    // With one worker, the only writer of shared data, every presumed CAS
    // token is the one Envoy assigned: no presumed-token write misses, and
    // the count is exact.
    let (_up, envoy) = envoy_with(
        json!({"rules": [{
            "name": "solo",
            "token_bucket": {"max_tokens": 40, "tokens_per_fill": 1, "fill_interval": "24h"}
        }]}),
        1,
    );
    let statuses: Vec<u16> = (0..50).map(|_| envoy.get("/").status).collect();
    assert!(statuses[..40].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[40..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        settled_counter(&envoy, "palisade.ratelimit.rule.solo.allowed", 40),
        40
    );
    assert_eq!(counter(&envoy, "palisade.ratelimit.cas_guess_missed"), 0);
    assert_eq!(counter(&envoy, "palisade.ratelimit.cas_retries"), 0);
}

#[test]
fn exact_count_with_two_workers_and_many_connections() {
    hammer_exact(2, 60);
}

#[test]
fn exact_count_with_four_workers() {
    hammer_exact(4, 60);
}

#[test]
fn buckets_refill_over_time() {
    let (_up, envoy) = envoy_with(
        json!({"rules": [{
            "name": "slow",
            "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "3s"}
        }]}),
        2,
    );
    let start = Instant::now();
    assert_eq!(envoy.get("/").status, 200);
    assert_eq!(envoy.get("/").status, 200);
    let refused = envoy.get("/");
    assert_eq!(refused.status, 429);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "too slow to test refill"
    );
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((2..=3).contains(&wait), "retry-after {wait}");
    // Halfway through the interval there is still no whole token.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(start.elapsed()));
    assert_eq!(envoy.get("/").status, 429);
    // One interval after the spends, exactly one token is back.
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(start.elapsed()));
    assert_eq!(envoy.get("/").status, 200);
    assert_eq!(envoy.get("/").status, 429);
}

#[test]
fn clients_are_isolated() {
    let (_up, envoy) = envoy_with(
        json!({
            "client_address": {"xff_trusted_hops": 1},
            "rules": [
                {"name": "per_client", "key": ["client_address"],
                 "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}},
                {"name": "per_key", "match": {"path": {"prefix": "/keyed"}},
                 "key": [{"header": "x-api-key"}],
                 "token_bucket": {"max_tokens": 100, "fill_interval": "1h"}}
            ]
        }),
        2,
    );
    for _ in 0..2 {
        assert_eq!(get_from(&envoy, "/", "203.0.113.1").status, 200);
    }
    assert_eq!(get_from(&envoy, "/", "203.0.113.1").status, 429);
    // Another client still has its whole bucket.
    for _ in 0..2 {
        assert_eq!(get_from(&envoy, "/", "203.0.113.2").status, 200);
    }
    assert_eq!(get_from(&envoy, "/", "203.0.113.2").status, 429);

    // With two matching rules, the refusal by `per_client` spends nothing
    // from the `per_key` bucket.
    let keyed = |client: &str, key: &str| {
        envoy.request(
            Request::get("/keyed")
                .header("x-forwarded-for", client)
                .header("x-api-key", key),
        )
    };
    for _ in 0..2 {
        assert_eq!(keyed("198.51.100.1", "k1").status, 200);
    }
    for _ in 0..5 {
        assert_eq!(keyed("198.51.100.1", "k1").status, 429);
    }
    let lines = envoy.wait_access_log(13);
    let last: Value = serde_json::from_str(lines[12].split(' ').next().unwrap()).unwrap();
    assert_eq!(last["rule"], "per_client");
    // A fresh client with the same API key: 100 - 2 spent = 98 left, minus this one.
    let r = envoy.request(
        Request::get("/keyed")
            .header("x-forwarded-for", "198.51.100.9")
            .header("x-api-key", "k1"),
    );
    assert_eq!(r.status, 200);
    let lines = envoy.wait_access_log(14);
    let decision: Value = serde_json::from_str(lines[13].split(' ').next().unwrap()).unwrap();
    assert_eq!(
        decision["rule"], "per_client",
        "fewest tokens left: {decision}"
    );
    assert_eq!(decision["remaining"], 1);
    assert_eq!(
        settled_counter(&envoy, "palisade.ratelimit.rule.per_key.allowed", 3),
        3
    );
}

/// 40 clients behind a trusted CDN edge that hides them
/// (`X-Forwarded-For: unknown, <edge>`, two trusted hops) are not pooled
/// into one global "unknown" bucket, nor keyed by text: they spend from the
/// edge's bucket, the nearest address the trusted proxies vouch for, and
/// each such request is counted (`client_address_fallback`). Clients the
/// edge names, and those of another edge, keep their own buckets. The same
/// holds for RFC 7239 `Forwarded` (`for=unknown`, obfuscated `_hidden`).
#[test]
fn clients_a_trusted_proxy_hides_share_its_bucket_and_are_counted() {
    for (header, hidden, named, other_edge) in [
        (
            "x-forwarded-for",
            "client-{i}, unknown, 192.0.2.10",
            "198.51.100.7, 192.0.2.10",
            "unknown, 192.0.2.11",
        ),
        (
            "forwarded",
            "for=_hidden{i}, for=192.0.2.10",
            "for=198.51.100.7, for=192.0.2.10",
            "for=unknown, for=192.0.2.11",
        ),
    ] {
        let (_up, envoy) = envoy_with(
            json!({
                "client_address": {"xff_trusted_hops": 2, "forwarded_header": header},
                "rules": [{"name": "per_client", "key": ["client_address"],
                           "token_bucket": {"max_tokens": 5, "fill_interval": "1h"}}]
            }),
            1,
        );
        let send = |value: &str| {
            envoy
                .request(Request::get("/").header(header, value))
                .status
        };
        let statuses: Vec<u16> = (0..40)
            .map(|i| send(&hidden.replace("{i}", &i.to_string())))
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            5,
            "{header}: one bucket of 5 for the edge's hidden clients: {statuses:?}"
        );
        assert_eq!(
            send(named),
            200,
            "{header}: a named client has its own bucket"
        );
        assert_eq!(send(other_edge), 200, "{header}: another edge has its own");
        assert_eq!(
            counter(&envoy, "palisade.ratelimit.client_address_fallback"),
            41,
            "{header}: every hidden client is counted"
        );
    }
}

#[test]
fn rate_limit_headers_byte_for_byte() {
    let (_up, envoy) = envoy_with(
        json!({
            "rate_limit_headers": "always",
            "rules": [{"name": "per_client", "key": ["client_address"],
                       "token_bucket": {"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "60s"}}]
        }),
        1,
    );
    let expected = [("2", "20"), ("1", "40"), ("0", "60")];
    for (remaining, reset) in expected {
        let r = envoy.get("/");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header_all("ratelimit-policy"),
            vec![r#""per_client";q=3;w=60"#]
        );
        assert_eq!(
            r.header_all("ratelimit"),
            vec![format!(r#""per_client";r={remaining};t={reset}"#)]
        );
        assert_eq!(r.header("retry-after"), None);
    }
    let refused = envoy.request(Request::get("/").header("x-request-id", "rl-test-1"));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header_all("retry-after"), vec!["20"]);
    assert_eq!(
        refused.header_all("ratelimit-policy"),
        vec![r#""per_client";q=3;w=60"#]
    );
    assert_eq!(
        refused.header_all("ratelimit"),
        vec![r#""per_client";r=0;t=20"#]
    );
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    let body = refused.json();
    let request_id = body["request_id"].as_str().unwrap_or_default().to_string();
    assert!(!request_id.is_empty(), "{body}");
    assert_eq!(
        refused.text(),
        format!(
            concat!(
                r#"{{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","#,
                r#""title":"Quota Exceeded","status":429,"#,
                r#""detail":"Rate limit `per_client` exceeded; retry in 20 s.","#,
                r#""request_id":"{}","violated-policies":["per_client"]}}"#
            ),
            request_id
        )
    );
    // Filter state for the audit log and later filters.
    let lines = envoy.wait_access_log(4);
    assert_eq!(
        lines[3],
        r#"{"rule":"per_client","limited":true,"shadow":false,"remaining":0,"reset":20} {"filter":"ratelimit","status":429,"reason":"rate_limited"}"#
    );
    assert_eq!(
        lines[0],
        r#"{"rule":"per_client","limited":false,"shadow":false,"remaining":2,"reset":20} -"#
    );
}

#[test]
fn refusals_without_body_or_fields_when_configured() {
    let (_up, envoy) = envoy_with(
        json!({
            "status": 503,
            "problem_body": false,
            "rate_limit_headers": "never",
            "rules": [{"name": "tiny", "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}}]
        }),
        1,
    );
    assert_eq!(envoy.get("/").status, 200);
    let r = envoy.get("/");
    assert_eq!(r.status, 503);
    assert!(r.body.is_empty(), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert_eq!(r.header("ratelimit"), None);
    assert_eq!(r.header("ratelimit-policy"), None);
}

#[test]
fn shadow_mode_counts_and_logs_but_never_refuses() {
    let (_up, envoy) = envoy_with(
        json!({
            "rate_limit_headers": "always",
            "rules": [{"name": "trial", "shadow": true,
                       "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}}]
        }),
        2,
    );
    for _ in 0..5 {
        let r = envoy.get("/");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("ratelimit"),
            None,
            "shadow rules are not advertised"
        );
    }
    assert_eq!(
        settled_counter(&envoy, "palisade.ratelimit.rule.trial.allowed", 2),
        2
    );
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.trial.shadow_limited"),
        3
    );
    assert_eq!(counter(&envoy, "palisade.ratelimit.rule.trial.limited"), 0);
    assert_eq!(counter(&envoy, "palisade.ratelimit.denied"), 0);
    let lines = envoy.wait_access_log(5);
    assert_eq!(
        lines[4],
        r#"{"rule":"trial","limited":true,"shadow":true,"remaining":0,"reset":3600} -"#
    );
    let log = envoy.envoy_log();
    assert_eq!(
        log.matches("shadow rule `trial` would have limited this request")
            .count(),
        3,
        "{log}"
    );
}

#[test]
fn memory_stays_bounded_under_address_spraying() {
    let (_up, envoy) = envoy_with(
        json!({
            "client_address": {"xff_trusted_hops": 1},
            "rules": [
                {"name": "sprayed", "match": {"path": {"prefix": "/sprayed"}},
                 "key": ["client_address"], "slots": 8, "on_table_full": "deny",
                 "token_bucket": {"max_tokens": 1, "fill_interval": "1h"}},
                {"name": "reused", "match": {"path": {"prefix": "/reused"}},
                 "key": ["client_address"], "slots": 4,
                 "token_bucket": {"max_tokens": 1, "fill_interval": "100ms"}}
            ]
        }),
        2,
    );
    let client = |i: u32| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    // Eight clients fill the eight slots.
    for i in 0..8 {
        assert_eq!(get_from(&envoy, "/sprayed", &client(i)).status, 200);
    }
    // 400 more distinct addresses find no slot: the table did not grow.
    let sprayed = 400;
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let envoy = &envoy;
            s.spawn(move || {
                for i in (8 + t..8 + sprayed).step_by(8) {
                    let r = get_from(envoy, "/sprayed", &client(i));
                    assert_eq!(r.status, 429);
                    assert!(r.text().contains("Too many clients"), "{}", r.text());
                }
            });
        }
    });
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.sprayed.table_full"),
        u64::from(sprayed)
    );
    // The eight owners keep their (empty) buckets: limited, not table-full.
    for i in 0..8 {
        let r = get_from(&envoy, "/sprayed", &client(i));
        assert_eq!(r.status, 429);
        assert!(r.text().contains("Quota Exceeded"), "{}", r.text());
    }
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.sprayed.table_full"),
        u64::from(sprayed)
    );
    // `limited` counts every refusal by the rule, for either reason.
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.sprayed.limited"),
        u64::from(sprayed + 8)
    );

    // Idle slots are reused: 4 slots serve 24 clients that come one after
    // another, each once the previous buckets have refilled.
    let claims_before = counter(&envoy, "palisade.ratelimit.slot_claims");
    for i in 0..24 {
        assert_eq!(get_from(&envoy, "/reused", &client(1000 + i)).status, 200);
        std::thread::sleep(Duration::from_millis(120));
    }
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.slot_claims") - claims_before,
        24
    );
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.reused.table_full"),
        0
    );
}

/// The lockout of issue 18, with the default `on_table_full`: a client
/// sprays distinct API keys into a table of 16 slots (two workers), far more
/// keys than slots. A steady client keeps its exact limit, a client that
/// arrives in the middle of the spray is served, nobody is refused for want
/// of a slot, and the table does not grow.
#[test]
fn a_key_spray_neither_locks_out_new_clients_nor_moves_a_steady_limit() {
    let (_up, envoy) = envoy_with(
        json!({"rules": [{
            "name": "per_key", "key": [{"header": "x-api-key"}], "slots": 16,
            "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "1h"}
        }]}),
        2,
    );
    let with_key = |key: &str| envoy.request(Request::get("/").header("x-api-key", key));
    assert_eq!(with_key("steady").status, 200);
    let spraying = std::sync::atomic::AtomicBool::new(true);
    let sprayed = AtomicU32::new(0);
    let (steady, late) = std::thread::scope(|s| {
        for t in 0..6u32 {
            let (spraying, sprayed, with_key) = (&spraying, &sprayed, &with_key);
            s.spawn(move || {
                let mut i = 0;
                while spraying.load(Ordering::Relaxed) {
                    let r = with_key(&format!("spray-{t}-{i}"));
                    assert_eq!(r.status, 200, "a sprayed key is a new client: {}", r.text());
                    sprayed.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        // The spray fills the table before the other clients come back.
        while sprayed.load(Ordering::Relaxed) < 100 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut steady = Vec::new();
        let mut late = Vec::new();
        for _ in 0..8 {
            steady.push(with_key("steady"));
            late.push(with_key("late"));
            std::thread::sleep(Duration::from_millis(30));
        }
        spraying.store(false, Ordering::Relaxed);
        (steady, late)
    });
    let statuses = |rs: &[Response]| rs.iter().map(|r| r.status).collect::<Vec<_>>();
    // 1 before the spray + 4 during it, then refused on its own empty bucket.
    assert_eq!(statuses(&steady), [200, 200, 200, 200, 429, 429, 429, 429]);
    for r in &steady[4..] {
        assert!(r.text().contains("Quota Exceeded"), "{}", r.text());
    }
    // The newcomer is served from its first request on.
    assert_eq!(late[0].status, 200);
    for r in &late {
        assert!(!r.text().contains("Too many clients"), "{}", r.text());
    }
    let sprayed = u64::from(sprayed.load(Ordering::Relaxed));
    assert!(sprayed > 300, "the spray made {sprayed} requests");
    assert_eq!(
        counter(&envoy, "palisade.ratelimit.rule.per_key.table_full"),
        0
    );
    assert!(counter(&envoy, "palisade.ratelimit.slot_evictions") >= sprayed - 16);
}

#[test]
fn invalid_config_is_refused_at_load_naming_the_field() {
    let bucket = json!({"max_tokens": 5, "fill_interval": "1s"});
    let cases = [
        (
            json!({"rules": [{"name": "a", "token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}]}),
            "rules[0].token_bucket.max_tokens",
        ),
        (
            json!({"rules": [{"name": "a", "token_bucket": {"max_tokens": 5, "fill_interval": "soon"}}]}),
            "rules[0].token_bucket.fill_interval",
        ),
        (
            json!({"rules": [{"name": "a", "token_bucket": bucket, "cost": 6}]}),
            "rules[0].cost",
        ),
        (
            json!({"rules": [{"name": "a", "token_bucket": bucket, "key": [{"identity": "email"}]}]}),
            "rules[0].key[0].identity",
        ),
        (
            json!({"rules": [{"name": "a", "token_bucket": bucket, "slots": 0}]}),
            "rules[0].slots",
        ),
        (json!({"on_store_failure": "maybe"}), "on_store_failure"),
    ];
    for (config, field) in cases {
        let log = EnvoyConfig::new()
            .wasm_filter("ratelimit", config.clone())
            .start_expecting_failure();
        assert!(
            log.contains(&config_error("ratelimit", field)),
            "{config}: Envoy's log does not name `{field}`:\n{log}"
        );
    }
}

mod identity {
    //! Identity-keyed buckets behind the JWT filter: the key is the verified
    //! `palisade.identity` filter state, never a header.

    use super::*;
    use palisade_e2e::tokens::TestIssuer;

    const ISSUER: &str = "https://idp.ratelimit.test";

    /// The issuer of the tokens, with a test-only P-256 key.
    fn issuer() -> TestIssuer {
        TestIssuer::new(ISSUER, "rl-1", 0x3c)
    }

    fn token(sub: &str, jti: &str) -> String {
        issuer().token(json!({"sub": sub, "jti": jti}))
    }

    fn jwt_config() -> Value {
        json!({
            "providers": {"corp": {"issuer": ISSUER, "audiences": ["api"], "jwks": issuer().jwks()}},
            "rules": [{"match": {}, "requires": {"provider": "corp"}, "allow_missing": true}]
        })
    }

    #[test]
    fn buckets_keyed_by_the_verified_identity() {
        let upstream = EchoUpstream::start();
        let envoy = EnvoyConfig::new()
            .wasm_filter("jwt", jwt_config())
            .wasm_filter(
                "ratelimit",
                json!({"rules": [{
                    "name": "per_user",
                    "key": [{"identity": "iss"}, {"identity": "sub"}],
                    "when_key_missing": "skip_rule",
                    "token_bucket": {"max_tokens": 2, "fill_interval": "1h"}
                }]}),
            )
            .upstream(&upstream)
            .concurrency(2)
            .access_log_format(DECISION_LOG)
            .start();
        let as_token = |t: &str| {
            envoy.request(Request::get("/").header("authorization", &format!("Bearer {t}")))
        };
        let alice = token("alice", "a-1");
        assert_eq!(as_token(&alice).status, 200);
        assert_eq!(as_token(&alice).status, 200);
        assert_eq!(as_token(&alice).status, 429);
        // A fresh token for the same user spends from the same bucket.
        assert_eq!(as_token(&token("alice", "a-2")).status, 429);
        // Another user has a bucket of their own.
        let bob = token("bob", "b-1");
        assert_eq!(as_token(&bob).status, 200);
        assert_eq!(as_token(&bob).status, 200);
        assert_eq!(as_token(&bob).status, 429);
        // Anonymous requests are not keyed by identity (skip_rule), and a
        // header claiming an identity changes nothing.
        for _ in 0..4 {
            let r = envoy.request(Request::get("/").header(
                "x-palisade-identity",
                r#"{"iss":"https://idp.ratelimit.test","sub":"alice"}"#,
            ));
            assert_eq!(r.status, 200);
        }
        assert_eq!(
            settled_counter(&envoy, "palisade.ratelimit.rule.per_user.allowed", 4),
            4
        );
        assert_eq!(
            counter(&envoy, "palisade.ratelimit.rule.per_user.limited"),
            3
        );
        let lines = envoy.wait_access_log(11);
        assert_eq!(lines[10], "- -", "no rule applied to the anonymous request");
    }
}
