//! A cluster node: openraft on its own runtime, its cluster listener, and the storage
//! [`Backend`] the barrier writes through.
//!
//! Raft runs on a runtime of its own so that a server thread blocked on a write (the
//! [`Backend`] trait is synchronous) never holds up the heartbeats and replication that
//! complete it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use sigil_storage::{Backend, Batch, StorageError};

use crate::network::Network;
use crate::store::{RaftFile, io};
use crate::tls::{NodeIdentity, Trust};
use crate::types::{Change, Command, Member, NodeId, Outcome, node_id};

use crate::types::Raft;

/// How long a new member may take to catch up with the log before it becomes a voter.
pub const CATCH_UP: Duration = Duration::from_secs(30);

/// How a node is started.
#[derive(Debug)]
pub struct NodeConfig {
    /// Its name (`--node-id`); its Raft number is [`node_id`] of it.
    pub name: String,
    /// Where `raft.redb` and `raft-log.redb` live.
    pub dir: PathBuf,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    /// How the others reach that listener (`host:port`, a name its certificate carries); the
    /// bound address when empty.
    pub cluster_addr: String,
    /// Its API address, for clients and `list-peers`.
    pub api_addr: String,
    /// Its cluster certificate and key.
    pub identity: NodeIdentity,
    /// Heartbeat and election timing.
    pub timing: Timing,
    /// Bytes of redb page cache for `raft.redb` and `raft-log.redb` (an eighth for the log).
    pub cache_bytes: usize,
    /// The largest change one write may carry, in key and value bytes (`[storage]
    /// max_entry_size`, as Vault's; [`DEFAULT_MAX_ENTRY_BYTES`]): larger ones are refused
    /// ([`ClusterError::TooLarge`]), and the group commit forms no larger entry. Every entry
    /// must reach a follower within one heartbeat, and the cluster listener takes bodies
    /// sized by it: give every node the same value.
    pub max_entry_bytes: usize,
}

/// Vault's default `max_entry_size`: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1 << 20;

/// The most bytes of a snapshot one InstallSnapshot carries (openraft's default is 3 MiB).
const SNAPSHOT_CHUNK: u64 = 1 << 20;

/// Raft's clock: how often a leader speaks, and how long a follower waits before it stands
/// for election; and how long the log grows before it is compacted into a snapshot. A follower
/// that stops hearing its leader waits `election_max` (openraft's leader lease: it refuses
/// other candidates meanwhile) plus a random time between the two bounds: 1.5–2 s by default.
/// An AppendEntries must complete within one heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between a leader's heartbeats.
    pub heartbeat: Duration,
    /// Least time without a leader before an election.
    pub election_min: Duration,
    /// Most time without a leader before an election.
    pub election_max: Duration,
    /// Entries applied since the last snapshot before the next one is taken (and the log
    /// before it purged, but for [`Timing::keep_after_snapshot`] entries).
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (a follower that far behind catches up from
    /// the log; one further behind is sent the snapshot).
    pub keep_after_snapshot: u64,
    /// How long a write waits for its entry to be committed and applied before it gives up
    /// (the outcome is then unknown: the entry may still commit). A leader cut off from its
    /// majority keeps proposals waiting until it hears of a new term; without this bound a
    /// write there, and a server stopping behind it, waited for ever.
    pub write_timeout: Duration,
}

/// The largest `performance_multiplier`: 10 × the default timing (1.5 s heartbeats, elections
/// after 5–10 s).
pub const MAX_MULTIPLIER: u32 = 10;

impl Timing {
    /// The default timing with its clock slowed `multiplier` times (`[storage]
    /// performance_multiplier`, as Vault's): heartbeats and election timeouts scale, so a
    /// cluster on a slow or lossy network does not hold needless elections, at the cost of a
    /// slower failover. 1 is the default; 0 and more than [`MAX_MULTIPLIER`] are refused.
    pub fn scaled(multiplier: u32) -> Result<Timing, String> {
        if !(1..=MAX_MULTIPLIER).contains(&multiplier) {
            return Err(format!(
                "performance_multiplier must be 1 to {MAX_MULTIPLIER}, not {multiplier}"
            ));
        }
        let d = Timing::default();
        Ok(Timing {
            heartbeat: d.heartbeat * multiplier,
            election_min: d.election_min * multiplier,
            election_max: d.election_max * multiplier,
            ..d
        })
    }
}

impl Timing {
    /// openraft's configuration for this timing, checked.
    fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        openraft::Config {
            cluster_name: "sigil".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            purge_batch_size: 64,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            // openraft's 200 ms per chunk: a busy follower writing a 1 MiB chunk missed it, and
            // a missed chunk starts the snapshot over from its first byte.
            install_snapshot_timeout: (self.heartbeat * 10).as_millis() as u64,
            ..Default::default()
        }
        .validate()
        .map_err(raft_error)
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(150),
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(1000),
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a cluster operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Only the leader takes writes and membership changes.
    #[error("this node is not the leader{}", match .leader { Some(l) => format!(" (the leader is {l})"), None => " (no leader is known yet)".into() })]
    NotLeader {
        /// The leader, if this node knows it.
        leader: Option<String>,
    },
    /// Setting up or running the node failed.
    #[error("raft: {0}")]
    Raft(String),
    /// A write was not committed in time (its outcome is unknown: it may still commit).
    #[error("{0}")]
    Unavailable(String),
    /// A change larger than the node's `max_entry_size`; nothing was written.
    #[error(
        "the write is {bytes} bytes, more than one Raft entry may carry ({max}: [storage] max_entry_size)"
    )]
    TooLarge {
        /// The change's key and value bytes.
        bytes: usize,
        /// The node's `max_entry_size`.
        max: usize,
    },
}

fn raft_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Raft(e.to_string())
}

/// One node's view of a member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The member.
    pub member: Member,
    /// Whether it votes (a learner does not).
    pub voter: bool,
    /// Whether it leads.
    pub leader: bool,
    /// Milliseconds since it last answered this node (a leader's view of its followers).
    pub last_contact_ms: Option<u64>,
    /// The last log index it is known to hold (a leader's view).
    pub matched: Option<u64>,
}

/// What a node knows of the cluster.
#[derive(Debug, Clone)]
pub struct Status {
    /// This node.
    pub me: Member,
    /// Leader, follower, candidate or learner.
    pub state: ServerState,
    /// The current term.
    pub term: u64,
    /// The index of the last entry applied here.
    pub applied: u64,
    /// The leader, if known.
    pub leader: Option<Member>,
    /// Every member, voters first.
    pub peers: Vec<Peer>,
    /// On a leader: milliseconds since a majority last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// The last entry the newest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The last entry purged from the log (it is in the snapshot).
    pub purged_index: Option<u64>,
}

/// A running cluster node.
pub struct ClusterNode {
    runtime: Option<tokio::runtime::Runtime>,
    raft: Raft,
    file: RaftFile,
    me: Member,
    id: NodeId,
    trust: Trust,
    client: reqwest::Client,
    contacts: crate::network::Contacts,
    proposals: tokio::sync::mpsc::UnboundedSender<Proposal>,
    /// How far this node has shredded (see `shred.rs`).
    shredded: tokio::sync::watch::Sender<crate::shred::Progress>,
    extra: crate::service::Extra,
    listener: tokio::task::JoinHandle<()>,
    max_entry_bytes: usize,
    write_timeout: Duration,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// How long dropping a node waits for its tasks to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.listener.abort();
        let raft = self.raft.clone();
        let _ = self.run(async move { raft.shutdown().await });
        // What was applied since the last snapshot, on disk: the next start re-applies less.
        if let Err(e) = self.file.sync_state_machine() {
            tracing::warn!(error = %e, "raft.redb: the closing durable commit failed");
        }
        // Wait (bounded) until the runtime's tasks are gone: they hold the Raft file, and a
        // node opened again on the same directory must find it unlocked. From another thread,
        // because this one may be a worker of another runtime, where blocking is refused.
        if let Some(rt) = self.runtime.take() {
            let _ = std::thread::spawn(move || rt.shutdown_timeout(SHUTDOWN_WAIT)).join();
        }
    }
}

/// Whether the last entry applied here was written in the current term.
fn applied_in_term(m: &openraft::RaftMetrics<NodeId, Member>) -> bool {
    m.last_applied
        .as_ref()
        .is_some_and(|l| l.leader_id.term == m.current_term)
}

/// Runs `fut` on `rt` and waits for it from any thread (even one of another runtime's workers,
/// which `block_on` refuses).
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the raft runtime answers")
}

impl ClusterNode {
    /// Opens the node's Raft file, binds its cluster listener and starts Raft. A node that
    /// was never part of a cluster waits: [`ClusterNode::initialize`] makes it a cluster of
    /// one, [`ClusterNode::add_voter`] on a leader makes it a member of that cluster.
    pub fn start(config: NodeConfig) -> Result<Self, ClusterError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sigil-raft")
            .enable_all()
            .build()
            .map_err(raft_error)?;
        let file = RaftFile::open(&config.dir, config.cache_bytes).map_err(ClusterError::Raft)?;
        let trust = Trust::default();
        let mine = config.identity.fingerprint();
        trust.set_members([mine.clone()]);
        let server_tls = config.identity.server(&trust).map_err(ClusterError::Raft)?;
        let network = Network::new(config.identity.client(&trust).map_err(ClusterError::Raft)?)
            .map_err(ClusterError::Raft)?;
        let client = network.client().clone();
        let contacts = network.contacts().clone();
        let raft_config = config.timing.raft_config()?;
        let id = node_id(&config.name);
        let (log, sm) = (file.log_store(), file.state_machine());
        let listen = config.listen;
        let started = run_on(&runtime, async move {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let bound = listener.local_addr()?;
            // Before it returns, openraft applies again what the log says was committed and
            // the state machine had not kept (it is made durable at snapshots: store.rs).
            let raft = Raft::new(id, Arc::new(raft_config), network, log, sm)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((listener, bound, raft))
        });
        let (listener, bound, raft) = started.map_err(raft_error)?;
        let cluster_addr = match config.cluster_addr.is_empty() {
            true => bound.to_string(),
            false => config.cluster_addr,
        };
        let me = Member {
            name: config.name,
            cluster_addr,
            api_addr: config.api_addr,
            cert_sha256: mine.clone(),
        };
        runtime.spawn(follow_membership(raft.clone(), trust.clone(), mine));
        let (proposals, waiting) = tokio::sync::mpsc::unbounded_channel();
        let max_entry_bytes = config.max_entry_bytes;
        runtime.spawn(propose(raft.clone(), waiting, max_entry_bytes));
        let shredded = tokio::sync::watch::Sender::new(crate::shred::Progress::default());
        runtime.spawn(crate::shred::run(
            raft.clone(),
            file.clone(),
            shredded.clone(),
        ));
        let extra = crate::service::Extra::default();
        let body_limit = crate::service::body_limit(max_entry_bytes, SNAPSHOT_CHUNK as usize);
        let app = crate::service::router(raft.clone(), extra.clone(), body_limit);
        let listener = runtime.spawn(crate::service::serve(listener, server_tls, app));
        Ok(ClusterNode {
            runtime: Some(runtime),
            raft,
            file,
            me,
            id,
            trust,
            client,
            contacts,
            proposals,
            shredded,
            extra,
            listener,
            max_entry_bytes,
            write_timeout: config.timing.write_timeout,
        })
    }

    /// Serves `router` on the cluster listener besides Raft (the server's forwarded
    /// requests), to peers only.
    pub fn serve_also(&self, router: axum::Router) {
        self.extra.set(router);
    }

    /// The HTTP client this node reaches its peers' cluster listeners with (mutual TLS, pinned
    /// certificates).
    pub fn peer_client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The certificates this node accepts from peers.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.leading_term().is_some()
    }

    /// The term in which this node leads, if it does (cheap: no copy of the membership).
    pub fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.id))
            .then_some(m.current_term)
    }

    /// The term in which this node leads and has applied an entry of that term, so that
    /// everything committed before its election is applied here too: what it reads is
    /// current. `None` while a new leader is still catching up (Raft's rule for reads).
    pub fn serving_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.id) && applied_in_term(&m))
            .then_some(m.current_term)
    }

    /// The index of the last entry applied here (cheap).
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    }

    /// The leader, if this node knows it (cheap: only that member is copied).
    pub fn leader(&self) -> Option<Member> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Whether this node has been part of a cluster (initialized, joined or restarted): its
    /// log holds (or held) an entry, which only a cluster writes. Read from storage: right
    /// after a restart openraft may still be applying its log and not have published the
    /// membership in its metrics yet.
    pub fn in_cluster(&self) -> bool {
        let m = self.raft.metrics();
        let known = m
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some();
        known || self.file.has_log()
    }

    /// Runs `fut` on the Raft runtime and waits for it.
    pub fn block_on<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        self.run(fut)
    }

    /// Asks the leader (this node) to hand leadership to another voter: it stops sending
    /// heartbeats to the others for an election timeout, so one of them is elected.
    pub fn step_down(&self) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: self.status().leader.map(|l| l.name),
            });
        }
        let raft = self.raft.clone();
        let pause = self.raft.config().election_timeout_max * 3;
        self.run(async move {
            raft.runtime_config().heartbeat(false);
            raft.runtime_config().elect(false);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            raft.runtime_config().heartbeat(true);
            raft.runtime_config().elect(true);
        });
        Ok(())
    }

    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        run_on(self.runtime.as_ref().expect("running"), fut)
    }

    /// How many durable log appends this node made, and how many entries they carried.
    pub fn log_appends(&self) -> (u64, u64) {
        self.file.appends()
    }

    /// This node.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Makes this node a cluster of one, if it is in no cluster yet; `false` when it already
    /// was in one (a restart).
    pub fn initialize(&self) -> Result<bool, ClusterError> {
        let raft = self.raft.clone();
        let members = BTreeMap::from([(self.id, self.me.clone())]);
        self.run(async move {
            if raft.is_initialized().await.map_err(raft_error)? {
                return Ok(false);
            }
            raft.initialize(members).await.map_err(raft_error)?;
            Ok(true)
        })
    }

    /// Adds `member` as a voter (on the leader): it first catches up as a learner, for at most
    /// [`CATCH_UP`]; a node that cannot be reached stays a learner and is not made a voter.
    pub fn add_voter(&self, member: Member) -> Result<(), ClusterError> {
        let raft = self.raft.clone();
        let id = node_id(&member.name);
        let name = member.name.clone();
        let result = self.run(async move {
            let added = raft.add_learner(id, member, false).await?;
            // openraft's own blocking wait gives up silently after a moment: wait here until
            // the learner holds the entry that added it.
            let caught_up = raft
                .wait(Some(CATCH_UP))
                .metrics(
                    |m| {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id).copied().flatten())
                            .is_some_and(|l| l.index >= added.log_id.index)
                    },
                    "the new learner holds the log",
                )
                .await;
            if caught_up.is_err() {
                return Ok(Err(()));
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map(Ok)
        });
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(())) => Err(ClusterError::Raft(format!(
                "{name} did not catch up within {}s: is its cluster address reachable from this node? It stays a learner until removed",
                CATCH_UP.as_secs()
            ))),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// Removes the member called `name` from the cluster (on the leader).
    pub fn remove(&self, name: &str) -> Result<(), ClusterError> {
        let raft = self.raft.clone();
        let id = node_id(name);
        let result = self.run(async move {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await?;
            raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
        });
        result.map(|_| ()).map_err(|e| self.write_error(e))
    }

    /// Hands `change` to the proposer and waits until the entry carrying it is committed on a
    /// majority and applied. Changes handed over while an entry is being committed go
    /// together into the next one (group commit).
    pub fn write(&self, change: Change) -> Result<Outcome, ClusterError> {
        let bytes = change.size();
        if bytes > self.max_entry_bytes {
            return Err(ClusterError::TooLarge {
                bytes,
                max: self.max_entry_bytes,
            });
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.proposals
            .send((change, tx))
            .map_err(|_| ClusterError::Raft("the node is shutting down".into()))?;
        match rx.recv_timeout(self.write_timeout) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(ClusterError::Unavailable(format!(
                    "the write was not committed within {:.0} s (is a majority of the cluster reachable?); it may still be committed later",
                    self.write_timeout.as_secs_f32()
                )))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(ClusterError::Raft("the node is shutting down".into()))
            }
        }
    }

    /// Waits until this node has shredded every shredding change it applied so far: the
    /// bytes they removed are in no file of its data directory.
    fn wait_shredded(&self) -> Result<(), ClusterError> {
        let target = *self.file.shred_wanted().borrow();
        let mut progress = self.shredded.subscribe();
        let waited = self.run(async move {
            let settled = progress
                .wait_for(|p| {
                    p.done >= target || p.failed.as_ref().is_some_and(|(at, _)| *at >= target)
                })
                .await
                .map(|p| p.clone());
            match settled {
                Ok(p) if p.done >= target => Ok(()),
                Ok(p) => Err(p.failed.map(|(_, e)| e).unwrap_or_default()),
                Err(_) => Err("the node is shutting down".to_owned()),
            }
        });
        waited.map_err(|e| {
            ClusterError::Raft(format!(
                "the change is committed, but its old bytes could not be removed from this \
                 node's Raft log and snapshot yet: {e}"
            ))
        })
    }

    fn write_error(&self, e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
        write_error(e)
    }

    /// Waits up to `timeout` for a leader to be known; returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<Member, ClusterError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.status().leader {
                return Ok(leader);
            }
            if std::time::Instant::now() > deadline {
                return Err(ClusterError::NotLeader { leader: None });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` until this node leads and has applied an entry of its term (a
    /// new cluster of one, before it takes requests).
    pub fn wait_serving(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = std::time::Instant::now() + timeout;
        while self.serving_term().is_none() {
            if std::time::Instant::now() > deadline {
                return Err(ClusterError::NotLeader { leader: None });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// What this node knows of the cluster.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut peers: Vec<Peer> = membership
            .nodes()
            .map(|(id, member)| {
                let leads = m.state == ServerState::Leader;
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).copied().flatten())
                    .map(|l| l.index);
                Peer {
                    member: member.clone(),
                    voter: voters.contains(id),
                    leader: m.current_leader == Some(*id),
                    last_contact_ms: match *id == self.id {
                        true => leads.then_some(0),
                        false => leads
                            .then(|| self.contacts.since(*id))
                            .flatten()
                            .map(|d| d.as_millis() as u64),
                    },
                    matched,
                }
            })
            .collect();
        peers.sort_by(|a, b| {
            b.voter
                .cmp(&a.voter)
                .then(a.member.name.cmp(&b.member.name))
        });
        let leader = m
            .current_leader
            .and_then(|id| membership.get_node(&id).cloned());
        Status {
            me: self.me.clone(),
            state: m.state,
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            leader,
            peers,
            quorum_ack_ms: m.millis_since_quorum_ack,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }

    /// Whether this node leads and may answer reads as the leader: a majority acknowledged it
    /// within the least election timeout, so no other node can have been elected since (the
    /// leader lease; it assumes clocks that run at about the same rate).
    pub fn holds_lease(&self) -> bool {
        let lease = self.raft.config().election_timeout_min;
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && applied_in_term(&m)
            && m.millis_since_quorum_ack.is_some_and(|ms| ms < lease)
    }
}

impl Backend for ClusterNode {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.file.get(key).map_err(|reason| io("get", key, reason))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.apply(Batch::new().put(key, value.to_vec()))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.apply(Batch::new().delete(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.file
            .list(prefix)
            .map_err(|reason| io("list", prefix, reason))
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.file
            .children(prefix)
            .map_err(|reason| io("list", prefix, reason))
    }

    fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let shred = batch.shred;
        match self.write(Change::from(batch)) {
            Ok(Outcome::Applied) if shred => {
                self.wait_shredded().map_err(|e| io("shred", "raft", e))
            }
            Ok(Outcome::Applied) => Ok(()),
            Ok(Outcome::Conflict(key)) => Err(StorageError::Conflict { key }),
            Err(ClusterError::TooLarge { bytes, max }) => {
                Err(StorageError::TooLarge { bytes, max })
            }
            Err(e @ (ClusterError::NotLeader { .. } | ClusterError::Unavailable(_))) => {
                Err(StorageError::Unavailable {
                    reason: e.to_string(),
                })
            }
            Err(e) => Err(io("batch", "raft", e)),
        }
    }

    fn snapshot_each(&self, visit: &mut sigil_storage::Visit<'_>) -> Result<(), StorageError> {
        self.file.each(visit)
    }

    fn kind(&self) -> &'static str {
        "raft"
    }

    fn max_batch_bytes(&self) -> usize {
        self.max_entry_bytes
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_node.map(|n| n.name),
        },
        e => raft_error(e),
    }
}

/// A change waiting for its entry, and where its outcome goes.
type Proposal = (
    Change,
    std::sync::mpsc::SyncSender<Result<Outcome, ClusterError>>,
);

/// Most changes one entry carries (and at most `max_entry_bytes` of them, but for a single
/// change, which [`ClusterNode::write`] has checked).
const GROUP_CHANGES: usize = 512;

/// Entries proposed and not yet answered at once: the next entry is formed and handed to Raft
/// while those before it are written and replicated, so the leader's log writes, the network
/// and the followers' writes overlap instead of taking turns. Entries keep the order they were
/// proposed in.
const IN_FLIGHT: usize = 4;

/// Group commit: takes the changes waiting, proposes them as one entry, answers each with its
/// own outcome; what arrives meanwhile forms the next entry, proposed as soon as fewer than
/// [`IN_FLIGHT`] entries are unanswered.
async fn propose(
    raft: Raft,
    mut proposals: tokio::sync::mpsc::UnboundedReceiver<Proposal>,
    max_entry_bytes: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // A change that did not fit the entry before starts the next one.
    let mut held: Option<Proposal> = None;
    loop {
        let first = match held.take() {
            Some(p) => p,
            None => match proposals.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut bytes = first.0.size();
        let mut group = vec![first];
        while group.len() < GROUP_CHANGES {
            match proposals.try_recv() {
                Ok(p) if bytes + p.0.size() > max_entry_bytes => {
                    held = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.0.size();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let (changes, replies): (Vec<Change>, Vec<_>) = group.into_iter().unzip();
        // Handed to Raft here, in order; answered when committed and applied.
        let answer = raft.client_write_ff(Command { changes }).await;
        tokio::spawn(async move {
            let _slot = slot;
            let result = match answer {
                Err(fatal) => Err(raft_error(fatal)),
                Ok(answer) => match answer.await {
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(e)) => Err(write_error(RaftError::APIError(e))),
                    Err(_) => Err(raft_error("raft stopped")),
                },
            };
            match result {
                Ok(resp) => {
                    for (reply, outcome) in replies.into_iter().zip(resp.data) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Keeps `trust` equal to the members' pinned certificates (and this node's own) as the
/// membership changes.
async fn follow_membership(raft: Raft, trust: Trust, mine: String) {
    let mut metrics = raft.metrics();
    loop {
        let pins: Vec<String> = {
            let m = metrics.borrow_and_update();
            m.membership_config
                .membership()
                .nodes()
                .map(|(_, member)| member.cert_sha256.clone())
                .chain(std::iter::once(mine.clone()))
                .collect()
        };
        trust.set_members(pins);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_performance_multiplier_scales_the_clock_and_stays_valid() {
        let three = Timing::scaled(3).unwrap();
        assert_eq!(three.heartbeat, Duration::from_millis(450));
        assert_eq!(three.election_min, Duration::from_millis(1500));
        assert_eq!(three.election_max, Duration::from_millis(3000));
        assert_eq!(three.snapshot_every, Timing::default().snapshot_every);
        for m in 1..=MAX_MULTIPLIER {
            let t = Timing::scaled(m).unwrap();
            let c = t.raft_config().unwrap();
            assert!(c.heartbeat_interval < c.election_timeout_min, "{m}");
        }
        assert_eq!(
            Timing::scaled(1).unwrap().heartbeat,
            Timing::default().heartbeat
        );
        for bad in [0, MAX_MULTIPLIER + 1, u32::MAX] {
            assert!(
                Timing::scaled(bad)
                    .unwrap_err()
                    .contains("performance_multiplier")
            );
        }
    }

    /// The cluster listener answers only peers whose certificate is pinned.
    #[test]
    fn the_cluster_listener_answers_only_pinned_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let node = ClusterNode::start(NodeConfig {
            name: "a".into(),
            dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            cluster_addr: String::new(),
            api_addr: String::new(),
            identity: NodeIdentity::generate("a").unwrap(),
            timing: Timing::default(),
            cache_bytes: sigil_storage::DEFAULT_PAGE_CACHE_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
        })
        .unwrap();
        let url = format!("https://{}{}", node.me().cluster_addr, crate::network::VOTE);
        let post = |tls: rustls::ClientConfig| {
            let url = url.clone();
            node.run(async move {
                let client = reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .http2_prior_knowledge()
                    .build()
                    .unwrap();
                client
                    .post(url)
                    .body("not postcard")
                    .send()
                    .await
                    .map(|r| r.status())
            })
        };
        // The peer trusts this node's certificate and this node trusts it back.
        let peer = NodeIdentity::generate("b").unwrap();
        let peer_trust = Trust::default();
        peer_trust.expect([node.me().cert_sha256.clone()]);
        let client = peer.client(&peer_trust).unwrap();
        // Not yet pinned here: refused in the handshake.
        assert!(post(client.clone()).is_err());
        node.trust().expect([peer.fingerprint()]);
        // Pinned: it reaches the listener (and is told its request is garbage).
        assert_eq!(post(client).unwrap(), reqwest::StatusCode::BAD_REQUEST);
        // A client that does not pin this node's certificate refuses it.
        let stranger = NodeIdentity::generate("m").unwrap();
        node.trust().expect([stranger.fingerprint()]);
        let distrustful = stranger.client(&Trust::default()).unwrap();
        assert!(post(distrustful).is_err());
    }
}
