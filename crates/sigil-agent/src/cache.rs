//! The agent's cache of KV reads: an answer (opened JSON, in zeroizing memory) served again
//! for a short TTL; every write through the agent empties it. Bounded in entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// Most answers kept; when full, the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// An answer and when it was kept, by request path (with its query).
type Entries = HashMap<String, (Instant, Zeroizing<Vec<u8>>)>;

/// KV answers by request path (with its query).
pub struct KvCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl KvCache {
    /// A cache keeping answers for `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> KvCache {
        KvCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer kept for `path`, if it is younger than the TTL.
    pub fn get(&self, path: &str) -> Option<Zeroizing<Vec<u8>>> {
        let mut entries = self.entries();
        match entries.get(path) {
            Some((at, bytes)) if at.elapsed() < self.ttl => Some(bytes.clone()),
            Some(_) => {
                entries.remove(path);
                None
            }
            None => None,
        }
    }

    /// Keeps `bytes` as the answer for `path`.
    pub fn put(&self, path: &str, bytes: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            path.to_owned(),
            (Instant::now(), Zeroizing::new(bytes.to_vec())),
        );
    }

    /// Forgets every answer.
    pub fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_for_the_ttl_and_writes_clear_them() {
        let c = KvCache::new(Duration::from_millis(200));
        c.put("secret/data/a", b"{}");
        assert_eq!(
            c.get("secret/data/a").as_deref().map(Vec::as_slice),
            Some(&b"{}"[..])
        );
        assert!(c.get("secret/data/b").is_none());
        c.clear();
        assert!(c.get("secret/data/a").is_none());
        c.put("secret/data/a", b"{}");
        std::thread::sleep(Duration::from_millis(250));
        assert!(c.get("secret/data/a").is_none(), "expired");
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_and_the_size_is_bounded() {
        let off = KvCache::new(Duration::ZERO);
        off.put("p", b"x");
        assert!(off.get("p").is_none());
        let c = KvCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            c.put(&format!("p{i}"), b"x");
        }
        assert!(c.entries().len() <= MAX_ENTRIES);
    }
}
