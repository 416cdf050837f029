use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Backend, Batch, StorageError};

/// An in-memory backend for transient servers. Holds only barrier ciphertext.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    /// Readers share it: a read-mostly server's workers do not queue behind each other.
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the map half-written (every mutation is a
    // single insert/remove or a batch checked before any write), so both recover.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.write().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.write().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .read()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let map = self.read();
        let scan = |from: &str, visit: &mut dyn FnMut(&str) -> bool| {
            for (k, _) in
                map.range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            {
                if !visit(k) {
                    break;
                }
            }
            Ok(())
        };
        let children = crate::children::seek_children(prefix, scan, |_| true)?;
        Ok(children.into_iter().collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let mut map = self.write();
        for (key, expected) in &batch.expect {
            if map.get(key) != expected.as_ref() {
                return Err(StorageError::Conflict { key: key.clone() });
            }
        }
        for (key, value) in batch.writes {
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn snapshot_each(&self, visit: &mut crate::Visit<'_>) -> Result<(), StorageError> {
        // A copy, so that writers do not wait on `visit` (the store is in memory anyway).
        let all: Vec<(String, Vec<u8>)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.iter().try_for_each(|(k, v)| visit(k, v))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        let ran = crate::testing::run_conformance(|| {
            crate::testing::Store::transient(super::MemoryBackend::new())
        });
        assert!(ran >= 25, "{ran} checks");
    }
}
