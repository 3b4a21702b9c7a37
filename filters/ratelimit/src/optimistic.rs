//! Bucket updates with one shared-data write instead of a read and a write.
//!
//! Reading a shared-data value costs Envoy about five times what writing one
//! does (it calls back into the VM to allocate the returned bytes). Each
//! worker therefore remembers the set values it wrote last and, on the next
//! request for the same set, computes the update from that copy and writes it
//! with the CAS token it *presumes* its own last write received. When the
//! write succeeds, the bucket was updated exactly as a read-then-CAS would
//! have done it; when it fails, the update falls back to the read-then-CAS
//! loop. Nothing is ever decided from the copy without a successful write
//! behind it: a refusal computed from the copy is checked with a real read.
//!
//! # What the host does (proxy-wasm-cpp-host `SharedData`, as in Envoy)
//!
//! - CAS tokens come from one process-wide `u32` counter (0 skipped), taken
//!   by every successful `set` of any key by any VM, in the order the sets
//!   happen (under one lock). A failed `set` takes none.
//! - `set(key, value, cas)` with `cas != 0` succeeds only if the key's token
//!   is `cas`; `cas == 0` writes unconditionally and is never used here on
//!   the optimistic path.
//! - The token a `set` assigns is not returned to the writer.
//!
//! # Why a successful presumed-token write is a true CAS
//!
//! Number the tokens by the order the host assigned them (their *index*; the
//! token value is the index modulo `2^32 - 1`, skipping 0). Each worker keeps
//! `newest`: a token it knows to be assigned already (read back with a value,
//! or presumed as below), with a time `since` such that the token's index is
//! at least the host counter's index at `since`.
//!
//! 1. After a successful `set` of key K, whose real token `q` is unknown, the
//!    worker presumes `p = newest + 1` and makes `p` the new `newest`. Every
//!    token the worker knew of was assigned before this `set`, so
//!    `index(p) <= index(q)`: a presumption is never ahead of the real token
//!    (by induction, presumptions themselves included).
//! 2. Later the worker writes K with `cas = p`. The host accepts only if K's
//!    token is `p`. Every write to K after ours got an index above
//!    `index(q)`, and the next index whose token value equals `p` is
//!    `index(p) + 2^32 - 1`. So, as long as fewer than `2^32 - 1` tokens were
//!    assigned between `index(p)` and now, K shows the token value `p` only
//!    if `p == q` and nobody wrote K since our write: the key still holds the
//!    exact value this worker wrote and remembered, and the new value was
//!    computed from the current one. A wrong presumption (`p < q`) simply
//!    fails with a mismatch.
//! 3. The wrap-around bound is enforced with time. A remembered write is used
//!    for at most [`TRUST_NS`] after it was made, and a presumption is made
//!    only from a `newest` whose `since` is at most [`FRESH_NS`] old. A token
//!    read back from a key is only taken as `newest` when the value carries
//!    a bucket timestamp at most [`FRESH_NS`] old: every timestamp in a value
//!    was read from the shared monotonic clock before that value was written,
//!    so its token was assigned after that time. (A key untouched for hours
//!    can still carry a token from an earlier turn of the counter; taking it
//!    as `newest` could make a presumption *ahead* of the real token, which
//!    a later write to the same key might then really receive.) So every
//!    index involved lies within `FRESH_NS + TRUST_NS` (2 s) of sets, and
//!    Envoy cannot perform `2^32 - 1` (4.3 billion) shared-data writes in
//!    2 s: each takes a process-wide lock and copies the key and value.
//!
//! With one worker and no other writer the presumption is always right and a
//! request costs one write. When another worker (or another key) wrote in
//! between, the presumption is wrong and the failed write costs a little
//! before the normal read-then-CAS. After a miss the worker stops guessing
//! for the next 1, 2, 4, ... 64 updates (any key; a hit resets the pause),
//! so contention between workers costs at most about one failed write every
//! 64 updates.
//!
//! A worker only learns the newest token from the key it reads, and that is
//! the key's own last write. When one worker updates many keys in turn (a
//! table of per-client buckets), the token it reads is older than its own
//! later writes to other keys, its presumptions stay behind and it keeps
//! reading, paying for a failed guess once per pause: presumed tokens pay off
//! for hot keys (one bucket for everyone, or a busy client), not for a spread
//! of clients.

use palisade_shared::store::{SharedStore, StoreError, UpdateOutcome};

/// How long a remembered write may be the base of a presumed-token write.
pub const TRUST_NS: u64 = 1_000_000_000;
/// How old a token may be (by the time it is known to be assigned after) to
/// be the base of a presumption.
pub const FRESH_NS: u64 = 1_000_000_000;
/// Remembered writes per worker (direct-mapped by set: a bounded memory of
/// at most this many set values).
pub const CACHE_ENTRIES: usize = 64;
/// The longest pause, in updates of one key, after presumed tokens missed.
pub const MAX_BACKOFF: u16 = 64;

/// Whether an update tried a presumed token, and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guess {
    /// The update read the key (no usable remembered write).
    #[default]
    NotTried,
    /// The presumed-token write succeeded: no read was needed.
    Hit,
    /// The presumed-token write met a mismatch; the update then read the key.
    Missed,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    value: Vec<u8>,
    presumed: Option<u32>,
    written_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Newest {
    token: u32,
    since_ns: u64,
}

/// One worker's remembered writes and newest known CAS token.
///
/// Only for a store whose tokens come from one counter shared by every key
/// and writer, as Envoy's shared data does: with per-key token counters a
/// presumption could name a token the key receives later.
#[derive(Debug, Clone, Default)]
pub struct WriteCache {
    enabled: bool,
    entries: Vec<Option<Entry>>,
    newest: Option<Newest>,
    backoff: u16,
    skip: u16,
    recording: bool,
    reads: Vec<(u64, Read)>,
}

/// `a` is at or after `b` in the counter's order (both known to be within a
/// few seconds of sets of each other, far less than half the counter).
fn serial_at_or_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 1 << 31
}

impl WriteCache {
    /// An empty cache that remembers writes.
    pub fn new() -> Self {
        WriteCache {
            enabled: true,
            ..WriteCache::default()
        }
    }

    /// A cache that never remembers anything: every update reads.
    pub fn disabled() -> Self {
        WriteCache::default()
    }

    /// From now on, readings that led to no write are kept, for a second
    /// decision of the same request at another time (see
    /// [`crate::limiter::decide_at_tick`]); earlier ones are dropped.
    pub fn record_reads(&mut self) {
        self.reads.clear();
        self.recording = true;
    }

    /// Stops keeping readings; those kept serve the next updates of their
    /// keys (once each) until [`WriteCache::forget_reads`].
    pub fn stop_recording(&mut self) {
        self.recording = false;
    }

    /// Drops the kept readings: they are only as fresh as the request that
    /// made them.
    pub fn forget_reads(&mut self) {
        self.reads.clear();
        self.recording = false;
    }

    /// Keeps a reading of `id` if recording.
    pub fn record_read(&mut self, id: u64, read: Read) {
        if self.recording {
            self.reads.push((id, read));
        }
    }

    /// A kept reading of `id`, once.
    pub fn take_read(&mut self, id: u64) -> Option<Read> {
        if self.recording {
            return None;
        }
        let i = self.reads.iter().position(|(r, _)| *r == id)?;
        Some(self.reads.swap_remove(i).1)
    }

    /// The value this worker last wrote to `id`, when the next update of it
    /// would be a presumed-token write (remembered with a presumption, still
    /// trusted, no pause after misses): the value that update starts from.
    /// Lets several buckets be checked before any is spent without reading
    /// them; the writes that follow are still true CAS writes.
    pub fn peek(&self, id: u64, now_ns: u64) -> Option<&[u8]> {
        if self.skip > 0 {
            return None;
        }
        let entry = self.entries.get(Self::index(id))?.as_ref()?;
        let usable = entry.id == id
            && entry.presumed.is_some()
            && now_ns.saturating_sub(entry.written_ns) <= TRUST_NS;
        usable.then_some(entry.value.as_slice())
    }

    fn index(id: u64) -> usize {
        // Fibonacci hashing to CACHE_ENTRIES (a power of two) buckets.
        let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        usize::try_from(h).unwrap_or(0) % CACHE_ENTRIES
    }

    /// Takes the entry of `id` out of the cache.
    fn take(&mut self, id: u64) -> Option<Entry> {
        let slot = self.entries.get_mut(Self::index(id))?;
        if slot.as_ref().is_some_and(|e| e.id == id) {
            slot.take()
        } else {
            None
        }
    }

    fn put_back(&mut self, entry: Option<Entry>) {
        if let Some(entry) = entry {
            self.put(entry);
        }
    }

    fn put(&mut self, entry: Entry) {
        if !self.enabled {
            return;
        }
        if self.entries.is_empty() {
            self.entries.resize(CACHE_ENTRIES, None);
        }
        let i = Self::index(entry.id);
        if let Some(slot) = self.entries.get_mut(i) {
            *slot = Some(entry);
        }
    }

    /// Learns from a reading made outside [`update`] (the limiter's check of
    /// several buckets): its token was assigned after the value's newest
    /// timestamp, `written_after_ns(value)`. Without it, the presumptions of
    /// the writes that follow would stay behind the other buckets' tokens.
    pub fn observe_read<W: Fn(&[u8]) -> u64>(
        &mut self,
        read: &Read,
        written_after_ns: W,
        now_ns: u64,
    ) {
        if let (Some(value), Some(token)) = (&read.0, read.1) {
            self.observe(token, written_after_ns(value), now_ns);
        }
    }

    /// Learns that `token` was assigned after monotonic time `after_ns`.
    fn observe(&mut self, token: u32, after_ns: u64, now_ns: u64) {
        if !self.enabled || token == 0 || now_ns.saturating_sub(after_ns) > FRESH_NS {
            return;
        }
        self.newest = Some(match self.newest {
            Some(n) if now_ns.saturating_sub(n.since_ns) <= FRESH_NS => Newest {
                token: if serial_at_or_after(token, n.token) {
                    token
                } else {
                    n.token
                },
                since_ns: n.since_ns.max(after_ns),
            },
            _ => Newest {
                token,
                since_ns: after_ns,
            },
        });
    }

    /// The token presumed for a write that just succeeded, `None` when no
    /// fresh base is known.
    fn presume(&mut self, now_ns: u64) -> Option<u32> {
        let n = self.newest.as_mut()?;
        if now_ns.saturating_sub(n.since_ns) > FRESH_NS {
            self.newest = None;
            return None;
        }
        n.token = match n.token.wrapping_add(1) {
            0 => 1,
            t => t,
        };
        Some(n.token)
    }

    /// Remembers a successful write of `value` to `id` at `now_ns`.
    fn remember(&mut self, id: u64, value: Vec<u8>, now_ns: u64) {
        if !self.enabled {
            return;
        }
        let presumed = self.presume(now_ns);
        self.put(Entry {
            id,
            value,
            presumed,
            written_ns: now_ns,
        });
    }
}

/// One update of one key.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The shared-data key.
    pub key: &'a str,
    /// Which remembered write belongs to the key (unique per key).
    pub id: u64,
    /// CAS retries after mismatches of the read-then-CAS loop.
    pub max_retries: u32,
    /// Monotonic time of the request, nanoseconds.
    pub now_ns: u64,
}

/// A value and its CAS token as read from the store.
pub type Read = (Option<Vec<u8>>, Option<u32>);

/// Updates `target.key` like [`palisade_shared::store::update`], with a
/// presumed-token write from `cache` first when it has a usable remembered
/// write (see the module documentation). `written_after_ns` gives, for a
/// value, a monotonic time before which it cannot have been written (its
/// newest bucket timestamp). `read` is a reading of the key just made by the
/// caller, used for the first attempt instead of reading again.
pub fn update<S, T, F, W>(
    store: &S,
    cache: &mut WriteCache,
    target: Target<'_>,
    read: Option<Read>,
    written_after_ns: W,
    mut step: F,
) -> (UpdateOutcome<T>, Guess)
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> (T, Option<Vec<u8>>),
    W: Fn(&[u8]) -> u64,
{
    let Target {
        key,
        id,
        max_retries,
        now_ns,
    } = target;
    let mut guess = Guess::NotTried;
    let read = read.or_else(|| cache.take_read(id));
    let mut kept = cache.take(id);
    if let Some(entry) = kept.as_mut() {
        let trusted = now_ns.saturating_sub(entry.written_ns) <= TRUST_NS;
        match entry.presumed {
            Some(_) if trusted && cache.skip > 0 => cache.skip -= 1,
            Some(presumed) if trusted && read.is_none() => {
                if let (result, Some(new_value)) = step(Some(&entry.value)) {
                    match store.set(key, &new_value, Some(presumed)) {
                        Ok(()) => {
                            // `presumed` was our write's real token, assigned
                            // after `written_ns`.
                            cache.observe(presumed, entry.written_ns, now_ns);
                            cache.backoff = 0;
                            cache.remember(id, new_value, now_ns);
                            return (UpdateOutcome::Done { result, retries: 0 }, Guess::Hit);
                        }
                        Err(StoreError::CasMismatch) => {
                            guess = Guess::Missed;
                            entry.presumed = None;
                            cache.backoff = cache.backoff.saturating_mul(2).clamp(1, MAX_BACKOFF);
                            cache.skip = cache.backoff;
                        }
                        Err(StoreError::Host) => {
                            cache.put_back(kept);
                            return (UpdateOutcome::HostError, guess);
                        }
                    }
                }
                // A refusal computed from the remembered value is checked by
                // a read.
            }
            _ => {}
        }
    }

    let mut retries = 0;
    let mut pending = read;
    let outcome = loop {
        let (current, cas) = match pending.take() {
            Some(read) => read,
            None => match store.get(key) {
                Ok(read) => read,
                Err(_) => break UpdateOutcome::HostError,
            },
        };
        if let (Some(value), Some(token)) = (&current, cas) {
            cache.observe(token, written_after_ns(value), now_ns);
        }
        let (result, new_value) = step(current.as_deref());
        let Some(new_value) = new_value else {
            cache.record_read(id, (current, cas));
            break UpdateOutcome::Done { result, retries };
        };
        // A key never written has no token, and CAS 0 writes
        // unconditionally: callers that need exact counts create their keys
        // up front (the limiter's fixed slot table does).
        match store.set(key, &new_value, cas) {
            Ok(()) => {
                cache.remember(id, new_value, now_ns);
                return (UpdateOutcome::Done { result, retries }, guess);
            }
            Err(StoreError::CasMismatch) if retries < max_retries => retries += 1,
            Err(StoreError::CasMismatch) => break UpdateOutcome::RetriesExhausted { retries },
            Err(StoreError::Host) => break UpdateOutcome::HostError,
        }
    };
    // Nothing written: the remembered write stays (when the guess missed,
    // without its presumption).
    cache.put_back(kept);
    (outcome, guess)
}

/// A fake of Envoy's shared data for tests: CAS tokens from one process-wide
/// counter that skips 0, taken by every successful set of any key, none by a
/// failed one.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use palisade_shared::store::{SharedStore, StoreError};

    #[derive(Debug)]
    pub struct EnvoyStore {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next: Cell<u32>,
        pub gets: Cell<u32>,
        pub sets: Cell<u32>,
    }

    impl Default for EnvoyStore {
        fn default() -> Self {
            EnvoyStore::starting_at(1)
        }
    }

    impl EnvoyStore {
        /// A store whose next token is `next` (0 is skipped).
        pub fn starting_at(next: u32) -> Self {
            EnvoyStore {
                entries: RefCell::default(),
                next: Cell::new(next.max(1)),
                gets: Cell::new(0),
                sets: Cell::new(0),
            }
        }

        /// Moves the counter, as writes to unrelated keys (or a wrap) would.
        pub fn set_counter(&self, next: u32) {
            self.next.set(next.max(1));
        }

        pub fn token(&self, key: &str) -> Option<u32> {
            self.entries.borrow().get(key).map(|(_, t)| *t)
        }

        fn next_cas(&self) -> u32 {
            let token = self.next.get();
            self.next.set(match token.wrapping_add(1) {
                0 => 1,
                t => t,
            });
            token
        }
    }

    impl SharedStore for EnvoyStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.gets.set(self.gets.get() + 1);
            Ok(match self.entries.borrow().get(key) {
                Some((v, t)) => (Some(v.clone()), Some(*t)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.sets.set(self.sets.get() + 1);
            let cas = cas.unwrap_or(0);
            let current = self.token(key);
            if let Some(current) = current {
                if cas != 0 && cas != current {
                    return Err(StoreError::CasMismatch);
                }
            }
            let token = self.next_cas();
            self.entries
                .borrow_mut()
                .insert(key.to_string(), (value.to_vec(), token));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::EnvoyStore;
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Values are `[counter, written_at_seconds]`: the step adds one.
    fn add_one(now_s: u8) -> impl FnMut(Option<&[u8]>) -> (u8, Option<Vec<u8>>) {
        move |v| {
            let n = v
                .and_then(|v| v.first().copied())
                .unwrap_or(0)
                .wrapping_add(1);
            (n, Some(vec![n, now_s]))
        }
    }

    fn written_after(v: &[u8]) -> u64 {
        u64::from(v.get(1).copied().unwrap_or(0)) * SEC
    }

    fn target(key: &str, id: u64, now_s: u8) -> Target<'_> {
        Target {
            key,
            id,
            max_retries: 8,
            now_ns: u64::from(now_s) * SEC,
        }
    }

    fn run(
        store: &EnvoyStore,
        cache: &mut WriteCache,
        key: &str,
        id: u64,
        now_s: u8,
    ) -> (u8, Guess) {
        match update(
            store,
            cache,
            target(key, id, now_s),
            None,
            written_after,
            add_one(now_s),
        ) {
            (UpdateOutcome::Done { result, .. }, guess) => (result, guess),
            other => panic!("{other:?}"),
        }
    }

    fn stored(store: &EnvoyStore, key: &str) -> u8 {
        store.get(key).unwrap().0.unwrap()[0]
    }

    #[test]
    fn one_writer_needs_no_reads_after_the_first() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::new();
        // The created value is old: its token is no base for a presumption.
        assert_eq!(run(&store, &mut cache, "k", 1, 10), (1, Guess::NotTried));
        // Our own fresh write read back is.
        assert_eq!(run(&store, &mut cache, "k", 1, 10), (2, Guess::NotTried));
        let gets = store.gets.get();
        for n in 3..=50 {
            assert_eq!(run(&store, &mut cache, "k", 1, 10), (n, Guess::Hit));
        }
        assert_eq!(store.gets.get(), gets, "no read once presumptions hold");
        assert_eq!(stored(&store, "k"), 50);
    }

    #[test]
    fn keys_written_in_turn_stay_exact_and_rarely_guess() {
        let store = EnvoyStore::default();
        for key in ["a", "b", "c"] {
            store.set(key, &[0, 0], None).unwrap();
        }
        let mut cache = WriteCache::new();
        let mut missed = 0;
        for n in 1..=100 {
            for (id, key) in [(1, "a"), (2, "b"), (3, "c")] {
                let (value, guess) = run(&store, &mut cache, key, id, 5);
                assert_eq!(value, n);
                missed += u32::from(guess == Guess::Missed);
            }
        }
        assert!(missed <= 10, "{missed} failed guesses in 300 updates");
    }

    #[test]
    fn a_write_by_anyone_else_makes_the_guess_miss_never_lose_an_update() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let (mut a, mut b) = (WriteCache::new(), WriteCache::new());
        run(&store, &mut a, "k", 1, 3);
        run(&store, &mut a, "k", 1, 3);
        assert_eq!(run(&store, &mut a, "k", 1, 3), (3, Guess::Hit));
        // Worker b writes the same key: a's remembered value is stale.
        assert_eq!(run(&store, &mut b, "k", 1, 3).0, 4);
        assert_eq!(run(&store, &mut a, "k", 1, 3), (5, Guess::Missed));
        // A write to another key moves the counter: a wrong presumption.
        assert_eq!(
            run(&store, &mut a, "k", 1, 3),
            (6, Guess::NotTried),
            "backing off"
        );
        assert_eq!(stored(&store, "k"), 6);
    }

    #[test]
    fn interleaved_workers_count_every_update_exactly() {
        // Two workers and an unrelated writer, interleaved by a fixed
        // pseudo-random schedule: the key ends at exactly the number of
        // updates, whatever the schedule.
        let mut hits = 0u32;
        for seed in 0..200u64 {
            let store = EnvoyStore::default();
            store.set("k", &[0, 0, 0], None).unwrap();
            let mut workers = [WriteCache::new(), WriteCache::new()];
            let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut updates = 0u32;
            for _ in 0..200 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match (rng >> 33) % 5 {
                    0 => store.set("noise", &[0, 0], None).unwrap(),
                    w => {
                        let cache = &mut workers[usize::from(w % 2 == 0)];
                        let target = Target {
                            max_retries: 1000,
                            ..target("k", 7, 4)
                        };
                        let (outcome, guess) =
                            update(&store, cache, target, None, written_after, |v| {
                                let n = u16::from_le_bytes([v.unwrap()[0], v.unwrap()[2]]) + 1;
                                let [lo, hi] = n.to_le_bytes();
                                (n, Some(vec![lo, 4, hi]))
                            });
                        assert!(matches!(outcome, UpdateOutcome::Done { .. }));
                        updates += 1;
                        hits += u32::from(guess == Guess::Hit);
                    }
                }
            }
            let v = store.get("k").unwrap().0.unwrap();
            let total = u32::from(u16::from_le_bytes([v[0], v.get(2).copied().unwrap_or(0)]));
            assert_eq!(total, updates, "seed {seed}");
        }
        assert!(hits > 1000, "guesses hold between interferences: {hits}");
    }

    #[test]
    fn a_remembered_write_is_trusted_for_a_second_only() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::new();
        run(&store, &mut cache, "k", 1, 10);
        run(&store, &mut cache, "k", 1, 10);
        assert_eq!(run(&store, &mut cache, "k", 1, 11), (3, Guess::Hit));
        // 2 s later: read (the value read is too old to trust its token),
        // read again (now it is our fresh write), then guess again.
        assert_eq!(run(&store, &mut cache, "k", 1, 13), (4, Guess::NotTried));
        assert_eq!(run(&store, &mut cache, "k", 1, 13), (5, Guess::NotTried));
        assert_eq!(run(&store, &mut cache, "k", 1, 13), (6, Guess::Hit));
    }

    #[test]
    fn a_token_from_an_earlier_turn_of_the_counter_is_never_a_base() {
        // Key k was last written long ago, with token 1000 from an earlier
        // turn of the counter; the counter has since wrapped and stands at
        // 900. Taking 1000 as the newest token would presume 1001 for our
        // write (really 900), and 1001 is the token the *next* write after
        // 100 others receives.
        let store = EnvoyStore::starting_at(1000);
        store.set("k", &[0, 0], None).unwrap();
        assert_eq!(store.token("k"), Some(1000));
        store.set_counter(900);
        let (mut a, mut b) = (WriteCache::new(), WriteCache::new());
        assert_eq!(run(&store, &mut a, "k", 1, 100), (1, Guess::NotTried));
        assert_eq!(store.token("k"), Some(900));
        for _ in 0..100 {
            store.set("noise", &[0, 0], None).unwrap();
        }
        // b's update gets token 1001.
        assert_eq!(run(&store, &mut b, "k", 1, 100).0, 2);
        assert_eq!(store.token("k"), Some(1001));
        // a must not overwrite b's update from its remembered value.
        assert_eq!(run(&store, &mut a, "k", 1, 100).0, 3);
        assert_eq!(stored(&store, "k"), 3);
    }

    #[test]
    fn presumptions_wrap_past_zero_like_the_counter() {
        let store = EnvoyStore::starting_at(u32::MAX - 3);
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::new();
        run(&store, &mut cache, "k", 1, 2);
        run(&store, &mut cache, "k", 1, 2);
        for n in 3..=10 {
            assert_eq!(run(&store, &mut cache, "k", 1, 2), (n, Guess::Hit));
        }
        assert!(store.token("k").unwrap() < 10, "the counter wrapped");
    }

    #[test]
    fn misses_back_off_then_guessing_resumes() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::new();
        run(&store, &mut cache, "k", 1, 1);
        run(&store, &mut cache, "k", 1, 1);
        let mut misses = 0;
        let mut updates = 0;
        // Another key is written before every update: every guess is wrong.
        for _ in 0..200 {
            store.set("noise", &[0, 0], None).unwrap();
            misses += u32::from(run(&store, &mut cache, "k", 1, 1).1 == Guess::Missed);
            updates += 1;
        }
        assert!(misses <= 9, "{misses} failed guesses in {updates} updates");
        // Quiet again: guesses hold after the pause.
        let guesses: Vec<Guess> = (0..70)
            .map(|_| run(&store, &mut cache, "k", 1, 1).1)
            .collect();
        assert_eq!(guesses.last(), Some(&Guess::Hit));
    }

    #[test]
    fn a_disabled_cache_always_reads() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::disabled();
        for n in 1..=5 {
            assert_eq!(run(&store, &mut cache, "k", 1, 1), (n, Guess::NotTried));
        }
        assert_eq!(store.gets.get(), 5);
    }

    #[test]
    fn a_refusal_from_the_remembered_value_is_checked_by_a_read() {
        let store = EnvoyStore::default();
        store.set("k", &[0, 0], None).unwrap();
        let mut cache = WriteCache::new();
        run(&store, &mut cache, "k", 1, 1);
        run(&store, &mut cache, "k", 1, 1);
        let gets = store.gets.get();
        let (outcome, guess) = update(
            &store,
            &mut cache,
            target("k", 1, 1),
            None,
            written_after,
            |v| (v.map(|v| v[0]), None),
        );
        assert_eq!(
            outcome,
            UpdateOutcome::Done {
                result: Some(2),
                retries: 0
            }
        );
        assert_eq!(guess, Guess::NotTried);
        assert_eq!(store.gets.get(), gets + 1);
    }
}
