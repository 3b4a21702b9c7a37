//! One random client-key hash key per Envoy process, agreed by every VM.
//!
//! The slot a client's bucket lives in is picked by a keyed hash of its key
//! ([`crate::key::key_hash`]). With a key fixed in the source, anyone could
//! compute offline which API keys or addresses land in a given set and fill
//! exactly the set of a client they want to crowd. So the key is drawn at
//! random, but every worker's VM must hash with the same key, or two workers
//! would put one client in two buckets: the first VM that loads writes its
//! random key to shared data, and every other VM adopts what it finds there.
//!
//! Envoy creates a missing shared-data key whatever the CAS token, so
//! creation cannot be made conditional. What makes the first writer win is
//! Envoy's order: it configures the first VM on its main thread before it
//! starts any worker, and workers read the key only after that. Each VM
//! still reads back what it wrote and adopts the stored value, so a second
//! writer could only replace a key that no VM has served a request with.

use palisade_shared::store::{SharedStore, StoreError};

use crate::key::HashKey;

/// The shared-data key (at most 20 characters, like the table keys).
pub const STORE_KEY: &str = "rl:hashkey";

const VERSION: u8 = 1;

/// Attempts before giving up: each one either finds a valid key or writes
/// one and reads again, so two suffice unless another VM keeps overwriting.
const ATTEMPTS: usize = 4;

fn encode(key: &HashKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + HashKey::LEN);
    out.push(VERSION);
    out.extend_from_slice(&key.to_bytes());
    out
}

fn decode(value: &[u8]) -> Option<HashKey> {
    match value.split_first() {
        Some((&VERSION, rest)) if rest.len() == HashKey::LEN => HashKey::from_bytes(rest),
        _ => None,
    }
}

/// The process's hash key: the one in shared data, or, when there is none
/// (or an unreadable one), `candidate()` written there first. `candidate` is
/// called at most once, and only by the VM that writes.
pub fn agree<S, F>(store: &S, candidate: F) -> Result<HashKey, String>
where
    S: SharedStore + ?Sized,
    F: FnOnce() -> Result<HashKey, String>,
{
    let mut candidate = Some(candidate);
    let mut drawn = None;
    for _ in 0..ATTEMPTS {
        let (value, cas) = store
            .get(STORE_KEY)
            .map_err(|e| format!("cannot read shared-data key {STORE_KEY}: {e:?}"))?;
        if let Some(key) = value.as_deref().and_then(decode) {
            return Ok(key);
        }
        let mine = match (drawn, candidate.take()) {
            (Some(key), _) => key,
            (None, Some(draw)) => *drawn.insert(draw()?),
            (None, None) => return Err("no hash key candidate".to_string()),
        };
        // Absent: created whatever the token. Unreadable: replaced only if
        // nobody wrote it since this read.
        let cas = if value.is_some() { cas } else { None };
        match store.set(STORE_KEY, &encode(&mine), cas) {
            Ok(()) | Err(StoreError::CasMismatch) => {}
            Err(e) => return Err(format!("cannot write shared-data key {STORE_KEY}: {e:?}")),
        }
    }
    Err(format!(
        "shared-data key {STORE_KEY} kept changing: no hash key agreed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::engine::fake::FakeHost;
    use palisade_shared::engine::HostStore;
    use std::cell::Cell;

    fn fixed(k: u64) -> impl FnOnce() -> Result<HashKey, String> {
        move || Ok(HashKey::new(k, !k))
    }

    #[test]
    fn the_first_writer_wins_and_every_later_vm_adopts_its_key() {
        let host = FakeHost::new();
        let store = HostStore(&host);
        // (candidate of this VM, key it ends up with)
        let vms = [(1, 1), (2, 1), (3, 1)];
        for (candidate, agreed) in vms {
            let key = agree(&store, fixed(candidate)).unwrap();
            assert_eq!(key, HashKey::new(agreed, !agreed), "VM {candidate}");
        }
        assert_eq!(
            host.shared_value(STORE_KEY),
            Some(encode(&HashKey::new(1, !1)))
        );
    }

    #[test]
    fn a_vm_that_finds_a_key_draws_none() {
        let host = FakeHost::new();
        let store = HostStore(&host);
        agree(&store, fixed(5)).unwrap();
        let drawn = Cell::new(false);
        let key = agree(&store, || {
            drawn.set(true);
            Ok(HashKey::new(6, 6))
        })
        .unwrap();
        assert_eq!(key, HashKey::new(5, !5));
        assert!(!drawn.get(), "no random draw when the key exists");
    }

    #[test]
    fn an_unreadable_value_is_replaced_and_errors_are_reported() {
        // (value in shared data before, agreed key)
        let cases: [(&[u8], u64); 4] = [
            (b"", 7),
            (&[VERSION, 1, 2, 3], 7),
            (&[9; 17], 7),
            (
                &[
                    VERSION, 8, 0, 0, 0, 0, 0, 0, 0, 0xf7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                8,
            ),
        ];
        for (before, agreed) in cases {
            let host = FakeHost::new();
            let store = HostStore(&host);
            store.set(STORE_KEY, before, None).unwrap();
            let key = agree(&store, fixed(7)).unwrap();
            assert_eq!(key, HashKey::new(agreed, !agreed), "{before:?}");
        }
        // A failing random source is an error at load, not a fixed key.
        let host = FakeHost::new();
        let err = agree(&HostStore(&host), || Err("no random source".to_string()));
        assert_eq!(err, Err("no random source".to_string()));
    }

    /// A store where another VM writes its own key between this VM's read
    /// and write, as two VMs loading at once would.
    struct Racing<'a> {
        inner: HostStore<'a>,
        rival: Cell<Option<HashKey>>,
    }

    impl SharedStore for Racing<'_> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            let read = self.inner.get(key);
            if let Some(rival) = self.rival.take() {
                self.inner.set(key, &encode(&rival), None)?;
            }
            read
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn a_vm_adopts_what_it_reads_back_not_what_it_drew() {
        // The rival replaces an unreadable value between this VM's read and
        // its CAS write: the write fails and the rival's key is adopted.
        let host = FakeHost::new();
        let racing = Racing {
            inner: HostStore(&host),
            rival: Cell::new(Some(HashKey::new(9, !9))),
        };
        racing.inner.set(STORE_KEY, b"junk", None).unwrap();
        assert_eq!(agree(&racing, fixed(1)), Ok(HashKey::new(9, !9)));
        assert_eq!(
            host.shared_value(STORE_KEY),
            Some(encode(&HashKey::new(9, !9)))
        );

        // A store that never keeps a readable value: an error, not a guess.
        struct Forgetful;
        impl SharedStore for Forgetful {
            fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                Ok((None, None))
            }
            fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
                Ok(())
            }
        }
        assert!(agree(&Forgetful, fixed(1))
            .unwrap_err()
            .contains("kept changing"));
    }
}
