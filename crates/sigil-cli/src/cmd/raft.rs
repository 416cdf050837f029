//! `sigil operator raft …` and `sigil operator step-down`: the cluster's members, admitting
//! and removing nodes; and unsealing every node of a cluster in one run per admin.

use std::process::ExitCode;

use serde_json::{Value, json};
use sigil_proto::raft::{Approve, Configuration, RemovePeer, RestoreStatus};
use sigil_proto::sys::RekeyApproval;

use anyhow::Context as _;

use crate::args::{AutopilotCommand, ClientArgs, Format, RaftCommand, SnapshotCommand};
use crate::config::{self, Needs};
use crate::output;

pub(crate) async fn run(cmd: RaftCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RaftCommand::ListPeers { format, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", "sys/storage/raft/configuration", None)
                .await?;
            let config: Configuration = serde_json::from_value(resp.data().clone())
                .map_err(|e| anyhow::anyhow!("sys/storage/raft/configuration: {e}"))?;
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(format, &serde_json::to_value(&config)?)
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = config
                        .config
                        .servers
                        .iter()
                        .map(|s| {
                            vec![
                                s.node_id.clone(),
                                s.address.clone(),
                                s.state.clone(),
                                s.voter.to_string(),
                                s.last_contact_ms.map_or("-".into(), |ms| format!("{ms}ms")),
                                s.matched_index.map_or("-".into(), |i| i.to_string()),
                            ]
                        })
                        .collect();
                    output::columns(
                        &["Node", "Address", "State", "Voter", "Last Contact", "Index"],
                        &rows,
                    );
                }
            }
        }
        RaftCommand::Approve {
            node_id,
            fingerprint,
            client,
        } => {
            let c = config::client(&client)?;
            let body = serde_json::to_value(Approve {
                node_id: node_id.clone(),
                cert_sha256: fingerprint,
            })?;
            let resp = c
                .request("POST", "sys/storage/raft/approve", Some(&body))
                .await?;
            let cert = resp.data()["cert_sha256"].as_str().unwrap_or("").to_owned();
            println!("Success! {node_id} joined the cluster as a voter (certificate {cert}).");
        }
        RaftCommand::RemovePeer { node_id, client } => {
            let c = config::client(&client)?;
            let body = serde_json::to_value(RemovePeer {
                server_id: node_id.clone(),
            })?;
            c.request("POST", "sys/storage/raft/remove-peer", Some(&body))
                .await?;
            println!("Peer removed successfully!");
        }
        RaftCommand::Autopilot(cmd) => autopilot(cmd).await?,
        RaftCommand::Snapshot(SnapshotCommand::Save { file, client }) => {
            save_snapshot(&client, "sys/storage/raft/snapshot", &file, "Snapshot").await?;
        }
        RaftCommand::Snapshot(SnapshotCommand::Restore { file, client }) => {
            restore(&file, &client).await?;
        }
        RaftCommand::Snapshot(SnapshotCommand::Approve { digest, client }) => {
            let c = config::client_with(&client, Needs::Key)?;
            let approval = serde_json::to_value(RekeyApproval { digest })?;
            let status: RestoreStatus = super::typed::typed(
                c.signed_plain("POST", "sys/storage/raft/snapshot/approve", &approval)
                    .await?,
                "sys/storage/raft/snapshot/approve",
            )?;
            if status.complete {
                println!(
                    "Success! Restored {} entries (taken at {}) over the running cluster; the keyring has a new term.",
                    status.entries, status.created
                );
            } else {
                println!(
                    "Approved: {} of {} approvals (digest {}).",
                    status.approvals.len(),
                    status.required,
                    status.digest
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `snapshot restore FILE`: into a new cluster (unauthenticated), or staged over a running one.
async fn restore(file: &std::path::Path, client: &ClientArgs) -> anyhow::Result<()> {
    // Checked here first, as it is read: whole, and (with SIGIL_SERVER_KEY) made by the
    // server pinned. It is sent from the file a chunk at a time, never read whole.
    let h = sigil_core::snapshot::check_file(file, client.server_key.as_deref())?;
    if client.server_key.is_none() {
        eprintln!(
            "Note: no --server-key (or SIGIL_SERVER_KEY): the snapshot's signature is checked, but not whose it is."
        );
    }
    let c = config::client_with(client, Needs::Nothing)?;
    if !super::typed::seal_status(&c).await?.initialized {
        c.plain_upload(
            "sys/storage/raft/snapshot",
            file,
            sigil_proto::headers::SNAPSHOT,
        )
        .await?;
        println!(
            "Success! Restored {} entries (keyring term {}, taken at {}). The cluster is sealed until the snapshot's admins run `sigil operator unseal`; its server key is the snapshot's: {}",
            h.entries,
            h.keyring_term,
            h.created,
            sigil_crypto::PublicIdentity::parse(&h.server_key)
                .map(|k| k.keyid().to_string())
                .unwrap_or_default()
        );
        return Ok(());
    }
    let c = config::client(client)?;
    let resp = c.upload("sys/storage/raft/snapshot", file).await?;
    let status: RestoreStatus =
        super::typed::typed(resp.data().clone(), "sys/storage/raft/snapshot")?;
    println!(
        "Staged: a restore of {} entries (taken at {}) over the running cluster. It rewrites everything, so it runs once {} seal admin(s) approve it within the hour, each with:\n\n  sigil operator raft snapshot approve {}\n\nCancel it with: sigil delete sys/storage/raft/snapshot/restore",
        status.entries, status.created, status.required, status.digest
    );
    Ok(())
}

async fn autopilot(cmd: AutopilotCommand) -> anyhow::Result<()> {
    match cmd {
        AutopilotCommand::State { format, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", "sys/storage/raft/autopilot/state", None)
                .await?;
            let state = resp.data();
            match format {
                Format::Json | Format::Yaml => output::structured(format, state),
                Format::Table => {
                    output::table(&[
                        ("Healthy".into(), output::cell(&state["healthy"])),
                        (
                            "Failure Tolerance".into(),
                            output::cell(&state["failure_tolerance"]),
                        ),
                        ("Leader".into(), output::cell(&state["leader"])),
                        ("Voters".into(), output::cell(&state["voters"])),
                    ]);
                    println!();
                    let rows: Vec<Vec<String>> = state["servers"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(name, s)| {
                            vec![
                                name.clone(),
                                output::cell(&s["address"]),
                                output::cell(&s["status"]),
                                output::cell(&s["node_status"]),
                                output::cell(&s["healthy"]),
                                output::cell(&s["last_contact"]),
                                output::cell(&s["last_index"]),
                            ]
                        })
                        .collect();
                    output::columns(
                        &[
                            "Server",
                            "Address",
                            "Status",
                            "Node Status",
                            "Healthy",
                            "Last Contact",
                            "Last Index",
                        ],
                        &rows,
                    );
                }
            }
        }
        AutopilotCommand::GetConfig { format, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", "sys/storage/raft/autopilot/configuration", None)
                .await?;
            match format {
                Format::Json | Format::Yaml => output::structured(format, resp.data()),
                Format::Table => output::table(&output::rows(Some(resp.data()))),
            }
        }
        AutopilotCommand::SetConfig {
            cleanup_dead_servers,
            dead_server_last_contact_threshold,
            min_quorum,
            last_contact_threshold,
            client,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(v) = cleanup_dead_servers {
                body.insert("cleanup_dead_servers".into(), json!(v));
            }
            if let Some(v) = dead_server_last_contact_threshold {
                body.insert("dead_server_last_contact_threshold".into(), json!(v));
            }
            if let Some(v) = min_quorum {
                body.insert("min_quorum".into(), json!(v));
            }
            if let Some(v) = last_contact_threshold {
                body.insert("last_contact_threshold".into(), json!(v));
            }
            if body.is_empty() {
                anyhow::bail!("nothing to change: give at least one setting");
            }
            let c = config::client(&client)?;
            c.request(
                "POST",
                "sys/storage/raft/autopilot/configuration",
                Some(&Value::Object(body)),
            )
            .await?;
            println!("Configuration updated");
        }
    }
    Ok(())
}

/// `sigil operator step-down`.
pub(crate) async fn step_down(client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = config::client(client)?;
    c.request("POST", "sys/step-down", None).await?;
    println!("Success! Stepped down: another node will lead.");
    Ok(ExitCode::SUCCESS)
}

/// The API addresses of the cluster's other members, as `sys/storage/raft/peers` (public)
/// lists them; empty when the server is not in a cluster.
pub(crate) async fn other_members(client: &ClientArgs) -> anyhow::Result<Vec<String>> {
    let c = config::client_with(client, Needs::Nothing)?;
    let Ok(resp) = c.plain("GET", "sys/storage/raft/peers", None).await else {
        return Ok(Vec::new());
    };
    let body = resp.body.unwrap_or(Value::Null);
    let here = client.addr.trim_end_matches('/');
    Ok(body["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["api_addr"].as_str())
        .map(|a| a.trim_end_matches('/').to_owned())
        .filter(|a| !a.is_empty() && a != here)
        .collect())
}

/// Unseals the other members too (one `sigil operator unseal` per admin for the whole
/// cluster): each sealed one gets this admin's share. Prints one line per member.
pub(crate) async fn unseal_members(client: &ClientArgs) -> anyhow::Result<()> {
    for addr in other_members(client).await? {
        let mut args = client.clone();
        args.addr = addr.clone();
        let outcome = async {
            let c = config::client_with(&args, Needs::Key)?;
            let status: sigil_proto::sys::SealStatus = serde_json::from_value(
                c.plain("GET", "sys/seal-status", None)
                    .await?
                    .body
                    .unwrap_or_default(),
            )?;
            if !status.sealed {
                return Ok::<_, anyhow::Error>(json!("already unsealed"));
            }
            let after: sigil_proto::sys::SealStatus = serde_json::from_value(c.unseal().await?)?;
            Ok(json!(if after.sealed {
                format!("unseal progress {}/{}", after.progress, after.threshold)
            } else {
                "unsealed".to_owned()
            }))
        }
        .await;
        match outcome {
            Ok(v) => println!("{addr}: {}", v.as_str().unwrap_or_default()),
            Err(e) => eprintln!("{addr}: not unsealed: {e:#}"),
        }
    }
    Ok(())
}

/// Takes the snapshot `path` answers, checks it (whole, signed by the pinned server key) and
/// writes it to `file` (0600, not over an existing file).
pub(super) async fn save_snapshot(
    client: &ClientArgs,
    path: &str,
    file: &std::path::Path,
    what: &str,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let c = config::client(client)?;
    if file.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it",
            file.display()
        );
    }
    // Streamed (docs/protocol.md §4.7) into a private temporary file beside `file`, checked —
    // whole, and signed by the server this client pins — and only then given its name.
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".sigil-snapshot-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let written = tmp.path().display().to_string();
    let mut out = std::io::BufWriter::new(tmp.as_file_mut());
    c.download(path, &mut out).await?;
    out.flush()
        .and_then(|()| out.get_ref().sync_all())
        .with_context(|| format!("cannot write {written}"))?;
    drop(out);
    let h = sigil_core::snapshot::check_file(tmp.path(), client.server_key.as_deref())?;
    tmp.persist_noclobber(file)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", file.display(), e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    println!(
        "Success! {what} written to {}: {} entries, keyring term {}, taken at {}, SHA-256 of the entries {}.",
        file.display(),
        h.entries,
        h.keyring_term,
        h.created,
        h.body_sha256
    );
    Ok(())
}
