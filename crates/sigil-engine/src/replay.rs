//! Durable replay protection. The server refuses a signed request whose `(keyid, nonce)` it
//! has seen, but its replay cache lives in memory: after a restart and unseal, a captured
//! signed request that changed something (`POST sys/rotate`, a body-less `DELETE`) would be
//! accepted again while its signature is still valid. So the `(keyid, nonce)` of a signed,
//! state-changing request travels with the first write it causes, in the same atomic batch
//! (one commit, no fsync of its own), under `sys/replay/<bucket>/<digest>`, and is loaded into
//! the replay cache at unseal. A request that wrote nothing leaves no mark: sent again, it
//! again writes nothing.
//!
//! The mark reaches the barrier through [`carried_by_writes_of`], which holds it for the
//! current thread while the core handles the request (the core handles a request on one
//! thread, without awaiting); [`crate::View::apply`] adds it to the first batch it commits.
//! The core keeps the stored marks (loads them at unseal, purges old buckets).

use std::cell::Cell;

use sha2::{Digest as _, Sha256};

/// Where marks are stored (below the barrier).
pub const PREFIX: &str = "sys/replay/";
/// Marks are filed by when they may be forgotten, a minute per bucket.
pub const BUCKET_SECS: i64 = 60;

/// The `(keyid, nonce)` of a signed request, and until when (Unix seconds) a second use must be
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayMark {
    /// SHA-256 over the keyid's length, the keyid and the nonce (neither is secret).
    pub digest: [u8; 32],
    /// Refused until then.
    pub until: i64,
}

impl ReplayMark {
    /// The mark of `(keyid, nonce)`, in force until `until`.
    pub fn new(keyid: &str, nonce: &str, until: i64) -> Self {
        ReplayMark {
            digest: Self::digest(keyid, nonce),
            until,
        }
    }

    /// The digest that names `(keyid, nonce)`: the keyid's length first, so that the two cannot
    /// trade characters.
    pub fn digest(keyid: &str, nonce: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((keyid.len() as u64).to_be_bytes());
        h.update(keyid.as_bytes());
        h.update(nonce.as_bytes());
        h.finalize().into()
    }

    /// The end of the bucket a mark in force until `until` is filed in.
    pub fn bucket(until: i64) -> i64 {
        until.div_euclid(BUCKET_SECS) * BUCKET_SECS + BUCKET_SECS
    }

    /// Its key below [`PREFIX`]: `<bucket end, 12 digits>/<digest, hex>`.
    pub fn key(&self) -> String {
        let mut key = format!("{:012}/", Self::bucket(self.until).max(0));
        for b in self.digest {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }

    /// A mark from its key: in force until its bucket's end (at most a minute longer than it
    /// had to be).
    pub fn from_key(key: &str) -> Option<Self> {
        let (bucket, hex) = key.split_once('/')?;
        if bucket.len() != 12 || hex.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, out) in digest.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ReplayMark {
            digest,
            until: bucket.parse().ok()?,
        })
    }
}

thread_local! {
    static PENDING: Cell<Option<ReplayMark>> = const { Cell::new(None) };
}

/// Runs `f` (the core handling one request) with `mark` pending on this thread: the first
/// batch `f` commits through the barrier carries it.
pub fn carried_by_writes_of<R>(mark: Option<ReplayMark>, f: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PENDING.with(|p| p.set(None));
        }
    }
    PENDING.with(|p| p.set(mark));
    let _clear = Clear;
    f()
}

/// The mark the next commit on this thread must carry.
pub fn pending() -> Option<ReplayMark> {
    PENDING.with(Cell::get)
}

/// The pending mark was committed.
pub fn committed() {
    PENDING.with(|p| p.set(None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_round_up_to_their_bucket() {
        let m = ReplayMark::new("keyid", "nonce", 1_000_030);
        let back = ReplayMark::from_key(&m.key()).unwrap();
        assert_eq!(back.digest, m.digest);
        assert!(back.until >= m.until && back.until <= m.until + BUCKET_SECS);
        assert_ne!(
            ReplayMark::digest("k2", "n"),
            ReplayMark::digest("k", "2n"),
            "keyid and nonce cannot trade characters"
        );
        for bad in ["", "x/y", "000001000080/zz", &"0".repeat(80)] {
            assert!(ReplayMark::from_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_mark_is_pending_only_inside_its_scope() {
        let m = ReplayMark::new("k", "n", 10);
        assert_eq!(pending(), None);
        carried_by_writes_of(Some(m), || {
            assert_eq!(pending(), Some(m));
            committed();
            assert_eq!(pending(), None);
        });
        let _ = std::panic::catch_unwind(|| {
            carried_by_writes_of(Some(m), || panic!("handler panicked"));
        });
        assert_eq!(pending(), None);
    }
}
