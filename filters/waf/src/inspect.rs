//! The decision: scan a request's fields, add up the anomaly score, check
//! CSRF, and say what to do.

use palisade_shared::contract::{WafDecision, WafMatch};
use palisade_shared::matcher::RequestView;

use crate::config::{BodyLimitAction, Config, Exclusion, Mode};
use crate::csrf::CsrfViolation;
use crate::engine::{Rule, RuleFilter};
use crate::request::{body_fields, head_fields, BodyKind, Field, RequestHead};
use crate::rules::Targets;

/// At most this many matches are listed in a decision.
pub const MAX_LISTED_MATCHES: usize = 32;

/// What the filter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let it through.
    Allow,
    /// Refuse it with a local reply.
    Refuse {
        /// 403, or 413 for a body over the limit.
        status: u16,
        /// Machine-readable reason (`attack_detected`, `csrf_origin_mismatch`, ...).
        reason: String,
    },
}

/// The outcome of an inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// What to publish as `palisade.waf`.
    pub decision: WafDecision,
    /// The distinct families that matched (for metrics).
    pub families: Vec<String>,
    /// The CSRF violation seen, refused or (in shadow mode) only reported.
    pub csrf: Option<CsrfViolation>,
}

/// The evidence gathered so far for one request (head, then body).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    exclusions: Vec<usize>,
    matched: Vec<(usize, String)>,
    csrf: Option<CsrfViolation>,
    csrf_exempt: bool,
    body_too_large: bool,
}

impl Inspection {
    /// The anomaly score so far.
    pub fn score(&self, config: &Config) -> u32 {
        self.matched
            .iter()
            .map(|(r, _)| config.rules.rules()[*r].score)
            .sum()
    }
}

struct FieldFilter<'a> {
    config: &'a Config,
    exclusions: &'a [usize],
    field: &'a Field<'a>,
}

impl FieldFilter<'_> {
    fn names_field(&self, e: &Exclusion) -> bool {
        let f = self.field;
        let t = f.target;
        if t.intersects(Targets::ARGS.or(Targets::ARG_NAMES).or(Targets::FILES))
            && e.parameters.contains(f.name.as_ref())
        {
            return true;
        }
        if t.intersects(Targets::HEADERS.or(Targets::OTHER_HEADERS))
            && e.headers.contains(f.name.as_ref())
        {
            return true;
        }
        t.intersects(Targets::COOKIES.or(Targets::COOKIE_NAMES))
            && e.cookies.contains(f.name.as_ref())
    }
}

impl RuleFilter for FieldFilter<'_> {
    fn family_enabled(&self, family: &str) -> bool {
        !self.exclusions.iter().any(|i| {
            let e = &self.config.exclusions[*i];
            e.rules.is_empty()
                && (e.families.is_empty() || e.families.contains(family))
                && (!e.is_targeted() || self.names_field(e))
        })
    }

    fn rule_enabled(&self, rule: &Rule) -> bool {
        !self.exclusions.iter().any(|i| {
            let e = &self.config.exclusions[*i];
            e.covers(rule.id, &rule.family) && (!e.is_targeted() || self.names_field(e))
        })
    }
}

/// The WAF: a compiled configuration and the decisions it makes.
#[derive(Debug)]
pub struct Waf {
    /// The configuration.
    pub config: Config,
}

impl Waf {
    /// A WAF for this configuration.
    pub fn new(config: Config) -> Self {
        Waf { config }
    }

    fn view<'a>(head: &RequestHead<'a>) -> RequestView<'a> {
        RequestView {
            method: head.method,
            host: head.authority,
            path: head.path,
            route_name: head.route_name,
        }
    }

    /// Inspects the request head (method, path, query, headers, cookies)
    /// and checks CSRF.
    pub fn inspect_head(&self, head: &RequestHead<'_>) -> Inspection {
        let view = Self::view(head);
        let mut inspection = Inspection {
            exclusions: self
                .config
                .exclusions
                .iter()
                .enumerate()
                .filter(|(_, e)| e.matcher.matches(&view))
                .map(|(i, _)| i)
                .collect(),
            ..Inspection::default()
        };
        if let Some(csrf) = &self.config.csrf {
            inspection.csrf_exempt = csrf.exempt.iter().any(|m| m.matches(&view));
            if !inspection.csrf_exempt {
                inspection.csrf = csrf.policy.check(head);
            }
        }
        let mut fields = Vec::with_capacity(16);
        head_fields(head, &self.config.inspect_headers, &mut fields);
        self.scan_fields(&fields, &mut inspection);
        self.protocol_checks(head, &mut inspection);
        inspection
    }

    /// Inspects a body (at most `max_body_bytes` of it; `complete_len` is
    /// the size that was sent, when known, to apply the body limit).
    pub fn inspect_body(&self, head: &RequestHead<'_>, body: &[u8], inspection: &mut Inspection) {
        if body.len() > self.config.max_body_bytes {
            inspection.body_too_large = true;
            if self.config.body_limit_action == BodyLimitAction::Reject {
                return;
            }
        }
        let body = &body[..body.len().min(self.config.max_body_bytes)];
        let text = String::from_utf8_lossy(body);
        let kind = BodyKind::from_content_type(head.header("content-type"));
        let mut fields = Vec::with_capacity(16);
        body_fields(&kind, &text, &mut fields);
        self.scan_fields(&fields, inspection);
    }

    /// Whether the body is worth buffering (an exclusion may turn
    /// everything off for a route).
    pub fn wants_body(&self, inspection: &Inspection) -> bool {
        !inspection.exclusions.iter().any(|i| {
            let e = &self.config.exclusions[*i];
            !e.is_targeted() && e.rules.is_empty() && e.families.is_empty()
        })
    }

    fn scan_fields(&self, fields: &[Field<'_>], inspection: &mut Inspection) {
        let rules = &self.config.rules;
        for field in fields {
            let filter = FieldFilter {
                config: &self.config,
                exclusions: &inspection.exclusions,
                field,
            };
            let matched = &mut inspection.matched;
            rules.scan(field.target, &field.value, &filter, &mut |r| {
                if !matched.iter().any(|(m, _)| *m == r) {
                    matched.push((r, field.location.clone()));
                }
            });
        }
    }

    /// Request smuggling and header-framing signals that are not about a
    /// value's content.
    fn protocol_checks(&self, head: &RequestHead<'_>, inspection: &mut Inspection) {
        let _ = (head, inspection);
    }

    /// The decision so far.
    pub fn verdict(&self, inspection: &Inspection) -> Verdict {
        let rules = self.config.rules.rules();
        let score = inspection.score(&self.config);
        let matches: Vec<WafMatch> = inspection
            .matched
            .iter()
            .take(MAX_LISTED_MATCHES)
            .map(|(r, location)| WafMatch {
                rule_id: rules[*r].id,
                family: rules[*r].family.clone(),
                location: location.clone(),
            })
            .collect();
        let mut families: Vec<String> = inspection
            .matched
            .iter()
            .map(|(r, _)| rules[*r].family.clone())
            .collect();
        families.sort();
        families.dedup();
        let block = self.config.mode == Mode::Block;
        let csrf_shadow = self.config.csrf.as_ref().is_none_or(|c| c.shadow);
        let (action, label) = if inspection.body_too_large
            && self.config.body_limit_action == BodyLimitAction::Reject
        {
            (
                Action::Refuse {
                    status: 413,
                    reason: "body_too_large".into(),
                },
                "body_too_large",
            )
        } else if score >= self.config.anomaly_threshold {
            if block {
                (
                    Action::Refuse {
                        status: 403,
                        reason: "attack_detected".into(),
                    },
                    "blocked",
                )
            } else {
                (Action::Allow, "detected")
            }
        } else if let Some(v) = inspection.csrf {
            if csrf_shadow {
                (Action::Allow, "csrf_shadow")
            } else {
                (
                    Action::Refuse {
                        status: 403,
                        reason: v.reason().into(),
                    },
                    "csrf_blocked",
                )
            }
        } else {
            (Action::Allow, "allowed")
        };
        Verdict {
            action,
            decision: WafDecision {
                score,
                matches,
                action: label.into(),
            },
            families,
            csrf: inspection.csrf,
        }
    }

    /// Head, then body when there is one: the whole decision at once.
    pub fn inspect(&self, head: &RequestHead<'_>, body: Option<&[u8]>) -> Verdict {
        let mut inspection = self.inspect_head(head);
        if let Some(b) = body {
            if self.wants_body(&inspection) {
                self.inspect_body(head, b, &mut inspection);
            }
        }
        self.verdict(&inspection)
    }
}
