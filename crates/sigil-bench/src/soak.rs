//! `sigil-bench soak`: a three-node cluster written to for a long time while its members are
//! disrupted in turn — a follower paused (SIGSTOP) for a while, then the leader killed with
//! `kill -9`, restarted and unsealed — and afterwards checked: every acknowledged write is on
//! every node, and the nodes hold the same keys. It prints how long writes were unavailable at
//! most, and fails when a write was lost or the nodes diverged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::clusters::{SigilNodes, sigil_nodes};
use crate::servers::sigil_client;

#[derive(clap::Args)]
pub(crate) struct SoakArgs {
    /// How long to write, in seconds
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Concurrent writers, spread over the three nodes
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds between disruptions (a follower paused for half of it, then the leader killed
    /// and restarted, in turn)
    #[arg(long, default_value_t = 30)]
    every: u64,
    /// 45 s, a disruption every 15 s: shows it runs (scripts/test)
    #[arg(long)]
    smoke: bool,
    /// Also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the nodes' data and logs in this directory (a temporary one otherwise)
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    failed: AtomicU64,
    /// Milliseconds since the start of the last acknowledged write.
    last_ack_ms: AtomicU64,
}

pub(crate) async fn soak(args: SoakArgs) -> anyhow::Result<bool> {
    let (seconds, every) = match args.smoke {
        true => (45, 15),
        false => (args.seconds, args.every.max(4)),
    };
    let bin = std::env::current_exe()?.with_file_name("sigil");
    let tmp = tempfile::tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.as_path()
        }
        None => tmp.path(),
    };
    let mut nodes = sigil_nodes(&bin, dir).await?;
    eprintln!("soak: three nodes up; writing for {seconds} s, a disruption every {every} s");
    let a = &nodes.access;
    let writers: Vec<sigil_client::Client> = (0..args.clients.max(1))
        .map(|w| sigil_client(&a.key, &nodes.addr(w % 3), &a.ca, &a.keyid))
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for (w, client) in writers.into_iter().enumerate() {
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({ "data": { "n": n } });
                let path = format!("secret/data/soak/{w}/{n}");
                let sent = client.request("POST", &path, Some(&body));
                match tokio::time::timeout(Duration::from_secs(15), sent).await {
                    Ok(Ok(_)) => {
                        acked.push(n);
                        tally.acked.fetch_add(1, Ordering::Relaxed);
                        let ms = start.elapsed().as_millis() as u64;
                        tally.last_ack_ms.fetch_max(ms, Ordering::Relaxed);
                    }
                    _ => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            acked
        }));
    }
    let watch = {
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            // (longest gap, when it began), in milliseconds since the start.
            let mut longest = (0u64, 0u64);
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = start.elapsed().as_millis() as u64;
                let last = tally.last_ack_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) > longest.0 {
                    longest = (now - last, last);
                }
            }
            longest
        })
    };
    let mut events = Vec::new();
    let mut round = 0;
    while Instant::now() + Duration::from_secs(every) < deadline {
        tokio::time::sleep(Duration::from_secs(every / 2)).await;
        round += 1;
        let leader = leader(&bin, &nodes).await?;
        let t = start.elapsed().as_secs_f64();
        if round % 2 == 1 {
            let follower = (leader + 1) % 3;
            signal(&nodes, follower, "STOP")?;
            events.push(json!({ "at_s": t, "event": format!("paused sigil-{}", follower + 1) }));
            tokio::time::sleep(Duration::from_secs(every / 2)).await;
            signal(&nodes, follower, "CONT")?;
        } else {
            nodes.children[leader].kill()?;
            nodes.children[leader].wait()?;
            events.push(
                json!({ "at_s": t, "event": format!("kill -9 sigil-{} (leader)", leader + 1) }),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            nodes.restart(&bin, dir, leader)?;
            unseal(&bin, &nodes, leader).await?;
            let t = start.elapsed().as_secs_f64();
            events.push(json!({ "at_s": t, "event": format!("sigil-{} restarted and unsealed", leader + 1) }));
            tokio::time::sleep(
                Duration::from_secs(every / 2).saturating_sub(Duration::from_secs(2)),
            )
            .await;
        }
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await?);
    }
    let (longest_gap_ms, longest_gap_from_ms) = watch.await?;
    let written: usize = acked.iter().map(Vec::len).sum();
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!("soak: {written} writes acknowledged, {failed} failed; checking every node");
    let (missing, diverged) = check(&bin, &nodes, &acked).await?;
    let summary = json!({
        "seconds": seconds,
        "clients": args.clients,
        "acknowledged": written,
        "failed": failed,
        "longest_without_a_write_ms": longest_gap_ms,
        "longest_without_a_write_from_s": longest_gap_from_ms as f64 / 1000.0,
        "disruptions": events,
        "acknowledged_missing_on_some_node": missing,
        "folders_that_differ_between_nodes": diverged,
    });
    println!(
        "soak: {seconds} s, {} clients: {written} writes acknowledged ({:.0}/s), {failed} failed; \
         {round} disruptions; longest time without an acknowledged write {:.2} s (from {:.1} s); \
         acknowledged writes missing on a node: {missing}; folders that differ between nodes: {diverged}",
        args.clients,
        written as f64 / seconds as f64,
        longest_gap_ms as f64 / 1000.0,
        longest_gap_from_ms as f64 / 1000.0,
    );
    for e in &events {
        println!(
            "  {:>7.1} s  {}",
            e["at_s"].as_f64().unwrap_or(0.0),
            e["event"].as_str().unwrap_or("")
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(missing == 0 && diverged == 0 && written > 0 && round > 0)
}

/// The index of the node that leads, as any node answering says.
async fn leader(bin: &Path, nodes: &SigilNodes) -> anyhow::Result<usize> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        for i in 0..3 {
            let Ok(out) = nodes.cli(
                bin,
                i,
                &["operator", "raft", "list-peers", "--format", "json"],
            ) else {
                continue;
            };
            let peers: Value = serde_json::from_str(&out)?;
            let leader = peers["config"]["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["leader"] == true)
                .and_then(|p| {
                    p["node_id"]
                        .as_str()?
                        .strip_prefix("sigil-")?
                        .parse::<usize>()
                        .ok()
                });
            if let Some(n) = leader {
                return Ok(n - 1);
            }
        }
        anyhow::ensure!(Instant::now() < until, "no node named a leader for 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn signal(nodes: &SigilNodes, i: usize, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), nodes.children[i].id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} failed");
    Ok(())
}

/// `sigil operator unseal` of node `i` until it is unsealed.
async fn unseal(bin: &Path, nodes: &SigilNodes, i: usize) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = nodes.cli(bin, i, &["operator", "unseal"]);
        if nodes.unsealed(bin, i) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "sigil-{} was not unsealed in 60 s",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once every node has applied the same entries: how many acknowledged writes some node
/// lacks (or holds with another value), and how many writers' folders differ between nodes.
/// Each node answers from its own storage (`stale=true`).
async fn check(
    bin: &Path,
    nodes: &SigilNodes,
    acked: &[Vec<u64>],
) -> anyhow::Result<(usize, usize)> {
    settle(bin, nodes).await?;
    let a = &nodes.access;
    let mut missing = 0;
    let mut diverged = 0;
    let clients: Vec<sigil_client::Client> = (0..3)
        .map(|i| sigil_client(&a.key, &nodes.addr(i), &a.ca, &a.keyid))
        .collect::<anyhow::Result<_>>()?;
    for (w, acked) in acked.iter().enumerate() {
        let mut lists = Vec::new();
        for client in &clients {
            let path = format!("secret/metadata/soak/{w}/?list=true&stale=true");
            let keys: BTreeSet<u64> = match client.request("GET", &path, None).await {
                Ok(r) => r.data()["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str()?.parse().ok())
                    .collect(),
                Err(e) if e.status() == Some(404) => BTreeSet::new(),
                Err(e) => return Err(e).context("listing a writer's folder"),
            };
            missing += acked.iter().filter(|n| !keys.contains(n)).count();
            lists.push(keys);
        }
        if lists.windows(2).any(|p| p[0] != p[1]) {
            diverged += 1;
        }
        // The values, for a sample of each writer's keys on every node.
        let step = (acked.len() / 20).max(1);
        for &n in acked.iter().step_by(step) {
            for client in &clients {
                let path = format!("secret/data/soak/{w}/{n}?stale=true");
                let holds = client
                    .request("GET", &path, None)
                    .await
                    .is_ok_and(|r| r.data()["data"]["n"] == json!(n));
                missing += usize::from(!holds);
            }
        }
    }
    Ok((missing, diverged))
}

/// Waits until every node is unsealed and holds the leader's log (`matched_index`).
async fn settle(bin: &Path, nodes: &SigilNodes) -> anyhow::Result<()> {
    for i in 0..3 {
        unseal(bin, nodes, i).await?;
    }
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let leader = leader(bin, nodes).await?;
        let out = nodes.cli(
            bin,
            leader,
            &["operator", "raft", "list-peers", "--format", "json"],
        )?;
        let peers: Value = serde_json::from_str(&out)?;
        let applied: Vec<u64> = peers["config"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["matched_index"].as_u64())
            .collect();
        if applied.len() == 3 && applied.windows(2).all(|p| p[0] == p[1]) {
            // Every node holds the same log; give the followers a moment to apply its end.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the nodes did not reach the same applied index in 120 s: {applied:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
