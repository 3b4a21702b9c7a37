//! Tool arguments: their size, and per-argument JSON type checks for tools
//! that take commands or paths.

use std::io;

use regex_lite::Regex;
use serde_json::{Map, Value};

/// The JSON type an argument must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A string.
    String,
    /// An integer (no fraction).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl ArgType {
    /// The accepted names, for error messages.
    pub const NAMES: [&'static str; 6] =
        ["string", "integer", "number", "boolean", "array", "object"];

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => ArgType::String,
            "integer" => ArgType::Integer,
            "number" => ArgType::Number,
            "boolean" => ArgType::Boolean,
            "array" => ArgType::Array,
            "object" => ArgType::Object,
            _ => return None,
        })
    }

    fn fits(self, value: &Value) -> bool {
        match self {
            ArgType::String => value.is_string(),
            ArgType::Integer => value.is_i64() || value.is_u64(),
            ArgType::Number => value.is_number(),
            ArgType::Boolean => value.is_boolean(),
            ArgType::Array => value.is_array(),
            ArgType::Object => value.is_object(),
        }
    }
}

/// The checks on one argument.
#[derive(Debug, Clone)]
pub struct ArgCheck {
    /// Its type.
    pub kind: Option<ArgType>,
    /// Longest string (characters) or array (items).
    pub max_length: Option<usize>,
    /// Allowed values.
    pub one_of: Option<Vec<Value>>,
    /// A pattern the whole string must match.
    pub pattern: Option<Regex>,
    /// Whether it must be there.
    pub required: bool,
}

/// What a tool's arguments may be.
#[derive(Debug, Clone)]
pub struct ArgumentPolicy {
    /// Largest `params.arguments`, serialized.
    pub max_bytes: usize,
    /// Checks by argument name.
    pub checks: Vec<(String, ArgCheck)>,
    /// Whether arguments not checked are refused.
    pub only_listed: bool,
    /// Arguments whose values are logged.
    pub log: Vec<String>,
}

/// Why arguments were refused. Names an argument, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentError {
    /// `params.arguments` is larger than the limit.
    TooLarge(usize),
    /// `params.arguments` is not an object.
    NotObject,
    /// A required argument is missing.
    Missing(String),
    /// An argument has the wrong type.
    WrongType(String),
    /// An argument is too long.
    TooLong(String),
    /// An argument's value is not one of the allowed ones.
    NotAllowed(String),
    /// An argument's string does not match the pattern.
    Pattern(String),
    /// An argument the tool's rule does not list.
    Unlisted(String),
}

impl std::fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgumentError::TooLarge(max) => write!(f, "arguments larger than {max} bytes"),
            ArgumentError::NotObject => f.write_str("arguments must be an object"),
            ArgumentError::Missing(n) => write!(f, "argument `{n}` is required"),
            ArgumentError::WrongType(n) => write!(f, "argument `{n}` has the wrong type"),
            ArgumentError::TooLong(n) => write!(f, "argument `{n}` is too long"),
            ArgumentError::NotAllowed(n) => {
                write!(f, "argument `{n}` has a value that is not allowed")
            }
            ArgumentError::Pattern(n) => write!(f, "argument `{n}` does not have the allowed form"),
            ArgumentError::Unlisted(n) => write!(f, "argument `{n}` is not accepted"),
        }
    }
}

/// Counts bytes written, to measure a value's JSON size without building it.
struct Counter {
    bytes: usize,
    limit: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes = self.bytes.saturating_add(buf.len());
        if self.bytes > self.limit {
            // Stops serializing as soon as the limit is passed.
            return Err(io::Error::other("limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the JSON text of `value` is at most `limit` bytes.
pub fn json_size_within(value: &Value, limit: usize) -> bool {
    let mut counter = Counter { bytes: 0, limit };
    serde_json::to_writer(&mut counter, value).is_ok()
}

impl ArgumentPolicy {
    /// Checks a tool call's `params.arguments` (absent reads as `{}`).
    pub fn check(&self, arguments: Option<&Value>) -> Result<(), ArgumentError> {
        let empty = Map::new();
        let map = match arguments {
            None => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ArgumentError::NotObject),
        };
        if let Some(value) = arguments {
            if !json_size_within(value, self.max_bytes) {
                return Err(ArgumentError::TooLarge(self.max_bytes));
            }
        }
        for (name, check) in &self.checks {
            match map.get(name) {
                None if check.required => return Err(ArgumentError::Missing(name.clone())),
                None => {}
                Some(value) => check.check(name, value)?,
            }
        }
        if self.only_listed {
            if let Some(name) = map
                .keys()
                .find(|k| !self.checks.iter().any(|(n, _)| n == *k))
            {
                return Err(ArgumentError::Unlisted(name.clone()));
            }
        }
        Ok(())
    }

    /// The logged arguments' values as text, each at most 256 characters.
    pub fn logged(&self, arguments: Option<&Value>) -> Vec<(String, String)> {
        let Some(Value::Object(map)) = arguments else {
            return Vec::new();
        };
        self.log
            .iter()
            .filter_map(|name| {
                let value = map.get(name)?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some((name.clone(), text.chars().take(256).collect()))
            })
            .collect()
    }
}

impl ArgCheck {
    fn check(&self, name: &str, value: &Value) -> Result<(), ArgumentError> {
        if let Some(kind) = self.kind {
            if !kind.fits(value) {
                return Err(ArgumentError::WrongType(name.to_string()));
            }
        }
        if let Some(max) = self.max_length {
            let length = match value {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                _ => 0,
            };
            if length > max {
                return Err(ArgumentError::TooLong(name.to_string()));
            }
        }
        if let Some(allowed) = &self.one_of {
            if !allowed.contains(value) {
                return Err(ArgumentError::NotAllowed(name.to_string()));
            }
        }
        if let Some(pattern) = &self.pattern {
            // A pattern applies to strings: any other value fails it.
            if !value.as_str().is_some_and(|s| pattern.is_match(s)) {
                return Err(ArgumentError::Pattern(name.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: Option<ArgType>) -> ArgCheck {
        ArgCheck {
            kind,
            max_length: None,
            one_of: None,
            pattern: None,
            required: false,
        }
    }

    fn policy() -> ArgumentPolicy {
        ArgumentPolicy {
            max_bytes: 128,
            checks: vec![
                (
                    "path".into(),
                    ArgCheck {
                        max_length: Some(16),
                        pattern: Some(Regex::new("^(?:/srv/[a-z/]+)$").unwrap()),
                        required: true,
                        ..check(Some(ArgType::String))
                    },
                ),
                (
                    "mode".into(),
                    ArgCheck {
                        one_of: Some(vec![json!("r"), json!("w")]),
                        ..check(None)
                    },
                ),
                ("count".into(), check(Some(ArgType::Integer))),
                (
                    "tags".into(),
                    ArgCheck {
                        max_length: Some(2),
                        ..check(Some(ArgType::Array))
                    },
                ),
                ("ratio".into(), check(Some(ArgType::Number))),
                ("dry".into(), check(Some(ArgType::Boolean))),
                ("opts".into(), check(Some(ArgType::Object))),
            ],
            only_listed: true,
            log: vec!["path".into(), "count".into(), "secret".into()],
        }
    }

    #[test]
    fn each_check() {
        let p = policy();
        use ArgumentError::*;
        let cases = [
            (json!({"path": "/srv/a"}), Ok(())),
            (
                json!({"path": "/srv/a", "mode": "r", "count": 3, "tags": ["x"], "ratio": 0.5, "dry": true, "opts": {}}),
                Ok(()),
            ),
            (json!({}), Err(Missing("path".into()))),
            (json!({"path": 5}), Err(WrongType("path".into()))),
            (
                json!({"path": "/srv/abcdefghijklmnop"}),
                Err(TooLong("path".into())),
            ),
            (json!({"path": "/etc/passwd"}), Err(Pattern("path".into()))),
            (
                json!({"path": "/srv/a", "mode": "x"}),
                Err(NotAllowed("mode".into())),
            ),
            (
                json!({"path": "/srv/a", "count": 1.5}),
                Err(WrongType("count".into())),
            ),
            (
                json!({"path": "/srv/a", "tags": [1, 2, 3]}),
                Err(TooLong("tags".into())),
            ),
            (
                json!({"path": "/srv/a", "ratio": "1"}),
                Err(WrongType("ratio".into())),
            ),
            (
                json!({"path": "/srv/a", "dry": 0}),
                Err(WrongType("dry".into())),
            ),
            (
                json!({"path": "/srv/a", "opts": []}),
                Err(WrongType("opts".into())),
            ),
            (
                json!({"path": "/srv/a", "cmd": "rm"}),
                Err(Unlisted("cmd".into())),
            ),
            (
                json!({"path": "/srv/a", "mode": "r", "x": "y".repeat(128)}),
                Err(TooLarge(128)),
            ),
            (json!(["/srv/a"]), Err(NotObject)),
        ];
        for (args, want) in cases {
            assert_eq!(p.check(Some(&args)), want, "{args}");
        }
        assert_eq!(p.check(None), Err(Missing("path".into())));
        let open = ArgumentPolicy {
            checks: vec![],
            only_listed: false,
            ..policy()
        };
        assert_eq!(open.check(None), Ok(()));
        assert_eq!(open.check(Some(&json!({"anything": 1}))), Ok(()));
    }

    #[test]
    fn sizes_count_the_json_text() {
        let v = json!({"a": "bcd"});
        assert!(json_size_within(&v, 11));
        assert!(!json_size_within(&v, 10));
    }

    #[test]
    fn only_listed_arguments_are_logged() {
        let p = policy();
        let logged = p.logged(Some(
            &json!({"path": "/srv/x", "count": 2, "token": "s3cret"}),
        ));
        assert_eq!(
            logged,
            [
                ("path".to_string(), "/srv/x".to_string()),
                ("count".into(), "2".into())
            ]
        );
        let long = p.logged(Some(&json!({"path": "x".repeat(300)})));
        assert_eq!(long[0].1.len(), 256);
    }
}
