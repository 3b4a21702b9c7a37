//! Token budgets: the rate limiter's rules and buckets, spent in LLM tokens.
//!
//! The `budgets` section is a rate-limit configuration (`palisade-ratelimit`:
//! rules, keys, token buckets, slot tables, `RateLimit` fields), with one
//! more key descriptor, `"model"`, and no `cost`: a call costs the tokens it
//! uses. It is decided by the rate limiter itself, so budgets are exact
//! across Envoy's workers and bounded in memory exactly as request limits
//! are:
//!
//! 1. when the call's body is read, it spends a provisional cost from every
//!    budget it falls under ([`provisional_cost`]: its output-token limit,
//!    weighted, when `reserve` is on; else one token), and is refused (429)
//!    if a budget lacks it;
//! 2. when its response ends, [`palisade_ratelimit::settle`] gives back
//!    what it did not use, or charges what it used beyond, from the usage
//!    the provider reported (or the configured estimate).
//!
//! The model is handed to the rate limiter as a request value under a
//! pseudo-header name no client can send ([`MODEL_KEY`]), which the budget
//! stage sets itself.

use std::hash::{DefaultHasher, Hasher};
use std::net::IpAddr;

use palisade_ratelimit::config::Config as BudgetConfig;
use palisade_ratelimit::key::{client_key, Descriptor, RequestFacts};
use palisade_shared::config::ConfigError;
use palisade_shared::engine::sections::within;
use serde_json::{json, Value};

use crate::api::Operation;
use crate::config::{Config, Estimate};
use crate::policy::ModelRule;
use crate::usage::Usage;

/// The request value that carries the model into a budget's key: a
/// pseudo-header name, which no client can send (Envoy accepts only the
/// standard pseudo-headers), set by the stage from the body.
pub const MODEL_KEY: &str = ":palisade-llm-model";

/// Compiles the `budgets` section.
pub fn compile(raw: Value) -> Result<BudgetConfig, ConfigError> {
    let Value::Object(mut section) = raw else {
        return Err(ConfigError::invalid(
            "budgets",
            "must be an object: a rate-limit configuration",
        ));
    };
    // Never the request limits' buckets, unless the operator says so.
    section.entry("domain").or_insert_with(|| json!("llm"));
    if let Some(Value::Array(rules)) = section.get_mut("rules") {
        for (i, rule) in rules.iter_mut().enumerate() {
            let Value::Object(rule) = rule else { continue };
            if rule.contains_key("cost") {
                return Err(ConfigError::invalid(
                    format!("budgets.rules[{i}].cost"),
                    "a budget has no fixed cost: a call costs the tokens it uses",
                ));
            }
            if let Some(Value::Array(key)) = rule.get_mut("key") {
                for descriptor in key.iter_mut().filter(|d| *d == "model") {
                    *descriptor = json!({ "header": MODEL_KEY });
                }
            }
        }
    }
    let text =
        serde_json::to_vec(&section).map_err(|e| ConfigError::invalid("budgets", e.to_string()))?;
    BudgetConfig::from_json(&text).map_err(|e| within("budgets", e))
}

/// The request headers a budget key reads (the model excluded: it comes
/// from the body).
pub fn request_headers(budgets: &BudgetConfig) -> Vec<String> {
    let mut names = palisade_ratelimit::RateLimitStage::request_headers(budgets);
    names.retain(|n| n != MODEL_KEY);
    names
}

/// Hands the model to the budget keys.
pub fn set_model(facts: &mut RequestFacts, model: &str) {
    facts.headers.retain(|(name, _)| name != MODEL_KEY);
    facts
        .headers
        .push((MODEL_KEY.to_string(), model.to_string()));
}

/// The output tokens a call may produce: none for embeddings, else its
/// limit, or the estimate when it sets none.
fn output_bound(operation: Operation, max_tokens: Option<u64>, estimate: &Estimate) -> u64 {
    match operation {
        Operation::Embeddings => 0,
        _ => max_tokens.unwrap_or(estimate.output),
    }
}

/// What a call spends from its budgets when it is admitted: its output
/// limit (or the estimate), weighted, when `reserve` is on; else one token
/// (a budget with tokens left admits it). At least one token.
pub fn provisional_cost(
    config: &Config,
    rule: &ModelRule,
    operation: Operation,
    max_tokens: Option<u64>,
) -> u64 {
    if !config.reserve {
        return 1;
    }
    let output = output_bound(operation, max_tokens, &config.estimate);
    rule.cost(Usage { input: 0, output }).max(1)
}

/// What a call whose response reported no usage is charged: the configured
/// estimate, its output part never above the call's own limit.
pub fn estimated_usage(
    estimate: &Estimate,
    operation: Operation,
    max_tokens: Option<u64>,
) -> Usage {
    Usage {
        input: estimate.input,
        output: output_bound(operation, max_tokens, estimate).min(estimate.output),
    }
}

/// A budget rule's key for this request, as `descriptor=value` pairs for
/// the audit record. Header values are shown as a hash (one may be an API
/// key); a missing value is `-`.
pub fn key_description(budgets: &BudgetConfig, rule: usize, facts: &RequestFacts) -> String {
    let Some(rule) = budgets.rules.get(rule) else {
        return String::new();
    };
    let header = |name: &str| {
        facts
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut parts: Vec<String> = Vec::with_capacity(rule.key.len());
    for d in &rule.key {
        let (name, value): (String, Option<String>) = match d {
            Descriptor::Header(h) if h == MODEL_KEY => {
                ("model".into(), header(h).map(str::to_string))
            }
            Descriptor::Header(h) => {
                let hashed = header(h).map(|v| {
                    let mut hasher = DefaultHasher::new();
                    hasher.write(v.as_bytes());
                    format!("#{:016x}", hasher.finish())
                });
                (format!("header.{h}"), hashed)
            }
            Descriptor::ClientAddress => {
                let key = client_key(&budgets.client_address, facts);
                let ip = key.bytes.as_deref().and_then(|b| match b.len() {
                    4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
                    _ => None,
                });
                ("client_address".into(), ip.map(|ip| ip.to_string()))
            }
            Descriptor::Identity(claim) => (
                claim.name().into(),
                facts
                    .identity
                    .as_deref()
                    .and_then(|id| claim.value(id))
                    .map(str::to_string),
            ),
            Descriptor::Mcp(field) => (
                format!("mcp.{}", field.name()),
                facts
                    .mcp
                    .as_ref()
                    .and_then(|m| field.value(m))
                    .map(str::to_string),
            ),
            Descriptor::Path => ("path".into(), Some(facts.view().path_only().to_string())),
            Descriptor::Method => ("method".into(), Some(facts.method.clone())),
            Descriptor::Host => ("host".into(), Some(facts.view().host_only())),
            Descriptor::RouteName => ("route_name".into(), Some(facts.route_name.clone())),
            Descriptor::Constant(c) => ("constant".into(), Some(c.clone())),
        };
        parts.push(format!("{name}={}", value.as_deref().unwrap_or("-")));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_ratelimit::limiter::{create_tables, decide};
    use palisade_ratelimit::settle::settle;
    use palisade_shared::contract::Identity;
    use palisade_shared::store::MemoryStore;
    use std::rc::Rc;

    fn config(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    const TEAM: &str = r#"{"models": [{"name": "all", "match": {"prefix": "gpt-4o"}, "output_weight": 2}],
        "budgets": {"rules": [{"name": "team", "key": [{"identity": "client_id"}, "model"],
            "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1d"}}]}}"#;

    fn facts(client: &str, model: &str, cost: u64) -> RequestFacts {
        let mut f = RequestFacts {
            identity: Some(Rc::new(Identity {
                client_id: Some(client.into()),
                ..Identity::default()
            })),
            cost: Some(cost),
            ..RequestFacts::default()
        };
        set_model(&mut f, model);
        f
    }

    #[test]
    fn budgets_are_keyed_per_model_and_identity_and_settle_to_the_usage() {
        let c = config(TEAM);
        let budgets = c.budgets.as_ref().unwrap();
        assert_eq!(budgets.domain, "llm");
        let store = MemoryStore::new();
        create_tables(budgets, &store).unwrap();
        let rule = &c.models[0];
        // max_tokens 100 at output weight 2: 200 reserved.
        let reserve = provisional_cost(&c, rule, Operation::Chat, Some(100));
        assert_eq!(reserve, 200);
        let f = facts("team-a", "gpt-4o", reserve);
        let d = decide(budgets, &store, &f, 0);
        assert_eq!(d.reports[0].remaining, 800);
        // 30 in, 60 out: 150 charged, 50 given back.
        let used = rule.cost(Usage {
            input: 30,
            output: 60,
        });
        let s = settle(budgets, &store, &f, &d, used, 0);
        assert_eq!((used, s.rules[0].remaining), (150, 850));
        // Another model, or another team: another bucket.
        for other in [
            facts("team-a", "gpt-4o-mini", 1),
            facts("team-b", "gpt-4o", 1),
        ] {
            assert_eq!(decide(budgets, &store, &other, 0).reports[0].remaining, 999);
        }
        assert_eq!(
            key_description(budgets, 0, &f),
            "client_id=team-a,model=gpt-4o"
        );
    }

    #[test]
    fn without_reserve_a_call_needs_one_token_and_pays_after() {
        let c = config(&TEAM.replace("\"models\"", "\"reserve\": false, \"models\""));
        assert_eq!(
            provisional_cost(&c, &c.models[0], Operation::Chat, Some(500)),
            1
        );
        let with = config(TEAM);
        // No limit set: the estimate is reserved; embeddings reserve one.
        assert_eq!(
            provisional_cost(&with, &with.models[0], Operation::Chat, None),
            2000
        );
        assert_eq!(
            provisional_cost(&with, &with.models[0], Operation::Embeddings, None),
            1
        );
    }

    #[test]
    fn the_estimate_never_exceeds_the_calls_limit() {
        let e = Estimate {
            input: 500,
            output: 800,
        };
        assert_eq!(
            estimated_usage(&e, Operation::Chat, Some(50)),
            Usage {
                input: 500,
                output: 50
            }
        );
        assert_eq!(
            estimated_usage(&e, Operation::Chat, None),
            Usage {
                input: 500,
                output: 800
            }
        );
        assert_eq!(
            estimated_usage(&e, Operation::Embeddings, Some(50)),
            Usage {
                input: 500,
                output: 0
            }
        );
    }

    #[test]
    fn keys_are_described_without_secrets() {
        let c = config(
            r#"{"budgets": {"rules": [{"name": "k", "key": ["client_address", {"header": "x-api-key"}, {"identity": "sub"}, "model"],
                "token_bucket": {"max_tokens": 10, "fill_interval": "1h"}}]}}"#,
        );
        let budgets = c.budgets.as_ref().unwrap();
        assert_eq!(request_headers(budgets), ["x-api-key"]);
        let mut f = facts("c", "m", 1);
        f.peer_address = Some("192.0.2.9:5000".into());
        f.headers.push(("x-api-key".into(), "sk-secret".into()));
        let text = key_description(budgets, 0, &f);
        assert!(
            text.starts_with("client_address=192.0.2.9,header.x-api-key=#"),
            "{text}"
        );
        assert!(text.ends_with(",sub=-,model=m"), "{text}");
        assert!(!text.contains("sk-secret"));
    }
}
