//! Just enough JSON for an LLM call, without building a tree of the body.
//!
//! - [`members`]: the top-level members of a complete request body, each
//!   key decoded (so `"max\u005ftokens"` is `max_tokens`, as the provider
//!   will read it) with the byte span of its value, for reading a few
//!   fields and rewriting one in place (the rest of the body is left
//!   byte for byte as the client wrote it).
//! - [`Capture`]: an incremental scanner that picks the `usage` object (and
//!   the `model` string) out of a response fed in chunks split anywhere,
//!   in memory bounded by what it captures: a response body of any size
//!   (a batch of embeddings) is never held whole.

use std::ops::Range;

/// One top-level member of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key, decoded.
    pub key: String,
    /// Where its value is in the document.
    pub value: Range<usize>,
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string starting at `i`.
fn string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match bytes.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The end of the value starting at `i` (a well-formed document).
fn value_end(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => string_end(bytes, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match bytes.get(j)? {
                    b'"' => {
                        j = string_end(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while bytes
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The top-level members of `body`, which must be one JSON object; `None`
/// when it is not JSON or not an object.
pub fn members(body: &[u8]) -> Option<Vec<Member>> {
    // Validated first, so the walk below may assume a well-formed document.
    // JSON is UTF-8 throughout (RFC 8259), which serde_json does not check
    // in what it ignores: a provider refuses such a body, so does the stage.
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(body, i + 1);
    if body.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = string_end(body, i)?;
        let raw = body.get(i..key_end)?;
        let key: String = if raw.contains(&b'\\') {
            serde_json::from_slice(raw).ok()?
        } else {
            String::from_utf8(raw.get(1..raw.len() - 1)?.to_vec()).ok()?
        };
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let end = value_end(body, start)?;
        out.push(Member {
            key,
            value: start..end,
        });
        i = skip_ws(body, end);
        match body.get(i)? {
            b',' => i = skip_ws(body, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// The most bytes one captured value may have: a `usage` object is a few
/// hundred bytes; anything longer is not one.
const CAPTURE_LIMIT: usize = 4096;
/// How deep the scanner tracks containers (deeper ones are only counted).
const TRACKED_DEPTH: usize = 3;

/// What the scanner is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Lexeme {
    #[default]
    Between,
    /// Inside a string; `escaped`: the last byte was a backslash.
    String { escaped: bool },
    /// Inside a number, `true`, `false` or `null`.
    Bare,
}

/// Picks values out of a stream of JSON documents (one response body, or
/// the `data` of one server-sent event after another): the `usage` object
/// and the `model` string of the top-level object, or of an object directly
/// under it (`{"type": "message_start", "message": {"usage": ...}}`,
/// `{"type": "response.completed", "response": {"usage": ...}}`).
/// Each completed `usage` object is handed to the caller; nothing else is
/// kept. Bytes that are not JSON are skipped without harm.
#[derive(Debug, Default)]
pub struct Capture {
    lexeme: Lexeme,
    /// Containers open: `true` for an object. Only the first
    /// [`TRACKED_DEPTH`] are kept; `depth` counts them all.
    open: Vec<bool>,
    depth: usize,
    /// In an object at a tracked depth: whether the next string is a key.
    expecting_key: bool,
    /// The string being read, when it matters (a key, or a `model` value).
    text: Vec<u8>,
    reading_text: bool,
    /// The last key read at each tracked depth.
    keys: [Option<Key>; TRACKED_DEPTH],
    /// The value being captured: its depth and bytes.
    capture: Option<(usize, Vec<u8>)>,
    /// Completed `usage` objects not yet taken.
    usages: Vec<Vec<u8>>,
    /// The `model` string, when one was read.
    model: Option<String>,
    /// After a key: the value that follows belongs to it.
    after_colon: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Usage,
    Model,
    Other,
}

impl Capture {
    /// A scanner at the start of a document.
    pub fn new() -> Self {
        Capture::default()
    }

    /// Forgets the document read so far (the next server-sent event).
    pub fn reset(&mut self) {
        let model = self.model.take();
        let usages = std::mem::take(&mut self.usages);
        *self = Capture {
            model,
            usages,
            ..Capture::default()
        };
    }

    /// The `usage` objects completed so far, taken.
    pub fn take_usages(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.usages)
    }

    /// The last `model` string read.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the key this value belongs to is one to capture.
    fn wanted(&self, key: Key) -> bool {
        // The value's object is at `depth` (1: the top level; 2: an object
        // member of it).
        key != Key::Other
            && match self.depth {
                1 => self.open.first() == Some(&true),
                2 => self.open.first() == Some(&true) && self.open.get(1) == Some(&true),
                _ => false,
            }
    }

    fn current_key(&self) -> Option<Key> {
        self.depth
            .checked_sub(1)
            .and_then(|d| self.keys.get(d).copied().flatten())
    }

    /// A value starts here (its first byte is `byte`).
    fn value_starts(&mut self, byte: u8) {
        if !self.after_colon {
            return;
        }
        self.after_colon = false;
        match self.current_key() {
            Some(Key::Usage) if byte == b'{' && self.wanted(Key::Usage) => {
                // The opening brace is this byte, already past the capture.
                let mut buf = Vec::with_capacity(256);
                buf.push(b'{');
                self.capture = Some((self.depth, buf));
            }
            Some(Key::Model) if byte == b'"' && self.wanted(Key::Model) => {
                self.reading_text = true;
                self.text.clear();
            }
            _ => {}
        }
    }

    /// Feeds the next bytes of the document.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if let Some((_, buf)) = &mut self.capture {
            if buf.len() < CAPTURE_LIMIT {
                buf.push(b);
            } else {
                self.capture = None;
            }
        }
        match self.lexeme {
            Lexeme::String { escaped: true } => {
                self.lexeme = Lexeme::String { escaped: false };
                self.push_text(b);
            }
            Lexeme::String { escaped: false } => match b {
                b'\\' => {
                    self.lexeme = Lexeme::String { escaped: true };
                    self.push_text(b);
                }
                b'"' => {
                    self.lexeme = Lexeme::Between;
                    self.string_ends();
                }
                _ => self.push_text(b),
            },
            Lexeme::Bare if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.') => {}
            Lexeme::Bare | Lexeme::Between => {
                self.lexeme = Lexeme::Between;
                self.structural(b);
            }
        }
    }

    fn push_text(&mut self, b: u8) {
        if self.reading_text && self.text.len() < 256 {
            self.text.push(b);
        }
    }

    fn string_ends(&mut self) {
        let was_key = std::mem::take(&mut self.expecting_key);
        if !self.reading_text {
            return;
        }
        self.reading_text = false;
        let text = std::mem::take(&mut self.text);
        if was_key {
            let key = match text.as_slice() {
                b"usage" => Key::Usage,
                b"model" => Key::Model,
                _ => Key::Other,
            };
            if let Some(slot) = self.depth.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
                *slot = Some(key);
            }
        } else if let Ok(model) = String::from_utf8(text) {
            self.model = Some(model);
        }
    }

    fn structural(&mut self, b: u8) {
        match b {
            b'{' | b'[' => {
                self.value_starts(b);
                if self.open.len() < TRACKED_DEPTH {
                    self.open.push(b == b'{');
                }
                self.depth += 1;
                if let Some(slot) = self.depth.checked_sub(1).and_then(|d| self.keys.get_mut(d)) {
                    *slot = None;
                }
                self.expecting_key = b == b'{';
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return;
                }
                if self.open.len() == self.depth {
                    self.open.pop();
                }
                self.depth -= 1;
                self.expecting_key = false;
                if let Some((depth, _)) = &self.capture {
                    if *depth == self.depth {
                        if let Some((_, buf)) = self.capture.take() {
                            self.usages.push(buf);
                        }
                    }
                }
            }
            b'"' => {
                self.value_starts(b);
                self.lexeme = Lexeme::String { escaped: false };
                if self.expecting_key && self.depth <= TRACKED_DEPTH {
                    self.reading_text = true;
                    self.text.clear();
                }
            }
            b':' => self.after_colon = true,
            b',' => {
                self.after_colon = false;
                self.expecting_key =
                    self.open.len() == self.depth && self.open.last() == Some(&true);
            }
            b if b.is_ascii_whitespace() => {}
            _ => {
                self.value_starts(b);
                self.lexeme = Lexeme::Bare;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_decode_keys_and_locate_values() {
        let body = br#" { "model" : "gpt-4o", "max\u005ftokens": 4096 ,"messages":[{"role":"user","content":"a \"b\" {c}"}],"stream":true}"#;
        let m = members(body).unwrap();
        let keys: Vec<&str> = m.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["model", "max_tokens", "messages", "stream"]);
        assert_eq!(&body[m[0].value.clone()], br#""gpt-4o""#);
        assert_eq!(&body[m[1].value.clone()], b"4096");
        assert!(body[m[2].value.clone()].ends_with(b"}]"));
        assert_eq!(&body[m[3].value.clone()], b"true");
        assert_eq!(members(b"{}").unwrap(), vec![]);
        for bad in [&b"[1]"[..], b"{\"a\":}", b"{\"a\":1", b"", b"{\"a\":1}x"] {
            assert!(members(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn usages_of(chunks: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut c = Capture::new();
        for chunk in chunks {
            c.feed(chunk);
        }
        let usages = c
            .take_usages()
            .into_iter()
            .map(|u| String::from_utf8(u).unwrap())
            .collect();
        (usages, c.model().map(str::to_string))
    }

    #[test]
    fn a_number_past_f64_is_still_json() {
        // Found by the llm_body fuzz target: RFC 8259's grammar sets no
        // range for numbers and the stage reads none outside its limits, so
        // a body with a number past f64's range is read (the provider may
        // refuse it); serde_json's Value refuses such a number.
        let body = br#"{"model":"gpt-4o","other":78880E0000000000000002049638230412172402}"#;
        let keys: Vec<String> = members(body).unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["model", "other"]);
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
    }

    #[test]
    fn a_body_that_is_not_utf8_is_not_json() {
        // Found by the llm_body fuzz target: invalid UTF-8 in a nested key,
        // which serde_json skips unchecked and a provider refuses.
        let body = b"{\"model\":\"m\",\"messages\":[{\"\xce\xce\":1}]}";
        assert!(members(body).is_none());
        assert!(members(br#"{"model":"m","messages":[{"\u00ce":1}]}"#).is_some());
    }

    #[test]
    fn captures_usage_and_model_at_the_top_and_one_level_down() {
        let doc = br#"{"id":"x","model":"gpt-4o-2024","choices":[{"message":{"content":"usage: {\"usage\":1}","usage":{"no":1}}}],"usage":{"prompt_tokens":9,"completion_tokens":12,"details":{"a":[1,2]}}}"#;
        let (usages, model) = usages_of(&[doc]);
        assert_eq!(
            usages,
            [r#"{"prompt_tokens":9,"completion_tokens":12,"details":{"a":[1,2]}}"#]
        );
        assert_eq!(model.as_deref(), Some("gpt-4o-2024"));
        let nested = br#"{"type":"message_start","message":{"model":"claude","usage":{"input_tokens":25,"output_tokens":1}}}"#;
        let (usages, model) = usages_of(&[nested]);
        assert_eq!(usages, [r#"{"input_tokens":25,"output_tokens":1}"#]);
        assert_eq!(model.as_deref(), Some("claude"));
        // null usage (every OpenAI stream chunk but the last) is no usage.
        let (usages, _) = usages_of(&[br#"{"choices":[],"usage":null}"#]);
        assert!(usages.is_empty());
        // Deeper than one level, or in an array: not the response's usage.
        let (usages, _) = usages_of(&[br#"{"a":{"b":{"usage":{"x":1}}},"c":[{"usage":{"y":2}}]}"#]);
        assert!(usages.is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_capture() {
        let doc: &[u8] = br#"{"model":"m\"1","data":[{"embedding":[0.1,-2e-3]}],"usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        let whole = usages_of(&[doc]);
        for i in 0..=doc.len() {
            for j in i..=doc.len() {
                let split = usages_of(&[&doc[..i], &doc[i..j], &doc[j..]]);
                assert_eq!(split, whole, "split at {i}, {j}");
            }
        }
        assert_eq!(whole.1.as_deref(), Some("m\\\"1"));
    }

    #[test]
    fn garbage_and_oversized_values_capture_nothing() {
        let (usages, _) = usages_of(&[b"[DONE]", b"}}}]]]", b"\"\\"]);
        assert!(usages.is_empty());
        let huge = format!(r#"{{"usage":{{"pad":"{}"}}}}"#, "x".repeat(CAPTURE_LIMIT));
        let (usages, _) = usages_of(&[huge.as_bytes()]);
        assert!(usages.is_empty());
    }
}
