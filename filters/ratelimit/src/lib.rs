//! # palisade-ratelimit
//!
//! Token-bucket rate limiting for Envoy as a proxy-wasm filter, exact across
//! worker threads and in bounded memory.
//!
//! Envoy runs one wasm VM per worker thread. The buckets therefore live in
//! proxy-wasm shared data, the one store every worker sees, and are updated
//! with compare-and-swap: a limit of 100 holds for the whole Envoy process,
//! not 100 per worker. Shared-data keys cannot be deleted, so each rule owns a
//! fixed table of slots created when the configuration loads, and idle
//! (refilled) slots are reused: memory stays within the configured bound
//! whatever the number of distinct clients.
//!
//! The crate is a pure core plus a thin adapter:
//!
//! - [`config`]: the JSON configuration, validated and compiled once;
//! - [`bucket`]: token-bucket arithmetic in integers (no drift);
//! - [`table`]: the slot table, one CAS-updated shared-data value per set;
//! - [`key`]: which bucket a request spends from (client address, header,
//!   identity claim, ...);
//! - [`limiter`]: the decision over every matching rule (check all, then
//!   spend, giving back on a lost race), at the tick clock and, for a
//!   refusal, again at the clock's time;
//! - [`optimistic`]: a bucket update as one write with a presumed CAS token
//!   from the worker's last write, instead of a read and a write;
//! - [`response`]: RateLimit header fields, the refusal, the filter state;
//! - [`settle`]: a cost known only after the response (LLM tokens) settled
//!   against the provisional one the request was decided with;
//! - [`clock`]: the host's monotonic clock as one time line for every
//!   worker (stage side: the core receives `now_ns` as an argument);
//! - [`stage`]: the policy as a stage of the engine (`docs/architecture.md`).
//!
//! ```
//! use palisade_ratelimit::{config::Config, key::RequestFacts, limiter::decide};
//! use palisade_shared::store::MemoryStore;
//!
//! let config = Config::from_json(br#"{"rules": [{"name": "all",
//!     "token_bucket": {"max_tokens": 2, "fill_interval": "1s"}}]}"#).unwrap();
//! let store = MemoryStore::new();
//! let request = RequestFacts::default();
//! let now_ns = 0;
//! assert!(decide(&config, &store, &request, now_ns).refusal.is_none());
//! assert!(decide(&config, &store, &request, now_ns).refusal.is_none());
//! assert!(decide(&config, &store, &request, now_ns).refusal.is_some());
//! // A second later one token is back.
//! assert!(decide(&config, &store, &request, 1_000_000_000).refusal.is_none());
//! ```

pub mod bucket;
pub mod clock;
pub mod config;
pub mod global;
pub mod hash_key;
pub mod key;
pub mod limiter;
pub mod optimistic;
pub mod response;
pub mod rls;
pub mod settle;
pub mod share;
pub mod stage;
pub mod table;

pub use stage::{RateLimitModule, RateLimitStage};
