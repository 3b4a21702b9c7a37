//! # palisade-e2e
//!
//! End-to-end tests run the built `.wasm` modules in a real Envoy on loopback,
//! in front of a real upstream, and check what a client really gets back.
//!
//! - [`EchoUpstream`]: an in-process HTTP/1.1 server that answers every request
//!   with the request it received, as JSON;
//! - [`EnvoyConfig`]: builds an Envoy config (listener, filter chain, routes,
//!   clusters) on free ports; [`EnvoyConfig::start`] runs Envoy and waits until
//!   its admin `/ready` says LIVE;
//! - [`Envoy`]: send requests, read stats and the access log; dropping it kills
//!   Envoy, and prints Envoy's own log when the test is failing;
//! - [`Request`] / [`Response`]: a small HTTP/1.1 client that sends exactly the
//!   bytes a test asks for;
//! - [`LlmUpstream`]: a test double of a paid LLM provider (OpenAI-compatible
//!   and Anthropic), answering realistic JSON and event streams with usage;
//! - [`rls`]: Redis and the rate-limit service (`palisade-rls`) of the
//!   global rate-limit tests;
//! - [`idp::FakeIdp`]: a discovery document and JWK set on loopback that a
//!   test can rotate and make fail (503, dropped connections, no answer,
//!   garbage);
//! - [`soak`]: the soak under hostile load (`make soak`);
//! - [`oidc::OidcProvider`]: the npm `oidc-provider` on loopback, over HTTP
//!   or HTTPS (certificate-bound and DPoP-bound tokens);
//! - [`OtlpReceiver`]: an OTLP/gRPC receiver on the official OpenTelemetry
//!   protobuf definitions, recording the log records and spans Envoy sends;
//! - [`audit_schemas`]: checkers of audit records against the official ECS and
//!   OCSF definitions, which the harness runs on every audit record.
//!
//! Each test describes its chain of policies once; `PALISADE_E2E_DEPLOYMENT`
//! says whether it runs as separate modules (default) or in the bundle
//! ([`deployment`]), so every policy test runs against both.
//!
//! Modules come from `$PALISADE_DIST` (set by the Makefile), else `<repo>/dist`;
//! Envoy from `$ENVOY_BIN`, else `<repo>/.tools/bin/envoy`, else `envoy` on PATH.

pub mod audit_schemas;
pub mod deployment;
mod echo;
mod envoy;
mod http;
pub mod idp;
mod llm_upstream;
pub mod oidc;
mod otlp;
mod paths;
mod process;
mod release;
pub mod rls;
pub mod soak;
pub mod tls;
pub mod tokens;

pub use deployment::{config_error, config_field, deployment, Deployment};
pub use echo::EchoUpstream;
pub use envoy::{run_dir, wasm_filter_json, Envoy, EnvoyConfig, AUDIT_LOG_FORMAT};
pub use http::{send, send_raw, Request, Response};
pub use llm_upstream::{LlmCall, LlmUpstream, DEFAULT_REPLY_TOKENS};
pub use otlp::OtlpReceiver;
pub use paths::{bundle_path, dist_dir, envoy_bin, module_path, repo_root, shared_corpora};
pub use process::{rss_bytes, wait_until_ready};
pub use release::{envoy_gives_peer_certificate, envoy_release, no_peer_certificate};

/// Locks `m`, also after a thread panicked holding it: the tests' shared
/// state stays readable so the test can report what happened.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
