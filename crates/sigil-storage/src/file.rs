//! The embedded file backend: one redb database file, fsync'd on every commit.
//!
//! Writers are group-committed: every batch is handed to one committer thread, which takes all
//! batches waiting at that moment, applies each (its conditions checked against the state left
//! by the batches before it) in one write transaction, commits once (one fsync), and only then
//! answers every writer. Durability does not serialize throughput.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::{Backend, Batch, StorageError};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("sigil");

type Reply = SyncSender<Result<(), StorageError>>;

/// A durable backend in one redb file.
pub struct FileBackend {
    /// Shared for reads and commits; held exclusively only to compact the file after a
    /// shredding batch.
    db: Arc<RwLock<Database>>,
    path: PathBuf,
    /// `None` once closing.
    jobs: Mutex<Option<Sender<(Batch, Reply)>>>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FileBackend {
    /// Stops the committer after it has finished every batch handed to it, so the file is
    /// closed (and can be reopened) when this returns.
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackend")
            .field("path", &self.path)
            .finish()
    }
}

fn io(verb: &'static str, subject: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        verb,
        subject: subject.to_owned(),
        reason: e.to_string(),
    }
}

impl FileBackend {
    /// Opens (or creates) the database file at `path`. Only one process may hold it.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let subject = path.display().to_string();
        let db = Database::create(path).map_err(|e| io("open", &subject, e))?;
        let txn = db.begin_write().map_err(|e| io("open", &subject, e))?;
        txn.open_table(TABLE).map_err(|e| io("open", &subject, e))?;
        txn.commit().map_err(|e| io("open", &subject, e))?;
        let db = Arc::new(RwLock::new(db));
        let (tx, rx) = mpsc::channel();
        let committer_db = Arc::clone(&db);
        let handle = std::thread::Builder::new()
            .name("sigil-commit".into())
            .spawn(move || committer(&committer_db, &rx))
            .map_err(|e| io("open", &subject, e))?;
        Ok(FileBackend {
            db,
            path: path.to_owned(),
            jobs: Mutex::new(Some(tx)),
            committer: Some(handle),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Applies every waiting batch in one transaction and one fsync, then answers each writer.
/// When a batch asked to shred, the file is compacted first (see [`shred`]).
///
/// A failed commit stops the backend for good: after a failed fsync the kernel may have
/// dropped dirty pages, so acknowledging later writes on top of them would be a lie
/// ("fsyncgate"). Every later write fails until the process restarts and redb recovers.
fn committer(db: &RwLock<Database>, jobs: &Receiver<(Batch, Reply)>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        group.extend(jobs.try_iter());
        let results = match &failed {
            Some(reason) => Err(format!(
                "storage stopped after an earlier failure: {reason}"
            )),
            None => {
                let started = std::time::Instant::now();
                let r = commit_group(&db.read().unwrap_or_else(|e| e.into_inner()), &group);
                metrics::histogram!("sigil_storage_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("sigil_storage_commit_batches").record(group.len() as f64);
                match r {
                    Ok(results) if group.iter().any(|(b, _)| b.shred) => {
                        shred(db).map(|()| results)
                    }
                    r => r,
                }
            }
        };
        match results {
            Ok(results) => {
                for ((_, reply), result) in group.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if failed.is_none() {
                    tracing::error!(error = %e, "storage commit failed; refusing every later write");
                    failed = Some(e.clone());
                }
                for (_, reply) in group {
                    let _ = reply.send(Err(io("commit", "batch", &e)));
                }
            }
        }
    }
}

/// Compacts the file until redb can compact no further. redb is copy-on-write: a delete or an
/// overwrite frees pages that keep the old bytes until they are reused, so a copy of the file
/// would still hold them. Compaction moves the live pages into the free ones and truncates the
/// file, so afterwards it holds only live pages. It needs the database to itself: reads and
/// commits wait meanwhile.
fn shred(db: &RwLock<Database>) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut db = db.write().unwrap_or_else(|e| e.into_inner());
    // Each round moves what it can; a bounded number of rounds reaches the fixed point.
    for _ in 0..64 {
        if !db.compact().map_err(|e| format!("compacting: {e}"))? {
            break;
        }
    }
    metrics::histogram!("sigil_storage_shred_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// One transaction for the whole group. A batch whose condition fails is skipped (its writer
/// gets `Conflict`); any other error aborts the transaction, so nothing of the group is
/// committed and no batch is ever half-applied.
fn commit_group(
    db: &Database,
    group: &[(Batch, Reply)],
) -> Result<Vec<Result<(), StorageError>>, String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        for (batch, _) in group {
            match apply_one(&mut table, batch) {
                Err(StorageError::Io {
                    verb,
                    subject,
                    reason,
                }) => return Err(format!("{verb} {subject:?}: {reason}")),
                result => results.push(result),
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(results)
}

fn apply_one(table: &mut redb::Table<'_, &str, &[u8]>, batch: &Batch) -> Result<(), StorageError> {
    for (key, expected) in &batch.expect {
        let current = table.get(key.as_str()).map_err(|e| io("batch", key, e))?;
        let matches = match (current, expected) {
            (None, None) => true,
            (Some(v), Some(e)) => v.value() == e.as_slice(),
            _ => false,
        };
        if !matches {
            return Err(StorageError::Conflict { key: key.clone() });
        }
    }
    for (key, value) in &batch.writes {
        match value {
            Some(v) => {
                table
                    .insert(key.as_str(), v.as_slice())
                    .map_err(|e| io("put", key, e))?;
            }
            None => {
                table
                    .remove(key.as_str())
                    .map_err(|e| io("delete", key, e))?;
            }
        }
    }
    Ok(())
}

impl Backend for FileBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = db.begin_read().map_err(|e| io("get", key, e))?;
        let table = txn.open_table(TABLE).map_err(|e| io("get", key, e))?;
        let value = table.get(key).map_err(|e| io("get", key, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.apply(Batch::new().put(key, value.to_vec()))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.apply(Batch::new().delete(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = db.begin_read().map_err(|e| io("list", prefix, e))?;
        let table = txn.open_table(TABLE).map_err(|e| io("list", prefix, e))?;
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(|e| io("list", prefix, e))? {
            let (k, _) = item.map_err(|e| io("list", prefix, e))?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.to_owned());
        }
        Ok(out)
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let stopped = || io("batch", "committer", "committer thread stopped");
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .ok_or_else(stopped)?
            .send((batch, reply))
            .map_err(|_| stopped())?;
        answer
            .recv()
            .map_err(|_| io("batch", "committer", "committer thread stopped"))?
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        crate::testing::run_conformance(&FileBackend::open(&dir.path().join("db")).unwrap());
    }

    #[test]
    fn concurrency() {
        let dir = tempfile::tempdir().unwrap();
        crate::testing::run_concurrency(Arc::new(
            FileBackend::open(&dir.path().join("db")).unwrap(),
        ));
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let b = FileBackend::open(&path).unwrap();
            b.put("k", b"v").unwrap();
        }
        // Dropping closed the file: it reopens at once.
        let b = FileBackend::open(&path).unwrap();
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn shredded_bytes_leave_the_file_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let b = FileBackend::open(&path).unwrap();
        let value = |i: u32| format!("value-{i:05}-").repeat(30).into_bytes();
        for i in 0..600 {
            b.put(&format!("k{i}"), &value(i)).unwrap();
        }
        let in_file = |i: u32| {
            let bytes = std::fs::read(&path).unwrap();
            let v = value(i);
            bytes.windows(v.len()).any(|w| w == v.as_slice())
        };
        // A plain delete leaves the bytes in freed pages.
        for i in 0..300 {
            b.delete(&format!("k{i}")).unwrap();
        }
        assert!(
            (0..300).any(in_file),
            "the copy-on-write store keeps freed bytes"
        );
        // A shredding batch (here deleting one more key) reclaims every freed page.
        b.apply(Batch::new().delete("k300").shred()).unwrap();
        assert!(
            !(0..=300).any(in_file),
            "no deleted value is left in the file"
        );
        assert!((301..600).all(in_file));
        for i in 301..600 {
            assert_eq!(b.get(&format!("k{i}")).unwrap(), Some(value(i)));
        }
        // Writes go on after it.
        b.put("after", b"x").unwrap();
        assert_eq!(b.get("after").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _first = FileBackend::open(&path).unwrap();
        assert!(FileBackend::open(&path).is_err());
    }
}
