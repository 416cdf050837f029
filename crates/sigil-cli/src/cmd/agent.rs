//! `sigil agent`, `sigil run`, `sigil inject` (the work is in `sigil-agent`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use sigil_agent::config::{AgentFile, duration};
use sigil_agent::reference::{Reference, check_name};

use crate::args::{ClientArgs, RunArgs};
use crate::config;

/// Logs to stderr at `SIGIL_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The client the agent acts through. The server is found as the CLI finds it (the
/// environment wins over `[server]`, as `VAULT_ADDR` over Vault Agent's `vault` block); the
/// key is `[auto_auth] key_file`, or `SIGIL_KEY` when the file names none — never an operator's
/// `SIGIL_KEY` over the file's, so that an agent does not run as whoever started it.
fn agent_client(file: &AgentFile) -> anyhow::Result<Arc<sigil_client::Client>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let args = ClientArgs {
        addr: env("SIGIL_ADDR")
            .or_else(|| file.server.address.clone())
            .unwrap_or_else(|| "https://127.0.0.1:8200".into()),
        key: file
            .auto_auth
            .key_file
            .clone()
            .or_else(|| env("SIGIL_KEY").map(PathBuf::from)),
        ca_cert: env("SIGIL_CACERT")
            .map(PathBuf::from)
            .or_else(|| file.server.ca_cert.clone()),
        server_key: env("SIGIL_SERVER_KEY").or_else(|| file.server.server_key.clone()),
        output_policy: false,
    };
    if args.key.is_none() {
        bail!("the agent has no key: set [auto_auth] key_file (or SIGIL_KEY)");
    }
    Ok(Arc::new(config::client(&args)?))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Waits until the server answers, as Vault Agent waits for Vault: a server that cannot be
/// reached or is sealed (a pod's agent often starts first) is asked again after 1 s, 2 s,
/// 4 s … then every 30 s, each time logged; a wrong server key or configuration fails at once.
async fn wait_for_server(client: &sigil_client::Client) -> anyhow::Result<()> {
    use sigil_client::ClientError;
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match client.server_key().await {
            Ok(_) => return Ok(()),
            Err(
                e @ (ClientError::Transport(_)
                | ClientError::Api {
                    status: 429 | 502 | 503 | 504,
                    ..
                }),
            ) => {
                tracing::warn!(error = %e, retry_in = ?wait, "the server cannot be reached yet");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown_signal() => bail!("stopped before the server answered"),
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot reach the server")),
        }
    }
}

pub(super) async fn agent(path: &Path) -> anyhow::Result<ExitCode> {
    init_logging();
    let file = AgentFile::load(path).map_err(|e| anyhow!(e))?;
    let client = agent_client(&file)?;
    wait_for_server(&client).await?;
    if let Some(listen) = file.listen().map_err(|e| anyhow!(e))? {
        match &listen {
            sigil_agent::config::Listen::Tcp(a) => println!("sigil agent: local API on http://{a}"),
            sigil_agent::config::Listen::Unix(p) => {
                println!("sigil agent: local API on unix:{}", p.display())
            }
        }
    }
    sigil_agent::run(&file, client, shutdown_signal())
        .await
        .map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn csi_provider(socket: &Path, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let client = Arc::new(config::client(client)?);
    wait_for_server(&client).await?;
    println!("sigil csi-provider: listening on unix:{}", socket.display());
    sigil_agent::csi::serve(client, socket, shutdown_signal())
        .await
        .map_err(|e| anyhow!(e))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut refs = Vec::new();
    for e in &args.env {
        let (name, reference) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {e:?}: write NAME=PATH#FIELD"))?;
        check_name(name).map_err(|err| anyhow!("--env {e:?}: {err}"))?;
        refs.push((
            name.to_owned(),
            Reference::parse(reference).map_err(|err| anyhow!("--env: {err}"))?,
        ));
    }
    let mut files = Vec::new();
    for p in &args.env_file {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        files.push((p.display().to_string(), text));
    }
    let watch = match args.watch {
        true => Some(duration(&args.interval, "--interval").map_err(|e| anyhow!(e))?),
        false => None,
    };
    let client = Arc::new(config::client(&args.client)?);
    let env = sigil_agent::exec::resolve_env(&client, &refs, &files)
        .await
        .map_err(|e| anyhow!(e))?;
    let code = sigil_agent::exec::run(&args.command, env, watch, || {
        let (client, refs, files) = (Arc::clone(&client), refs.clone(), files.clone());
        async move { sigil_agent::exec::resolve_env(&client, &refs, &files).await }
    })
    .await
    .map_err(|e| anyhow!(e))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub(super) async fn inject(
    input: Option<&Path>,
    output: Option<&Path>,
    perms: &str,
    client: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let mode = sigil_agent::config::parse_mode(perms).map_err(|e| anyhow!("--{e}"))?;
    let (name, text) = match input {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        ),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            ("stdin".to_owned(), text)
        }
    };
    let client = Arc::new(config::client(client)?);
    let rendered = sigil_agent::exec::render_once(&client, &name, &text)
        .await
        .map_err(|e| anyhow!(e))?;
    match output {
        Some(p) => {
            sigil_agent::template::write_atomic(p, rendered.as_bytes(), mode)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(rendered.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
