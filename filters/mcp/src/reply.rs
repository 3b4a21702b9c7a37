//! What a refused request gets back: a JSON-RPC error (one per message of a
//! refused batch) with the message's id, the HTTP status that fits, and for
//! a missing or insufficient token the same Bearer challenge the JWT filter
//! gives, naming the scope the tool needs and the RFC 9728 metadata URL.

use palisade_shared::engine::Reply;
use serde_json::{json, Value};

/// `-32003`: the policy forbids it (HTTP 403).
pub const FORBIDDEN: i64 = -32003;
/// `-32004`: a verified identity is needed (HTTP 401).
pub const UNAUTHENTICATED: i64 = -32004;
/// `-32020`: `Mcp-Method` or `Mcp-Name` says something else than the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// `-32022`: the protocol version is not one this endpoint accepts.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The challenge a refusal carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Challenge {
    /// None.
    #[default]
    None,
    /// No verified identity: `Bearer realm=..` (with the scopes needed).
    Unauthenticated {
        /// The scopes the rule needs, space separated.
        scope: Option<String>,
    },
    /// The identity lacks these scopes (space separated).
    InsufficientScope(String),
}

/// One JSON-RPC error object of a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The message's id (`null` when it had none).
    pub id: Value,
    /// The error code.
    pub code: i64,
    /// What is wrong.
    pub message: String,
    /// Extra data (`reason`, and what helps the client).
    pub data: Value,
}

impl RpcError {
    fn to_json(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message, "data": self.data},
        })
    }
}

/// Where challenges point.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeSettings<'a> {
    /// The realm.
    pub realm: &'a str,
    /// The RFC 9728 metadata URL.
    pub resource_metadata: Option<&'a str>,
}

/// The `WWW-Authenticate` value of a challenge.
pub fn www_authenticate(settings: ChallengeSettings<'_>, challenge: &Challenge) -> Option<String> {
    let mut value = format!("Bearer realm=\"{}\"", settings.realm);
    match challenge {
        Challenge::None => return None,
        Challenge::Unauthenticated { scope } => {
            if let Some(scope) = scope {
                value.push_str(&format!(", scope=\"{scope}\""));
            }
        }
        Challenge::InsufficientScope(scope) => value.push_str(&format!(
            ", error=\"insufficient_scope\", error_description=\"the token lacks a scope this call needs\", scope=\"{scope}\""
        )),
    }
    if let Some(url) = settings.resource_metadata {
        value.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    Some(value)
}

/// The reply: the errors (an array for a batch), the status, the challenge.
pub fn reply(
    status: u16,
    errors: &[RpcError],
    batch: bool,
    challenge: &Challenge,
    settings: ChallengeSettings<'_>,
) -> Reply {
    let body = match (batch, errors) {
        (false, [one, ..]) => one.to_json(),
        _ => Value::Array(errors.iter().map(RpcError::to_json).collect()),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(value) = www_authenticate(settings, challenge) {
        headers.push(("www-authenticate".to_string(), value));
    }
    if status == 405 {
        headers.push(("allow".to_string(), "GET, POST, DELETE".to_string()));
    }
    Reply {
        status,
        headers,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: ChallengeSettings<'static> = ChallengeSettings {
        realm: "mcp",
        resource_metadata: Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
    };

    #[test]
    fn challenges_name_the_scope_and_the_metadata() {
        assert_eq!(www_authenticate(SETTINGS, &Challenge::None), None);
        assert_eq!(
            www_authenticate(SETTINGS, &Challenge::Unauthenticated { scope: None }).unwrap(),
            r#"Bearer realm="mcp", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            www_authenticate(
                ChallengeSettings {
                    realm: "mcp",
                    resource_metadata: None
                },
                &Challenge::InsufficientScope("files:write".into())
            )
            .unwrap(),
            r#"Bearer realm="mcp", error="insufficient_scope", error_description="the token lacks a scope this call needs", scope="files:write""#
        );
        assert!(www_authenticate(
            SETTINGS,
            &Challenge::Unauthenticated {
                scope: Some("a b".into())
            }
        )
        .unwrap()
        .contains(r#"scope="a b", resource_metadata="#));
    }

    #[test]
    fn replies_are_json_rpc_errors() {
        let e = |id: Value| RpcError {
            id,
            code: FORBIDDEN,
            message: "no".into(),
            data: json!({"reason": "tool_denied"}),
        };
        let r = reply(403, &[e(json!(7))], false, &Challenge::None, SETTINGS);
        assert_eq!(r.status, 403);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"no","data":{"reason":"tool_denied"}}})
        );
        assert_eq!(
            r.headers,
            [("content-type".to_string(), "application/json".to_string())]
        );
        let b = reply(
            400,
            &[e(json!(1)), e(json!("b"))],
            true,
            &Challenge::None,
            SETTINGS,
        );
        let v: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["id"], "b");
        let m = reply(405, &[e(Value::Null)], false, &Challenge::None, SETTINGS);
        assert!(m
            .headers
            .iter()
            .any(|(n, v)| n == "allow" && v == "GET, POST, DELETE"));
    }
}
