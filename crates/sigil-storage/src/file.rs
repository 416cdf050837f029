//! The embedded file backend: one redb database file, with a write-ahead log beside it.
//!
//! Writers are group-committed: every batch is handed to one committer thread, which takes all
//! batches waiting at that moment and checks and applies each (its conditions against the state
//! left by the batches before it). The group's effective writes are appended to the log and
//! synced — one small sequential write (see [`crate::wal`]) — then published to readers in an
//! in-memory overlay, and only then is every writer answered. A checkpoint writes the overlay
//! into redb in one durable commit, within a second (and before any shredding batch is
//! answered), and empties overlay and log. redb thus only ever holds durable commits: a crash
//! leaves it at its last checkpoint, as recoverable as before, and opening replays the log.
//! Durability does not serialize throughput.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::wal::{Wal, Write};
use crate::{Backend, Batch, StorageError};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("sigil");
/// The number of the last checkpoint (the log's epoch), under [`EPOCH`].
const META: TableDefinition<&str, u64> = TableDefinition::new("sigil-meta");
const EPOCH: &str = "wal-epoch";

/// A checkpoint follows at most this long after the first write it covers (while the process
/// runs: a crash leaves the rest to the log), or once the overlay holds
/// [`CHECKPOINT_ENTRIES`] keys or the log [`CHECKPOINT_BYTES`]. Writers wait while one runs, so
/// it is kept small: a second of writes under load took tens of milliseconds.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
const CHECKPOINT_ENTRIES: usize = 1024;
const CHECKPOINT_BYTES: u64 = 64 << 20;

type Reply = SyncSender<Result<(), StorageError>>;
type Overlay = BTreeMap<String, Option<Vec<u8>>>;

/// A durable backend in one redb file.
pub struct FileBackend {
    /// Shared for reads and commits; held exclusively only to compact the file after a
    /// shredding batch.
    db: Arc<RwLock<Database>>,
    /// Writes synced to the log and not yet checkpointed into redb (`None`: deleted). Readers
    /// look here first.
    overlay: Arc<RwLock<Overlay>>,
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
    /// Opens (or creates) the database file at `path` and its log (`<path>.wal`), replaying
    /// the writes the log holds beyond the last checkpoint. Only one process may hold them.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let subject = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| io("open", &subject, e);
        let db = Database::create(path).map_err(|e| err(&e))?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push(".wal");
        let mut log = Log {
            wal: Wal::open(Path::new(&wal_path)).map_err(|e| err(&e))?,
            epoch: 0,
            since: Instant::now(),
        };
        let txn = db.begin_write().map_err(|e| err(&e))?;
        txn.open_table(TABLE).map_err(|e| err(&e))?;
        log.epoch = txn
            .open_table(META)
            .and_then(|meta| Ok(meta.get(EPOCH)?.map(|v| v.value())))
            .map_err(|e| err(&e))?
            .unwrap_or(0);
        txn.commit().map_err(|e| err(&e))?;
        let records = log.wal.records(log.epoch).map_err(|e| err(&e))?;
        if !records.is_empty() {
            let txn = db.begin_write().map_err(|e| err(&e))?;
            {
                let mut table = txn.open_table(TABLE).map_err(|e| err(&e))?;
                for (key, value) in records.iter().flatten() {
                    write_one(&mut table, key, value.as_deref())?;
                }
            }
            txn.commit().map_err(|e| err(&e))?;
            tracing::info!(
                groups = records.len(),
                "replayed writes from the log past the last checkpoint"
            );
        }
        checkpoint(&db, &mut log, &Overlay::new()).map_err(|e| err(&e))?;
        let db = Arc::new(RwLock::new(db));
        let overlay = Arc::new(RwLock::new(Overlay::new()));
        let (tx, rx) = mpsc::channel();
        let shared = Shared {
            db: Arc::clone(&db),
            overlay: Arc::clone(&overlay),
        };
        let handle = std::thread::Builder::new()
            .name("sigil-commit".into())
            .spawn(move || committer(&shared, &rx, log))
            .map_err(|e| err(&e))?;
        Ok(FileBackend {
            db,
            overlay,
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

/// The committer's log and the epoch its records carry.
struct Log {
    wal: Wal,
    epoch: u64,
    /// When the last checkpoint was made.
    since: Instant,
}

/// What the committer shares with readers.
struct Shared {
    db: Arc<RwLock<Database>>,
    overlay: Arc<RwLock<Overlay>>,
}

impl Shared {
    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes `overlay` into redb in one durable commit that also records the next epoch, then
/// empties the log: everything it held is in the file now (a lost emptying leaves records of
/// the old epoch, never replayed).
fn checkpoint(db: &Database, log: &mut Log, overlay: &Overlay) -> Result<(), String> {
    let started = Instant::now();
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        for (key, value) in overlay {
            write_one(&mut table, key, value.as_deref()).map_err(|e| e.to_string())?;
        }
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(EPOCH, log.epoch + 1)
            .map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    log.epoch += 1;
    log.wal
        .clear()
        .map_err(|e| format!("emptying the log: {e}"))?;
    log.since = Instant::now();
    metrics::histogram!("sigil_storage_checkpoint_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Checkpoints the overlay, then empties it (readers find the same values in redb).
fn checkpoint_overlay(shared: &Shared, log: &mut Log) -> Result<(), String> {
    // Only this thread changes the overlay, so reading it under the shared lock is enough.
    {
        let overlay = shared.overlay.read().unwrap_or_else(|e| e.into_inner());
        checkpoint(&shared.db(), log, &overlay)?;
    }
    shared
        .overlay
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    Ok(())
}

/// Checks and applies every waiting batch with one log sync, then answers each writer. When a
/// batch asked to shred, a checkpoint follows and the file is compacted (see [`shred`]) before
/// anyone is answered.
///
/// A failure stops the backend for good: after a failed fsync the kernel may have dropped
/// dirty pages, so acknowledging later writes on top of them would be a lie ("fsyncgate").
/// Every later write fails until the process restarts, redb recovers its last checkpoint and
/// the log is replayed.
fn committer(shared: &Shared, jobs: &Receiver<(Batch, Reply)>, mut log: Log) {
    let mut failed: Option<String> = None;
    loop {
        let first = match jobs.recv_timeout(CHECKPOINT_EVERY) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                checkpoint_if_due(shared, &mut log, &mut failed, true);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        group.extend(jobs.try_iter());
        let results = match &failed {
            Some(reason) => Err(format!(
                "storage stopped after an earlier failure: {reason}"
            )),
            None => {
                let started = Instant::now();
                let r = commit_group(shared, &group, &mut log);
                metrics::histogram!("sigil_storage_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("sigil_storage_commit_batches").record(group.len() as f64);
                match r {
                    Ok(results) if group.iter().any(|(b, _)| b.shred) => {
                        checkpoint_overlay(shared, &mut log)
                            .and_then(|()| shred(&shared.db))
                            .map(|()| results)
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
        checkpoint_if_due(shared, &mut log, &mut failed, false);
    }
    // Closing: leave the file complete and the log empty.
    checkpoint_if_due(shared, &mut log, &mut failed, true);
}

/// A checkpoint when the log holds anything and one is due (or `now`).
fn checkpoint_if_due(shared: &Shared, log: &mut Log, failed: &mut Option<String>, now: bool) {
    let due = now
        || log.since.elapsed() >= CHECKPOINT_EVERY
        || log.wal.len() >= CHECKPOINT_BYTES
        || shared
            .overlay
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            >= CHECKPOINT_ENTRIES;
    if failed.is_some() || log.wal.len() == 0 || !due {
        return;
    }
    if let Err(e) = checkpoint_overlay(shared, log) {
        tracing::error!(error = %e, "storage checkpoint failed; refusing every later write");
        *failed = Some(e);
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

/// Checks each batch of the group against the state the batches before it left (overlay,
/// then redb) and collects the effective writes of those whose conditions hold (the others'
/// writers get `Conflict`). The writes reach the log (synced) and then, all at once, the
/// overlay; any error before that publishes nothing, so no batch is ever half-applied.
fn commit_group(
    shared: &Shared,
    group: &[(Batch, Reply)],
    log: &mut Log,
) -> Result<Vec<Result<(), StorageError>>, String> {
    let mut results = Vec::with_capacity(group.len());
    let mut staged = Overlay::new();
    let mut effective: Vec<&Write> = Vec::new();
    {
        let db = shared.db();
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        let overlay = shared.overlay.read().unwrap_or_else(|e| e.into_inner());
        for (batch, _) in group {
            let mut holds = Ok(());
            for (key, expected) in &batch.expect {
                let current = match staged.get(key).or_else(|| overlay.get(key)) {
                    Some(v) => v.clone(),
                    None => table
                        .get(key.as_str())
                        .map_err(|e| format!("batch {key:?}: {e}"))?
                        .map(|v| v.value().to_vec()),
                };
                if current != *expected {
                    holds = Err(StorageError::Conflict { key: key.clone() });
                    break;
                }
            }
            if holds.is_ok() {
                for (key, value) in &batch.writes {
                    staged.insert(key.clone(), value.clone());
                }
                effective.extend(&batch.writes);
            }
            results.push(holds);
        }
    }
    if effective.is_empty() {
        return Ok(results);
    }
    log.wal
        .append(log.epoch, &effective)
        .map_err(|e| format!("writing the log: {e}"))?;
    shared
        .overlay
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .append(&mut staged);
    Ok(results)
}

/// Puts `value` at `key`, or deletes `key` for `None`.
fn write_one(
    table: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), StorageError> {
    match value {
        Some(v) => table
            .insert(key, v)
            .map(drop)
            .map_err(|e| io("put", key, e)),
        None => table
            .remove(key)
            .map(drop)
            .map_err(|e| io("delete", key, e)),
    }
}

impl Backend for FileBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(value) = self
            .overlay
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(value.clone());
        }
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
        // The overlay is held while redb's snapshot is taken: neither a group nor a checkpoint
        // can change what the two show together meanwhile.
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = db.begin_read().map_err(|e| io("list", prefix, e))?;
        let table = txn.open_table(TABLE).map_err(|e| io("list", prefix, e))?;
        let mut keys = std::collections::BTreeSet::new();
        for item in table.range(prefix..).map_err(|e| io("list", prefix, e))? {
            let (k, _) = item.map_err(|e| io("list", prefix, e))?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            keys.insert(k.to_owned());
        }
        let from = (
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        );
        for (k, v) in overlay.range::<str, _>(from) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(_) => keys.insert(k.clone()),
                None => keys.remove(k),
            };
        }
        Ok(keys.into_iter().collect())
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
        // The file or its log.
        let in_file = |i: u32| {
            let v = value(i);
            [path.clone(), dir.path().join("db.wal")].iter().any(|p| {
                let bytes = std::fs::read(p).unwrap();
                bytes.windows(v.len()).any(|w| w == v.as_slice())
            })
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

    /// What a crash between checkpoints leaves: writes only the log holds, behind the file's
    /// last checkpoint, with a torn record at the end. Opening replays them in order.
    #[test]
    fn opening_replays_the_log_past_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let wal_path = dir.path().join("db.wal");
        {
            let b = FileBackend::open(&path).unwrap();
            b.put("a", b"1").unwrap();
            b.put("gone", b"x").unwrap();
        }
        // Closing checkpointed: the log is empty.
        assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);
        let epoch = {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            meta.get(EPOCH).unwrap().unwrap().value()
        };
        {
            let mut wal = Wal::open(&wal_path).unwrap();
            let w = |k: &str, v: Option<&[u8]>| (k.to_owned(), v.map(<[u8]>::to_vec));
            wal.append(epoch, &[&w("a", Some(b"2")), &w("gone", None)])
                .unwrap();
            wal.append(epoch, &[&w("a", Some(b"3")), &w("b", Some(b"new"))])
                .unwrap();
        }
        // A torn third record: never acknowledged, never replayed.
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(&wal_path)
            .unwrap();
        std::io::Write::write_all(&mut torn, &[9, 0, 0, 0, 1, 2]).unwrap();
        drop(torn);

        let b = FileBackend::open(&path).unwrap();
        assert_eq!(b.get("a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(b.get("b").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(b.get("gone").unwrap(), None);
        // Replayed into the file and checkpointed: the log is empty again, and writes go on.
        assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);
        b.put("after", b"y").unwrap();
        drop(b);
        let b = FileBackend::open(&path).unwrap();
        assert_eq!(b.get("a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(b.get("after").unwrap().as_deref(), Some(&b"y"[..]));
    }

    /// Records of an epoch before the last checkpoint are already in the file: emptying the
    /// log may not have reached the disk, and replaying them would bring back old values.
    #[test]
    fn records_from_before_the_last_checkpoint_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let b = FileBackend::open(&path).unwrap();
            b.put("k", b"new").unwrap();
        }
        let epoch = {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            meta.get(EPOCH).unwrap().unwrap().value()
        };
        let mut wal = Wal::open(&dir.path().join("db.wal")).unwrap();
        wal.append(epoch - 1, &[&("k".to_owned(), Some(b"old".to_vec()))])
            .unwrap();
        drop(wal);
        let b = FileBackend::open(&path).unwrap();
        assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _first = FileBackend::open(&path).unwrap();
        assert!(FileBackend::open(&path).is_err());
    }
}
