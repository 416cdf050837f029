//! `sigil operator raft …` and `sigil operator step-down`: the cluster's members, admitting
//! and removing nodes; and unsealing every node of a cluster in one run per admin.

use std::process::ExitCode;

use serde_json::{Value, json};
use sigil_proto::raft::{Approve, Configuration, RemovePeer};

use crate::args::{ClientArgs, Format, RaftCommand};
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
    }
    Ok(ExitCode::SUCCESS)
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
