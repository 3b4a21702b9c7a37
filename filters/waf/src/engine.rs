//! The compiled signature set and the scan of one value.
//!
//! Every rule is one `regex-automata` regex (lazy DFA) or one Aho-Corasick
//! phrase automaton: both run in time linear in the value whatever the
//! pattern. In front of them sits a prefilter derived from the rules
//! themselves ([`crate::literals`]): the literals without which a rule
//! cannot match, merged into one byte table and one Aho-Corasick automaton
//! over all rules. A value costs one byte pass and one literal scan per
//! distinct transformation output, and only the rules whose literals occur
//! run their automaton; a benign value of plain words and digits usually
//! runs none.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcMatchKind};
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::Input;

use crate::literals::{self, Required};
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

/// Rules the prefilter tracks one by one; any rule past them always runs.
const TRACKED: usize = 256;

/// A set of rule indices below [`TRACKED`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; TRACKED / 64]);

impl Bits {
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
        }
    }

    fn or(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    fn covers(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & b == *b)
    }

    fn and(&self, other: &Bits) -> Bits {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
        out
    }

    /// The indices in the set, in order.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, word)| {
            let mut word = *word;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// The literals of every rule, merged: which rules may match a value.
#[derive(Debug)]
struct Prefilter {
    /// Byte value -> index into `byte_rules` (0: no rule needs it).
    byte_slot: Box<[u8; 256]>,
    byte_rules: Vec<Bits>,
    /// Literals of two bytes or more; `literal_rules[pattern]` are the
    /// rules a literal stands for.
    literals: Option<AhoCorasick>,
    literal_rules: Vec<Bits>,
    /// Rules with a literal of two bytes or more.
    with_literals: Bits,
    /// Rules without a usable literal: they always run.
    always: Bits,
}

impl Prefilter {
    fn build(required: &[Required]) -> Result<Self, String> {
        let mut byte_slot = Box::new([0u8; 256]);
        let mut byte_rules = vec![Bits::default()];
        let mut words: Vec<&[u8]> = Vec::new();
        let mut literal_rules: Vec<Bits> = Vec::new();
        let mut with_literals = Bits::default();
        let mut always = Bits::default();
        for (rule, req) in required.iter().enumerate() {
            let Required::AnyOf(set) = req else {
                always.set(rule);
                continue;
            };
            for lit in set {
                if let [b] = lit.as_slice() {
                    for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                        let slot = &mut byte_slot[usize::from(b)];
                        if *slot == 0 {
                            // At most 256 distinct bytes, so at most 256 slots;
                            // slot 0 is the empty set.
                            byte_rules.push(Bits::default());
                            *slot = u8::try_from(byte_rules.len() - 1).unwrap_or(u8::MAX);
                        }
                        if let Some(bits) = byte_rules.get_mut(usize::from(*slot)) {
                            bits.set(rule);
                        }
                    }
                } else {
                    with_literals.set(rule);
                    match words.iter().position(|w| w.eq_ignore_ascii_case(lit)) {
                        Some(p) => literal_rules[p].set(rule),
                        None => {
                            words.push(lit);
                            let mut bits = Bits::default();
                            bits.set(rule);
                            literal_rules.push(bits);
                        }
                    }
                }
            }
        }
        if byte_rules.len() > 256 {
            return Err("too many prefilter bytes".into());
        }
        let literals = if words.is_empty() {
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
        Ok(Prefilter {
            byte_slot,
            byte_rules,
            literals,
            literal_rules,
            with_literals,
            always,
        })
    }

    /// The rules that may match `value`.
    fn fired(&self, value: &[u8]) -> Bits {
        let mut fired = self.always;
        // Which byte slots occur, then their rules once each.
        let mut seen = [0u64; 4];
        for b in value {
            let slot = self.byte_slot[usize::from(*b)];
            seen[usize::from(slot / 64)] |= 1u64 << (slot % 64);
        }
        seen[0] &= !1;
        for (w, word) in seen.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                if let Some(bits) = self.byte_rules.get(w * 64 + bit) {
                    fired.or(bits);
                }
            }
        }
        if let Some(ac) = &self.literals {
            if !fired.covers(&self.with_literals) {
                for m in ac.find_overlapping_iter(value) {
                    if let Some(bits) = self.literal_rules.get(m.pattern().as_usize()) {
                        fired.or(bits);
                    }
                }
            }
        }
        fired
    }
}

#[derive(Debug)]
enum Matcher {
    Regex(Regex),
    Phrases {
        ac: AhoCorasick,
        /// Only outside longer words.
        word: bool,
    },
}

impl Matcher {
    fn matches(&self, hay: &[u8]) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(Input::new(hay)),
            Matcher::Phrases { ac, word: false } => ac.is_match(hay),
            Matcher::Phrases { ac, word: true } => ac
                .find_overlapping_iter(hay)
                .any(|m| at_word_boundaries(hay, m.start(), m.end())),
        }
    }
}

/// Every enabled rule, compiled.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    matchers: Vec<Matcher>,
    pipelines: Vec<Vec<Transform>>,
    /// Per pipeline, its rules below [`TRACKED`].
    pipeline_rules: Vec<Bits>,
    /// Per pipeline, its rules past [`TRACKED`] (they always run).
    pipeline_untracked: Vec<Vec<usize>>,
    /// The targets any rule of a pipeline inspects.
    pipeline_targets: Vec<Targets>,
    /// Rules with no usable literal (they run on every value).
    unfiltered: usize,
    prefilter: Prefilter,
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
    /// Compiles `specs`; an error gives the index of the rule at fault.
    pub fn compile(specs: &[RuleSpec]) -> Result<Self, (usize, String)> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut matchers = Vec::with_capacity(specs.len());
        let mut pipeline_rules: Vec<Bits> = Vec::new();
        let mut pipeline_untracked: Vec<Vec<usize>> = Vec::new();
        let mut pipelines: Vec<Vec<Transform>> = Vec::new();
        let mut pipeline_targets: Vec<Targets> = Vec::new();
        let mut required = Vec::with_capacity(specs.len());
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
                    pipeline_targets.push(Targets::default());
                    pipeline_rules.push(Bits::default());
                    pipeline_untracked.push(Vec::new());
                    pipelines.len() - 1
                }
            };
            pipeline_targets[pipeline] = pipeline_targets[pipeline].or(spec.targets);
            if i < TRACKED {
                pipeline_rules[pipeline].set(i);
            } else {
                pipeline_untracked[pipeline].push(i);
            }
            match &spec.pattern {
                Pattern::Regex(re) => {
                    matchers.push(Matcher::Regex(build_regex(re).map_err(|e| (i, e))?));
                    required.push(literals::required(re));
                }
                Pattern::Phrases { list, word } => {
                    let ac = AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(AcMatchKind::Standard)
                        .build(list)
                        .map_err(|e| (i, e.to_string()))?;
                    matchers.push(Matcher::Phrases { ac, word: *word });
                    required.push(literals::phrases(list));
                }
            }
        }
        let prefilter = Prefilter::build(&required).map_err(|e| (0, e))?;
        let unfiltered = required
            .iter()
            .enumerate()
            .filter(|(i, r)| *i >= TRACKED || **r == Required::Nothing)
            .count();
        Ok(RuleSet {
            rules,
            matchers,
            pipelines,
            pipeline_rules,
            pipeline_untracked,
            pipeline_targets,
            unfiltered,
            prefilter,
        })
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many distinct transformation pipelines the rules use.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// How many rules have no literal for the prefilter (they run on every
    /// value).
    pub fn unfiltered_count(&self) -> usize {
        self.unfiltered
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
        // A value no transformation can change is scanned once as sent.
        let present = transform::ByteSet::of(value.as_bytes());
        let plain = !transform::may_change_with(value, &present);
        let mut raw_fired: Option<Bits> = None;
        for (p, pipeline) in self.pipelines.iter().enumerate() {
            if !self.pipeline_targets[p].intersects(target) {
                continue;
            }
            let v = if plain {
                Cow::Borrowed(value)
            } else {
                transform::apply_with(value, present, pipeline)
            };
            let fired = match &v {
                Cow::Borrowed(b) => {
                    *raw_fired.get_or_insert_with(|| self.prefilter.fired(b.as_bytes()))
                }
                Cow::Owned(o) => self.prefilter.fired(o.as_bytes()),
            };
            let hay = v.as_bytes();
            let candidates = fired.and(&self.pipeline_rules[p]);
            for r in candidates
                .iter()
                .chain(self.pipeline_untracked[p].iter().copied())
            {
                let Some(rule) = self.rules.get(r) else {
                    continue;
                };
                if !rule.targets.intersects(target)
                    || !filter.family_enabled(&rule.family)
                    || !filter.rule_enabled(rule)
                {
                    continue;
                }
                if self.matchers[r].matches(hay) {
                    found(r);
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

/// Builds one rule's regex. Patterns are byte-oriented (Unicode off, so
/// `\b`, `\w` and `\s` are ASCII and the lazy DFA handles every pattern),
/// case-insensitive and `.` matches newlines.
fn build_regex(pattern: &str) -> Result<Regex, String> {
    Regex::builder()
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .hybrid_cache_capacity(1 << 18),
        )
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .case_insensitive(true)
                .dot_matches_new_line(true),
        )
        .build(pattern)
        .map_err(|e| e.to_string())
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
        let set = RuleSet::compile(&[
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
        ])
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
    fn the_prefilter_only_skips_rules_that_cannot_match() {
        let set = RuleSet::compile(&[
            spec(1, "a", Pattern::Regex("x<".into())),
            spec(2, "a", Pattern::Regex("\\bneedle\\d".into())),
            spec(3, "a", Pattern::Regex("\\w+".into())),
        ])
        .unwrap();
        assert_eq!(set.unfiltered_count(), 1);
        assert_eq!(ids(&set, Targets::ARGS, "xxx"), vec![3]);
        assert_eq!(ids(&set, Targets::ARGS, "x%3C"), vec![1, 3]);
        assert_eq!(ids(&set, Targets::ARGS, "x NEEDLE7"), vec![2, 3]);
        assert_eq!(ids(&set, Targets::ARGS, "--"), Vec::<u32>::new());
    }

    #[test]
    fn bad_patterns_name_the_rule() {
        let err = RuleSet::compile(&[
            spec(1, "a", Pattern::Regex("ok".into())),
            spec(2, "a", Pattern::Regex("(".into())),
        ])
        .unwrap_err();
        assert_eq!(err.0, 1);
        let err = RuleSet::compile(&[spec(1, "a", Pattern::Regex("(a)\\1".into()))]).unwrap_err();
        assert_eq!(err.0, 0);
    }
}
