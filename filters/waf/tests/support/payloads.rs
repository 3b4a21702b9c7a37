//! This project's own attack payload shapes and near misses
//! (`tests/payloads.txt`), for attack classes the CRS corpus does not test
//! the way they arrive (CRLF and header injection, LDAP, NoSQL operators,
//! mail headers, template injection).
//!
//! A line is `<class> <attack|pass> <place> <value>`: the value is the rest
//! of the line, with `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` escapes.

#![allow(dead_code)]

/// What a payload must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused at paranoia 1.
    Attack,
    /// Passed (a near miss: looks close, is harmless).
    Pass,
}

#[derive(Debug, Clone)]
pub struct Payload {
    pub class: String,
    pub expect: Expect,
    /// Where it is sent: `query`, `json`, `form`, `header` (the value
    /// encoded for that place), or `query_string`, `json_body`,
    /// `form_body`, `path`, `cookie` (the value as the raw part).
    pub place: String,
    pub value: String,
}

fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'0' => (0, 2),
                b'\\' => (b'\\', 2),
                b'x' if i + 3 < b.len() => match u8::from_str_radix(&s[i + 2..i + 4], 16) {
                    Ok(v) => (v, 4),
                    Err(_) => (b'\\', 1),
                },
                _ => (b'\\', 1),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn load() -> Vec<Payload> {
    let mut out = Vec::new();
    for (n, line) in include_str!("../payloads.txt").lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        let (Some(class), Some(expect), Some(place), Some(value)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!(
                "payloads.txt:{}: expected `class expect place value`",
                n + 1
            );
        };
        let expect = match expect {
            "attack" => Expect::Attack,
            "pass" => Expect::Pass,
            other => panic!("payloads.txt:{}: `{other}` is not attack or pass", n + 1),
        };
        out.push(Payload {
            class: class.into(),
            expect,
            place: place.into(),
            value: unescape(value),
        });
    }
    out
}
