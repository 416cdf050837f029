//! `sigil audit verify|hash`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::args::AuditCommand;
use crate::config;

pub(crate) async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify {
            files,
            rotated,
            server,
            continued,
            strict,
        } => {
            let Some(server) = server else {
                anyhow::bail!(
                    "pin the server key: --server-key KEYID (or SIGIL_SERVER_KEY); without it anyone could re-sign a rewritten log"
                );
            };
            let files = if rotated {
                let [path] = files.as_slice() else {
                    anyhow::bail!(
                        "--rotated takes one PATH (the live file); it finds PATH.1, PATH.2, …"
                    );
                };
                rotated_set(path)
            } else {
                files
            };
            verify(&files, &server, continued, strict)
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

/// `PATH.N` … `PATH.1`, `PATH`: the files a rotating device wrote, oldest first (numbers
/// from 1 up while they exist; the live `PATH` last, if it exists).
fn rotated_set(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| sigil_core::audit::Rotation::numbered(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    if path.exists() || files.is_empty() {
        files.push(path.to_owned());
    }
    files
}

/// Verifies `files` as one log, oldest first, and says how far the server vouches for it.
fn verify(
    files: &[PathBuf],
    server: &str,
    continued: bool,
    strict: bool,
) -> anyhow::Result<ExitCode> {
    let mut texts = Vec::with_capacity(files.len());
    for f in files {
        texts.push((
            f.display().to_string(),
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        ));
    }
    let set: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let summaries = match sigil_core::audit::verify_files(&set, Some(server), continued) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let (last, earlier) = summaries.split_last().expect("at least one file");
    for ((name, _), s) in texts.iter().zip(earlier) {
        if s.unsigned_tail > 0 {
            let msg = format!(
                "{name}: its last {} lines are not vouched for by a checkpoint (a rotated file ends with one unless it was cut, e.g. by copytruncate)",
                s.unsigned_tail
            );
            if strict {
                anyhow::bail!("{msg}");
            }
            println!("{msg}");
        } else {
            println!(
                "OK: {name}: {} lines (seq {}–{}), {} signed checkpoints",
                s.lines, s.first.0, s.last.0, s.checkpoints
            );
        }
    }
    let s = last;
    let name = &texts[texts.len() - 1].0;
    let files_note = if texts.len() > 1 {
        format!("{name}: ")
    } else {
        String::new()
    };
    let Some((line, seq)) = s.last_checkpoint else {
        // A live log before its first checkpoint.
        let msg = format!(
            "{files_note}no signed checkpoint yet: the chain of all {} lines is intact, but the server vouches for none of them yet (a live log gets its first checkpoint after {} lines or at a clean shutdown)",
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
            "OK: {files_note}all {} lines, {} signed checkpoints (the last at line {line}, seq {seq})",
            s.lines, s.checkpoints
        );
    } else {
        let msg = format!(
            "{} newer lines are not yet vouched for (a live log: the next checkpoint covers them; their truncation could not be detected)",
            s.unsigned_tail
        );
        if strict {
            anyhow::bail!("{files_note}OK up to line {vouched}, but {msg}");
        }
        let of = if texts.len() > 1 {
            format!(" of {name}")
        } else {
            String::new()
        };
        println!(
            "OK up to line {vouched}{of} (checkpoint at line {line}, seq {seq}; {} signed checkpoints); {msg}",
            s.checkpoints
        );
    }
    if texts.len() > 1 {
        println!(
            "OK: the {} files are one chain, seq {}–{}",
            texts.len(),
            summaries[0].first.0,
            s.last.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
