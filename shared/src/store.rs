//! Compare-and-swap updates over proxy-wasm shared data.
//!
//! Envoy runs one wasm VM per worker thread; shared data is the one store they
//! all see. A value is read with its CAS token and written back only if nobody
//! wrote in between; on a mismatch the update is computed again from the new
//! value. [`update`] bounds those retries, so a hot key cannot make a request
//! spin forever: the caller decides what running out means.

/// Why a shared-data operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read.
    CasMismatch,
    /// The host refused the operation (any other status).
    Host,
}

/// A key-value store with CAS tokens: proxy-wasm shared data, or a fake in tests.
pub trait SharedStore {
    /// The value of `key` and its CAS token; `(None, None)` when absent.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value` if the key's CAS token still is `cas`. `None` or
    /// `Some(0)` write unconditionally, as Envoy does.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// What [`update`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome<T> {
    /// The update was written (or nothing needed writing) after `retries` mismatches.
    Done { result: T, retries: u32 },
    /// Every attempt met a concurrent writer.
    RetriesExhausted { retries: u32 },
    /// The host refused.
    HostError,
}

/// Reads `key`, lets `step` compute the new value from the current one, and
/// writes it with the CAS token, retrying up to `max_retries` times on a
/// mismatch. `step` returns the result to report and `Some(new value)`, or
/// `None` when nothing is to be written.
pub fn update<S, T, F>(store: &S, key: &str, max_retries: u32, mut step: F) -> UpdateOutcome<T>
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> (T, Option<Vec<u8>>),
{
    let mut retries = 0;
    loop {
        let (current, cas) = match store.get(key) {
            Ok(v) => v,
            Err(_) => return UpdateOutcome::HostError,
        };
        let (result, new_value) = step(current.as_deref());
        let Some(new_value) = new_value else {
            return UpdateOutcome::Done { result, retries };
        };
        // A key never written has no token, and Envoy treats CAS 0 as "write
        // unconditionally": two workers creating the same key can both
        // succeed. Callers that need exact counts create their keys up front
        // (the rate limiter's fixed slot table does).
        match store.set(key, &new_value, cas) {
            Ok(()) => return UpdateOutcome::Done { result, retries },
            Err(StoreError::CasMismatch) if retries < max_retries => retries += 1,
            Err(StoreError::CasMismatch) => return UpdateOutcome::RetriesExhausted { retries },
            Err(StoreError::Host) => return UpdateOutcome::HostError,
        }
    }
}

/// An in-memory [`SharedStore`] with the host's CAS semantics, for tests.
/// `conflicts` makes the next N writes fail with a mismatch, as if another
/// worker had written first.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
    conflicts: std::cell::Cell<u32>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` writes fail with [`StoreError::CasMismatch`].
    pub fn inject_conflicts(&self, n: u32) {
        self.conflicts.set(n);
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.entries.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let pending = self.conflicts.get();
        if pending > 0 {
            self.conflicts.set(pending - 1);
            // Another writer got there first: bump the token.
            let mut entries = self.entries.borrow_mut();
            let entry = entries.entry(key.to_string()).or_insert((Vec::new(), 0));
            entry.1 += 1;
            return Err(StoreError::CasMismatch);
        }
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, c)| *c).unwrap_or(0);
        if let Some(cas) = cas.filter(|c| *c != 0) {
            if cas != current {
                return Err(StoreError::CasMismatch);
            }
        }
        entries.insert(key.to_string(), (value.to_vec(), current + 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn increment(current: Option<&[u8]>) -> (u8, Option<Vec<u8>>) {
        let n = current.and_then(|v| v.first().copied()).unwrap_or(0) + 1;
        (n, Some(vec![n]))
    }

    #[test]
    fn writes_when_uncontended() {
        let store = MemoryStore::new();
        assert_eq!(
            update(&store, "k", 3, increment),
            UpdateOutcome::Done {
                result: 1,
                retries: 0
            }
        );
        assert_eq!(
            update(&store, "k", 3, increment),
            UpdateOutcome::Done {
                result: 2,
                retries: 0
            }
        );
    }

    #[test]
    fn retries_on_mismatch_then_gives_up() {
        let store = MemoryStore::new();
        store.inject_conflicts(2);
        assert_eq!(
            update(&store, "k", 3, increment),
            UpdateOutcome::Done {
                result: 1,
                retries: 2
            }
        );
        store.inject_conflicts(10);
        assert_eq!(
            update(&store, "k", 3, increment),
            UpdateOutcome::RetriesExhausted { retries: 3 }
        );
    }

    #[test]
    fn nothing_to_write_is_done() {
        let store = MemoryStore::new();
        let out = update(&store, "k", 0, |_| ("unchanged", None));
        assert_eq!(
            out,
            UpdateOutcome::Done {
                result: "unchanged",
                retries: 0
            }
        );
        assert!(store.is_empty());
    }

    #[test]
    fn stale_token_is_refused() {
        let store = MemoryStore::new();
        store.set("k", b"a", None).unwrap();
        let (_, cas) = store.get("k").unwrap();
        store.set("k", b"b", cas).unwrap();
        assert_eq!(store.set("k", b"c", cas), Err(StoreError::CasMismatch));
        // CAS 0 is unconditional, as in Envoy.
        assert_eq!(store.set("new", b"x", Some(0)), Ok(()));
        assert_eq!(store.set("new", b"y", Some(0)), Ok(()));
    }
}
