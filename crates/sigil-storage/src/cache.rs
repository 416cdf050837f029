//! A bounded cache of what readers found in redb, so a hot key costs a hash lookup instead of
//! a read transaction (Vault keeps a similar cache in front of its physical storage).
//!
//! It holds only what redb holds — barrier ciphertext, or "absent" — and redb changes only
//! when a checkpoint commits, so [`ReadCache::clear`] after every checkpoint commit keeps it
//! exact: the committed writes are still in the frozen layer at that moment, which readers
//! consult first. A reader that began before a clear must not put what it read back in, so
//! every insert carries the generation the reader saw before it looked anywhere.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes counted per entry on top of its key and value (map slot, `String` and `Vec` headers).
const ENTRY_OVERHEAD: usize = 64;

pub(crate) struct ReadCache {
    inner: RwLock<Inner>,
    /// Bumped by every clear, while `inner` is held for writing.
    generation: AtomicU64,
    /// Most bytes the entries may take (keys, values and [`ENTRY_OVERHEAD`]).
    budget: usize,
}

#[derive(Default)]
struct Inner {
    bytes: usize,
    entries: HashMap<String, Option<Vec<u8>>>,
}

fn cost(key: &str, value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

impl ReadCache {
    pub(crate) fn new(budget: usize) -> Self {
        ReadCache {
            inner: RwLock::new(Inner::default()),
            generation: AtomicU64::new(0),
            budget,
        }
    }

    /// To be read before looking anywhere, and handed to [`ReadCache::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// What redb held at `key` (`Some(None)`: absent), if cached.
    pub(crate) fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .get(key)
            .cloned()
    }

    /// Remembers what redb held at `key`, unless a clear happened since `generation` was read
    /// (the value may be older than redb then). When over budget, arbitrary entries go first.
    pub(crate) fn insert(&self, generation: u64, key: &str, value: Option<&[u8]>) {
        let size = cost(key, value);
        if size > self.budget / 16 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation || inner.entries.contains_key(key) {
            return;
        }
        if inner.bytes + size > self.budget {
            let target = self.budget * 3 / 4;
            let mut freed = 0;
            let mut victims = Vec::new();
            for (k, v) in &inner.entries {
                if inner.bytes - freed <= target {
                    break;
                }
                freed += cost(k, v.as_deref());
                victims.push(k.clone());
            }
            for k in victims {
                inner.entries.remove(&k);
            }
            inner.bytes -= freed;
        }
        inner.bytes += size;
        inner
            .entries
            .insert(key.to_owned(), value.map(<[u8]>::to_vec));
    }

    /// Forgets everything; inserts begun before this are refused.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        inner.bytes = 0;
        inner.entries = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_begun_before_a_clear_is_refused() {
        let cache = ReadCache::new(1 << 20);
        let before = cache.generation();
        cache.clear();
        cache.insert(before, "k", Some(b"old"));
        assert_eq!(cache.get("k"), None);
        cache.insert(cache.generation(), "k", Some(b"new"));
        assert_eq!(cache.get("k"), Some(Some(b"new".to_vec())));
        cache.insert(cache.generation(), "gone", None);
        assert_eq!(cache.get("gone"), Some(None), "absence is cached too");
    }

    #[test]
    fn stays_within_its_budget() {
        let budget = 64 * 1024;
        let cache = ReadCache::new(budget);
        let value = vec![7u8; 1000];
        for i in 0..1000 {
            cache.insert(cache.generation(), &format!("key/{i}"), Some(&value));
            let bytes = cache.inner.read().unwrap().bytes;
            assert!(bytes <= budget, "{bytes} bytes after {i} inserts");
        }
        let inner = cache.inner.read().unwrap();
        let counted: usize = inner
            .entries
            .iter()
            .map(|(k, v)| cost(k, v.as_deref()))
            .sum();
        assert_eq!(counted, inner.bytes);
        assert!(
            inner.entries.len() > 30,
            "{} entries kept",
            inner.entries.len()
        );
        drop(inner);
        // A value too big for the cache is not cached (and evicts nothing).
        cache.insert(cache.generation(), "big", Some(&vec![0u8; budget / 8]));
        assert_eq!(cache.get("big"), None);
    }
}
