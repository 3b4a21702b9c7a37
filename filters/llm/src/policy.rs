//! Model policy: which rule a model falls under, whether the verified
//! identity may use it, and what its tokens cost.

use palisade_shared::contract::{Identity, IdentityClaim};

use crate::config::Cap;
use crate::usage::Usage;

/// How a rule names models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelMatch {
    /// This model exactly.
    Exact(String),
    /// Every model whose name starts with this (`gpt-4` covers `gpt-4o`).
    Prefix(String),
}

impl ModelMatch {
    fn matches(&self, model: &str) -> bool {
        match self {
            ModelMatch::Exact(name) => model == name,
            ModelMatch::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }
}

/// One model rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRule {
    /// Its name: in metrics and the audit record.
    pub name: String,
    /// The models it covers.
    pub matches: ModelMatch,
    /// Scopes the identity must all hold.
    pub scopes: Vec<String>,
    /// Claims the identity must hold, each one of its values.
    pub claims: Vec<(IdentityClaim, Vec<String>)>,
    /// The output-token cap.
    pub cap: Option<Cap>,
    /// Budget tokens per input token, in thousandths.
    pub input_weight: u64,
    /// Budget tokens per output token, in thousandths.
    pub output_weight: u64,
}

impl ModelRule {
    /// The rule of models no rule names, when they are allowed.
    pub fn other(cap: Option<Cap>) -> ModelRule {
        ModelRule {
            name: "other".into(),
            matches: ModelMatch::Prefix(String::new()),
            scopes: Vec::new(),
            claims: Vec::new(),
            cap,
            input_weight: 1000,
            output_weight: 1000,
        }
    }

    /// Whether the rule asks anything of the identity.
    pub fn requires_identity(&self) -> bool {
        !self.scopes.is_empty() || !self.claims.is_empty()
    }

    /// Budget tokens for `usage`, rounded up.
    pub fn cost(&self, usage: Usage) -> u64 {
        let milli = u128::from(usage.input) * u128::from(self.input_weight)
            + u128::from(usage.output) * u128::from(self.output_weight);
        u64::try_from(milli.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// The rule `model` falls under: the first that names it, else the rule of
/// other models when they are allowed; `None` when it is refused.
pub fn rule_for<'a>(
    rules: &'a [ModelRule],
    other: Option<&'a ModelRule>,
    model: &str,
) -> Option<&'a ModelRule> {
    rules.iter().find(|r| r.matches.matches(model)).or(other)
}

/// Why an identity may not use a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPermitted {
    /// No rule names the model, and other models are refused.
    Unlisted,
    /// The rule needs a verified identity and there is none.
    NoIdentity,
    /// The identity lacks this scope.
    Scope(String),
    /// The identity lacks one of the claim's values.
    Claim(IdentityClaim),
}

impl NotPermitted {
    /// The machine-readable reason (`palisade.denial`, the audit record).
    pub fn reason(&self) -> &'static str {
        match self {
            NotPermitted::Unlisted => "model_not_allowed",
            NotPermitted::NoIdentity => "model_requires_identity",
            NotPermitted::Scope(_) | NotPermitted::Claim(_) => "model_not_permitted",
        }
    }
}

/// Whether `identity` may call a model under `rule`.
pub fn permits(rule: &ModelRule, identity: Option<&Identity>) -> Result<(), NotPermitted> {
    if !rule.requires_identity() {
        return Ok(());
    }
    let identity = identity.ok_or(NotPermitted::NoIdentity)?;
    if let Some(missing) = rule.scopes.iter().find(|s| !identity.scope.contains(s)) {
        return Err(NotPermitted::Scope(missing.clone()));
    }
    if let Some((claim, _)) = rule
        .claims
        .iter()
        .find(|(c, v)| !c.holds_one_of(identity, v))
    {
        return Err(NotPermitted::Claim(*claim));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, matches: ModelMatch) -> ModelRule {
        ModelRule {
            name: name.into(),
            matches,
            ..ModelRule::other(None)
        }
    }

    #[test]
    fn the_first_rule_that_names_the_model_applies() {
        let rules = [
            rule("mini", ModelMatch::Exact("gpt-4o-mini".into())),
            rule("gpt4", ModelMatch::Prefix("gpt-4".into())),
        ];
        let name =
            |m: &str, other: Option<&ModelRule>| rule_for(&rules, other, m).map(|r| r.name.clone());
        assert_eq!(name("gpt-4o-mini", None).as_deref(), Some("mini"));
        assert_eq!(name("gpt-4o", None).as_deref(), Some("gpt4"));
        assert_eq!(name("gpt-4o-mini-2024", None).as_deref(), Some("gpt4"));
        assert_eq!(name("gpt-3.5-turbo", None), None);
        let other = ModelRule::other(None);
        assert_eq!(name("llama-3", Some(&other)).as_deref(), Some("other"));
    }

    #[test]
    fn scopes_and_claims_of_the_verified_identity() {
        let gated = ModelRule {
            scopes: vec!["llm:gpt4".into()],
            claims: vec![
                (IdentityClaim::Acr, vec!["mfa".into(), "hwk".into()]),
                (IdentityClaim::Aud, vec!["llm-gateway".into()]),
            ],
            ..rule("gpt4", ModelMatch::Prefix("gpt-4".into()))
        };
        let id = Identity {
            scope: vec!["read".into(), "llm:gpt4".into()],
            acr: Some("hwk".into()),
            aud: vec!["other".into(), "llm-gateway".into()],
            ..Identity::default()
        };
        assert_eq!(permits(&gated, Some(&id)), Ok(()));
        assert_eq!(permits(&gated, None), Err(NotPermitted::NoIdentity));
        let no_scope = Identity {
            scope: vec!["read".into()],
            ..id.clone()
        };
        assert_eq!(
            permits(&gated, Some(&no_scope)),
            Err(NotPermitted::Scope("llm:gpt4".into()))
        );
        let weak = Identity {
            acr: Some("pwd".into()),
            ..id.clone()
        };
        assert_eq!(
            permits(&gated, Some(&weak)),
            Err(NotPermitted::Claim(IdentityClaim::Acr))
        );
        let no_acr = Identity { acr: None, ..id };
        assert!(permits(&gated, Some(&no_acr)).is_err());
        // A rule that asks nothing needs no identity.
        assert_eq!(permits(&ModelRule::other(None), None), Ok(()));
    }

    #[test]
    fn costs_weigh_input_and_output_and_round_up() {
        let priced = ModelRule {
            input_weight: 250,
            output_weight: 1000,
            ..ModelRule::other(None)
        };
        assert_eq!(
            priced.cost(Usage {
                input: 1000,
                output: 10
            }),
            260
        );
        assert_eq!(
            priced.cost(Usage {
                input: 1,
                output: 0
            }),
            1
        );
        assert_eq!(priced.cost(Usage::default()), 0);
        let max = Usage {
            input: u64::MAX,
            output: u64::MAX,
        };
        assert_eq!(
            ModelRule {
                input_weight: 1_000_000,
                ..priced
            }
            .cost(max),
            u64::MAX
        );
    }
}
