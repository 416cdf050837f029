//! Workloads and the load loop: N concurrent clients for a fixed time, each timing its own
//! requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sigil_client::Client;

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// KV v2 writes to distinct keys (durable on a persistent server).
    KvWrite,
    /// KV v2 reads of one secret.
    KvRead,
    /// 1000 KV v2 reads for every write.
    KvMix,
    /// Transit encryption (aes256-gcm96) of a small plaintext.
    TransitEncrypt,
    /// Transit signing (ed25519) of a small input.
    TransitSign,
}

impl Workload {
    pub(crate) const ALL: [Workload; 5] = [
        Workload::KvRead,
        Workload::KvWrite,
        Workload::KvMix,
        Workload::TransitEncrypt,
        Workload::TransitSign,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::KvWrite => "kv-write",
            Workload::KvRead => "kv-read",
            Workload::KvMix => "kv-mix-1000:1",
            Workload::TransitEncrypt => "transit-encrypt",
            Workload::TransitSign => "transit-sign",
        }
    }
}

/// The server under load: Sigil through the SDK (signing, sealing and opening every request,
/// as real clients do; one SDK client, so one connection, per load client), or OpenBao/Vault
/// through its token API (a pool with a connection per concurrent request).
pub(crate) enum Target {
    Sigil(Vec<Client>),
    Bao {
        http: reqwest::Client,
        addr: String,
        token: String,
    },
}

impl Target {
    /// One request from load client `client`.
    pub(crate) async fn call(
        &self,
        client: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sigil(clients) => {
                anyhow::ensure!(!clients.is_empty(), "no Sigil client");
                clients[client % clients.len()]
                    .request(method, path, body)
                    .await?;
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
                let text = resp.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "{path}: {status} {}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        Ok(())
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Sigil(_) => "sigil",
            Target::Bao { .. } => "openbao",
        }
    }
}

/// Throughput and latency of one run.
#[derive(Clone, Debug)]
pub(crate) struct Stats {
    pub(crate) clients: usize,
    pub(crate) ops: usize,
    pub(crate) errors: u64,
    pub(crate) ops_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    /// The first error seen, to say what went wrong.
    pub(crate) first_error: Option<String>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// What one stretch of load gave: every completed request's latency, and the failures.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: u64,
    first_error: Option<String>,
}

impl Stats {
    /// The statistics of one or more stretches of the same load, taken together: throughput
    /// over their summed duration, percentiles over all their requests.
    pub(crate) fn of(clients: usize, samples: Vec<Sample>) -> Stats {
        let mut all = Vec::new();
        let (mut elapsed, mut errors, mut first_error) = (Duration::ZERO, 0, None);
        for s in samples {
            all.extend(s.latencies);
            elapsed += s.elapsed;
            errors += s.errors;
            first_error = first_error.or(s.first_error);
        }
        all.sort_unstable();
        Stats {
            clients,
            ops: all.len(),
            errors,
            ops_per_sec: all.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: percentile(&all, 0.50),
            p90: percentile(&all, 0.90),
            p99: percentile(&all, 0.99),
            max: all.last().copied().unwrap_or_default(),
            first_error,
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "clients={} ops={} errors={} ops/s={:.0} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            self.clients,
            self.ops,
            self.errors,
            self.ops_per_sec,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
        )
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "clients": self.clients,
            "ops": self.ops,
            "errors": self.errors,
            "ops_per_sec": self.ops_per_sec.round(),
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
            "first_error": self.first_error,
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

const READ_PATH: &str = "secret/data/bench/read";

/// Creates what `workload` reads or uses (a secret, a transit key).
pub(crate) async fn prepare(
    target: &Target,
    workload: Workload,
    value: &str,
) -> anyhow::Result<()> {
    match workload {
        Workload::KvRead | Workload::KvMix => {
            target
                .call(
                    0,
                    "POST",
                    READ_PATH,
                    Some(&json!({ "data": { "v": value } })),
                )
                .await
        }
        Workload::TransitEncrypt => {
            let body = json!({ "type": "aes256-gcm96" });
            target
                .call(0, "POST", "transit/keys/bench-enc", Some(&body))
                .await
        }
        Workload::TransitSign => {
            let body = json!({ "type": "ed25519" });
            target
                .call(0, "POST", "transit/keys/bench-sign", Some(&body))
                .await
        }
        Workload::KvWrite => Ok(()),
    }
}

/// The secret value the workloads write and read.
pub(crate) fn value(value_bytes: usize) -> String {
    "v".repeat(value_bytes)
}

/// Runs `workload` (already [`prepare`]d) with `clients` concurrent clients for `duration`.
pub(crate) async fn run(
    target: Arc<Target>,
    workload: Workload,
    clients: usize,
    duration: Duration,
    value: &str,
) -> anyhow::Result<Sample> {
    let value = value.to_owned();
    let input = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    let run = sigil_crypto::random::nonce()?;
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (target, value, input, run) = (
            Arc::clone(&target),
            value.clone(),
            input.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let write = |i: u64| {
                    let path = format!("secret/data/bench/{run}/{w}/{i}");
                    (path, json!({ "data": { "v": value } }))
                };
                let r = match workload {
                    Workload::KvWrite => {
                        let (path, body) = write(i);
                        target.call(w, "POST", &path, Some(&body)).await
                    }
                    // Client w writes on its own schedule, so writes spread over the run.
                    Workload::KvMix if (i + w as u64 * 37) % 1001 == 1000 => {
                        let (path, body) = write(i);
                        target.call(w, "POST", &path, Some(&body)).await
                    }
                    Workload::KvRead | Workload::KvMix => {
                        target.call(w, "GET", READ_PATH, None).await
                    }
                    Workload::TransitEncrypt => {
                        let body = json!({ "plaintext": input });
                        target
                            .call(w, "POST", "transit/encrypt/bench-enc", Some(&body))
                            .await
                    }
                    Workload::TransitSign => {
                        let body = json!({ "input": input });
                        target
                            .call(w, "POST", "transit/sign/bench-sign", Some(&body))
                            .await
                    }
                };
                match r {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                i += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut sample = Sample::default();
    for t in tasks {
        let (l, e, f) = t.await?;
        sample.latencies.extend(l);
        sample.errors += e;
        sample.first_error = sample.first_error.or(f);
    }
    sample.elapsed = start.elapsed();
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: &[u64], elapsed_s: u64, errors: u64, first: Option<&str>) -> Sample {
        Sample {
            latencies: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            elapsed: Duration::from_secs(elapsed_s),
            errors,
            first_error: first.map(str::to_owned),
        }
    }

    /// Slices taken in turns add up: throughput over their summed time, percentiles over all
    /// their requests, errors summed, the first error kept.
    #[test]
    fn slices_merge_into_one_run() {
        let fast = sample(&(1..=100).collect::<Vec<_>>(), 1, 0, None);
        let slow = sample(&[1000; 100], 3, 2, Some("first"));
        let later = sample(&[], 0, 1, Some("second"));
        let stats = Stats::of(8, vec![fast, slow, later]);
        assert_eq!(stats.clients, 8);
        assert_eq!(stats.ops, 200);
        assert_eq!(stats.ops_per_sec, 50.0);
        assert_eq!(stats.errors, 3);
        assert_eq!(stats.first_error.as_deref(), Some("first"));
        assert_eq!(stats.p50, Duration::from_millis(1000));
        assert_eq!(stats.p90, Duration::from_millis(1000));
        assert_eq!(stats.max, Duration::from_millis(1000));
        let fast_only = Stats::of(8, vec![sample(&(1..=100).collect::<Vec<_>>(), 1, 0, None)]);
        assert_eq!(fast_only.p50, Duration::from_millis(51));
        assert_eq!(fast_only.p99, Duration::from_millis(99));
        assert_eq!(fast_only.ops_per_sec, 100.0);
    }
}
