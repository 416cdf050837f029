//! Sigil's HTTPS API server — the composition root.
//!
//! It terminates TLS 1.3, refuses bearer tokens, authenticates every request by its RFC 9421
//! signature (with a replay cache), opens sealed request bodies, hands the core an
//! authenticated logical request, and seals every successful response to the caller's key.
//! It is the only crate that names concrete backends and engines.
//!
//! It does not decide policy (the core does) and keeps no secret outside the core's barrier but
//! its own identity key and TLS key, both in memory.

#![warn(missing_docs)]

mod api;
mod audit_trail;
mod auth;
mod channels;
mod cluster;
mod connections;
mod error;
mod harden;
mod leftover;
mod limits;
mod listener;
mod node;
mod openapi;
mod reload;
mod replay;
mod sealing;
mod signatures;
mod snapshots;
mod spool;
mod telemetry;
mod tls;

pub use auth::parse_authority;
pub use cluster::Cluster;
pub use cluster::join::{JoinError, JoinSettings, join_cluster};
pub use harden::{HardenError, Hardening, harden_process};
pub use limits::{Rate, RateLimits};
pub use listener::{Control, Draining, Running, ServerConfig, StartError, start};
pub use node::{
    NodeError, RestoreError, Restored, file_node, raft_node, restore_snapshot, transient_node,
};
pub use reload::{ReloadError, ReloadReport, ReloadSource, Reloaded};
pub use sigil_core::audit::{DeviceConfig as AuditDevice, Sink as AuditSink};
pub use snapshots::SnapshotSchedule;
pub use tls::{TlsError, TlsIdentity};

/// For the fuzz targets only, compiled with `--cfg fuzzing` (which cargo-fuzz sets) and never
/// into Sigil: the parser of the cluster's unauthenticated join requests.
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Parses `bytes` as a join request and checks it as the leader does: `true` when it
    /// would be recorded.
    pub fn join_request(bytes: &[u8]) -> bool {
        match serde_json::from_slice::<sigil_proto::raft::JoinRequest>(bytes) {
            Ok(req) => crate::cluster::join::Joins::default().ask(req).is_ok(),
            Err(_) => false,
        }
    }

    /// Every registered engine's route that `rest` (a path below a mount) falls under: its
    /// template and its parameters with their values.
    pub fn routes_matching(rest: &str) -> Vec<(&'static str, Vec<(&'static str, &str)>)> {
        crate::node::engines()
            .iter()
            .filter_map(|kind| sigil_engine::route::find(kind.routes(), rest))
            .map(|m| (m.route.path, m.params().collect()))
            .collect()
    }
}
