//! `sigil-bench`: a load generator. It drives a running Sigil server through the SDK (every
//! request signed and sealed, as real clients do) and prints throughput and latency.
//!
//! ```sh
//! eval "$(sigil server --data-dir /tmp/d …)"; export SIGIL_KEY=admin.key …
//! sigil-bench kv-write --writers 16 --seconds 10
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use sigil_client::{Client, ClientConfig};
use sigil_crypto::SecretIdentity;

#[derive(Parser)]
#[command(name = "sigil-bench", about = "Load generator for Sigil")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Server address.
    #[arg(
        long,
        env = "SIGIL_ADDR",
        global = true,
        default_value = "https://127.0.0.1:8200"
    )]
    addr: String,
    /// Key file.
    #[arg(long, env = "SIGIL_KEY", global = true)]
    key: Option<std::path::PathBuf>,
    /// CA certificate.
    #[arg(long, env = "SIGIL_CACERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Server keyid.
    #[arg(long, env = "SIGIL_SERVER_KEY", global = true)]
    server_key: Option<String>,
}

#[derive(Subcommand)]
enum Workload {
    /// KV v2 writes to distinct keys (durable on a persistent server).
    KvWrite(Load),
    /// KV v2 reads of one secret.
    KvRead(Load),
}

#[derive(clap::Args)]
struct Load {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes in each secret value.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let key_path = cli.key.context("set SIGIL_KEY")?;
    let key = SecretIdentity::from_key_file(&std::fs::read_to_string(&key_path)?)
        .context("not a Sigil key file")?;
    let ca_pem = cli.ca_cert.map(std::fs::read).transpose()?;
    let client = Arc::new(Client::new(ClientConfig {
        addr: cli.addr,
        key: Some(key),
        ca_pem,
        server_keyid: cli.server_key,
    })?);
    let (name, load, write) = match cli.workload {
        Workload::KvWrite(l) => ("kv-write", l, true),
        Workload::KvRead(l) => ("kv-read", l, false),
    };
    let value = "v".repeat(load.value_bytes);
    if !write {
        client
            .request(
                "POST",
                "secret/data/bench/read",
                Some(&json!({ "data": { "v": value } })),
            )
            .await?;
    }
    let run = sigil_crypto::random::nonce()?;
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..load.writers {
        let (client, value, run) = (Arc::clone(&client), value.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = if write {
                    let path = format!("secret/data/bench/{run}/{w}/{i}");
                    client
                        .request("POST", &path, Some(&json!({ "data": { "v": value } })))
                        .await
                } else {
                    client.request("GET", "secret/data/bench/read", None).await
                };
                match r {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    println!(
        "sigil {name}: clients={} ops={} errors={} ops/s={:.0} p50={:.2}ms p99={:.2}ms",
        load.writers,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
    );
    Ok(())
}
