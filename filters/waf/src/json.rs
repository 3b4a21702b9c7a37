//! JSON bodies, walked in place: every key and every string value, nested
//! to any depth, without building a tree and without copying strings that
//! have no escapes.
//!
//! The walk keeps only the open containers, not the path to each value:
//! a value is found again by its offset, and its path (`json.a.b[0]`) is
//! spelled only when a rule matched it ([`paths`]).

use std::borrow::Cow;

use crate::request::bounded_location;
use crate::transform::{self, TransformSet};

/// A string the walk found: a member's key or a string value.
#[derive(Debug)]
pub struct Found<'a> {
    /// The string, unescaped.
    pub text: Cow<'a, str>,
    /// The transformations that could change it, worked out while finding
    /// its end.
    pub transforms: TransformSet,
    /// The offset of its opening quote in the body.
    pub at: usize,
    /// Whether it is a member's key.
    pub is_key: bool,
}

/// One open container.
#[derive(Debug)]
pub struct Frame<'a> {
    /// In an object, the current member's key (`None` in an array).
    key: Option<Cow<'a, str>>,
    /// The current element's index, in an array.
    index: usize,
    /// The innermost object around this container or this object itself
    /// (its position in the stack): whose key an array's elements are
    /// named after. Kept per frame so that neither a lookup nor an opening
    /// bracket costs more with depth.
    owner: Option<usize>,
}

impl Frame<'_> {
    fn is_object(&self) -> bool {
        self.key.is_some()
    }
}

/// The key a value at this depth belongs to: the innermost object's
/// current key (`""` outside any object).
pub fn key_of<'s>(stack: &'s [Frame<'_>]) -> &'s str {
    stack
        .last()
        .and_then(|f| f.owner)
        .and_then(|o| stack.get(o))
        .and_then(|f| f.key.as_deref())
        .unwrap_or("")
}

/// Walks `body`, calling `visit` with each key and string value and the
/// containers open around it. Returns false when the body is not one JSON
/// document (what was visited before the error stays visited).
pub fn walk<'a>(body: &'a str, visit: &mut dyn FnMut(Found<'a>, &[Frame<'a>])) -> bool {
    walk_values(body, visit).is_some()
}

fn walk_values<'a>(body: &'a str, visit: &mut dyn FnMut(Found<'a>, &[Frame<'a>])) -> Option<()> {
    let b = body.as_bytes();
    let mut stack: Vec<Frame<'a>> = Vec::new();
    let mut i = skip_ws(b, 0);
    // Each turn parses one value at `i`, then what follows it.
    loop {
        match *b.get(i)? {
            c @ (b'{' | b'[') => {
                let object = c == b'{';
                let owner = if object {
                    Some(stack.len())
                } else {
                    stack.last().and_then(|f| f.owner)
                };
                stack.push(Frame {
                    key: object.then_some(Cow::Borrowed("")),
                    index: 0,
                    owner,
                });
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(if object { &b'}' } else { &b']' }) {
                    stack.pop();
                    i += 1;
                } else {
                    if object {
                        i = member_key(body, i, &mut stack, visit)?;
                    }
                    continue;
                }
            }
            b'"' => {
                let (text, transforms, next) = string(body, i + 1)?;
                let found = Found {
                    text,
                    transforms,
                    at: i,
                    is_key: false,
                };
                visit(found, &stack);
                i = next;
            }
            _ => i = scalar(b, i)?,
        }
        // After a value: the end, a separator, or a closing bracket.
        loop {
            i = skip_ws(b, i);
            let Some(frame) = stack.last_mut() else {
                return (i == b.len()).then_some(());
            };
            match *b.get(i)? {
                b',' => {
                    i = skip_ws(b, i + 1);
                    if frame.is_object() {
                        i = member_key(body, i, &mut stack, visit)?;
                    } else {
                        frame.index += 1;
                    }
                    break;
                }
                b'}' if frame.is_object() => {}
                b']' if !frame.is_object() => {}
                _ => return None,
            }
            stack.pop();
            i += 1;
        }
    }
}

/// An object member's key at `i` and its `:`: visits the key, makes it the
/// current one, and returns where the member's value starts.
fn member_key<'a>(
    body: &'a str,
    i: usize,
    stack: &mut [Frame<'a>],
    visit: &mut dyn FnMut(Found<'a>, &[Frame<'a>]),
) -> Option<usize> {
    let b = body.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let (key, transforms, next) = string(body, i + 1)?;
    if let Some(frame) = stack.last_mut() {
        frame.key = Some(key.clone());
    }
    let found = Found {
        text: key,
        transforms,
        at: i,
        is_key: true,
    };
    visit(found, stack);
    let next = skip_ws(b, next);
    (b.get(next) == Some(&b':')).then(|| skip_ws(b, next + 1))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string starting after its opening quote: its value, the
/// transformations that could change it, and the index after the closing
/// quote.
fn string(s: &str, start: usize) -> Option<(Cow<'_, str>, TransformSet, usize)> {
    let b = s.as_bytes();
    let (mut i, transforms) = transform::json_string_run(b, start);
    match b.get(i)? {
        b'"' => return Some((Cow::Borrowed(s.get(start..i)?), transforms, i + 1)),
        b'\\' => {}
        // A control byte.
        _ => return None,
    }
    let mut out = String::from(s.get(start..i)?);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let transforms = transform::applicable(out.as_bytes());
                return Some((Cow::Owned(out), transforms, i + 1));
            }
            b'\\' => {
                let c = match *b.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hi = hex4(b, i + 2)?;
                        i += 6;
                        if (0xd800..0xdc00).contains(&hi)
                            && b.get(i) == Some(&b'\\')
                            && b.get(i + 1) == Some(&b'u')
                        {
                            if let Some(lo) =
                                hex4(b, i + 2).filter(|l| (0xdc00..0xe000).contains(l))
                            {
                                i += 6;
                                let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                continue;
                            }
                        }
                        out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
                        continue;
                    }
                    _ => return None,
                };
                out.push(c);
                i += 2;
            }
            c if c < 0x20 => return None,
            _ => {
                // Copy the run up to the next quote, escape or control byte
                // at once (the decoded whole is profiled at the end).
                let end = transform::json_string_run_end(b, i);
                out.push_str(s.get(i..end)?);
                i = end;
            }
        }
    }
    None
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, d| Some(acc * 16 + char::from(*d).to_digit(16)?))
}

/// A number, `true`, `false` or `null` at `i`: the index after it.
fn scalar(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    for word in [&b"true"[..], b"false", b"null"] {
        if rest.starts_with(word) {
            return Some(i + word.len());
        }
    }
    let len = rest
        .iter()
        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    (len > 0 && rest.first() != Some(&b'+')).then_some(i + len)
}

/// Where the strings at these offsets (each the opening quote of a key or
/// a value the walk visited) are: `json.a.b[0]` for a value, `json_names:a.b`
/// for a key. One walk for all of them; `None` for an offset the walk never
/// visits.
pub fn paths(body: &str, offsets: &[usize]) -> Vec<Option<String>> {
    let mut sorted: Vec<usize> = offsets.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut found_paths: Vec<Option<String>> = vec![None; sorted.len()];
    walk(body, &mut |found, stack| {
        if let Ok(slot) = sorted.binary_search(&found.at) {
            if let Some(p) = found_paths.get_mut(slot) {
                *p = Some(path(stack, found.is_key));
            }
        }
    });
    offsets
        .iter()
        .map(|at| {
            let slot = sorted.binary_search(at).ok()?;
            found_paths.get(slot).cloned().flatten()
        })
        .collect()
}

fn path(stack: &[Frame<'_>], is_key: bool) -> String {
    let mut path = String::new();
    for frame in stack {
        if let Some(key) = &frame.key {
            path.push('.');
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&frame.index.to_string());
            path.push(']');
        }
    }
    bounded_location(if is_key {
        format!("json_names:{}", path.strip_prefix('.').unwrap_or(&path))
    } else {
        format!("json{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a walk visits: key or not, text, path.
    fn visited(body: &str) -> (bool, Vec<(bool, String, String)>) {
        let mut seen = Vec::new();
        let mut offsets = Vec::new();
        let ok = walk(body, &mut |found, _| {
            offsets.push(found.at);
            seen.push((found.is_key, found.text.into_owned()));
        });
        let paths = paths(body, &offsets);
        let out = seen
            .into_iter()
            .zip(paths)
            .map(|((k, t), p)| (k, t, p.unwrap_or_default()))
            .collect();
        (ok, out)
    }

    fn s(k: bool, text: &str, path: &str) -> (bool, String, String) {
        (k, text.to_string(), path.to_string())
    }

    #[test]
    fn every_key_and_string_is_visited_with_its_path() {
        let (ok, seen) = visited(r#"{"a":{"b":["x",{"c":"y"}],"n":1},"d":"z"}"#);
        assert!(ok);
        assert_eq!(
            seen,
            vec![
                s(true, "a", "json_names:a"),
                s(true, "b", "json_names:a.b"),
                s(false, "x", "json.a.b[0]"),
                s(true, "c", "json_names:a.b[1].c"),
                s(false, "y", "json.a.b[1].c"),
                s(true, "n", "json_names:a.n"),
                s(true, "d", "json_names:d"),
                s(false, "z", "json.d"),
            ]
        );
        // Escapes, surrogate pairs, top-level arrays, duplicate keys.
        let (ok, seen) = visited(
            r#" [ {"k\u0022":"a\nb\ud83d\ude00\u00e9","k\u0022":"2nd"}, true, null, -1.5e3, [], "t" ] "#,
        );
        assert!(ok);
        assert_eq!(
            seen,
            vec![
                s(true, "k\"", "json_names:[0].k\""),
                s(false, "a\nb\u{1f600}\u{e9}", "json[0].k\""),
                s(true, "k\"", "json_names:[0].k\""),
                s(false, "2nd", "json[0].k\""),
                s(false, "t", "json[5]"),
            ]
        );
    }

    #[test]
    fn strings_carry_what_could_transform_them() {
        let mut sets = Vec::new();
        walk(
            r#"{"plain":"o'brien","esc":"a\u0025b"}"#,
            &mut |found, _| {
                sets.push((
                    found.transforms,
                    transform::applicable(found.text.as_bytes()),
                ))
            },
        );
        assert_eq!(sets.len(), 4);
        for (found, direct) in sets {
            assert_eq!(found, direct);
        }
    }

    #[test]
    fn values_are_named_after_their_key() {
        let mut names = Vec::new();
        walk(
            r#"{"tags":["a",{"x":"b"}],"top":"c"}"#,
            &mut |found, stack| {
                if !found.is_key {
                    names.push(key_of(stack).to_string());
                }
            },
        );
        assert_eq!(names, vec!["tags", "x", "top"]);
        let mut names = Vec::new();
        walk(r#""alone""#, &mut |_, stack| {
            names.push(key_of(stack).to_string())
        });
        assert_eq!(names, vec![""]);
    }

    #[test]
    fn nesting_costs_no_copy_of_an_escaped_key() {
        // Every bracket used to copy the enclosing key: a long escaped key
        // over deep arrays would have needed gigabytes.
        let body = format!(
            "{{\"{}\":{}\"v\"{}}}",
            "\\/".repeat(20_000),
            "[".repeat(60_000),
            "]".repeat(60_000)
        );
        let mut names = Vec::new();
        assert!(walk(&body, &mut |found, stack| {
            if !found.is_key {
                names.push(key_of(stack).len());
            }
        }));
        assert_eq!(names, vec![20_000]);
        // Its location is bounded however deep and long.
        let at = body.find("\"v\"").unwrap_or_default();
        let found = paths(&body, &[at]);
        let location = found[0].as_deref().unwrap_or_default();
        assert!(location.starts_with("json./////") && location.ends_with("..."));
        assert!(location.len() <= crate::request::MAX_LOCATION_BYTES + 3);
    }

    #[test]
    fn deep_and_bad_documents() {
        let deep = format!("{}\"x\"{}", "[".repeat(5000), "]".repeat(5000));
        assert!(visited(&deep).0);
        for bad in [
            "",
            "{",
            "{\"a\" 1}",
            "[1,]x",
            "{\"a\":tru}",
            "\"a\\u12\"",
            "[1] [2]",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"x\\q\"}",
            "+1",
            "[\"open",
        ] {
            assert!(!visited(bad).0, "{bad:?}");
        }
    }
}
