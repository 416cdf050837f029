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
            strict,
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
                    let Some((line, seq)) = s.last_checkpoint else {
                        // A live log before its first checkpoint.
                        let msg = format!(
                            "no signed checkpoint yet: the chain of all {} lines is intact, but the server vouches for none of them yet (a live log gets its first checkpoint after {} lines or at a clean shutdown)",
                            s.lines,
                            sigil_core::audit::CHECKPOINT_EVERY
                        );
                        if strict {
                            anyhow::bail!("{msg}");
                        }
                        println!("OK so far: {msg}");
                        return Ok(ExitCode::SUCCESS);
                    };
                    let vouched = s.lines - s.unsigned_tail;
                    if s.unsigned_tail == 0 {
                        println!(
                            "OK: all {} lines, {} signed checkpoints (the last at line {line}, seq {seq})",
                            s.lines, s.checkpoints
                        );
                    } else {
                        let msg = format!(
                            "{} newer lines are not yet vouched for (a live log: the next checkpoint covers them; their truncation could not be detected)",
                            s.unsigned_tail
                        );
                        if strict {
                            anyhow::bail!("OK up to line {vouched}, but {msg}");
                        }
                        println!(
                            "OK up to line {vouched} (checkpoint at line {line}, seq {seq}; {} signed checkpoints); {msg}",
                            s.checkpoints
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
