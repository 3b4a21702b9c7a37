//! A rule's buckets in shared data: a fixed table of slots, in bounded memory.
//!
//! Envoy cannot delete shared-data keys, so a key per client would grow
//! without bound under an address-spraying attack. Instead each rule owns a
//! fixed table of `sets × ways` slots, created when the configuration loads:
//! `sets` shared-data keys, each holding `ways` slots. A client's key hash
//! picks its set; inside the set a slot records the owner's hash, so reuse
//! and collisions are detected, never silently shared.
//!
//! A whole set is one shared-data value, read and written with one CAS token.
//! That is what makes placement safe under concurrency: finding a client's
//! slot, claiming a free one and spending from it are a single atomic update,
//! so two workers can never give one client two slots (which would double its
//! burst), whatever the timing.
//!
//! A slot is reusable when it is free or when its bucket has refilled to
//! full: a full bucket is indistinguishable from a new one, so handing it to
//! another client loses nothing. When every slot of a set is busy, the rule's
//! [`TableFullAction`] decides.
//!
//! The default, [`TableFullAction::Evict`], keeps every client served while
//! an attacker sprays distinct keys: a new client takes the slot whose bucket
//! holds the most whole tokens (its owner spent the least) and, among those,
//! the one claimed last. A key sprayed once spends one request's cost, no
//! more than any client that made a request, and every sprayed key that
//! arrives in a set after a client claimed its slot is a later claim: from
//! then on the spray only ever evicts its own keys, and the client keeps its
//! bucket, exactly. An evicted owner loses nothing it is owed: its bucket
//! starts again full if it comes back (it gains at most what it had spent).
//!
//! Value layout (little endian): `version: u8, ways: u8, fingerprint: u64`,
//! then per slot `owner: u64 (0 = free), level: u128, updated_ns: u64,
//! claim: u64` (the claim's order in the set). A value with another version, way count or bucket
//! fingerprint is read as an empty set (the operator changed the rule), and
//! the next write replaces it.

use std::borrow::Cow;

use crate::bucket::{BucketSpec, BucketState};

const VERSION: u8 = 2;
const HEADER_LEN: usize = 10;
const SLOT_LEN: usize = 40;

/// The most slots in one set.
pub const MAX_WAYS: u32 = 8;

/// Tables with at most this many sets keep their key strings ready, so the
/// request path formats nothing.
const PREFORMATTED_KEYS: u32 = 1024;

/// What to do with a client that has no slot when every slot of its set is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFullAction {
    /// Refuse the request (until a slot of its set refills).
    Deny,
    /// Let the request through without a bucket.
    Allow,
    /// The default: take over the slot whose bucket holds the most whole
    /// tokens, among those the one claimed last; its owner starts again from
    /// a full bucket if it comes back.
    Evict,
}

/// The shape of one rule's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    sets: u32,
    ways: u32,
    key_prefix: String,
    keys: Vec<String>,
}

impl TableSpec {
    /// A table with room for at least `slots` buckets (rounded up to whole
    /// sets of up to [`MAX_WAYS`] slots), under shared-data keys
    /// `<key_prefix><set>`.
    pub fn new(slots: u32, key_prefix: impl Into<String>) -> Self {
        let slots = slots.max(1);
        let ways = slots.min(MAX_WAYS);
        let sets = slots.div_ceil(ways);
        let key_prefix = key_prefix.into();
        let keys = if sets <= PREFORMATTED_KEYS {
            (0..sets).map(|set| format!("{key_prefix}{set}")).collect()
        } else {
            Vec::new()
        };
        TableSpec {
            sets,
            ways,
            key_prefix,
            keys,
        }
    }

    /// Number of shared-data keys.
    pub fn sets(&self) -> u32 {
        self.sets
    }

    /// Slots per key.
    pub fn ways(&self) -> u32 {
        self.ways
    }

    /// Total slots: the most clients with a bucket at once.
    pub fn slots(&self) -> u64 {
        u64::from(self.sets) * u64::from(self.ways)
    }

    /// The shared-data key of a set.
    pub fn key(&self, set: u32) -> Cow<'_, str> {
        match self.keys.get(set as usize) {
            Some(key) => Cow::Borrowed(key),
            None => Cow::Owned(format!("{}{set}", self.key_prefix)),
        }
    }

    /// Where a client key hash lives: its set, and the owner tag stored in
    /// the slot (never 0, which marks a free slot).
    pub fn place(&self, key_hash: u64) -> (u32, u64) {
        let set = key_hash.rotate_right(32) % u64::from(self.sets);
        let owner = if key_hash == 0 { 1 } else { key_hash };
        (u32::try_from(set).unwrap_or(0), owner)
    }

    /// The value a set key is created with: every slot free.
    pub fn empty_value(&self, bucket: &BucketSpec) -> Vec<u8> {
        Set::empty(self.ways).encode(bucket.fingerprint())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    owner: u64,
    state: BucketState,
    /// The order of the owner's claim in its set: one more than the newest
    /// claim in the set when it was made. Not a time: workers decide at
    /// their own tick clocks, which can disagree on the order of claims a
    /// few milliseconds apart; the set's CAS serializes claims exactly.
    claim: u64,
}

const FREE: Slot = Slot {
    owner: 0,
    state: BucketState {
        level: 0,
        updated_ns: 0,
    },
    claim: 0,
};

/// A decoded set (a fixed array: decoding allocates nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    all: [Slot; MAX_WAYS as usize],
    ways: usize,
}

impl Set {
    fn empty(ways: u32) -> Self {
        Set {
            all: [FREE; MAX_WAYS as usize],
            ways: (ways as usize).min(MAX_WAYS as usize),
        }
    }

    fn slots(&self) -> &[Slot] {
        &self.all[..self.ways]
    }

    fn slots_mut(&mut self) -> &mut [Slot] {
        &mut self.all[..self.ways]
    }

    fn decode(value: Option<&[u8]>, ways: u32, fingerprint: u64) -> Self {
        let Some(bytes) = value else {
            return Set::empty(ways);
        };
        let mut set = Set::empty(ways);
        let expected_len = HEADER_LEN + SLOT_LEN * set.ways;
        if bytes.len() != expected_len
            || bytes[0] != VERSION
            || usize::from(bytes[1]) != set.ways
            || read_u64(&bytes[2..10]) != fingerprint
        {
            return set;
        }
        for (slot, chunk) in set
            .slots_mut()
            .iter_mut()
            .zip(bytes[HEADER_LEN..].chunks_exact(SLOT_LEN))
        {
            *slot = Slot {
                owner: read_u64(&chunk[0..8]),
                state: BucketState {
                    level: read_u128(&chunk[8..24]),
                    updated_ns: read_u64(&chunk[24..32]),
                },
                claim: read_u64(&chunk[32..40]),
            };
        }
        set
    }

    fn encode(&self, fingerprint: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + SLOT_LEN * self.ways);
        out.push(VERSION);
        out.push(u8::try_from(self.ways).unwrap_or(u8::MAX));
        out.extend_from_slice(&fingerprint.to_le_bytes());
        for slot in self.slots() {
            out.extend_from_slice(&slot.owner.to_le_bytes());
            out.extend_from_slice(&slot.state.level.to_le_bytes());
            out.extend_from_slice(&slot.state.updated_ns.to_le_bytes());
            out.extend_from_slice(&slot.claim.to_le_bytes());
        }
        out
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(a)
}

fn read_u128(bytes: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[..16]);
    u128::from_le_bytes(a)
}

/// One client's request against one rule's table.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The bucket parameters.
    pub bucket: &'a BucketSpec,
    /// The table shape.
    pub table: &'a TableSpec,
    /// The client's owner tag (from [`TableSpec::place`]).
    pub owner: u64,
    /// Tokens this request costs.
    pub cost: u64,
    /// What to do when the set has no slot for this client.
    pub on_full: TableFullAction,
    /// Monotonic time, nanoseconds.
    pub now_ns: u64,
}

/// What a set says about a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The bucket has the tokens; `after` is its state once they are taken.
    Spend {
        /// The bucket after spending.
        after: BucketState,
        /// Whether spending claims a slot (free, idle or evicted).
        claimed: bool,
        /// Whether the claimed slot was taken from a busy owner ([`TableFullAction::Evict`]).
        evicted: bool,
    },
    /// Too few tokens; `state` is the bucket now.
    Empty {
        /// The bucket now.
        state: BucketState,
    },
    /// No slot for this client and the rule denies ([`TableFullAction::Deny`]);
    /// a slot frees in `retry_ns` at the earliest.
    TableFull {
        /// Nanoseconds until some slot of the set is idle.
        retry_ns: u64,
    },
    /// No slot for this client and the rule lets it through ([`TableFullAction::Allow`]).
    Unmetered,
}

impl Verdict {
    /// Whether the rule lets the request through.
    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Spend { .. } | Verdict::Unmetered)
    }
}

/// Where a client's bucket is in a set, and its state now.
struct Placed {
    index: usize,
    state: BucketState,
    claimed: bool,
    evicted: bool,
    /// The slot's place in its set's claim order.
    claim: u64,
}

/// Finds the client's slot in `set`, or a free, idle or (with
/// [`TableFullAction::Evict`]) evicted one for a new client; `Err` is the
/// verdict when there is none.
fn locate(set: &Set, ask: &Ask<'_>) -> Result<Placed, Verdict> {
    let spec = ask.bucket;
    let now = ask.now_ns;
    // A new claim comes after every claim in the set; an owner keeps its own.
    let claim = set
        .slots()
        .iter()
        .map(|s| s.claim)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let placed = |index, state, claimed, evicted, claim| Placed {
        index,
        state,
        claimed,
        evicted,
        claim,
    };
    if let Some(i) = set.slots().iter().position(|s| s.owner == ask.owner) {
        let slot = &set.slots()[i];
        return Ok(placed(
            i,
            slot.state.refilled(spec, now),
            false,
            false,
            slot.claim,
        ));
    }
    if let Some(i) = set
        .slots()
        .iter()
        .position(|s| s.owner == 0 || s.state.refilled(spec, now).is_full(spec))
    {
        return Ok(placed(i, BucketState::full(spec, now), true, false, claim));
    }
    match ask.on_full {
        TableFullAction::Deny => {
            let retry_ns = set
                .slots()
                .iter()
                .map(|s| s.state.refilled(spec, now).nanos_until_full(spec))
                .min()
                .unwrap_or(0);
            Err(Verdict::TableFull { retry_ns })
        }
        TableFullAction::Allow => Err(Verdict::Unmetered),
        TableFullAction::Evict => Ok(placed(
            eviction_victim(set, spec, now),
            BucketState::full(spec, now),
            true,
            true,
            claim,
        )),
    }
}

/// Reads a set value (`None`: the key does not exist yet) and decides,
/// returning the verdict and, when tokens are to be spent, the new value.
pub fn evaluate(value: Option<&[u8]>, ask: &Ask<'_>) -> (Verdict, Option<Vec<u8>>) {
    let fingerprint = ask.bucket.fingerprint();
    let mut set = Set::decode(value, ask.table.ways, fingerprint);
    let spec = ask.bucket;
    let Placed {
        index,
        state,
        claimed,
        evicted,
        claim,
    } = match locate(&set, ask) {
        Ok(placed) => placed,
        Err(verdict) => return (verdict, None),
    };

    match state.take(spec, ask.cost) {
        Some(after) => {
            if let Some(slot) = set.slots_mut().get_mut(index) {
                *slot = Slot {
                    owner: ask.owner,
                    state: after,
                    claim,
                };
            }
            let value = set.encode(fingerprint);
            (
                Verdict::Spend {
                    after,
                    claimed,
                    evicted,
                },
                Some(value),
            )
        }
        None => (Verdict::Empty { state }, None),
    }
}

/// The slot a new client takes from a full set: the bucket with the most
/// whole tokens (its owner spent the least, and gets it all back as a full
/// bucket if it returns), among those the one claimed last. Whole tokens, not
/// the exact level: an older one-off key has refilled a fraction more than a
/// newer one, which must not make it the victim before the newer one. The
/// claim order is what protects a client from keys that arrive after it: the
/// newest claim among equals is always one of theirs.
fn eviction_victim(set: &Set, spec: &BucketSpec, now_ns: u64) -> usize {
    set.slots()
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (s.state.refilled(spec, now_ns).tokens(spec), s.claim, *i))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Charges `cost` tokens to the client's bucket after the fact (the real
/// cost of a request, known once it is over): the bucket is emptied rather
/// than refused when it holds fewer, so what was used is never forgiven
/// beyond what the bucket held. A client without a slot gets one as in
/// [`evaluate`]. Returns the bucket after the charge and the new value;
/// `(None, None)` when no slot could be had (the table is full).
pub fn charge(value: Option<&[u8]>, ask: &Ask<'_>) -> (Option<BucketState>, Option<Vec<u8>>) {
    let fingerprint = ask.bucket.fingerprint();
    let mut set = Set::decode(value, ask.table.ways, fingerprint);
    let Ok(placed) = locate(&set, ask) else {
        return (None, None);
    };
    let after = placed.state.take_saturating(ask.bucket, ask.cost);
    if let Some(slot) = set.slots_mut().get_mut(placed.index) {
        *slot = Slot {
            owner: ask.owner,
            state: after,
            claim: placed.claim,
        };
    }
    (Some(after), Some(set.encode(fingerprint)))
}

/// Gives `cost` tokens back to the client's bucket (undoing a spend when
/// another rule refused the request). Returns the new value, or `None` when
/// the client no longer has a slot (its bucket was full and reused, so there
/// is nothing to give back).
pub fn give_back(value: Option<&[u8]>, ask: &Ask<'_>) -> Option<Vec<u8>> {
    let fingerprint = ask.bucket.fingerprint();
    let mut set = Set::decode(value, ask.table.ways, fingerprint);
    let slot = set.slots_mut().iter_mut().find(|s| s.owner == ask.owner)?;
    slot.state = slot.state.give_back(ask.bucket, ask.cost);
    Some(set.encode(fingerprint))
}

/// The client's bucket in a set value as it is at `ask.now_ns`, `None`
/// when the client has no slot (its bucket is full, as a new one).
pub fn bucket_of(value: Option<&[u8]>, ask: &Ask<'_>) -> Option<BucketState> {
    Set::decode(value, ask.table.ways, ask.bucket.fingerprint())
        .slots()
        .iter()
        .find(|s| s.owner == ask.owner)
        .map(|s| s.state.refilled(ask.bucket, ask.now_ns))
}

/// The newest bucket timestamp in a set value (0 for a value of another
/// layout). Every timestamp in a value was read from the monotonic clock
/// before the value was written, so the value was written at or after it.
pub fn written_after_ns(value: &[u8]) -> u64 {
    let Some(slots) = value.get(HEADER_LEN..) else {
        return 0;
    };
    if value.first() != Some(&VERSION) || slots.len() % SLOT_LEN != 0 {
        return 0;
    }
    slots
        .chunks_exact(SLOT_LEN)
        .map(|slot| read_u64(&slot[24..32]))
        .max()
        .unwrap_or(0)
}

/// How many slots of a set value hold a bucket that is not yet full at
/// `now_ns` (for tests and diagnostics).
pub fn busy_slots(
    value: Option<&[u8]>,
    bucket: &BucketSpec,
    table: &TableSpec,
    now_ns: u64,
) -> usize {
    Set::decode(value, table.ways, bucket.fingerprint())
        .slots()
        .iter()
        .filter(|s| s.owner != 0 && !s.state.refilled(bucket, now_ns).is_full(bucket))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ask<'a>(bucket: &'a BucketSpec, table: &'a TableSpec, owner: u64, now_ns: u64) -> Ask<'a> {
        Ask {
            bucket,
            table,
            owner,
            cost: 1,
            on_full: TableFullAction::Deny,
            now_ns,
        }
    }

    #[test]
    fn table_shape_rounds_up_to_whole_sets() {
        let t = TableSpec::new(1, "k/");
        assert_eq!((t.sets(), t.ways(), t.slots()), (1, 1, 1));
        let t = TableSpec::new(10, "k/");
        assert_eq!((t.sets(), t.ways(), t.slots()), (2, 8, 16));
        let t = TableSpec::new(4096, "k/");
        assert_eq!((t.sets(), t.ways()), (512, 8));
        assert_eq!(t.key(7), "k/7");
        assert_eq!(TableSpec::new(0, "k/").slots(), 1);
    }

    #[test]
    fn placement_is_deterministic_and_owner_is_never_free() {
        let t = TableSpec::new(64, "k/");
        assert_eq!(t.place(12345), t.place(12345));
        assert_eq!(t.place(0).1, 1);
        let (set, _) = t.place(u64::MAX);
        assert!(set < t.sets());
    }

    #[test]
    fn encoding_round_trips_and_rejects_other_layouts() {
        let bucket = BucketSpec::new(5, 1, SEC);
        let table = TableSpec::new(4, "k/");
        let (v, value) = evaluate(None, &ask(&bucket, &table, 42, 7));
        assert!(matches!(v, Verdict::Spend { claimed: true, .. }));
        let value = value.unwrap();
        assert_eq!(value.len(), HEADER_LEN + 4 * SLOT_LEN);
        let set = Set::decode(Some(&value), 4, bucket.fingerprint());
        assert_eq!(set.slots()[0].owner, 42);
        assert_eq!(set.encode(bucket.fingerprint()), value);
        // Another bucket fingerprint, way count or version: an empty set.
        let other = BucketSpec::new(6, 1, SEC);
        assert_eq!(
            Set::decode(Some(&value), 4, other.fingerprint()),
            Set::empty(4)
        );
        assert_eq!(
            Set::decode(Some(&value), 8, bucket.fingerprint()),
            Set::empty(8)
        );
        let mut bad = value.clone();
        bad[0] = 9;
        assert_eq!(
            Set::decode(Some(&bad), 4, bucket.fingerprint()),
            Set::empty(4)
        );
        assert_eq!(
            Set::decode(Some(&value[..20]), 4, bucket.fingerprint()),
            Set::empty(4)
        );
    }

    #[test]
    fn a_client_keeps_its_slot_and_spends_down_to_empty() {
        let bucket = BucketSpec::new(2, 1, 60 * SEC);
        let table = TableSpec::new(4, "k/");
        let a = ask(&bucket, &table, 7, 0);
        let (v1, value) = evaluate(None, &a);
        assert!(matches!(v1, Verdict::Spend { claimed: true, .. }));
        let (v2, value) = evaluate(value.as_deref(), &a);
        assert!(matches!(v2, Verdict::Spend { claimed: false, .. }));
        let value = value.unwrap();
        let (v3, none) = evaluate(Some(&value), &a);
        assert!(matches!(v3, Verdict::Empty { .. }), "{v3:?}");
        assert!(none.is_none(), "a refusal writes nothing");
        // The empty bucket still belongs to client 7 (no second slot).
        assert_eq!(busy_slots(Some(&value), &bucket, &table, 0), 1);
    }

    #[test]
    fn full_buckets_are_reused_busy_ones_are_not() {
        let bucket = BucketSpec::new(1, 1, SEC);
        let table = TableSpec::new(2, "k/");
        let (_, value) = evaluate(None, &ask(&bucket, &table, 1, 0));
        let (_, value) = evaluate(value.as_deref(), &ask(&bucket, &table, 2, 0));
        // Both slots busy: a third client is refused, told when one frees.
        let (v, none) = evaluate(value.as_deref(), &ask(&bucket, &table, 3, SEC / 4));
        assert_eq!(
            v,
            Verdict::TableFull {
                retry_ns: 3 * SEC / 4
            }
        );
        assert!(none.is_none());
        // A second later both buckets are full again: client 3 reuses one.
        let (v, value) = evaluate(value.as_deref(), &ask(&bucket, &table, 3, SEC));
        assert!(matches!(
            v,
            Verdict::Spend {
                claimed: true,
                evicted: false,
                ..
            }
        ));
        let set = Set::decode(value.as_deref(), 2, bucket.fingerprint());
        assert_eq!(set.slots().iter().filter(|s| s.owner == 3).count(), 1);
    }

    #[test]
    fn a_late_charge_claims_a_slot_and_empties_at_most() {
        let bucket = BucketSpec::new(10, 1, 60 * SEC);
        let table = TableSpec::new(1, "k/");
        let charge_of = |owner, cost| Ask {
            cost,
            ..ask(&bucket, &table, owner, 0)
        };
        let (after, value) = charge(None, &charge_of(7, 4));
        assert_eq!(after.unwrap().tokens(&bucket), 6);
        let (after, value) = charge(value.as_deref(), &charge_of(7, 40));
        assert_eq!(after.unwrap().tokens(&bucket), 0);
        assert_eq!(bucket_of(value.as_deref(), &charge_of(7, 0)), after);
        // The only slot is busy: another client's charge finds none.
        assert_eq!(charge(value.as_deref(), &charge_of(8, 1)), (None, None));
    }

    #[test]
    fn table_full_actions() {
        let bucket = BucketSpec::new(4, 1, SEC);
        let table = TableSpec::new(2, "k/");
        let mut value = None;
        // Client 1 spends 3 tokens, client 2 spends 1.
        for owner in [1, 1, 1, 2] {
            value = evaluate(value.as_deref(), &ask(&bucket, &table, owner, 0)).1;
        }
        let mut allow = ask(&bucket, &table, 3, 0);
        allow.on_full = TableFullAction::Allow;
        assert_eq!(
            evaluate(value.as_deref(), &allow),
            (Verdict::Unmetered, None)
        );

        let mut evict = ask(&bucket, &table, 3, 0);
        evict.on_full = TableFullAction::Evict;
        let (v, new_value) = evaluate(value.as_deref(), &evict);
        assert!(matches!(
            v,
            Verdict::Spend {
                claimed: true,
                evicted: true,
                ..
            }
        ));
        let set = Set::decode(new_value.as_deref(), 2, bucket.fingerprint());
        let owners: Vec<u64> = set.slots().iter().map(|s| s.owner).collect();
        // Client 2 (3 tokens left) was closest to full and lost its slot.
        assert_eq!(owners, vec![1, 3]);
    }

    /// A set of slots `(owner, tokens spent, claimed_ns)`, each spent when
    /// claimed, for a bucket of 10 that refills one token a minute.
    fn set_of(slots: &[(u64, u64, u64)]) -> (BucketSpec, Set) {
        let bucket = BucketSpec::new(10, 1, 60 * SEC);
        let mut set = Set::empty(u32::try_from(slots.len()).unwrap());
        for (slot, &(owner, spent, claimed_ns)) in set.slots_mut().iter_mut().zip(slots) {
            *slot = Slot {
                owner,
                state: BucketState::full(&bucket, claimed_ns)
                    .take(&bucket, spent)
                    .unwrap(),
                claim: claimed_ns,
            };
        }
        (bucket, set)
    }

    /// Slots as `(owner, tokens spent, claimed_ns)`.
    type Slots = &'static [(u64, u64, u64)];

    #[test]
    fn the_victim_spent_least_and_claimed_last() {
        // (slots, time of the choice, victim's owner)
        let cases: &[(Slots, u64, u64)] = &[
            // Fewest tokens spent wins over the claim order.
            (&[(1, 3, 10), (2, 1, 5), (3, 2, 20)], 100, 2),
            // Equal spend: the newest claim goes, never the older client.
            (&[(1, 1, 10), (2, 1, 30), (3, 1, 20)], 100, 2),
            (&[(7, 1, 0), (8, 1, 1)], 100, 8),
            // Spend compares in whole tokens: 30 s after it, client 1 has
            // refilled half a token more than client 2, still the same whole
            // tokens, so the newer claim (2) goes.
            (&[(1, 1, 0), (2, 1, 30 * SEC)], 30 * SEC, 2),
            // A minute later client 1 has a whole token more: it spent less.
            (&[(1, 2, 0), (2, 2, 30 * SEC)], 60 * SEC, 1),
            // A heavy client is never the victim of a one-off key.
            (&[(1, 9, 0), (2, 1, 50), (3, 1, 40)], 100, 2),
            // Ties in everything: the last slot, deterministically.
            (&[(1, 1, 5), (2, 1, 5)], 100, 2),
        ];
        for (slots, now, victim) in cases {
            let (bucket, set) = set_of(slots);
            let i = eviction_victim(&set, &bucket, *now);
            assert_eq!(set.slots()[i].owner, *victim, "{slots:?} at {now}");
        }
    }

    /// The spray of the issue, in one set: a steady client holds a slot, then
    /// one-off keys arrive without end. The steady client spends exactly its
    /// limit, a client arriving in the middle of the spray is served, and
    /// the set never grows.
    #[test]
    fn a_spray_of_one_off_keys_evicts_only_its_own_keys() {
        let bucket = BucketSpec::new(5, 5, 3600 * SEC);
        let table = TableSpec::new(8, "k/");
        let evict = |owner: u64, now_ns: u64| Ask {
            on_full: TableFullAction::Evict,
            ..ask(&bucket, &table, owner, now_ns)
        };
        let mut value: Option<Vec<u8>> = None;
        let step = |owner: u64, now_ns: u64, value: &mut Option<Vec<u8>>| {
            let (verdict, written) = evaluate(value.as_deref(), &evict(owner, now_ns));
            if let Some(w) = written {
                *value = Some(w);
            }
            verdict
        };
        let steady = 1;
        let mut steady_allowed = 0;
        let mut spray_key = 1000;
        for round in 0..40u64 {
            let now = round * SEC;
            if step(steady, now, &mut value).passes() {
                steady_allowed += 1;
            }
            // 50 one-off keys between two requests of the steady client.
            for _ in 0..50 {
                spray_key += 1;
                assert!(matches!(
                    step(spray_key, now, &mut value),
                    Verdict::Spend { claimed: true, .. }
                ));
            }
            if round == 20 {
                // A newcomer in the middle of the spray gets a bucket.
                assert!(step(2, now, &mut value).passes());
            }
        }
        assert_eq!(steady_allowed, 5, "the steady client keeps its exact limit");
        let set = Set::decode(value.as_deref(), 8, bucket.fingerprint());
        assert!(set.slots().iter().any(|s| s.owner == steady));
        assert_eq!(value.map(|v| v.len()), Some(HEADER_LEN + 8 * SLOT_LEN));
    }

    #[test]
    fn deny_and_allow_keep_the_owners_and_evict_takes_the_spent_least() {
        let bucket = BucketSpec::new(3, 1, 60 * SEC);
        let table = TableSpec::new(2, "k/");
        let mut value = None;
        for owner in [1, 1, 2] {
            value = evaluate(value.as_deref(), &ask(&bucket, &table, owner, 0)).1;
        }
        // (action, expected verdict kind, owners after)
        let cases = [
            (TableFullAction::Deny, "table_full", [1, 2]),
            (TableFullAction::Allow, "unmetered", [1, 2]),
            (TableFullAction::Evict, "evicted", [1, 3]),
        ];
        for (action, kind, owners) in cases {
            let a = Ask {
                on_full: action,
                ..ask(&bucket, &table, 3, SEC)
            };
            let (verdict, written) = evaluate(value.as_deref(), &a);
            let got = match verdict {
                Verdict::TableFull { .. } => "table_full",
                Verdict::Unmetered => "unmetered",
                Verdict::Spend { evicted: true, .. } => "evicted",
                _ => "other",
            };
            assert_eq!(got, kind, "{action:?}");
            let after = written.or_else(|| value.clone());
            let set = Set::decode(after.as_deref(), 2, bucket.fingerprint());
            let now: Vec<u64> = set.slots().iter().map(|s| s.owner).collect();
            assert_eq!(now, owners, "{action:?}");
        }
    }

    #[test]
    fn claims_are_ordered_by_the_set_not_by_the_clock() {
        let bucket = BucketSpec::new(5, 1, 60 * SEC);
        let table = TableSpec::new(2, "k/");
        // Client 4 claims at 9 s on one worker, then client 5 at 7 s on a
        // worker whose tick clock is behind: 5 is still the later claim.
        let (_, value) = evaluate(None, &ask(&bucket, &table, 4, 9 * SEC));
        let (_, value) = evaluate(value.as_deref(), &ask(&bucket, &table, 5, 7 * SEC));
        let (_, value) = evaluate(value.as_deref(), &ask(&bucket, &table, 4, 10 * SEC));
        let claims = |value: &Option<Vec<u8>>| -> Vec<(u64, u64)> {
            let set = Set::decode(value.as_deref(), 2, bucket.fingerprint());
            set.slots().iter().map(|s| (s.owner, s.claim)).collect()
        };
        assert_eq!(claims(&value), [(4, 1), (5, 2)], "an owner keeps its claim");
        // Client 4 spent two tokens, client 5 one: a newcomer at 10 s (client
        // 5's bucket has refilled a little: whole tokens) evicts 5.
        let newcomer = Ask {
            on_full: TableFullAction::Evict,
            ..ask(&bucket, &table, 6, 10 * SEC)
        };
        let (_, value) = evaluate(value.as_deref(), &newcomer);
        assert_eq!(claims(&value), [(4, 1), (6, 3)]);
    }

    #[test]
    fn give_back_restores_the_owner_only() {
        let bucket = BucketSpec::new(3, 1, 60 * SEC);
        let table = TableSpec::new(1, "k/");
        let a = ask(&bucket, &table, 9, 0);
        let (_, value) = evaluate(None, &a);
        let (Verdict::Spend { after, .. }, _) = evaluate(value.as_deref(), &a) else {
            panic!("expected a spend");
        };
        assert_eq!(after.tokens(&bucket), 1);
        let restored = give_back(value.as_deref(), &a).unwrap();
        let (Verdict::Spend { after, .. }, _) = evaluate(Some(&restored), &a) else {
            panic!("expected a spend");
        };
        // 3 - 1 (first spend) + 1 (given back) - 1 (this evaluation) = 2.
        assert_eq!(after.tokens(&bucket), 2);
        // Another owner has nothing to give back.
        assert!(give_back(value.as_deref(), &ask(&bucket, &table, 10, 0)).is_none());
    }

    #[test]
    fn empty_value_is_a_free_set() {
        let bucket = BucketSpec::new(3, 1, SEC);
        let table = TableSpec::new(8, "k/");
        let empty = table.empty_value(&bucket);
        assert_eq!(busy_slots(Some(&empty), &bucket, &table, 0), 0);
        assert_eq!(
            Set::decode(Some(&empty), 8, bucket.fingerprint()),
            Set::empty(8)
        );
    }
}
