//! The LLM gateway in a real Envoy, called by the official OpenAI Python
//! client (`.tools/llm`, `make llm-deps`) and by Anthropic-format requests,
//! in front of a test double of a paid provider ([`LlmUpstream`]): budgets
//! spent exactly across two workers by concurrent streams, models refused
//! in each provider's error format, output tokens capped in the body the
//! provider gets, streams without usage charged the estimate, budgets keyed
//! by the identity the JWT stage verified, and the tokens in the audit
//! record of every schema.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_e2e::tokens::TestIssuer;
use palisade_e2e::{repo_root, Envoy, EnvoyConfig, LlmUpstream, Request};
use serde_json::{json, Value};

/// The access-log line of the tests that read the decision itself.
const DECISION_LOG: &str =
    "%FILTER_STATE(wasm.palisade.llm:PLAIN)% %FILTER_STATE(wasm.palisade.denial:PLAIN)%\n";

/// Envoy with `chain` in front of a new provider double.
fn gateway(
    chain: &[(&str, Value)],
    concurrency: u32,
    log_format: Option<&str>,
) -> (LlmUpstream, Envoy) {
    let upstream = LlmUpstream::start(Duration::from_millis(3));
    let mut config = EnvoyConfig::new();
    for (stage, json) in chain {
        config = config.wasm_filter(stage, json.clone());
    }
    if let Some(format) = log_format {
        config = config.access_log_format(format);
    }
    let envoy = config
        .cluster("upstream", upstream.addr())
        .concurrency(concurrency)
        .start();
    (upstream, envoy)
}

/// Runs `tests/llm_client.py` (the OpenAI SDK) with `calls` against
/// `envoy`; one result per call.
fn openai(envoy: &Envoy, calls: Value, parallel: bool) -> Vec<Value> {
    let python = repo_root().join(".tools/llm/bin/python");
    let plan = json!({"base_url": format!("http://{}/v1", envoy.addr()), "parallel": parallel, "calls": calls});
    let mut child = Command::new(&python)
        .arg(repo_root().join("tests/llm_client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run `make llm-deps`", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plan.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenAI client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// An Anthropic Messages API call, as Anthropic's SDKs send it.
fn anthropic(envoy: &Envoy, body: Value) -> palisade_e2e::Response {
    envoy.request(
        Request::post("/v1/messages", body.to_string())
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01"),
    )
}

/// The decisions of the access log (one line per request, in order).
fn decisions(envoy: &Envoy, n: usize) -> Vec<Value> {
    let lines = envoy.wait_access_log(n);
    assert_eq!(lines.len(), n, "{lines:?}");
    lines
        .iter()
        .map(|l| {
            let state = l.split(' ').next().unwrap_or("-");
            serde_json::from_str(state).unwrap_or(Value::Null)
        })
        .collect()
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .counter(name)
        .unwrap_or_else(|| panic!("no counter {name} in {:?}", envoy.stats()))
}

/// 20 streams of 100 output tokens at once, over two workers, against a
/// budget of 1000 tokens (output only): each reserves its 100 when admitted,
/// so exactly 10 pass, whatever the interleaving, and the other 10 are
/// refused with the budget's fields in tokens.
#[test]
fn a_budget_is_spent_exactly_by_concurrent_streams_across_two_workers() {
    let (upstream, envoy) = gateway(
        &[(
            "llm",
            json!({
                "models": [{"name": "gpt4o", "match": {"prefix": "gpt-4o"}, "input_weight": 0}],
                "budgets": {"rules": [{"name": "team",
                    "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1d"}}]}
            }),
        )],
        2,
        Some(DECISION_LOG),
    );
    let call = json!({"api": "chat", "model": "gpt-4o", "max_tokens": 100, "stream": true, "include_usage": true});
    let results = openai(&envoy, Value::Array(vec![call.clone(); 20]), true);
    let ok: Vec<&Value> = results.iter().filter(|r| r["status"] == 200).collect();
    let refused: Vec<&Value> = results.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok.len(), refused.len()), (10, 10), "{results:#?}");
    for r in &ok {
        assert_eq!(r["usage"]["completion_tokens"], 100, "{r}");
        assert_eq!(r["text"].as_str().unwrap().split_whitespace().count(), 100);
    }
    for r in &refused {
        assert_eq!(r["exception"], "RateLimitError");
        assert_eq!(r["error"]["code"], "budget_exceeded", "{r}");
        assert_eq!(r["headers"]["ratelimit-policy"], "\"team\";q=1000;w=86400");
        let retry: u64 = r["headers"]["retry-after"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{r}");
    }
    assert_eq!(
        upstream.calls().len(),
        10,
        "refused calls never reach the provider"
    );
    let workers = envoy.connections_per_worker();
    assert_eq!(workers.len(), 2);
    assert!(
        workers.iter().all(|n| *n > 0),
        "both workers served: {workers:?}"
    );
    // The budget is empty: the next call is refused too, with `r=0`.
    let next = openai(&envoy, json!([call]), false);
    assert_eq!(next[0]["status"], 429);
    assert!(next[0]["headers"]["ratelimit"]
        .as_str()
        .unwrap()
        .starts_with("\"team\";r=0;"));
    let d = decisions(&envoy, 21);
    let spent: Vec<&Value> = d.iter().filter(|d| d["outcome"] == "allowed").collect();
    assert_eq!(spent.len(), 10);
    assert!(spent
        .iter()
        .all(|d| d["usage"] == "reported" && d["output_tokens"] == 100));
    assert_eq!(
        spent.iter().filter_map(|d| d["remaining"].as_u64()).min(),
        Some(0)
    );
    assert_eq!(counter(&envoy, "palisade.llm.model.gpt4o.requests"), 10);
    assert_eq!(counter(&envoy, "palisade.llm.model.gpt4o.refused"), 11);
    assert_eq!(
        counter(&envoy, "palisade.llm.model.gpt4o.output_tokens"),
        1000
    );
    assert_eq!(counter(&envoy, "palisade.llm.budget.team.limited"), 11);
}

fn allowlist() -> Value {
    json!({
        "models": [
            {"name": "gpt4o", "match": {"prefix": "gpt-4o"}, "max_tokens": 50},
            {"name": "o3", "match": {"exact": "o3"}, "max_tokens": 50, "on_max_tokens": "refuse"},
            {"name": "claude", "match": {"prefix": "claude-"}},
            {"name": "embed", "match": {"prefix": "text-embedding-"}}
        ],
        "usage_estimate": {"input_tokens": 40, "output_tokens": 30}
    })
}

#[test]
fn models_outside_the_allowlist_are_refused_in_each_providers_format() {
    let (upstream, envoy) = gateway(&[("llm", allowlist())], 1, Some(DECISION_LOG));
    let results = openai(
        &envoy,
        json!([
            {"api": "chat", "model": "gpt-3.5-turbo"},
            {"api": "embeddings", "model": "text-embedding-3-small", "prompt": "four words of input"},
            {"api": "completions", "model": "davinci-002", "prompt": "x"}
        ]),
        false,
    );
    assert_eq!(results[0]["status"], 403);
    assert_eq!(results[0]["exception"], "PermissionDeniedError");
    assert_eq!(results[0]["error"]["type"], "permission_error");
    assert_eq!(results[0]["error"]["code"], "model_not_allowed");
    assert!(results[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-3.5-turbo"));
    assert_eq!(results[1]["status"], 200, "{}", results[1]);
    assert_eq!(results[1]["usage"]["prompt_tokens"], 4);
    assert_eq!(results[2]["status"], 403);
    let refused = anthropic(
        &envoy,
        json!({"model": "llama-3.1-70b", "max_tokens": 10, "messages": []}),
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        json!({"type": "error", "error": {"type": "permission_error", "message": "the model `llama-3.1-70b` is not allowed here"}})
    );
    let allowed = anthropic(
        &envoy,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi there"}]}),
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.json()["usage"]["output_tokens"], 16);
    assert_eq!(upstream.calls().len(), 2);
    let d = decisions(&envoy, 5);
    assert_eq!(d[0]["outcome"], "model_not_allowed");
    assert_eq!(
        (d[1]["operation"].as_str(), d[1]["input_tokens"].as_u64()),
        (Some("embeddings"), Some(4))
    );
    assert_eq!(
        (d[4]["provider"].as_str(), d[4]["output_tokens"].as_u64()),
        (Some("anthropic"), Some(16))
    );
    assert_eq!(counter(&envoy, "palisade.llm.model.other.refused"), 3);
}

#[test]
fn output_tokens_are_capped_in_the_body_the_provider_gets() {
    let (upstream, envoy) = gateway(&[("llm", allowlist())], 1, Some(DECISION_LOG));
    let results = openai(
        &envoy,
        json!([
            {"api": "chat", "model": "gpt-4o", "max_tokens": 500},
            {"api": "chat", "model": "gpt-4o-mini"},
            {"api": "responses", "model": "gpt-4o", "max_output_tokens": 900},
            {"api": "chat", "model": "o3", "max_completion_tokens": 400},
            {"api": "chat", "model": "gpt-4o", "max_tokens": 20, "stream": true, "include_usage": true}
        ]),
        false,
    );
    // Capped to 50, or set to 50 when the call set no limit.
    for (i, words) in [(0, 50), (1, 50), (2, 50), (4, 20)] {
        assert_eq!(results[i]["status"], 200, "{}", results[i]);
        assert_eq!(
            results[i]["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .count(),
            words,
            "{}",
            results[i]
        );
    }
    let bodies: Vec<Value> = upstream.calls().into_iter().map(|c| c.body).collect();
    assert_eq!(bodies[0]["max_tokens"], 50);
    assert_eq!(bodies[1]["max_completion_tokens"], 50);
    assert_eq!(bodies[2]["max_output_tokens"], 50);
    assert_eq!(bodies[3]["max_tokens"], 20);
    assert_eq!(
        bodies.len(),
        4,
        "the refused call never reached the provider"
    );
    // Refused instead, where the rule says so.
    assert_eq!(results[3]["status"], 400);
    assert_eq!(results[3]["exception"], "BadRequestError");
    assert_eq!(results[3]["error"]["code"], "max_tokens_exceeded");
    let d = decisions(&envoy, 5);
    assert_eq!(
        (d[0]["capped"].as_bool(), d[0]["max_tokens"].as_u64()),
        (Some(true), Some(50))
    );
    assert_eq!(d[4]["capped"], false);
    assert_eq!(counter(&envoy, "palisade.llm.capped"), 3);
}

#[test]
fn a_stream_without_usage_is_charged_the_estimate() {
    let (upstream, envoy) = gateway(&[("llm", allowlist())], 1, Some(DECISION_LOG));
    let results = openai(
        &envoy,
        json!([
            {"api": "chat", "model": "gpt-4o", "max_tokens": 10, "stream": true},
            {"api": "chat", "model": "gpt-4o", "max_tokens": 45, "stream": true},
            {"api": "responses", "model": "gpt-4o", "max_output_tokens": 7, "stream": true}
        ]),
        false,
    );
    assert!(results.iter().all(|r| r["status"] == 200), "{results:?}");
    assert!(
        results[0]["usage"].is_null(),
        "no include_usage: no usage chunk"
    );
    assert!(!upstream.calls()[0].usage_reported);
    let stream = anthropic(
        &envoy,
        json!({"model": "claude-haiku-4-5", "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "one two"}]}),
    );
    assert_eq!(stream.status, 200);
    assert!(stream.text().contains("event: message_delta"));
    let d = decisions(&envoy, 4);
    // The estimate (40 in, 30 out), its output part never above the limit.
    assert_eq!(
        (
            d[0]["usage"].as_str(),
            d[0]["input_tokens"].as_u64(),
            d[0]["output_tokens"].as_u64()
        ),
        (Some("estimated"), Some(40), Some(10))
    );
    assert_eq!(
        (
            d[1]["input_tokens"].as_u64(),
            d[1]["output_tokens"].as_u64()
        ),
        (Some(40), Some(30))
    );
    // Streams that carry usage are charged it.
    let reported = upstream.calls();
    assert_eq!(
        (d[2]["usage"].as_str(), d[2]["output_tokens"].as_u64()),
        (Some("reported"), Some(7))
    );
    assert_eq!(
        d[2]["input_tokens"].as_u64(),
        Some(reported[2].input_tokens)
    );
    assert_eq!(
        (
            d[3]["input_tokens"].as_u64(),
            d[3]["output_tokens"].as_u64()
        ),
        (Some(reported[3].input_tokens), Some(8))
    );
    assert_eq!(counter(&envoy, "palisade.llm.usage_estimated"), 2);
}

const ISSUER: &str = "https://idp.llm.test";

fn issuer() -> TestIssuer {
    TestIssuer::new(ISSUER, "llm-1", 0x4d)
}

/// Budgets per `client_id` behind the JWT stage, and GPT-4-class models
/// only for a scope: each team spends its own budget, a team without the
/// scope gets the small model only, and a header claiming an identity
/// changes nothing.
#[test]
fn budgets_are_keyed_by_the_identity_the_jwt_stage_verified() {
    let jwt = json!({
        "providers": {"corp": {"issuer": ISSUER, "audiences": ["api"], "jwks": issuer().jwks()}},
        "rules": [{"match": {}, "requires": {"provider": "corp"}, "allow_missing": true}]
    });
    let llm = json!({
        "models": [
            {"name": "gpt4", "match": {"prefix": "gpt-4"}, "scopes": ["llm:gpt4"]},
            {"name": "small", "match": {"prefix": "small-"}}
        ],
        "budgets": {"rules": [{"name": "team", "key": [{"identity": "client_id"}],
            "token_bucket": {"max_tokens": 300, "tokens_per_fill": 300, "fill_interval": "1d"}}]}
    });
    let (upstream, envoy) = gateway(&[("jwt", jwt), ("llm", llm)], 2, Some(DECISION_LOG));
    let team_a =
        issuer().token(json!({"sub": "svc-a", "client_id": "team-a", "scope": "llm:gpt4"}));
    let team_b = issuer().token(json!({"sub": "svc-b", "client_id": "team-b", "scope": "read"}));
    let gpt4 =
        |key: &str| json!({"api": "chat", "model": "gpt-4o", "max_tokens": 100, "api_key": key});
    // A call costs 8 input tokens ("Say hello to the gateway": 5 words and
    // 3 for the message) and 100 output: 108. 100 is reserved; 300 covers
    // two calls (84 left), not a third.
    let results = openai(
        &envoy,
        json!([gpt4(&team_a), gpt4(&team_a), gpt4(&team_a)]),
        false,
    );
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [200, 200, 429], "{results:?}");
    // 16 tokens short at 300 a day (one per 288 s).
    let field = results[2]["headers"]["ratelimit"].as_str().unwrap();
    let t: u64 = field
        .strip_prefix("\"team\";r=84;t=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((4500..=4608).contains(&t), "{field}");
    let small =
        |key: &str| json!({"api": "chat", "model": "small-1", "max_tokens": 100, "api_key": key});
    let results = openai(
        &envoy,
        json!([
            gpt4(&team_b),
            small(&team_b),
            small(&team_b),
            small("not-a-token")
        ]),
        false,
    );
    assert_eq!(
        results[0]["status"], 403,
        "team-b lacks the scope: {}",
        results[0]
    );
    assert!(results[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("llm:gpt4"));
    assert_eq!(
        (results[1]["status"].as_u64(), results[2]["status"].as_u64()),
        (Some(200), Some(200)),
        "team-b's own budget"
    );
    // Not a token: no identity; the small model is open, spent from the
    // budget's bucket for callers without a client_id.
    assert_eq!(results[3]["status"], 401, "{}", results[3]);
    let anonymous = anthropic(
        &envoy,
        json!({"model": "gpt-4o", "max_tokens": 5, "messages": []}),
    );
    assert_eq!(anonymous.status, 403);
    assert_eq!(anonymous.json()["error"]["type"], "permission_error");
    let forged = envoy.request(
        Request::post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "max_tokens": 1, "messages": []}).to_string(),
        )
        .header("content-type", "application/json")
        .header(
            "x-palisade-identity",
            r#"{"client_id":"team-a","scope":["llm:gpt4"]}"#,
        ),
    );
    assert_eq!(forged.status, 403);
    assert_eq!(upstream.calls().len(), 4);
    let d = decisions(&envoy, 9);
    assert_eq!(d[0]["budget_key"], "client_id=team-a");
    assert_eq!(
        (d[1]["remaining"].as_u64(), d[1]["charged"].as_u64()),
        (Some(84), Some(108))
    );
    assert_eq!(d[4]["budget_key"], "client_id=team-b");
    assert_eq!(
        (d[4]["remaining"].as_u64(), d[5]["remaining"].as_u64()),
        (Some(192), Some(84))
    );
    assert!(d[6].is_null(), "the JWT stage refused the bad token first");
}

/// Every schema's record carries the call's tokens as the provider
/// reported them (ECS under `gen_ai.*`), and what the budget has left; the
/// harness checks each record against its schema.
#[test]
fn audit_records_carry_the_tokens_in_every_schema() {
    for schema in ["ecs", "ocsf", "palisade"] {
        let mut llm = allowlist();
        llm["budgets"] = json!({"rules": [{"name": "per_client", "key": ["client_address", "model"],
            "token_bucket": {"max_tokens": 5000, "tokens_per_fill": 5000, "fill_interval": "1d"}}]});
        let (upstream, envoy) = gateway(
            &[("audit", json!({"schema": schema})), ("llm", llm)],
            1,
            None,
        );
        let results = openai(
            &envoy,
            json!([{"api": "chat", "model": "gpt-4o", "max_tokens": 30, "stream": true, "include_usage": true, "prompt": "count to thirty please"}]),
            false,
        );
        assert_eq!(results[0]["status"], 200);
        let stream = anthropic(
            &envoy,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 12, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        );
        assert_eq!(stream.status, 200);
        let refused = openai(&envoy, json!([{"api": "chat", "model": "gpt-5"}]), false);
        assert_eq!(refused[0]["status"], 403);
        let calls = upstream.calls();
        let records: Vec<Value> = envoy
            .wait_access_log(3)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        for (i, call) in calls.iter().enumerate() {
            let r = &records[i];
            let (input, output, remaining, model) = match schema {
                "ecs" => (
                    &r["gen_ai"]["usage"]["input_tokens"],
                    &r["gen_ai"]["usage"]["output_tokens"],
                    &r["palisade"]["llm"]["remaining"],
                    &r["gen_ai"]["request"]["model"],
                ),
                "ocsf" => {
                    let llm = &r["unmapped"]["palisade"]["llm"];
                    (
                        &llm["input_tokens"],
                        &llm["output_tokens"],
                        &llm["remaining"],
                        &llm["model"],
                    )
                }
                _ => (
                    &r["llm"]["input_tokens"],
                    &r["llm"]["output_tokens"],
                    &r["llm"]["remaining"],
                    &r["llm"]["model"],
                ),
            };
            assert_eq!(input.as_u64(), Some(call.input_tokens), "{schema} {r}");
            assert_eq!(output.as_u64(), Some(call.output_tokens), "{schema} {r}");
            assert_eq!(
                remaining.as_u64(),
                Some(5000 - call.input_tokens - call.output_tokens),
                "{schema} {r}"
            );
            assert_eq!(model, &call.body["model"]);
        }
        if schema == "ecs" {
            assert_eq!(records[0]["gen_ai"]["system"], "openai");
            assert_eq!(records[1]["gen_ai"]["system"], "anthropic");
            assert_eq!(records[1]["gen_ai"]["operation"]["name"], "chat");
            assert_eq!(records[2]["event"]["action"], "llm-denied");
            assert!(records[2]["gen_ai"].get("usage").is_none());
        }
    }
}
