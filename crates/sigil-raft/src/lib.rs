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
mod store;
mod tls;
mod types;

pub use node::{CATCH_UP, ClusterError, ClusterNode, NodeConfig, Peer, Status, Timing};
pub use openraft::ServerState;
pub use store::{LogStore, RaftFile, StateMachine};
pub use tls::{NodeIdentity, Trust, fingerprint};
pub use types::{Change, Command, Entry, Member, NodeId, Outcome, Outcomes, TypeConfig, node_id};
