//! The cluster's `sys/` endpoints: joining (`sys/storage/raft/join`, unauthenticated), an
//! admin's approval, the peers (`sys/storage/raft/configuration`, Vault's shape), the leader
//! (`sys/leader`, Vault's shape) and the nodes (`sys/ha-status`).

use serde::{Deserialize, Serialize};

/// `POST sys/storage/raft/join`: a node asks to join. Anyone may ask; only an admin's
/// approval ([`Approve`]) admits it, and the same request is sent again to collect the
/// answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The node's name (`--node-id`).
    pub node_id: String,
    /// Where its cluster listener is (`host:port`).
    pub cluster_addr: String,
    /// Its API address (`https://host:port`).
    pub api_addr: String,
    /// The SHA-256 of its cluster certificate (hex): the admin compares it with what the node
    /// printed before approving.
    pub cert_sha256: String,
    /// The X25519 public key (base64url) the root key is to be sealed to: made for this join,
    /// held only in the joining node's memory.
    pub join_key: String,
}

/// The answer to a join request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinResponse {
    /// `"pending"` until an admin approves, then `"approved"`.
    pub status: String,
    /// The cluster's server key (`sigil1…`): the package is sealed by it.
    pub server_key: String,
    /// Once approved: the [`JoinPackage`] sealed (HPKE mode_auth, `info = "sigil/v1/join"`,
    /// `aad` = the node's name) by the server key to the join key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<SealedPackage>,
}

/// An HPKE envelope, base64url.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SealedPackage {
    /// The encapsulated key.
    pub enc: String,
    /// Ciphertext and tag.
    pub ct: String,
}

/// What an admitted node receives, sealed to its join key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinPackage {
    /// The root key (base64url): it opens the replicated keyring.
    pub root_key: String,
    /// The root key's term.
    pub root_term: u32,
    /// The members' cluster certificate fingerprints, to accept them before the membership
    /// reaches the node.
    pub members: Vec<String>,
    /// The cluster's API TLS identity when the leader generated it (every node presents a
    /// certificate from the same CA); absent when nodes have their own certificate files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsBundle>,
}

impl Drop for JoinPackage {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.root_key.zeroize();
    }
}

impl std::fmt::Debug for JoinPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinPackage")
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// An API TLS identity in PEM.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsBundle {
    /// The CA certificate clients trust (`SIGIL_CACERT`).
    pub ca_pem: String,
    /// The server certificate chain.
    pub chain_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// `POST sys/storage/raft/approve` (sudo): admit a node that asked to join.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The node's name.
    pub node_id: String,
    /// When given, the node's certificate fingerprint must be this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

/// `POST sys/storage/raft/remove-peer` (sudo), as Vault's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemovePeer {
    /// The node's name.
    pub server_id: String,
}

/// `GET sys/storage/raft/configuration`, as Vault's: `{"config": {"servers": […], "index"}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Configuration {
    /// The membership.
    pub config: Servers,
}

/// The servers of a [`Configuration`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Servers {
    /// Every member.
    pub servers: Vec<Server>,
    /// The log index the answering node has applied.
    pub index: u64,
}

/// One member, as Vault lists it (and what Sigil adds).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Server {
    /// Its name.
    pub node_id: String,
    /// Its cluster address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Vault prints `"3"`.
    pub protocol_version: String,
    /// Its API address.
    pub api_addr: String,
    /// `leader`, `follower` or `learner`.
    pub state: String,
    /// Milliseconds since the leader last heard from it (the leader's view; absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_ms: Option<u64>,
    /// The last log index it has (the leader's view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
}

/// `GET sys/leader`, as Vault's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Leader {
    /// Always true in a cluster.
    pub ha_enabled: bool,
    /// Whether the answering node leads.
    pub is_self: bool,
    /// The leader's API address (empty when unknown).
    pub leader_address: String,
    /// The leader's cluster address.
    pub leader_cluster_address: String,
    /// Always false (Sigil's followers forward everything).
    pub performance_standby: bool,
    /// The answering node's applied index.
    pub raft_applied_index: u64,
    /// The current term.
    pub raft_term: u64,
}

/// `GET sys/ha-status`, as Vault's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HaStatus {
    /// Every member.
    pub nodes: Vec<HaNode>,
}

/// One member in [`HaStatus`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HaNode {
    /// Its name.
    pub hostname: String,
    /// Its API address.
    pub api_address: String,
    /// Its cluster address.
    pub cluster_address: String,
    /// Whether it leads.
    pub active_node: bool,
}

impl Drop for TlsBundle {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.key_pem.zeroize();
    }
}

impl std::fmt::Debug for TlsBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsBundle").finish_non_exhaustive()
    }
}

/// `sys/storage/raft/autopilot/configuration` (GET; POST with any of the fields, sudo), as
/// Vault's: how dead servers are cleaned up.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AutopilotConfig {
    /// Remove voters that have not been heard from for `dead_server_last_contact_threshold`.
    pub cleanup_dead_servers: bool,
    /// How long a voter may be silent before it is removed (Go duration, `"24h"`).
    pub dead_server_last_contact_threshold: String,
    /// Never remove a voter when fewer than this many would be left.
    pub min_quorum: u32,
    /// A voter silent for longer than this is reported unhealthy (Go duration, `"10s"`).
    pub last_contact_threshold: String,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            dead_server_last_contact_threshold: "24h".into(),
            min_quorum: 3,
            last_contact_threshold: "10s".into(),
        }
    }
}

/// `GET sys/storage/raft/autopilot/state`, in Vault's shape (the fields Sigil knows).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AutopilotState {
    /// Every voter is healthy.
    pub healthy: bool,
    /// How many voters may fail with the cluster keeping its quorum.
    pub failure_tolerance: u32,
    /// The leader's name.
    pub leader: String,
    /// The voters' names.
    pub voters: Vec<String>,
    /// Each member by name.
    pub servers: std::collections::BTreeMap<String, AutopilotServer>,
}

/// One member in [`AutopilotState`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AutopilotServer {
    /// Its name.
    pub id: String,
    /// Its name (Vault repeats it).
    pub name: String,
    /// Its cluster address.
    pub address: String,
    /// `"alive"`, or `"left"` once silent past the dead-server threshold.
    pub node_status: String,
    /// Time since the leader last heard from it (Go duration, `"0s"` for the leader).
    pub last_contact: String,
    /// The last log index it holds, as the leader knows.
    pub last_index: u64,
    /// Heard from within the last-contact threshold.
    pub healthy: bool,
    /// `leader`, `voter` or `non-voter`.
    pub status: String,
}

/// `sys/storage/raft/snapshot/restore` and the answers to staging and approving a restore over
/// the running cluster (docs/operations/cluster.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreStatus {
    /// Whether a restore is staged.
    pub staged: bool,
    /// SHA-256 over the staged restore (its nonce, deadline and the snapshot's checksum);
    /// each approval carries it.
    pub digest: String,
    /// Unix seconds after which approvals are refused.
    pub deadline: i64,
    /// The snapshot's entries.
    pub entries: u64,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The newest keyring term in it.
    pub keyring_term: u32,
    /// Keyids of the seal admins who approved.
    pub approvals: Vec<String>,
    /// Approvals needed (the seal threshold).
    pub required: u8,
    /// Set on the answer to the approval that carried out the restore.
    pub complete: bool,
}
