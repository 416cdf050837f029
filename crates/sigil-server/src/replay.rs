//! The replay cache: every `(keyid, nonce)` of a verified signature is remembered until the
//! signature's `expires` + 60 s; a second use is refused (PROTOCOL.md §3).
//!
//! Each pair is kept as a 64-bit SHA-256 prefix — a false "replayed" needs a collision with
//! one of the few million pairs remembered at a time, about 1 in 10^12 per request — and
//! forgotten through a queue in arrival order: every insert drops the expired entries at
//! the head, so the cache never stops everything for a full sweep. An entry behind one that
//! expires later waits for it; memory stays bounded by the longest validity (300 s) times the
//! request rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// How long past `expires` a nonce is remembered.
const GRACE_SECS: i64 = 60;

type Pair = u64;

#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    until: HashMap<Pair, i64>,
    order: VecDeque<(i64, Pair)>,
}

fn pair(keyid: &str, nonce: &str) -> Pair {
    let mut h = Sha256::new();
    h.update((keyid.len() as u64).to_be_bytes());
    h.update(keyid.as_bytes());
    h.update(nonce.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize()[..8]);
    u64::from_be_bytes(out)
}

impl ReplayCache {
    /// Records `(keyid, nonce)`; returns false if it was already there (a replay).
    pub(crate) fn check_and_insert(
        &self,
        keyid: &str,
        nonce: &str,
        expires: i64,
        now: i64,
    ) -> bool {
        let key = pair(keyid, nonce);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(until, old)) = seen.order.front() {
            if until >= now {
                break;
            }
            seen.order.pop_front();
            if seen.until.get(&old) == Some(&until) {
                seen.until.remove(&old);
            }
        }
        match seen.until.get(&key) {
            Some(until) if *until >= now => false,
            _ => {
                let until = expires + GRACE_SECS;
                seen.until.insert(key, until);
                seen.order.push_back((until, key));
                true
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap().until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry_plus_grace() {
        let c = ReplayCache::default();
        assert!(c.check_and_insert("k", "n", 100, 50));
        assert!(!c.check_and_insert("k", "n", 100, 51));
        assert!(!c.check_and_insert("k", "n", 100, 160));
        // Another key with the same nonce is a different pair.
        assert!(c.check_and_insert("k2", "n", 100, 51));
        // The keyid and nonce cannot trade characters.
        assert!(c.check_and_insert("k2n", "", 100, 51));
        for i in 0..10_000 {
            assert!(c.check_and_insert("k", &i.to_string(), 100, 60));
        }
        assert!(!c.check_and_insert("k", "n", 100, 60));
        assert!(!c.check_and_insert("k", "9999", 100, 160));
        // Past expiry + grace, entries are forgotten as new ones arrive.
        assert!(c.check_and_insert("k", "later", 300, 161));
        assert_eq!(c.len(), 1);
        assert!(
            c.check_and_insert("k", "n", 300, 161),
            "expired: a new request"
        );
    }
}
