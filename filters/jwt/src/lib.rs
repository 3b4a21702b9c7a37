//! # palisade-jwt
//!
//! Bearer-token (JWT / OIDC access token) validation for Envoy and Istio as
//! a proxy-wasm filter: what Envoy's native `jwt_authn` does, plus OIDC
//! discovery, refetch on an unknown `kid`, 503 when keys are unreachable,
//! scope and claim checks per route, and RFC 6750 answers.
//!
//! The decision is a pure core that runs natively under `cargo test`:
//!
//! - [`jws`]: compact JWS parsing with bounds; `alg: none`, `crit` and key
//!   hints in the token are refused or ignored;
//! - [`jwk`]: JWK sets into verification keys, with the key checks;
//! - [`verify`]: key selection by `alg`/`kid` and signature checking, portable
//!   (pure-Rust crates) or through the host's `verify_signature`;
//! - [`claims`]: `exp`/`nbf`/`iat` with skew, `iss`, `aud`, `sub`, `typ`, and the identity;
//! - [`source`]: where tokens come from (header, query, cookie);
//! - [`config`]: the configuration, compiled once;
//! - [`decide`]: rule, requirement, scopes and claims: the [`decide::Decision`];
//! - [`challenge`]: the 401/403/503 reply with `WWW-Authenticate` and a problem body;
//! - [`sender`]: sender-constrained tokens (RFC 8705 certificate-bound,
//!   RFC 9449 DPoP), with [`dpop`] (proofs), [`htu`] (URL normalization),
//!   [`replay`] (proofs accepted once, across workers) and [`nonce`]
//!   (server nonces);
//! - [`cache`]: verified tokens, per worker;
//! - [`remote`]: when remote keys are fetched, and the shared-data records that share them;
//! - [`keys`]: each worker's remote key sets, kept in step through shared data;
//! - [`stage`]: the policy as a stage of the engine (`docs/architecture.md`).
//!
//! ```
//! use palisade_jwt::config::Config;
//! let config = Config::from_json(br#"{"providers": {"corp": {
//!     "issuer": "https://idp.example.com",
//!     "audiences": ["api"],
//!     "remote_jwks": {"cluster": "idp", "path": "/jwks"}}}}"#).unwrap();
//! assert_eq!(config.providers[0].name, "corp");
//! ```
//!
//! The engine stage ([`stage::JwtStage`]) gathers the request, calls
//! [`decide::decide`] and applies the result.

pub mod cache;
pub mod challenge;
pub mod claims;
pub mod config;
pub mod decide;
pub mod dpop;
pub mod error;
pub mod htu;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod nonce;
pub mod remote;
pub mod replay;
pub mod sender;
pub mod source;
pub mod stage;
pub mod verify;

pub use stage::{JwtModule, JwtStage};

#[cfg(test)]
mod corpus_tests;
