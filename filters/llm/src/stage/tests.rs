//! The LLM stage in the engine against the fake host: calls recognized,
//! models refused in the provider's format, caps rewritten, budgets
//! reserved and settled from the usage of JSON and streamed responses.

use palisade_shared::contract;
use palisade_shared::engine::fake::{FakeHost, SentReply};
use palisade_shared::engine::{Action, Engine, FlowSlot, Module};
use serde_json::{json, Value};

use super::*;

struct Gateway {
    host: FakeHost,
    engine: Engine<LlmStage>,
}

/// A response: status, content type, body chunks.
struct Answer<'a> {
    status: &'a str,
    content_type: &'a str,
    chunks: Vec<&'a [u8]>,
}

fn json_answer(body: &str) -> Answer<'_> {
    Answer {
        status: "200",
        content_type: "application/json",
        chunks: vec![body.as_bytes()],
    }
}

impl Gateway {
    fn new(config: Value) -> Self {
        Self::with_host(FakeHost::new(), config)
    }

    fn with_host(host: FakeHost, config: Value) -> Self {
        let stage = LlmModule::configure(config.to_string().as_bytes(), &host).unwrap();
        let engine = Engine::new(stage, LlmModule::NAME, 1, &host).unwrap();
        Gateway { host, engine }
    }

    /// One call: the reply the stage sent (a refusal), or `None` when the
    /// call went upstream and `answer` came back.
    fn call(&self, path: &str, body: &str, answer: Answer<'_>) -> Option<SentReply> {
        let host = &self.host;
        let replies = host.replies().len();
        host.set_request(
            &[
                (":method", "POST"),
                (":path", path),
                (":authority", "llm.example.com"),
                ("content-length", &body.len().to_string()),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        let mut slot: FlowSlot<_> = None;
        let e = &self.engine;
        let refused = |host: &FakeHost| host.replies().get(replies).cloned();
        if e.on_request_headers(7, &mut slot, body.is_empty(), host) == Action::Pause {
            e.on_log(7, &mut slot, host);
            return refused(host);
        }
        if !body.is_empty()
            && e.on_request_body(7, &mut slot, body.len(), true, host) == Action::Pause
        {
            e.on_log(7, &mut slot, host);
            return refused(host);
        }
        host.set_response_headers(&[
            (":status", answer.status),
            ("content-type", answer.content_type),
        ]);
        e.on_response_headers(7, &mut slot, host);
        let n = answer.chunks.len();
        for (i, chunk) in answer.chunks.into_iter().enumerate() {
            host.set_response_body(chunk);
            e.on_response_body(7, &mut slot, chunk.len(), i + 1 == n, host);
        }
        e.on_log(7, &mut slot, host);
        refused(host)
    }

    fn decision(&self) -> Value {
        self.host.property_json(contract::LLM).unwrap()
    }
}

const CHAT: &str = "/v1/chat/completions";

fn openai_json(prompt: u64, completion: u64) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
    .to_string()
}

fn team_config() -> Value {
    json!({
        "models": [
            {"name": "gpt4", "match": {"prefix": "gpt-4"}, "max_tokens": 500},
            {"name": "claude", "match": {"prefix": "claude-"}}
        ],
        "budgets": {"rate_limit_headers": "always", "rules": [{"name": "team", "key": ["client_address"],
            "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1d"}}]}
    })
}

#[test]
fn other_requests_pass_untouched() {
    let g = Gateway::new(team_config());
    for (method, path) in [("GET", CHAT), ("POST", "/v1/models"), ("POST", "/chat")] {
        g.host
            .set_request(&[(":method", method), (":path", path)], b"not json");
        let mut slot = None;
        assert_eq!(
            g.engine.on_request_headers(3, &mut slot, false, &g.host),
            Action::Continue
        );
        assert_eq!(
            g.engine.on_request_body(3, &mut slot, 8, true, &g.host),
            Action::Continue
        );
    }
    assert!(g.host.property_json(contract::LLM).is_none());
}

#[test]
fn an_unlisted_model_is_refused_in_the_providers_format() {
    let g = Gateway::new(team_config());
    let reply = g
        .call(
            CHAT,
            r#"{"model":"gpt-3.5-turbo","messages":[]}"#,
            json_answer(""),
        )
        .unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-3.5-turbo"));
    let d = g.decision();
    assert_eq!(
        (d["model"].as_str(), d["outcome"].as_str()),
        (Some("gpt-3.5-turbo"), Some("model_not_allowed"))
    );
    assert_eq!(
        g.host.property_json(contract::DENIAL).unwrap()["filter"],
        "llm"
    );
    assert_eq!(g.host.metric("palisade.llm.model.other.refused"), 1);
    // Anthropic's format on its endpoint.
    let reply = g
        .call(
            "/v1/messages",
            r#"{"model":"gpt-3.5","max_tokens":5}"#,
            json_answer(""),
        )
        .unwrap();
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "permission_error");
}

#[test]
fn bodies_that_cannot_be_read_are_refused() {
    let g = Gateway::new(json!({"other_models": "allow", "max_body_bytes": 64}));
    let reply = g.call(CHAT, "{\"model\": 1}", json_answer("")).unwrap();
    assert_eq!(
        (reply.status, reply.json()["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let big = format!(
        r#"{{"model":"m","messages":[{{"content":"{}"}}]}}"#,
        "x".repeat(100)
    );
    assert_eq!(g.call(CHAT, &big, json_answer("")).unwrap().status, 413);
    assert_eq!(g.call(CHAT, "", json_answer("")).unwrap().status, 400);
    assert_eq!(g.host.metric("palisade.llm.invalid_requests"), 3);
}

#[test]
fn a_cap_rewrites_the_body_the_upstream_gets() {
    let g = Gateway::new(team_config());
    let body =
        r#"{"model":"gpt-4o","max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}"#;
    assert!(g
        .call(CHAT, body, json_answer(&openai_json(10, 20)))
        .is_none());
    assert_eq!(
        String::from_utf8(g.host.request_body()).unwrap(),
        r#"{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert!(
        !g.host
            .request_headers()
            .iter()
            .any(|(n, _)| n == "content-length"),
        "the length changes with the body"
    );
    let d = g.decision();
    assert_eq!(
        (d["capped"].as_bool(), d["max_tokens"].as_u64()),
        (Some(true), Some(500))
    );
    assert_eq!(g.host.metric("palisade.llm.capped"), 1);
    // Refused instead when configured so.
    let mut config = team_config();
    config["on_max_tokens"] = json!("refuse");
    let g = Gateway::new(config);
    let reply = g.call(CHAT, body, json_answer("")).unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "max_tokens_exceeded");
}

#[test]
fn a_budget_reserves_settles_and_refuses_in_tokens() {
    let g = Gateway::with_host(
        FakeHost::new().with_property(&["source", "address"], b"10.0.0.1:4000"),
        team_config(),
    );
    // Reserves 400 (max_tokens), uses 30 + 270: 700 left.
    let body = r#"{"model":"gpt-4o","max_tokens":400,"messages":[]}"#;
    assert!(g
        .call(CHAT, body, json_answer(&openai_json(30, 270)))
        .is_none());
    let d = g.decision();
    assert_eq!(
        (d["input_tokens"].as_u64(), d["output_tokens"].as_u64()),
        (Some(30), Some(270))
    );
    assert_eq!(
        (d["usage"].as_str(), d["charged"].as_u64()),
        (Some("reported"), Some(300))
    );
    assert_eq!(
        (d["budget"].as_str(), d["remaining"].as_u64()),
        (Some("team"), Some(700))
    );
    assert_eq!(d["budget_key"], "client_address=10.0.0.1");
    assert_eq!(d["response_model"], "gpt-4o-2024-08-06");
    // The RateLimit fields were on the response, in tokens, after the reservation.
    assert!(g
        .host
        .response_headers()
        .contains(&("ratelimit".into(), "\"team\";r=600;t=34560".into())));
    // 700 left: a call that reserves 500 fits, then nothing that reserves 500 does.
    let body = r#"{"model":"gpt-4o","max_tokens":500,"messages":[]}"#;
    assert!(g
        .call(CHAT, body, json_answer(&openai_json(100, 400)))
        .is_none());
    assert_eq!(g.decision()["remaining"], 200);
    let reply = g.call(CHAT, body, json_answer("")).unwrap();
    assert_eq!(reply.status, 429);
    // 300 tokens short at 1000 a day: 25 920 s.
    assert_eq!(reply.header("retry-after"), Some("25920"));
    assert_eq!(
        reply.header("ratelimit-policy"),
        Some("\"team\";q=1000;w=86400")
    );
    assert_eq!(reply.header("ratelimit"), Some("\"team\";r=200;t=25920"));
    assert_eq!(reply.json()["error"]["code"], "budget_exceeded");
    assert_eq!(g.decision()["outcome"], "budget_exceeded");
    assert_eq!(g.host.metric("palisade.llm.budget.team.limited"), 1);
    assert_eq!(g.host.metric("palisade.llm.model.gpt4.requests"), 2);
    assert_eq!(g.host.metric("palisade.llm.model.gpt4.refused"), 1);
    assert_eq!(g.host.metric("palisade.llm.model.gpt4.input_tokens"), 130);
    assert_eq!(g.host.metric("palisade.llm.model.gpt4.output_tokens"), 670);
    // A smaller call still fits; an Anthropic one is refused in its format.
    let reply = g
        .call(
            "/v1/messages",
            r#"{"model":"claude-x","max_tokens":300}"#,
            json_answer(""),
        )
        .unwrap();
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
}

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[test]
fn a_stream_split_anywhere_is_charged_its_usage() {
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[]}"#;
    for cut in (0..ANTHROPIC_STREAM.len()).step_by(7) {
        let g = Gateway::new(team_config());
        let bytes = ANTHROPIC_STREAM.as_bytes();
        let answer = Answer {
            status: "200",
            content_type: "text/event-stream; charset=utf-8",
            chunks: vec![&bytes[..cut], &bytes[cut..]],
        };
        assert!(g.call("/v1/messages", body, answer).is_none());
        let d = g.decision();
        assert_eq!(
            (d["input_tokens"].as_u64(), d["output_tokens"].as_u64()),
            (Some(25), Some(15)),
            "cut {cut}"
        );
        assert_eq!(d["remaining"], 960);
        assert_eq!(d["stream"], true);
    }
}

/// SDKs hang up once they have read the last event, often before the
/// body's end reaches the proxy: the call is settled at the last event.
#[test]
fn a_stream_is_settled_at_its_last_event() {
    let g = Gateway::new(team_config());
    let host = &g.host;
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[]}"#;
    host.set_request(
        &[
            (":method", "POST"),
            (":path", "/v1/messages"),
            (":authority", "llm.example.com"),
            ("content-length", &body.len().to_string()),
        ],
        body.as_bytes(),
    );
    let mut slot: FlowSlot<_> = None;
    let e = &g.engine;
    assert_eq!(
        e.on_request_headers(7, &mut slot, false, host),
        Action::Continue
    );
    assert_eq!(
        e.on_request_body(7, &mut slot, body.len(), true, host),
        Action::Continue
    );
    host.set_response_headers(&[(":status", "200"), ("content-type", "text/event-stream")]);
    e.on_response_headers(7, &mut slot, host);
    let last = ANTHROPIC_STREAM.find("event: message_stop").unwrap();
    let (before, rest) = ANTHROPIC_STREAM.split_at(last);
    host.set_response_body(before.as_bytes());
    e.on_response_body(7, &mut slot, before.len(), false, host);
    assert_eq!(g.decision()["usage"], "pending", "the stream goes on");
    host.set_response_body(rest.as_bytes());
    e.on_response_body(7, &mut slot, rest.len(), false, host);
    let d = g.decision();
    assert_eq!(
        (
            d["usage"].as_str(),
            d["output_tokens"].as_u64(),
            d["remaining"].as_u64()
        ),
        (Some("reported"), Some(15), Some(960))
    );
}

#[test]
fn a_stream_without_usage_is_charged_the_estimate() {
    let mut config = team_config();
    config["usage_estimate"] = json!({"input_tokens": 50, "output_tokens": 80});
    let g = Gateway::new(config);
    let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    let answer = Answer {
        status: "200",
        content_type: "text/event-stream",
        chunks: vec![stream.as_bytes()],
    };
    let body = r#"{"model":"gpt-4o","max_tokens":60,"stream":true,"messages":[]}"#;
    assert!(g.call(CHAT, body, answer).is_none());
    let d = g.decision();
    // The output estimate is never above the call's own limit.
    assert_eq!(
        (d["input_tokens"].as_u64(), d["output_tokens"].as_u64()),
        (Some(50), Some(60))
    );
    assert_eq!(d["usage"], "estimated");
    assert_eq!(d["remaining"], 890);
    assert_eq!(g.host.metric("palisade.llm.usage_estimated"), 1);
    // An error answer without usage is charged nothing.
    let answer = Answer {
        status: "500",
        content_type: "application/json",
        chunks: vec![br#"{"error":{"message":"overloaded"}}"#],
    };
    assert!(g.call(CHAT, body, answer).is_none());
    assert_eq!(
        (
            g.decision()["usage"].as_str(),
            g.decision()["remaining"].as_u64()
        ),
        (Some("none"), Some(890))
    );
}

#[test]
fn models_gated_by_scope_read_the_verified_identity() {
    let config = json!({
        "models": [{"name": "gpt4", "match": {"prefix": "gpt-4"}, "scopes": ["llm:gpt4"]},
                   {"name": "mini", "match": {"prefix": "small-"}}],
        "budgets": {"rules": [{"name": "per_client", "key": [{"identity": "client_id"}],
            "token_bucket": {"max_tokens": 100, "fill_interval": "1h"}}]}
    });
    let identity = |scope: &str| {
        json!({"provider": "corp", "iss": "https://idp", "client_id": "team-a", "scope": [scope]})
            .to_string()
    };
    let with = |scope: &str| {
        Gateway::with_host(
            FakeHost::new().with_property(&[contract::IDENTITY], identity(scope).as_bytes()),
            config.clone(),
        )
    };
    let body = r#"{"model":"gpt-4o","max_tokens":10,"messages":[]}"#;
    let g = with("llm:gpt4");
    assert!(g
        .call(CHAT, body, json_answer(&openai_json(1, 2)))
        .is_none());
    assert_eq!(g.decision()["budget_key"], "client_id=team-a");
    let g = with("read");
    let reply = g.call(CHAT, body, json_answer("")).unwrap();
    assert_eq!(reply.status, 403);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("llm:gpt4"));
    assert_eq!(g.decision()["outcome"], "model_not_permitted");
    // Without an identity: refused for the gated model; the open one is
    // charged to the budget's shared bucket of callers without the key.
    let g = Gateway::new(config);
    assert_eq!(g.call(CHAT, body, json_answer("")).unwrap().status, 403);
    assert_eq!(g.decision()["outcome"], "model_requires_identity");
    let open = r#"{"model":"small-1","max_tokens":10,"messages":[]}"#;
    assert!(g
        .call(CHAT, open, json_answer(&openai_json(1, 2)))
        .is_none());
    assert_eq!(g.decision()["budget_key"], "client_id=-");
}
