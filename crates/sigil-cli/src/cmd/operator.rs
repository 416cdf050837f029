//! `sigil operator …`: init, unseal, seal, status, keyring rotation.

use std::process::ExitCode;

use anyhow::Context as _;

use serde_json::{Value, json};

use sigil_crypto::PublicIdentity;

use crate::args::{AdminSet, ClientArgs, Format, OperatorCommand, RekeyCommand};
use crate::config::{self, Needs};
use crate::{keyfile, output};

/// The admins (named) and the `{"admins","names","threshold"}` body of init and rekey.
fn admin_set(set: &AdminSet) -> anyhow::Result<(Vec<(String, PublicIdentity)>, Value)> {
    let admins = keyfile::named_publics(&set.admins)?;
    let body = json!({
        "admins": admins.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>(),
        "names": admins.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "threshold": set.threshold,
    });
    Ok((admins, body))
}

fn progress_line(status: &Value) -> String {
    if status["sealed"] == Value::Bool(false) {
        "Unsealed.".to_owned()
    } else {
        format!(
            "Unseal progress: {}/{}",
            status["progress"], status["threshold"]
        )
    }
}

pub(crate) async fn run(cmd: OperatorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OperatorCommand::Init { set, client } => {
            let (admins, body) = admin_set(&set)?;
            let threshold = set.threshold;
            let c = config::client_with(&client, Needs::Nothing)?;
            let resp = c.plain("POST", "sys/init", Some(&body)).await?;
            let body = resp.body.unwrap_or_default();
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
            let server_key = body["server_key"]
                .as_str()
                .and_then(|k| sigil_crypto::PublicIdentity::parse(k).ok())
                .ok_or_else(|| anyhow::anyhow!("the init answer has no valid server_key"))?;
            let keyid = server_key.keyid().to_string();
            if body["keyid"].as_str() != Some(keyid.as_str()) {
                anyhow::bail!("the init answer's keyid is not its server_key's: not pinning it");
            }
            println!("export SIGIL_SERVER_KEY={keyid}");
        }
        OperatorCommand::Unseal { reset, client } => {
            let c = config::client_with(&client, Needs::Key)?;
            let status = if reset {
                c.signed_plain("POST", "sys/unseal", &serde_json::json!({ "reset": true }))
                    .await?
            } else {
                match c.unseal().await {
                    Ok(status) => status,
                    Err(e) => return Err(explain_unseal_failure(&c, e).await),
                }
            };
            println!("{}", progress_line(&status));
        }
        OperatorCommand::Seal { client } => {
            let c = config::client(&client)?;
            c.request("POST", "sys/seal", None).await?;
            println!("Success! Sigil is sealed.");
        }
        OperatorCommand::Status { format, client } => {
            let c = config::client_with(&client, Needs::Nothing)?;
            let status = c
                .plain("GET", "sys/seal-status", None)
                .await?
                .body
                .unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => output::structured(format, &status),
                Format::Table => output::table(&seal_rows(&status)),
            }
            // As `vault status`: 2 when sealed.
            if status["sealed"] == Value::Bool(true) {
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
            let c = config::client(&client)?;
            let resp = c.request("GET", "sys/storage/snapshot", None).await?;
            let bytes = resp.data()["snapshot"]
                .as_str()
                .and_then(|s| sigil_crypto::b64url_decode(s).ok())
                .ok_or_else(|| anyhow::anyhow!("the server's answer holds no snapshot"))?;
            // Checked before it is kept: whole, and signed by the server this client pins.
            let snapshot = sigil_core::snapshot::decode(&bytes, client.server_key.as_deref())?;
            keyfile::write_private_file(&file, &bytes)?;
            let h = snapshot.header;
            println!(
                "Success! Backup written to {}: {} entries, keyring term {}, taken at {}, SHA-256 of the entries {}.",
                file.display(),
                h.entries,
                h.keyring_term,
                h.created,
                h.body_sha256
            );
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
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if server_key.is_none() {
                eprintln!(
                    "Note: no --server-key (or SIGIL_SERVER_KEY): the backup's signature is checked, but not whose it is."
                );
            }
            super::server::private_dir(&dir)?;
            let restored = sigil_server::restore_snapshot(&dir, &bytes, server_key.as_deref())?;
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
        OperatorCommand::KeyStatus { client } => {
            let c = config::client(&client)?;
            let resp = c.request("GET", "sys/key-status", None).await?;
            let body = resp.body.unwrap_or_default();
            output::table(&output::rows(body.get("data")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_rekey(status: &Value) {
    if status["complete"] == Value::Bool(true) {
        println!(
            "Rekeyed: {} admin(s), threshold {}. Old shares no longer open anything.",
            status["admins"].as_array().map_or(0, Vec::len),
            status["threshold"]
        );
        return;
    }
    if status["started"] != Value::Bool(true) {
        println!("No rekey in progress.");
        return;
    }
    println!(
        "Rekey proposal (open until {}):",
        status["deadline"]
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t
                .format(&time::format_description::well_known::Rfc3339)
                .ok())
            .unwrap_or_else(|| status["deadline"].to_string())
    );
    let names = status["names"].as_array().cloned().unwrap_or_default();
    for (i, key) in status["admins"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        println!(
            "  admin {}: {}",
            names.get(i).and_then(Value::as_str).unwrap_or("?"),
            key.as_str().unwrap_or_default()
        );
    }
    println!("  threshold: {}", status["threshold"]);
    println!(
        "Approvals: {}/{}",
        status["approvals"].as_array().map_or(0, Vec::len),
        status["required"]
    );
    println!("Digest: {}", status["digest"].as_str().unwrap_or_default());
    println!(
        "Each current admin reviews this and runs: sigil operator rekey approve -digest={}",
        status["digest"].as_str().unwrap_or_default()
    );
}

async fn rekey(cmd: RekeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RekeyCommand::Init { set, ttl, client } => {
            let (_, mut body) = admin_set(&set)?;
            body["ttl_seconds"] = json!(ttl);
            let c = config::client(&client)?;
            let resp = c.request("POST", "sys/rekey/init", Some(&body)).await?;
            print_rekey(resp.data());
        }
        RekeyCommand::Status { format, client } => {
            let c = config::client_with(&client, Needs::Nothing)?;
            let status = c
                .plain("GET", "sys/rekey", None)
                .await?
                .body
                .unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => output::structured(format, &status),
                Format::Table => print_rekey(&status),
            }
        }
        RekeyCommand::Approve { digest, client } => {
            let c = config::client_with(&client, Needs::Key)?;
            let status = c
                .signed_plain("POST", "sys/rekey/approve", &json!({ "digest": digest }))
                .await?;
            print_rekey(&status);
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
    let Ok(resp) = c.plain("GET", "sys/seal-status", None).await else {
        return e.into();
    };
    let status = resp.body.unwrap_or_default();
    if status["initialized"] == Value::Bool(false) {
        return anyhow::anyhow!(
            "the server is not initialized: there is nothing to unseal yet (run `sigil operator init --admin …` first)"
        );
    }
    let Ok(me) = c.public() else {
        return e.into();
    };
    let keyid = me.keyid();
    let admins: Vec<&str> = status["admins"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !admins.is_empty() && !admins.contains(&keyid.as_str()) {
        return anyhow::anyhow!(
            "this key (keyid {keyid}) is not one of the server's admins ({}); a rekey may have removed it",
            admins.join(", ")
        );
    }
    e.into()
}

/// `operator status` for people: the seal state, each admin by name and keyid, the threshold
/// once, and this boot's unseal public key under its name.
fn seal_rows(status: &Value) -> Vec<(String, String)> {
    let text = output::cell;
    let mut rows = vec![
        ("Seal Type".to_owned(), text(&status["type"])),
        ("Initialized".to_owned(), text(&status["initialized"])),
        ("Sealed".to_owned(), text(&status["sealed"])),
        (
            "Threshold".to_owned(),
            format!("{} of {} admins", text(&status["t"]), text(&status["n"])),
        ),
        (
            "Unseal Progress".to_owned(),
            format!("{}/{}", text(&status["progress"]), text(&status["t"])),
        ),
    ];
    let names = status["admin_names"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, keyid) in status["admins"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = names
            .get(i)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("#{}", i + 1), str::to_owned);
        rows.push((format!("Admin {name}"), text(keyid)));
    }
    rows.push((
        "Unseal Public Key".to_owned(),
        format!(
            "{} (this boot's; shares are sealed to it)",
            text(&status["unseal_key"])
        ),
    ));
    rows.push(("Unseal Attempt".to_owned(), text(&status["attempt"])));
    rows.push(("Storage Type".to_owned(), text(&status["storage_type"])));
    rows.push(("Version".to_owned(), text(&status["version"])));
    rows
}

/// `sigil status`: the seal status and health in `vault status`'s rows; exit 2 when sealed.
pub(crate) async fn status(format: Format, client: &ClientArgs) -> anyhow::Result<ExitCode> {
    let c = config::client_with(client, Needs::Nothing)?;
    let seal = c
        .plain("GET", "sys/seal-status", None)
        .await?
        .body
        .unwrap_or_default();
    let sealed = seal["sealed"] == Value::Bool(true);
    match format {
        Format::Json | Format::Yaml => output::structured(format, &seal),
        Format::Table => {
            let text = output::cell;
            let rows = vec![
                ("Seal Type".to_owned(), text(&seal["type"])),
                ("Initialized".to_owned(), text(&seal["initialized"])),
                ("Sealed".to_owned(), text(&seal["sealed"])),
                ("Total Shares".to_owned(), text(&seal["n"])),
                ("Threshold".to_owned(), text(&seal["t"])),
                (
                    "Unseal Progress".to_owned(),
                    format!("{}/{}", text(&seal["progress"]), text(&seal["t"])),
                ),
                ("Version".to_owned(), text(&seal["version"])),
                ("Storage Type".to_owned(), text(&seal["storage_type"])),
                (
                    "Storage".to_owned(),
                    if seal.get("storage_error").is_some() {
                        format!("failed: {}", text(&seal["storage_error"]))
                    } else {
                        "ok".to_owned()
                    },
                ),
                ("HA Enabled".to_owned(), "false".to_owned()),
            ];
            output::table(&rows);
        }
    }
    Ok(if sealed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
