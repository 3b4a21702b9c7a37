//! Token-bucket arithmetic, exact and in integers.
//!
//! A bucket holds up to `capacity` tokens and gains `refill_tokens` every
//! `refill_interval_ns` nanoseconds. Fractions of a token matter (3 tokens a
//! second is one every 333 333 333.3 ns), so the level is kept in units of
//! `1 / refill_interval_ns` of a token: one token is `refill_interval_ns`
//! units and one nanosecond of refill adds exactly `refill_tokens` units.
//! Every operation is then an integer operation with no rounding at all, so
//! no drift accumulates however often a bucket is read, written or refilled.
//! Intermediate values are `u128`: a refill after any idle time (up to the
//! whole `u64` nanosecond range) cannot overflow.
//!
//! Time is a monotonic nanosecond count passed in by the caller. A bucket
//! never moves its timestamp backwards: a worker whose clock reading is a
//! little older than the last writer's refills nothing and keeps the newer
//! timestamp, so two workers cannot both be credited for the same interval.

/// How a bucket fills: the configuration part, identical for every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    capacity: u64,
    refill_tokens: u64,
    refill_interval_ns: u64,
    /// [`BucketSpec::fingerprint`], computed once.
    fingerprint: u64,
}

/// Limits on a [`BucketSpec`], checked by the configuration so the arithmetic
/// below stays far away from `u128` overflow.
pub const MAX_CAPACITY: u64 = 1_000_000_000;
/// The longest refill interval: a year.
pub const MAX_INTERVAL_NS: u64 = 366 * 24 * 3600 * NANOS_PER_SECOND;
/// The shortest refill interval: a millisecond.
pub const MIN_INTERVAL_NS: u64 = 1_000_000;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

impl BucketSpec {
    /// A bucket of `capacity` tokens refilled by `refill_tokens` every
    /// `refill_interval_ns`. All three must be positive (the configuration
    /// checks them; zero values are raised to 1 here so the arithmetic never
    /// divides by zero).
    pub fn new(capacity: u64, refill_tokens: u64, refill_interval_ns: u64) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let refill_tokens = refill_tokens.clamp(1, MAX_CAPACITY);
        let refill_interval_ns = refill_interval_ns.clamp(1, MAX_INTERVAL_NS);
        // FNV-1a over the three numbers: stable across builds, which is all
        // this needs (it is compared, never used for placement).
        let mut fingerprint: u64 = 0xcbf2_9ce4_8422_2325;
        for n in [capacity, refill_tokens, refill_interval_ns] {
            for byte in n.to_le_bytes() {
                fingerprint ^= u64::from(byte);
                fingerprint = fingerprint.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        BucketSpec {
            capacity,
            refill_tokens,
            refill_interval_ns,
            fingerprint,
        }
    }

    /// The burst size.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens added per interval.
    pub fn refill_tokens(&self) -> u64 {
        self.refill_tokens
    }

    /// The refill interval in nanoseconds.
    pub fn refill_interval_ns(&self) -> u64 {
        self.refill_interval_ns
    }

    fn units(&self, tokens: u64) -> u128 {
        u128::from(tokens) * u128::from(self.refill_interval_ns)
    }

    fn full_level(&self) -> u128 {
        self.units(self.capacity)
    }

    /// Nanoseconds for the level to rise by `units`, rounded up.
    fn nanos_to_gain(&self, units: u128) -> u64 {
        let rate = u128::from(self.refill_tokens);
        let nanos = units.div_ceil(rate);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// Seconds (rounded up) for an empty bucket to fill: the `w` of
    /// `RateLimit-Policy`, since `capacity` tokens per that window is both
    /// the burst and the sustained rate.
    pub fn window_seconds(&self) -> u64 {
        seconds_ceil(self.nanos_to_gain(self.full_level())).max(1)
    }

    /// A fingerprint of the parameters. Stored state is only meaningful for
    /// the parameters it was written with; a table whose fingerprint differs
    /// (the operator changed the bucket) starts again from full buckets.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// Seconds, rounded up, in `n` nanoseconds.
pub fn seconds_ceil(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SECOND)
}

/// One client's bucket: its level and when it was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// The level in units of `1 / refill_interval_ns` token.
    pub level: u128,
    /// The monotonic time of the last refill, in nanoseconds.
    pub updated_ns: u64,
}

impl BucketState {
    /// A full bucket, as every client starts.
    pub fn full(spec: &BucketSpec, now_ns: u64) -> Self {
        BucketState {
            level: spec.full_level(),
            updated_ns: now_ns,
        }
    }

    /// The bucket as it is at `now_ns`: refilled for the time since the last
    /// update, never above capacity. A clock reading older than the last
    /// update refills nothing and keeps the newer timestamp.
    pub fn refilled(self, spec: &BucketSpec, now_ns: u64) -> Self {
        let full = spec.full_level();
        if now_ns <= self.updated_ns {
            return BucketState {
                level: self.level.min(full),
                updated_ns: self.updated_ns,
            };
        }
        let elapsed = u128::from(now_ns - self.updated_ns);
        let gained = elapsed * u128::from(spec.refill_tokens);
        BucketState {
            level: self.level.saturating_add(gained).min(full),
            updated_ns: now_ns,
        }
    }

    /// Whole tokens in the bucket.
    pub fn tokens(&self, spec: &BucketSpec) -> u64 {
        u64::try_from(self.level / u128::from(spec.refill_interval_ns)).unwrap_or(u64::MAX)
    }

    /// Whether the bucket is full, so indistinguishable from a new one.
    pub fn is_full(&self, spec: &BucketSpec) -> bool {
        self.level >= spec.full_level()
    }

    /// Whether `cost` tokens can be taken.
    pub fn can_take(&self, spec: &BucketSpec, cost: u64) -> bool {
        self.level >= spec.units(cost)
    }

    /// The bucket after taking `cost` tokens, `None` when there are too few.
    pub fn take(self, spec: &BucketSpec, cost: u64) -> Option<Self> {
        let level = self.level.checked_sub(spec.units(cost))?;
        Some(BucketState { level, ..self })
    }

    /// The bucket after taking `cost` tokens, or every token it holds when
    /// it holds fewer: a charge settled after the fact, when the cost is
    /// only known once the request is over (tokens an LLM reported).
    pub fn take_saturating(self, spec: &BucketSpec, cost: u64) -> Self {
        BucketState {
            level: self.level.saturating_sub(spec.units(cost)),
            ..self
        }
    }

    /// The bucket after giving `cost` tokens back (a spend that was undone),
    /// never above capacity.
    pub fn give_back(self, spec: &BucketSpec, cost: u64) -> Self {
        BucketState {
            level: self
                .level
                .saturating_add(spec.units(cost))
                .min(spec.full_level()),
            ..self
        }
    }

    /// Nanoseconds until the bucket holds `cost` tokens (0 if it already does).
    pub fn nanos_until(&self, spec: &BucketSpec, cost: u64) -> u64 {
        let need = spec.units(cost.min(spec.capacity));
        spec.nanos_to_gain(need.saturating_sub(self.level))
    }

    /// Nanoseconds until the bucket is full.
    pub fn nanos_until_full(&self, spec: &BucketSpec) -> u64 {
        spec.nanos_to_gain(spec.full_level().saturating_sub(self.level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn starts_full_and_spends_whole_tokens() {
        let spec = BucketSpec::new(3, 1, SEC);
        let mut b = BucketState::full(&spec, 0);
        assert_eq!(b.tokens(&spec), 3);
        for left in [2, 1, 0] {
            b = b.take(&spec, 1).unwrap();
            assert_eq!(b.tokens(&spec), left);
        }
        assert!(b.take(&spec, 1).is_none());
        assert!(!b.can_take(&spec, 1));
    }

    #[test]
    fn clock_not_moving_refills_nothing() {
        let spec = BucketSpec::new(2, 1, SEC);
        let b = BucketState::full(&spec, 5 * SEC).take(&spec, 2).unwrap();
        let same = b.refilled(&spec, 5 * SEC);
        assert_eq!(same, b);
        assert_eq!(same.tokens(&spec), 0);
    }

    #[test]
    fn older_clock_reading_keeps_the_newer_timestamp() {
        let spec = BucketSpec::new(2, 1, SEC);
        let b = BucketState {
            level: 0,
            updated_ns: 10 * SEC,
        };
        let r = b.refilled(&spec, 9 * SEC);
        assert_eq!(r.updated_ns, 10 * SEC);
        assert_eq!(r.level, 0);
        // Later, the whole interval since 10 s is credited exactly once.
        assert_eq!(r.refilled(&spec, 11 * SEC).tokens(&spec), 1);
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        // 3 tokens per second: one every 333 333 333.3 ns.
        let spec = BucketSpec::new(1000, 3, SEC);
        let mut b = BucketState {
            level: 0,
            updated_ns: 0,
        };
        // Refill in a million odd-sized steps adding up to exactly 100 s.
        let mut t = 0;
        let step = 99_991;
        while t + step <= 100 * SEC {
            t += step;
            b = b.refilled(&spec, t);
        }
        b = b.refilled(&spec, 100 * SEC);
        assert_eq!(b.tokens(&spec), 300);
        assert_eq!(b.level, 300 * u128::from(SEC));
    }

    #[test]
    fn refill_is_capped_after_a_long_idle() {
        let spec = BucketSpec::new(5, 1_000_000_000, MAX_INTERVAL_NS);
        let b = BucketState {
            level: 0,
            updated_ns: 0,
        };
        let r = b.refilled(&spec, u64::MAX);
        assert!(r.is_full(&spec));
        assert_eq!(r.tokens(&spec), 5);
        assert_eq!(r.updated_ns, u64::MAX);
    }

    #[test]
    fn waiting_times_round_up() {
        let spec = BucketSpec::new(10, 3, SEC);
        let b = BucketState {
            level: 0,
            updated_ns: 0,
        };
        // One token takes 333 333 333.3 ns: 333 333 334 rounded up.
        assert_eq!(b.nanos_until(&spec, 1), 333_333_334);
        assert_eq!(seconds_ceil(b.nanos_until(&spec, 1)), 1);
        // Exactly then, the token is there.
        assert!(b.refilled(&spec, 333_333_334).can_take(&spec, 1));
        assert!(!b.refilled(&spec, 333_333_333).can_take(&spec, 1));
        assert_eq!(seconds_ceil(b.nanos_until_full(&spec)), 4);
        assert_eq!(BucketState::full(&spec, 0).nanos_until(&spec, 4), 0);
        assert_eq!(BucketState::full(&spec, 0).nanos_until_full(&spec), 0);
    }

    #[test]
    fn window_is_the_time_to_fill_from_empty() {
        assert_eq!(BucketSpec::new(100, 100, 60 * SEC).window_seconds(), 60);
        assert_eq!(BucketSpec::new(100, 10, 60 * SEC).window_seconds(), 600);
        assert_eq!(BucketSpec::new(10, 3, SEC).window_seconds(), 4);
        // Sub-second windows are advertised as 1 s (the field has no fractions).
        assert_eq!(BucketSpec::new(1, 1, MIN_INTERVAL_NS).window_seconds(), 1);
    }

    #[test]
    fn a_late_charge_empties_a_bucket_that_holds_less() {
        let spec = BucketSpec::new(10, 1, SEC);
        let b = BucketState::full(&spec, 0);
        assert_eq!(b.take_saturating(&spec, 4).tokens(&spec), 6);
        assert_eq!(b.take_saturating(&spec, 4), b.take(&spec, 4).unwrap());
        let empty = b.take_saturating(&spec, 25);
        assert_eq!((empty.level, empty.updated_ns), (0, 0));
    }

    #[test]
    fn give_back_is_capped() {
        let spec = BucketSpec::new(2, 1, SEC);
        let b = BucketState::full(&spec, 0).take(&spec, 1).unwrap();
        assert_eq!(b.give_back(&spec, 1), BucketState::full(&spec, 0));
        assert_eq!(b.give_back(&spec, 5), BucketState::full(&spec, 0));
    }

    #[test]
    fn fingerprint_changes_with_any_parameter() {
        let a = BucketSpec::new(10, 1, SEC).fingerprint();
        assert_eq!(a, BucketSpec::new(10, 1, SEC).fingerprint());
        assert_ne!(a, BucketSpec::new(11, 1, SEC).fingerprint());
        assert_ne!(a, BucketSpec::new(10, 2, SEC).fingerprint());
        assert_ne!(a, BucketSpec::new(10, 1, 2 * SEC).fingerprint());
    }
}
