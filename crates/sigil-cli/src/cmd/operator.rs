//! `sigil operator …`: init, unseal, seal, status, keyring rotation.

use std::process::ExitCode;

use sigil_crypto::PublicIdentity;

use sigil_proto::sys::{
    InitRequest, InitResponse, RekeyApproval, RekeyRequest, RekeyStatus, SealStatus,
};

use super::typed::{seal_status, typed};
use crate::args::{AdminSet, ClientArgs, Format, OperatorCommand, RekeyCommand};
use crate::config::{self, Needs};
use crate::{keyfile, output};

/// The admins (named), their public identities and their names, as init and rekey send them.
struct Admins {
    named: Vec<(String, PublicIdentity)>,
    publics: Vec<String>,
    names: Vec<String>,
}

fn admin_set(set: &AdminSet) -> anyhow::Result<Admins> {
    let named = keyfile::named_publics(&set.admins)?;
    Ok(Admins {
        publics: named.iter().map(|(_, p)| p.to_string()).collect(),
        names: named.iter().map(|(n, _)| n.clone()).collect(),
        named,
    })
}

fn progress_line(status: &SealStatus) -> String {
    if status.sealed {
        format!("Unseal progress: {}/{}", status.progress, status.threshold)
    } else {
        "Unsealed.".to_owned()
    }
}

pub(crate) async fn run(cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OperatorCommand::Init { set, client } => {
            let set_admins = admin_set(&set)?;
            let threshold = set.threshold;
            let request = InitRequest {
                admins: set_admins.publics,
                threshold,
                names: set_admins.names,
            };
            let admins = set_admins.named;
            let c = config::client_with(&client, Needs::Nothing)?;
            let resp = c
                .plain("POST", "sys/init", Some(&serde_json::to_value(&request)?))
                .await?;
            let answer: InitResponse = typed(resp.body.unwrap_or_default(), "sys/init")?;
            eprintln!(
                "Initialized with {} admin(s); {} needed to unseal. No secret was shown: each admin's share is sealed to their key.",
                admins.len(),
                threshold
            );
            for (name, public) in &admins {
                eprintln!("  admin {name}: {}", public.keyid());
            }
            eprintln!(
                "The server is sealed: each admin runs `sigil operator unseal` with their SIGIL_KEY."
            );
            // The keyid is derived from the key, not taken from the answer as it stands.
            let server_key = sigil_crypto::PublicIdentity::parse(&answer.server_key)
                .map_err(|_| anyhow::anyhow!("the init answer has no valid server_key"))?;
            let keyid = server_key.keyid().to_string();
            if answer.keyid != keyid {
                anyhow::bail!("the init answer's keyid is not its server_key's: not pinning it");
            }
            println!("export SIGIL_SERVER_KEY={keyid}");
        }
        OperatorCommand::Unseal { reset, client } => {
            let c = config::client_with(&client, Needs::Key)?;
            let status = if reset {
                c.signed_plain(
                    "POST",
                    "sys/unseal",
                    &serde_json::to_value(sigil_proto::sys::UnsealReset { reset: true })?,
                )
                .await?
            } else {
                match c.unseal().await {
                    Ok(status) => status,
                    Err(e) => return Err(explain_unseal_failure(&c, e).await),
                }
            };
            println!("{}", progress_line(&typed(status, "sys/unseal")?));
            if !reset {
                // In a cluster: the other members with the same share.
                super::raft::unseal_members(&client).await?;
            }
        }
        OperatorCommand::Seal { client } => {
            let c = config::client(&client)?;
            c.request("POST", "sys/seal", None).await?;
            println!("Success! Sigil is sealed.");
        }
        OperatorCommand::Status { format, client } => {
            let c = config::client_with(&client, Needs::Nothing)?;
            let status = seal_status(&c).await?;
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(format, &serde_json::to_value(&status)?)
                }
                Format::Table => output::table(&seal_rows(&status)),
            }
            // As `vault status`: 2 when sealed.
            if status.sealed {
                return Ok(ExitCode::from(2));
            }
        }
        OperatorCommand::Reload { format, client } => {
            let c = config::client(&client)?;
            let resp = c.request("POST", "sys/reload", None).await?;
            let report = resp.data();
            match format {
                Format::Json | Format::Yaml => output::structured(format, report),
                Format::Table => {
                    let mut rows: Vec<(String, String)> = [
                        ("TLS reloaded", "tls_reloaded"),
                        ("TLS certificate SHA-256", "tls_certificate_sha256"),
                        ("Limits changed", "limits_changed"),
                        ("Audit devices reopened", "audit_devices_reopened"),
                    ]
                    .iter()
                    .map(|(label, key)| ((*label).to_owned(), output::cell(&report[*key])))
                    .collect();
                    if let Some(notes) = report["notes"].as_array() {
                        for n in notes {
                            rows.push(("Note".into(), output::cell(n)));
                        }
                    }
                    output::table(&rows);
                }
            }
        }
        OperatorCommand::Backup { file, client } => {
            super::raft::save_snapshot(&client, "sys/storage/snapshot", &file, "Backup").await?;
        }
        OperatorCommand::Restore {
            file,
            data_dir,
            config,
            server_key,
        } => {
            let dir = match (data_dir, config) {
                (Some(d), _) => d,
                (None, Some(c)) => crate::server_config::ServerFile::load(&c)?.storage.path,
                (None, None) => anyhow::bail!("say where to restore: --data-dir DIR or -c FILE"),
            };
            if server_key.is_none() {
                eprintln!(
                    "Note: no --server-key (or SIGIL_SERVER_KEY): the backup's signature is checked, but not whose it is."
                );
            }
            super::server::private_dir(&dir)?;
            let restored = sigil_server::restore_snapshot(&dir, &file, server_key.as_deref())?;
            let h = restored.header;
            println!(
                "Success! Restored {} entries (keyring term {}, taken at {}) into {}.",
                h.entries,
                h.keyring_term,
                h.created,
                restored.path.display()
            );
            println!(
                "Start the server on it: it is sealed until the backup's admins run `sigil operator unseal`. Its server key is the backup's: {}",
                sigil_crypto::PublicIdentity::parse(&h.server_key)
                    .map(|k| k.keyid().to_string())
                    .unwrap_or_default()
            );
        }
        OperatorCommand::Rotate { client } => {
            let c = config::client(&client)?;
            let resp = c.request("POST", "sys/rotate", None).await?;
            let term = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/term").cloned())
                .unwrap_or_default();
            println!("Success! Rotated the keyring; new writes use term {term}.");
        }
        OperatorCommand::Rewrap { client } => {
            let c = config::client(&client)?;
            let resp = c.request("POST", "sys/rewrap", None).await?;
            let n = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/rewrapped").cloned())
                .unwrap_or_default();
            println!("Success! Re-encrypted {n} entries under the newest term.");
        }
        OperatorCommand::Rekey(cmd) => return rekey(cmd).await,
        OperatorCommand::Raft(cmd) => return super::raft::run(cmd).await,
        OperatorCommand::StepDown { client } => return super::raft::step_down(&client).await,
        OperatorCommand::KeyStatus { client } => {
            let c = config::client(&client)?;
            let resp = c.request("GET", "sys/key-status", None).await?;
            let body = resp.body.unwrap_or_default();
            output::table(&output::rows(body.get("data")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_rekey(status: &RekeyStatus) {
    if status.complete {
        println!(
            "Rekeyed: {} admin(s), threshold {}. Old shares no longer open anything.",
            status.admins.len(),
            status.threshold
        );
        return;
    }
    if !status.started {
        println!("No rekey in progress.");
        return;
    }
    println!(
        "Rekey proposal (open until {}):",
        time::OffsetDateTime::from_unix_timestamp(status.deadline)
            .ok()
            .and_then(|t| t
                .format(&time::format_description::well_known::Rfc3339)
                .ok())
            .unwrap_or_else(|| status.deadline.to_string())
    );
    for (i, key) in status.admins.iter().enumerate() {
        println!(
            "  admin {}: {key}",
            status.names.get(i).map_or("?", String::as_str)
        );
    }
    println!("  threshold: {}", status.threshold);
    println!("Approvals: {}/{}", status.approvals.len(), status.required);
    println!("Digest: {}", status.digest);
    println!(
        "Each current admin reviews this and runs: sigil operator rekey approve -digest={}",
        status.digest
    );
}

async fn rekey(cmd: RekeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RekeyCommand::Init { set, ttl, client } => {
            let admins = admin_set(&set)?;
            let request = RekeyRequest {
                admins: admins.publics,
                threshold: set.threshold,
                names: admins.names,
                ttl_seconds: ttl,
            };
            let c = config::client(&client)?;
            let resp = c
                .request(
                    "POST",
                    "sys/rekey/init",
                    Some(&serde_json::to_value(&request)?),
                )
                .await?;
            print_rekey(&typed(resp.data().clone(), "sys/rekey/init")?);
        }
        RekeyCommand::Status { format, client } => {
            let c = config::client_with(&client, Needs::Nothing)?;
            let body = c
                .plain("GET", "sys/rekey", None)
                .await?
                .body
                .unwrap_or_default();
            let status: RekeyStatus = typed(body, "sys/rekey")?;
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(format, &serde_json::to_value(&status)?)
                }
                Format::Table => print_rekey(&status),
            }
        }
        RekeyCommand::Approve { digest, client } => {
            let c = config::client_with(&client, Needs::Key)?;
            let approval = serde_json::to_value(RekeyApproval { digest })?;
            let status = c
                .signed_plain("POST", "sys/rekey/approve", &approval)
                .await?;
            print_rekey(&typed(status, "sys/rekey/approve")?);
        }
        RekeyCommand::Cancel { client } => {
            let c = config::client(&client)?;
            c.request("DELETE", "sys/rekey", None).await?;
            println!("Success! The rekey proposal is cancelled.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A refused unseal, explained from the public seal status: the server is not initialized, or
/// this key is not one of its admins (a rekey may have removed it); otherwise the error as it is.
async fn explain_unseal_failure(
    c: &sigil_client::Client,
    e: sigil_client::ClientError,
) -> anyhow::Error {
    let Ok(status) = seal_status(c).await else {
        return e.into();
    };
    if !status.initialized {
        return anyhow::anyhow!(
            "the server is not initialized: there is nothing to unseal yet (run `sigil operator init --admin …` first)"
        );
    }
    let Ok(me) = c.public() else {
        return e.into();
    };
    let keyid = me.keyid();
    let admins = &status.admins;
    if !admins.is_empty() && !admins.iter().any(|a| *a == keyid.as_str()) {
        return anyhow::anyhow!(
            "this key (keyid {keyid}) is not one of the server's admins ({}); a rekey may have removed it",
            admins.join(", ")
        );
    }
    e.into()
}

/// `operator status` for people: the seal state, each admin by name and keyid, the threshold
/// once, and this boot's unseal public key under its name.
fn seal_rows(status: &SealStatus) -> Vec<(String, String)> {
    let mut rows = vec![
        ("Seal Type".to_owned(), status.kind.clone()),
        ("Initialized".to_owned(), status.initialized.to_string()),
        ("Sealed".to_owned(), status.sealed.to_string()),
        (
            "Threshold".to_owned(),
            format!("{} of {} admins", status.t, status.n),
        ),
        (
            "Unseal Progress".to_owned(),
            format!("{}/{}", status.progress, status.t),
        ),
    ];
    for (i, keyid) in status.admins.iter().enumerate() {
        let name = status
            .admin_names
            .get(i)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("#{}", i + 1), Clone::clone);
        rows.push((format!("Admin {name}"), keyid.clone()));
    }
    rows.push((
        "Unseal Public Key".to_owned(),
        format!(
            "{} (this boot's; shares are sealed to it)",
            status.unseal_key
        ),
    ));
    rows.push(("Unseal Attempt".to_owned(), status.attempt.clone()));
    rows.push(("Storage Type".to_owned(), status.storage_type.clone()));
    rows.push(("Version".to_owned(), status.version.clone()));
    rows
}

/// `sigil status`: the seal status and health in `vault status`'s rows; exit 2 when sealed.
pub(crate) async fn status(format: Format, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = config::client_with(client, Needs::Nothing)?;
    let seal = seal_status(&c).await?;
    let sealed = seal.sealed;
    match format {
        Format::Json | Format::Yaml => output::structured(format, &serde_json::to_value(&seal)?),
        Format::Table => {
            let mut rows = vec![
                ("Seal Type".to_owned(), seal.kind.clone()),
                ("Initialized".to_owned(), seal.initialized.to_string()),
                ("Sealed".to_owned(), seal.sealed.to_string()),
                ("Total Shares".to_owned(), seal.n.to_string()),
                ("Threshold".to_owned(), seal.t.to_string()),
                (
                    "Unseal Progress".to_owned(),
                    format!("{}/{}", seal.progress, seal.t),
                ),
                ("Version".to_owned(), seal.version.clone()),
                ("Storage Type".to_owned(), seal.storage_type.clone()),
                (
                    "Storage".to_owned(),
                    match &seal.storage_error {
                        Some(e) => format!("failed: {e}"),
                        None => "ok".to_owned(),
                    },
                ),
                ("HA Enabled".to_owned(), "false".to_owned()),
            ];
            if let Some(why) = &seal.sealed_because {
                rows.push(("Sealed Because".to_owned(), why.clone()));
            }
            output::table(&rows);
        }
    }
    Ok(if sealed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
