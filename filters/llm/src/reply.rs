//! Refusals in the provider's own error format, so an SDK client raises its
//! usual error (`openai.RateLimitError`, `anthropic.PermissionDeniedError`)
//! with the message in it.
//!
//! ```text
//! OpenAI:    {"error": {"message": "...", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}
//! Anthropic: {"type": "error", "error": {"type": "rate_limit_error", "message": "..."}}
//! ```

use palisade_shared::engine::Reply;
use serde_json::json;

use crate::api::Provider;

/// What kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the body cannot be read, or asks for more than allowed.
    InvalidRequest,
    /// 413: the body is larger than the stage reads.
    TooLarge,
    /// 403: the identity may not use the model.
    Permission,
    /// 429 (or the budgets' status): the budget is spent.
    RateLimited,
}

impl ErrorKind {
    fn types(self) -> (&'static str, &'static str) {
        // (OpenAI's `type`, Anthropic's `type`)
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request_error"),
            ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
            ErrorKind::Permission => ("permission_error", "permission_error"),
            ErrorKind::RateLimited => ("tokens", "rate_limit_error"),
        }
    }
}

/// The error body of `provider`; `code` is OpenAI's machine-readable code.
pub fn error_body(provider: Provider, kind: ErrorKind, code: &str, message: &str) -> Vec<u8> {
    let (openai, anthropic) = kind.types();
    let body = match provider {
        Provider::OpenAi => json!({
            "error": { "message": message, "type": openai, "param": null, "code": code }
        }),
        Provider::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic, "message": message }
        }),
    };
    body.to_string().into_bytes()
}

/// A refusal reply: `status`, the error body, and `headers` before the
/// content type.
pub fn reply(
    provider: Provider,
    status: u16,
    kind: ErrorKind,
    code: &str,
    message: &str,
    mut headers: Vec<(String, String)>,
) -> Reply {
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    headers.push(("content-type".into(), "application/json".into()));
    Reply {
        status,
        headers,
        body: error_body(provider, kind, code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_gets_its_format() {
        let body = error_body(
            Provider::OpenAi,
            ErrorKind::RateLimited,
            "rate_limit_exceeded",
            "out of \"tokens\"",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "tokens");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["message"], "out of \"tokens\"");
        assert!(v["error"]["param"].is_null());
        let body = error_body(Provider::Anthropic, ErrorKind::Permission, "x", "no");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "permission_error", "message": "no"}})
        );
        let r = reply(
            Provider::Anthropic,
            413,
            ErrorKind::TooLarge,
            "",
            "big",
            vec![
                ("content-type".into(), "application/problem+json".into()),
                ("retry-after".into(), "3".into()),
            ],
        );
        assert_eq!(
            r.headers,
            [
                ("retry-after".to_string(), "3".to_string()),
                ("content-type".into(), "application/json".into())
            ]
        );
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("request_too_large"));
    }
}
