//! The local reply for a refusal: status, RFC 6750 `WWW-Authenticate`
//! challenge and an RFC 9457 problem body.

use palisade_shared::problem::{Problem, CONTENT_TYPE};

use crate::decide::Refusal;
use crate::error::Reason;

pub use palisade_shared::engine::Reply;

fn title(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "Service Unavailable",
    }
}

/// The `WWW-Authenticate` value: no `error` for a missing token (RFC 6750
/// 3.1; with the `scope` the route needs when known), `invalid_token` for a
/// bad one, `insufficient_scope` with the needed `scope` for a valid token
/// that may not do this.
pub fn challenge(realm: &str, refusal: &Refusal) -> Option<String> {
    let r = refusal.reason;
    let scope = |v: &mut String| {
        if let Some(scope) = &refusal.scope {
            v.push_str(&format!(", scope=\"{}\"", scope.replace(['"', '\\'], "")));
        }
    };
    match r {
        Reason::TokenMissing => {
            let mut v = format!("Bearer realm=\"{realm}\"");
            scope(&mut v);
            Some(v)
        }
        Reason::KeysUnavailable => None,
        Reason::InsufficientScope | Reason::ClaimMismatch => {
            let mut v = format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                r.description()
            );
            scope(&mut v);
            Some(v)
        }
        _ => Some(format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
            r.description()
        )),
    }
}

/// The whole reply for a refusal. With `resource_metadata` (a rule that
/// guards an RFC 9728 protected resource), the challenge names the
/// metadata URL, so a client that got it finds the authorization server.
pub fn reply(
    realm: &str,
    problem_body: bool,
    refusal: &Refusal,
    request_id: Option<String>,
    resource_metadata: Option<&str>,
) -> Reply {
    let status = refusal.reason.status();
    let mut headers = Vec::new();
    if let Some(mut c) = challenge(realm, refusal) {
        if let Some(url) = resource_metadata {
            c.push_str(&format!(", resource_metadata=\"{url}\""));
        }
        headers.push(("www-authenticate".to_string(), c));
    }
    if status == 503 {
        headers.push(("retry-after".to_string(), "5".to_string()));
    }
    let body = if problem_body {
        headers.push(("content-type".to_string(), CONTENT_TYPE.to_string()));
        Problem::new(status, title(status))
            .with_detail(refusal.reason.description())
            .with_request_id(request_id)
            .to_json()
    } else {
        Vec::new()
    };
    Reply {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(reason: Reason, scope: Option<&str>) -> Refusal {
        Refusal {
            reason,
            provider: None,
            scope: scope.map(str::to_string),
        }
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            challenge("api", &refusal(Reason::TokenMissing, None)).unwrap(),
            r#"Bearer realm="api""#
        );
        assert_eq!(
            challenge("api", &refusal(Reason::Expired, None)).unwrap(),
            r#"Bearer realm="api", error="invalid_token", error_description="token is expired""#
        );
        assert_eq!(
            challenge(
                "api",
                &refusal(Reason::InsufficientScope, Some("read write"))
            )
            .unwrap(),
            r#"Bearer realm="api", error="insufficient_scope", error_description="token lacks the required scope", scope="read write""#
        );
        assert!(challenge("api", &refusal(Reason::KeysUnavailable, None)).is_none());
        assert_eq!(
            challenge("api", &refusal(Reason::TokenMissing, Some("mcp:read"))).unwrap(),
            r#"Bearer realm="api", scope="mcp:read""#
        );
    }

    #[test]
    fn challenges_of_a_protected_resource_name_its_metadata() {
        let url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
        let r = reply(
            "api",
            false,
            &refusal(Reason::TokenMissing, Some("mcp:read")),
            None,
            Some(url),
        );
        assert_eq!(
            r.headers[0].1,
            format!(r#"Bearer realm="api", scope="mcp:read", resource_metadata="{url}""#)
        );
        let r = reply(
            "api",
            false,
            &refusal(Reason::InsufficientScope, Some("mcp:write")),
            None,
            Some(url),
        );
        assert!(r.headers[0]
            .1
            .ends_with(&format!(r#"scope="mcp:write", resource_metadata="{url}""#)));
        let r = reply(
            "api",
            false,
            &refusal(Reason::AudienceMismatch, None),
            None,
            Some(url),
        );
        assert!(
            r.headers[0].1.contains(r#"error="invalid_token""#) && r.headers[0].1.contains(url)
        );
    }

    #[test]
    fn replies() {
        let r = reply(
            "api",
            true,
            &refusal(Reason::SignatureInvalid, None),
            Some("rid-1".into()),
            None,
        );
        assert_eq!(r.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["status"], 401);
        assert_eq!(body["title"], "Unauthorized");
        assert_eq!(body["detail"], "token signature is invalid");
        assert_eq!(body["request_id"], "rid-1");
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/problem+json".into())));
        let r = reply(
            "api",
            false,
            &refusal(Reason::KeysUnavailable, None),
            None,
            Some("https://x/.well-known/oauth-protected-resource"),
        );
        assert_eq!(r.status, 503);
        assert!(r.body.is_empty());
        assert_eq!(
            r.headers,
            vec![("retry-after".to_string(), "5".to_string())]
        );
        assert_eq!(
            reply(
                "api",
                true,
                &refusal(Reason::ClaimMismatch, None),
                None,
                None
            )
            .status,
            403
        );
    }
}
