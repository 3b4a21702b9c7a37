//! The compiled signature set and the scan of one value.
//!
//! Rules are grouped by (transformation pipeline, family). Each group is one
//! `regex-automata` multi-pattern regex (`MatchKind::All`, overlapping
//! search, so every rule that matches is reported) plus, for phrase lists,
//! one Aho-Corasick automaton: both run in time linear in the value whatever
//! the patterns. A value is transformed once per pipeline, and a group runs
//! only when its cheap trigger (a byte class or a keyword) is present in the
//! transformed value, so a benign value of plain words and digits costs a
//! few byte scans and no automaton at all.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcMatchKind};
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

use crate::rules::{Pattern, RuleSpec, Targets};
use crate::transform::{self, Transform};

/// A compiled rule's metadata.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule id.
    pub id: u32,
    /// Its family name.
    pub family: String,
    /// The paranoia level it belongs to.
    pub paranoia: u8,
    /// Its score.
    pub score: u32,
    /// What it inspects.
    pub targets: Targets,
    /// One line for operators.
    pub description: String,
}

/// The cheap test that decides whether a group's automata run on a value:
/// any of its bytes, or any of its keywords (ASCII case-insensitive), must
/// occur in the transformed value. The tests of every group are merged into
/// one byte table and one keyword automaton, so a value costs one pass over
/// its bytes and one keyword scan per distinct transformation output,
/// whatever the number of groups.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    bytes: Vec<u8>,
    words: Vec<String>,
    always: bool,
}

impl Trigger {
    /// Always run (custom rules, whose content is unknown).
    pub fn always() -> Self {
        Trigger {
            always: true,
            ..Trigger::default()
        }
    }

    /// Run when any of `bytes` or any of `words` occurs.
    pub fn new(bytes: &[u8], words: &[&str]) -> Result<Self, String> {
        if words.iter().any(|w| w.is_empty()) {
            return Err("empty trigger word".into());
        }
        Ok(Trigger {
            bytes: bytes.to_vec(),
            words: words.iter().map(|w| (*w).to_string()).collect(),
            always: false,
        })
    }
}

/// Every group's trigger, merged: bit `i` stands for group `i`.
#[derive(Debug)]
struct Triggers {
    /// Groups each byte value triggers.
    bytes: Box<[u64; 256]>,
    /// All keywords; `word_groups[pattern]` are the groups a keyword triggers.
    words: Option<AhoCorasick>,
    word_groups: Vec<u64>,
    /// Groups with at least one keyword.
    with_words: u64,
    /// Groups that always run (and every group past the 64th).
    always: u64,
}

impl Triggers {
    fn build(triggers: &[Trigger]) -> Result<Self, String> {
        let mut bytes = Box::new([0u64; 256]);
        let mut words: Vec<&str> = Vec::new();
        let mut word_groups: Vec<u64> = Vec::new();
        let mut with_words = 0u64;
        let mut always = 0u64;
        for (i, t) in triggers.iter().enumerate() {
            if i >= 64 || t.always {
                always |= 1u64.checked_shl(i as u32).unwrap_or(0);
                continue;
            }
            let bit = 1u64 << i;
            for b in &t.bytes {
                bytes[usize::from(*b)] |= bit;
            }
            for w in &t.words {
                with_words |= bit;
                match words.iter().position(|x| x.eq_ignore_ascii_case(w)) {
                    Some(p) => word_groups[p] |= bit,
                    None => {
                        words.push(w.as_str());
                        word_groups.push(bit);
                    }
                }
            }
        }
        let words = if words.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(AcMatchKind::Standard)
                    .build(&words)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Triggers {
            bytes,
            words,
            word_groups,
            with_words,
            always,
        })
    }

    /// The groups whose trigger fires on `value`.
    fn fired(&self, value: &[u8]) -> u64 {
        let mut mask = self.always;
        for b in value {
            mask |= self.bytes[usize::from(*b)];
        }
        if mask & self.with_words != self.with_words {
            if let Some(ac) = &self.words {
                for m in ac.find_overlapping_iter(value) {
                    mask |= self
                        .word_groups
                        .get(m.pattern().as_usize())
                        .copied()
                        .unwrap_or(0);
                }
            }
        }
        mask
    }
}

#[derive(Debug)]
struct PhraseSet {
    ac: AhoCorasick,
    /// Per phrase: the rule index and whether it needs word boundaries.
    owners: Vec<(usize, bool)>,
}

#[derive(Debug)]
struct Group {
    pipeline: usize,
    family: String,
    targets: Targets,
    regex: Option<Regex>,
    /// Pattern index -> rule index.
    regex_rules: Vec<usize>,
    phrases: Option<PhraseSet>,
}

/// Every enabled rule, compiled.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    pipelines: Vec<Vec<Transform>>,
    groups: Vec<Group>,
    triggers: Triggers,
}

/// A rule that matched one value: rule index into [`RuleSet::rules`].
pub type RuleIndex = usize;

/// Decides, per rule, whether it may report a match on the current value
/// (route exclusions).
pub trait RuleFilter {
    /// Whether the family may run at all on this value.
    fn family_enabled(&self, family: &str) -> bool;
    /// Whether this rule may match this value.
    fn rule_enabled(&self, rule: &Rule) -> bool;
}

impl RuleSet {
    /// Compiles `specs`. `trigger_for` gives the trigger of a family
    /// (`Trigger::always()` for families it does not know).
    pub fn compile(
        specs: &[RuleSpec],
        trigger_for: impl Fn(&str) -> Result<Trigger, String>,
    ) -> Result<Self, (usize, String)> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut pipelines: Vec<Vec<Transform>> = Vec::new();
        // (pipeline, family) -> (regex patterns with rule index, phrase lists with rule index)
        type Pending<'s> = (
            usize,
            String,
            Vec<(&'s str, usize)>,
            Vec<(&'s [String], bool, usize)>,
        );
        let mut pending: Vec<Pending<'_>> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            rules.push(Rule {
                id: spec.id,
                family: spec.family.clone(),
                paranoia: spec.paranoia,
                score: spec.score,
                targets: spec.targets,
                description: spec.description.clone(),
            });
            let pipeline = match pipelines.iter().position(|p| *p == spec.transforms) {
                Some(p) => p,
                None => {
                    pipelines.push(spec.transforms.clone());
                    pipelines.len() - 1
                }
            };
            let slot = match pending
                .iter()
                .position(|(p, f, _, _)| *p == pipeline && *f == spec.family)
            {
                Some(s) => s,
                None => {
                    pending.push((pipeline, spec.family.clone(), Vec::new(), Vec::new()));
                    pending.len() - 1
                }
            };
            match &spec.pattern {
                Pattern::Regex(re) => pending[slot].2.push((re.as_str(), i)),
                Pattern::Phrases { list, word } => {
                    pending[slot].3.push((list.as_slice(), *word, i))
                }
            }
        }
        let mut groups = Vec::with_capacity(pending.len());
        for (pipeline, family, regexes, phrase_lists) in pending {
            let mut targets = Targets::default();
            for (_, r) in &regexes {
                targets = targets.or(rules[*r].targets);
            }
            for (_, _, r) in &phrase_lists {
                targets = targets.or(rules[*r].targets);
            }
            let regex = if regexes.is_empty() {
                None
            } else {
                let patterns: Vec<&str> = regexes.iter().map(|(p, _)| *p).collect();
                Some(build_regex(&patterns).map_err(|(k, e)| (regexes[k].1, e))?)
            };
            let phrases = if phrase_lists.is_empty() {
                None
            } else {
                let mut words: Vec<&str> = Vec::new();
                let mut owners = Vec::new();
                for (list, word, r) in &phrase_lists {
                    for w in list.iter() {
                        words.push(w.as_str());
                        owners.push((*r, *word));
                    }
                }
                let ac = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(AcMatchKind::Standard)
                    .build(&words)
                    .map_err(|e| (phrase_lists[0].2, e.to_string()))?;
                Some(PhraseSet { ac, owners })
            };
            let first_rule = regexes
                .first()
                .map(|(_, r)| *r)
                .or_else(|| phrase_lists.first().map(|(_, _, r)| *r))
                .unwrap_or(0);
            let trigger = trigger_for(&family).map_err(|e| (first_rule, e))?;
            groups.push((
                trigger,
                Group {
                    pipeline,
                    family,
                    targets,
                    regex,
                    regex_rules: regexes.iter().map(|(_, r)| *r).collect(),
                    phrases,
                },
            ));
        }
        groups.sort_by_key(|(_, g)| g.pipeline);
        let (triggers, groups): (Vec<Trigger>, Vec<Group>) = groups.into_iter().unzip();
        let triggers = Triggers::build(&triggers).map_err(|e| (0, e))?;
        Ok(RuleSet {
            rules,
            pipelines,
            groups,
            triggers,
        })
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many automata groups were built (for the operator's log).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Scans one value of kind `target`; calls `found` with each rule index
    /// that matches (a rule at most once per value).
    pub fn scan(
        &self,
        target: Targets,
        value: &str,
        filter: &dyn RuleFilter,
        found: &mut dyn FnMut(RuleIndex),
    ) {
        if value.is_empty() {
            return;
        }
        // The current pipeline's output and the groups its triggers fire.
        // A pipeline that leaves the value unchanged reuses the mask of the
        // value as sent.
        let mut current: Option<(usize, Cow<'_, str>, u64)> = None;
        let plain = !transform::may_change(value);
        let mut raw_mask: Option<u64> = None;
        for (index, group) in self.groups.iter().enumerate() {
            if !group.targets.intersects(target) || !filter.family_enabled(&group.family) {
                continue;
            }
            if !matches!(&current, Some((p, _, _)) if *p == group.pipeline) {
                let v = if plain {
                    Cow::Borrowed(value)
                } else {
                    transform::apply(value, &self.pipelines[group.pipeline])
                };
                let mask = match &v {
                    Cow::Borrowed(_) => {
                        *raw_mask.get_or_insert_with(|| self.triggers.fired(value.as_bytes()))
                    }
                    Cow::Owned(o) => self.triggers.fired(o.as_bytes()),
                };
                current = Some((group.pipeline, v, mask));
            }
            let Some((_, transformed, mask)) = &current else {
                continue;
            };
            if index < 64 && mask & (1u64 << index) == 0 {
                continue;
            }
            let hay = transformed.as_bytes();
            let mut report = |r: usize| {
                let rule = &self.rules[r];
                if rule.targets.intersects(target) && filter.rule_enabled(rule) {
                    found(r);
                }
            };
            if let Some(re) = &group.regex {
                let mut set = PatternSet::new(re.pattern_len());
                re.which_overlapping_matches(&Input::new(hay), &mut set);
                for pid in set.iter() {
                    if let Some(r) = group.regex_rules.get(pid.as_usize()) {
                        report(*r);
                    }
                }
            }
            if let Some(ps) = &group.phrases {
                let mut seen: Vec<usize> = Vec::new();
                for m in ps.ac.find_overlapping_iter(hay) {
                    let Some((r, word)) = ps.owners.get(m.pattern().as_usize()).copied() else {
                        continue;
                    };
                    if seen.contains(&r) {
                        continue;
                    }
                    if word && !at_word_boundaries(hay, m.start(), m.end()) {
                        continue;
                    }
                    seen.push(r);
                    report(r);
                }
            }
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn at_word_boundaries(hay: &[u8], start: usize, end: usize) -> bool {
    let before = start == 0 || !is_word_byte(hay[start - 1]);
    let after = end >= hay.len() || !is_word_byte(hay[end]);
    before && after
}

/// Builds one multi-pattern regex. Patterns are byte-oriented (Unicode off,
/// so `\b`, `\w` and `\s` are ASCII and the lazy DFA handles every pattern),
/// case-insensitive and `.` matches newlines.
fn build_regex(patterns: &[&str]) -> Result<Regex, (usize, String)> {
    // Validate one by one first, so an error names the offending pattern.
    let syntax_config = syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .dot_matches_new_line(true);
    for (i, p) in patterns.iter().enumerate() {
        Regex::builder()
            .syntax(syntax_config)
            .build(p)
            .map_err(|e| (i, e.to_string()))?;
    }
    Regex::builder()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(false)
                .hybrid_cache_capacity(1 << 20),
        )
        .syntax(syntax_config)
        .build_many(patterns)
        .map_err(|e| (0, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct All;
    impl RuleFilter for All {
        fn family_enabled(&self, _: &str) -> bool {
            true
        }
        fn rule_enabled(&self, _: &Rule) -> bool {
            true
        }
    }

    fn spec(id: u32, family: &str, pattern: Pattern) -> RuleSpec {
        RuleSpec {
            id,
            family: family.into(),
            paranoia: 1,
            score: 5,
            targets: Targets::ARGS,
            transforms: vec![Transform::UrlDecode, Transform::Lowercase],
            pattern,
            description: String::new(),
        }
    }

    fn ids(set: &RuleSet, target: Targets, value: &str) -> Vec<u32> {
        let mut out = Vec::new();
        set.scan(target, value, &All, &mut |r| out.push(set.rules()[r].id));
        out.sort_unstable();
        out
    }

    #[test]
    fn every_matching_rule_is_reported_once() {
        let set = RuleSet::compile(
            &[
                spec(1, "a", Pattern::Regex("union\\s+select".into())),
                spec(2, "a", Pattern::Regex("select".into())),
                spec(
                    3,
                    "b",
                    Pattern::Phrases {
                        list: vec!["cat".into(), "dog".into()],
                        word: true,
                    },
                ),
                spec(
                    4,
                    "b",
                    Pattern::Phrases {
                        list: vec!["dog".into()],
                        word: false,
                    },
                ),
            ],
            |_| Ok(Trigger::always()),
        )
        .unwrap();
        assert_eq!(
            ids(&set, Targets::ARGS, "1 UNION%20SELECT select"),
            vec![1, 2]
        );
        assert_eq!(ids(&set, Targets::ARGS, "a cat and a dog"), vec![3, 4]);
        assert_eq!(ids(&set, Targets::ARGS, "concatenate hotdogs"), vec![4]);
        assert_eq!(ids(&set, Targets::PATH, "union select"), Vec::<u32>::new());
    }

    #[test]
    fn triggers_skip_groups() {
        let set = RuleSet::compile(&[spec(1, "a", Pattern::Regex("x".into()))], |_| {
            Trigger::new(b"<", &["needle"])
        })
        .unwrap();
        assert!(ids(&set, Targets::ARGS, "xxx").is_empty());
        assert_eq!(ids(&set, Targets::ARGS, "x<"), vec![1]);
        assert_eq!(ids(&set, Targets::ARGS, "x NEEDLE"), vec![1]);
    }

    #[test]
    fn bad_patterns_name_the_rule() {
        let err = RuleSet::compile(
            &[
                spec(1, "a", Pattern::Regex("ok".into())),
                spec(2, "a", Pattern::Regex("(".into())),
            ],
            |_| Ok(Trigger::always()),
        )
        .unwrap_err();
        assert_eq!(err.0, 1);
        let err = RuleSet::compile(&[spec(1, "a", Pattern::Regex("(a)\\1".into()))], |_| {
            Ok(Trigger::always())
        })
        .unwrap_err();
        assert_eq!(err.0, 0);
    }
}
