//! `sigil-bench scale`: one node holding many KV secrets, compared with the same node holding
//! few. For each storage (file, raft) and each size it writes the secrets through the API,
//! restarts the server, unseals it, and measures what an operator cares about at scale:
//! memory, unseal time, random kv-read latency over the whole set, and LIST of a large folder
//! and of folders above everything (which must cost in proportion to their children).
//!
//! Layout of the secrets (KV v2 at `secret/`): `scale/folder/NNNNNN` — the listed folder —
//! and the rest in folders of 1000 under `scale/bulk/BBBBB/`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use sigil_client::Client;

use crate::servers::{self, free_port, memory_kib, sigil_cli, spawn_sigil};

#[derive(clap::Args)]
pub(crate) struct ScaleArgs {
    /// Secrets in the large store.
    #[arg(long, default_value_t = 1_000_000)]
    secrets: usize,
    /// Secrets in the small store it is compared with.
    #[arg(long, default_value_t = 10_000)]
    base: usize,
    /// Secrets in the folder that is listed (part of either count).
    #[arg(long, default_value_t = 10_000)]
    folder: usize,
    /// Storage backends to measure (default: file and raft).
    #[arg(long = "storage", value_enum)]
    storages: Vec<Storage>,
    /// Concurrent clients writing and reading.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of random reads.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A short run (2 000 and 500 secrets, 1 s of reads) that checks everything completes;
    /// its numbers mean nothing.
    #[arg(long)]
    smoke: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    File,
    Raft,
}

impl Storage {
    fn name(self) -> &'static str {
        match self {
            Storage::File => "file",
            Storage::Raft => "raft",
        }
    }
}

/// What one store of one size measured.
struct Measured {
    storage: Storage,
    secrets: usize,
    write_per_sec: f64,
    rss_after_writes_mib: f64,
    disk_mib: f64,
    rss_after_restart_mib: f64,
    unseal: Duration,
    reads_per_sec: f64,
    read_p50: Duration,
    read_p99: Duration,
    /// LIST of the large folder, of `scale/bulk/` (one child per 1000 secrets) and of `scale/`
    /// (two children above everything): the median of five.
    list_folder: Duration,
    /// `None` when every secret is in the listed folder.
    list_bulk: Option<Duration>,
    list_top: Duration,
    rss_after_reads_mib: f64,
    peak_rss_mib: f64,
}

pub(crate) async fn scale(mut args: ScaleArgs) -> anyhow::Result<bool> {
    if args.smoke {
        (args.secrets, args.base, args.folder, args.seconds) = (2_000, 500, 300, 1);
        args.clients = args.clients.min(8);
    }
    anyhow::ensure!(
        args.folder <= args.base && args.base <= args.secrets,
        "--folder ≤ --base ≤ --secrets"
    );
    if args.storages.is_empty() {
        args.storages = vec![Storage::File, Storage::Raft];
    }
    let bin = std::env::current_exe()?.with_file_name("sigil");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build sigil-cli",
        bin.display()
    );
    let mut results = Vec::new();
    for &storage in &args.storages {
        for secrets in [args.base, args.secrets] {
            let dir = tempfile::Builder::new().prefix("sigil-scale").tempdir()?;
            let m = measure(&bin, dir.path(), storage, secrets, &args).await;
            if std::env::var_os("SIGIL_BENCH_KEEP").is_some() {
                eprintln!("kept {}", dir.keep().display());
            }
            let m = m?;
            println!("{}", line(&m));
            results.push(m);
        }
    }
    println!();
    print_table(&results);
    if let Some(path) = &args.json {
        let rows: Vec<Value> = results.iter().map(json_of).collect();
        std::fs::write(path, serde_json::to_vec_pretty(&json!({ "scale": rows }))?)?;
    }
    Ok(true)
}

/// The storage key of secret `i`.
fn path_of(i: usize, folder: usize) -> String {
    if i < folder {
        format!("scale/folder/{i:06}")
    } else {
        format!("scale/bulk/{:05}/{i:07}", i / 1000)
    }
}

/// A running server and how to reach it.
struct Server {
    child: Child,
    bin: PathBuf,
    mode: Vec<std::ffi::OsString>,
    port: u16,
    key: PathBuf,
    addr: String,
    ca: String,
    keyid: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn env(&self) -> [(&str, &str); 4] {
        [
            ("SIGIL_ADDR", &self.addr),
            ("SIGIL_CACERT", &self.ca),
            ("SIGIL_SERVER_KEY", &self.keyid),
            ("SIGIL_KEY", self.key.to_str().unwrap_or_default()),
        ]
    }

    fn clients(&self, n: usize) -> anyhow::Result<Vec<Arc<Client>>> {
        (0..n)
            .map(|_| {
                servers::sigil_client(&self.key, &self.addr, &self.ca, &self.keyid).map(Arc::new)
            })
            .collect()
    }

    fn rss_mib(&self) -> (f64, f64) {
        let (rss, peak) = memory_kib(self.child.id());
        (rss as f64 / 1024.0, peak as f64 / 1024.0)
    }

    /// Stops the server cleanly (SIGTERM), starts it again on the same data, unseals it and
    /// waits until it answers a read: how long the unseal took to a served read.
    async fn restart(&mut self, dir: &Path, probe: &str) -> anyhow::Result<Duration> {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).context("a pid")?,
            rustix::process::Signal::TERM,
        )?;
        self.child.wait()?;
        let mode: Vec<&std::ffi::OsStr> = self.mode.iter().map(|s| s.as_os_str()).collect();
        self.child = spawn_sigil(&self.bin, (dir, None), &mode, self.port, "sigil-scale")?;
        servers::exports(&mut self.child, 2)?;
        let started = Instant::now();
        sigil_cli(&self.bin, &["operator", "unseal"], &self.env())?;
        let client = self.clients(1)?.remove(0);
        let until = Instant::now() + Duration::from_secs(120);
        while client.request("GET", probe, None).await.is_err() {
            anyhow::ensure!(
                Instant::now() < until,
                "the server did not serve after unseal"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(started.elapsed())
    }
}

async fn start(bin: &Path, dir: &Path, storage: Storage) -> anyhow::Result<Server> {
    let key = servers::admin_key(bin, dir)?;
    let port = free_port()?;
    let data = dir.join("data");
    let mut mode: Vec<std::ffi::OsString> = vec!["--data-dir".into(), data.into()];
    if storage == Storage::Raft {
        mode.extend([
            "--node-id".into(),
            "scale-1".into(),
            "--cluster-listen".into(),
            format!("127.0.0.1:{}", free_port()?).into(),
        ]);
    }
    let args: Vec<&std::ffi::OsStr> = mode.iter().map(|s| s.as_os_str()).collect();
    let mut child = spawn_sigil(bin, (dir, None), &args, port, "sigil-scale")?;
    let env = servers::exports(&mut child, 2)?;
    let (addr, ca) = (
        servers::var(&env, "SIGIL_ADDR")?.to_owned(),
        servers::var(&env, "SIGIL_CACERT")?.to_owned(),
    );
    let keyid = servers::init_and_unseal(bin, &key, &addr, &ca)?;
    Ok(Server {
        child,
        bin: bin.to_owned(),
        mode,
        port,
        key,
        addr,
        ca,
        keyid,
    })
}

async fn measure(
    bin: &Path,
    dir: &Path,
    storage: Storage,
    secrets: usize,
    args: &ScaleArgs,
) -> anyhow::Result<Measured> {
    eprintln!("{}: writing {secrets} secrets…", storage.name());
    let mut server = start(bin, dir, storage).await?;
    let clients = server.clients(args.clients)?;
    let began = Instant::now();
    write_all(&clients, secrets, args.folder).await?;
    let write_per_sec = secrets as f64 / began.elapsed().as_secs_f64();
    let (rss_after_writes_mib, _) = server.rss_mib();
    drop(clients);

    let probe = format!("secret/data/{}", path_of(0, args.folder));
    let unseal = server.restart(dir, &probe).await?;
    let disk_mib = dir_bytes(&dir.join("data")) as f64 / (1 << 20) as f64;
    servers::reset_peak(server.child.id());
    let (rss_after_restart_mib, _) = server.rss_mib();

    let clients = server.clients(args.clients)?;
    let (reads, latencies) = read_random(&clients, secrets, args.folder, args.seconds).await?;
    let time = |path: &'static str| {
        let client = Arc::clone(&clients[0]);
        async move { list_median(&client, path).await }
    };
    let list_folder = time("secret/metadata/scale/folder/").await?;
    let list_bulk = match secrets > args.folder {
        true => Some(time("secret/metadata/scale/bulk/").await?),
        false => None,
    };
    let list_top = time("secret/metadata/scale/").await?;
    let (rss_after_reads_mib, peak_rss_mib) = server.rss_mib();
    Ok(Measured {
        storage,
        secrets,
        write_per_sec,
        rss_after_writes_mib,
        disk_mib,
        rss_after_restart_mib,
        unseal,
        reads_per_sec: reads as f64 / args.seconds as f64,
        read_p50: percentile(&latencies, 0.50),
        read_p99: percentile(&latencies, 0.99),
        list_folder,
        list_bulk,
        list_top,
        rss_after_reads_mib,
        peak_rss_mib,
    })
}

/// Writes secrets `0..secrets` with every client taking the next index; fails on the first
/// error.
async fn write_all(clients: &[Arc<Client>], secrets: usize, folder: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (client, next) = (Arc::clone(client), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= secrets {
                    return anyhow::Ok(());
                }
                if i > 0 && i % 100_000 == 0 {
                    eprintln!("  {i}");
                }
                let body = json!({ "data": { "value": format!("secret number {i:07}"), "n": i } });
                let path = format!("secret/data/{}", path_of(i, folder));
                client
                    .request("POST", &path, Some(&body))
                    .await
                    .with_context(|| format!("write {path}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Reads random secrets of the whole set for `seconds`, checking each answer: how many, and
/// their latencies (sorted).
async fn read_random(
    clients: &[Arc<Client>],
    secrets: usize,
    folder: usize,
    seconds: u64,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (w, client) in clients.iter().enumerate() {
        let client = Arc::clone(client);
        tasks.push(tokio::spawn(async move {
            // xorshift64: spread over the whole set, different per client.
            let mut x =
                0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % secrets as u64) as usize;
                let t = Instant::now();
                let answer = client
                    .request("GET", &format!("secret/data/{}", path_of(i, folder)), None)
                    .await?;
                latencies.push(t.elapsed());
                anyhow::ensure!(
                    answer.data()["data"]["n"] == json!(i),
                    "secret {i} read back as {}",
                    answer.data()
                );
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((all.len(), all))
}

/// The median of five LISTs of `path` (the first checked to have children).
async fn list_median(client: &Client, path: &str) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let answer = client.request("LIST", path, None).await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            answer.data()["keys"]
                .as_array()
                .is_some_and(|k| !k.is_empty()),
            "LIST {path} answered no keys"
        );
    }
    times.sort();
    Ok(times[2])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn line(m: &Measured) -> String {
    format!(
        "{} {} secrets: written {:.0}/s; RSS {:.0} MiB after writes, {:.0} MiB after restart, {:.0} MiB after reads (peak {:.0}); disk {:.0} MiB; unseal {:.2} s; kv-read {:.0}/s p50 {:.2} ms p99 {:.2} ms; LIST folder {:.1} ms, bulk {:.1} ms, top {:.1} ms",
        m.storage.name(),
        m.secrets,
        m.write_per_sec,
        m.rss_after_writes_mib,
        m.rss_after_restart_mib,
        m.rss_after_reads_mib,
        m.peak_rss_mib,
        m.disk_mib,
        m.unseal.as_secs_f64(),
        m.reads_per_sec,
        ms(m.read_p50),
        ms(m.read_p99),
        ms(m.list_folder),
        m.list_bulk.map_or(f64::NAN, ms),
        ms(m.list_top),
    )
}

fn print_table(results: &[Measured]) {
    println!(
        "{:<5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "store",
        "secrets",
        "RSS MiB",
        "peak MiB",
        "disk MiB",
        "unseal s",
        "reads/s",
        "p99 ms",
        "LIST dir",
        "LIST bulk",
        "LIST top"
    );
    for m in results {
        println!(
            "{:<5} {:>9} {:>9.0} {:>9.0} {:>9.0} {:>9.2} {:>8.0} {:>9.2} {:>9.1} {:>9.1} {:>9.1}",
            m.storage.name(),
            m.secrets,
            m.rss_after_reads_mib,
            m.peak_rss_mib,
            m.disk_mib,
            m.unseal.as_secs_f64(),
            m.reads_per_sec,
            ms(m.read_p99),
            ms(m.list_folder),
            m.list_bulk.map_or(f64::NAN, ms),
            ms(m.list_top),
        );
    }
}

fn json_of(m: &Measured) -> Value {
    json!({
        "storage": m.storage.name(),
        "secrets": m.secrets,
        "write_per_sec": m.write_per_sec,
        "rss_after_writes_mib": m.rss_after_writes_mib,
        "rss_after_restart_mib": m.rss_after_restart_mib,
        "rss_after_reads_mib": m.rss_after_reads_mib,
        "peak_rss_mib": m.peak_rss_mib,
        "disk_mib": m.disk_mib,
        "unseal_s": m.unseal.as_secs_f64(),
        "reads_per_sec": m.reads_per_sec,
        "read_p50_ms": ms(m.read_p50),
        "read_p99_ms": ms(m.read_p99),
        "list_folder_ms": ms(m.list_folder),
        "list_bulk_ms": m.list_bulk.map(ms),
        "list_top_ms": ms(m.list_top),
    })
}
