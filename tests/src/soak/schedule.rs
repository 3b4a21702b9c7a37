//! When the identity provider's JWKS endpoint fails during a soak, how, and
//! what the JWT filter's documented key handling (filters/jwt/README.md,
//! "remote_jwks and discovery") then promises for a request that needs keys.
//!
//! The provider's keys are fetched every `0.8 × CACHE_DURATION_S`; while
//! fetches fail, the keys stay in use until `CACHE_DURATION_S +
//! STALE_IF_ERROR_S` past their last fetch, then requests that need keys
//! get 503; failed fetches are retried after 1 s, doubling up to 30 s. Each
//! cycle has a short outage that the cached keys ride out, and a long one
//! in which they run out.

use crate::idp::IdpMode;

/// The provider's `cache_duration_s`.
pub const CACHE_DURATION_S: u64 = 2;
/// The provider's `stale_if_error_s`.
pub const STALE_IF_ERROR_S: u64 = 3;
/// The provider's fetch `timeout_ms`.
pub const FETCH_TIMEOUT_MS: u64 = 1000;
/// Slack for the filter's 250 ms tick, a worker picking keys up on its next
/// tick, the fetch's own time and a loaded machine.
const SLACK_MS: u64 = 1000;

/// One cycle: (length ms, whether the IdP fails). A long outage early, so
/// that even a short smoke run sees the keys run out and come back.
const CYCLE: [(u64, bool); 5] = [
    (6_000, false),
    (9_000, true),
    (14_000, false),
    (2_000, true),
    (6_000, false),
];

/// How each successive outage fails.
const OUTAGE_MODES: [IdpMode; 4] = [
    IdpMode::Unavailable,
    IdpMode::Hang,
    IdpMode::Garbage,
    IdpMode::Reset,
];

/// Whether the JWT filter holds usable keys, as far as the schedule can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Surely: a request that needs keys is decided with them.
    Held,
    /// Surely not: such a request gets 503.
    Gone,
    /// Near a transition: either of the two, exactly.
    Either,
}

impl Keys {
    /// What holds over an interval that starts in `self` and ends in `other`.
    pub fn over(self, other: Keys) -> Keys {
        if self == other {
            self
        } else {
            Keys::Either
        }
    }
}

fn cycle_ms() -> u64 {
    CYCLE.iter().map(|(len, _)| len).sum()
}

/// The outages, in order, as (start ms, end ms), from the soak's start up
/// to and including the one that starts after `until_ms`.
fn outages_until(until_ms: u64) -> impl Iterator<Item = (u64, u64)> {
    (0u64..)
        .flat_map(|cycle| {
            let mut start = cycle * cycle_ms();
            CYCLE.iter().filter_map(move |(len, down)| {
                let phase = (start, start + len);
                start += len;
                down.then_some(phase)
            })
        })
        .take_while(move |(start, _)| *start <= until_ms)
}

/// How the IdP answers at `t_ms` after the soak's start.
pub fn idp_mode(t_ms: u64) -> IdpMode {
    outages_until(t_ms)
        .enumerate()
        .find(|(_, (start, end))| (*start..*end).contains(&t_ms))
        .map_or(IdpMode::Up, |(index, _)| {
            // Long and short outages alternate: shift every other one so
            // each kind of outage sees every mode.
            OUTAGE_MODES[(index / 2 + index % 2 * 2) % OUTAGE_MODES.len()]
        })
}

/// The filter's retry delay after `failures` failed fetches (its
/// `remote::backoff_ms`).
fn backoff_ms(failures: u32) -> u64 {
    (1000u64 << failures.saturating_sub(1).min(5)).min(30_000)
}

/// The most fetches that can fail during an outage of `length_ms`: the
/// first at its start, each next one a backoff later.
fn max_failures(length_ms: u64) -> u32 {
    let mut failures = 1;
    let mut elapsed = 0;
    loop {
        elapsed += backoff_ms(failures);
        if elapsed >= length_ms {
            return failures;
        }
        failures += 1;
    }
}

/// Whether keys are held at `t_ms`.
pub fn keys_at(t_ms: u64) -> Keys {
    let Some((start, end)) = outages_until(t_ms).last() else {
        return Keys::Held;
    };
    let cache = CACHE_DURATION_S * 1000;
    let stale = STALE_IF_ERROR_S * 1000;
    // The last good fetch was at most a refresh interval before the outage.
    let surely_held_until = start + cache / 5 + stale - SLACK_MS;
    let surely_gone_from = start + cache + stale + SLACK_MS;
    // After the outage, the next retry comes within one backoff (plus a
    // fetch that hung until the end).
    let refetched_by = end + backoff_ms(max_failures(end - start)) + FETCH_TIMEOUT_MS + SLACK_MS;
    if t_ms < surely_held_until {
        Keys::Held
    } else if t_ms < end {
        if t_ms >= surely_gone_from {
            Keys::Gone
        } else {
            Keys::Either
        }
    } else if t_ms >= refetched_by {
        Keys::Held
    } else {
        Keys::Either
    }
}

/// The schedule as text, for the report.
pub fn describe() -> String {
    let mut at = 0;
    let phases: Vec<String> = CYCLE
        .iter()
        .map(|(len, down)| {
            let s = format!(
                "{}-{} s {}",
                at / 1000,
                (at + len) / 1000,
                if *down { "IdP failing" } else { "IdP up" }
            );
            at += len;
            s
        })
        .collect();
    format!(
        "cycle of {} s: {}; outages rotate 503 / no answer (timeout) / garbage JSON / dropped connection; \
         provider cache_duration_s {CACHE_DURATION_S}, stale_if_error_s {STALE_IF_ERROR_S}",
        cycle_ms() / 1000,
        phases.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_the_cycle_and_rotate() {
        assert_eq!(idp_mode(0), IdpMode::Up);
        assert_eq!(idp_mode(6_000), IdpMode::Unavailable);
        assert_eq!(idp_mode(14_999), IdpMode::Unavailable);
        assert_eq!(idp_mode(15_000), IdpMode::Up);
        assert_eq!(idp_mode(29_500), IdpMode::Garbage);
        assert_eq!(idp_mode(37_000 + 7_000), IdpMode::Hang);
        assert_eq!(idp_mode(37_000 + 30_000), IdpMode::Reset);
        assert_eq!(idp_mode(2 * 37_000 + 7_000), IdpMode::Garbage);
        assert_eq!(idp_mode(2 * 37_000 + 30_000), IdpMode::Unavailable);
        assert_eq!(idp_mode(3 * 37_000 + 30_000), IdpMode::Hang);
    }

    #[test]
    fn keys_ride_out_the_short_outage_and_run_out_in_the_long_one() {
        // Long outage 6-15 s: held 2.4 s in, gone from 12 s, back by
        // 15 + 8 (4 failures) + 1 + 1 = 25 s.
        assert_eq!(keys_at(5_000), Keys::Held);
        assert_eq!(keys_at(8_300), Keys::Held);
        assert_eq!(keys_at(8_500), Keys::Either);
        assert_eq!(keys_at(12_000), Keys::Gone);
        assert_eq!(keys_at(14_900), Keys::Gone);
        assert_eq!(keys_at(15_000), Keys::Either);
        assert_eq!(keys_at(24_900), Keys::Either);
        assert_eq!(keys_at(25_000), Keys::Held);
        // Short outage 29-31 s: held throughout, then a retry within 2 s.
        assert_eq!(keys_at(30_900), Keys::Held);
        assert_eq!(keys_at(31_500), Keys::Either);
        assert_eq!(keys_at(35_000), Keys::Held);
        assert_eq!(Keys::Held.over(Keys::Gone), Keys::Either);
        assert_eq!(Keys::Gone.over(Keys::Gone), Keys::Gone);
    }

    #[test]
    fn failures_are_bounded_by_the_backoff() {
        assert_eq!(max_failures(2_000), 2);
        assert_eq!(max_failures(9_000), 4);
    }
}
