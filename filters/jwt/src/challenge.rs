//! The local reply for a refusal: status, RFC 6750 `WWW-Authenticate`
//! challenge and an RFC 9457 problem body.

use palisade_shared::problem::{Problem, CONTENT_TYPE};

use crate::config::{Config, Provider};
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

/// The `WWW-Authenticate` values of a refusal.
///
/// RFC 6750: no `error` for a missing token, `invalid_token` for a bad one,
/// `insufficient_scope` with the needed `scope`. RFC 9449 section 7.1: a
/// provider that takes DPoP tokens adds a `DPoP` challenge with its `algs`;
/// a token presented with the `DPoP` scheme, or a bad proof, is answered
/// with the `DPoP` challenge alone, carrying the error (`invalid_token`,
/// `invalid_dpop_proof` or `use_dpop_nonce`).
pub fn challenges(config: &Config, refusal: &Refusal) -> Vec<String> {
    let r = refusal.reason;
    if matches!(r, Reason::KeysUnavailable | Reason::DpopReplayUnavailable) {
        return Vec::new();
    }
    let realm = &config.realm;
    let concerned: Vec<&Provider> = match refusal.provider {
        Some(p) => config.providers.get(p).into_iter().collect(),
        None => refusal
            .providers
            .iter()
            .filter_map(|p| config.providers.get(*p))
            .collect(),
    };
    let bearer = concerned.iter().any(|p| p.sender.accepts_bearer());
    let mut algs: Vec<&str> = Vec::new();
    for policy in concerned.iter().filter_map(|p| p.dpop.as_ref()) {
        for alg in &policy.algorithms {
            if !algs.contains(&alg.name()) {
                algs.push(alg.name());
            }
        }
    }
    let dpop = (!algs.is_empty()).then(|| format!("algs=\"{}\"", algs.join(" ")));
    let Some(error) = r.error_code() else {
        // No token: every scheme the route's providers take.
        let mut out = Vec::new();
        if bearer || dpop.is_none() {
            out.push(format!("Bearer realm=\"{realm}\""));
        }
        out.extend(dpop.map(|algs| format!("DPoP {algs}")));
        return out;
    };
    let mut params = format!(
        "error=\"{error}\", error_description=\"{}\"",
        r.description()
    );
    if let Some(scope) = &refusal.scope {
        params.push_str(&format!(", scope=\"{}\"", scope.replace(['"', '\\'], "")));
    }
    let in_dpop = refusal.dpop_scheme || r.is_dpop_proof() || r == Reason::DpopNonce;
    match dpop {
        Some(algs) if in_dpop => vec![format!("DPoP {params}, {algs}")],
        Some(algs) => vec![
            format!("Bearer realm=\"{realm}\", {params}"),
            format!("DPoP {algs}"),
        ],
        None => vec![format!("Bearer realm=\"{realm}\", {params}")],
    }
}

/// The whole reply for a refusal; `nonce` goes in `DPoP-Nonce` (a fresh
/// server nonce, for providers that require them).
pub fn reply(
    config: &Config,
    refusal: &Refusal,
    request_id: Option<String>,
    nonce: Option<String>,
) -> Reply {
    let status = refusal.reason.status();
    let mut headers: Vec<(String, String)> = challenges(config, refusal)
        .into_iter()
        .map(|c| ("www-authenticate".to_string(), c))
        .collect();
    if let Some(nonce) = nonce {
        headers.push(("dpop-nonce".to_string(), nonce));
    }
    if status == 503 {
        headers.push(("retry-after".to_string(), "5".to_string()));
    }
    let body = if config.problem_body {
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
    use crate::config::Config;

    const ED: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn config(problem_body: bool) -> Config {
        Config::from_json(
            format!(
                r#"{{"realm": "api", "problem_body": {problem_body}, "providers": {{
                    "bearer": {{"issuer": "b", "jwks": {ED}}},
                    "dpop": {{"issuer": "d", "jwks": {ED}, "sender_constraint": "dpop",
                              "dpop": {{"algorithms": ["ES256", "PS256"]}}}},
                    "either": {{"issuer": "e", "jwks": {ED}, "sender_constraint": "either"}}
                }}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn refusal(reason: Reason, provider: Option<usize>, scope: Option<&str>) -> Refusal {
        Refusal {
            reason,
            provider,
            scope: scope.map(str::to_string),
            dpop_scheme: false,
            providers: vec![0],
        }
    }

    #[test]
    fn bearer_challenges_follow_rfc_6750() {
        let c = config(true);
        assert_eq!(
            challenges(&c, &refusal(Reason::TokenMissing, None, None)),
            [r#"Bearer realm="api""#]
        );
        assert_eq!(
            challenges(&c, &refusal(Reason::Expired, Some(0), None)),
            [r#"Bearer realm="api", error="invalid_token", error_description="token is expired""#]
        );
        assert_eq!(
            challenges(
                &c,
                &refusal(Reason::InsufficientScope, Some(0), Some("read write"))
            ),
            [
                r#"Bearer realm="api", error="insufficient_scope", error_description="token lacks the required scope", scope="read write""#
            ]
        );
        assert!(challenges(&c, &refusal(Reason::KeysUnavailable, None, None)).is_empty());
    }

    #[test]
    fn dpop_challenges_follow_rfc_9449() {
        let c = config(true);
        // Providers in name order: bearer 0, dpop 1, either 2.
        let missing = Refusal {
            providers: vec![0, 1],
            ..refusal(Reason::TokenMissing, None, None)
        };
        assert_eq!(
            challenges(&c, &missing),
            [r#"Bearer realm="api""#, r#"DPoP algs="ES256 PS256""#]
        );
        let dpop_only = Refusal {
            providers: vec![1],
            ..missing.clone()
        };
        assert_eq!(challenges(&c, &dpop_only), [r#"DPoP algs="ES256 PS256""#]);
        assert_eq!(
            challenges(&c, &refusal(Reason::DpopProofReplayed, Some(1), None)),
            [
                r#"DPoP error="invalid_dpop_proof", error_description="DPoP proof was already used", algs="ES256 PS256""#
            ]
        );
        assert_eq!(
            challenges(&c, &refusal(Reason::DpopNonce, Some(1), None)),
            [
                r#"DPoP error="use_dpop_nonce", error_description="resource server requires nonce in DPoP proof", algs="ES256 PS256""#
            ]
        );
        let expired_dpop = Refusal {
            dpop_scheme: true,
            ..refusal(Reason::Expired, Some(1), None)
        };
        assert_eq!(
            challenges(&c, &expired_dpop),
            [
                r#"DPoP error="invalid_token", error_description="token is expired", algs="ES256 PS256""#
            ]
        );
        // A DPoP-bound token sent as Bearer: told in Bearer, shown DPoP.
        let as_bearer = challenges(&c, &refusal(Reason::DpopBoundAsBearer, Some(2), None));
        assert_eq!(as_bearer.len(), 2);
        assert!(as_bearer[0].starts_with(r#"Bearer realm="api", error="invalid_token""#));
        assert_eq!(
            as_bearer[1],
            r#"DPoP algs="ES256 ES384 ES512 RS256 PS256 EdDSA""#
        );
    }

    #[test]
    fn replies() {
        let c = config(true);
        let r = reply(
            &c,
            &refusal(Reason::SignatureInvalid, Some(0), None),
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
            &config(false),
            &refusal(Reason::KeysUnavailable, None, None),
            None,
            None,
        );
        assert_eq!(r.status, 503);
        assert!(r.body.is_empty());
        assert_eq!(
            r.headers,
            vec![("retry-after".to_string(), "5".to_string())]
        );
        assert_eq!(
            reply(
                &c,
                &refusal(Reason::ClaimMismatch, Some(0), None),
                None,
                None
            )
            .status,
            403
        );
        let r = reply(
            &c,
            &refusal(Reason::DpopNonce, Some(1), None),
            None,
            Some("n-1".into()),
        );
        assert_eq!(r.status, 401);
        assert!(r.headers.contains(&("dpop-nonce".into(), "n-1".into())));
        assert_eq!(
            reply(
                &c,
                &refusal(Reason::DpopReplayUnavailable, Some(1), None),
                None,
                None
            )
            .status,
            503
        );
    }
}
