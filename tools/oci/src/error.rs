//! The one error type of the tool: a message that says what failed and on
//! which file, registry or filter.

use std::fmt;

/// What went wrong, in words meant for the person running `make oci`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// Adds what was being done when `self` happened, in front.
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error::new(format!("{what}: {}", self.message))
    }

    pub(crate) fn io(err: std::io::Error) -> Error {
        Error::new(err.to_string())
    }

    pub(crate) fn json(err: serde_json::Error) -> Error {
        Error::new(err.to_string())
    }

    pub(crate) fn yaml(err: serde_norway::Error) -> Error {
        Error::new(err.to_string())
    }

    #[cfg(not(target_family = "wasm"))]
    pub(crate) fn registry(err: oci_client::errors::OciDistributionError) -> Error {
        Error::new(err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
