//! Three-node clusters on loopback for `compare --cluster`: Sigil on raft storage (joined by an
//! admin's approval, as `scripts/cluster-demo` does) and OpenBao on raft storage (joined by
//! `retry_join`, each node unsealed with the key share), both over TLS. The load goes to the
//! leader; `failover` times how long after `kill -9` of the leader a write through another node
//! succeeds again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::load::Target;
use crate::servers::{
    NO_LIMIT, Process, SigilAccess, Started, admin_key, bao_call, bao_mounts, exports, free_port,
    init_and_unseal, log_file, seed_client_rng, sigil_cli, sigil_client, sigil_started, var,
    wait_for,
};

/// Nodes per cluster.
const NODES: usize = 3;

/// How a started cluster is reached to time a failover: the leader is `started.process`.
pub(crate) enum Survivor {
    /// A Sigil client of node 2.
    Sigil(Box<sigil_client::Client>),
    /// OpenBao's node 2 and the root token.
    Bao {
        http: reqwest::Client,
        addr: String,
        token: String,
    },
}

fn ports() -> anyhow::Result<Vec<(u16, u16)>> {
    (0..NODES)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect()
}

fn spawn_node(
    bin: &Path,
    dir: &Path,
    i: usize,
    (api, cluster): (u16, u16),
    join: Option<(&str, &str)>,
) -> anyhow::Result<Child> {
    let mut command = Command::new(bin);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join(format!("sigil-{i}")))
        .args(["--node-id", &format!("sigil-{i}")])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--cluster-listen", &format!("127.0.0.1:{cluster}")])
        .args(["--limit-identity", NO_LIMIT, "--limit-address", NO_LIMIT])
        .env("SIGIL_LOG", "warn")
        .env_remove("TOKIO_WORKER_THREADS")
        .stdout(Stdio::piped())
        .stderr(log_file(dir, &format!("sigil-{i}"))?);
    if let Some((leader, ca)) = join {
        command.args(["--join", leader]).env("SIGIL_CACERT", ca);
    }
    command.spawn().context("run sigil server")
}

/// Three Sigil nodes: the first initialized and unsealed, the others approved by the admin.
/// Three Sigil nodes on loopback, joined by the admin's approval and unsealed: node `i + 1`
/// is `children[i]` on `ports[i]`, with its data in `dir/sigil-{i + 1}`.
pub(crate) struct SigilNodes {
    pub(crate) children: Vec<Child>,
    pub(crate) ports: Vec<(u16, u16)>,
    pub(crate) access: SigilAccess,
    pub(crate) cold_start: Duration,
}

impl SigilNodes {
    /// Node `i`'s API address (0-based).
    pub(crate) fn addr(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i].0)
    }

    /// Runs the CLI as the admin against node `i`: its standard output.
    pub(crate) fn cli(&self, bin: &Path, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let a = &self.access;
        let (addr, key) = (self.addr(i), a.key.to_string_lossy());
        let env = [
            ("SIGIL_ADDR", addr.as_str()),
            ("SIGIL_CACERT", a.ca.as_str()),
            ("SIGIL_SERVER_KEY", a.keyid.as_str()),
            ("SIGIL_KEY", key.as_ref()),
        ];
        sigil_cli(bin, args, &env)
    }

    /// Whether node `i` answers as unsealed.
    pub(crate) fn unsealed(&self, bin: &Path, i: usize) -> bool {
        self.cli(bin, i, &["operator", "status", "--format", "json"])
            .is_ok_and(|s| s.contains("\"sealed\": false"))
    }

    /// Starts node `i` again from its data directory (it comes back sealed).
    pub(crate) fn restart(&mut self, bin: &Path, dir: &Path, i: usize) -> anyhow::Result<()> {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
        let mut child = spawn_node(bin, dir, i + 1, self.ports[i], None)?;
        exports(&mut child, 0)?;
        self.children[i] = child;
        Ok(())
    }
}

impl Drop for SigilNodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts three nodes as `scripts/cluster-demo` does.
pub(crate) async fn sigil_nodes(bin: &Path, dir: &Path) -> anyhow::Result<SigilNodes> {
    let key = admin_key(bin, dir)?;
    let ports = ports()?;
    let started = Instant::now();
    let mut first = spawn_node(bin, dir, 1, ports[0], None)?;
    let env = exports(&mut first, 2)?;
    let cold_start = started.elapsed();
    let (addr, ca) = (var(&env, "SIGIL_ADDR")?, var(&env, "SIGIL_CACERT")?);
    let keyid = init_and_unseal(bin, &key, addr, ca)?;
    let mut nodes = SigilNodes {
        children: vec![first],
        ports,
        access: SigilAccess {
            key,
            addr: addr.to_owned(),
            ca: ca.to_owned(),
            keyid,
        },
        cold_start,
    };
    for i in 1..NODES {
        let name = format!("sigil-{}", i + 1);
        let mut child = spawn_node(bin, dir, i + 1, nodes.ports[i], Some((addr, ca)))?;
        exports(&mut child, 0)?;
        nodes.children.push(child);
        let until = Instant::now() + Duration::from_secs(30);
        while nodes
            .cli(bin, 0, &["operator", "raft", "approve", &name])
            .is_err()
        {
            anyhow::ensure!(Instant::now() < until, "{name} did not ask to join");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let until = Instant::now() + Duration::from_secs(60);
    for i in 1..NODES {
        while !nodes.unsealed(bin, i) {
            anyhow::ensure!(Instant::now() < until, "{} was not unsealed", nodes.addr(i));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(nodes)
}

pub(crate) async fn sigil(bin: &Path, dir: &Path) -> anyhow::Result<(Started, Survivor)> {
    let mut nodes = sigil_nodes(bin, dir).await?;
    let a = &nodes.access;
    let survivor = sigil_client(&a.key, &nodes.addr(1), &a.ca, &a.keyid)?;
    let access = SigilAccess {
        key: a.key.clone(),
        addr: a.addr.clone(),
        ca: a.ca.clone(),
        keyid: a.keyid.clone(),
    };
    let cold_start = nodes.cold_start;
    let mut children = std::mem::take(&mut nodes.children).into_iter();
    let first = children.next().context("no first node")?;
    let mut started =
        sigil_started((first, None), "sigil (3-node raft)", access, cold_start).await?;
    started.process.peers = children.collect();
    Ok((started, Survivor::Sigil(Box::new(survivor))))
}

fn bao_config(dir: &Path, i: usize, (api, cluster): (u16, u16), leader: u16) -> String {
    let join = match i {
        1 => String::new(),
        _ => format!(
            "  retry_join {{\n    leader_api_addr = \"https://127.0.0.1:{leader}\"\n    leader_ca_cert_file = \"{}\"\n  }}\n",
            dir.join("bao-cert.pem").display()
        ),
    };
    format!(
        "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"bao-{i}\"\n{join}}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n}}\n\
         api_addr = \"https://127.0.0.1:{api}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\n\
         disable_mlock = true\n",
        dir.join(format!("bao-raft-{i}")).display(),
        dir.join("bao-cert.pem").display(),
        dir.join("bao-key.pem").display(),
    )
}

/// Three OpenBao nodes with its default timing: the first initialized with one key share and
/// unsealed, the others joined by `retry_join` and unsealed with the same share; waits until
/// all three vote (OpenBao's autopilot promotes new nodes after its stabilization time).
pub(crate) async fn bao(bao: &Path, dir: &Path) -> anyhow::Result<(Started, Survivor)> {
    let ports = ports()?;
    let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    std::fs::write(dir.join("bao-cert.pem"), tls.cert.pem())?;
    std::fs::write(dir.join("bao-key.pem"), tls.signing_key.serialize_pem())?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(tls.cert.pem().as_bytes())?])
        .build()?;
    seed_client_rng()?;
    let addr = |i: usize| format!("https://127.0.0.1:{}", ports[i].0);
    let spawn = |i: usize| -> anyhow::Result<Child> {
        std::fs::create_dir_all(dir.join(format!("bao-raft-{i}")))?;
        let config = dir.join(format!("bao-{i}.hcl"));
        std::fs::write(&config, bao_config(dir, i, ports[i - 1], ports[0].0))?;
        Command::new(bao)
            .arg("server")
            .arg(format!("-config={}", config.display()))
            .stdout(log_file(dir, &format!("openbao-{i}"))?)
            .stderr(Stdio::null())
            .spawn()
            .context("run bao server")
    };
    let started = Instant::now();
    let first = spawn(1)?;
    wait_for(&http, &format!("{}/v1/sys/health", addr(0)), |s| s == 501).await?;
    let cold_start = started.elapsed();
    let put = reqwest::Method::PUT;
    let init = bao_call(
        &http,
        &addr(0),
        None,
        put.clone(),
        "sys/init",
        json!({ "secret_shares": 1, "secret_threshold": 1 }),
    )
    .await?;
    let share = init["keys_base64"][0]
        .as_str()
        .context("no unseal key")?
        .to_owned();
    let token = init["root_token"]
        .as_str()
        .context("no root token")?
        .to_owned();
    let unseal = json!({ "key": share });
    bao_call(
        &http,
        &addr(0),
        None,
        put.clone(),
        "sys/unseal",
        unseal.clone(),
    )
    .await?;
    wait_for(&http, &format!("{}/v1/sys/health", addr(0)), |s| s == 200).await?;
    let process = Process {
        child: first,
        name: "openbao (3-node raft, TLS)",
        audit_log: None,
        peers: vec![spawn(2)?, spawn(3)?],
    };
    for i in 1..NODES {
        let until = Instant::now() + Duration::from_secs(60);
        // Refused until the node has found the leader; once taken, the key answers the
        // leader's join challenge and the node unseals itself (later calls fail meanwhile).
        while bao_call(
            &http,
            &addr(i),
            None,
            put.clone(),
            "sys/unseal",
            unseal.clone(),
        )
        .await
        .is_err()
        {
            anyhow::ensure!(Instant::now() < until, "OpenBao node {} took no key", i + 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // An unsealed standby answers 429.
        wait_for(&http, &format!("{}/v1/sys/health", addr(i)), |s| {
            s == 200 || s == 429
        })
        .await?;
    }
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let config = bao_call(
            &http,
            &addr(0),
            Some(&token),
            reqwest::Method::GET,
            "sys/storage/raft/configuration",
            json!({}),
        )
        .await?;
        let voters = config["data"]["config"]["servers"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|s| s["voter"] == true).count());
        if voters == NODES {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "OpenBao has {voters} voters after 2 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bao_mounts(&http, &addr(0), &token).await?;
    let survivor = Survivor::Bao {
        http: http.clone(),
        addr: addr(1),
        token: token.clone(),
    };
    Ok((
        Started {
            process,
            target: Target::Bao {
                http,
                addr: addr(0),
                token,
            },
            cold_start,
            sigil: None,
        },
        survivor,
    ))
}

/// `kill -9` of the leader (`started.process`), then a write through node 2 every 50 ms until
/// one succeeds: how long that took.
pub(crate) async fn failover(started: Started, survivor: Survivor) -> anyhow::Result<Duration> {
    let Started { mut process, .. } = started;
    process.child.kill()?;
    process.child.wait()?;
    let killed = Instant::now();
    let until = killed + Duration::from_secs(120);
    let mut n = 0;
    loop {
        n += 1;
        let ok = match &survivor {
            Survivor::Sigil(c) => c
                .request(
                    "POST",
                    "secret/data/failover",
                    Some(&json!({ "data": { "n": n } })),
                )
                .await
                .is_ok(),
            Survivor::Bao { http, addr, token } => bao_call(
                http,
                addr,
                Some(token),
                reqwest::Method::POST,
                "secret/data/failover",
                json!({ "data": { "n": n } }),
            )
            .await
            .is_ok(),
        };
        if ok {
            return Ok(killed.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "no write succeeded for 2 min after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
