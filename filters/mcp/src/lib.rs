//! # palisade-mcp
//!
//! Governs Model Context Protocol servers behind Envoy (the Streamable HTTP
//! transport: one endpoint, `POST` for JSON-RPC messages, `GET` for the
//! server's event stream, `DELETE` to end a session):
//!
//! - **hygiene**: one JSON-RPC 2.0 message per POST (batches only where the
//!   2025-03-26 revision is allowed), each field checked, size and nesting
//!   bounded, repeated keys refused, `Accept`, `MCP-Protocol-Version` and
//!   `Mcp-Session-Id` checked ([`decide`], [`message`]);
//! - **Origin**: a present `Origin` must be allowed (DNS rebinding);
//! - **policy**: rules by method, tool, resource URI and prompt: allow,
//!   deny, or require scopes and claim values of the identity the JWT stage
//!   verified ([`access`], [`resource`], [`template`]); tool arguments
//!   bounded and type-checked ([`arguments`]);
//! - **listings**: `tools/list`, `resources/list` and `prompts/list`
//!   answers (JSON or server-sent events) show only what the caller may use
//!   ([`listing`], [`sse`]);
//! - it publishes `palisade.mcp` (method, tool, resource, prompt, id,
//!   decision) for the rate limiter and the audit record.
//!
//! Refusals are JSON-RPC errors with the request's id ([`reply`]).

pub mod access;
pub mod arguments;
pub mod config;
pub mod decide;
pub mod json;
pub mod listing;
pub mod message;
pub mod reply;
pub mod resource;
pub mod sse;
mod stage;
pub mod template;

pub use stage::{McpModule, McpStage};
