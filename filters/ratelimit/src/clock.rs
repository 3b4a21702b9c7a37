//! The host's monotonic clock as one nanosecond time line for every worker.
//!
//! The buckets are shared by every worker VM, so their timestamps must come
//! from one clock that all workers read alike and that never steps back.
//! Envoy serves WASI `CLOCK_MONOTONIC` (what `std::time::Instant` reads) from
//! its steady clock, one for the whole process. `Instant` hides its raw value,
//! though, and comparing two VMs' readings needs that value.
//!
//! It is recovered with safe code only: an `Instant` can be moved back with
//! `checked_sub` down to a fixed floor of its representation (the clock's
//! zero when it is a `Duration`, `i64::MIN` seconds when it is a `timespec`),
//! and a binary search finds that floor once per VM. The distance from the
//! floor, reduced modulo 2^62 ns (146 years), is the raw clock reading in both
//! layouts, because the `timespec` floor lies exactly 2^63 s, a multiple of
//! 2^62 ns, below zero. Every VM thus computes the same number for the same
//! instant. This is adapter-side code: the core only ever receives `now_ns`.

use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const WRAP: u128 = 1 << 62;

/// A monotonic clock shared by every VM of the process.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    floor: Instant,
}

fn duration_from_nanos(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SECOND).ok()?;
    let sub = u32::try_from(nanos % NANOS_PER_SECOND).ok()?;
    Some(Duration::new(secs, sub))
}

impl MonotonicClock {
    /// Finds the representation's floor (about 100 `checked_sub` calls, once).
    pub fn new() -> Self {
        let now = Instant::now();
        let fits = |nanos: u128| {
            duration_from_nanos(nanos)
                .and_then(|d| now.checked_sub(d))
                .is_some()
        };
        let (mut lo, mut hi) = (0u128, Duration::MAX.as_nanos());
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let floor = duration_from_nanos(lo)
            .and_then(|d| now.checked_sub(d))
            .unwrap_or(now);
        MonotonicClock { floor }
    }

    /// The clock's reading in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        let since_floor = Instant::now()
            .saturating_duration_since(self.floor)
            .as_nanos();
        u64::try_from(since_floor % WRAP).unwrap_or(u64::MAX)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_made_at_different_times_read_the_same_time_line() {
        let a = MonotonicClock::new();
        std::thread::sleep(Duration::from_millis(20));
        let b = MonotonicClock::new();
        let (ta, tb) = (a.now_ns(), b.now_ns());
        let diff = ta.abs_diff(tb);
        assert!(diff < 5_000_000, "{ta} vs {tb}");
        // A clock made in another thread agrees too (workers are threads).
        let c = std::thread::spawn(MonotonicClock::new).join().unwrap();
        assert!(c.now_ns().abs_diff(a.now_ns()) < 5_000_000);
    }

    #[test]
    fn it_advances_and_never_goes_back() {
        let clock = MonotonicClock::new();
        let t0 = clock.now_ns();
        std::thread::sleep(Duration::from_millis(30));
        let t1 = clock.now_ns();
        assert!(t1 >= t0 + 30_000_000, "{t0} -> {t1}");
        assert!(t1 - t0 < 10_000_000_000);
    }

    #[test]
    fn reading_is_the_raw_clock_not_the_floor_distance() {
        // The raw monotonic clock counts from boot (or some fixed point):
        // far below 2^62 ns, and nowhere near the 2^63 s of a timespec floor.
        let t = MonotonicClock::new().now_ns();
        assert!(t < (1u64 << 62), "{t}");
    }
}
