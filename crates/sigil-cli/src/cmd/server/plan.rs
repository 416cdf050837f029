//! What the server will run with: its flags over its configuration file, checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::bail;

use crate::args::ServerArgs;
use crate::server_config::{ServerFile, StorageKind, api_authority};

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The names in the TLS certificate: the loopback names, the listen address and `extra`.
pub(super) fn tls_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let ip = listen.ip();
    let listen_name = (!ip.is_unspecified()).then(|| ip.to_string());
    let mut names: Vec<String> = Vec::new();
    for n in LOOPBACK_NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain(listen_name)
        .chain(extra.iter().cloned())
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The names a signed request may address the server by, at its listen port: the
/// certificate's, but the loopback names only when it listens on loopback (or on every
/// address) or they were configured.
pub(super) fn host_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let ip = listen.ip();
    let on_loopback = ip.is_loopback() || ip.is_unspecified();
    tls_names(listen, extra)
        .into_iter()
        .filter(|n| on_loopback || !LOOPBACK_NAMES.contains(&n.as_str()) || extra.contains(n))
        .collect()
}

/// The `https://` address a client on this machine reaches `addr` at (loopback for an
/// unspecified address).
pub(super) fn client_addr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// Where data lives and how TLS is set up, from flags or a configuration file.
pub(super) struct Plan {
    /// `None`: transient (with its state directory and admins); `Some`: the data directory.
    pub(super) data_dir: Option<PathBuf>,
    pub(super) listen: SocketAddr,
    /// Certificate chain, key and (optionally) the CA clients trust, from files.
    pub(super) tls_files: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// With certificate files of the operator's: the first of `[listener] names`, which the
    /// printed `SIGIL_ADDR` names when there is no `api_addr` (the bound IP may well not be in
    /// a certificate the operator made; a generated one always holds it).
    pub(super) cert_name: Option<String>,
    pub(super) names: Vec<String>,
    /// The names signed requests may address at the listen port.
    pub(super) hosts: Vec<String>,
    pub(super) api_addr: Option<String>,
    pub(super) allow_unlocked_memory: bool,
    pub(super) audit: Vec<sigil_server::AuditDevice>,
    pub(super) limits: sigil_server::RateLimits,
    pub(super) metrics_listen: Option<SocketAddr>,
    /// The file's `log_level`.
    pub(super) log_level: Option<String>,
    /// Raft storage: this node's place in a cluster.
    pub(super) raft: Option<RaftPlan>,
    /// Scheduled snapshots.
    pub(super) snapshots: Vec<sigil_server::SnapshotSchedule>,
    /// Bytes of redb's page cache (`[storage] cache_mb`).
    pub(super) cache_bytes: usize,
}

/// A cluster node: its name, its cluster listener, where to ask to join.
#[derive(Debug, Clone)]
pub(super) struct RaftPlan {
    pub(super) node_id: String,
    pub(super) cluster_listen: SocketAddr,
    /// Raft's clock (`[storage] performance_multiplier`) and log compaction
    /// (`snapshot_threshold`, `trailing_logs`); checked.
    pub(super) timing: sigil_raft::Timing,
    /// `[storage] max_entry_size`.
    pub(super) max_entry_bytes: usize,
    /// `(member API address, its CA file)`, tried in turn while the node is in no cluster.
    pub(super) join: Vec<(String, Option<PathBuf>)>,
}

/// `[storage] max_entry_size` bounds: an entry must hold a request's worth of a small secret,
/// and reach a follower within one heartbeat.
const MIN_ENTRY_BYTES: u64 = 64 << 10;
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// The raft settings: flags over the file; `None` for other storage.
fn raft_plan(
    args: &ServerArgs,
    file: Option<&crate::server_config::Storage>,
    listen: SocketAddr,
) -> anyhow::Result<Option<RaftPlan>> {
    let in_file = file.is_some_and(|f| f.kind == StorageKind::Raft);
    if !in_file && args.node_id.is_none() {
        if file.is_some_and(|f| {
            f.node_id.is_some()
                || f.cluster_addr.is_some()
                || !f.retry_join.is_empty()
                || f.performance_multiplier.is_some()
                || f.max_entry_size.is_some()
                || f.snapshot_threshold.is_some()
                || f.trailing_logs.is_some()
        }) {
            bail!(
                "[storage] node_id, cluster_addr, retry_join, performance_multiplier, max_entry_size, snapshot_threshold and trailing_logs are for type = \"raft\""
            );
        }
        return Ok(None);
    }
    let Some(node_id) = args
        .node_id
        .clone()
        .or_else(|| file.and_then(|f| f.node_id.clone()))
    else {
        bail!("a raft node needs a name: --node-id ID or [storage] node_id");
    };
    let name_ok = !node_id.is_empty()
        && node_id.len() <= 64
        && node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        bail!("--node-id must be 1 to 64 letters, digits, '-', '_' or '.'");
    }
    let cluster_listen = match args
        .cluster_listen
        .or_else(|| file.and_then(|f| f.cluster_addr))
    {
        Some(a) => a,
        None => SocketAddr::new(listen.ip(), listen.port().checked_add(1).unwrap_or(8201)),
    };
    if cluster_listen == listen {
        bail!("the cluster listener needs its own address: --cluster-listen differs from --listen");
    }
    let join = match &args.join {
        Some(url) => vec![(
            url.clone(),
            std::env::var_os("SIGIL_CACERT").map(PathBuf::from),
        )],
        None => file
            .map(|f| {
                f.retry_join
                    .iter()
                    .map(|j| (j.leader_api_addr.clone(), j.leader_ca_cert_file.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    for (url, _) in &join {
        if !url.starts_with("https://") {
            bail!("a join address is an https:// URL, not {url:?}");
        }
    }
    let multiplier = file.and_then(|f| f.performance_multiplier).unwrap_or(1);
    let mut timing =
        sigil_raft::Timing::scaled(multiplier).map_err(|e| anyhow::anyhow!("[storage] {e}"))?;
    if let Some(n) = file.and_then(|f| f.snapshot_threshold) {
        if n == 0 {
            bail!("[storage] snapshot_threshold must be at least 1");
        }
        timing.snapshot_every = n;
    }
    if let Some(n) = file.and_then(|f| f.trailing_logs) {
        timing.keep_after_snapshot = n;
    }
    let max_entry_bytes = match file.and_then(|f| f.max_entry_size) {
        None => sigil_raft::DEFAULT_MAX_ENTRY_BYTES,
        Some(n) if (MIN_ENTRY_BYTES..=MAX_ENTRY_BYTES).contains(&n) => n as usize,
        Some(n) => bail!(
            "[storage] max_entry_size must be between {MIN_ENTRY_BYTES} and {MAX_ENTRY_BYTES} bytes, not {n}"
        ),
    };
    Ok(Some(RaftPlan {
        node_id,
        cluster_listen,
        timing,
        max_entry_bytes,
        join,
    }))
}

/// Rate limits: flags over the file over the defaults.
fn limits(
    args: &ServerArgs,
    file: Option<&crate::server_config::Limits>,
) -> anyhow::Result<sigil_server::RateLimits> {
    use sigil_server::Rate;
    let mut l = sigil_server::RateLimits::default();
    let pick = |flag: Option<f64>, file: Option<f64>, slot: &mut Rate| -> anyhow::Result<()> {
        if let Some(r) = flag.or(file) {
            if !(r.is_finite() && r > 0.0) {
                bail!("rate limits must be positive numbers of requests per second");
            }
            *slot = Rate::per_second(r);
        }
        Ok(())
    };
    pick(
        args.limit_identity,
        file.and_then(|f| f.identity),
        &mut l.identity,
    )?;
    pick(
        args.limit_address,
        file.and_then(|f| f.address),
        &mut l.address,
    )?;
    pick(
        args.limit_unauthenticated,
        file.and_then(|f| f.unauthenticated),
        &mut l.unauthenticated,
    )?;
    pick(
        args.limit_auth_failures,
        file.and_then(|f| f.auth_failures),
        &mut l.auth_failures,
    )?;
    if let Some(n) = file.and_then(|f| f.connections_per_address) {
        if n == 0 || n > 4096 {
            bail!("[limits] connections_per_address must be between 1 and 4096");
        }
        l.connections_per_address = n;
    }
    if let Some(n) = args
        .max_request_bytes
        .or(file.and_then(|f| f.max_request_bytes))
    {
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&n) {
            bail!(
                "[limits] max_request_bytes must be between 65536 (64 KiB) and 1073741824 (1 GiB)"
            );
        }
        l.max_request_bytes = n;
    }
    Ok(l)
}

fn flag_audit(args: &ServerArgs) -> Option<sigil_server::AuditDevice> {
    args.audit_file.as_ref().map(|p| sigil_server::AuditDevice {
        name: "file".into(),
        sink: sigil_server::AuditSink::File(p.clone()),
        rotate: None,
    })
}

pub(super) fn plan(args: &ServerArgs) -> anyhow::Result<Plan> {
    if let Some(path) = &args.config {
        let file = ServerFile::load(path)?;
        let l = file.listener;
        let raft = raft_plan(args, Some(&file.storage), l.address)?;
        let data_dir = file.storage.path;
        let api_addr = file.api_addr.map(toml::Spanned::into_inner);
        let mut names = l.names.clone();
        // The host clients use must be a name of this server (certificate, @target-uri).
        names.extend(api_addr.as_deref().and_then(api_authority).map(|(h, _)| h));
        let mut audit = Vec::new();
        for a in &file.audit {
            audit.push(
                a.device()
                    .map_err(|e| anyhow::anyhow!("{}: [[audit]] {e}", path.display()))?,
            );
        }
        audit.extend(flag_audit(args));
        let mut snapshots = Vec::new();
        for s in &file.snapshot {
            snapshots.push(
                s.schedule()
                    .map_err(|e| anyhow::anyhow!("{}: [[snapshot]] {e}", path.display()))?,
            );
        }
        let cache_mb = file
            .storage
            .cache_mb
            .unwrap_or(crate::server_config::DEFAULT_CACHE_MB);
        if cache_mb == 0 {
            bail!("{}: [storage] cache_mb must be at least 1", path.display());
        }
        return Ok(Plan {
            snapshots,
            cache_bytes: (cache_mb as usize) << 20,
            log_level: file.log_level.map(toml::Spanned::into_inner),
            metrics_listen: args.metrics_listen.or(l.metrics_address),
            limits: limits(args, Some(&file.limits))?,
            audit,
            data_dir: Some(data_dir),
            listen: l.address,
            cert_name: l
                .names
                .first()
                .filter(|_| l.tls_cert_file.is_some())
                .cloned(),
            tls_files: l
                .tls_cert_file
                .zip(l.tls_key_file)
                .map(|(c, k)| (c.into_inner(), k.into_inner(), l.tls_ca_file)),
            names: tls_names(&l.address, &names),
            hosts: host_names(&l.address, &names),
            api_addr,
            allow_unlocked_memory: file.disable_mlock || args.allow_unlocked_memory,
            raft,
        });
    }
    if !args.transient && args.data_dir.is_none() {
        bail!(
            "say where data lives: `sigil server --transient` (memory), `sigil server --data-dir DIR` (embedded file storage) or `sigil server -c FILE`"
        );
    }
    Ok(Plan {
        log_level: None,
        metrics_listen: args.metrics_listen,
        limits: limits(args, None)?,
        audit: flag_audit(args).into_iter().collect(),
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        tls_files: None,
        cert_name: None,
        names: tls_names(&args.listen, &args.tls_sans),
        hosts: host_names(&args.listen, &args.tls_sans),
        api_addr: None,
        allow_unlocked_memory: args.allow_unlocked_memory,
        snapshots: Vec::new(),
        cache_bytes: (crate::server_config::DEFAULT_CACHE_MB as usize) << 20,
        raft: match args.data_dir {
            Some(_) => raft_plan(args, None, args.listen)?,
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only_when_listening_on_loopback() {
        let names = |listen: &str, extra: &[&str]| {
            let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
            host_names(&listen.parse().unwrap(), &extra)
        };
        assert_eq!(
            names("127.0.0.1:8200", &[]),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            names("0.0.0.0:8200", &["sigil.example"]),
            ["localhost", "127.0.0.1", "::1", "sigil.example"]
        );
        assert_eq!(
            names("10.1.2.3:8200", &["sigil.example"]),
            ["10.1.2.3", "sigil.example"]
        );
        assert_eq!(
            names("10.1.2.3:8200", &["localhost"]),
            ["localhost", "10.1.2.3"]
        );
        // The certificate keeps the loopback names either way.
        assert!(tls_names(&"10.1.2.3:8200".parse().unwrap(), &[]).contains(&"localhost".into()));
        assert!(tls_names(&"127.0.0.5:8200".parse().unwrap(), &[]).contains(&"127.0.0.5".into()));
    }
}
