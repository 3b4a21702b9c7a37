//! DPoP proofs seen recently, across every worker, in bounded memory: a
//! proof's `jti` is accepted once (RFC 9449 section 11.1).
//!
//! Envoy cannot delete shared-data keys, so a key per proof would grow
//! without bound. Like the rate limiter's buckets, each provider owns a fixed
//! table of `sets × 8` slots, created when the configuration loads: a
//! proof's fingerprint (SHA-256 of its key thumbprint and `jti`) picks its
//! set, and the set is read and written with one CAS token, so two workers
//! can never both accept the same proof. A slot is kept until the proof
//! could no longer pass the `iat` check (`iat + max_age + skew`), then
//! reused. When every slot of a set holds a live proof, a new proof cannot
//! be remembered and is refused (503): accepting it would open a replay.
//!
//! Value layout (little endian): `version: u8, ways: u8`, then per slot
//! `fingerprint: u64 (0 = free), until: i64` (seconds since the epoch).

use palisade_shared::store::{update, SharedStore, UpdateOutcome};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const HEADER_LEN: usize = 2;
const SLOT_LEN: usize = 16;
/// Slots per shared-data key.
pub const WAYS: u32 = 8;

/// A provider's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTable {
    sets: u32,
    key_prefix: String,
}

/// What recording a proof came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time: remembered until its `until`.
    Fresh,
    /// Seen before and still live: a replay.
    Replayed,
    /// Every slot of its set holds a live proof.
    Full,
    /// The shared store failed or stayed contended.
    Unavailable,
}

/// Where a proof sits and how it is known: its set and its fingerprint
/// (never 0, which marks a free slot).
pub fn fingerprint(jkt: &str, jti: &str) -> (u64, u32) {
    let digest = Sha256::new()
        .chain_update(jkt.as_bytes())
        .chain_update([0])
        .chain_update(jti.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut second = [0u8; 4];
    second.copy_from_slice(&digest[8..12]);
    let fp = u64::from_le_bytes(first).max(1);
    (fp, u32::from_le_bytes(second))
}

impl ReplayTable {
    /// A table of at least `entries` slots under `<key_prefix><set>`.
    pub fn new(entries: u32, key_prefix: impl Into<String>) -> Self {
        ReplayTable {
            sets: entries.div_ceil(WAYS).max(1),
            key_prefix: key_prefix.into(),
        }
    }

    /// How many proofs it holds at most.
    pub fn capacity(&self) -> u64 {
        u64::from(self.sets) * u64::from(WAYS)
    }

    /// Shared-data keys.
    pub fn sets(&self) -> u32 {
        self.sets
    }

    /// The key of a set.
    pub fn key(&self, set: u32) -> String {
        format!("{}{set}", self.key_prefix)
    }

    fn empty() -> Vec<u8> {
        let mut v = vec![0u8; HEADER_LEN + SLOT_LEN * WAYS as usize];
        v[0] = VERSION;
        v[1] = WAYS as u8;
        v
    }

    /// Creates every set that does not exist yet (a key never written has
    /// no CAS token, so two workers creating one could both win: creating
    /// them before any proof arrives closes that window).
    pub fn create(&self, store: &dyn SharedStore) -> Result<(), String> {
        for set in 0..self.sets {
            let key = self.key(set);
            match store.get(&key) {
                Ok((Some(_), _)) => {}
                Ok((None, _)) => store
                    .set(&key, &Self::empty(), None)
                    .map_err(|e| format!("cannot create {key}: {e:?}"))?,
                Err(e) => return Err(format!("cannot read {key}: {e:?}")),
            }
        }
        Ok(())
    }

    /// Records the proof `(fp, set_hint)` from [`fingerprint`], live until
    /// `until`, at time `now` (seconds).
    pub fn record(
        &self,
        store: &dyn SharedStore,
        (fp, set_hint): (u64, u32),
        now: i64,
        until: i64,
    ) -> Recorded {
        let key = self.key(set_hint % self.sets);
        let outcome = update(store, &key, 8, |current| {
            let mut value = match current {
                Some(v) if v.len() == HEADER_LEN + SLOT_LEN * WAYS as usize && v[0] == VERSION => {
                    v.to_vec()
                }
                // Absent or of another layout: an empty set (the next write
                // replaces it).
                _ => Self::empty(),
            };
            let mut free = None;
            for way in 0..WAYS as usize {
                let at = HEADER_LEN + way * SLOT_LEN;
                let slot_fp = read_u64(&value, at);
                let slot_until = read_u64(&value, at + 8) as i64;
                let live = slot_fp != 0 && slot_until >= now;
                if live && slot_fp == fp {
                    return (Recorded::Replayed, None);
                }
                if !live && free.is_none() {
                    free = Some(at);
                }
            }
            let Some(at) = free else {
                return (Recorded::Full, None);
            };
            value[at..at + 8].copy_from_slice(&fp.to_le_bytes());
            value[at + 8..at + 16].copy_from_slice(&until.to_le_bytes());
            (Recorded::Fresh, Some(value))
        });
        match outcome {
            UpdateOutcome::Done { result, .. } => result,
            UpdateOutcome::RetriesExhausted { .. } | UpdateOutcome::HostError => {
                Recorded::Unavailable
            }
        }
    }
}

fn read_u64(value: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(src) = value.get(at..at + 8) {
        bytes.copy_from_slice(src);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::store::MemoryStore;

    #[test]
    fn a_proof_is_accepted_once_until_it_expires() {
        let store = MemoryStore::new();
        let table = ReplayTable::new(64, "t.");
        table.create(&store).unwrap();
        let p = fingerprint("jkt-a", "jti-1");
        assert_eq!(table.record(&store, p, 100, 170), Recorded::Fresh);
        assert_eq!(table.record(&store, p, 150, 220), Recorded::Replayed);
        assert_eq!(table.record(&store, p, 170, 240), Recorded::Replayed);
        // Past its `until` the slot is free again (the proof itself would
        // now fail the iat check).
        assert_eq!(table.record(&store, p, 171, 241), Recorded::Fresh);
        // Another key with the same jti is another proof.
        assert_eq!(
            table.record(&store, fingerprint("jkt-b", "jti-1"), 171, 241),
            Recorded::Fresh
        );
    }

    #[test]
    fn memory_is_bounded_and_a_full_set_refuses() {
        let store = MemoryStore::new();
        let table = ReplayTable::new(64, "t.");
        assert_eq!(table.capacity(), 64);
        assert_eq!(table.sets(), 8);
        table.create(&store).unwrap();
        // Nine live proofs for one set: the ninth cannot be remembered.
        let same_set: Vec<(u64, u32)> = (0..9u64).map(|i| (i + 1, 3)).collect();
        for p in &same_set[..8] {
            assert_eq!(table.record(&store, *p, 100, 200), Recorded::Fresh);
        }
        assert_eq!(table.record(&store, same_set[8], 100, 200), Recorded::Full);
        // Once they expire the set takes new proofs.
        assert_eq!(table.record(&store, same_set[8], 201, 300), Recorded::Fresh);
        // No more keys than sets, ever.
        for i in 0..10_000u32 {
            let _ = table.record(&store, fingerprint("k", &i.to_string()), 100, 200);
        }
        for set in 0..table.sets() + 1 {
            let exists = store.get(&table.key(set)).unwrap().0.is_some();
            assert_eq!(exists, set < table.sets(), "set {set}");
        }
    }

    #[test]
    fn concurrent_writers_are_retried_and_a_stuck_store_is_unavailable() {
        let store = MemoryStore::new();
        let table = ReplayTable::new(8, "t.");
        table.create(&store).unwrap();
        store.inject_conflicts(3);
        let p = fingerprint("k", "j");
        assert_eq!(table.record(&store, p, 1, 2), Recorded::Fresh);
        assert_eq!(table.record(&store, p, 1, 2), Recorded::Replayed);
        store.inject_conflicts(100);
        assert_eq!(
            table.record(&store, fingerprint("k", "other"), 1, 2),
            Recorded::Unavailable
        );
    }
}
