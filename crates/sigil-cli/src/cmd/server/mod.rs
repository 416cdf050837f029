//! `sigil server --transient`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use sigil_crypto::{PublicIdentity, SecretIdentity};
use sigil_server::{ServerConfig, TlsIdentity, start};

use crate::args::ServerArgs;
use crate::keyfile;
use crate::server_config::api_authority;

mod cluster;
mod dirs;
mod plan;
mod reload;

pub(crate) use dirs::private_dir;
use plan::{Plan, client_addr, plan};

/// Logs to stderr, text or JSON lines, through a filter a reload may change.
fn init_logging(json: bool, filter: tracing_subscriber::EnvFilter) -> reload::LogControl {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (filter, control) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .init();
    }
    control
}

/// The directory for the CA certificate (and a first-run admin key): the one given (created
/// 0700 if missing), or a new private directory under $TMPDIR.
/// The transient server's state directory (CA certificate, a generated admin key): `--dir`,
/// made private (0700) and kept; or a new private directory under `$TMPDIR`, removed when the
/// server exits cleanly (the guard) — a transient server's data ends with it, and so does the
/// use of its admin key.
fn state_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            private_dir(&d)?;
            Ok((d, None))
        }
        None => {
            use std::os::unix::fs::PermissionsExt as _;
            let d = tempfile::Builder::new()
                .prefix("sigil-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .context("cannot create a directory under $TMPDIR")?;
            Ok((d.path().to_owned(), Some(d)))
        }
    }
}

/// The init admins, and the path of an admin key generated for a first run.
struct Admins {
    identities: Vec<(String, PublicIdentity)>,
    generated_key: Option<PathBuf>,
}

/// Init admins from `--admin` values, named after their file (`alice.pub` → `alice`) or
/// `admin`, `admin-2`, … for literal strings.
fn admins(values: &[String], dir: &Path) -> anyhow::Result<Admins> {
    if values.is_empty() {
        let key = SecretIdentity::generate().context("key generation failed")?;
        let path = dir.join("admin.key");
        keyfile::write_private_file(
            &path,
            key.to_key_file(&super::data::now_rfc3339()).as_bytes(),
        )?;
        return Ok(Admins {
            identities: vec![("admin".into(), key.public())],
            generated_key: Some(path),
        });
    }
    let out = keyfile::named_publics(values)?;
    Ok(Admins {
        identities: out,
        generated_key: None,
    })
}

/// `https://<cert_name>:<port>` (see [`Plan::cert_name`]).
fn operator_cert_addr(plan: &Plan, port: u16) -> Option<String> {
    let name = plan.cert_name.as_deref()?;
    Some(if name.contains(':') {
        format!("https://[{name}]:{port}")
    } else {
        format!("https://{name}:{port}")
    })
}

/// SIGTERM and SIGINT. The handlers are registered when this is made, not when it is first
/// awaited: a server that has printed its address (and so may be stopped) already cleans up on
/// a signal instead of dying of it.
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// How long a shutdown waits for the requests in flight.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let (filter, level) = reload::log_filter(plan.log_level.as_deref());
    let log = init_logging(args.log_format == "json", filter);
    // Before any key is generated or read.
    let hardening = sigil_server::harden_process(plan.allow_unlocked_memory)?;
    let names = plan.names.clone();
    let mut stop = Stop::new()?;
    // SIGHUP's default action ends the process (a `systemctl reload` or a logrotate hook would
    // take the node down, sealed): handled from the start.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    // Removes a temporary state directory when `run` returns (a clean exit).
    let mut state_guard: Option<tempfile::TempDir> = None;
    let mut cluster_of = None;
    let (node, tls, ca_path, generated_key) = match &plan.data_dir {
        None => {
            let (dir, guard) = state_dir(args.dir.clone())?;
            state_guard = guard;
            let Admins {
                identities,
                generated_key,
            } = admins(&args.admins, &dir)?;
            let tls =
                TlsIdentity::generate(&names).context("cannot generate the TLS certificate")?;
            let ca_path = dir.join("ca.pem");
            std::fs::write(&ca_path, tls.ca_pem.as_bytes())
                .with_context(|| format!("cannot write {}", ca_path.display()))?;
            std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644)).ok();
            let node = sigil_server::transient_node(identities, plan.audit.clone())?;
            (node, tls, Some(ca_path), generated_key)
        }
        Some(dir) => {
            private_dir(dir)?;
            // A raft node first: one that joins receives the cluster's TLS identity.
            let started = match &plan.raft {
                Some(r) => Some(cluster::start(dir, &plan, r).await?),
                None => None,
            };
            let (tls, ca_path) = match &plan.tls_files {
                Some((cert, key, ca)) => (
                    TlsIdentity::from_files(cert, key, ca.as_deref())
                        .context("cannot load the TLS certificate")?,
                    ca.clone(),
                ),
                None => {
                    let tls_dir = dir.join("tls");
                    private_dir(&tls_dir)?;
                    (
                        TlsIdentity::load_or_create(&tls_dir, &names)
                            .context("cannot set up TLS")?,
                        Some(tls_dir.join("ca.pem")),
                    )
                }
            };
            let node = match started {
                Some(started) => {
                    let tls_dir = plan.tls_files.is_none().then(|| dir.join("tls"));
                    cluster_of = Some(sigil_server::Cluster::new(started.raft, tls_dir));
                    started.node
                }
                None => sigil_server::file_node(
                    &dir.join("sigil.redb"),
                    plan.cache_bytes,
                    plan.audit.clone(),
                )
                .with_context(|| format!("cannot open the data directory {}", dir.display()))?,
            };
            (node, tls, ca_path, None)
        }
    };
    let initialized = node.initialized();
    let storage = node.storage_kind();

    let running = start(ServerConfig {
        listen: plan.listen,
        node,
        tls,
        hosts: plan.hosts.clone(),
        api_authority: plan.api_addr.as_deref().and_then(api_authority),
        limits: plan.limits,
        metrics_listen: plan.metrics_listen,
        cluster: cluster_of,
        snapshots: plan.snapshots.clone(),
        spool_dir: plan.data_dir.clone(),
        reload: Some(std::sync::Arc::new(reload::ConfigReload::new(
            args.clone(),
            &plan,
            log,
            level,
        ))),
    })
    .await?;

    if let Some(m) = running.metrics_addr() {
        tracing::info!(addr = %m, "Prometheus metrics at http://{m}/metrics");
    }
    tracing::info!(
        addr = %running.addr,
        storage,
        memory_locked = hardening.memory_locked,
        "server ready: TLS 1.3, every request signed and every response sealed"
    );
    let cert_addr = operator_cert_addr(&plan, running.addr.port());
    let addr = plan
        .api_addr
        .or(cert_addr)
        .unwrap_or_else(|| client_addr(running.addr));
    println!("export SIGIL_ADDR={addr}");
    if let Some(ca) = ca_path {
        println!("export SIGIL_CACERT={}", ca.display());
    }
    if let Some(key) = running.server_key() {
        println!("export SIGIL_SERVER_KEY={}", key.keyid());
    }
    if let Some(path) = generated_key {
        println!("export SIGIL_KEY={}", path.display());
    }
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    if !initialized {
        tracing::warn!(
            "not initialized: run `sigil operator init --admin <sigil1…|FILE>… [--threshold K]`"
        );
    } else if running.sealed() {
        tracing::info!("sealed: admins run `sigil operator unseal` until the threshold is reached");
    }

    let control = std::sync::Arc::new(running.control());
    // SIGHUP reloads: the TLS certificate, limits and log level from the configuration, and
    // the audit devices reopened (logrotate's `postrotate`).
    let reloading = std::sync::Arc::clone(&control);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let control = std::sync::Arc::clone(&reloading);
            match tokio::task::spawn_blocking(move || control.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("SIGHUP: {e}"),
                Err(_) => tracing::error!("SIGHUP: the reload panicked"),
            }
        }
    });
    let draining = running.serve_until(stop.next()).await;
    tracing::info!(
        grace_seconds = DRAIN_GRACE.as_secs(),
        "shutting down: no new connections; answering the requests in flight (a second SIGTERM or SIGINT exits at once)"
    );
    tokio::select! {
        open = draining.wait(DRAIN_GRACE) => {
            if open > 0 {
                tracing::warn!(connections = open, "the grace period is over; closing connections with requests in flight");
            }
        }
        () = stop.next() => {
            tracing::warn!("a second signal: exiting now, without waiting for requests in flight or closing the audit log");
            std::process::exit(1);
        }
    }
    // A final signed checkpoint on every audit device, the storage checkpointed and closed.
    tokio::task::spawn_blocking(move || control.close())
        .await
        .ok();
    tracing::info!("stopped");
    if let Some(dir) = state_guard {
        let path = dir.path().to_owned();
        match dir.close() {
            Ok(()) => {
                tracing::info!(dir = %path.display(), "removed the temporary state directory")
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove the temporary state directory")
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
