//! The bundle's configuration: one section per stage, each exactly the
//! standalone module's configuration.
//!
//! ```
//! use palisade_shared::engine::sections::Sections;
//! let doc = br#"{"waf": {"paranoia_level": 2}, "audit": {}}"#;
//! let sections = Sections::parse(doc, &["waf", "jwt", "audit"]).unwrap();
//! assert_eq!(sections.get("waf"), Some(&br#"{"paranoia_level": 2}"#[..]));
//! assert_eq!(sections.get("jwt"), None);
//! let err = Sections::parse(br#"{"wafs": {}}"#, &["waf"]).unwrap_err();
//! assert_eq!(err.path, "wafs");
//! ```

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::config::{field_path, ConfigError};

/// The sections of a configuration document, by name.
#[derive(Debug)]
pub struct Sections<'a> {
    sections: BTreeMap<String, &'a RawValue>,
}

impl<'a> Sections<'a> {
    /// Splits `document` into its sections; a name outside `known` is
    /// refused, naming it and the known ones. A section must be an object.
    pub fn parse(document: &'a [u8], known: &[&str]) -> Result<Self, ConfigError> {
        let sections: BTreeMap<String, &'a RawValue> =
            serde_json::from_slice(document).map_err(|e| {
                ConfigError::invalid(
                    ".",
                    format!("{e}: expected an object with one section per stage"),
                )
            })?;
        for (name, value) in &sections {
            if !known.contains(&name.as_str()) {
                return Err(ConfigError::invalid(
                    name.clone(),
                    format!(
                        "unknown section `{name}`, expected one of: {}",
                        known.join(", ")
                    ),
                ));
            }
            if !value.get().trim_start().starts_with('{') {
                return Err(ConfigError::invalid(
                    name.clone(),
                    "a section is the stage's configuration: a JSON object",
                ));
            }
        }
        Ok(Sections { sections })
    }

    /// A section's JSON, `None` when absent (that stage is off).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.sections.get(name).map(|raw| raw.get().as_bytes())
    }

    /// The names present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }
}

/// A stage's configuration error, with its path under the section name:
/// `waf.rules[2].path`.
pub fn within(section: &str, error: ConfigError) -> ConfigError {
    ConfigError {
        path: field_path(section, if error.path == "." { "" } else { &error.path })
            .trim_end_matches('.')
            .to_string(),
        message: error.message,
    }
}
