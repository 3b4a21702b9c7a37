//! The local replies: a refusal with an RFC 9457 problem body that names
//! the requirement that failed, and the `https` redirect.

use palisade_shared::engine::Reply;
use palisade_shared::problem::{Problem, CONTENT_TYPE};
use serde::Serialize;

use crate::decide::Requirement;

/// The problem body, with the failed requirement as an extension member
/// (RFC 9457 section 3.2).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    requirement: &'static str,
}

fn title(status: u16) -> &'static str {
    match status {
        426 => "Upgrade Required",
        _ => "Forbidden",
    }
}

/// A refusal: `status`, the `Upgrade` header of a 426, the policy's HSTS
/// (over TLS), and the problem body unless turned off.
pub fn refusal(
    problem_body: bool,
    status: u16,
    requirement: Requirement,
    detail: &str,
    upgrade: Option<&str>,
    hsts: Option<&str>,
    request_id: Option<String>,
) -> Reply {
    let mut headers = Vec::new();
    if let Some(upgrade) = upgrade {
        headers.push(("upgrade".to_string(), upgrade.to_string()));
        headers.push(("connection".to_string(), "Upgrade".to_string()));
    }
    if let Some(hsts) = hsts {
        headers.push(("strict-transport-security".to_string(), hsts.to_string()));
    }
    let body = if problem_body {
        headers.push(("content-type".to_string(), CONTENT_TYPE.to_string()));
        let problem = Problem::new(status, title(status))
            .with_detail(detail)
            .with_request_id(request_id);
        serde_json::to_vec(&Body {
            problem: &problem,
            requirement: requirement.name(),
        })
        .unwrap_or_else(|_| problem.to_json())
    } else {
        Vec::new()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The permanent redirect to `location` (308 keeps the method and body).
pub fn redirect(location: &str) -> Reply {
    Reply {
        status: 308,
        headers: vec![("location".to_string(), location.to_string())],
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_requirement() {
        let r = refusal(
            true,
            403,
            Requirement::UriSan,
            "no URI (SPIFFE ID) of the client certificate is allowed on this route",
            None,
            Some("max-age=60"),
            Some("rid-1".into()),
        );
        assert_eq!(r.status, 403);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["requirement"], "client_certificate.uri_san");
        assert_eq!(body["title"], "Forbidden");
        assert_eq!(body["status"], 403);
        assert_eq!(body["request_id"], "rid-1");
        assert!(r
            .headers
            .contains(&("strict-transport-security".into(), "max-age=60".into())));
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/problem+json".into())));
    }

    #[test]
    fn upgrade_required_and_no_body() {
        let r = refusal(
            false,
            426,
            Requirement::Tls,
            "this route requires TLS (https)",
            Some("TLS/1.3, HTTP/1.1"),
            None,
            None,
        );
        assert!(r.body.is_empty());
        assert_eq!(
            r.headers,
            vec![
                ("upgrade".to_string(), "TLS/1.3, HTTP/1.1".to_string()),
                ("connection".to_string(), "Upgrade".to_string())
            ]
        );
        let to = redirect("https://api.example.com/a?b=1");
        assert_eq!(to.status, 308);
        assert_eq!(to.headers[0].1, "https://api.example.com/a?b=1");
    }
}
