//! `sigil audit verify|hash`.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::args::AuditCommand;
use crate::config;

pub(crate) async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            file,
            server,
            continued,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let Some(server) = server else {
                anyhow::bail!(
                    "pin the server key: --server-key KEYID (or SIGIL_SERVER_KEY); without it anyone could re-sign a rewritten log"
                );
            };
            match sigil_core::audit::verify(&text, Some(&server), continued) {
                Ok(s) => {
                    println!(
                        "OK: {} lines, {} signed checkpoints, {} lines after the last checkpoint",
                        s.lines, s.checkpoints, s.unsigned_tail
                    );
                    if s.unsigned_tail > 0 {
                        eprintln!(
                            "Note: the last {} lines come after the last checkpoint; they are not yet signed.",
                            s.unsigned_tail
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Hash {
            device,
            value,
            client,
        } => {
            let c = config::client(&client)?;
            let resp = c
                .request(
                    "POST",
                    &format!("sys/audit-hash/{device}"),
                    Some(&json!({ "input": value })),
                )
                .await?;
            let hash = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/hash"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
