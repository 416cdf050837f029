//! `sigil-bench`: a load generator. It drives Sigil through the SDK (every request signed and
//! sealed, every answer opened, as real clients do) and OpenBao or Vault through its token
//! API, and prints throughput and latency.
//!
//! ```sh
//! sigil-bench compare                       # starts Sigil and OpenBao itself; see docs/performance.md
//! sigil-bench compare --smoke               # seconds; checks everything runs without errors
//! sigil-bench scale --secrets 1000000        # one node with a million secrets; docs/performance.md
//! sigil-bench soak --seconds 600            # a cluster disrupted under writes; docs/performance.md
//! sigil-bench run kv-read --clients 32      # against the server in SIGIL_ADDR/SIGIL_KEY/…
//! sigil-bench run transit-encrypt --bao-addr http://127.0.0.1:8201 --bao-token root
//! ```

mod clusters;
mod compare;
mod load;
mod scale;
mod servers;
mod soak;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sigil_client::{Client, ClientConfig};
use sigil_crypto::SecretIdentity;

use load::{Target, Workload};

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request path
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sigil-bench", about = "Load generator for Sigil and OpenBao")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Sigil and OpenBao on loopback, run every workload against each, print a table
    /// with the ratios.
    Compare(compare::CompareArgs),
    /// Run one workload against a server that is already running.
    Run(RunArgs),
    /// One node with many secrets against one with few (file and raft storage): memory,
    /// unseal time, random kv-read latency, LIST of a large folder.
    Scale(scale::ScaleArgs),
    /// Write to a three-node cluster for a long time while its members are paused and killed in
    /// turn; then check that every acknowledged write is on every node
    Soak(soak::SoakArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The workload.
    #[arg(value_enum)]
    workload: Workload,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes in each secret value.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Server address.
    #[arg(long, env = "SIGIL_ADDR", default_value = "https://127.0.0.1:8200")]
    addr: String,
    /// Key file.
    #[arg(long, env = "SIGIL_KEY")]
    key: Option<std::path::PathBuf>,
    /// CA certificate.
    #[arg(long, env = "SIGIL_CACERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Server keyid.
    #[arg(long, env = "SIGIL_SERVER_KEY")]
    server_key: Option<String>,
    /// Run against OpenBao/Vault at this address instead (token API, plain HTTP or HTTPS).
    #[arg(long)]
    bao_addr: Option<String>,
    /// The OpenBao/Vault token.
    #[arg(long, default_value = "root")]
    bao_token: String,
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let target = match &args.bao_addr {
        Some(addr) => Target::Bao {
            http: reqwest::Client::builder().build()?,
            addr: addr.trim_end_matches('/').to_owned(),
            token: args.bao_token.clone(),
        },
        None => {
            let key_path = args.key.context("set SIGIL_KEY")?;
            let key_file = std::fs::read_to_string(&key_path)?;
            let ca_pem = args.ca_cert.map(std::fs::read).transpose()?;
            // One SDK client, so one connection, per load client.
            let mut clients = Vec::new();
            for _ in 0..args.clients.max(1) {
                let key =
                    SecretIdentity::from_key_file(&key_file).context("not a Sigil key file")?;
                clients.push(Client::new(ClientConfig {
                    addr: args.addr.clone(),
                    key: Some(key),
                    ca_pem: ca_pem.clone(),
                    server_keyid: args.server_key.clone(),
                })?);
            }
            Target::Sigil(clients)
        }
    };
    let name = target.name();
    let value = load::value(args.value_bytes);
    load::prepare(&target, args.workload, &value).await?;
    let sample = load::run(
        Arc::new(target),
        args.workload,
        args.clients,
        Duration::from_secs(args.seconds),
        &value,
    )
    .await?;
    let stats = load::Stats::of(args.clients, vec![sample]);
    println!("{name} {}: {}", args.workload.name(), stats.line());
    if let Some(e) = &stats.first_error {
        eprintln!("first error: {e}");
    }
    Ok(stats.errors == 0)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let ok = match Cli::parse().command {
        Command::Compare(args) => compare::compare(args).await?,
        Command::Run(args) => run(args).await?,
        Command::Scale(args) => scale::scale(args).await?,
        Command::Soak(args) => soak::soak(args).await?,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
