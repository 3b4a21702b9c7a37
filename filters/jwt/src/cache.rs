//! A bounded, per-worker cache of verified tokens, so the same token is not
//! verified twice. Keyed by the provider and the whole token (compared in
//! full: a hash collision can never pass an unverified token), an entry lives
//! no longer than the token (`exp + skew`, or [`MAX_AGE_S`] for tokens
//! without `exp`). The adapter empties it whenever any provider's keys
//! change. Claims are checked again on every hit, since time moves on. The
//! cache lives in the worker's memory only; it is never logged or shared.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};

/// A verified token's claims and header `typ`.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedToken {
    /// The claims.
    pub claims: Rc<Map<String, Value>>,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// Unix seconds after which the entry is gone.
    pub until: i64,
}

/// The cache.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<(String, String), CachedToken>,
    order: VecDeque<(String, String)>,
}

/// Longest life of an entry for a token without `exp`, seconds.
pub const MAX_AGE_S: i64 = 300;

impl TokenCache {
    /// A cache of at most `capacity` entries (0: never stores).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    /// The entry for this token, if present and not past its time.
    pub fn get(&mut self, provider: &str, token: &str, now: i64) -> Option<CachedToken> {
        if self.capacity == 0 {
            return None;
        }
        let key = (provider.to_string(), token.to_string());
        match self.entries.get(&key) {
            Some(e) if now < e.until => Some(e.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Stores a verified token; the oldest entry goes when the cache is full.
    pub fn put(&mut self, provider: &str, token: &str, entry: CachedToken) {
        if self.capacity == 0 {
            return;
        }
        let key = (provider.to_string(), token.to_string());
        if self.entries.insert(key.clone(), entry).is_none() {
            self.order.push_back(key.clone());
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

    fn entry(until: i64) -> CachedToken {
        CachedToken {
            claims: Rc::new(Map::new()),
            typ: None,
            until,
        }
    }

    #[test]
    fn hits_expire_and_are_bounded() {
        let mut c = TokenCache::new(2);
        c.put("p", "t1", entry(100));
        assert!(c.get("p", "t1", 99).is_some());
        assert!(c.get("q", "t1", 99).is_none(), "keyed by provider too");
        assert!(c.get("p", "t1", 100).is_none(), "gone at its time");
        assert!(c.is_empty());
        c.put("p", "a", entry(100));
        c.put("p", "b", entry(100));
        c.put("p", "c", entry(100));
        assert_eq!(c.len(), 2);
        assert!(c.get("p", "a", 0).is_none(), "oldest evicted");
        assert!(c.get("p", "c", 0).is_some());
        c.clear();
        assert!(c.get("p", "c", 0).is_none());
        let mut off = TokenCache::new(0);
        off.put("p", "a", entry(100));
        assert!(off.is_empty());
    }

    #[test]
    fn rewriting_the_same_token_does_not_grow_the_queue_unboundedly() {
        let mut c = TokenCache::new(2);
        for _ in 0..100 {
            c.put("p", "same", entry(100));
        }
        assert_eq!(c.len(), 1);
        assert!(c.order.len() <= 4);
        assert!(c.get("p", "same", 0).is_some());
    }
}
