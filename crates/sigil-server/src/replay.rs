//! The replay cache: every `(keyid, nonce)` of a verified signature is remembered until the
//! signature's `expires` + 60 s; a second use is refused (PROTOCOL.md §3).

use std::collections::HashMap;
use std::sync::Mutex;

/// How long past `expires` a nonce is remembered.
const GRACE_SECS: i64 = 60;
/// Entries above which expired ones are swept on insert.
const SWEEP_ABOVE: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    entries: HashMap<(String, String), i64>,
    sweep_at: usize,
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
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.entries.len() >= seen.sweep_at.max(SWEEP_ABOVE) {
            seen.entries.retain(|_, until| *until >= now);
            seen.sweep_at = seen.entries.len() * 2;
        }
        let key = (keyid.to_owned(), nonce.to_owned());
        match seen.entries.get(&key) {
            Some(until) if *until >= now => false,
            _ => {
                seen.entries.insert(key, expires + GRACE_SECS);
                true
            }
        }
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
        // Sweeping keeps live entries.
        for i in 0..SWEEP_ABOVE + 10 {
            assert!(c.check_and_insert("k", &i.to_string(), 100, 60));
        }
        assert!(!c.check_and_insert("k", "n", 100, 60));
    }
}
