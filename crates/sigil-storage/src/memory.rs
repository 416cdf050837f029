use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::{Backend, Batch, StorageError};

/// An in-memory backend for transient servers. Holds only barrier ciphertext.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written (every mutation
        // is a single insert/remove or a batch checked before any write), so recover.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.lock().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.lock().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let mut map = self.lock();
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

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        crate::testing::run_conformance(&super::MemoryBackend::new());
    }
}
