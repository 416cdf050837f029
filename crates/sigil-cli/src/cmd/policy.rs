use std::io::Read as _;
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
        PolicyCommand::Read { name, client } => {
            let c = config::client(&client)?;
            let resp = c
                .request("GET", &format!("sys/policies/acl/{name}"), None)
                .await
                .map_err(|e| super::missing_as(e, || format!("No policy named: {name}")))?;
            let text = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/policy"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        PolicyCommand::List { client } => {
            let c = config::client(&client)?;
            let resp = c.request("LIST", "sys/policies/acl", None).await?;
            let body = resp.body.unwrap_or_default();
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
