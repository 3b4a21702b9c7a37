//! A bounded, per-worker cache of verified tokens, so the same token is not
//! verified twice. Entries are found by a keyed hash of the provider and the
//! token, and a hit compares the whole token: a hash collision is a miss,
//! never another token's verdict. An entry lives no longer than the token
//! (`exp + skew`, or [`MAX_AGE_S`] for tokens without `exp`). The adapter
//! empties it whenever any provider's keys change. The cache lives in the
//! worker's memory only; it is never logged or shared.
//!
//! An entry holds everything a hit needs, worked out once when the token was
//! verified ([`TokenFacts`]): the claims (for route scope and claim rules),
//! the identity JSON to publish and the claim header values. A hit therefore
//! does no JSON work. The claims checks that depend on time need no repeat
//! either: a token that passed them at `verified_at` still passes at any
//! later time before `until` (`nbf`, `iat` and the lifetime bound only get
//! easier as time moves on), so a hit only requires
//! `verified_at <= now < until`; a clock that went back is a miss.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::rc::Rc;

use palisade_shared::contract::Identity;
use serde_json::{Map, Value};

/// What is known of a verified token, for one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFacts {
    /// The claims.
    pub claims: Map<String, Value>,
    /// The verified identity, handed to later stages in memory.
    pub identity: Rc<Identity>,
    /// The same as `palisade.identity` JSON, serialized once per token.
    pub identity_json: Vec<u8>,
    /// The provider's claim headers (and payload header) with their values,
    /// for the claims present.
    pub headers: Vec<(String, String)>,
}

struct Entry {
    provider: usize,
    token: Box<str>,
    facts: Rc<TokenFacts>,
    verified_at: i64,
    until: i64,
}

/// The hash of a `u64` is the `u64`: the keys are already keyed hashes.
#[derive(Default)]
struct Identity64(u64);

impl Hasher for Identity64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The cache.
pub struct TokenCache {
    capacity: usize,
    seed: RandomState,
    entries: HashMap<u64, Entry, BuildHasherDefault<Identity64>>,
    order: VecDeque<u64>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(0)
    }
}

/// How many trailing bytes of a token its cache slot is chosen by.
const KEY_TAIL: usize = 48;

/// Whether two byte strings are equal, eight bytes at a time (the wasm
/// `memcmp` goes byte by byte), without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    let mut diff = u64::from(tail);
    for (x, y) in a8.zip(b8) {
        let mut xa = [0u8; 8];
        let mut ya = [0u8; 8];
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        diff |= u64::from_ne_bytes(xa) ^ u64::from_ne_bytes(ya);
    }
    diff == 0
}

/// Longest life of an entry for a token without `exp`, seconds.
pub const MAX_AGE_S: i64 = 300;

impl TokenCache {
    /// A cache of at most `capacity` entries (0: never stores).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            seed: RandomState::new(),
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The slot of a token: a keyed hash of the provider, the length and
    /// the last [`KEY_TAIL`] bytes (the signature, for a verified token). Only
    /// verified tokens are stored and a hit compares the whole token, so a
    /// shared tail can cost a miss, never a wrong answer; and as the key is
    /// secret, nobody can aim a token at another's slot.
    fn key(&self, provider: usize, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let mut h = self.seed.build_hasher();
        h.write_usize(provider);
        h.write_usize(bytes.len());
        h.write(&bytes[bytes.len().saturating_sub(KEY_TAIL)..]);
        h.finish()
    }

    /// The facts of this token for this provider, if held and `now` is
    /// within `[verified_at, until)`.
    pub fn get(&mut self, provider: usize, token: &str, now: i64) -> Option<Rc<TokenFacts>> {
        if self.capacity == 0 {
            return None;
        }
        let key = self.key(provider, token);
        let e = self.entries.get(&key)?;
        if e.provider != provider || !same_bytes(e.token.as_bytes(), token.as_bytes()) {
            return None; // a collision: another token's entry
        }
        if now >= e.until {
            self.entries.remove(&key);
            return None;
        }
        if now < e.verified_at {
            return None; // the clock went back: check again
        }
        Some(e.facts.clone())
    }

    /// Stores a token verified at `verified_at`, valid until `until`
    /// (exclusive); the oldest entry goes when the cache is full.
    pub fn put(
        &mut self,
        provider: usize,
        token: &str,
        facts: Rc<TokenFacts>,
        verified_at: i64,
        until: i64,
    ) {
        if self.capacity == 0 || until <= verified_at {
            return;
        }
        let key = self.key(provider, token);
        let entry = Entry {
            provider,
            token: token.into(),
            facts,
            verified_at,
            until,
        };
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity || self.order.len() > self.capacity * 2 {
            match self.order.pop_front() {
                Some(old) => {
                    if old != key {
                        self.entries.remove(&old);
                    } else {
                        self.order.push_back(old);
                        break;
                    }
                }
                None => break,
            }
        }
    }

    /// Forgets everything (keys changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(sub: &str) -> Rc<TokenFacts> {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(sub.into()));
        Rc::new(TokenFacts {
            claims,
            identity: Rc::default(),
            identity_json: sub.as_bytes().to_vec(),
            headers: vec![],
        })
    }

    fn sub(f: Option<Rc<TokenFacts>>) -> Option<String> {
        f.and_then(|f| {
            f.claims
                .get("sub")
                .and_then(Value::as_str)
                .map(String::from)
        })
    }

    #[test]
    fn hits_expire_and_are_bounded() {
        let mut c = TokenCache::new(2);
        c.put(0, "t1", facts("one"), 10, 100);
        assert_eq!(sub(c.get(0, "t1", 99)).as_deref(), Some("one"));
        assert!(c.get(1, "t1", 99).is_none(), "keyed by provider too");
        assert!(c.get(0, "t2", 99).is_none());
        assert!(c.get(0, "t1", 9).is_none(), "clock went back: a miss");
        assert!(c.get(0, "t1", 100).is_none(), "gone at its time");
        assert!(c.is_empty());
        c.put(0, "a", facts("a"), 0, 100);
        c.put(0, "b", facts("b"), 0, 100);
        c.put(0, "c", facts("c"), 0, 100);
        assert_eq!(c.len(), 2);
        assert!(c.get(0, "a", 0).is_none(), "oldest evicted");
        assert!(c.get(0, "c", 0).is_some());
        c.clear();
        assert!(c.get(0, "c", 0).is_none());
        let mut off = TokenCache::new(0);
        off.put(0, "a", facts("a"), 0, 100);
        assert!(off.is_empty());
        let mut c = TokenCache::new(2);
        c.put(0, "dead", facts("d"), 100, 100);
        assert!(c.is_empty(), "an entry already past its time is not kept");
    }

    #[test]
    fn a_hash_collision_is_a_miss_never_another_tokens_entry() {
        let mut c = TokenCache::new(4);
        c.put(0, "real", facts("victim"), 0, 100);
        // Plant the entry under the key another token hashes to.
        let forged_key = c.key(0, "forged");
        let entry = c.entries.remove(&c.key(0, "real")).unwrap();
        c.entries.insert(forged_key, entry);
        assert!(c.get(0, "forged", 1).is_none());
        // And a different provider with the same token under the same key.
        let key = c.key(1, "real");
        let mut entry = c.entries.remove(&forged_key).unwrap();
        entry.token = "real".into();
        c.entries.insert(key, entry);
        assert!(c.get(1, "real", 1).is_none());
    }

    #[test]
    fn byte_comparison() {
        for (a, b) in [
            ("", ""),
            ("abc", "abc"),
            ("0123456789abcdefXY", "0123456789abcdefXY"),
        ] {
            assert!(same_bytes(a.as_bytes(), b.as_bytes()));
        }
        for (a, b) in [
            ("", "a"),
            ("abc", "abd"),
            ("0123456789abcdefXY", "0123456789abcdefXZ"),
            ("0123456789abcdefXY", "0123456789abcdeeXY"),
            ("x123456789abcdefXY", "0123456789abcdefXY"),
        ] {
            assert!(!same_bytes(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
    }

    #[test]
    fn tokens_sharing_a_tail_are_told_apart() {
        let mut c = TokenCache::new(4);
        let tail = "s".repeat(KEY_TAIL);
        let (one, two) = (format!("aaa.{tail}"), format!("bbb.{tail}"));
        c.put(0, &one, facts("one"), 0, 100);
        assert!(
            c.get(0, &two, 1).is_none(),
            "same slot, other token: a miss"
        );
        c.put(0, &two, facts("two"), 0, 100);
        assert_eq!(sub(c.get(0, &two, 1)).as_deref(), Some("two"));
        assert!(c.get(0, &one, 1).is_none(), "replaced, never confused");
    }

    /// Memory held by the cache's own structures, in slots, and the bytes
    /// of the tokens it keeps.
    fn footprint(c: &TokenCache) -> (usize, usize, usize) {
        let tokens = c.entries.values().map(|e| e.token.len()).sum();
        (c.entries.capacity(), c.order.capacity(), tokens)
    }

    /// Floods a cache of 64 with 3 000 verified tokens of the longest
    /// allowed length, in the patterns an attacker holding many valid tokens
    /// could send: it never holds more than 64 tokens, and its index and
    /// queue stay within a small multiple of that.
    #[test]
    fn adversarial_tokens_never_grow_the_cache_past_its_capacity() {
        const CAP: usize = 64;
        const TOKEN_BYTES: usize = 8192;
        let tail = "t".repeat(KEY_TAIL);
        let token = |i: usize, same_tail: bool| {
            let head = format!("{i:08}.");
            let end = if same_tail {
                tail.clone()
            } else {
                format!("{i:0>48}")
            };
            format!(
                "{head}{}{end}",
                "p".repeat(TOKEN_BYTES - head.len() - end.len())
            )
        };
        // (pattern, token number i of 3 000)
        // Token i -> (its number, whether it shares one tail, its `until`).
        type Pattern = fn(usize) -> (usize, bool, i64);
        let patterns: [(&str, Pattern); 4] = [
            ("distinct tokens", |i| (i, false, 100)),
            ("one slot for all (shared tail)", |i| (i, true, 100)),
            ("a hot token between new ones", |i| {
                (if i % 2 == 0 { 0 } else { i }, false, 100)
            }),
            ("short-lived tokens", |i| (i, false, 1 + (i % 3) as i64)),
        ];
        for (name, pattern) in patterns {
            let mut c = TokenCache::new(CAP);
            for i in 0..3_000 {
                let (n, same_tail, until) = pattern(i);
                let t = token(n, same_tail);
                assert_eq!(t.len(), TOKEN_BYTES);
                c.put(0, &t, facts("x"), 0, until);
                let _ = c.get(0, &t, until - 1);
                let (index, queue, tokens) = footprint(&c);
                assert!(c.len() <= CAP, "{name}: {} entries", c.len());
                assert!(tokens <= CAP * TOKEN_BYTES, "{name}: {tokens} token bytes");
                assert!(index <= 4 * CAP, "{name}: index of {index}");
                assert!(queue <= 4 * CAP, "{name}: queue of {queue}");
            }
        }
    }

    #[test]
    fn rewriting_the_same_token_does_not_grow_the_queue_unboundedly() {
        let mut c = TokenCache::new(2);
        for _ in 0..100 {
            c.put(0, "same", facts("s"), 0, 100);
        }
        assert_eq!(c.len(), 1);
        assert!(c.order.len() <= 4);
        assert!(c.get(0, "same", 0).is_some());
    }
}
