//! # palisade-llm
//!
//! An AI gateway policy for Envoy: who may call which LLM, with how many
//! output tokens, and how many tokens a team may spend, for OpenAI-compatible
//! APIs (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/responses`) and Anthropic's (`/v1/messages`).
//!
//! Counting requests is the wrong unit for an LLM: one call costs ten tokens
//! or a hundred thousand. The budgets here are the rate limiter's token
//! buckets (`palisade-ratelimit`: exact across Envoy's workers through CAS on
//! shared data, bounded memory, the draft-10 `RateLimit` fields), spent in
//! LLM tokens: a call is admitted with a provisional cost (its output-token
//! limit, reserved, or one token) and settled when its response ends, from
//! the `usage` the provider reported.
//!
//! - [`config`]: the JSON configuration, validated and compiled once;
//! - [`api`]: which calls are LLM calls, what their body asks for, and the
//!   body rewritten to an output-token cap;
//! - [`json`]: top-level members of a request body, and an incremental
//!   scanner for `usage` in a response split anywhere;
//! - [`usage`]: the tokens a response reports, from JSON or a stream of
//!   server-sent events;
//! - [`policy`]: may this identity use this model, and with what limit;
//! - [`budget`]: the token budgets over the rate limiter's buckets;
//! - [`reply`]: refusals in the provider's own error format;
//! - [`stage`]: the policy as a stage of the engine (`docs/architecture.md`).

pub mod api;
pub mod budget;
pub mod config;
pub mod json;
pub mod policy;
pub mod reply;
pub mod stage;
pub mod usage;

pub use stage::{LlmModule, LlmStage};
