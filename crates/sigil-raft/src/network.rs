//! The client side of node-to-node traffic: Raft's RPCs to a peer's cluster listener, over
//! HTTP/2 and mutual TLS, with postcard bodies.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Change, Entry, Member, NodeId, TypeConfig};

/// Raft's RPC paths on the cluster listener.
pub(crate) const APPEND: &str = "/v1/cluster/raft/append";
pub(crate) const VOTE: &str = "/v1/cluster/raft/vote";
pub(crate) const SNAPSHOT: &str = "/v1/cluster/raft/snapshot";

/// Makes a [`Peer`] for each node Raft talks to; they share one connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    client: reqwest::Client,
    contacts: Contacts,
}

/// When each peer last answered an RPC (the leader's view of its followers: `list-peers`'
/// last contact, and how dead-server cleanup finds the dead).
#[derive(Clone, Debug, Default)]
pub(crate) struct Contacts(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl Contacts {
    fn saw(&self, id: NodeId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Instant::now());
    }

    /// How long ago `id` last answered, if it ever did.
    pub(crate) fn since(&self, id: NodeId) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(Instant::elapsed)
    }
}

impl Network {
    /// A network whose connections use `tls`.
    pub(crate) fn new(tls: rustls::ClientConfig) -> Result<Self, String> {
        // A peer cut off without a reset (a partition, a dead machine) must not hold a request
        // for TCP's minutes: connecting gives up after 2 s, and an open connection that stops
        // answering its pings is dropped after 3 s more.
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .http2_keep_alive_timeout(Duration::from_secs(3))
            .http2_keep_alive_while_idle(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Network {
            client,
            contacts: Contacts::default(),
        })
    }
}

impl Network {
    /// The pooled HTTP client.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// When each peer last answered.
    pub(crate) fn contacts(&self) -> &Contacts {
        &self.contacts
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            client: self.client.clone(),
            contacts: self.contacts.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// Raft's connection to one peer.
#[derive(Debug)]
pub(crate) struct Peer {
    client: reqwest::Client,
    contacts: Contacts,
    target: NodeId,
    node: Member,
}

/// The most entry bytes (keys and values) one AppendEntries carries; at least one entry goes.
pub(crate) const APPEND_BUDGET: usize = 256 * 1024;

/// How many of `entries`, from the first, fit in `budget` bytes (at least one).
fn entries_within(entries: &[Entry], budget: usize) -> usize {
    let mut used = 0;
    for (i, e) in entries.iter().enumerate() {
        used += match &e.payload {
            openraft::EntryPayload::Normal(command) => {
                command.changes.iter().map(Change::size).sum::<usize>()
            }
            _ => 0,
        };
        if used > budget {
            return i.max(1);
        }
    }
    entries.len()
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("https://{}{path}", self.node.cluster_addr);
        let resp = self
            .client
            .post(url)
            .timeout(option.hard_ttl())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !resp.status().is_success() {
            let status = std::io::Error::other(format!("{path} answered {}", resp.status()));
            return Err(RPCError::Network(NetworkError::new(&status)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.contacts.saw(self.target);
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        // openraft gives an AppendEntries one heartbeat interval: a member catching up on large
        // entries gets them in pieces that fit, and says how far it got (a partial success).
        let keep = entries_within(&rpc.entries, APPEND_BUDGET);
        if keep == rpc.entries.len() {
            return self.call(APPEND, &rpc, &option).await;
        }
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        match self.call(APPEND, &rpc, &option).await? {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(last)),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(VOTE, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;
    use crate::types::Command;

    fn entry(index: u64, bytes: usize) -> Entry {
        let change = Change {
            expect: vec![],
            writes: vec![("k".into(), Some(vec![0; bytes]))],
            shred: false,
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(Command {
                changes: vec![change],
            }),
        }
    }

    #[test]
    fn large_entries_go_in_pieces_that_fit_and_at_least_one_goes() {
        let small: Vec<Entry> = (1..=100).map(|i| entry(i, 100)).collect();
        assert_eq!(entries_within(&small, APPEND_BUDGET), 100);
        let large: Vec<Entry> = (1..=10).map(|i| entry(i, 100_000)).collect();
        assert_eq!(entries_within(&large, APPEND_BUDGET), 2);
        let huge = vec![entry(1, 10 * APPEND_BUDGET), entry(2, 1)];
        assert_eq!(entries_within(&huge, APPEND_BUDGET), 1);
        assert_eq!(entries_within(&[], APPEND_BUDGET), 0);
    }
}
