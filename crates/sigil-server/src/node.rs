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

/// Writes a snapshot into the data directory `dir` of a stopped node (or a new one): checks the
/// file (format, checksum, signature; the signer when `pinned`), refuses a directory that
/// already holds data, writes every entry through the file backend (its log synced, then
/// checkpointed) and reads the result back. The node then starts sealed; the snapshot's admins
/// unseal it.
pub fn restore_snapshot(
    dir: &Path,
    bytes: &[u8],
    pinned: Option<&str>,
) -> Result<Restored, RestoreError> {
    let snapshot = sigil_core::snapshot::decode(bytes, pinned)?;
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
    let count = snapshot.entries.len();
    write_entries(&backend, snapshot.entries)?;
    let written = backend.snapshot()?.len();
    backend.close();
    if written != count {
        return Err(RestoreError::Storage(StorageError::Io {
            verb: "restore",
            subject: path.display().to_string(),
            reason: format!("{written} entries read back, {count} written"),
        }));
    }
    Ok(Restored {
        header: snapshot.header,
        path,
    })
}

/// Writes a snapshot's entries into `backend` in batches, the seal configuration last: until
/// it is written the storage reads as uninitialized, and an interrupted restore leaves only
/// leftovers that the next init or restore discards.
pub(crate) fn write_entries(
    backend: &dyn sigil_storage::Backend,
    entries: Vec<(String, Vec<u8>)>,
) -> Result<(), StorageError> {
    let seal_key = sigil_engine::barrier::SEAL_CONFIG_KEY;
    let (seal, rest): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k == seal_key);
    let mut entries = rest.into_iter().chain(seal);
    loop {
        let mut batch = sigil_storage::Batch::new();
        let mut n = 0;
        for (k, v) in entries.by_ref().take(RESTORE_BATCH) {
            batch = batch.put(k, v);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        backend.apply(batch)?;
    }
}

/// Entries written per batch (per synced log append) by a restore.
const RESTORE_BATCH: usize = 4096;

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
