//! DPoP server nonces (RFC 9449 section 9): the proxy hands out a nonce in
//! `DPoP-Nonce`, and proofs must carry one it made recently.
//!
//! Stateless: a nonce is a time slot and a MAC of it, so every worker (and,
//! with a configured secret, every proxy) accepts every other's nonces
//! without sharing anything per nonce. A nonce made in slot `n` (slots of
//! `lifetime` seconds) is accepted in slots `n` and `n + 1`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::jws::{b64url_decode, b64url_encode};

const TAG_LEN: usize = 16;

fn tag(secret: &[u8], slot: u64) -> Option<[u8; TAG_LEN]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(b"palisade dpop nonce");
    mac.update(&slot.to_be_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(full.get(..TAG_LEN)?);
    Some(out)
}

fn slot(now_s: i64, lifetime_s: i64) -> u64 {
    u64::try_from(now_s.max(0) / lifetime_s.max(1)).unwrap_or(0)
}

/// A fresh nonce at `now_s`.
pub fn mint(secret: &[u8], now_s: i64, lifetime_s: i64) -> String {
    let slot = slot(now_s, lifetime_s);
    let mut bytes = slot.to_be_bytes().to_vec();
    bytes.extend_from_slice(&tag(secret, slot).unwrap_or_default());
    b64url_encode(&bytes)
}

/// Whether `nonce` is one of ours, from this slot or the one before.
pub fn is_valid(secret: &[u8], nonce: &str, now_s: i64, lifetime_s: i64) -> bool {
    let Some(bytes) = b64url_decode(nonce).filter(|b| b.len() == 8 + TAG_LEN) else {
        return false;
    };
    let mut slot_bytes = [0u8; 8];
    slot_bytes.copy_from_slice(&bytes[..8]);
    let their_slot = u64::from_be_bytes(slot_bytes);
    let now = slot(now_s, lifetime_s);
    if their_slot != now && their_slot.saturating_add(1) != now {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"palisade dpop nonce");
    mac.update(&their_slot.to_be_bytes());
    // Constant-time comparison of the truncated tag.
    mac.verify_truncated_left(&bytes[8..]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_live_one_to_two_lifetimes_and_cannot_be_forged() {
        let key = [7u8; 32];
        let n = mint(&key, 1_000, 300);
        assert!(is_valid(&key, &n, 1_000, 300));
        assert!(is_valid(&key, &n, 1_199, 300), "same slot");
        assert!(is_valid(&key, &n, 1_499, 300), "next slot");
        assert!(!is_valid(&key, &n, 1_500, 300), "two slots later");
        assert!(!is_valid(&key, &n, 800, 300), "from the future");
        assert!(!is_valid(&[8u8; 32], &n, 1_000, 300), "another key");
        let mut forged = b64url_decode(&n).unwrap();
        forged[20] ^= 1;
        assert!(!is_valid(&key, &b64url_encode(&forged), 1_000, 300));
        assert!(!is_valid(&key, "not-a-nonce", 1_000, 300));
        assert!(!is_valid(&key, "", 1_000, 300));
    }
}
