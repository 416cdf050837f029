//! Building a [`Node`] on a concrete storage backend (this crate is the only one that names
//! them).

use std::path::Path;
use std::sync::Arc;

use sigil_core::audit::DeviceConfig;
use sigil_core::{CoreConfig, CoreError, Node};
use sigil_crypto::PublicIdentity;
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
            database: Some(databases()),
        },
    )?)
}

/// A node over the embedded file backend at `path` (created if missing): uninitialized, or
/// sealed until a quorum of admins unseals it.
pub fn file_node(path: &Path, audit: Vec<DeviceConfig>) -> Result<Node, NodeError> {
    Ok(Node::open(
        Arc::new(FileBackend::open(path)?),
        audit,
        Some(databases()),
    )?)
}

/// The database engine's drivers (PostgreSQL, MySQL/MariaDB).
fn databases() -> Arc<dyn sigil_core::database::driver::Driver> {
    Arc::new(sigil_engine_database::Databases::new())
}
