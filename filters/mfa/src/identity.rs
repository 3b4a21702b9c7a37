//! The authentication facts of a verified identity: `acr`, `amr` and
//! `auth_time`, as the JWT stage verified them (OpenID Connect Core,
//! section 2). The JWT stage keeps a claim only when it has the type OIDC
//! defines, so a claim here is either present and well formed or missing.

use palisade_shared::contract::Identity;

/// What the step-up policies look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFacts<'a> {
    /// `acr` (an empty string counts as missing).
    pub acr: Option<&'a str>,
    /// `amr`.
    pub amr: &'a [String],
    /// `auth_time`, seconds since the epoch.
    pub auth_time: Option<i64>,
}

/// Why an identity cannot be read at all: filter state `palisade.identity`
/// written by something that does not follow the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

impl<'a> AuthFacts<'a> {
    /// The facts of a verified identity.
    pub fn from_identity(identity: &'a Identity) -> Self {
        AuthFacts {
            acr: identity.acr.as_deref().filter(|a| !a.is_empty()),
            amr: &identity.amr,
            auth_time: identity.auth_time.filter(|t| *t >= 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_an_identity() {
        let id = Identity {
            acr: Some("mfa".into()),
            amr: vec!["pwd".into(), "otp".into()],
            auth_time: Some(1_700_000_000),
            ..Identity::default()
        };
        let f = AuthFacts::from_identity(&id);
        assert_eq!(f.acr, Some("mfa"));
        assert_eq!(f.amr, ["pwd", "otp"]);
        assert_eq!(f.auth_time, Some(1_700_000_000));
    }

    #[test]
    fn empty_acr_and_negative_auth_time_count_as_missing() {
        let id = Identity {
            acr: Some(String::new()),
            auth_time: Some(-1),
            ..Identity::default()
        };
        let f = AuthFacts::from_identity(&id);
        assert_eq!((f.acr, f.auth_time), (None, None));
        assert!(f.amr.is_empty());
    }
}
