//! `sigil operator …`: init, unseal, seal, status, keyring rotation.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::args::{Format, OperatorCommand};
use crate::config::{self, Needs};
use crate::{keyfile, output};

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
        OperatorCommand::Init {
            admins,
            threshold,
            client,
        } => {
            let admins = keyfile::named_publics(&admins)?;
            let c = config::client_with(&client, Needs::Nothing)?;
            let body = json!({
                "admins": admins.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>(),
                "names": admins.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "threshold": threshold,
            });
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
            println!(
                "export SIGIL_SERVER_KEY={}",
                body["keyid"].as_str().unwrap_or_default()
            );
        }
        OperatorCommand::Unseal { client } => {
            let c = config::client_with(&client, Needs::Key)?;
            let status = c.unseal().await?;
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
                Format::Json => output::json(&status),
                Format::Table => output::table(&output::rows(Some(&status))),
            }
            // As `vault status`: 2 when sealed.
            if status["sealed"] == Value::Bool(true) {
                return Ok(ExitCode::from(2));
            }
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
        OperatorCommand::KeyStatus { client } => {
            let c = config::client(&client)?;
            let resp = c.request("GET", "sys/key-status", None).await?;
            let body = resp.body.unwrap_or_default();
            output::table(&output::rows(body.get("data")));
        }
    }
    Ok(ExitCode::SUCCESS)
}
