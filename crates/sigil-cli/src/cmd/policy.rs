use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::args::PolicyCommand;
use crate::{config, output};

pub(crate) async fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Write { name, file, client } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the policy from standard input")?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let c = config::client(&client)?;
            c.request(
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(&json!({ "policy": text })),
            )
            .await?;
            println!("Success! Uploaded policy: {name}");
        }
        PolicyCommand::Fmt { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let formatted = sigil_core::policy::format_policy(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if formatted != text {
                let mode = std::fs::metadata(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
                    .permissions()
                    .mode();
                crate::keyfile::replace_file(&file, formatted.as_bytes(), mode & 0o7777)?;
            }
            println!("Success! Formatted policy: {}", file.display());
        }
        PolicyCommand::Read { name, show, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", &format!("sys/policies/acl/{name}"), None)
                .await
                .map_err(|e| super::data::missing_as(e, || format!("No policy named: {name}")))?;
            let data = resp.data();
            if show.field.is_some() || show.format != crate::args::Format::Table {
                return super::data::print_data(data, &show).map(|()| ExitCode::SUCCESS);
            }
            let text = data
                .get("policy")
                .and_then(Value::as_str)
                .unwrap_or_default();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        PolicyCommand::List { show, client } => {
            let c = config::client(&client)?;
            let resp = c.request("LIST", "sys/policies/acl", None).await?;
            let body = resp.body.unwrap_or_default();
            if show.format != crate::args::Format::Table {
                super::data::print_keys(&body, show.format);
                return Ok(ExitCode::SUCCESS);
            }
            // As `vault policy list`: one name per line, no header.
            for k in body
                .pointer("/data/keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{}", output::cell(k));
            }
        }
        PolicyCommand::Delete { name, client } => {
            let c = config::client(&client)?;
            c.request("DELETE", &format!("sys/policies/acl/{name}"), None)
                .await?;
            println!("Success! Deleted policy: {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
