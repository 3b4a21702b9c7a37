//! The plugin configuration (JSON) and its compiled form.

use std::collections::HashSet;

use palisade_shared::config::{field_path, ConfigError};
use palisade_shared::matcher::{RequestMatch, RequestMatcher};
use serde::Deserialize;

use crate::csrf::{AllowedOrigin, CsrfPolicy};
use crate::engine::RuleSet;
use crate::rules::{Condition, Family, Pattern, RuleSpec, Severity, Targets};
use crate::signatures;
use crate::transform::Transform;

/// Block requests over the threshold, or only report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refuse with 403.
    #[default]
    Block,
    /// Publish the decision and count, never refuse.
    Detect,
}

/// What to do with a body larger than `max_body_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyLimitAction {
    /// Inspect the first `max_body_bytes` and let the rest through.
    #[default]
    InspectPrefix,
    /// Refuse with 413.
    Reject,
}

/// The configuration as operators write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafConfigJson {
    /// `block` (default) or `detect`.
    pub mode: Mode,
    /// Which built-in rules run: 1 (default) to 4.
    pub paranoia_level: u8,
    /// The inbound anomaly score at which a request is refused (default 5).
    pub anomaly_threshold: u32,
    /// How much of a body is inspected (default 131072).
    pub max_body_bytes: usize,
    /// `inspect_prefix` (default) or `reject` (413) for larger bodies.
    pub body_limit_action: BodyLimitAction,
    /// Headers inspected by every injection rule (lower case).
    pub inspect_headers: Vec<String>,
    /// Put the matched rule ids in the 403 body.
    pub expose_rule_ids: bool,
    /// Rule ids turned off everywhere.
    pub disabled_rules: Vec<u32>,
    /// Families turned off everywhere.
    pub disabled_families: Vec<String>,
    /// Per-route exclusions.
    pub exclusions: Vec<ExclusionJson>,
    /// Operator-written rules.
    pub custom_rules: Vec<CustomRuleJson>,
    /// Cross-site request forgery protection.
    pub csrf: CsrfJson,
}

impl Default for WafConfigJson {
    fn default() -> Self {
        WafConfigJson {
            mode: Mode::Block,
            paranoia_level: 1,
            anomaly_threshold: 5,
            max_body_bytes: 128 * 1024,
            body_limit_action: BodyLimitAction::InspectPrefix,
            inspect_headers: vec!["user-agent".into(), "referer".into()],
            expose_rule_ids: false,
            disabled_rules: Vec::new(),
            disabled_families: Vec::new(),
            exclusions: Vec::new(),
            custom_rules: Vec::new(),
            csrf: CsrfJson::default(),
        }
    }
}

/// An exclusion: on requests that match, turn rules or families off, or
/// (with `parameters` / `headers` / `cookies`) stop them from looking at
/// the named values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExclusionJson {
    /// Which requests (default: all).
    #[serde(rename = "match")]
    pub request: RequestMatch,
    /// Rule ids.
    pub rules: Vec<u32>,
    /// Family names.
    pub families: Vec<String>,
    /// Argument names (query, form, JSON keys, multipart fields).
    pub parameters: Vec<String>,
    /// Header names.
    pub headers: Vec<String>,
    /// Cookie names.
    pub cookies: Vec<String>,
}

/// A custom rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleJson {
    /// Unique id, 100000 or more.
    pub id: u32,
    /// Family name for metrics and exclusions (default `custom`).
    #[serde(default)]
    pub family: Option<String>,
    /// One line for operators.
    #[serde(default)]
    pub description: String,
    /// 1 (default) to 4.
    #[serde(default)]
    pub paranoia_level: Option<u8>,
    /// `critical` (default, 5), `error` (4), `warning` (3), `notice` (2).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Overrides the severity's score.
    #[serde(default)]
    pub score: Option<u32>,
    /// What it inspects: `method`, `path`, `args`, `arg_names`, `cookies`,
    /// `cookie_names`, `headers`, `other_headers`, `files`, `body`.
    pub targets: Vec<String>,
    /// Applied in order before matching.
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// A regular expression (case-insensitive, linear time).
    #[serde(default)]
    pub regex: Option<String>,
    /// Or a list of phrases (case-insensitive).
    #[serde(default)]
    pub phrases: Option<Vec<String>>,
    /// With `phrases`: a phrase must not be part of a longer word.
    #[serde(default)]
    pub whole_words: bool,
}

/// The CSRF configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsrfJson {
    /// Check state-changing requests (default true).
    pub enabled: bool,
    /// Count and report cross-site requests, never refuse them.
    pub shadow: bool,
    /// Origins allowed besides the request's own host.
    pub allowed_origins: Vec<String>,
    /// Checked methods (default POST, PUT, PATCH, DELETE).
    pub methods: Vec<String>,
    /// Refuse state-changing requests that carry neither Origin nor Referer
    /// (Envoy's behavior; default false: such requests do not come from a
    /// browser, so no forgery is possible).
    pub require_origin: bool,
    /// Requests that are not checked.
    pub exempt: Vec<RequestMatch>,
}

impl Default for CsrfJson {
    fn default() -> Self {
        CsrfJson {
            enabled: true,
            shadow: false,
            allowed_origins: Vec::new(),
            methods: ["POST", "PUT", "PATCH", "DELETE"]
                .iter()
                .map(|m| (*m).to_string())
                .collect(),
            require_origin: false,
            exempt: Vec::new(),
        }
    }
}

/// A compiled exclusion.
#[derive(Debug)]
pub struct Exclusion {
    /// Which requests.
    pub matcher: RequestMatcher,
    /// Rule ids (empty with empty `families`: every rule).
    pub rules: HashSet<u32>,
    /// Family names.
    pub families: HashSet<String>,
    /// Argument names.
    pub parameters: HashSet<String>,
    /// Header names, lower case.
    pub headers: HashSet<String>,
    /// Cookie names.
    pub cookies: HashSet<String>,
}

impl Exclusion {
    /// Whether the exclusion is limited to named values.
    pub fn is_targeted(&self) -> bool {
        !self.parameters.is_empty() || !self.headers.is_empty() || !self.cookies.is_empty()
    }

    /// Whether it covers this rule.
    pub fn covers(&self, id: u32, family: &str) -> bool {
        (self.rules.is_empty() && self.families.is_empty())
            || self.rules.contains(&id)
            || self.families.contains(family)
    }
}

/// The compiled CSRF configuration.
#[derive(Debug)]
pub struct Csrf {
    /// The policy.
    pub policy: CsrfPolicy,
    /// Report only.
    pub shadow: bool,
    /// Unchecked requests.
    pub exempt: Vec<RequestMatcher>,
}

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// Block or detect.
    pub mode: Mode,
    /// The paranoia level.
    pub paranoia_level: u8,
    /// The refusal threshold.
    pub anomaly_threshold: u32,
    /// Body inspection bound.
    pub max_body_bytes: usize,
    /// What to do beyond it.
    pub body_limit_action: BodyLimitAction,
    /// Selected headers, lower case.
    pub inspect_headers: Vec<String>,
    /// Rule ids in the 403 body.
    pub expose_rule_ids: bool,
    /// The signatures.
    pub rules: RuleSet,
    /// Exclusions.
    pub exclusions: Vec<Exclusion>,
    /// CSRF, when enabled.
    pub csrf: Option<Csrf>,
    /// Every family name a rule can report (for metrics).
    pub families: Vec<String>,
    /// The enabled request-framing checks: id, score.
    pub framing_rules: Vec<(u32, u32)>,
    /// Whether an exclusion or CSRF exemption matches on Envoy's route
    /// name (the adapter reads that attribute only then: it is costly).
    pub needs_route_name: bool,
}

fn family_ok(name: &str, custom: &HashSet<String>) -> bool {
    Family::from_name(name).is_some() || custom.contains(name)
}

impl Config {
    /// Parses and compiles a configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let json: WafConfigJson = palisade_shared::config::parse_json(bytes)?;
        Config::compile(json)
    }

    /// Validates and compiles.
    pub fn compile(json: WafConfigJson) -> Result<Config, ConfigError> {
        if !(1..=4).contains(&json.paranoia_level) {
            return Err(ConfigError::invalid(
                "paranoia_level",
                "must be 1, 2, 3 or 4",
            ));
        }
        if json.anomaly_threshold == 0 {
            return Err(ConfigError::invalid(
                "anomaly_threshold",
                "must be at least 1",
            ));
        }
        if json.max_body_bytes == 0 || json.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                "must be between 1 and 16777216",
            ));
        }
        let mut specs = signatures::builtin(json.paranoia_level);
        let builtin_ids: HashSet<u32> =
            signatures::catalog().iter().map(|(id, _, _)| *id).collect();
        let mut custom_families: HashSet<String> = HashSet::new();
        let mut custom_ids: HashSet<u32> = HashSet::new();
        for (i, c) in json.custom_rules.iter().enumerate() {
            let at = format!("custom_rules[{i}]");
            if c.id < 100_000 {
                return Err(ConfigError::invalid(
                    field_path(&at, "id"),
                    "custom rule ids start at 100000",
                ));
            }
            if !custom_ids.insert(c.id) {
                return Err(ConfigError::invalid(
                    field_path(&at, "id"),
                    format!("duplicate rule id {}", c.id),
                ));
            }
            let family = c.family.clone().unwrap_or_else(|| "custom".to_string());
            if family.is_empty()
                || !family
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(ConfigError::invalid(
                    field_path(&at, "family"),
                    "must be lower-case letters, digits and `_`",
                ));
            }
            let paranoia = c.paranoia_level.unwrap_or(1);
            if !(1..=4).contains(&paranoia) {
                return Err(ConfigError::invalid(
                    field_path(&at, "paranoia_level"),
                    "must be 1 to 4",
                ));
            }
            if c.targets.is_empty() {
                return Err(ConfigError::invalid(
                    field_path(&at, "targets"),
                    "name at least one target",
                ));
            }
            let mut targets = Targets::default();
            for (j, t) in c.targets.iter().enumerate() {
                match Targets::from_name(t) {
                    Some(x) => targets = targets.or(x),
                    None => {
                        return Err(ConfigError::invalid(
                            field_path(&at, &format!("targets[{j}]")),
                            format!("unknown target `{t}`"),
                        ))
                    }
                }
            }
            let pattern = match (&c.regex, &c.phrases) {
                (Some(r), None) if !r.is_empty() => Pattern::Regex(r.clone()),
                (None, Some(p)) if !p.is_empty() && p.iter().all(|w| !w.is_empty()) => {
                    Pattern::Phrases {
                        list: p.clone(),
                        word: c.whole_words,
                    }
                }
                _ => {
                    return Err(ConfigError::invalid(
                        at,
                        "give exactly one of `regex` or a non-empty `phrases` list",
                    ))
                }
            };
            let score = c
                .score
                .unwrap_or(c.severity.unwrap_or(Severity::Critical).score());
            if Family::from_name(&family).is_none() {
                custom_families.insert(family.clone());
            }
            if paranoia <= json.paranoia_level {
                specs.push(RuleSpec {
                    id: c.id,
                    family,
                    paranoia,
                    score,
                    targets,
                    transforms: c.transforms.clone(),
                    pattern,
                    condition: Condition::Always,
                    description: c.description.clone(),
                });
            }
        }
        for (i, id) in json.disabled_rules.iter().enumerate() {
            if !builtin_ids.contains(id) && !custom_ids.contains(id) {
                return Err(ConfigError::invalid(
                    format!("disabled_rules[{i}]"),
                    format!("no rule has id {id}"),
                ));
            }
        }
        for (i, f) in json.disabled_families.iter().enumerate() {
            if !family_ok(f, &custom_families) {
                return Err(ConfigError::invalid(
                    format!("disabled_families[{i}]"),
                    format!("unknown family `{f}`"),
                ));
            }
        }
        let disabled_rules: HashSet<u32> = json.disabled_rules.iter().copied().collect();
        specs.retain(|s| {
            !disabled_rules.contains(&s.id) && !json.disabled_families.contains(&s.family)
        });
        let protocol_off = json.disabled_families.iter().any(|f| f == "protocol");
        let framing_rules = signatures::FRAMING_RULES
            .iter()
            .filter(|(id, pl, _, _)| {
                *pl <= json.paranoia_level && !disabled_rules.contains(id) && !protocol_off
            })
            .map(|(id, _, severity, _)| (*id, severity.score()))
            .collect();
        let rules = RuleSet::compile(&specs).map_err(|(i, e)| {
            let id = specs.get(i).map_or(0, |s| s.id);
            let at = json
                .custom_rules
                .iter()
                .position(|c| c.id == id)
                .map_or_else(
                    || "custom_rules".to_string(),
                    |p| format!("custom_rules[{p}]"),
                );
            ConfigError::invalid(at, format!("rule {id} does not compile: {e}"))
        })?;

        let mut exclusions = Vec::with_capacity(json.exclusions.len());
        for (i, e) in json.exclusions.iter().enumerate() {
            let at = format!("exclusions[{i}]");
            for (j, id) in e.rules.iter().enumerate() {
                if !builtin_ids.contains(id) && !custom_ids.contains(id) {
                    return Err(ConfigError::invalid(
                        field_path(&at, &format!("rules[{j}]")),
                        format!("no rule has id {id}"),
                    ));
                }
            }
            for (j, f) in e.families.iter().enumerate() {
                if !family_ok(f, &custom_families) {
                    return Err(ConfigError::invalid(
                        field_path(&at, &format!("families[{j}]")),
                        format!("unknown family `{f}`"),
                    ));
                }
            }
            exclusions.push(Exclusion {
                matcher: RequestMatcher::compile(&e.request, &field_path(&at, "match"))?,
                rules: e.rules.iter().copied().collect(),
                families: e.families.iter().cloned().collect(),
                parameters: e.parameters.iter().cloned().collect(),
                headers: e.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
                cookies: e.cookies.iter().cloned().collect(),
            });
        }

        let csrf = if json.csrf.enabled {
            let mut allowed = Vec::new();
            for (i, o) in json.csrf.allowed_origins.iter().enumerate() {
                allowed.push(AllowedOrigin::parse(o).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("csrf.allowed_origins[{i}]"),
                        format!("`{o}` is not an origin (`https://host[:port]` or `*.domain`)"),
                    )
                })?);
            }
            let mut exempt = Vec::new();
            for (i, m) in json.csrf.exempt.iter().enumerate() {
                exempt.push(RequestMatcher::compile(m, &format!("csrf.exempt[{i}]"))?);
            }
            Some(Csrf {
                policy: CsrfPolicy {
                    methods: json
                        .csrf
                        .methods
                        .iter()
                        .map(|m| m.to_ascii_uppercase())
                        .collect(),
                    allowed,
                    require_origin: json.csrf.require_origin,
                },
                shadow: json.csrf.shadow,
                exempt,
            })
        } else {
            None
        };

        let mut families: Vec<String> = Family::ALL.iter().map(|f| f.name().to_string()).collect();
        let mut extra: Vec<String> = custom_families.into_iter().collect();
        extra.sort();
        families.extend(extra);

        let needs_route_name = json
            .exclusions
            .iter()
            .map(|e| &e.request)
            .chain(json.csrf.exempt.iter().filter(|_| json.csrf.enabled))
            .any(|m| m.route_name.is_some());
        Ok(Config {
            mode: json.mode,
            paranoia_level: json.paranoia_level,
            anomaly_threshold: json.anomaly_threshold,
            max_body_bytes: json.max_body_bytes,
            body_limit_action: json.body_limit_action,
            inspect_headers: json
                .inspect_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_rule_ids: json.expose_rule_ids,
            rules,
            exclusions,
            csrf,
            families,
            framing_rules,
            needs_route_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = Config::from_json(b"").unwrap();
        assert_eq!(c.mode, Mode::Block);
        assert_eq!(c.paranoia_level, 1);
        assert_eq!(c.anomaly_threshold, 5);
        assert_eq!(c.max_body_bytes, 131072);
        assert_eq!(c.body_limit_action, BodyLimitAction::InspectPrefix);
        assert!(c.csrf.is_some());
        assert!(c.rules.rules().iter().all(|r| r.paranoia == 1));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"paranoia_level":5}"#).path, "paranoia_level");
        assert_eq!(err(r#"{"anomaly_threshold":0}"#).path, "anomaly_threshold");
        assert_eq!(err(r#"{"max_body_bytes":0}"#).path, "max_body_bytes");
        assert_eq!(err(r#"{"mode":"shout"}"#).path, "mode");
        assert_eq!(err(r#"{"disabled_rules":[1]}"#).path, "disabled_rules[0]");
        assert_eq!(
            err(r#"{"disabled_families":["nope"]}"#).path,
            "disabled_families[0]"
        );
        assert_eq!(
            err(r#"{"exclusions":[{"rules":[40001, 7]}]}"#).path,
            "exclusions[0].rules[1]"
        );
        assert_eq!(
            err(r#"{"exclusions":[{"match":{"path":{"regex":"("}}}]}"#).path,
            "exclusions[0].match.path.regex"
        );
        assert_eq!(
            err(r#"{"csrf":{"allowed_origins":["https://a/b"]}}"#).path,
            "csrf.allowed_origins[0]"
        );
        assert_eq!(
            err(r#"{"custom_rules":[{"id":5,"targets":["args"],"regex":"x"}]}"#).path,
            "custom_rules[0].id"
        );
        assert_eq!(
            err(r#"{"custom_rules":[{"id":100000,"targets":["argz"],"regex":"x"}]}"#).path,
            "custom_rules[0].targets[0]"
        );
        assert_eq!(
            err(r#"{"custom_rules":[{"id":100000,"targets":["args"]}]}"#).path,
            "custom_rules[0]"
        );
        let e = err(r#"{"custom_rules":[{"id":100000,"targets":["args"],"regex":"(a)\\1"}]}"#);
        assert_eq!(e.path, "custom_rules[0]");
        assert!(e.message.contains("100000"), "{e}");
        assert_eq!(
            err(r#"{"custom_rules":[{"id":100000,"targets":["args"],"regex":"a"},{"id":100000,"targets":["args"],"regex":"b"}]}"#)
                .path,
            "custom_rules[1].id"
        );
        assert_eq!(err(r#"{"csrf":{"shadw":true}}"#).path, "csrf.shadw");
    }

    #[test]
    fn custom_families_can_be_excluded() {
        let c = Config::from_json(
            br#"{"custom_rules":[{"id":100001,"family":"internal","targets":["args"],"phrases":["x"]}],
                 "exclusions":[{"families":["internal"]}]}"#,
        )
        .unwrap();
        assert!(c.families.contains(&"internal".to_string()));
    }

    #[test]
    fn the_route_name_is_needed_only_when_a_match_names_a_route() {
        let needs = |json: &str| Config::from_json(json.as_bytes()).unwrap().needs_route_name;
        assert!(!needs("{}"));
        assert!(!needs(
            r#"{"exclusions":[{"match":{"path":{"prefix":"/a"}}}]}"#
        ));
        assert!(needs(
            r#"{"exclusions":[{"match":{"route_name":"admin"}}]}"#
        ));
        assert!(needs(r#"{"csrf":{"exempt":[{"route_name":"hooks"}]}}"#));
        assert!(!needs(
            r#"{"csrf":{"enabled":false,"exempt":[{"route_name":"hooks"}]}}"#
        ));
    }
}
