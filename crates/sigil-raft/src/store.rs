//! Raft's log and state machine in two redb files in the node's data directory: the log in
//! `raft-log.redb`, the state machine in `raft.redb`.
//!
//! The log is written with durable commits: an entry is on disk before openraft is told so, and
//! one append call — every entry openraft has gathered, from every concurrent writer — is one
//! commit, so writers share fsyncs. In a file of its own, a log commit writes only the log's
//! pages (in one file with the state machine it also wrote every page the applies had dirtied
//! since: a follower's append took 2.2 ms). The state machine applies with non-durable
//! commits: a crash may lose what was applied since its last durable commit, but never the
//! log, and openraft applies the committed log again from the state machine's last durable
//! applied entry (in `Raft::new`, before the node serves anything). Closing the node commits
//! the state machine durably; making a snapshot (every `snapshot_every` entries, and for each shred)
//! commits the state machine durably before openraft may purge the log it covers, so the log
//! always holds what a restart re-applies. (Committing it durably once a second as well was
//! tried: each such commit held the applies for 20 ms — p99 of cluster writes 27 ms instead of
//! 10 — and `raft.redb` grew twice as large.)

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership, Vote,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase as _, ReadableTable as _,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::snapshot_file;
use crate::types::{
    Change, Entry, Member, NodeId, Outcome, Outcomes, RaftStorageError, TypeConfig,
};

/// Log entries by index (postcard-encoded [`Entry`]).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft-log");
/// The log's own state: [`VOTE`], [`COMMITTED`], [`PURGED`].
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft-log-meta");
/// The state machine: Sigil's storage keys and their (barrier-encrypted) values.
const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("sigil");
/// The state machine's own state: [`APPLIED`], [`MEMBERSHIP`], [`SNAPSHOT`] (the current
/// snapshot file's record; the key of the in-memory snapshots before them, [`OLD_SNAPSHOT`], is
/// dropped at open).
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft-sm-meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot-file";
const OLD_SNAPSHOT: &str = "snapshot";

type Io = StorageIOError<NodeId>;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("raft state serializes")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("{what} in raft.redb does not decode: {e}"))
}

/// A storage error of the Raft backend.
pub(crate) fn io(
    verb: &'static str,
    subject: &str,
    reason: impl std::fmt::Display,
) -> sigil_storage::StorageError {
    sigil_storage::StorageError::Io {
        verb,
        subject: subject.to_owned(),
        reason: reason.to_string(),
    }
}

/// Why a redb operation failed, as an error openraft carries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Failure(pub(crate) String);

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string())
}

/// A transaction on the Raft file, holding the file shared so that a compaction
/// ([`RaftFile::compact`]), which needs it alone, waits until the transaction ends.
pub(crate) struct Txn<'a, T> {
    // Declared first: the transaction ends before the file is released.
    txn: T,
    _db: std::sync::RwLockReadGuard<'a, Files>,
}

impl<T> std::ops::Deref for Txn<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.txn
    }
}

impl Txn<'_, WriteTransaction> {
    fn commit(self) -> Result<(), redb::CommitError> {
        self.txn.commit()
    }
}

/// Which of the two files a transaction is on.
#[derive(Clone, Copy)]
enum Half {
    /// `raft-log.redb`: [`LOG`], [`LOG_META`].
    Log,
    /// `raft.redb`: [`DATA`], [`SM_META`].
    Sm,
}

/// The two redb files.
struct Files {
    log: Database,
    sm: Database,
}

impl Files {
    fn of(&self, half: Half) -> &Database {
        match half {
            Half::Log => &self.log,
            Half::Sm => &self.sm,
        }
    }
}

/// The redb files of both halves.
#[derive(Clone)]
pub struct RaftFile {
    /// Shared by every transaction; held alone only to compact the files.
    db: Arc<std::sync::RwLock<Files>>,
    /// The log index of the last applied change that asked for its old bytes to leave
    /// storage ([`sigil_storage::Batch::shred`]): the node's shredder snapshots, purges the
    /// log and compacts the file through it.
    shred_wanted: Arc<tokio::sync::watch::Sender<u64>>,
    /// Where snapshot files live (`raft/snapshots/`).
    snapshots: Arc<PathBuf>,
    /// The partial file a snapshot being received from the leader is written to.
    receiving: Arc<std::sync::Mutex<Option<PathBuf>>>,
    /// Durable log appends so far, and the entries they carried: concurrent writers share
    /// appends (group commit) when the first is much smaller than the second.
    appends: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
}

impl std::fmt::Debug for RaftFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftFile").finish_non_exhaustive()
    }
}

impl RaftFile {
    /// Opens (or creates) `raft.redb` and `raft-log.redb` in `dir`, with `cache_bytes` of
    /// redb page cache between them. A log still in `raft.redb` (as nodes kept it before
    /// 2026-12-07) moves to `raft-log.redb`.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let open = |name: &str, cache: usize| {
            let path = dir.join(name);
            Database::builder()
                .set_cache_size(cache)
                .create(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        // The log is read soon after it is written (replication): it needs little cache.
        let log_cache = (cache_bytes / 8).max(1 << 20);
        let files = Files {
            log: open("raft-log.redb", log_cache)?,
            sm: open(
                "raft.redb",
                cache_bytes.saturating_sub(log_cache).max(1 << 20),
            )?,
        };
        let snapshots = dir.join("snapshots");
        std::fs::create_dir_all(&snapshots).map_err(|e| format!("{}: {e}", snapshots.display()))?;
        let file = RaftFile {
            db: Arc::new(std::sync::RwLock::new(files)),
            shred_wanted: Arc::new(tokio::sync::watch::Sender::new(0)),
            snapshots: Arc::new(snapshots),
            receiving: Arc::default(),
            appends: Arc::default(),
        };
        file.move_old_log().map_err(|e| e.0)?;
        let txn = file
            .write(Half::Log, Durability::Immediate)
            .map_err(|e| e.0)?;
        {
            txn.open_table(LOG).map_err(|e| e.to_string())?;
            txn.open_table(LOG_META).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        let txn = file
            .write(Half::Sm, Durability::Immediate)
            .map_err(|e| e.0)?;
        {
            txn.open_table(DATA).map_err(|e| e.to_string())?;
            let mut sm = txn.open_table(SM_META).map_err(|e| e.to_string())?;
            sm.remove(OLD_SNAPSHOT).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        let current: Option<SnapshotRecord> =
            file.meta(Half::Sm, SM_META, SNAPSHOT).map_err(|e| e.0)?;
        let keep = current.map(|r| r.file).unwrap_or_default();
        snapshot_file::prune(&file.snapshots, &keep, true);
        Ok(file)
    }

    fn shared(&self) -> std::sync::RwLockReadGuard<'_, Files> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
        half: Half,
        durability: Durability,
    ) -> Result<Txn<'_, WriteTransaction>, Failure> {
        let db = self.shared();
        let mut txn = db.of(half).begin_write().map_err(fail)?;
        txn.set_durability(durability).map_err(fail)?;
        Ok(Txn { txn, _db: db })
    }

    fn read(&self, half: Half) -> Result<Txn<'_, ReadTransaction>, Failure> {
        let db = self.shared();
        let txn = db.of(half).begin_read().map_err(fail)?;
        Ok(Txn { txn, _db: db })
    }

    /// Moves a log kept in `raft.redb` (before the log had a file of its own) to
    /// `raft-log.redb`: copied and committed there first, then removed from `raft.redb`, so a
    /// crash in between leaves a copy that the next open copies again over itself.
    fn move_old_log(&self) -> Result<(), Failure> {
        let old = self.read(Half::Sm)?;
        let (log, meta) = match (old.open_table(LOG), old.open_table(LOG_META)) {
            (Ok(log), Ok(meta)) => (log, meta),
            // Never there, or already moved.
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(()),
            (Err(e), _) | (_, Err(e)) => return Err(fail(e)),
        };
        let txn = self.write(Half::Log, Durability::Immediate)?;
        {
            let mut to = txn.open_table(LOG).map_err(fail)?;
            for row in log.iter().map_err(fail)? {
                let (k, v) = row.map_err(fail)?;
                to.insert(k.value(), v.value()).map_err(fail)?;
            }
            let mut to = txn.open_table(LOG_META).map_err(fail)?;
            for row in meta.iter().map_err(fail)? {
                let (k, v) = row.map_err(fail)?;
                to.insert(k.value(), v.value()).map_err(fail)?;
            }
        }
        txn.commit().map_err(fail)?;
        drop((log, meta, old));
        let txn = self.write(Half::Sm, Durability::Immediate)?;
        txn.delete_table(LOG).map_err(fail)?;
        txn.delete_table(LOG_META).map_err(fail)?;
        txn.commit().map_err(fail)
    }

    /// Compacts the file until redb can compact no further, so that no freed page keeps the
    /// bytes of a removed entry or value (redb is copy-on-write). It has the file alone
    /// meanwhile: Raft's reads and writes on this node wait. It takes the file only when no
    /// transaction holds it (trying again every 10 ms for up to `patience`), so that a long
    /// reader — a scheduled snapshot streaming the store to disk — does not make every other
    /// transaction queue behind the compaction.
    pub(crate) fn compact(&self, patience: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + patience;
        let mut db = loop {
            match self.db.try_write() {
                Ok(db) => break db,
                Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() > deadline {
                        return Err(format!(
                            "raft.redb stayed in use for {} s",
                            patience.as_secs()
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        let files = &mut *db;
        for (name, db) in [
            ("raft.redb", &mut files.sm),
            ("raft-log.redb", &mut files.log),
        ] {
            for _ in 0..64 {
                if !db
                    .compact()
                    .map_err(|e| format!("compacting {name}: {e}"))?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The log index of the last applied change that asked to shred.
    pub(crate) fn shred_wanted(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shred_wanted.subscribe()
    }

    fn meta<T: for<'de> Deserialize<'de>>(
        &self,
        half: Half,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, Failure> {
        let txn = self.read(half)?;
        let t = txn.open_table(table).map_err(fail)?;
        let Some(v) = t.get(key).map_err(fail)? else {
            return Ok(None);
        };
        decode(v.value(), key).map(Some).map_err(Failure)
    }

    fn put_meta<T: Serialize>(
        &self,
        half: Half,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), Failure> {
        let txn = self.write(half, durability)?;
        txn.open_table(table)
            .map_err(fail)?
            .insert(key, encode(value).as_slice())
            .map_err(fail)?;
        txn.commit().map_err(fail)
    }

    /// Reads a key of the state machine.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let txn = self.read(Half::Sm).map_err(|e| e.0)?;
        let t = txn.open_table(DATA).map_err(|e| e.to_string())?;
        Ok(t.get(key)
            .map_err(|e| e.to_string())?
            .map(|v| v.value().to_vec()))
    }

    /// Every key of the state machine starting with `prefix`, in order.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        let txn = self.read(Half::Sm).map_err(|e| e.0)?;
        let t = txn.open_table(DATA).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        for row in t.range(prefix..).map_err(|e| e.to_string())? {
            let (k, _) = row.map_err(|e| e.to_string())?;
            if !k.value().starts_with(prefix) {
                break;
            }
            keys.push(k.value().to_owned());
        }
        Ok(keys)
    }

    /// The children of `prefix` in the state machine (see `Backend::list_children`), seeking
    /// past each folder.
    pub fn children(&self, prefix: &str) -> Result<Vec<String>, String> {
        let txn = self.read(Half::Sm).map_err(|e| e.0)?;
        let t = txn.open_table(DATA).map_err(|e| e.to_string())?;
        let scan = |from: &str, visit: &mut dyn FnMut(&str) -> bool| {
            for row in t.range(from..).map_err(|e| e.to_string())? {
                let (k, _) = row.map_err(|e| e.to_string())?;
                if !visit(k.value()) {
                    break;
                }
            }
            Ok::<(), String>(())
        };
        let children = sigil_storage::children::seek_children(prefix, scan, |_| true)?;
        Ok(children.into_iter().collect())
    }

    /// Every key and value of the state machine, in order, read in one transaction and
    /// handed to `visit` one at a time.
    pub fn each(
        &self,
        visit: &mut sigil_storage::Visit<'_>,
    ) -> Result<(), sigil_storage::StorageError> {
        let failed = |e: &dyn std::fmt::Display| io("snapshot", "", e);
        let txn = self.read(Half::Sm).map_err(|e| failed(&e))?;
        let t = txn.open_table(DATA).map_err(|e| failed(&e))?;
        for row in t.iter().map_err(|e| failed(&e))? {
            let (k, v) = row.map_err(|e| failed(&e))?;
            visit(k.value(), v.value())?;
        }
        Ok(())
    }

    /// Commits the state machine durably (with what was applied non-durably before).
    pub(crate) fn sync_state_machine(&self) -> Result<(), String> {
        let txn = self
            .write(Half::Sm, Durability::Immediate)
            .map_err(|e| e.0)?;
        txn.commit().map_err(|e| e.to_string())
    }

    /// Whether the log holds an entry or has purged some.
    pub(crate) fn has_log(&self) -> bool {
        let log = self.log_store();
        let purged = self.meta::<LogId<NodeId>>(Half::Log, LOG_META, PURGED);
        matches!(purged, Ok(Some(_))) || matches!(log.last_entry(), Ok(Some(_)))
    }

    /// How many durable log appends there were, and how many entries they carried.
    pub fn appends(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.appends.0.load(Relaxed), self.appends.1.load(Relaxed))
    }

    /// The log half.
    pub fn log_store(&self) -> LogStore {
        LogStore { file: self.clone() }
    }

    /// The state machine half.
    pub fn state_machine(&self) -> StateMachine {
        StateMachine { file: self.clone() }
    }
}

/// Raft's log (openraft's [`RaftLogStorage`]).
#[derive(Clone, Debug)]
pub struct LogStore {
    file: RaftFile,
}

impl LogStore {
    fn last_entry(&self) -> Result<Option<LogId<NodeId>>, Failure> {
        let txn = self.file.read(Half::Log)?;
        let t = txn.open_table(LOG).map_err(fail)?;
        let Some((_, v)) = t.last().map_err(fail)? else {
            return Ok(None);
        };
        let entry: Entry = decode(v.value(), "a log entry").map_err(Failure)?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let read = || -> Result<Vec<Entry>, Failure> {
            let txn = self.file.read(Half::Log)?;
            let t = txn.open_table(LOG).map_err(fail)?;
            let mut entries = Vec::new();
            for row in t.range(range).map_err(fail)? {
                let (_, v) = row.map_err(fail)?;
                entries.push(decode(v.value(), "a log entry").map_err(Failure)?);
            }
            Ok(entries)
        };
        read().map_err(|e| Io::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let state = || -> Result<LogState<TypeConfig>, Failure> {
            let last_purged_log_id: Option<LogId<NodeId>> =
                self.file.meta(Half::Log, LOG_META, PURGED)?;
            let last_log_id = self.last_entry()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        };
        state().map_err(|e| Io::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        self.file
            .put_meta(Half::Log, LOG_META, VOTE, vote, Durability::Immediate)
            .map_err(|e| Io::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.file
            .meta(Half::Log, LOG_META, VOTE)
            .map_err(|e| Io::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), RaftStorageError> {
        // A hint for a restart (apply up to here without waiting for a leader): it need not be
        // durable, the next durable commit carries it.
        self.file
            .put_meta(Half::Log, LOG_META, COMMITTED, &committed, Durability::None)
            .map_err(|e| Io::write_logs(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        Ok(self
            .file
            .meta::<Option<LogId<NodeId>>>(Half::Log, LOG_META, COMMITTED)
            .map_err(|e| Io::read_logs(&e))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<(), Failure> {
            let txn = self.file.write(Half::Log, Durability::Immediate)?;
            let mut n = 0;
            {
                let mut t = txn.open_table(LOG).map_err(fail)?;
                for entry in entries {
                    t.insert(entry.log_id.index, encode(&entry).as_slice())
                        .map_err(fail)?;
                    n += 1;
                }
            }
            txn.commit().map_err(fail)?;
            use std::sync::atomic::Ordering::Relaxed;
            self.file.appends.0.fetch_add(1, Relaxed);
            self.file.appends.1.fetch_add(n, Relaxed);
            Ok(())
        };
        match write() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.0.clone())));
                Err(Io::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        self.remove(log_id.index.., None)
            .map_err(|e| Io::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        self.remove(..=log_id.index, Some(log_id))
            .map_err(|e| Io::write_logs(&e).into())
    }
}

impl LogStore {
    /// Removes the entries in `range`; a purge records how far it went.
    fn remove(
        &self,
        range: impl RangeBounds<u64>,
        purged: Option<LogId<NodeId>>,
    ) -> Result<(), Failure> {
        let txn = self.file.write(Half::Log, Durability::Immediate)?;
        {
            let mut t = txn.open_table(LOG).map_err(fail)?;
            t.retain_in(range, |_, _| false).map_err(fail)?;
            if let Some(purged) = purged {
                txn.open_table(LOG_META)
                    .map_err(fail)?
                    .insert(PURGED, encode(&purged).as_slice())
                    .map_err(fail)?;
            }
        }
        txn.commit().map_err(fail)
    }
}

/// Applies one change if its conditions hold against what the entries before it left.
fn apply_change(
    data: &mut redb::Table<'_, &'static str, &'static [u8]>,
    change: &Change,
) -> Result<Outcome, Failure> {
    for (key, expected) in &change.expect {
        let current = data
            .get(key.as_str())
            .map_err(fail)?
            .map(|v| v.value().to_vec());
        if current != *expected {
            return Ok(Outcome::Conflict(key.clone()));
        }
    }
    for (key, value) in &change.writes {
        match value {
            Some(v) => data.insert(key.as_str(), v.as_slice()).map(|_| ()),
            None => data.remove(key.as_str()).map(|_| ()),
        }
        .map_err(fail)?;
    }
    Ok(Outcome::Applied)
}

/// The current snapshot, kept in the state machine's table: its metadata and its file in
/// `raft/snapshots/`.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta<NodeId, Member>,
    file: String,
}

/// Raft's state machine (openraft's [`RaftStateMachine`]): Sigil's storage.
#[derive(Clone, Debug)]
pub struct StateMachine {
    file: RaftFile,
}

type Applied = (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);

impl StateMachine {
    fn applied(&self) -> Result<Applied, Failure> {
        Ok((
            self.file.meta(Half::Sm, SM_META, APPLIED)?.flatten(),
            self.file
                .meta(Half::Sm, SM_META, MEMBERSHIP)?
                .unwrap_or_default(),
        ))
    }

    fn apply_all(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<Outcomes>, Failure> {
        let txn = self.file.write(Half::Sm, Durability::None)?;
        let mut outcomes = Vec::new();
        let mut last = None;
        let mut shred_at = None;
        {
            let mut data = txn.open_table(DATA).map_err(fail)?;
            let mut meta = txn.open_table(SM_META).map_err(fail)?;
            for entry in entries {
                last = Some(entry.log_id);
                outcomes.push(match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(entry.log_id), m);
                        meta.insert(MEMBERSHIP, encode(&stored).as_slice())
                            .map_err(fail)?;
                        Vec::new()
                    }
                    EntryPayload::Normal(cmd) => {
                        let applied: Outcomes = cmd
                            .changes
                            .iter()
                            .map(|change| apply_change(&mut data, change))
                            .collect::<Result<_, _>>()?;
                        let shreds = cmd.changes.iter().zip(&applied);
                        if shreds
                            .into_iter()
                            .any(|(c, o)| c.shred && *o == Outcome::Applied)
                        {
                            shred_at = Some(entry.log_id.index);
                        }
                        applied
                    }
                });
            }
            if let Some(last) = last {
                meta.insert(APPLIED, encode(&Some(last)).as_slice())
                    .map_err(fail)?;
            }
        }
        txn.commit().map_err(fail)?;
        if let Some(index) = shred_at {
            self.file.shred_wanted.send_if_modified(|wanted| {
                let later = index > *wanted;
                *wanted = (*wanted).max(index);
                later
            });
        }
        Ok(outcomes)
    }

    /// Writes the state machine at its applied entry into a new snapshot file, a key at a
    /// time, and makes it the current snapshot (the older files are removed).
    fn build(&self) -> Result<Snapshot<TypeConfig>, Failure> {
        // One read transaction: the data and the applied entry agree.
        let txn = self.file.read(Half::Sm)?;
        let meta_t = txn.open_table(SM_META).map_err(fail)?;
        let read_meta = |key: &str| -> Result<Option<Vec<u8>>, Failure> {
            Ok(meta_t.get(key).map_err(fail)?.map(|v| v.value().to_vec()))
        };
        let last_log_id: Option<LogId<NodeId>> = match read_meta(APPLIED)? {
            Some(b) => decode::<Option<LogId<NodeId>>>(&b, APPLIED).map_err(Failure)?,
            None => None,
        };
        let last_membership: StoredMembership<NodeId, Member> = match read_meta(MEMBERSHIP)? {
            Some(b) => decode(&b, MEMBERSHIP).map_err(Failure)?,
            None => StoredMembership::default(),
        };
        let dir = self.file.snapshots.as_path();
        let partial = snapshot_file::partial_path(dir, "build");
        let written = (|| -> Result<u64, Failure> {
            let mut out = snapshot_file::Writer::create(&partial).map_err(fail)?;
            let t = txn.open_table(DATA).map_err(fail)?;
            for row in t.iter().map_err(fail)? {
                let (k, v) = row.map_err(fail)?;
                out.add(k.value(), v.value()).map_err(fail)?;
            }
            out.finish().map_err(fail)
        })();
        drop(meta_t);
        drop(txn);
        let count = written.inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{count}", id.leader_id.term, id.index),
            None => format!("0-0-{count}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let name = self.keep(&partial, &meta)?;
        // Durable: the applied state it covers is on disk before openraft purges that log.
        self.file.put_meta(
            Half::Sm,
            SM_META,
            SNAPSHOT,
            &SnapshotRecord {
                meta: meta.clone(),
                file: name.clone(),
            },
            Durability::Immediate,
        )?;
        snapshot_file::prune(dir, &name, false);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(self.open_snapshot(&name)?),
        })
    }

    /// Renames a finished partial file to the snapshot file of `meta`; its name.
    fn keep(&self, partial: &Path, meta: &SnapshotMeta<NodeId, Member>) -> Result<String, Failure> {
        let name = format!("{}{}", meta.snapshot_id, snapshot_file::SUFFIX);
        let dir = self.file.snapshots.as_path();
        std::fs::rename(partial, dir.join(&name)).map_err(fail)?;
        snapshot_file::sync_dir(dir).map_err(fail)?;
        Ok(name)
    }

    fn open_snapshot(&self, name: &str) -> Result<tokio::fs::File, Failure> {
        let path = self.file.snapshots.join(name);
        std::fs::File::open(&path)
            .map(tokio::fs::File::from_std)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))
    }

    /// Replaces the state machine with the snapshot read from `input` a key at a time, and
    /// makes it the current snapshot (a copy written as it is read: `input` may be any file,
    /// a received one or one this node built).
    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        input: impl std::io::Read,
    ) -> Result<(), Failure> {
        let partial = snapshot_file::partial_path(&self.file.snapshots, "install");
        let installed = self.install_into(meta, input, &partial);
        let _ = std::fs::remove_file(&partial);
        installed
    }

    fn install_into(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        input: impl std::io::Read,
        partial: &Path,
    ) -> Result<(), Failure> {
        let txn = self.file.write(Half::Sm, Durability::Immediate)?;
        let name = {
            let mut copy = snapshot_file::Writer::create(partial).map_err(fail)?;
            let mut data = txn.open_table(DATA).map_err(fail)?;
            data.retain(|_, _| false).map_err(fail)?;
            let reader =
                snapshot_file::Reader::new(std::io::BufReader::with_capacity(1 << 20, input))
                    .map_err(Failure)?;
            for entry in reader {
                let (k, v) = entry.map_err(Failure)?;
                data.insert(k.as_str(), v.as_slice()).map_err(fail)?;
                copy.add(&k, &v).map_err(fail)?;
            }
            copy.finish().map_err(fail)?;
            // Named as the snapshot before the record naming it commits: a crash in between
            // leaves a file the next build removes.
            let name = self.keep(partial, meta)?;
            let mut sm = txn.open_table(SM_META).map_err(fail)?;
            sm.insert(APPLIED, encode(&meta.last_log_id).as_slice())
                .map_err(fail)?;
            sm.insert(MEMBERSHIP, encode(&meta.last_membership).as_slice())
                .map_err(fail)?;
            let record = SnapshotRecord {
                meta: meta.clone(),
                file: name.clone(),
            };
            sm.insert(SNAPSHOT, encode(&record).as_slice())
                .map_err(fail)?;
            name
        };
        txn.commit().map_err(fail)?;
        snapshot_file::prune(&self.file.snapshots, &name, false);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        self.build()
            .map_err(|e| Io::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<Applied, RaftStorageError> {
        self.applied()
            .map_err(|e| Io::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcomes>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_all(entries)
            .map_err(|e| Io::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, RaftStorageError> {
        let partial = snapshot_file::partial_path(&self.file.snapshots, "receive");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(|e| Io::write_snapshot(None, &e))?;
        let old = self
            .file
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(partial);
        if let Some(old) = old {
            let _ = std::fs::remove_file(old);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), RaftStorageError> {
        use std::io::Seek as _;
        use tokio::io::AsyncWriteExt as _;
        let failed = |e: Failure| Io::write_snapshot(Some(meta.signature()), &e);
        let mut snapshot = snapshot;
        snapshot.flush().await.map_err(|e| failed(fail(e)))?;
        let mut file = snapshot.into_std().await;
        file.rewind().map_err(|e| failed(fail(e)))?;
        let installed = self.install(meta, file);
        let received = self
            .file
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(received) = received {
            let _ = std::fs::remove_file(received);
        }
        installed.map_err(|e| failed(e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let record: Option<SnapshotRecord> = self
            .file
            .meta(Half::Sm, SM_META, SNAPSHOT)
            .map_err(|e| Io::read_snapshot(None, &e))?;
        let Some(record) = record else {
            return Ok(None);
        };
        let file = self
            .open_snapshot(&record.file)
            .map_err(|e| Io::read_snapshot(Some(record.meta.signature()), &e))?;
        Ok(Some(Snapshot {
            meta: record.meta,
            snapshot: Box::new(file),
        }))
    }
}

/// For the fuzz targets: reads `bytes` as a snapshot file, 1 when every entry reads.
#[cfg(fuzzing)]
pub(crate) fn decode_snapshot_body(bytes: &[u8]) -> usize {
    let entries = snapshot_file::Reader::new(bytes).map(|r| r.collect::<Result<Vec<_>, _>>());
    usize::from(matches!(entries, Ok(Ok(_))))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let file = RaftFile::open(dir.path(), 16 << 20).expect("raft.redb opens");
            Ok((dir, file.log_store(), file.state_machine()))
        }
    }

    /// openraft's own storage suite: what its log and state machine must do.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("the openraft storage suite passes");
    }

    /// A node whose log is still in `raft.redb` (before the log had a file of its own) finds
    /// it, vote and purge record included, in `raft-log.redb`, and `raft.redb` no longer holds
    /// it; opening again changes nothing.
    #[tokio::test]
    async fn a_log_kept_in_the_state_machine_file_moves_to_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let leader = openraft::CommittedLeaderId::new(3, 7);
        let entries: Vec<Entry> = (5..8)
            .map(|index| Entry {
                log_id: LogId::new(leader, index),
                payload: EntryPayload::Blank,
            })
            .collect();
        let vote = Vote::new(3, 7);
        let purged = LogId::new(leader, 4);
        {
            let old = Database::create(dir.path().join("raft.redb")).unwrap();
            let txn = old.begin_write().unwrap();
            {
                let mut log = txn.open_table(LOG).unwrap();
                for e in &entries {
                    log.insert(e.log_id.index, encode(e).as_slice()).unwrap();
                }
                let mut meta = txn.open_table(LOG_META).unwrap();
                meta.insert(VOTE, encode(&vote).as_slice()).unwrap();
                meta.insert(PURGED, encode(&purged).as_slice()).unwrap();
                txn.open_table(DATA)
                    .unwrap()
                    .insert("kept", b"v".as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            let file = RaftFile::open(dir.path(), 16 << 20).unwrap();
            let mut log = file.log_store();
            assert_eq!(log.read_vote().await.unwrap(), Some(vote));
            let state = log.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(purged));
            assert_eq!(state.last_log_id, Some(entries[2].log_id));
            let read = log.try_get_log_entries(5..8).await.unwrap();
            assert_eq!(
                read.iter().map(|e| e.log_id).collect::<Vec<_>>(),
                entries.iter().map(|e| e.log_id).collect::<Vec<_>>()
            );
            assert_eq!(file.get("kept").unwrap(), Some(b"v".to_vec()));
            let sm = file.read(Half::Sm).unwrap();
            assert!(matches!(
                sm.open_table(LOG),
                Err(redb::TableError::TableDoesNotExist(_))
            ));
        }
    }
}
