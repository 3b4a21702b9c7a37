//! Why a request was refused: one machine-readable reason per way to fail.

/// Why a token or request failed. Each variant maps to one metric
/// (`palisade.jwt.denied.<name>`), one HTTP status and one RFC 6750 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token where the route's providers look for one.
    TokenMissing,
    /// The token is longer than `max_token_bytes`.
    TokenTooLarge,
    /// Not a compact JWS, bad base64url, or a header/payload that is not a JSON object.
    Malformed(&'static str),
    /// `alg` is `none`, unknown, or not allowed for the provider.
    AlgorithmNotAllowed,
    /// The header carries `crit`, which this verifier never understands.
    CritUnsupported,
    /// No configured key has the token's `kid` (and fits its `alg`).
    UnknownKid,
    /// Several keys have the token's `kid`: which one signed is ambiguous.
    AmbiguousKid,
    /// No configured key fits the token's `alg` at all.
    NoMatchingKey,
    /// The signature does not verify.
    SignatureInvalid,
    /// `exp` is absent although required.
    ExpMissing,
    /// `exp` (plus skew) has passed.
    Expired,
    /// `nbf` (minus skew) is still in the future.
    NotYetValid,
    /// `iat` is in the future (beyond skew).
    IssuedInFuture,
    /// The token lives longer than `max_lifetime_s`.
    LifetimeTooLong,
    /// A time claim is not a number.
    BadTimeClaim,
    /// `iss` is not the provider's issuer.
    IssuerMismatch,
    /// No `aud` is one of the provider's audiences.
    AudienceMismatch,
    /// `sub` does not match the provider's subject rule.
    SubjectMismatch,
    /// `typ` is not one of the accepted types.
    TypeNotAccepted,
    /// The token is valid but lacks the route's scopes.
    InsufficientScope,
    /// The token is valid but a required claim has the wrong value.
    ClaimMismatch,
    /// The provider's keys could not be loaded.
    KeysUnavailable,
}

impl Reason {
    /// The metric and log name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenTooLarge => "token_too_large",
            Reason::Malformed(_) => "token_malformed",
            Reason::AlgorithmNotAllowed => "alg_not_allowed",
            Reason::CritUnsupported => "crit_unsupported",
            Reason::UnknownKid => "unknown_kid",
            Reason::AmbiguousKid => "ambiguous_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::ExpMissing => "exp_missing",
            Reason::Expired => "token_expired",
            Reason::NotYetValid => "token_not_yet_valid",
            Reason::IssuedInFuture => "iat_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::BadTimeClaim => "bad_time_claim",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::SubjectMismatch => "subject_mismatch",
            Reason::TypeNotAccepted => "typ_not_accepted",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ClaimMismatch => "claim_mismatch",
            Reason::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Every reason name, for defining the metrics up front.
    pub const NAMES: [&'static str; 22] = [
        "token_missing",
        "token_too_large",
        "token_malformed",
        "alg_not_allowed",
        "crit_unsupported",
        "unknown_kid",
        "ambiguous_kid",
        "no_matching_key",
        "signature_invalid",
        "exp_missing",
        "token_expired",
        "token_not_yet_valid",
        "iat_in_future",
        "lifetime_too_long",
        "bad_time_claim",
        "issuer_mismatch",
        "audience_mismatch",
        "subject_mismatch",
        "typ_not_accepted",
        "insufficient_scope",
        "claim_mismatch",
        "keys_unavailable",
    ];

    /// The HTTP status a refusal for this reason gets.
    pub fn status(self) -> u16 {
        match self {
            Reason::InsufficientScope | Reason::ClaimMismatch => 403,
            Reason::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// A human description for `error_description` and the problem `detail`.
    /// Never contains any part of the token.
    pub fn description(self) -> &'static str {
        match self {
            Reason::TokenMissing => "no bearer token",
            Reason::TokenTooLarge => "token is too large",
            Reason::Malformed(what) => what,
            Reason::AlgorithmNotAllowed => "token algorithm is not allowed",
            Reason::CritUnsupported => "token has critical header parameters",
            Reason::UnknownKid => "token key id is unknown",
            Reason::AmbiguousKid => "token key id matches several keys",
            Reason::NoMatchingKey => "no key fits the token algorithm",
            Reason::SignatureInvalid => "token signature is invalid",
            Reason::ExpMissing => "token has no expiry",
            Reason::Expired => "token is expired",
            Reason::NotYetValid => "token is not yet valid",
            Reason::IssuedInFuture => "token is issued in the future",
            Reason::LifetimeTooLong => "token lifetime is too long",
            Reason::BadTimeClaim => "token time claim is not a number",
            Reason::IssuerMismatch => "token issuer is not accepted",
            Reason::AudienceMismatch => "token audience is not accepted",
            Reason::SubjectMismatch => "token subject is not accepted",
            Reason::TypeNotAccepted => "token type is not accepted",
            Reason::InsufficientScope => "token lacks the required scope",
            Reason::ClaimMismatch => "token lacks a required claim value",
            Reason::KeysUnavailable => "signing keys are unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_once() {
        let all = [
            Reason::TokenMissing,
            Reason::TokenTooLarge,
            Reason::Malformed("x"),
            Reason::AlgorithmNotAllowed,
            Reason::CritUnsupported,
            Reason::UnknownKid,
            Reason::AmbiguousKid,
            Reason::NoMatchingKey,
            Reason::SignatureInvalid,
            Reason::ExpMissing,
            Reason::Expired,
            Reason::NotYetValid,
            Reason::IssuedInFuture,
            Reason::LifetimeTooLong,
            Reason::BadTimeClaim,
            Reason::IssuerMismatch,
            Reason::AudienceMismatch,
            Reason::SubjectMismatch,
            Reason::TypeNotAccepted,
            Reason::InsufficientScope,
            Reason::ClaimMismatch,
            Reason::KeysUnavailable,
        ];
        let names: Vec<&str> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names, Reason::NAMES.to_vec());
        assert_eq!(Reason::InsufficientScope.status(), 403);
        assert_eq!(Reason::KeysUnavailable.status(), 503);
        assert_eq!(Reason::Expired.status(), 401);
    }
}
