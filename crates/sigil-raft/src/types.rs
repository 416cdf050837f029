//! What Raft carries: a command is one storage batch (barrier ciphertext, never plaintext), its
//! outcome says whether the batch's conditions held; a member is a node's name and addresses.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sigil_storage::Batch;

openraft::declare_raft_types!(
    /// Sigil's Raft: entries carry storage batches.
    pub TypeConfig:
        D = Command,
        R = Outcomes,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = tokio::fs::File,
);

/// A running Raft instance of Sigil's.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// A node's number in Raft: derived from its name ([`node_id`]).
pub type NodeId = u64;

/// A log entry of Sigil's Raft.
pub type Entry = openraft::Entry<TypeConfig>;

/// An error of Raft's storage traits.
pub(crate) type RaftStorageError = openraft::StorageError<NodeId>;

/// The Raft number of the node called `name`: the first eight bytes of its SHA-256. Names are
/// what operators type (`--node-id sigil-1`); Raft wants a small copyable number.
pub fn node_id(name: &str) -> NodeId {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A member of the cluster: what the others need to reach it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name (`--node-id`).
    pub name: String,
    /// Where its cluster listener is (`host:port`): Raft traffic and forwarded requests.
    pub cluster_addr: String,
    /// Where its API listener is (`https://host:port`), for clients and `list-peers`.
    pub api_addr: String,
    /// The SHA-256 of its cluster certificate: the only certificate the others accept from it.
    pub cert_sha256: String,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.cluster_addr)
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One storage batch, as the backend was handed it: what must hold, what to write. Values are
/// barrier ciphertext.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `(key, expected value)`; `None`: must not exist.
    pub expect: Vec<(String, Option<Vec<u8>>)>,
    /// `(key, new value)`; `None` deletes.
    pub writes: Vec<(String, Option<Vec<u8>>)>,
    /// The batch asked for its old bytes to leave storage.
    pub shred: bool,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and sizes only: values are ciphertext, but long and of no use in a log.
        f.debug_struct("Change")
            .field("expect", &self.expect.len())
            .field(
                "writes",
                &self.writes.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("shred", &self.shred)
            .finish()
    }
}

impl From<Batch> for Change {
    fn from(batch: Batch) -> Self {
        Change {
            expect: batch.expect,
            writes: batch.writes,
            shred: batch.shred,
        }
    }
}

impl Change {
    /// About how many bytes it takes in an entry.
    pub(crate) fn size(&self) -> usize {
        let pair = |(k, v): &(String, Option<Vec<u8>>)| k.len() + v.as_ref().map_or(0, Vec::len);
        self.expect.iter().map(pair).sum::<usize>() + self.writes.iter().map(pair).sum::<usize>()
    }
}

/// One Raft entry: the changes of writers that arrived together (group commit: they share the
/// entry and its fsyncs), applied in order, each on its own conditions.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Command {
    /// The changes, in the order they were handed over.
    pub changes: Vec<Change>,
}

/// What applying an entry did: one outcome per change (none for entries without a command).
pub type Outcomes = Vec<Outcome>;

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Its writes are in the state machine (also the outcome of entries that carry no command).
    Applied,
    /// The condition on this key did not hold: nothing was written.
    Conflict(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("sigil-1"), node_id("sigil-1"));
        assert_ne!(node_id("sigil-1"), node_id("sigil-2"));
        // Pinned: a node's number must not change between releases (it is in every log entry).
        assert_eq!(node_id(""), 0xe3b0_c442_98fc_1c14);
    }

    #[test]
    fn a_command_round_trips_and_its_debug_shows_no_values() {
        let batch = Batch::new()
            .expect("a", None)
            .put("a", b"ciphertext-bytes".to_vec())
            .delete("b");
        let cmd = Command {
            changes: vec![Change::from(batch)],
        };
        let bytes = postcard::to_allocvec(&cmd).unwrap();
        let back: Command = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, cmd);
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("ciphertext"), "{shown}");
        assert!(shown.contains("\"a\""), "{shown}");
    }
}
