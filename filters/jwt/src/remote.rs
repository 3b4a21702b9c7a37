//! Remote keys: when to fetch, and the shared-data records that let every
//! worker of one Envoy share one copy of each provider's keys.
//!
//! Three shared-data keys per provider (proxy-wasm shared data is one store
//! for all workers of a VM):
//!
//! - `palisade.jwt.keys.<provider>`: the [`KeyRecord`]: the last JWK set
//!   fetched (its text), when, and the failures since;
//! - `palisade.jwt.lease.<provider>`: who is fetching: a deadline in ms; a
//!   worker fetches only after winning this key by compare-and-swap, so one
//!   Envoy makes one fetch per refresh, not one per worker;
//! - `palisade.jwt.kid.<provider>`: when an unknown `kid` last triggered a
//!   refresh, so a flood of bogus kids costs the IdP at most one fetch per
//!   `refetch_unknown_kid_interval_s`.
//!
//! Keys are refreshed at 80% of `cache_duration_s`; after a failed fetch the
//! old keys stay in use until `cache_duration_s + stale_if_error_s` have
//! passed since they were fetched, and fetches are retried with backoff.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{split_url, RemoteSpec};

/// The largest JWK set or discovery document accepted, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// What the workers share about one provider's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyRecord {
    /// When `jwks` was fetched, ms.
    pub fetched_at_ms: i64,
    /// The JWK set text, when one was ever fetched.
    pub jwks: Option<String>,
    /// Failed fetches since the last success.
    pub failures: u32,
    /// When the last fetch failed, ms.
    pub failed_at_ms: i64,
    /// Why it failed (for logs).
    pub error: Option<String>,
}

/// Shared-data key of the record.
pub fn record_key(provider: &str) -> String {
    format!("palisade.jwt.keys.{provider}")
}

/// Shared-data key of the fetch lease.
pub fn lease_key(provider: &str) -> String {
    format!("palisade.jwt.lease.{provider}")
}

/// Shared-data key of the unknown-`kid` limiter.
pub fn kid_key(provider: &str) -> String {
    format!("palisade.jwt.kid.{provider}")
}

/// Delay before retrying after `failures` failed fetches: 1 s, doubling, at most 30 s.
pub fn backoff_ms(failures: u32) -> i64 {
    1000i64
        .saturating_mul(1 << failures.saturating_sub(1).min(5))
        .min(30_000)
}

/// Whether a fetch should start now.
pub fn refresh_due(
    record: Option<&KeyRecord>,
    spec: &RemoteSpec,
    now_ms: i64,
    forced: bool,
) -> bool {
    let Some(r) = record else { return true };
    if r.failures > 0 && now_ms < r.failed_at_ms.saturating_add(backoff_ms(r.failures)) {
        return false;
    }
    if forced || r.failures > 0 || r.jwks.is_none() {
        return true;
    }
    now_ms
        >= r.fetched_at_ms
            .saturating_add(spec.cache_duration_ms * 8 / 10)
}

/// Whether keys fetched at `fetched_at_ms` may still be used.
pub fn usable(fetched_at_ms: i64, spec: &RemoteSpec, now_ms: i64) -> bool {
    now_ms
        < fetched_at_ms
            .saturating_add(spec.cache_duration_ms)
            .saturating_add(spec.stale_if_error_ms)
}

/// A step for [`palisade_shared::store::update`] on the lease key: takes the
/// lease (until `now + hold_ms`) when it is free or its holder overran it.
pub fn take_lease(current: Option<&[u8]>, now_ms: i64, hold_ms: i64) -> (bool, Option<Vec<u8>>) {
    let held_until = current
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    if held_until > now_ms {
        (false, None)
    } else {
        (
            true,
            Some(now_ms.saturating_add(hold_ms).to_string().into_bytes()),
        )
    }
}

/// A step for [`palisade_shared::store::update`] on the `kid` key: allows a
/// refresh when none was triggered in the last `interval_ms`.
pub fn take_kid_refresh(
    current: Option<&[u8]>,
    now_ms: i64,
    interval_ms: i64,
) -> (bool, Option<Vec<u8>>) {
    let last = current
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok());
    match last {
        Some(last) if now_ms.saturating_sub(last) < interval_ms => (false, None),
        _ => (true, Some(now_ms.to_string().into_bytes())),
    }
}

/// A step for [`palisade_shared::store::update`] on the record after a
/// failed fetch: the keys stay, the failure is counted.
pub fn record_failure(current: Option<&[u8]>, now_ms: i64, error: &str) -> ((), Option<Vec<u8>>) {
    let mut r: KeyRecord = current
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default();
    r.failures = r.failures.saturating_add(1);
    r.failed_at_ms = now_ms;
    r.error = Some(error.to_string());
    ((), serde_json::to_vec(&r).ok())
}

/// The record after a successful fetch.
pub fn record_success(jwks: String, now_ms: i64) -> Vec<u8> {
    let r = KeyRecord {
        fetched_at_ms: now_ms,
        jwks: Some(jwks),
        ..KeyRecord::default()
    };
    serde_json::to_vec(&r).unwrap_or_default()
}

/// Where to fetch the JWK set named by an OIDC discovery document: its
/// `jwks_uri` as (authority, path). The document's `issuer` must be the
/// configured one (OpenID Connect Discovery 1.0, section 4.3).
pub fn jwks_location(document: &[u8], issuer: &str) -> Result<(String, String), String> {
    let doc: Value = serde_json::from_slice(document)
        .map_err(|_| "discovery document is not JSON".to_string())?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(i) => {
            return Err(format!(
                "discovery document names issuer `{i}`, not `{issuer}`"
            ))
        }
        None => return Err("discovery document has no `issuer`".into()),
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no `jwks_uri`")?;
    split_url(uri).ok_or_else(|| format!("`jwks_uri` {uri} is not an http(s) URL"))
}

/// Checks a fetch response: status 200 and a size within bounds.
pub fn check_response(status: Option<&str>, body_len: usize) -> Result<(), String> {
    if status != Some("200") {
        return Err(format!("status {}", status.unwrap_or("none")));
    }
    if body_len > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "document of {body_len} bytes is over {MAX_DOCUMENT_BYTES}"
        ));
    }
    if body_len == 0 {
        return Err("empty document".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::store::{update, MemoryStore, UpdateOutcome};

    fn spec() -> RemoteSpec {
        RemoteSpec {
            discovery: false,
            cluster: "idp".into(),
            authority: "idp".into(),
            path: "/jwks".into(),
            timeout_ms: 1000,
            cache_duration_ms: 600_000,
            stale_if_error_ms: 3_600_000,
            refetch_interval_ms: 30_000,
        }
    }

    #[test]
    fn refresh_schedule() {
        let s = spec();
        assert!(refresh_due(None, &s, 0, false));
        let fresh = KeyRecord {
            fetched_at_ms: 1000,
            jwks: Some("{}".into()),
            ..KeyRecord::default()
        };
        assert!(!refresh_due(Some(&fresh), &s, 1000 + 479_999, false));
        assert!(
            refresh_due(Some(&fresh), &s, 1000 + 480_000, false),
            "refreshed before expiry"
        );
        assert!(refresh_due(Some(&fresh), &s, 2000, true), "forced");
        let failed = KeyRecord {
            failures: 3,
            failed_at_ms: 10_000,
            ..fresh.clone()
        };
        assert!(
            !refresh_due(Some(&failed), &s, 13_999, true),
            "backoff holds even when forced"
        );
        assert!(refresh_due(Some(&failed), &s, 14_000, false));
        assert_eq!(
            (backoff_ms(1), backoff_ms(2), backoff_ms(6), backoff_ms(60)),
            (1000, 2000, 30_000, 30_000)
        );
    }

    #[test]
    fn stale_if_error_is_bounded() {
        let s = spec();
        assert!(usable(0, &s, 600_000 + 3_599_999));
        assert!(!usable(0, &s, 600_000 + 3_600_000));
    }

    #[test]
    fn one_worker_wins_the_lease() {
        let store = MemoryStore::new();
        let won = |now| match update(&store, "lease", 3, |cur| take_lease(cur, now, 5000)) {
            UpdateOutcome::Done { result, .. } => result,
            other => panic!("{other:?}"),
        };
        assert!(won(1000));
        assert!(!won(1001), "held by the first");
        assert!(won(6001), "an overrun lease is taken over");
    }

    #[test]
    fn kid_refreshes_are_rate_bound() {
        let store = MemoryStore::new();
        let allowed = |now| match update(&store, "kid", 3, |cur| take_kid_refresh(cur, now, 30_000))
        {
            UpdateOutcome::Done { result, .. } => result,
            other => panic!("{other:?}"),
        };
        assert!(allowed(0));
        assert!(
            (1..100).all(|i| !allowed(i * 100)),
            "a flood of bogus kids triggers nothing"
        );
        assert!(allowed(30_000));
    }

    #[test]
    fn records() {
        let ok = record_success("{\"keys\":[]}".into(), 5);
        let ((), failed) = record_failure(Some(&ok), 9, "status 503");
        let r: KeyRecord = serde_json::from_slice(&failed.unwrap()).unwrap();
        assert_eq!((r.fetched_at_ms, r.failures, r.failed_at_ms), (5, 1, 9));
        assert_eq!(r.jwks.as_deref(), Some("{\"keys\":[]}"), "keys kept");
        let ((), first) = record_failure(None, 9, "x");
        let r: KeyRecord = serde_json::from_slice(&first.unwrap()).unwrap();
        assert!(r.jwks.is_none());
    }

    #[test]
    fn discovery_documents() {
        let doc = br#"{"issuer":"https://idp/r","jwks_uri":"https://idp:8443/r/certs"}"#;
        assert_eq!(
            jwks_location(doc, "https://idp/r").unwrap(),
            ("idp:8443".into(), "/r/certs".into())
        );
        assert!(jwks_location(doc, "https://evil")
            .unwrap_err()
            .contains("names issuer"));
        assert!(jwks_location(br#"{"issuer":"i"}"#, "i")
            .unwrap_err()
            .contains("jwks_uri"));
        assert!(jwks_location(br#"{"issuer":"i","jwks_uri":"file:///x"}"#, "i").is_err());
        assert!(jwks_location(b"<html>", "i").is_err());
        assert!(check_response(Some("200"), 10).is_ok());
        assert!(check_response(Some("404"), 10).is_err());
        assert!(check_response(Some("200"), MAX_DOCUMENT_BYTES + 1).is_err());
        assert!(check_response(None, 10).is_err());
    }
}
