//! `sigil server --transient`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sigil_crypto::{PublicIdentity, SecretIdentity};
use sigil_server::{TransientCa, TransientConfig, start_transient};

use crate::args::ServerArgs;
use crate::keyfile;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The directory for the CA certificate (and a first-run admin key): the one given (created
/// 0700 if missing), or a new private directory under $TMPDIR.
fn state_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => {
            if !d.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
            }
            Ok(d)
        }
        None => {
            let d = tempfile::Builder::new()
                .prefix("sigil-")
                .tempdir()
                .context("cannot create a directory under $TMPDIR")?;
            Ok(d.keep())
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
        keyfile::write_private_file(&path, key.to_key_file(&super::now_rfc3339()).as_bytes())?;
        return Ok(Admins {
            identities: vec![("admin".into(), key.public())],
            generated_key: Some(path),
        });
    }
    let mut out: Vec<(String, PublicIdentity)> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let public = keyfile::read_public(value)?;
        let stem = Path::new(value)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| !value.trim().to_ascii_lowercase().starts_with("sigil1"))
            .filter(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        let mut name = match stem {
            Some(s) => s.to_owned(),
            None if i == 0 => "admin".into(),
            None => format!("admin-{}", i + 1),
        };
        if out.iter().any(|(n, _)| *n == name) {
            name = format!("{name}-{}", i + 1);
        }
        if out.iter().any(|(_, p)| *p == public) {
            bail!("--admin {value}: the same key is given twice");
        }
        out.push((name, public));
    }
    Ok(Admins {
        identities: out,
        generated_key: None,
    })
}

fn tls_names(listen: &SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn client_addr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    if !args.transient {
        bail!(
            "only transient mode exists yet: run `sigil server --transient` (persistent storage comes with the storage milestone)"
        );
    }
    init_logging();
    let dir = state_dir(args.dir)?;
    let Admins {
        identities: admins,
        generated_key,
    } = admins(&args.admins, &dir)?;
    let tls = TransientCa::generate(&tls_names(&args.listen, &args.tls_sans))
        .context("cannot generate the TLS certificate")?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, tls.ca_pem.as_bytes())
        .with_context(|| format!("cannot write {}", ca_path.display()))?;
    std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644)).ok();
    let admin_names: Vec<String> = admins.iter().map(|(n, _)| n.clone()).collect();

    let running = start_transient(TransientConfig {
        listen: args.listen,
        admins,
        tls,
    })
    .await?;

    tracing::info!(
        addr = %running.addr,
        admins = ?admin_names,
        "transient server ready: storage in memory, TLS 1.3, every request signed and every response sealed"
    );
    println!("export SIGIL_ADDR={}", client_addr(running.addr));
    println!("export SIGIL_CACERT={}", ca_path.display());
    println!("export SIGIL_SERVER_KEY={}", running.server_key.keyid());
    if let Some(path) = generated_key {
        println!("export SIGIL_KEY={}", path.display());
    }
    use std::io::Write as _;
    std::io::stdout().flush().ok();

    tokio::select! {
        () = running.serve() => {}
        () = shutdown_signal() => {
            tracing::info!("shutting down; transient data is gone");
        }
    }
    Ok(ExitCode::SUCCESS)
}
