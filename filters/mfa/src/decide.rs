//! The decision: does the authentication behind a verified identity meet the
//! route's step-up policy, and if not, what does the client get back.
//!
//! Everything comes in as arguments (the verified identity, whether the
//! connection carries a verified client certificate, the time), and a
//! [`Decision`] comes out.

use palisade_shared::contract::{Denial, Identity, MfaDecision};
use palisade_shared::matcher::RequestView;
use palisade_shared::problem::{Problem, CONTENT_TYPE};

use crate::config::{BrowserRedirect, Config, StepUpPolicy};
use crate::identity::{AuthFacts, Unreadable};

/// Why a policy is not met. Checked in this order: acr, amr, auth_time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// The policy asks for an `acr` and the token has none.
    AcrMissing,
    /// `acr` is neither accepted nor ranked at least as strong as an accepted one.
    AcrNotAccepted,
    /// The policy asks for methods and the token lists none (and no client
    /// certificate stands in).
    AmrMissing,
    /// The methods do not cover the policy's `all_of` / `any_of`.
    AmrNotSatisfied,
    /// The policy has a `max_age` and the token has no `auth_time`.
    AuthTimeMissing,
    /// `auth_time` is later than now plus the allowed clock skew.
    AuthTimeInFuture,
    /// More than `max_age` seconds have passed since `auth_time`.
    AuthTooOld,
}

impl Unmet {
    /// The machine-readable reason (filter state `palisade.denial`, logs).
    pub fn reason(self) -> &'static str {
        match self {
            Unmet::AcrMissing => "acr_missing",
            Unmet::AcrNotAccepted => "acr_not_accepted",
            Unmet::AmrMissing => "amr_missing",
            Unmet::AmrNotSatisfied => "amr_not_satisfied",
            Unmet::AuthTimeMissing => "auth_time_missing",
            Unmet::AuthTimeInFuture => "auth_time_in_future",
            Unmet::AuthTooOld => "auth_too_old",
        }
    }

    /// The challenge's `error_description` (and the problem's `detail`).
    /// The first and the last are RFC 9470's own wording.
    pub fn description(self) -> &'static str {
        match self {
            Unmet::AcrMissing | Unmet::AcrNotAccepted => {
                "A different authentication level is required"
            }
            Unmet::AmrMissing | Unmet::AmrNotSatisfied => {
                "Additional authentication methods are required"
            }
            Unmet::AuthTimeMissing => "The time of authentication is unknown",
            Unmet::AuthTimeInFuture => "The auth_time claim is in the future",
            Unmet::AuthTooOld => "More recent authentication is required",
        }
    }
}

/// What a met policy tells the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strength {
    /// The token's `acr`, when it is a string.
    pub acr: Option<String>,
    /// The `acr`'s rank in the configured ranking, 1 for the weakest.
    pub level: Option<usize>,
    /// The methods: the token's `amr`, plus the client certificate's when it
    /// counted.
    pub amr: Vec<String>,
    /// Seconds since `auth_time` (0 when it is slightly in the future).
    pub age: Option<u64>,
}

/// Checks one policy against the facts at `now_unix_s`.
pub fn evaluate(
    config: &Config,
    policy: &StepUpPolicy,
    facts: &AuthFacts<'_>,
    client_certificate: bool,
    now_unix_s: i64,
) -> Result<Strength, Unmet> {
    let rank = |acr: &str| config.acr_ranking.iter().position(|r| r == acr);

    if !policy.acr_values.is_empty() {
        match facts.acr {
            None => return Err(Unmet::AcrMissing),
            Some(acr) => {
                let exact = policy.acr_values.iter().any(|v| v == acr);
                let ranked =
                    matches!((rank(acr), policy.min_rank), (Some(r), Some(min)) if r >= min);
                if !exact && !ranked {
                    return Err(Unmet::AcrNotAccepted);
                }
            }
        }
    }

    let mut amr = facts.amr.to_vec();
    if let (true, Some(method)) = (client_certificate, &policy.client_certificate_amr) {
        if !amr.contains(method) {
            amr.push(method.clone());
        }
    }
    if let Some(need) = &policy.amr {
        let has = |m: &String| amr.contains(m);
        let all = need.all_of.iter().all(has);
        let any = need.any_of.is_empty() || need.any_of.iter().any(has);
        if !(all && any) {
            return Err(if amr.is_empty() {
                Unmet::AmrMissing
            } else {
                Unmet::AmrNotSatisfied
            });
        }
    }

    let skew = i64::try_from(config.clock_skew_seconds).unwrap_or(i64::MAX);
    let age = match facts.auth_time {
        Some(t) if t <= now_unix_s.saturating_add(skew) => {
            Ok(u64::try_from(now_unix_s.saturating_sub(t)).unwrap_or(0))
        }
        Some(_) => Err(Unmet::AuthTimeInFuture),
        None => Err(Unmet::AuthTimeMissing),
    };
    if let Some(max_age) = policy.max_age {
        // OIDC Core: re-authenticate when the elapsed time is *greater* than max_age.
        match age {
            Ok(a) if a > max_age => return Err(Unmet::AuthTooOld),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }

    let acr = facts.acr.map(str::to_string);
    Ok(Strength {
        level: acr.as_deref().and_then(rank).map(|r| r + 1),
        acr,
        amr,
        age: age.ok(),
    })
}

/// What the adapter knows about the request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// Method, host, path, route name.
    pub view: RequestView<'a>,
    /// The `Accept` header.
    pub accept: Option<&'a str>,
    /// The verified identity, when the JWT stage (in this VM, or as a
    /// separate module through filter state `palisade.identity`) made one;
    /// `Err` when that filter state cannot be read.
    pub identity: Option<Result<&'a Identity, Unreadable>>,
    /// Whether the connection carries a client certificate that the
    /// listener verified.
    pub client_certificate: bool,
    /// The host's clock, in milliseconds since the epoch.
    pub now_unix_ms: i64,
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The problem body, without its request id (none when problem bodies
    /// are off, and for redirects).
    pub problem: Option<Problem>,
}

impl Reply {
    /// The body, with the request id when there is a problem body to put it
    /// in (`request_id` is called only then).
    pub fn body(&self, request_id: impl FnOnce() -> Option<String>) -> Vec<u8> {
        match &self.problem {
            Some(p) => p.clone().with_request_id(request_id()).to_json(),
            None => Vec::new(),
        }
    }
}

/// How a refused request was answered, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 401 with the RFC 9470 challenge.
    Challenged,
    /// 302 to the authorization endpoint.
    Redirected,
    /// No identity: 401 with the plain challenge (or a redirect).
    Unauthenticated,
    /// The identity could not be read: 500.
    Unreadable,
}

/// The filter's decision for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy applies; the request goes on (the upstream headers' client
    /// copies are still removed).
    NoPolicy,
    /// The policy is met.
    Pass {
        /// Index of the policy in [`Config::policies`].
        policy: usize,
        /// Headers to set toward the upstream.
        headers: Vec<(String, String)>,
        /// Filter state `palisade.mfa`.
        state: MfaDecision,
    },
    /// The request is refused.
    Refuse {
        /// Index of the policy in [`Config::policies`].
        policy: usize,
        /// How.
        how: Refused,
        /// The reply to send.
        reply: Reply,
        /// Filter state `palisade.mfa`.
        state: MfaDecision,
        /// Filter state `palisade.denial`.
        denial: Denial,
    },
}

/// Decides a request. `policy` comes from [`Config::policy_for`], so the
/// adapter can skip reading connection properties for routes without one.
pub fn decide(config: &Config, policy: Option<usize>, request: &RequestFacts<'_>) -> Decision {
    let Some((index, policy)) = policy.and_then(|i| Some((i, config.policies.get(i)?))) else {
        return Decision::NoPolicy;
    };
    let state = |outcome: &str| MfaDecision {
        policy: policy.name.clone(),
        outcome: outcome.to_string(),
        required_acr: policy.acr_values.clone(),
        max_age: policy.max_age,
    };
    let refuse = |how: Refused, reply: Reply, reason: &str| {
        let outcome = match how {
            Refused::Challenged | Refused::Redirected => "challenged",
            Refused::Unauthenticated | Refused::Unreadable => "unauthenticated",
        };
        Decision::Refuse {
            policy: index,
            how,
            denial: Denial {
                filter: "mfa".into(),
                status: reply.status,
                reason: reason.to_string(),
            },
            reply,
            state: state(outcome),
        }
    };
    let redirect = config
        .browser_redirect
        .as_ref()
        .filter(|_| policy.browser_redirect && is_browser_navigation(request));

    let facts = match request.identity.map(|i| i.map(AuthFacts::from_identity)) {
        None => {
            return match redirect {
                Some(r) => refuse(
                    Refused::Unauthenticated,
                    redirect_reply(r, policy),
                    "no_identity",
                ),
                None => refuse(
                    Refused::Unauthenticated,
                    problem_reply(
                        config,
                        401,
                        Some(config.unauthenticated_challenge.clone()),
                        "No verified identity",
                    ),
                    "no_identity",
                ),
            }
        }
        Some(Err(Unreadable)) => {
            return refuse(
                Refused::Unreadable,
                problem_reply(config, 500, None, "The verified identity could not be read"),
                "identity_unreadable",
            )
        }
        Some(Ok(facts)) => facts,
    };

    let now_s = request.now_unix_ms.div_euclid(1000);
    match evaluate(config, policy, &facts, request.client_certificate, now_s) {
        Ok(strength) => Decision::Pass {
            policy: index,
            headers: upstream_headers(config, &strength),
            state: state("passed"),
        },
        Err(unmet) => match redirect {
            Some(r) => refuse(
                Refused::Redirected,
                redirect_reply(r, policy),
                unmet.reason(),
            ),
            None => refuse(
                Refused::Challenged,
                problem_reply(
                    config,
                    401,
                    Some(challenge(config, policy, unmet)),
                    unmet.description(),
                ),
                unmet.reason(),
            ),
        },
    }
}

/// The RFC 9470 challenge: `error`, `error_description`, then `acr_values`
/// and `max_age` when the policy has them (section 3).
pub fn challenge(config: &Config, policy: &StepUpPolicy, unmet: Unmet) -> String {
    let mut v = String::from("Bearer ");
    if let Some(realm) = &config.realm {
        v.push_str(&format!("realm=\"{realm}\", "));
    }
    v.push_str(&format!(
        "error=\"insufficient_user_authentication\", error_description=\"{}\"",
        unmet.description()
    ));
    if !policy.acr_values.is_empty() {
        v.push_str(&format!(", acr_values=\"{}\"", policy.acr_values.join(" ")));
    }
    if let Some(max_age) = policy.max_age {
        v.push_str(&format!(", max_age={max_age}"));
    }
    v
}

fn problem_reply(config: &Config, status: u16, challenge: Option<String>, detail: &str) -> Reply {
    let mut headers = Vec::new();
    if let Some(c) = challenge {
        headers.push(("www-authenticate".to_string(), c));
    }
    let problem = config.problem_body.then(|| {
        headers.push(("content-type".to_string(), CONTENT_TYPE.to_string()));
        let title = if status == 401 {
            "Unauthorized"
        } else {
            "Internal Server Error"
        };
        Problem::new(status, title).with_detail(detail)
    });
    Reply {
        status,
        headers,
        problem,
    }
}

/// A top-level page load: GET or HEAD that accepts `text/html` (with a
/// non-zero quality).
pub fn is_browser_navigation(request: &RequestFacts<'_>) -> bool {
    if !matches!(request.view.method, "GET" | "HEAD") {
        return false;
    }
    let Some(accept) = request.accept else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("text/html") {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// The authorization request (OIDC Core 3.1.2.1) that makes the user
/// authenticate again, as strongly as the policy asks.
pub fn authorization_url(client: &BrowserRedirect, policy: &StepUpPolicy) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", client.response_type.clone()),
        ("client_id", client.client_id.clone()),
        ("redirect_uri", client.redirect_uri.clone()),
        ("scope", client.scope.clone()),
    ];
    if !policy.acr_values.is_empty() {
        params.push(("acr_values", policy.acr_values.join(" ")));
    }
    if let Some(max_age) = policy.max_age {
        params.push(("max_age", max_age.to_string()));
    }
    params.push(("prompt", "login".to_string()));
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sep = if client.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{query}", client.authorization_endpoint)
}

fn redirect_reply(client: &BrowserRedirect, policy: &StepUpPolicy) -> Reply {
    Reply {
        status: 302,
        headers: vec![
            ("location".to_string(), authorization_url(client, policy)),
            ("cache-control".to_string(), "no-store".to_string()),
        ],
        problem: None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn upstream_headers(config: &Config, strength: &Strength) -> Vec<(String, String)> {
    let h = &config.upstream_headers;
    let mut out = Vec::new();
    let mut push = |name: &Option<String>, value: Option<String>| {
        if let (Some(n), Some(v)) = (name, value) {
            out.push((n.clone(), v));
        }
    };
    push(&h.level, strength.level.map(|l| l.to_string()));
    push(&h.acr, strength.acr.clone());
    push(
        &h.amr,
        Some(strength.amr.join(",")).filter(|s| !s.is_empty()),
    );
    push(&h.age, strength.age.map(|a| a.to_string()));
    // Claim values come from a verified token, but a header value must still
    // not carry control characters.
    out.retain(|(_, v)| v.bytes().all(|b| b >= 0x20 && b != 0x7f));
    out
}

#[cfg(test)]
mod tests;
