//! The configuration: JSON as operators write it, validated and compiled
//! once into an immutable [`Config`].
//!
//! ```
//! use palisade_llm::config::Config;
//! let config = Config::from_json(br#"{
//!   "models": [{"name": "gpt4", "match": {"prefix": "gpt-4"}, "scopes": ["llm:gpt4"]}],
//!   "budgets": {"rules": [{"name": "team", "key": [{"identity": "client_id"}],
//!     "token_bucket": {"max_tokens": 1000000, "tokens_per_fill": 1000000, "fill_interval": "1d"}}]}
//! }"#).unwrap();
//! assert_eq!(config.models[0].name, "gpt4");
//! ```

use serde::Deserialize;

use palisade_ratelimit::config::Config as BudgetConfig;
use palisade_shared::config::{field_path, is_name, parse_json, ConfigError};
use palisade_shared::contract::IdentityClaim;
use palisade_shared::matcher::{RequestMatch, RequestMatcher};

use crate::budget;
use crate::policy::{ModelMatch, ModelRule};

/// The largest request body the stage reads, unless configured.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The largest `max_body_bytes`.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// A weight's largest value.
const MAX_WEIGHT: f64 = 1000.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "match")]
    request_match: RequestMatch,
    #[serde(default = "default_body")]
    max_body_bytes: usize,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    other_models: OtherModels,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    on_max_tokens: CapAction,
    #[serde(default = "yes")]
    reserve: bool,
    #[serde(default)]
    usage_estimate: RawEstimate,
    #[serde(default)]
    budgets: Option<serde_json::Value>,
}

fn default_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    #[serde(rename = "match")]
    model: RawModelMatch,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    on_max_tokens: Option<CapAction>,
    #[serde(default = "one")]
    input_weight: f64,
    #[serde(default = "one")]
    output_weight: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawModelMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEstimate {
    #[serde(default = "default_estimate")]
    input_tokens: u64,
    #[serde(default = "default_estimate")]
    output_tokens: u64,
}

fn default_estimate() -> u64 {
    1000
}

impl Default for RawEstimate {
    fn default() -> Self {
        RawEstimate {
            input_tokens: default_estimate(),
            output_tokens: default_estimate(),
        }
    }
}

/// What happens to a model no rule names.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OtherModels {
    /// Refused (403): only the models the rules name may be called.
    #[default]
    Refuse,
    /// Allowed, under the top-level cap and weights of 1.
    Allow,
}

/// What a cap does with a request that asks for more output tokens.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CapAction {
    /// Lowers the request's limit to the cap (or sets it, when absent).
    #[default]
    Rewrite,
    /// Refuses the request (400).
    Refuse,
}

/// An output-token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The most output tokens a request may ask for.
    pub limit: u64,
    /// What happens to one that asks for more.
    pub action: CapAction,
}

/// Tokens charged for a call whose response reported no usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Input tokens.
    pub input: u64,
    /// Output tokens (at most the call's output-token limit).
    pub output: u64,
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which requests are looked at.
    pub matcher: RequestMatcher,
    /// Whether the matcher reads the route name.
    pub match_route_name: bool,
    /// The largest body read; a larger one is refused (413).
    pub max_body_bytes: usize,
    /// The model rules, in order: the first that matches a model applies.
    pub models: Vec<ModelRule>,
    /// The rule for a model no rule names, when such models are allowed.
    pub other: Option<ModelRule>,
    /// Whether a call reserves its output-token limit from its budgets.
    pub reserve: bool,
    /// What a response without usage is charged.
    pub estimate: Estimate,
    /// The token budgets: rate-limit rules whose tokens are LLM tokens.
    pub budgets: Option<BudgetConfig>,
    /// Whether any cap may rewrite a body.
    pub rewrites: bool,
}

impl Config {
    /// Parses and validates a JSON configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        compile(raw)
    }
}

fn valid_name(name: &str) -> bool {
    name.len() <= 64 && is_name(name)
}

fn weight(value: f64, at: &str) -> Result<u64, ConfigError> {
    if !(0.0..=MAX_WEIGHT).contains(&value) {
        return Err(ConfigError::invalid(
            at,
            format!("must be a number from 0 to {MAX_WEIGHT}"),
        ));
    }
    // Thousandths of a token: exact for the prices providers publish.
    Ok((value * 1000.0).round() as u64)
}

fn cap(limit: Option<u64>, action: CapAction, at: &str) -> Result<Option<Cap>, ConfigError> {
    match limit {
        Some(0) => Err(ConfigError::invalid(at, "must be at least 1")),
        Some(limit) => Ok(Some(Cap { limit, action })),
        None => Ok(None),
    }
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let matcher = RequestMatcher::compile(&raw.request_match, "match")?;
    if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_BODY_BYTES {
        return Err(ConfigError::invalid(
            "max_body_bytes",
            format!("must be between 1 and {MAX_BODY_BYTES}"),
        ));
    }
    let default_cap = cap(raw.max_tokens, raw.on_max_tokens, "max_tokens")?;
    let mut models: Vec<ModelRule> = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.into_iter().enumerate() {
        let at = format!("models[{i}]");
        if !valid_name(&m.name) || m.name == "other" {
            return Err(ConfigError::invalid(
                field_path(&at, "name"),
                "must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`, and not `other` (the name of models no rule names)",
            ));
        }
        if models.iter().any(|r| r.name == m.name) {
            return Err(ConfigError::invalid(
                field_path(&at, "name"),
                format!("`{}` is the name of an earlier rule", m.name),
            ));
        }
        let matches = match m.model {
            RawModelMatch::Exact(s) if !s.is_empty() => ModelMatch::Exact(s),
            RawModelMatch::Prefix(s) if !s.is_empty() => ModelMatch::Prefix(s),
            _ => {
                return Err(ConfigError::invalid(
                    field_path(&at, "match"),
                    "the model name or prefix must not be empty",
                ))
            }
        };
        let mut claims = Vec::with_capacity(m.claims.len());
        for (name, values) in m.claims {
            let c_at = field_path(&at, &format!("claims.{name}"));
            let claim = IdentityClaim::parse(&name).ok_or_else(|| {
                ConfigError::invalid(
                    &c_at,
                    format!(
                        "not a claim of the verified identity (one of {})",
                        IdentityClaim::names(|_| true)
                    ),
                )
            })?;
            let values: Vec<String> = match values {
                serde_json::Value::String(s) => vec![s],
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            &c_at,
                            "must be a string or a non-empty list of strings",
                        )
                    })?,
                _ => {
                    return Err(ConfigError::invalid(
                        &c_at,
                        "must be a string or a non-empty list of strings",
                    ))
                }
            };
            claims.push((claim, values));
        }
        let action = m.on_max_tokens.unwrap_or(raw.on_max_tokens);
        let model_cap = match cap(m.max_tokens, action, &field_path(&at, "max_tokens"))? {
            Some(c) => Some(c),
            None => default_cap.map(|c| Cap { action, ..c }),
        };
        models.push(ModelRule {
            name: m.name,
            matches,
            scopes: m.scopes,
            claims,
            cap: model_cap,
            input_weight: weight(m.input_weight, &field_path(&at, "input_weight"))?,
            output_weight: weight(m.output_weight, &field_path(&at, "output_weight"))?,
        });
    }
    let other = (raw.other_models == OtherModels::Allow).then(|| ModelRule::other(default_cap));
    let budgets = raw
        .budgets
        .map(budget::compile)
        .transpose()?
        .filter(|b| !b.rules.is_empty());
    let rewrites = models
        .iter()
        .chain(other.iter())
        .any(|m| m.cap.is_some_and(|c| c.action == CapAction::Rewrite));
    Ok(Config {
        match_route_name: raw.request_match.route_name.is_some(),
        matcher,
        max_body_bytes: raw.max_body_bytes,
        models,
        other,
        reserve: raw.reserve,
        estimate: Estimate {
            input: raw.usage_estimate.input_tokens,
            output: raw.usage_estimate.output_tokens,
        },
        budgets,
        rewrites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).err().unwrap()
    }

    #[test]
    fn defaults_are_closed() {
        let c = Config::from_json(b"").unwrap();
        assert!(
            c.models.is_empty() && c.other.is_none(),
            "no model is allowed"
        );
        assert!(c.reserve);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(c.budgets.is_none());
    }

    #[test]
    fn caps_and_weights_compile_per_model() {
        let c = Config::from_json(
            br#"{"max_tokens": 4096, "on_max_tokens": "refuse", "other_models": "allow",
                 "models": [{"name": "big", "match": {"prefix": "gpt-4"}, "max_tokens": 1024, "input_weight": 2.5, "output_weight": 10},
                            {"name": "mini", "match": {"exact": "gpt-4o-mini"}, "on_max_tokens": "rewrite"}]}"#,
        )
        .unwrap();
        let big = &c.models[0];
        assert_eq!(
            big.cap,
            Some(Cap {
                limit: 1024,
                action: CapAction::Refuse
            })
        );
        assert_eq!((big.input_weight, big.output_weight), (2500, 10_000));
        assert_eq!(
            c.models[1].cap,
            Some(Cap {
                limit: 4096,
                action: CapAction::Rewrite
            })
        );
        assert_eq!(c.other.as_ref().unwrap().cap.unwrap().limit, 4096);
        assert!(c.rewrites);
    }

    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../README.md");
        let start = readme.find("```json\n").unwrap() + "```json\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let c = Config::from_json(&readme.as_bytes()[start..end]).unwrap();
        let names: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["small", "claude_haiku", "gpt4"]);
        assert_eq!(c.budgets.unwrap().rules[0].name, "team_daily");
    }

    #[test]
    fn model_rules_take_every_identity_claim() {
        let c = Config::from_json(
            br#"{"models": [{"name": "a", "match": {"exact": "x"},
                 "claims": {"scope": "llm:x", "amr": ["hwk", "otp"], "client_id": "app"}}]}"#,
        )
        .unwrap();
        let mut claims = c.models[0].claims.clone();
        claims.sort_by_key(|(claim, _)| claim.name());
        assert_eq!(
            claims,
            [
                (IdentityClaim::Amr, vec!["hwk".to_string(), "otp".into()]),
                (IdentityClaim::ClientId, vec!["app".into()]),
                (IdentityClaim::Scope, vec!["llm:x".into()]),
            ]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"models": [{"name": "other", "match": {"exact": "x"}}]}"#,
                "models[0].name",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"exact": "x"}}, {"name": "a", "match": {"exact": "y"}}]}"#,
                "models[1].name",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"prefix": ""}}]}"#,
                "models[0].match",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"exact": "x"}, "claims": {"email": "x"}}]}"#,
                "models[0].claims.email",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"exact": "x"}, "claims": {"acr": []}}]}"#,
                "models[0].claims.acr",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"exact": "x"}, "output_weight": -1}]}"#,
                "models[0].output_weight",
            ),
            (
                r#"{"models": [{"name": "a", "match": {"exact": "x"}, "max_tokens": 0}]}"#,
                "models[0].max_tokens",
            ),
            (r#"{"max_body_bytes": 0}"#, "max_body_bytes"),
            (
                r#"{"models": [{"name": "a", "match": {"regex": "x"}}]}"#,
                "models[0].match",
            ),
            (r#"{"budget": {}}"#, "budget"),
            (
                r#"{"budgets": {"rules": [{"name": "t", "cost": 5, "token_bucket": {"max_tokens": 9, "fill_interval": "1d"}}]}}"#,
                "budgets.rules[0].cost",
            ),
            (
                r#"{"budgets": {"rules": [{"name": "t", "token_bucket": {"max_tokens": 0, "fill_interval": "1d"}}]}}"#,
                "budgets.rules[0].token_bucket.max_tokens",
            ),
            (
                r#"{"budgets": {"rules": [{"name": "t", "key": ["modell"], "token_bucket": {"max_tokens": 9, "fill_interval": "1d"}}]}}"#,
                "budgets.rules[0].key[0]",
            ),
        ];
        for (json, path) in cases {
            let e = error(json);
            assert!(
                e.path == path || (path == "." && e.path.is_empty()),
                "{json}: {e}"
            );
        }
    }
}
