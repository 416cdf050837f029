//! Building a [`Node`] on a concrete storage backend (this crate is the only one that names
//! them).

use std::path::Path;
use std::sync::Arc;

use sigil_core::audit::DeviceConfig;
use sigil_core::{CoreConfig, CoreError, Node};
use sigil_crypto::PublicIdentity;
use sigil_engine::EngineKinds;
use sigil_storage::{FileBackend, MemoryBackend, StorageError};

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The storage could not be opened. (Transparent: its message says "storage …", and an
    /// error chain printed with its sources would otherwise say it twice.)
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The core could not start.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A transient node: memory storage, root key and server key generated in memory, initialized
/// and unsealed with `admins` (name, public key) holding the admin policy.
pub fn transient_node(
    admins: Vec<(String, PublicIdentity)>,
    audit: Vec<DeviceConfig>,
) -> Result<Node, NodeError> {
    Ok(Node::transient(
        Arc::new(MemoryBackend::new()),
        CoreConfig {
            admins,
            audit,
            engines: engines(),
        },
    )?)
}

/// A node over the embedded file backend at `path` (created if missing), with `cache_bytes`
/// of redb page cache: uninitialized, or sealed until a quorum of admins unseals it.
pub fn file_node(
    path: &Path,
    cache_bytes: usize,
    audit: Vec<DeviceConfig>,
) -> Result<Node, NodeError> {
    Ok(Node::open(
        Arc::new(FileBackend::open_with_cache(path, cache_bytes)?),
        audit,
        engines(),
    )?)
}

/// A node over a Raft cluster's storage: uninitialized until the cluster is initialized (or
/// its data reaches a node that joined), then sealed until unsealed.
pub fn raft_node(
    raft: Arc<sigil_raft::ClusterNode>,
    audit: Vec<DeviceConfig>,
) -> Result<Node, NodeError> {
    Ok(Node::open(raft, audit, engines())?)
}

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    /// The snapshot's header.
    pub header: sigil_core::snapshot::Header,
    /// The database file written.
    pub path: std::path::PathBuf,
}

/// Why a restore failed. The checks (the file, an empty directory) come before anything is
/// written; a storage failure after them can leave a partly written directory, which a
/// second restore refuses: delete it and restore again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The file is not a snapshot that can be restored.
    #[error(transparent)]
    Snapshot(#[from] sigil_core::snapshot::SnapshotError),
    /// The data directory already holds data.
    #[error(
        "{0} holds data already: restore into a new data directory (and point the configuration at it), or move its sigil.redb* files away first"
    )]
    NotEmpty(std::path::PathBuf),
    /// The storage could not be written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Writes the snapshot `file` into the data directory `dir` of a stopped node (or a new one):
/// checks the file (format, checksum, signature; the signer when `pinned`) as it reads it,
/// refuses a directory that already holds data, reads the file again writing every entry
/// through the file backend in batches (each batch's log synced, then checkpointed) and counts
/// what it holds afterwards. The node then starts sealed; the snapshot's admins unseal it. The
/// snapshot is never held whole in memory.
pub fn restore_snapshot(
    dir: &Path,
    file: &Path,
    pinned: Option<&str>,
) -> Result<Restored, RestoreError> {
    use std::io::Seek as _;
    let unreadable = |e: std::io::Error| {
        sigil_core::snapshot::SnapshotError(format!("{} cannot be read: {e}", file.display()))
    };
    let mut f = std::fs::File::open(file).map_err(unreadable)?;
    let header =
        sigil_core::snapshot::read_from(std::io::BufReader::new(&f), pinned, &mut |_, _| Ok(()))?;
    let path = dir.join("sigil.redb");
    let taken = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("sigil.redb"))
            })
        })
        .unwrap_or(false);
    if taken {
        return Err(RestoreError::NotEmpty(dir.to_owned()));
    }
    let backend = FileBackend::open(&path)?;
    use sigil_storage::Backend as _;
    if !backend.list("")?.is_empty() {
        return Err(RestoreError::NotEmpty(dir.to_owned()));
    }
    f.rewind().map_err(unreadable)?;
    let mut writer = EntryWriter::new(&backend);
    sigil_core::snapshot::read_from(std::io::BufReader::new(&f), pinned, &mut |k, v| {
        writer
            .add(k, v)
            .map_err(|e| sigil_core::snapshot::SnapshotError(e.to_string()))
    })?;
    writer.finish()?;
    let count = header.entries;
    let mut written = 0u64;
    backend.snapshot_each(&mut |_, _| {
        written += 1;
        Ok(())
    })?;
    backend.close();
    if written != count {
        return Err(RestoreError::Storage(StorageError::Io {
            verb: "restore",
            subject: path.display().to_string(),
            reason: format!("{written} entries read back, {count} written"),
        }));
    }
    Ok(Restored { header, path })
}

/// Writes a snapshot's entries, as they are read, into a backend in batches, the seal
/// configuration last: until it is written the storage reads as uninitialized, and an
/// interrupted restore leaves only leftovers that the next init or restore discards.
pub(crate) struct EntryWriter<'a> {
    backend: &'a dyn sigil_storage::Backend,
    batch: sigil_storage::Batch,
    entries: usize,
    bytes: usize,
    seal: Option<Vec<u8>>,
}

/// A batch (one synced log append, or one Raft entry) holds at most this many entries…
const BATCH_ENTRIES: usize = 4096;
/// …and at most this many bytes (or what the backend takes in one batch, if less: Raft's
/// `max_entry_size`), but for an entry larger alone.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

impl<'a> EntryWriter<'a> {
    pub(crate) fn new(backend: &'a dyn sigil_storage::Backend) -> Self {
        EntryWriter {
            backend,
            batch: sigil_storage::Batch::new(),
            entries: 0,
            bytes: 0,
            seal: None,
        }
    }

    /// Adds an entry; a full batch is written.
    pub(crate) fn add(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        if key == sigil_engine::barrier::SEAL_CONFIG_KEY {
            self.seal = Some(value.to_vec());
            return Ok(());
        }
        let size = key.len() + value.len();
        let budget = BATCH_BYTES.min(self.backend.max_batch_bytes());
        if self.bytes + size > budget {
            self.flush()?;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch = batch.put(key.to_owned(), value.to_vec());
        self.entries += 1;
        self.bytes += size;
        if self.entries >= BATCH_ENTRIES || self.bytes >= budget {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if self.entries > 0 {
            self.backend.apply(std::mem::take(&mut self.batch))?;
        }
        self.entries = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Writes what is left, then the seal configuration.
    pub(crate) fn finish(mut self) -> Result<(), StorageError> {
        self.flush()?;
        if let Some(seal) = self.seal.take() {
            let key = sigil_engine::barrier::SEAL_CONFIG_KEY;
            self.backend
                .apply(sigil_storage::Batch::new().put(key.to_owned(), seal))?;
        }
        Ok(())
    }
}

/// The engine kinds this server offers (the engine contract): the database engine reaches
/// PostgreSQL and MySQL/MariaDB through its real drivers.
pub(crate) fn engines() -> EngineKinds {
    EngineKinds::new(vec![
        Arc::new(sigil_engine_kv::Kv),
        Arc::new(sigil_engine_kv::E2e),
        Arc::new(sigil_engine_transit::Transit),
        Arc::new(sigil_engine_pki::Pki),
        Arc::new(sigil_engine_database::Database::new(Arc::new(
            sigil_engine_database::Databases::new(),
        ))),
    ])
}
