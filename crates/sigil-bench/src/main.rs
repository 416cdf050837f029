//! `sigil-bench`: a load generator. It drives a running Sigil server through the SDK (every
//! request signed and sealed, as real clients do) and prints throughput and latency.
//!
//! ```sh
//! eval "$(sigil server --data-dir /tmp/d …)"; export SIGIL_KEY=admin.key …
//! sigil-bench kv-write --writers 16 --seconds 10
//! sigil-bench transit-encrypt --writers 32            # needs `sigil secrets enable transit`
//! sigil-bench transit-sign --bao-addr http://127.0.0.1:8201 --bao-token root   # OpenBao
//! ```
//!
//! With `--bao-addr`, the same workload goes to OpenBao (or Vault) through its token API
//! instead, for a side-by-side number.

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
    /// Run against OpenBao/Vault at this address instead (token API, plain HTTP or HTTPS).
    #[arg(long, global = true)]
    bao_addr: Option<String>,
    /// The OpenBao/Vault token.
    #[arg(long, global = true, default_value = "root")]
    bao_token: String,
}

#[derive(Subcommand)]
enum Workload {
    /// KV v2 writes to distinct keys (durable on a persistent server).
    KvWrite(Load),
    /// KV v2 reads of one secret.
    KvRead(Load),
    /// Transit encryption (aes256-gcm96) of a small plaintext.
    TransitEncrypt(Load),
    /// Transit signing (ed25519) of a small input.
    TransitSign(Load),
}

/// The server under load: Sigil through the SDK, or OpenBao/Vault through its token API.
enum Target {
    Sigil(Box<Client>),
    Bao {
        http: reqwest::Client,
        addr: String,
        token: String,
    },
}

impl Target {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sigil(c) => {
                c.request(method, path, body).await?;
            }
            Target::Bao { http, addr, token } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())?;
                let mut req = http
                    .request(method, format!("{addr}/v1/{path}"))
                    .header("X-Vault-Token", token);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req.send().await?;
                let status = resp.status();
                resp.bytes().await?;
                anyhow::ensure!(status.is_success(), "{path}: {status}");
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Sigil(_) => "sigil",
            Target::Bao { .. } => "openbao",
        }
    }
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
    use base64::Engine as _;
    let cli = Cli::parse();
    let target = match &cli.bao_addr {
        Some(addr) => Target::Bao {
            http: reqwest::Client::builder().build()?,
            addr: addr.trim_end_matches('/').to_owned(),
            token: cli.bao_token.clone(),
        },
        None => {
            let key_path = cli.key.context("set SIGIL_KEY")?;
            let key = SecretIdentity::from_key_file(&std::fs::read_to_string(&key_path)?)
                .context("not a Sigil key file")?;
            let ca_pem = cli.ca_cert.map(std::fs::read).transpose()?;
            Target::Sigil(Box::new(Client::new(ClientConfig {
                addr: cli.addr,
                key: Some(key),
                ca_pem,
                server_keyid: cli.server_key,
            })?))
        }
    };
    let target = Arc::new(target);
    let (name, load) = match cli.workload {
        Workload::KvWrite(l) => ("kv-write", l),
        Workload::KvRead(l) => ("kv-read", l),
        Workload::TransitEncrypt(l) => ("transit-encrypt", l),
        Workload::TransitSign(l) => ("transit-sign", l),
    };
    let value = "v".repeat(load.value_bytes);
    let input = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    match name {
        "kv-read" => {
            let body = json!({ "data": { "v": value } });
            target
                .call("POST", "secret/data/bench/read", Some(&body))
                .await?;
        }
        "transit-encrypt" => {
            let body = json!({ "type": "aes256-gcm96" });
            target
                .call("POST", "transit/keys/bench-enc", Some(&body))
                .await?;
        }
        "transit-sign" => {
            let body = json!({ "type": "ed25519" });
            target
                .call("POST", "transit/keys/bench-sign", Some(&body))
                .await?;
        }
        _ => {}
    }
    let run = sigil_crypto::random::nonce()?;
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..load.writers {
        let (target, value, input, run) = (
            Arc::clone(&target),
            value.clone(),
            input.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = match name {
                    "kv-write" => {
                        let path = format!("secret/data/bench/{run}/{w}/{i}");
                        let body = json!({ "data": { "v": value } });
                        target.call("POST", &path, Some(&body)).await
                    }
                    "kv-read" => target.call("GET", "secret/data/bench/read", None).await,
                    "transit-encrypt" => {
                        let body = json!({ "plaintext": input });
                        target
                            .call("POST", "transit/encrypt/bench-enc", Some(&body))
                            .await
                    }
                    _ => {
                        let body = json!({ "input": input });
                        target
                            .call("POST", "transit/sign/bench-sign", Some(&body))
                            .await
                    }
                };
                match r {
                    Ok(()) => latencies.push(t.elapsed()),
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
        "{} {name}: clients={} ops={} errors={} ops/s={:.0} p50={:.2}ms p99={:.2}ms",
        target.name(),
        load.writers,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
    );
    Ok(())
}
