//! The literals a rule cannot match without.
//!
//! For each signature we derive a finite set of byte strings such that every
//! match of the signature contains at least one of them (ASCII
//! case-insensitively). A value that contains none of a rule's literals
//! cannot match it, so the engine's prefilter (one byte pass and one
//! Aho-Corasick scan per value) decides which automata run at all. The set
//! is derived from the pattern itself, so it cannot drift from the rule.
//!
//! The analysis walks the pattern's syntax tree:
//! - a literal requires itself; a small byte class requires one of its bytes;
//! - a repetition with a minimum of at least one requires what its body does;
//! - an alternation requires the union of its branches' sets (nothing, when
//!   one branch requires nothing);
//! - a concatenation requires what any one of its parts requires, and the
//!   analysis picks the part whose set is least likely to occur in benign
//!   text (long literals with punctuation beat short words and common bytes).
//!
//! Patterns are parsed case-sensitively for the analysis: a case-insensitive
//! match of the rule is a case-sensitive match of some case variant of the
//! value, which then contains a case variant of a literal, which the
//! case-insensitive prefilter finds.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Byte classes with more members than this are not worth a literal set.
const MAX_CLASS_BYTES: usize = 12;
/// An alternation whose union grows beyond this many literals is given up
/// on (the rule then always runs).
const MAX_LITERALS: usize = 400;
/// A product of two sets is given up on beyond this many literals.
const MAX_CROSS: usize = 64;
/// How many clauses a rule's prefilter checks at most.
const MAX_CLAUSES: usize = 3;

/// What every match of a rule must contain.
#[derive(Debug, Clone, PartialEq)]
pub enum Required {
    /// For each clause, one of its literals (never empty strings; at
    /// least one clause, at least one literal in each). The first clause is
    /// the rarest; the others are further conditions (a match of
    /// `\(\s*sh\s*\)` contains `(` and also `sh`).
    AllOf(Vec<Vec<Vec<u8>>>),
    /// Nothing usable was found: the rule runs on every value.
    Nothing,
}

/// The literals every match of `pattern` contains. `pattern` uses the
/// engine's syntax (bytes, no Unicode classes); an unparsable pattern
/// requires nothing (the engine reports the error when compiling it).
pub fn required(pattern: &str) -> Required {
    let config = regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(false)
        .dot_matches_new_line(true);
    let Ok(hir) = regex_automata::util::syntax::parse_with(pattern, &config) else {
        return Required::Nothing;
    };
    let info = info(&hir);
    let Some(first) = info.inner.filter(|set| !set.is_empty()) else {
        return Required::Nothing;
    };
    let mut also = info.also;
    also.retain(|set| !set.is_empty() && *set != first);
    also.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    also.dedup();
    let mut clauses = vec![first];
    clauses.extend(also.into_iter().take(MAX_CLAUSES - 1));
    Required::AllOf(clauses)
}

/// The top-level branches of `pattern` (`a|b(c|d)` gives `a` and
/// `b(c|d)`): the pattern matches a value exactly when one of them does,
/// and each branch has its own, usually rarer, literals. `None` when the
/// pattern has a single branch, or uses inline flags (which a split would
/// separate from the branches they govern).
pub fn branches(pattern: &str) -> Option<Vec<&str>> {
    let bytes = pattern.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut class = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'[' => {
                class += 1;
                // A `]` right after `[` or `[^` is a member, not the end.
                if bytes.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if class > 0 => class -= 1,
            _ if class > 0 => {}
            b'(' => {
                if bytes.get(i + 1) == Some(&b'?') && bytes.get(i + 2) != Some(&b':') {
                    return None;
                }
                depth += 1;
            }
            b')' => depth = depth.checked_sub(1)?,
            b'|' if depth == 0 => {
                out.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 || class != 0 || out.is_empty() {
        return None;
    }
    out.push(&pattern[start..]);
    Some(out)
}

/// For phrase lists: each phrase is its own literal.
pub fn phrases(list: &[String]) -> Required {
    if list.is_empty() || list.iter().any(|p| p.is_empty()) {
        return Required::Nothing;
    }
    Required::AllOf(vec![list.iter().map(|p| p.as_bytes().to_vec()).collect()])
}

/// A set of literals; `None` where no finite set describes the node.
type Set = Option<Vec<Vec<u8>>>;

/// What the analysis knows about one node of the pattern.
#[derive(Debug, Clone, Default)]
struct Info {
    /// The node matches exactly one of these strings (may contain "").
    exact: Set,
    /// Every match starts with one of these (none empty).
    prefix: Set,
    /// Every match ends with one of these (none empty).
    suffix: Set,
    /// Every match contains one of these (none empty).
    inner: Set,
    /// Further sets every match contains one of (none empty).
    also: Vec<Vec<Vec<u8>>>,
}

/// A set with no empty string, deduplicated case-insensitively, within the
/// size bound; `None` otherwise.
fn usable(set: Vec<Vec<u8>>) -> Set {
    if set.is_empty() || set.len() > MAX_LITERALS || set.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(dedup(set))
}

fn dedup(set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(set.len());
    for lit in set {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&lit)) {
            out.push(lit);
        }
    }
    out
}

/// Every `a` followed by every `b`, when that stays small.
fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Set {
    if a.len().saturating_mul(b.len()) > MAX_CROSS {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut l = x.clone();
            l.extend_from_slice(y);
            out.push(l);
        }
    }
    Some(dedup(out))
}

/// The node's own exact set, as a literal set when it has no empty string.
fn exact_info(exact: Vec<Vec<u8>>) -> Info {
    let exact = dedup(exact);
    let nonempty = usable(exact.clone());
    Info {
        exact: if exact.len() > MAX_LITERALS {
            None
        } else {
            Some(exact)
        },
        prefix: nonempty.clone(),
        suffix: nonempty.clone(),
        inner: nonempty,
        also: Vec::new(),
    }
}

fn info(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => exact_info(vec![Vec::new()]),
        HirKind::Literal(lit) => exact_info(vec![lit.0.to_vec()]),
        HirKind::Class(class) => match class_bytes(class) {
            Some(bytes) => exact_info(bytes.into_iter().map(|b| vec![b]).collect()),
            None => Info::default(),
        },
        HirKind::Capture(cap) => info(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = info(&rep.sub);
            if rep.min == 0 {
                // Optional: as good as its exact set plus the empty string.
                match (&sub.exact, rep.max) {
                    (Some(e), Some(1)) => {
                        let mut e = e.clone();
                        e.push(Vec::new());
                        exact_info(e)
                    }
                    _ => Info::default(),
                }
            } else if rep.max == Some(1) {
                sub
            } else {
                Info {
                    exact: None,
                    prefix: sub.prefix,
                    suffix: sub.suffix,
                    inner: sub.inner,
                    also: sub.also,
                }
            }
        }
        HirKind::Alternation(branches) => {
            let infos: Vec<Info> = branches.iter().map(info).collect();
            let union = |pick: fn(&Info) -> &Set| -> Set {
                let mut out = Vec::new();
                for i in &infos {
                    out.extend(pick(i).as_ref()?.iter().cloned());
                    if out.len() > MAX_LITERALS {
                        return None;
                    }
                }
                Some(dedup(out))
            };
            Info {
                exact: union(|i| &i.exact),
                prefix: union(|i| &i.prefix),
                suffix: union(|i| &i.suffix),
                inner: union(|i| &i.inner),
                also: Vec::new(),
            }
        }
        HirKind::Concat(parts) => concat(&parts.iter().map(info).collect::<Vec<_>>()),
    }
}

fn concat(parts: &[Info]) -> Info {
    // Exact: the product of every part, while every part is exact.
    let mut exact: Set = Some(vec![Vec::new()]);
    for p in parts {
        exact = match (&exact, &p.exact) {
            (Some(a), Some(b)) => cross(a, b),
            _ => None,
        };
    }
    // Prefix: the product of the leading exact parts, then the prefix of
    // the first part that is not exact.
    let mut prefix: Set = None;
    let mut run: Set = Some(vec![Vec::new()]);
    for p in parts {
        match (&run, &p.exact) {
            (Some(r), Some(e)) => run = cross(r, e),
            _ => {
                prefix = match (&run, &p.prefix) {
                    (Some(r), Some(b)) => cross(r, b).and_then(usable),
                    _ => None,
                };
                break;
            }
        }
    }
    let prefix = prefix.or_else(|| run.and_then(usable));
    // Suffix: the same from the end.
    let mut suffix: Set = None;
    let mut run: Set = Some(vec![Vec::new()]);
    for p in parts.iter().rev() {
        match (&run, &p.exact) {
            (Some(r), Some(e)) => run = cross(e, r),
            _ => {
                suffix = match (&p.suffix, &run) {
                    (Some(a), Some(r)) => cross(a, r).and_then(usable),
                    _ => None,
                };
                break;
            }
        }
    }
    let suffix = suffix.or_else(|| run.and_then(usable));
    // Inner: any part's own, or what spans a boundary: the end of what came
    // before (a suffix, extended through exact parts) joined to the start
    // of what follows.
    let mut options: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut also: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut ending: Set = None;
    for p in parts {
        if let Some(i) = &p.inner {
            options.push(i.clone());
        }
        also.extend(p.also.iter().cloned());
        if let (Some(e), Some(pre)) = (&ending, &p.prefix) {
            if let Some(joined) = cross(e, pre).and_then(usable) {
                options.push(joined);
            }
        }
        ending = match (&ending, &p.exact) {
            (Some(e), Some(x)) => cross(e, x),
            (None, Some(x)) => Some(x.clone()),
            _ => p.suffix.clone(),
        };
    }
    if let Some(e) = exact.clone().and_then(usable) {
        options.push(e);
    }
    options.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    let mut options = options.into_iter();
    let inner = options.next();
    also.extend(options);
    also.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
    also.truncate(MAX_CLAUSES * 2);
    Info {
        exact,
        prefix,
        suffix,
        inner,
        also,
    }
}

/// The bytes of a small class, or `None` for a large one.
fn class_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                for b in r.start()..=r.end() {
                    out.push(b);
                    if out.len() > MAX_CLASS_BYTES {
                        return None;
                    }
                }
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                for ch in r.start()..=r.end() {
                    // A non-ASCII character is several bytes; its lead byte
                    // is a necessary byte, but keep it simple: give up.
                    let b = u8::try_from(u32::from(ch)).ok().filter(u8::is_ascii)?;
                    out.push(b);
                    if out.len() > MAX_CLASS_BYTES {
                        return None;
                    }
                }
            }
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// How often a byte is expected at a given position of benign text, as a
/// crude model in which words are common and punctuation is rare: short
/// words occur everywhere in prose, `=` or `<` rarely.
fn byte_frequency(b: u8) -> f64 {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => 0.12,
        b' ' => 0.15,
        b'.' | b',' | b'-' | b'/' | b'_' | b':' => 0.03,
        b'\'' | b'"' | b'(' | b')' | b';' | b'=' | b'?' | b'&' | b'+' | b'%' => 0.01,
        0x21..=0x7e => 0.004,
        _ => 0.002,
    }
}

/// The expected chance that a benign value contains one of `set`: lower is
/// a better prefilter.
fn cost(set: &[Vec<u8>]) -> f64 {
    set.iter()
        .map(|lit| lit.iter().map(|b| byte_frequency(*b)).product::<f64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(pattern: &str) -> Vec<String> {
        match required(pattern) {
            Required::AllOf(clauses) => {
                let mut v: Vec<String> = clauses[0]
                    .clone()
                    .into_iter()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .collect();
                v.sort();
                v
            }
            Required::Nothing => Vec::new(),
        }
    }

    #[test]
    fn literals_classes_and_alternations() {
        let l = lits(r"union\s+select");
        assert!(l.contains(&" select".to_string()), "{l:?}");
        assert!(l.iter().all(|x| x.ends_with("select")), "{l:?}");
        // A literal joined across a boundary: "sleep(" is rarer than "sleep".
        assert_eq!(lits(r"\bsleep\(\s*\d"), vec!["sleep("]);
        assert_eq!(lits(r"https?://"), vec!["http://", "https://"]);
        assert_eq!(lits(r"[\r\n]\s*set-cookie"), vec!["set-cookie"]);
        assert_eq!(lits(r"<script|javascript:"), vec!["<script", "javascript:"]);
        assert_eq!(lits(r"a[<>]b"), vec!["a<b", "a>b"]);
        assert_eq!(lits(r"\w[<>]\w"), vec!["<", ">"]);
        assert_eq!(lits(r"(?:ab)+"), vec!["ab"]);
    }

    #[test]
    fn optional_or_open_parts_require_nothing() {
        assert_eq!(lits(r"\w+"), Vec::<String>::new());
        assert_eq!(lits(r"(?:abc)?[a-z]"), Vec::<String>::new());
        assert_eq!(lits(r"(?:abc)?\d").len(), 10);
        assert_eq!(lits(r"abc|\w+"), Vec::<String>::new());
        assert_eq!(lits(r"^$"), Vec::<String>::new());
        assert_eq!(lits(r"("), Vec::<String>::new());
    }

    #[test]
    fn further_clauses_are_kept() {
        let Required::AllOf(clauses) = required(r"\(\s*(?:ba)?sh\s*\)") else {
            panic!("no literals");
        };
        assert!(clauses.len() >= 2, "{clauses:?}");
        assert!(
            clauses.iter().any(|c| c.contains(&b"sh".to_vec())),
            "{clauses:?}"
        );
        assert!(
            clauses.iter().any(|c| c.contains(&b"(".to_vec())),
            "{clauses:?}"
        );
    }

    #[test]
    fn top_level_branches() {
        assert_eq!(
            branches(r"a|b(c|d)|[|(]x|\\|y"),
            Some(vec!["a", "b(c|d)", "[|(]x", r"\\", "y"])
        );
        assert_eq!(branches(r"abc"), None);
        assert_eq!(branches(r"(?i)a|b"), None);
        assert_eq!(branches(r"[]|]|x"), Some(vec!["[]|]", "x"]));
        assert_eq!(branches(r"(?:a|b)"), None);
    }

    #[test]
    fn case_variants_are_one_literal() {
        assert_eq!(lits(r"(?:Select|SELECT|select)"), vec!["Select"]);
        assert_eq!(lits(r"[Aa]").len(), 1);
    }

    #[test]
    fn the_rarest_part_of_a_concatenation_is_chosen() {
        // "on" is common in prose, "=" is not.
        assert_eq!(lits(r"\bon\w+\s*="), vec!["="]);
        assert_eq!(lits(r"\$\{jndi:"), vec!["${jndi:"]);
    }
}
