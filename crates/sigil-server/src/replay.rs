//! The replay cache: every `(keyid, nonce)` of a verified signature is remembered until the
//! signature's `expires` + 60 s; a second use is refused (docs/protocol.md). The marks of
//! requests that wrote are also stored with their writes and restored here at unseal
//! (sigil_core's replay.rs).
//!
//! Each pair is kept as 64 bits of SHA-256 over a secret, per-process salt and the pair — a
//! false "replayed" needs a collision with one of the few million pairs remembered at a time,
//! about 1 in 10^12 per request. The salt makes the values unpredictable, so they index hash
//! sets as they are (no second hash) without letting anyone choose colliding nonces.
//!
//! Pairs are filed in buckets by when they may be forgotten, 30 seconds per bucket; a bucket
//! is dropped whole once everything in it has expired, so forgetting costs nothing per pair
//! and the memory of old buckets is reused by new ones of the same size. A pair may be kept up
//! to one bucket's span longer than it must. Memory stays bounded by the longest validity
//! (300 s) times the request rate, at about 9–18 bytes per pair.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use sigil_core::ReplayMark;

/// How long past `expires` a nonce is remembered.
const GRACE_SECS: i64 = 60;

/// The span of `until` values one bucket holds.
const BUCKET_SECS: i64 = 30;

type Pair = u64;

/// A hasher that passes a [`Pair`] through: pairs are already uniform and secret.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Pairs = HashSet<Pair, BuildHasherDefault<PassThrough>>;

pub(crate) struct ReplayCache {
    /// Secret: whoever knows it can choose nonces that collide in the hash sets.
    salt: [u8; 32],
    seen: Mutex<VecDeque<Bucket>>,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache").finish_non_exhaustive()
    }
}

/// The pairs whose `until` falls in `[start, start + BUCKET_SECS)`.
#[derive(Debug)]
struct Bucket {
    start: i64,
    pairs: Pairs,
}

impl ReplayCache {
    /// An empty cache with a fresh salt.
    pub(crate) fn new() -> Result<Self, sigil_crypto::CryptoError> {
        Ok(ReplayCache {
            salt: sigil_crypto::random::bytes()?,
            seen: Mutex::new(VecDeque::new()),
        })
    }

    #[cfg(test)]
    fn pair(&self, keyid: &str, nonce: &str) -> Pair {
        self.salted(&ReplayMark::digest(keyid, nonce))
    }

    fn salted(&self, digest: &[u8; 32]) -> Pair {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(digest);
        let mut out = [0u8; 8];
        out.copy_from_slice(&h.finalize()[..8]);
        u64::from_be_bytes(out)
    }

    /// Records `(keyid, nonce)`; returns its mark (to make it durable with the write the
    /// request causes), or `None` if it was already there (a replay).
    pub(crate) fn check_and_insert(
        &self,
        keyid: &str,
        nonce: &str,
        expires: i64,
        now: i64,
    ) -> Option<ReplayMark> {
        let mark = ReplayMark::new(keyid, nonce, expires + GRACE_SECS);
        self.insert(&mark, now).then_some(mark)
    }

    /// Marks stored before a restart (sigil_core::ReplayMark), at unseal.
    pub(crate) fn restore(&self, marks: &[ReplayMark], now: i64) {
        for mark in marks {
            self.insert(mark, now);
        }
    }

    fn insert(&self, mark: &ReplayMark, now: i64) -> bool {
        let key = self.salted(&mark.digest);
        let until = mark.until;
        let start = until.div_euclid(BUCKET_SECS) * BUCKET_SECS;
        let mut buckets = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Buckets are kept in order of `start`; those wholly in the past go.
        while buckets
            .front()
            .is_some_and(|b| b.start + BUCKET_SECS <= now)
        {
            buckets.pop_front();
        }
        if buckets.iter().any(|b| b.pairs.contains(&key)) {
            return false;
        }
        let at = buckets.partition_point(|b| b.start < start);
        match buckets.get_mut(at) {
            Some(b) if b.start == start => {
                b.pairs.insert(key);
            }
            _ => {
                let mut pairs = Pairs::default();
                pairs.insert(key);
                buckets.insert(at, Bucket { start, pairs });
            }
        }
        true
    }

    #[cfg(test)]
    fn check_and_insert_bool(&self, keyid: &str, nonce: &str, expires: i64, now: i64) -> bool {
        self.check_and_insert(keyid, nonce, expires, now).is_some()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let buckets = self.seen.lock().unwrap();
        buckets.iter().map(|b| b.pairs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry_plus_grace() {
        let c = ReplayCache::new().unwrap();
        assert!(c.check_and_insert_bool("k", "n", 100, 50));
        assert!(!c.check_and_insert_bool("k", "n", 100, 51));
        assert!(!c.check_and_insert_bool("k", "n", 100, 160));
        // The same nonce with another expiry (an mTLS nonce sent again later) is a replay too.
        assert!(!c.check_and_insert_bool("k", "n", 130, 70));
        // Another key with the same nonce is a different pair.
        assert!(c.check_and_insert_bool("k2", "n", 100, 51));
        // The keyid and nonce cannot trade characters.
        assert!(c.check_and_insert_bool("k2n", "", 100, 51));
        for i in 0..10_000 {
            assert!(c.check_and_insert_bool("k", &i.to_string(), 100, 60));
        }
        assert!(!c.check_and_insert_bool("k", "n", 100, 60));
        assert!(!c.check_and_insert_bool("k", "9999", 100, 160));
        // Past expiry + grace and the bucket's span, entries are forgotten as new ones arrive.
        let later = 100 + GRACE_SECS + BUCKET_SECS;
        assert!(c.check_and_insert_bool("k", "later", 300, later));
        assert_eq!(c.len(), 1);
        assert!(
            c.check_and_insert_bool("k", "n", 300, later),
            "expired: a new request"
        );
    }

    #[test]
    fn pairs_are_kept_across_buckets_until_they_expire() {
        let c = ReplayCache::new().unwrap();
        // Requests over ten minutes, each valid for 60 s: every one is refused a second time
        // for as long as it must be remembered, whichever bucket it landed in.
        for now in 0..600 {
            assert!(c.check_and_insert_bool("k", &format!("n{now}"), now + 60, now));
            for back in [1, 29, 30, 31, 119] {
                if back <= now {
                    let then = now - back;
                    assert!(
                        !c.check_and_insert_bool("k", &format!("n{then}"), then + 60, now),
                        "n{then} at {now}"
                    );
                }
            }
        }
        // Only the pairs of the last two minutes and a bucket remain.
        assert!(
            c.len() <= (60 + GRACE_SECS + 2 * BUCKET_SECS) as usize,
            "{}",
            c.len()
        );
    }

    #[test]
    fn restored_marks_are_replays() {
        let before = ReplayCache::new().unwrap();
        let mark = before.check_and_insert("k", "n", 100, 50).unwrap();
        let after = ReplayCache::new().unwrap();
        after.restore(&[mark], 70);
        assert!(!after.check_and_insert_bool("k", "n", 100, 71));
        assert!(after.check_and_insert_bool("k", "n2", 100, 71));
    }

    #[test]
    fn salts_differ_between_caches() {
        let (a, b) = (ReplayCache::new().unwrap(), ReplayCache::new().unwrap());
        assert_ne!(a.pair("k", "n"), b.pair("k", "n"));
        assert_eq!(a.pair("k", "n"), a.pair("k", "n"));
        assert_eq!(
            format!("{a:?}"),
            "ReplayCache { .. }",
            "the salt is not shown"
        );
    }
}
