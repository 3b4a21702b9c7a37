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
    /// A DPoP-bound token (`cnf.jkt`) came with the `Bearer` scheme.
    DpopBoundAsBearer,
    /// The provider requires bound tokens and this one has no `cnf` binding (or came with the `DPoP` scheme without `cnf.jkt`).
    NotSenderConstrained,
    /// A certificate-bound token came over a connection without a client certificate.
    MtlsCertificateMissing,
    /// `cnf.x5t#S256` is not the SHA-256 of the connection's client certificate.
    MtlsCertificateMismatch,
    /// No `DPoP` header with a DPoP-bound token.
    DpopProofMissing,
    /// Several `DPoP` headers, or one that is not a compact JWS with JSON header and claims.
    DpopProofMalformed(&'static str),
    /// The proof's `typ` is not `dpop+jwt`.
    DpopProofType,
    /// The proof's `alg` is not one of the provider's DPoP algorithms (or has `crit`).
    DpopProofAlgorithm,
    /// The proof's `jwk` is absent, holds private key material, or is no usable public key for its `alg`.
    DpopProofKey,
    /// The proof's signature does not verify with its own `jwk`.
    DpopProofSignature,
    /// `htm` is not the request's method.
    DpopProofMethod,
    /// `htu` is not the request's URL (after normalization).
    DpopProofUrl,
    /// `iat` is missing or outside the accepted window.
    DpopProofTime,
    /// `ath` is not the hash of the access token.
    DpopProofTokenHash,
    /// The thumbprint of the proof's `jwk` is not the token's `cnf.jkt`.
    DpopProofKeyMismatch,
    /// A proof with this key and `jti` was accepted before.
    DpopProofReplayed,
    /// The provider requires server nonces and the proof has none, or an old or unknown one.
    DpopNonce,
    /// The replay table is full of live proofs, or shared data failed: the proof cannot be remembered.
    DpopReplayUnavailable,
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
            Reason::DpopBoundAsBearer => "dpop_bound_token_as_bearer",
            Reason::NotSenderConstrained => "token_not_sender_constrained",
            Reason::MtlsCertificateMissing => "mtls_certificate_missing",
            Reason::MtlsCertificateMismatch => "mtls_certificate_mismatch",
            Reason::DpopProofMissing => "dpop_proof_missing",
            Reason::DpopProofMalformed(_) => "dpop_proof_malformed",
            Reason::DpopProofType => "dpop_proof_typ",
            Reason::DpopProofAlgorithm => "dpop_proof_alg",
            Reason::DpopProofKey => "dpop_proof_jwk",
            Reason::DpopProofSignature => "dpop_proof_signature",
            Reason::DpopProofMethod => "dpop_proof_htm",
            Reason::DpopProofUrl => "dpop_proof_htu",
            Reason::DpopProofTime => "dpop_proof_iat",
            Reason::DpopProofTokenHash => "dpop_proof_ath",
            Reason::DpopProofKeyMismatch => "dpop_proof_key_mismatch",
            Reason::DpopProofReplayed => "dpop_proof_replayed",
            Reason::DpopNonce => "use_dpop_nonce",
            Reason::DpopReplayUnavailable => "dpop_replay_unavailable",
        }
    }

    /// Every reason name, for defining the metrics up front.
    pub const NAMES: [&'static str; 40] = [
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
        "dpop_bound_token_as_bearer",
        "token_not_sender_constrained",
        "mtls_certificate_missing",
        "mtls_certificate_mismatch",
        "dpop_proof_missing",
        "dpop_proof_malformed",
        "dpop_proof_typ",
        "dpop_proof_alg",
        "dpop_proof_jwk",
        "dpop_proof_signature",
        "dpop_proof_htm",
        "dpop_proof_htu",
        "dpop_proof_iat",
        "dpop_proof_ath",
        "dpop_proof_key_mismatch",
        "dpop_proof_replayed",
        "use_dpop_nonce",
        "dpop_replay_unavailable",
    ];

    /// The HTTP status a refusal for this reason gets.
    pub fn status(self) -> u16 {
        match self {
            Reason::InsufficientScope | Reason::ClaimMismatch => 403,
            Reason::KeysUnavailable | Reason::DpopReplayUnavailable => 503,
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
            Reason::DpopBoundAsBearer => {
                "token is DPoP-bound: send it with the DPoP scheme and a proof"
            }
            Reason::NotSenderConstrained => {
                "token is not bound to its client as this provider requires"
            }
            Reason::MtlsCertificateMissing => {
                "token is bound to a client certificate the connection did not present"
            }
            Reason::MtlsCertificateMismatch => "token is bound to another client certificate",
            Reason::DpopProofMissing => "no DPoP proof",
            Reason::DpopProofMalformed(what) => what,
            Reason::DpopProofType => "DPoP proof typ is not dpop+jwt",
            Reason::DpopProofAlgorithm => "DPoP proof algorithm is not allowed",
            Reason::DpopProofKey => "DPoP proof key is missing, private or unusable",
            Reason::DpopProofSignature => "DPoP proof signature is invalid",
            Reason::DpopProofMethod => "DPoP proof is for another method",
            Reason::DpopProofUrl => "DPoP proof is for another URL",
            Reason::DpopProofTime => "DPoP proof is too old or from the future",
            Reason::DpopProofTokenHash => "DPoP proof is for another access token",
            Reason::DpopProofKeyMismatch => "DPoP proof key is not the key the token is bound to",
            Reason::DpopProofReplayed => "DPoP proof was already used",
            Reason::DpopNonce => "resource server requires nonce in DPoP proof",
            Reason::DpopReplayUnavailable => "DPoP proofs cannot be checked for replay now",
        }
    }

    /// The RFC 6750 / RFC 9449 `error` of the challenge, `None` for a
    /// missing token or a server-side failure.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Reason::TokenMissing | Reason::KeysUnavailable | Reason::DpopReplayUnavailable => None,
            Reason::InsufficientScope | Reason::ClaimMismatch => Some("insufficient_scope"),
            Reason::DpopNonce => Some("use_dpop_nonce"),
            r if r.is_dpop_proof() => Some("invalid_dpop_proof"),
            _ => Some("invalid_token"),
        }
    }

    /// Whether the failure is the DPoP proof's (RFC 9449 `invalid_dpop_proof`).
    pub fn is_dpop_proof(self) -> bool {
        matches!(
            self,
            Reason::DpopProofMissing
                | Reason::DpopProofMalformed(_)
                | Reason::DpopProofType
                | Reason::DpopProofAlgorithm
                | Reason::DpopProofKey
                | Reason::DpopProofSignature
                | Reason::DpopProofMethod
                | Reason::DpopProofUrl
                | Reason::DpopProofTime
                | Reason::DpopProofTokenHash
                | Reason::DpopProofKeyMismatch
                | Reason::DpopProofReplayed
        )
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
            Reason::DpopBoundAsBearer,
            Reason::NotSenderConstrained,
            Reason::MtlsCertificateMissing,
            Reason::MtlsCertificateMismatch,
            Reason::DpopProofMissing,
            Reason::DpopProofMalformed("x"),
            Reason::DpopProofType,
            Reason::DpopProofAlgorithm,
            Reason::DpopProofKey,
            Reason::DpopProofSignature,
            Reason::DpopProofMethod,
            Reason::DpopProofUrl,
            Reason::DpopProofTime,
            Reason::DpopProofTokenHash,
            Reason::DpopProofKeyMismatch,
            Reason::DpopProofReplayed,
            Reason::DpopNonce,
            Reason::DpopReplayUnavailable,
        ];
        let names: Vec<&str> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names, Reason::NAMES.to_vec());
        assert_eq!(Reason::InsufficientScope.status(), 403);
        assert_eq!(Reason::KeysUnavailable.status(), 503);
        assert_eq!(Reason::Expired.status(), 401);
    }
}
