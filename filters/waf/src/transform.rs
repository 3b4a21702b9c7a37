//! Transformations applied to a value before signatures are matched.
//!
//! Attackers hide payloads behind encodings that the application will undo
//! (`%2527`, `&#x3c;`, `\u003c`, `/**/`, `..%5c`); a rule names the
//! transformations that undo them, in order, and matches the result. Every
//! transformation runs in linear time, returns the input unchanged (borrowed)
//! when there is nothing to do, so a benign plain value costs one scan, and
//! never grows its input beyond a small constant factor.

use std::borrow::Cow;

use serde::Deserialize;

/// One transformation, as named in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `%XX` and `%uXXXX` decoding, repeated while it changes the value (at
    /// most [`MAX_URL_DECODE_ROUNDS`] rounds) to undo double encoding. `+` is
    /// left alone: query and form values are already decoded once with it.
    UrlDecode,
    /// `&lt;`, `&#60;`, `&#x3c;` and the other common named entities; the `;`
    /// is optional, as in browsers.
    HtmlEntityDecode,
    /// `\uXXXX`, `\u{X..}`, `\xHH` and `%uXXXX` escapes (JavaScript, JSON,
    /// Java, IIS).
    UnicodeUnescape,
    /// ASCII lower case.
    Lowercase,
    /// Every run of whitespace (including vertical tab, form feed and
    /// non-breaking space) becomes one space.
    CompressWhitespace,
    /// SQL and C comments: `/* .. */` (also unterminated) becomes a space,
    /// `-- ` and `#` to the end of the line are removed.
    RemoveComments,
    /// Resolves `./` and `../`, collapses `//`, and turns `\` into `/`.
    NormalizePath,
    /// Removes NUL bytes.
    RemoveNulls,
    /// What a shell would see: lowercases, removes `\`, `"`, `'` and `^`
    /// (quote and caret evasions such as `c''at` or `w^h^o^a^m^i`), turns
    /// `$IFS` / `${IFS}` and `,` into spaces, drops `$@` and `$*`,
    /// compresses whitespace.
    CmdLine,
}

/// What one pass over a value tells about it: which classes of bytes
/// occur, and which pairs of them occur side by side. That is enough to
/// know which transformations have nothing to do, without scanning again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Profile {
    /// The classes (`C_*`, and the pair roles `P_*`) of the bytes that occur.
    classes: u32,
    /// The pairs (`PAIR_*`) that occur side by side (other bits are noise).
    pairs: u32,
}

const C_PERCENT: u32 = 1;
const C_AMP: u32 = 1 << 1;
const C_BACKSLASH: u32 = 1 << 2;
const C_UPPER: u32 = 1 << 3;
/// Whitespace a compression changes even alone: other than a plain space,
/// and the lead byte of a non-breaking space.
const C_ODD_SPACE: u32 = 1 << 4;
const C_HASH: u32 = 1 << 5;
const C_STAR: u32 = 1 << 6;
const C_NUL: u32 = 1 << 7;
/// What a shell drops or splits on besides whitespace: `"`, `'`, `^`, `,`, `$`.
const C_SHELL: u32 = 1 << 8;
const C_SLASH: u32 = 1 << 9;
/// `"`: ends a JSON string's plain run (no transformation looks at it).
const C_QUOTE: u32 = 1 << 10;
/// A byte below 0x20, which a JSON string may not hold unescaped (no
/// transformation looks at this bit; the byte's other class bits say what
/// it is to them).
const C_CONTROL: u32 = 1 << 11;

// Pairs are found without a branch: a byte that can start a pair carries a
// bit that, shifted left by one, is the bit its second byte carries, so
// `(previous << 1) & current` is set exactly for the pairs that occur (and
// the class bits, all below the first pair bit once shifted, land on
// nothing that is read).
/// Two spaces in a row.
const PAIR_SPACE: u32 = 1 << 17;
/// `--`.
const PAIR_DASH: u32 = 1 << 20;
/// `//` or `/.`.
const PAIR_SLASH: u32 = 1 << 23;
/// What a space, dash and slash carry: the first and the second role.
const P_SPACE: u32 = PAIR_SPACE | (PAIR_SPACE >> 1);
const P_DASH: u32 = PAIR_DASH | (PAIR_DASH >> 1);
const P_SLASH: u32 = PAIR_SLASH | (PAIR_SLASH >> 1);
/// A dot only ends a pair (after a slash): `./` and `..` are none.
const P_DOT: u32 = PAIR_SLASH;
// The layout above, checked when compiling: shifted class bits stay below
// the pair bits, and the three pairs' bits (with their shifts) are apart.
const _: () = assert!(C_CONTROL << 1 < P_SPACE & !PAIR_SPACE);
const _: () = assert!(
    (P_SPACE | P_SPACE << 1) & (P_DASH | P_DASH << 1) == 0
        && (P_DASH | P_DASH << 1) & (P_SLASH | P_SLASH << 1) == 0
        && (P_SPACE | P_SPACE << 1) & (P_SLASH | P_SLASH << 1) == 0
);

/// The class of each byte value.
const CLASSES: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'%' => C_PERCENT,
            b'&' => C_AMP,
            b'\\' => C_BACKSLASH | C_SHELL,
            b'A'..=b'Z' => C_UPPER,
            b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => C_ODD_SPACE | C_CONTROL,
            0xc2 => C_ODD_SPACE,
            b'#' => C_HASH,
            b'*' => C_STAR,
            0 => C_NUL | C_CONTROL,
            0x01..=0x1f => C_CONTROL,
            b'"' => C_SHELL | C_QUOTE,
            b'\'' | b'^' | b',' | b'$' => C_SHELL,
            b' ' => P_SPACE,
            b'-' => P_DASH,
            b'/' => C_SLASH | P_SLASH,
            b'.' => P_DOT,
            _ => 0,
        };
        b += 1;
    }
    t
};

impl Profile {
    fn of(value: &[u8]) -> Self {
        Profile::until(value, 0, 0).1
    }

    /// The profile of `bytes[start..]` up to the first byte with a class in
    /// `stop` (none when `stop` is 0), and where that byte is (the length
    /// when there is none). Inlined so that each caller's `stop` is a
    /// constant and the loop stays one table lookup per byte.
    #[inline(always)]
    fn until(bytes: &[u8], start: usize, stop: u32) -> (usize, Self) {
        let mut classes = 0;
        let mut pairs = 0;
        let mut prev = 0;
        let mut at = start;
        while let Some(&b) = bytes.get(at) {
            let class = CLASSES[usize::from(b)];
            if class & stop != 0 {
                break;
            }
            classes |= class;
            pairs |= (prev << 1) & class;
            prev = class;
            at += 1;
        }
        (at, Profile { classes, pairs })
    }

    /// The transformations that could change a value with this profile.
    fn transforms(&self) -> TransformSet {
        // Spelled out rather than a loop over every transformation: each
        // test compiles to a bit test or two (this runs for every value).
        let bit = |t: Transform| if t.may_apply(self) { t.bit() } else { 0 };
        TransformSet(
            bit(Transform::UrlDecode)
                | bit(Transform::HtmlEntityDecode)
                | bit(Transform::UnicodeUnescape)
                | bit(Transform::Lowercase)
                | bit(Transform::CompressWhitespace)
                | bit(Transform::RemoveComments)
                | bit(Transform::NormalizePath)
                | bit(Transform::RemoveNulls)
                | bit(Transform::CmdLine),
        )
    }

    fn has(&self, classes: u32) -> bool {
        self.classes & classes != 0
    }

    fn pair(&self, pairs: u32) -> bool {
        self.pairs & pairs != 0
    }
}

impl Transform {
    /// Whether this transformation could change a value with this profile
    /// in a way that matters to a case-insensitive match (a cheap test; the
    /// transformation itself still decides).
    fn may_apply(self, p: &Profile) -> bool {
        match self {
            Transform::UrlDecode => p.has(C_PERCENT),
            Transform::HtmlEntityDecode => p.has(C_AMP),
            Transform::UnicodeUnescape => p.has(C_BACKSLASH | C_PERCENT),
            Transform::Lowercase => p.has(C_UPPER),
            Transform::CompressWhitespace => p.has(C_ODD_SPACE) || p.pair(PAIR_SPACE),
            Transform::RemoveComments => {
                p.has(C_HASH) || (p.has(C_STAR) && p.has(C_SLASH)) || p.pair(PAIR_DASH)
            }
            Transform::NormalizePath => p.has(C_BACKSLASH) || p.pair(PAIR_SLASH),
            Transform::RemoveNulls => p.has(C_NUL),
            Transform::CmdLine => p.has(C_SHELL | C_ODD_SPACE) || p.pair(PAIR_SPACE),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of transformations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformSet(u16);

impl TransformSet {
    /// The transformations in `list`.
    pub fn of(list: &[Transform]) -> Self {
        TransformSet(list.iter().fold(0, |set, t| set | t.bit()))
    }

    /// Both sets.
    pub fn or(self, other: TransformSet) -> TransformSet {
        TransformSet(self.0 | other.0)
    }

    /// Whether it has none in common with `other`.
    pub fn disjoint(self, other: TransformSet) -> bool {
        self.0 & other.0 == 0
    }

    /// Whether `t` is in it.
    pub fn has(self, t: Transform) -> bool {
        self.0 & t.bit() != 0
    }
}

/// The transformations that could change `value` (one pass over it; each
/// transformation still decides).
pub fn applicable(value: &[u8]) -> TransformSet {
    Profile::of(value).transforms()
}

/// The plain run of a JSON string from `start` (just inside its opening
/// quote, or after an escape) up to its closing quote, an escape or a
/// control byte (which JSON forbids), and the transformations that could
/// change that run: the parser finds the end of a string and profiles it
/// in the same pass. Returns where the run stops (the length when it is
/// not closed).
pub fn json_string_run(bytes: &[u8], start: usize) -> (usize, TransformSet) {
    let (end, profile) = Profile::until(bytes, start, JSON_STRING_STOP);
    (end, profile.transforms())
}

/// Where [`json_string_run`]'s run ends, when its profile is not needed
/// (the same loop, inlined: the unused profile compiles away).
pub fn json_string_run_end(bytes: &[u8], start: usize) -> usize {
    Profile::until(bytes, start, JSON_STRING_STOP).0
}

/// The bytes that end a JSON string's plain run.
const JSON_STRING_STOP: u32 = C_QUOTE | C_BACKSLASH | C_CONTROL;

/// Whether any transformation could change `value` in a way that matters
/// to a case-insensitive match. Most benign values (words, numbers,
/// identifiers) answer no, and skip every transformation.
pub fn may_change(value: &str) -> bool {
    // Lower case never changes a case-insensitive verdict.
    !applicable(value.as_bytes()).disjoint(TransformSet(!Transform::Lowercase.bit()))
}

/// Every transformation.
#[cfg(test)]
const ALL: [Transform; 9] = [
    Transform::UrlDecode,
    Transform::HtmlEntityDecode,
    Transform::UnicodeUnescape,
    Transform::Lowercase,
    Transform::CompressWhitespace,
    Transform::RemoveComments,
    Transform::NormalizePath,
    Transform::RemoveNulls,
    Transform::CmdLine,
];

/// The bound on repeated URL decoding.
pub const MAX_URL_DECODE_ROUNDS: usize = 3;

/// Applies `transforms` in order.
pub fn apply<'a>(value: &'a str, transforms: &[Transform]) -> Cow<'a, str> {
    let mut current = Cow::Borrowed(value);
    for t in transforms {
        if let Cow::Owned(s) = apply_one(&current, *t) {
            current = Cow::Owned(s);
        }
    }
    current
}

/// Applies one transformation; borrowed when it changes nothing.
pub fn apply_one(value: &str, t: Transform) -> Cow<'_, str> {
    match t {
        Transform::UrlDecode => url_decode_repeated(value),
        Transform::HtmlEntityDecode => html_entity_decode(value),
        Transform::UnicodeUnescape => unicode_unescape(value),
        Transform::Lowercase => {
            if value.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(value.to_ascii_lowercase())
            } else {
                Cow::Borrowed(value)
            }
        }
        Transform::CompressWhitespace => compress_whitespace(value),
        Transform::RemoveComments => remove_comments(value),
        Transform::NormalizePath => normalize_path(value),
        Transform::RemoveNulls => {
            if value.contains('\0') {
                Cow::Owned(value.replace('\0', ""))
            } else {
                Cow::Borrowed(value)
            }
        }
        Transform::CmdLine => cmd_line(value),
    }
}

fn hex_val(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u32::from(b - b'A' + 10)),
        _ => None,
    }
}

fn hex_n(bytes: &[u8], n: usize) -> Option<u32> {
    if bytes.len() < n {
        return None;
    }
    bytes[..n]
        .iter()
        .try_fold(0u32, |acc, b| Some(acc * 16 + hex_val(*b)?))
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    let ch = char::from_u32(c).unwrap_or('\u{fffd}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
}

fn lossy(out: Vec<u8>) -> String {
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Rewrites `value` escape by escape: at each byte in `leads`, `decode`
/// reads the escape starting there, appends what it stands for to the
/// output and says how many bytes it used (0: not an escape, the byte is
/// kept). Borrowed when nothing was decoded.
fn decode_escapes<'a>(
    value: &'a str,
    leads: &[u8],
    decode: impl Fn(&[u8], &mut Vec<u8>) -> usize,
) -> Cow<'a, str> {
    let bytes = value.as_bytes();
    // The bytes up to the next lead (or the end) are copied as one run.
    let run = |from: usize| {
        let rest = bytes.get(from..).unwrap_or_default();
        from + rest
            .iter()
            .position(|b| leads.contains(b))
            .unwrap_or(rest.len())
    };
    let first = run(0);
    if first == bytes.len() {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(bytes.get(..first).unwrap_or_default());
    let mut i = first;
    let mut changed = false;
    // Each turn starts at a lead.
    while let Some(rest) = bytes.get(i..).filter(|r| !r.is_empty()) {
        match decode(rest, &mut out) {
            0 => {
                out.extend_from_slice(&rest[..1]);
                i += 1;
            }
            used => {
                i += used;
                changed = true;
            }
        }
        let end = run(i);
        out.extend_from_slice(bytes.get(i..end).unwrap_or_default());
        i = end;
    }
    if changed {
        Cow::Owned(lossy(out))
    } else {
        Cow::Borrowed(value)
    }
}

/// One round of `%XX` / `%uXXXX` decoding. Invalid escapes stay as they are.
pub fn url_decode_once(value: &str) -> Cow<'_, str> {
    decode_escapes(value, b"%", |rest, out| {
        if let Some(v) = hex_n(&rest[1..], 2) {
            out.push(v as u8);
            return 3;
        }
        if matches!(rest.get(1), Some(b'u' | b'U')) {
            if let Some(v) = hex_n(&rest[2..], 4) {
                push_char(out, v);
                return 6;
            }
        }
        0
    })
}

fn url_decode_repeated(value: &str) -> Cow<'_, str> {
    let mut current = url_decode_once(value);
    for _ in 1..MAX_URL_DECODE_ROUNDS {
        match url_decode_once(&current) {
            Cow::Borrowed(_) => break,
            Cow::Owned(next) => current = Cow::Owned(next),
        }
    }
    current
}

/// Decodes a query or form component: `+` is a space, then one round of
/// `%XX`.
pub fn form_decode(value: &str) -> Cow<'_, str> {
    if !value.contains('+') {
        return url_decode_once(value);
    }
    let spaced = value.replace('+', " ");
    Cow::Owned(url_decode_once(&spaced).into_owned())
}

const ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    ("apos", '\''),
    ("bsol", '\\'),
    ("colon", ':'),
    ("comma", ','),
    ("dollar", '$'),
    ("equals", '='),
    ("excl", '!'),
    ("grave", '`'),
    ("gt", '>'),
    ("lcub", '{'),
    ("lpar", '('),
    ("lsqb", '['),
    ("lt", '<'),
    ("nbsp", ' '),
    ("newline", '\n'),
    ("num", '#'),
    ("percnt", '%'),
    ("period", '.'),
    ("plus", '+'),
    ("quest", '?'),
    ("quot", '"'),
    ("rcub", '}'),
    ("rpar", ')'),
    ("rsqb", ']'),
    ("semi", ';'),
    ("sol", '/'),
    ("tab", '\t'),
];

/// Per lower-case first letter, the range of [`ENTITIES`] starting with it
/// (the table is sorted by name).
const ENTITIES_BY_LETTER: [(usize, usize); 26] = {
    let mut ranges = [(0, 0); 26];
    let mut i = 0;
    while i < ENTITIES.len() {
        let letter = (ENTITIES[i].0.as_bytes()[0] - b'a') as usize;
        if ranges[letter].1 == 0 {
            ranges[letter].0 = i;
        }
        ranges[letter].1 = i + 1;
        i += 1;
    }
    ranges
};

fn html_entity_decode(value: &str) -> Cow<'_, str> {
    decode_escapes(value, b"&", |rest, out| match entity_at(&rest[1..]) {
        Some((c, used)) => {
            push_char(out, c);
            1 + used
        }
        None => 0,
    })
}

/// The character an entity after `&` stands for and how many bytes it used.
fn entity_at(rest: &[u8]) -> Option<(u32, usize)> {
    if rest.first() == Some(&b'#') {
        let (hex, start) = match rest.get(1) {
            Some(b'x' | b'X') => (true, 2),
            _ => (false, 1),
        };
        let mut n: u32 = 0;
        let mut j = start;
        // Leading zeros are an evasion (`&#0000060`): accept any number, bound the value.
        while j < rest.len() && j < start + 12 {
            let d = if hex {
                hex_val(rest[j])
            } else if rest[j].is_ascii_digit() {
                Some(u32::from(rest[j] - b'0'))
            } else {
                None
            };
            match d {
                Some(d) => {
                    n = n
                        .saturating_mul(if hex { 16 } else { 10 })
                        .saturating_add(d)
                }
                None => break,
            }
            j += 1;
        }
        if j == start {
            return None;
        }
        if rest.get(j) == Some(&b';') {
            j += 1;
        }
        return Some((n.min(0x10ffff), j));
    }
    // Only the names with the letter after `&` are compared (a query string
    // has an `&` before every argument).
    let first = rest.first()?.to_ascii_lowercase();
    let &(start, end) = ENTITIES_BY_LETTER.get(usize::from(first.wrapping_sub(b'a')))?;
    for (name, c) in ENTITIES.get(start..end)? {
        let n = name.len();
        if rest.len() >= n && rest[..n].eq_ignore_ascii_case(name.as_bytes()) {
            let used = if rest.get(n) == Some(&b';') { n + 1 } else { n };
            return Some((*c as u32, used));
        }
    }
    None
}

fn unicode_unescape(value: &str) -> Cow<'_, str> {
    decode_escapes(value, b"\\%", |rest, out| {
        let (lead, next) = (rest[0], rest.get(1).copied());
        if matches!(next, Some(b'u' | b'U')) {
            if lead == b'\\' && rest.get(2) == Some(&b'{') {
                let end = rest
                    .get(3..)
                    .unwrap_or(&[])
                    .iter()
                    .take(7)
                    .position(|c| *c == b'}');
                if let Some(len) = end.filter(|l| *l > 0) {
                    if let Some(v) = hex_n(&rest[3..], len) {
                        push_char(out, v);
                        return 4 + len;
                    }
                }
            } else if let Some(v) = hex_n(&rest[2..], 4) {
                push_char(out, v);
                return 6;
            }
        } else if lead == b'\\' && matches!(next, Some(b'x' | b'X')) {
            if let Some(v) = hex_n(&rest[2..], 2) {
                push_char(out, v);
                return 4;
            }
        }
        0
    })
}

fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{b}' || c == '\u{c}' || c == '\u{a0}'
}

fn compress_whitespace(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let odd_space = bytes
        .iter()
        .any(|b| matches!(b, b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xc2));
    if !odd_space && !bytes.windows(2).any(|w| w == b"  ") {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut in_space = false;
    for c in value.chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    if out == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(out)
    }
}

fn remove_comments(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    if !bytes.contains(&b'#') && !bytes.windows(2).any(|w| w == b"/*" || w == b"--") {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            // MySQL's `/*!50000 select */` runs its content: keep the content.
            let mut j = i + 2;
            if bytes.get(j) == Some(&b'!') {
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                out.push(b' ');
                i = j;
                continue;
            }
            match value[j..].find("*/") {
                Some(end) => i = j + end + 2,
                None => i = bytes.len(),
            }
            out.push(b' ');
            continue;
        }
        if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            out.push(b' ');
            i += 2;
            continue;
        }
        let line_comment =
            (bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-')) || bytes[i] == b'#';
        if line_comment {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            out.push(b' ');
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(lossy(out))
}

fn normalize_path(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    if !bytes.iter().any(|b| *b == b'\\' || *b == b'/') {
        return Cow::Borrowed(value);
    }
    let needs = value.contains('\\')
        || value.contains("//")
        || value.contains("/./")
        || value.contains("/../")
        || value.ends_with("/.")
        || value.ends_with("/..");
    if !needs {
        return Cow::Borrowed(value);
    }
    let unified = value.replace('\\', "/");
    let absolute = unified.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    // A traversal above the root is kept as `..` segments: it is the
    // evidence rules look for, not something to discard.
    for seg in unified.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(last) if *last != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(unified.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&parts.join("/"));
    if unified.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

fn cmd_line(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let reacts = bytes.iter().any(|b| {
        matches!(
            b,
            b'\\' | b'"' | b'\'' | b'^' | b',' | b'$' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xc2
        )
    });
    if !reacts && !bytes.windows(2).any(|w| w == b"  ") {
        // Only case would change, and matching is case-insensitive.
        return Cow::Borrowed(value);
    }
    let mut spaced = value.to_ascii_lowercase();
    // `$IFS`, `${IFS}` and `$IFS$9` are spaces to a shell; `$@` and `$*` are
    // empty in an injected command.
    if bytes.contains(&b'$') {
        spaced = spaced
            .replace("${ifs}", " ")
            .replace("$ifs$9", " ")
            .replace("$ifs", " ");
        for empty in ["$@", "$*"] {
            if spaced.contains(empty) {
                spaced = spaced.replace(empty, "");
            }
        }
    }
    let mut out = String::with_capacity(spaced.len());
    let mut pending_space = false;
    for c in spaced.chars() {
        match c {
            '\\' | '"' | '\'' | '^' => {}
            ',' => pending_space = true,
            c if is_space(c) => pending_space = true,
            c => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    if out == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Transform::*;
    use super::*;

    #[test]
    fn table() {
        // One case per line: input, transformations, output.
        #[rustfmt::skip]
        let cases: &[(&str, &[Transform], &str)] = &[
            ("plain", &[UrlDecode, HtmlEntityDecode, Lowercase], "plain"),
            ("%253Cscript%253E", &[UrlDecode], "<script>"),
            ("%25252527", &[UrlDecode], "%27"),
            ("%u003cb%zz", &[UrlDecode], "<b%zz"),
            ("a+b", &[UrlDecode], "a+b"),
            ("&lt;img&#x20;src&#0000058;x&colon", &[HtmlEntityDecode], "<img src:x:"),
            ("&amp &unknown; &#;", &[HtmlEntityDecode], "& &unknown; &#;"),
            ("\\u003cscript\\x3e\\u{2f}", &[UnicodeUnescape], "<script>/"),
            ("%u0027 or 1", &[UnicodeUnescape], "' or 1"),
            ("SeLeCt", &[Lowercase], "select"),
            ("a \t\n\u{b} b  c", &[CompressWhitespace], "a b c"),
            ("union/**/select/*x*/1-- rest\nx", &[RemoveComments], "union select 1 \nx"),
            ("/*!50000select*/ 1", &[RemoveComments], " select  1"),
            ("1 # c", &[RemoveComments], "1  "),
            ("/a/./b//c/../d", &[NormalizePath], "/a/b/d"),
            ("..\\..\\windows\\win.ini", &[NormalizePath], "../../windows/win.ini"),
            ("/a/../../etc/passwd", &[NormalizePath], "/../etc/passwd"),
            ("a\0b", &[RemoveNulls], "ab"),
            ("c''at /et\\c/pa\"ss\"wd;w^h^o^a^m^i", &[CmdLine], "cat /etc/passwd;whoami"),
            ("CAT${IFS}/etc/pa$@sswd,x", &[CmdLine], "cat /etc/passwd x"),
            ("%2527%20OR%201", &[UrlDecode, Lowercase], "' or 1"),
        ];
        for (input, ts, want) in cases {
            assert_eq!(apply(input, ts), *want, "{input:?} with {ts:?}");
        }
    }

    #[test]
    fn unchanged_values_stay_borrowed() {
        // Every transformation except the shell's, which lower-cases.
        let all: Vec<Transform> = ALL.into_iter().filter(|t| *t != CmdLine).collect();
        assert!(matches!(apply("hello world 42", &all), Cow::Borrowed(_)));
        assert!(matches!(apply("hello world", &[CmdLine]), Cow::Borrowed(_)));
        assert!(!may_change("hello world 42"));
        assert!(may_change("a%41") && may_change("a  b") && may_change("x'y"));
        // Pairs: only the ones a transformation acts on.
        for changes in ["/a/./b", "a//b", "a/..", "1--x", "a\\b", "a\tb"] {
            assert!(may_change(changes), "{changes:?}");
        }
        for stays in ["/api/v1/products", "Mozilla/5.0", "a-b-c", "a b", "x.y/z"] {
            assert!(!may_change(stays), "{stays:?}");
        }
    }

    #[test]
    fn every_entity_is_found_by_its_first_letter() {
        assert!(ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, c) in ENTITIES {
            let upper = name.to_ascii_uppercase();
            for text in [format!("&{name};"), format!("&{upper}")] {
                assert_eq!(html_entity_decode(&text), c.to_string(), "{text}");
            }
        }
    }

    #[test]
    fn no_transformation_that_changes_a_value_is_skipped() {
        // Every string of up to three of these pieces: whatever a
        // transformation changes (beyond case), `applicable` must name.
        let pieces = [
            " ", "-", "/", ".", "\\", "%", "&", "#", "*", "a", "A", "'", "$", "\t", "\0", "2", "7",
            ";", "x", "u", "\u{a0}", "lt", "IFS", "^", ",", "\"",
        ];
        let mut values = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = values
                .iter()
                .flat_map(|v| pieces.iter().map(move |p| format!("{v}{p}")))
                .collect();
            values.extend(longer);
        }
        for value in &values {
            let may = applicable(value.as_bytes());
            for t in ALL {
                let out = apply_one(value, t);
                if !out.eq_ignore_ascii_case(value) {
                    assert!(may.has(t), "{t:?} changes {value:?} to {out:?}");
                }
            }
        }
    }

    #[test]
    fn a_json_string_run_is_profiled_as_it_is_found() {
        for (text, end) in [
            ("plain\" rest", 5),
            ("o'b\\n", 3),
            ("x\u{1}y", 1),
            ("x\ty", 1),
            ("a//b%27", 7),
            ("", 0),
        ] {
            let (at, set) = json_string_run(text.as_bytes(), 0);
            assert_eq!(at, end, "{text:?}");
            assert_eq!(set, applicable(&text.as_bytes()[..end]), "{text:?}");
        }
        // From inside a string, as after an escape.
        assert_eq!(json_string_run(b"\\n--x\"", 2), (5, applicable(b"--x")));
        for (text, start) in [
            (&b"ab\"c"[..], 0),
            (b"ab\\c", 1),
            (b"abc", 1),
            (b"", 0),
            (b"a", 1),
        ] {
            assert_eq!(
                json_string_run_end(text, start),
                json_string_run(text, start).0
            );
        }
    }

    #[test]
    fn url_decoding_is_bounded() {
        // Four layers of encoding: three rounds leave one.
        assert_eq!(apply("%2525252541", &[UrlDecode]), "%2541");
    }

    #[test]
    fn form_decoding_handles_plus() {
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
        assert_eq!(form_decode("%E2%82%AC"), "€");
        assert_eq!(form_decode("%ff"), "\u{fffd}");
    }
}
