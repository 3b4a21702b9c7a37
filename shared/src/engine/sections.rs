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
//! let err = Sections::parse(br#"{"waf": {}, "waf": {"paranoia_level": 4}}"#, &["waf"]).unwrap_err();
//! assert!(err.message.contains("given twice"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
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
        let entries: Entries<'a> = serde_json::from_slice(document).map_err(|e| {
            ConfigError::invalid(
                ".",
                format!("{e}: expected an object with one section per stage"),
            )
        })?;
        let mut sections = BTreeMap::new();
        for (name, value) in entries.0 {
            if sections.insert(name.clone(), value).is_some() {
                return Err(ConfigError::invalid(
                    name.clone(),
                    format!("section `{name}` is given twice"),
                ));
            }
        }
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

/// An object's members in document order, duplicates kept (a map would
/// keep only the last).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
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
