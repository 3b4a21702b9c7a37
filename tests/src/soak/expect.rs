//! What each kind of request must get back: exactly the documented answer
//! of the policy that decides it.

use std::time::Duration;

use serde_json::Value;

use super::schedule::Keys;
use super::traffic::{Kind, KEY_LIMIT, KEY_TOKEN_REFILL};
use crate::http::{Request, Response};

/// Checks a response against what its kind must get, given the keys
/// (`Held`: decided with keys; `Gone`: 503; `Either`: one of those two).
pub fn check(kind: Kind, keys: Keys, sent: &Request, r: &Response) -> Result<(), String> {
    match kind {
        Kind::Valid | Kind::Admin => keyed_outcome(keys, r, |r| served(sent, r)),
        Kind::ValidReused => match keys {
            Keys::Held => served(sent, r),
            // The filter's token cache may answer a token it verified before.
            Keys::Gone | Keys::Either => keyed_outcome(Keys::Either, r, |r| served(sent, r)),
        },
        Kind::StepUp => keyed_outcome(keys, r, |r| {
            expect_status(r, 401)?;
            expect_header_contains(r, "www-authenticate", "insufficient_user_authentication")
        }),
        Kind::Attack => {
            expect_status(r, 403)?;
            problem(r, 403)
        }
        Kind::MalformedToken => invalid_token(r),
        Kind::ForgedToken => keyed_outcome(keys, r, invalid_token),
        Kind::Oversized => {
            expect_status(r, 413)?;
            problem(r, 413)
        }
        Kind::HeaderFlood => expect_status(r, 431),
        Kind::Spray | Kind::SlowBody => served(sent, r),
        // Nothing to answer (the connection is gone); the probe's answers
        // are checked in sequence by [`Probe`].
        Kind::Truncated | Kind::LimitProbe => Ok(()),
    }
}

/// `with_keys` when keys are held, the documented 503 when they are gone,
/// one of the two in between.
fn keyed_outcome(
    keys: Keys,
    r: &Response,
    with_keys: impl Fn(&Response) -> Result<(), String>,
) -> Result<(), String> {
    match keys {
        Keys::Held => with_keys(r),
        Keys::Gone => keys_unavailable(r),
        Keys::Either => with_keys(r).or_else(|a| {
            keys_unavailable(r)
                .map_err(|b| format!("neither answered with keys ({a}) nor without ({b})"))
        }),
    }
}

/// The JWT filter's answer when keys cannot be had.
fn keys_unavailable(r: &Response) -> Result<(), String> {
    expect_status(r, 503)?;
    if r.header("retry-after") != Some("5") {
        return Err(format!("retry-after {:?}, not 5", r.header("retry-after")));
    }
    if r.header("www-authenticate").is_some() {
        return Err("a 503 with a www-authenticate challenge".into());
    }
    let body: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("503 body not JSON: {e}"))?;
    if body["detail"] != "signing keys are unavailable" {
        return Err(format!("503 detail {}", body["detail"]));
    }
    Ok(())
}

fn invalid_token(r: &Response) -> Result<(), String> {
    expect_status(r, 401)?;
    expect_header_contains(r, "www-authenticate", "error=\"invalid_token\"")
}

/// The upstream got exactly the request, with the verified identity and
/// without the token.
fn served(sent: &Request, r: &Response) -> Result<(), String> {
    expect_status(r, 200)?;
    let echo: Value = serde_json::from_slice(&r.body).map_err(|e| format!("echo not JSON: {e}"))?;
    if echo["path"] != sent.path.as_str() || echo["method"] != sent.method.as_str() {
        return Err(format!("upstream saw {} {}", echo["method"], echo["path"]));
    }
    if echo["body"] != String::from_utf8_lossy(&sent.body).as_ref() {
        return Err("upstream saw another body".into());
    }
    let headers = &echo["headers"];
    if headers.get("authorization").is_some() {
        return Err("the token was forwarded".into());
    }
    let sub = sent
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .and_then(|(_, v)| subject_of(v));
    if let Some(sub) = sub {
        if headers["x-user"] != sub.as_str() {
            return Err(format!("x-user {} upstream, not {sub}", headers["x-user"]));
        }
    }
    Ok(())
}

/// The `sub` claim of a `Bearer` token's payload.
fn subject_of(authorization: &str) -> Option<String> {
    let payload = authorization.strip_prefix("Bearer ")?.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&crate::tokens::b64url_decode(payload)).ok()?;
    claims["sub"].as_str().map(str::to_string)
}

fn problem(r: &Response, status: u16) -> Result<(), String> {
    let body: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("problem body not JSON: {e}"))?;
    if body["status"] != status {
        return Err(format!("problem body status {}", body["status"]));
    }
    Ok(())
}

fn expect_status(r: &Response, status: u16) -> Result<(), String> {
    if r.status == status {
        Ok(())
    } else {
        Err(format!("status {}, not {status}", r.status))
    }
}

fn expect_header_contains(r: &Response, name: &str, part: &str) -> Result<(), String> {
    match r.header(name) {
        Some(v) if v.contains(part) => Ok(()),
        other => Err(format!("{name} {other:?} lacks {part}")),
    }
}

/// What a new client's bucket may answer, request after request, while
/// keys are sprayed (filters/ratelimit/README.md, "What a spraying client
/// can do to others"): its first `KEY_LIMIT` requests pass; a sprayed key
/// may evict its bucket only while it holds as many tokens as a sprayed key
/// (it spent one request since it claimed the slot: it then starts again
/// from a full bucket); otherwise each request spends exactly one token and
/// it is refused exactly when none is left, with the problem body. An
/// answer that comes [`KEY_TOKEN_REFILL`] or more after the previous one may
/// also have regained tokens (a loaded machine can stretch a round): it
/// may hold that many more, and is not counted as an eviction.
#[derive(Debug, Default)]
pub struct Probe {
    /// Tokens left after the last request that passed.
    last: Option<u64>,
    served: usize,
    refused: usize,
    /// Times the bucket was evicted and claimed again.
    pub resets: usize,
}

impl Probe {
    /// Checks the next answer to the probe's key, `since_last` after the
    /// previous answer.
    pub fn next(&mut self, r: &Response, since_last: Duration) -> Result<(), String> {
        let regained = (since_last.as_millis() / KEY_TOKEN_REFILL.as_millis()) as u64;
        let remaining = r
            .header("ratelimit")
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("r=")))
            .and_then(|n| n.parse::<u64>().ok());
        let limit = KEY_LIMIT as u64;
        match r.status {
            429 => {
                if self.served < KEY_LIMIT
                    || (self.refused == 0 && self.last != Some(0) && regained == 0)
                {
                    return Err(format!(
                        "refused with {:?} tokens left, after {} passed",
                        self.last, self.served
                    ));
                }
                if !r.text().contains("Quota Exceeded") {
                    return Err("429 without its problem body".into());
                }
                self.refused += 1;
                Ok(())
            }
            200 => {
                if self.refused > 0 && regained == 0 {
                    return Err("served after a refusal".into());
                }
                let Some(now) = remaining else {
                    return Err(format!(
                        "no RateLimit remaining in {:?}",
                        r.header("ratelimit")
                    ));
                };
                let expected = self
                    .last
                    .map_or(limit - 1, |l| (l + regained).min(limit).saturating_sub(1));
                let evicted = regained == 0 && self.last == Some(limit - 1) && now == limit - 1;
                let spent_out = self.last == Some(0) && regained == 0;
                let refilled = regained > 0 && (expected..limit).contains(&now);
                if spent_out || (now != expected && !evicted && !refilled) {
                    return Err(format!("{now} tokens left after {:?}", self.last));
                }
                self.resets += usize::from(evicted);
                self.refused = 0;
                self.served += 1;
                self.last = Some(now);
                Ok(())
            }
            other => Err(format!("status {other}")),
        }
    }

    /// Whether it was refused twice: done.
    pub fn done(&self) -> bool {
        self.refused >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, remaining: u64) -> Response {
        let body = if status == 429 {
            "{\"title\":\"Quota Exceeded\"}"
        } else {
            "{}"
        };
        Response {
            status,
            headers: vec![(
                "ratelimit".into(),
                format!("\"per_key\";r={remaining};t=1200"),
            )],
            body: body.as_bytes().to_vec(),
        }
    }

    fn run(answers: &[(u16, u64)]) -> Result<usize, String> {
        let mut probe = Probe::default();
        for (status, remaining) in answers {
            probe.next(&answer(*status, *remaining), Duration::from_millis(5))?;
        }
        Ok(probe.resets)
    }

    #[test]
    fn a_slow_round_may_regain_tokens_but_is_no_eviction() {
        let mut probe = Probe::default();
        let quick = Duration::from_millis(5);
        probe.next(&answer(200, 2), quick).unwrap();
        // 200 sprayed requests took longer than a token's refill: the
        // bucket is back at 2 by refill, not by eviction.
        probe.next(&answer(200, 2), KEY_TOKEN_REFILL).unwrap();
        assert_eq!(probe.resets, 0);
        probe.next(&answer(200, 1), quick).unwrap();
        probe.next(&answer(200, 0), quick).unwrap();
        probe.next(&answer(429, 0), quick).unwrap();
        // A token regained after a refusal may be served again...
        probe.next(&answer(200, 0), KEY_TOKEN_REFILL).unwrap();
        // ...but never more than the refill gives.
        assert!(probe.next(&answer(200, 2), quick).is_err());
        let mut quick_after_refusal = Probe::default();
        for (status, remaining) in [(200, 2), (200, 1), (200, 0), (429, 0)] {
            quick_after_refusal
                .next(&answer(status, remaining), quick)
                .unwrap();
        }
        assert!(quick_after_refusal.next(&answer(200, 0), quick).is_err());
    }

    #[test]
    fn a_probe_gets_its_limit_exactly_unless_evicted_after_one_request() {
        assert_eq!(
            run(&[(200, 2), (200, 1), (200, 0), (429, 0), (429, 0)]),
            Ok(0)
        );
        // Evicted before its second request (twice): starts again full.
        assert_eq!(
            run(&[(200, 2), (200, 2), (200, 2), (200, 1), (200, 0), (429, 0)]),
            Ok(2)
        );
        // Never less than its limit, never more once it spent two.
        assert!(run(&[(200, 2), (200, 1), (429, 0)]).is_err());
        assert!(run(&[(200, 2), (200, 1), (200, 2)]).is_err());
        assert!(run(&[(200, 2), (200, 1), (200, 0), (200, 0)]).is_err());
        assert!(run(&[(200, 2), (200, 1), (200, 0), (429, 0), (200, 2)]).is_err());
        assert!(run(&[(200, 1)]).is_err());
    }
}
