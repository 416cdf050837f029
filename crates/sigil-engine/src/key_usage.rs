//! How many times each keyring term has encrypted. The barrier's AES-256-GCM uses random 96-bit
//! nonces, which stay safe for about 2^32 encryptions under one key (NIST SP 800-38D §8.3), so
//! every encryption is counted against the newest term and the server rotates the keyring once
//! a term reaches [`ROTATE_AT`], as Vault does at 3.86e9.
//!
//! The count survives restarts without a write per encryption: the barrier stores a
//! reservation (`core/keyring-usage`, sealed) ahead of the count, [`RESERVE`] encryptions at a
//! time, and a restarted server counts on from the stored reservation. A crash can only make
//! the count too high, never too low.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Encryptions under one term after which the keyring rotates (90 % of 2^32).
pub const ROTATE_AT: u64 = 3_865_470_566;
/// How far ahead of the count a reservation is stored.
const RESERVE: u64 = 1 << 20;
/// Where the reservation is stored.
pub const USAGE_KEY: &str = "core/keyring-usage";

/// The encryption count of the newest term, and when it is due to rotate.
#[derive(Debug)]
pub struct KeyUsage {
    counts: Mutex<Counts>,
    rotate_at: AtomicU64,
}

#[derive(Debug)]
struct Counts {
    term: u32,
    used: u64,
    reserved: u64,
}

impl KeyUsage {
    /// The usage of term `newest`, counting on from a stored reservation `(term, count)`.
    pub fn new(stored: Option<(u32, u64)>, newest: u32) -> Self {
        let used = match stored {
            Some((term, count)) if term == newest => count,
            _ => 0,
        };
        KeyUsage {
            counts: Mutex::new(Counts {
                term: newest,
                used,
                reserved: used,
            }),
            rotate_at: AtomicU64::new(ROTATE_AT),
        }
    }

    /// Lowers the rotation threshold (tests only, as [`crate::Barrier::set_rotation_limit`]).
    #[cfg(any(test, feature = "testing"))]
    pub fn set_limit(&self, rotate_at: u64) {
        self.rotate_at.store(rotate_at, Ordering::Relaxed);
    }

    /// Counts one encryption under `term`. Returns a reservation to store (before the
    /// ciphertext is used) when the count reached the stored one.
    pub fn count(&self, term: u32) -> Option<u64> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.term != term {
            // Only the newest term encrypts: a new one after a rotation.
            if term < c.term {
                return None;
            }
            *c = Counts {
                term,
                used: 0,
                reserved: 0,
            };
        }
        c.used += 1;
        if c.used > c.reserved {
            // The reservation's own encryption is inside it.
            c.reserved = c.used + RESERVE;
            return Some(c.reserved);
        }
        None
    }

    /// A rotation made `term` the newest: its count starts at zero.
    pub fn start(&self, term: u32) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if term > c.term {
            *c = Counts {
                term,
                used: 0,
                reserved: 0,
            };
        }
    }

    /// Encryptions counted under the newest term.
    pub fn used(&self) -> (u32, u64) {
        let c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        (c.term, c.used)
    }

    /// Whether the newest term has reached its limit.
    pub fn due(&self) -> bool {
        self.used().1 >= self.rotate_at.load(Ordering::Relaxed)
    }
}

/// `term (4, BE) ‖ count (8, BE)`.
pub fn encode(term: u32, count: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&term.to_be_bytes());
    out[4..].copy_from_slice(&count.to_be_bytes());
    out
}

/// A stored reservation: its term and count.
pub fn decode(bytes: &[u8]) -> Option<(u32, u64)> {
    let bytes: &[u8; 12] = bytes.try_into().ok()?;
    Some((
        u32::from_be_bytes(bytes[..4].try_into().ok()?),
        u64::from_be_bytes(bytes[4..].try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reserve_ahead_and_restart_from_the_reservation() {
        let u = KeyUsage::new(None, 1);
        assert_eq!(u.count(1), Some(1 + RESERVE));
        for _ in 0..10 {
            assert_eq!(u.count(1), None);
        }
        assert_eq!(u.used(), (1, 11));
        // A restart counts on from the reservation, never below what was used.
        let again = KeyUsage::new(Some((1, 1 + RESERVE)), 1);
        assert_eq!(again.used(), (1, 1 + RESERVE));
        assert!(again.count(1).is_some());
        // A stored count of an older term does not apply to the newest.
        assert_eq!(KeyUsage::new(Some((1, 99)), 2).used(), (2, 0));
        // A rotation starts a new count; an older term no longer counts.
        assert!(u.count(2).is_some());
        assert_eq!(u.used(), (2, 1));
        assert_eq!(u.count(1), None);
        assert_eq!(decode(&encode(7, 1 << 40)), Some((7, 1 << 40)));
        assert_eq!(decode(&[0; 11]), None);
    }

    #[test]
    fn due_at_the_limit() {
        let u = KeyUsage::new(None, 1);
        u.set_limit(3);
        for _ in 0..2 {
            u.count(1);
        }
        assert!(!u.due());
        u.count(1);
        assert!(u.due());
    }
}
