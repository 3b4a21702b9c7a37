//! The host's monotonic clock as one nanosecond time line for every worker.
//!
//! The buckets are shared by every worker VM, so their timestamps must come
//! from one clock that all workers read alike and that never steps back.
//! Envoy serves WASI `CLOCK_MONOTONIC` from its steady clock, one for the
//! whole process, so its raw reading is that time line. `std::time::Instant`
//! reads the same clock but hides the value, and comparing two VMs'
//! readings needs it.
//!
//! The raw reading comes from `quanta` (metrics-rs), a maintained timing
//! crate with a safe API: on `wasm32-wasip1` its clock is WASI
//! `clock_time_get(CLOCK_MONOTONIC)` through the Bytecode Alliance's
//! `wasip1` bindings, and [`quanta::Clock::raw`] returns that reading in
//! nanoseconds (the workspace forbids `unsafe`, and the `wasi` / `wasip1`
//! crates expose `clock_time_get` only as an `unsafe fn`). Natively (the
//! unit tests) quanta reads the CPU's invariant time-stamp counter, scaled to
//! nanoseconds by one calibration per process, or `CLOCK_MONOTONIC`: one
//! time line for every thread there too. This is stage-side code: the core
//! only ever receives `now_ns`.

/// A monotonic clock shared by every VM of the process.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
}

impl MonotonicClock {
    /// The process's monotonic clock.
    pub fn new() -> Self {
        MonotonicClock {
            clock: quanta::Clock::new(),
        }
    }

    /// The clock's reading in nanoseconds: the same number in every VM (and
    /// thread) at the same instant.
    pub fn now_ns(&self) -> u64 {
        // The distance from the raw scale's zero: the raw reading itself
        // where the source counts nanoseconds (WASI), the counter scaled to
        // nanoseconds where it does not.
        self.clock.delta_as_nanos(0, self.clock.raw())
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
    use std::time::{Duration, Instant};

    /// Waits at least `ms` by the standard library's own monotonic clock
    /// (a busy wait: `wasm32-wasip1` hosts need not implement sleeping).
    fn wait_ms(ms: u64) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(ms) {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn clocks_made_at_different_times_read_the_same_time_line() {
        let a = MonotonicClock::new();
        wait_ms(20);
        let b = MonotonicClock::new();
        let (ta, tb) = (a.now_ns(), b.now_ns());
        let diff = ta.abs_diff(tb);
        assert!(diff < 5_000_000, "{ta} vs {tb}");
    }

    // Workers are threads natively; a wasm VM has no threads, and each VM
    // is its own module instance reading the host's one clock.
    #[cfg(not(target_family = "wasm"))]
    #[test]
    fn a_clock_made_in_another_thread_reads_the_same_time_line() {
        let a = MonotonicClock::new();
        let c = std::thread::spawn(MonotonicClock::new).join().unwrap();
        assert!(c.now_ns().abs_diff(a.now_ns()) < 5_000_000);
    }

    #[test]
    fn it_advances_with_the_standard_clock_and_never_goes_back() {
        let clock = MonotonicClock::new();
        let (t0, s0) = (clock.now_ns(), Instant::now());
        let mut last = t0;
        for _ in 0..1000 {
            let t = clock.now_ns();
            assert!(t >= last, "{last} -> {t}");
            last = t;
        }
        wait_ms(30);
        let (t1, elapsed) = (clock.now_ns(), s0.elapsed());
        assert!(t1 >= t0 + 30_000_000, "{t0} -> {t1}");
        // The same elapsed time as std's reading of the same clock.
        let drift = (t1 - t0).abs_diff(u64::try_from(elapsed.as_nanos()).unwrap());
        assert!(drift < 5_000_000, "{} ns vs {elapsed:?}", t1 - t0);
    }

    #[test]
    fn reading_is_a_raw_clock_reading() {
        // A monotonic clock counts from boot (or some fixed point): far
        // below 2^62 ns (146 years).
        let t = MonotonicClock::new().now_ns();
        assert!(t > 0 && t < (1u64 << 62), "{t}");
    }
}
