/// Why a storage operation failed: what was attempted and on which key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A compare-and-set condition of a batch did not hold; nothing was written.
    #[error("storage condition failed on key {key:?}")]
    Conflict {
        /// The key whose current value differed from the expected one.
        key: String,
    },
    /// The backend itself failed (I/O, corruption, lost lock).
    #[error("storage {verb} failed on {subject:?}: {reason}")]
    Io {
        /// The operation: get, put, delete, list, batch.
        verb: &'static str,
        /// The key or prefix.
        subject: String,
        /// What went wrong (no values, only the backend's description).
        reason: String,
    },
    /// The backend cannot take the write now, and a retry may work: a Raft node whose
    /// leadership changed while the write waited, or whose write was not committed in time
    /// (its outcome is then unknown). The reason names no data.
    #[error("storage is unavailable for now: {reason}")]
    Unavailable {
        /// Why (the cluster's state, never data).
        reason: String,
    },
    /// The batch is larger than the backend takes in one write (Raft's `max_entry_size`);
    /// nothing was written.
    #[error(
        "the write is {bytes} bytes, more than the storage takes in one write ({max}: [storage] max_entry_size)"
    )]
    TooLarge {
        /// The batch's key and value bytes.
        bytes: usize,
        /// The most the backend takes.
        max: usize,
    },
    /// The backend stopped taking writes after a failure it cannot recover from while the
    /// process runs (a failed fsync: the kernel may have dropped the dirty pages). Reads go on;
    /// a restart recovers the last checkpoint and replays the write-ahead log.
    #[error(
        "storage stopped taking writes after a failure ({reason}); restart the server once the cause is fixed"
    )]
    Stopped {
        /// The first failure.
        reason: String,
    },
}

/// An atomic group of writes, applied only if every `expect` condition holds.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// `(key, expected current value)`; `None` means "must not exist".
    pub expect: Vec<(String, Option<Vec<u8>>)>,
    /// `(key, new value)`; `None` deletes.
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    /// The old bytes of what this batch deletes or replaces must be gone from the backend's
    /// files, not only unreachable, when it returns (for destroy-like operations).
    pub shred: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to hold exactly `value` (or to be absent, for `None`).
    pub fn expect(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.expect.push((key.into(), value));
        self
    }

    /// Writes `value` at `key`.
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.writes.push((key.into(), Some(value)));
        self
    }

    /// Deletes `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.writes.push((key.into(), None));
        self
    }

    /// Asks that the replaced and deleted bytes leave storage before `apply` returns.
    pub fn shred(mut self) -> Self {
        self.shred = true;
        self
    }
}

/// What [`Backend::snapshot_each`] hands each entry to: its key and value.
pub type Visit<'a> = dyn FnMut(&str, &[u8]) -> Result<(), StorageError> + 'a;

/// A key-value store of opaque bytes.
///
/// # To be correct
/// - `put`, `delete` and `apply` are atomic and, once they return `Ok`, durable for the
///   backend's durability class (memory: until the process exits; file: across `kill -9`).
/// - `apply` checks every `expect` condition and performs every write as one atomic step; if a
///   condition fails it returns [`StorageError::Conflict`] and changes nothing.
/// - `list(prefix)` returns every key that starts with `prefix`, in ascending byte order;
///   `list_children(prefix)` returns what folding those keys into children gives.
/// - After `apply` of a [`Batch::shred`] batch returns `Ok`, no file of the backend holds the
///   bytes it deleted or replaced (a copy-on-write store must reclaim the freed pages).
/// - Concurrent calls from many threads are safe.
pub trait Backend: Send + Sync + 'static {
    /// Reads `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes `value` at `key`, replacing any previous value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Deletes `key`; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Every key starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// The children of `prefix`, sorted, each once: of every key below it, the part after
    /// `prefix` up to and including the next `/` (a folder) or to its end. A backend that can
    /// seek answers in proportion to the children, not to every key below them.
    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let keys = self.list(prefix)?;
        Ok(crate::children::fold_children(
            prefix,
            keys.iter().map(String::as_str),
        ))
    }
    /// Applies a batch atomically (see the trait docs).
    fn apply(&self, batch: Batch) -> Result<(), StorageError>;
    /// Every key and its value at one instant, sorted by key: the state after some acknowledged
    /// batch, with every batch acknowledged before the call and none of a batch applied after
    /// it (a backup). Writes go on meanwhile. `visit` is handed one entry at a time, so a
    /// backend that reads from disk need not hold the store in memory; an error from `visit`
    /// stops the walk and is returned.
    fn snapshot_each(&self, visit: &mut Visit<'_>) -> Result<(), StorageError>;
    /// [`Backend::snapshot_each`] collected: every entry in memory at once.
    fn snapshot(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut all = Vec::new();
        self.snapshot_each(&mut |k, v| {
            all.push((k.to_owned(), v.to_vec()));
            Ok(())
        })?;
        Ok(all)
    }
    /// A short name for status output: "memory", "file", …
    fn kind(&self) -> &'static str;

    /// The most key and value bytes one batch may carry ([`StorageError::TooLarge`] beyond):
    /// Raft's `max_entry_size`; no limit elsewhere.
    fn max_batch_bytes(&self) -> usize {
        usize::MAX
    }
    /// Why the backend stopped taking writes, if it did (see [`StorageError::Stopped`]).
    fn failure(&self) -> Option<String> {
        None
    }
    /// Finishes every write handed over, makes it durable in the backend's final form and
    /// stops taking writes (a clean shutdown); later writes fail. Reads may go on.
    fn close(&self) {}
}

/// The most keys one batch of [`delete_all`] deletes.
pub const DELETE_CHUNK: usize = 512;

/// `keys` cut into batches of at most [`DELETE_CHUNK`] keys and at most half of `max_bytes` of
/// key bytes (each key `prefix_len` bytes longer in storage), one key at least per batch.
pub fn delete_chunks(keys: &[String], prefix_len: usize, max_bytes: usize) -> Vec<&[String]> {
    let budget = max_bytes / 2;
    let mut chunks = Vec::new();
    let (mut from, mut bytes) = (0, 0);
    for (i, key) in keys.iter().enumerate() {
        let size = prefix_len + key.len();
        if i > from && (i - from == DELETE_CHUNK || bytes + size > budget) {
            chunks.push(&keys[from..i]);
            (from, bytes) = (i, 0);
        }
        bytes += size;
    }
    if from < keys.len() {
        chunks.push(&keys[from..]);
    }
    chunks
}

/// Deletes `keys` in batches that fit in one write of `backend` ([`delete_chunks`]) — not
/// atomically: for deletes that may be repeated after an interruption (leftovers, a
/// restore's old keys).
pub fn delete_all(backend: &dyn Backend, keys: &[String]) -> Result<(), StorageError> {
    for chunk in delete_chunks(keys, 0, backend.max_batch_bytes()) {
        backend.apply(chunk.iter().fold(Batch::new(), |b, k| b.delete(k.as_str())))?;
    }
    Ok(())
}

#[cfg(test)]
mod delete_tests {
    use super::*;

    #[test]
    fn delete_chunks_bound_keys_and_bytes_and_keep_every_key_once() {
        let keys: Vec<String> = (0..1500).map(|i| format!("{i:0>100}")).collect();
        let unbounded = delete_chunks(&keys, 0, usize::MAX);
        assert_eq!(
            unbounded.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [512, 512, 476]
        );
        // 64 KiB: at most 32 KiB of keys, 110 bytes each with the prefix.
        let small = delete_chunks(&keys, 10, 64 << 10);
        assert!(
            small
                .iter()
                .all(|c| c.len() * 110 <= 32 << 10 && !c.is_empty())
        );
        assert_eq!(small.concat(), keys);
        // A key alone larger than the budget still goes, alone.
        let huge = vec!["k".repeat(100), "x".repeat(5000), "k".repeat(100)];
        let cut = delete_chunks(&huge, 0, 4096);
        assert_eq!(cut.iter().map(|c| c.len()).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(delete_chunks(&[], 0, 4096).is_empty());
    }
}
