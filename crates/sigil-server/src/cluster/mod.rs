//! The server in a Raft cluster: one node leads and serves; the others forward every request
//! to it ([`forward`]) and stand by, unsealed, to take over. A node becoming the leader starts
//! its core afresh from storage before it answers anything ([`Cluster::activate`]).
//! Joining is in [`join`].

pub(crate) mod autopilot;
pub(crate) mod forward;
pub(crate) mod join;
pub(crate) mod restore;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sigil_core::Node;
use sigil_crypto::SealInfo;
use sigil_proto::raft::{self as wire, JoinPackage, JoinRequest, SealedPackage, TlsBundle};
use sigil_raft::{ClusterNode, ServerState, Status};
use zeroize::Zeroizing;

/// What [`Cluster::activate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// This node does not lead.
    Follower,
    /// It leads with a current core.
    Active,
    /// It has just started leading: its core was started again from storage.
    Started,
    /// It leads but has not applied an entry of its term yet (what it holds may be behind).
    CatchingUp,
    /// It leads but its core could not start (it is sealed now, and says why).
    Failed,
}

/// A server's place in its cluster.
pub struct Cluster {
    pub(crate) raft: Arc<ClusterNode>,
    /// Join requests waiting for an admin, and approved ones until collected.
    pub(crate) joins: join::Joins,
    /// A restore over the running cluster, staged until the seal admins approve it.
    pub(crate) restores: restore::Restores,
    /// Set while an approved restore is being written: requests wait it out (503).
    pub(crate) restoring: std::sync::atomic::AtomicBool,
    /// Where the API TLS identity this node generated is kept (`ca.pem`, `server.pem`,
    /// `server.key`), handed to the nodes it admits; `None` when nodes use their own files.
    pub(crate) tls_dir: Option<PathBuf>,
    /// The term this node's core was (re)started for as the leader (0: not active).
    active_term: Mutex<u64>,
    /// When this node started leading (autopilot counts a member's silence from there).
    leading_since: Mutex<Option<std::time::Instant>>,
    /// On a follower that answers stale reads: the applied index its core was started at, and
    /// when.
    core_as_of: Mutex<Option<(u64, std::time::Instant)>>,
}

/// How far behind its own storage a follower's core may be when it answers a stale read (its
/// identities, policies and mounts; the data itself is read from storage as applied).
pub(crate) const STALE_CORE: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", self.raft.me())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The server side of `raft`; `tls_dir` as in [`Cluster::tls_dir`].
    pub fn new(raft: Arc<ClusterNode>, tls_dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Cluster {
            raft,
            joins: join::Joins::default(),
            restores: restore::Restores::default(),
            restoring: std::sync::atomic::AtomicBool::new(false),
            tls_dir,
            active_term: Mutex::new(0),
            leading_since: Mutex::new(None),
            core_as_of: Mutex::new(None),
        })
    }

    /// The Raft node.
    pub fn raft(&self) -> &Arc<ClusterNode> {
        &self.raft
    }

    /// Whether this node serves requests itself (it leads) rather than forwarding them.
    pub(crate) fn leads(&self) -> bool {
        self.raft.is_leader()
    }

    /// Whether this leader may answer now: a majority acknowledged it recently enough that no
    /// other node can lead (reads are linearizable without a round trip per read).
    pub(crate) fn holds_lease(&self) -> bool {
        self.raft.holds_lease()
    }

    /// Makes this node's core current for its leadership: a node that has just become the
    /// leader starts its core again from storage (what the previous leader wrote), once per
    /// term. Blocking when it starts the core; see [`Cluster::is_active`] for the cheap check.
    pub(crate) fn activate(&self, node: &Node) -> Activation {
        let mut active = self.active_term.lock().unwrap_or_else(|e| e.into_inner());
        let Some(term) = self.raft.leading_term() else {
            *active = 0;
            *self.leading_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Activation::Follower;
        };
        if *active == term {
            return Activation::Active;
        }
        // Storage holds everything committed before this election only once an entry of
        // this term is applied here.
        if self.raft.serving_term() != Some(term) {
            return Activation::CatchingUp;
        }
        if node.core().is_some() {
            let started = std::time::Instant::now();
            if let Err(e) = node.reopen() {
                tracing::error!(error = %e, "this node leads but its core did not start again");
                return Activation::Failed;
            }
            let ms = started.elapsed().as_millis() as u64;
            match ms {
                0..1000 => tracing::info!(term, ms, "leading: the core is started from storage"),
                _ => tracing::warn!(
                    term,
                    ms,
                    "leading: the core is started from storage, slowly (writes waited for it)"
                ),
            }
        }
        *active = term;
        *self.leading_since.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::Instant::now());
        Activation::Started
    }

    /// Makes a follower's core fit to answer a stale read: started again from the local storage
    /// when entries were applied since it was started and that was longer than [`STALE_CORE`]
    /// ago (a follower's core otherwise keeps what it loaded at unseal). Blocking when it does.
    pub(crate) fn freshen_for_stale_read(&self, node: &Node) -> Result<(), sigil_core::CoreError> {
        let mut as_of = self.core_as_of.lock().unwrap_or_else(|e| e.into_inner());
        let applied = self.raft.applied_index();
        let fresh = as_of.is_some_and(|(index, at)| index == applied || at.elapsed() < STALE_CORE);
        if fresh {
            return Ok(());
        }
        node.reopen()?;
        *as_of = Some((applied, std::time::Instant::now()));
        Ok(())
    }

    /// When this node started leading, if it leads.
    pub(crate) fn leading_since(&self) -> Option<std::time::Instant> {
        *self.leading_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node leads with a core started for its term: it may answer, and run
    /// background work (sweepers). Cheap: the request path asks it for every request.
    pub(crate) fn is_active(&self) -> bool {
        let term = *self.active_term.lock().unwrap_or_else(|e| e.into_inner());
        term != 0 && self.raft.leading_term() == Some(term)
    }

    /// The package for `request`'s node: the root key, the members' fingerprints and (when this
    /// node generated it) the API TLS identity, sealed by the server key to the node's join key.
    pub(crate) fn package(
        &self,
        node: &Node,
        request: &JoinRequest,
    ) -> Result<SealedPackage, String> {
        let core = node.core().ok_or("sealed")?;
        let root = node.root_key().ok_or("sealed")?;
        let tls = match &self.tls_dir {
            None => None,
            Some(dir) => {
                let read = |name: &str| {
                    std::fs::read_to_string(dir.join(name))
                        .map_err(|e| format!("{}: {e}", dir.join(name).display()))
                };
                Some(TlsBundle {
                    ca_pem: read("ca.pem")?,
                    chain_pem: read("server.pem")?,
                    key_pem: read("server.key")?,
                })
            }
        };
        let mut members: Vec<String> = self
            .raft
            .status()
            .peers
            .into_iter()
            .map(|p| p.member.cert_sha256)
            .collect();
        members.push(self.raft.me().cert_sha256.clone());
        members.dedup();
        let package = JoinPackage {
            root_key: sigil_crypto::b64url_encode(root.expose_secret()),
            root_term: root.term().0,
            members,
            tls,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&package).expect("a package serializes"));
        let join_key: [u8; 32] = sigil_crypto::b64url_decode(&request.join_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or("join_key is not a 32-byte key")?;
        let sealed = sigil_crypto::seal_to(
            core.server_identity().encryption_key(),
            &join_key,
            SealInfo::Join,
            request.node_id.as_bytes(),
            &plain,
        )
        .map_err(|e| e.to_string())?;
        Ok(SealedPackage {
            enc: sigil_crypto::b64url_encode(&sealed.enc),
            ct: sigil_crypto::b64url_encode(&sealed.ct),
        })
    }

    /// Hands the root key a rekey made here to every other member (over the cluster
    /// listener: mutual TLS between pinned certificates), so that they keep opening the
    /// keyring; a member that cannot be reached keeps the old key and will seal itself, saying
    /// why, if it has to take over. Returns how many members took it.
    pub(crate) async fn push_root(&self, node: &Node) -> usize {
        let Some(root) = node.root_key() else {
            return 0;
        };
        // Built by hand so the key's only copies are zeroized: base64url needs no escaping.
        let key = Zeroizing::new(sigil_crypto::b64url_encode(root.expose_secret()));
        let body = Zeroizing::new(format!(
            r#"{{"root_key":"{}","root_term":{}}}"#,
            key.as_str(),
            root.term().0
        ));
        let me = self.raft.me().name.clone();
        let mut took = 0;
        for peer in self.raft.status().peers {
            if peer.member.name == me {
                continue;
            }
            let url = format!("https://{}{}", peer.member.cluster_addr, forward::ROOT);
            let sent = self
                .raft
                .peer_client()
                .post(url)
                .timeout(std::time::Duration::from_secs(10))
                .body(body.as_bytes().to_vec())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => took += 1,
                Ok(resp) => {
                    tracing::warn!(node = %peer.member.name, status = %resp.status(), "a member refused the rekeyed root key")
                }
                Err(e) => {
                    tracing::warn!(node = %peer.member.name, error = %e, "a member could not be given the rekeyed root key")
                }
            }
        }
        took
    }

    /// `sys/storage/raft/configuration`.
    pub(crate) fn configuration(&self) -> wire::Configuration {
        let status = self.raft.status();
        wire::Configuration {
            config: wire::Servers {
                servers: status
                    .peers
                    .iter()
                    .map(|p| wire::Server {
                        node_id: p.member.name.clone(),
                        address: p.member.cluster_addr.clone(),
                        leader: p.leader,
                        voter: p.voter,
                        protocol_version: "3".into(),
                        api_addr: p.member.api_addr.clone(),
                        state: match (p.leader, p.voter) {
                            (true, _) => "leader",
                            (false, true) => "follower",
                            (false, false) => "learner",
                        }
                        .into(),
                        last_contact_ms: p.last_contact_ms,
                        matched_index: p.matched,
                    })
                    .collect(),
                index: status.applied,
            },
        }
    }

    /// `sys/leader`.
    pub(crate) fn leader(&self) -> wire::Leader {
        let status: Status = self.raft.status();
        let leader = status.leader.as_ref();
        wire::Leader {
            ha_enabled: true,
            is_self: status.state == ServerState::Leader,
            leader_address: leader.map(|l| l.api_addr.clone()).unwrap_or_default(),
            leader_cluster_address: leader.map(|l| l.cluster_addr.clone()).unwrap_or_default(),
            performance_standby: false,
            raft_applied_index: status.applied,
            raft_term: status.term,
        }
    }

    /// `sys/storage/raft/peers` (public, as `sys/leader` is): each member's API address, so
    /// that `sigil operator unseal` can walk a cluster whose nodes are all sealed.
    pub(crate) fn peers(&self) -> serde_json::Value {
        let peers: Vec<serde_json::Value> = self
            .raft
            .status()
            .peers
            .into_iter()
            .map(|p| serde_json::json!({ "node_id": p.member.name, "api_addr": p.member.api_addr }))
            .collect();
        serde_json::json!({ "peers": peers })
    }

    /// `sys/ha-status`.
    pub(crate) fn ha_status(&self) -> wire::HaStatus {
        wire::HaStatus {
            nodes: self
                .raft
                .status()
                .peers
                .into_iter()
                .map(|p| wire::HaNode {
                    hostname: p.member.name,
                    api_address: p.member.api_addr,
                    cluster_address: p.member.cluster_addr,
                    active_node: p.leader,
                })
                .collect(),
        }
    }
}
