//! Integrated Raft storage for Sigil: a cluster of nodes that agree on one log of storage
//! batches (openraft), with the log and the state machine in a redb file in each node's data
//! directory, and node-to-node traffic over mutual TLS 1.3 between pinned node certificates.
//!
//! Raft only ever carries barrier ciphertext: the batches are the ones the barrier hands a
//! storage backend. A [`ClusterNode`] is such a backend.

#![warn(missing_docs)]

mod network;
mod node;
mod service;
mod shred;
mod snapshot_file;
mod store;
mod tls;
mod types;

pub use node::{
    CATCH_UP, ClusterError, ClusterNode, DEFAULT_MAX_ENTRY_BYTES, MAX_MULTIPLIER, NodeConfig, Peer,
    Status, Timing,
};
pub use openraft::ServerState;
pub use store::{LogStore, RaftFile, StateMachine};
pub use tls::{NodeIdentity, Trust, fingerprint};
pub use types::{Change, Command, Entry, Member, NodeId, Outcome, Outcomes, TypeConfig, node_id};

/// For the fuzz targets only, compiled with `--cfg fuzzing` (which cargo-fuzz sets) and never
/// into Sigil: the decoders of what peers send (Raft's RPCs, log entries, snapshots).
#[cfg(fuzzing)]
pub mod fuzzing {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

    use crate::types::{Entry, NodeId, TypeConfig};

    /// Decodes `bytes` as each message a peer may send; how many decoded. A message that
    /// decodes encodes back to bytes that decode to the same message.
    pub fn decode_peer_message(bytes: &[u8]) -> usize {
        let mut n = 0;
        if let Ok(m) = postcard::from_bytes::<AppendEntriesRequest<TypeConfig>>(bytes) {
            let again = postcard::to_allocvec(&m).expect("encodes");
            let back: AppendEntriesRequest<TypeConfig> =
                postcard::from_bytes(&again).expect("decodes what it encoded");
            assert_eq!(back.entries.len(), m.entries.len());
            n += 1;
        }
        n += usize::from(postcard::from_bytes::<VoteRequest<NodeId>>(bytes).is_ok());
        n += usize::from(postcard::from_bytes::<InstallSnapshotRequest<TypeConfig>>(bytes).is_ok());
        n += usize::from(postcard::from_bytes::<Entry>(bytes).is_ok());
        n += crate::store::decode_snapshot_body(bytes);
        n
    }
}
