//! `sigil server` as a Raft node: its cluster identity and listener, and — for a node in no
//! cluster yet — starting a cluster of one, or asking to join one and waiting for an admin.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sigil_raft::{ClusterNode, NodeConfig, NodeIdentity};

use super::plan::{Plan, RaftPlan};

/// A started Raft node and the server node over it.
pub(super) struct Started {
    pub(super) raft: Arc<ClusterNode>,
    pub(super) node: sigil_core::Node,
}

/// Starts the Raft node in `dir/raft` with its identity in `dir/cluster`, and the server node
/// over it. A node in no cluster starts one (no `join`) or asks to join; when the cluster
/// hands it the API TLS identity, that is written to `dir/tls` (unless the node has its own
/// certificate files).
pub(super) async fn start(dir: &Path, plan: &Plan, raft: &RaftPlan) -> anyhow::Result<Started> {
    super::dirs::private_dir(&dir.join("cluster"))?;
    let identity = NodeIdentity::load_or_create(&dir.join("cluster"), &raft.node_id)
        .map_err(|e| anyhow::anyhow!("cannot set up the node's cluster certificate: {e}"))?;
    let api_addr = plan
        .api_addr
        .clone()
        .unwrap_or_else(|| super::plan::client_addr(plan.listen));
    let config = NodeConfig {
        name: raft.node_id.clone(),
        dir: dir.join("raft"),
        listen: raft.cluster_listen,
        cluster_addr: String::new(),
        api_addr: api_addr.clone(),
        identity,
        timing: raft.timing,
        cache_bytes: plan.cache_bytes,
        max_entry_bytes: raft.max_entry_bytes,
    };
    let cluster = tokio::task::spawn_blocking(move || ClusterNode::start(config))
        .await?
        .context("cannot start the raft node")?;
    let cluster = Arc::new(cluster);
    tracing::info!(
        node = %raft.node_id,
        cluster_addr = %cluster.me().cluster_addr,
        cert_sha256 = %cluster.me().cert_sha256,
        heartbeat_ms = raft.timing.heartbeat.as_millis(),
        max_entry_size = raft.max_entry_bytes,
        snapshot_threshold = raft.timing.snapshot_every,
        trailing_logs = raft.timing.keep_after_snapshot,
        "raft node started"
    );
    let node = sigil_server::raft_node(Arc::clone(&cluster), plan.audit.clone())
        .with_context(|| format!("cannot open the data directory {}", dir.display()))?;
    if cluster.in_cluster() {
        return Ok(Started {
            raft: cluster,
            node,
        });
    }
    if raft.join.is_empty() {
        let c = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            c.initialize().context("cannot start a new cluster")?;
            c.wait_serving(Duration::from_secs(30))
                .context("this node did not become the leader of its new cluster")?;
            Ok(())
        })
        .await??;
        tracing::info!("started a new cluster of one: other nodes join with --join");
        return Ok(Started {
            raft: cluster,
            node,
        });
    }
    let mut last = None;
    for (leader_api, ca_file) in &raft.join {
        let ca_pem = match ca_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the CA file {}", f.display()))?,
            ),
            None => None,
        };
        let settings = sigil_server::JoinSettings {
            leader_api: leader_api.clone(),
            ca_pem,
            server_key: std::env::var("SIGIL_SERVER_KEY").ok(),
            api_addr: api_addr.clone(),
        };
        match sigil_server::join_cluster(&settings, &node, &cluster).await {
            Ok(tls) => {
                if let Some(tls) = tls.filter(|_| plan.tls_files.is_none()) {
                    write_tls(&dir.join("tls"), &tls)?;
                }
                return Ok(Started {
                    raft: cluster,
                    node,
                });
            }
            Err(e) => {
                tracing::warn!(member = %leader_api, error = %e, "joining through this member failed");
                last = Some(e);
            }
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no member to join"), Into::into))
}

/// Keeps the cluster's API TLS identity as this node's (`ca.pem`, `server.pem`,
/// `server.key` 0600).
fn write_tls(dir: &Path, tls: &sigil_proto::raft::TlsBundle) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    super::dirs::private_dir(dir)?;
    for (name, text, mode) in [
        ("ca.pem", &tls.ca_pem, 0o644),
        ("server.pem", &tls.chain_pem, 0o644),
        ("server.key", &tls.key_pem, 0o600),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.new"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
