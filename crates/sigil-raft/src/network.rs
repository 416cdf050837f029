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

use crate::types::{Member, NodeId, TypeConfig};

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
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(APPEND, &rpc, &option).await
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
