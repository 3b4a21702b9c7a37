//! Loading a filter's JSON configuration.
//!
//! Every filter declares its configuration as serde types with
//! `#[serde(deny_unknown_fields)]` and loads it with [`parse_json`], so a typo
//! or a wrong type is rejected when the module loads, with a message that says
//! where (`rules[2].path.prefix`) and what was expected.

use std::fmt;

use serde::de::DeserializeOwned;

/// A configuration that cannot be used. The module refuses to start with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the JSON document the problem is, such as `rules[0].path`;
    /// `.` for the document itself.
    pub path: String,
    /// What is wrong and, where it helps, what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error found while validating an already parsed configuration.
    /// An empty `path` (a member whose name is the empty string, at the
    /// top) is reported as the document, `.`, so every error names a place.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        ConfigError {
            path: if path.is_empty() {
                ".".to_string()
            } else {
                path
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.path, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Parses a plugin configuration. An absent or blank configuration is read as
/// `{}`, so a filter whose fields all have defaults runs without one.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::invalid(path, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| ConfigError::invalid(".", e.to_string()))?;
    Ok(parsed)
}

/// Whether `name` can name a rule or policy: letters, digits, `_` and `-`,
/// not empty. Such names become parts of metric names.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Joins a parent field path and a child, for validation errors in nested
/// structures: `field_path("rules[1]", "match.path")`.
pub fn field_path(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn names_are_letters_digits_underscores_and_dashes() {
        for good in ["a", "per_user", "gpt-4o", "A9"] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "a b", "a.b", "é", "a/b", "a:b"] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        #[serde(default)]
        #[allow(dead_code)]
        name: String,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        rules: Vec<Rule>,
        limit: u32,
    }

    #[test]
    fn blank_config_reads_as_empty_object() {
        let doc: Doc = parse_json(b"  \n").unwrap();
        assert_eq!(doc.limit, 0);
        let doc: Doc = parse_json(b"").unwrap();
        assert!(doc.rules.is_empty());
    }

    #[test]
    fn errors_name_the_field_path() {
        let err = parse_json::<Doc>(br#"{"rules":[{"name":"a"},{"nmae":"b"}]}"#).unwrap_err();
        assert_eq!(err.path, "rules[1].nmae");
        assert!(err.message.contains("unknown field `nmae`"), "{err}");

        let err = parse_json::<Doc>(br#"{"limit":"ten"}"#).unwrap_err();
        assert_eq!(err.path, "limit");
        assert!(err.message.contains("expected u32"), "{err}");
    }

    #[test]
    fn a_member_named_by_the_empty_string_is_placed_in_the_document() {
        // Found by the `config` fuzz target: the error named no place.
        let err = parse_json::<Doc>(br#"{"limit": 1, "": 2}"#).unwrap_err();
        assert_eq!(err.path, ".");
        assert!(err.message.contains("unknown field ``"), "{err}");
        let err = parse_json::<Doc>(br#"{"rules": [{"": 2}]}"#).unwrap_err();
        assert!(err.path.starts_with("rules[0]"), "{err}");
        assert_eq!(ConfigError::invalid("", "x").path, ".");
    }

    #[test]
    fn trailing_garbage_and_bad_json_are_rejected() {
        assert!(parse_json::<Doc>(br#"{"limit":1} x"#).is_err());
        assert!(parse_json::<Doc>(br#"{"limit":"#).is_err());
        assert!(parse_json::<Doc>(b"\xff\xfe").is_err());
    }

    #[test]
    fn field_paths_join() {
        assert_eq!(field_path("", "a"), "a");
        assert_eq!(field_path("rules[1]", "match.path"), "rules[1].match.path");
        assert_eq!(field_path("rules", "[2]"), "rules[2]");
    }
}
