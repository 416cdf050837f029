//! `sigil kv …`, as `vault kv …` for a KV version 2 mount.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};
use sigil_client::ClientError;

use crate::args::{Format, KvCommand, KvPathArgs};
use crate::{config, output};

/// `(mount, path below it)`.
fn split(at: &KvPathArgs) -> anyhow::Result<(String, String)> {
    let path = at.path.trim_matches('/');
    let (mount, rest) = match &at.mount {
        Some(m) => (m.trim_matches('/').to_owned(), path.to_owned()),
        None => match path.split_once('/') {
            Some((m, r)) => (m.to_owned(), r.to_owned()),
            None => (path.to_owned(), String::new()),
        },
    };
    if mount.is_empty() {
        bail!("missing mount: use mount/path (e.g. secret/app) or -mount");
    }
    Ok((mount, rest))
}

fn print_secret(path: &str, body: &Value, with_data: bool) {
    output::header("Secret Path", 20);
    println!("{path}\n");
    let meta = if with_data {
        body.pointer("/data/metadata")
    } else {
        body.get("data")
    };
    output::header("Metadata", 24);
    output::table(&output::rows(meta));
    if with_data {
        println!();
        output::header("Data", 18);
        output::table(&output::rows(body.pointer("/data/data")));
    }
}

pub(crate) async fn run(cmd: KvCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KvCommand::Put {
            at,
            pairs,
            cas,
            format,
            client,
        } => {
            let (mount, rest) = split(&at)?;
            let data = super::parse_pairs(&pairs)?;
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = json!({ "cas": cas });
            }
            let path = format!("{mount}/data/{rest}");
            let c = config::client(&client)?;
            let resp = c.request("POST", &path, Some(&body)).await?;
            let body = resp.body.unwrap_or_default();
            match format {
                Format::Json => output::json(&body),
                Format::Table => print_secret(&path, &body, false),
            }
        }
        KvCommand::Get {
            at,
            field,
            version,
            format,
            client,
        } => {
            let (mount, rest) = split(&at)?;
            let path = format!("{mount}/data/{rest}");
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let c = config::client(&client)?;
            let body = match c.request("GET", &format!("{path}{query}"), None).await {
                Ok(r) => r.body.unwrap_or_default(),
                Err(ClientError::Api { status: 404, .. }) => return Ok(super::not_found(&path)),
                Err(e) => return Err(e.into()),
            };
            if let Some(f) = field {
                match body.pointer("/data/data").and_then(|d| d.get(&f)) {
                    Some(v) => println!("{}", output::cell(v)),
                    None => bail!("field {f:?} not present in secret"),
                }
            } else {
                match format {
                    Format::Json => output::json(&body),
                    Format::Table => print_secret(&path, &body, true),
                }
            }
        }
        KvCommand::List { at, format, client } => {
            let (mount, rest) = split(&at)?;
            let path = format!("{mount}/metadata/{rest}");
            let c = config::client(&client)?;
            let body = match c.request("LIST", &path, None).await {
                Ok(r) => r.body.unwrap_or_default(),
                Err(ClientError::Api { status: 404, .. }) => return Ok(super::not_found(&path)),
                Err(e) => return Err(e.into()),
            };
            match format {
                Format::Json => output::json(body.pointer("/data/keys").unwrap_or(&Value::Null)),
                Format::Table => output::keys(&body),
            }
        }
        KvCommand::Delete { at, client } => {
            let (mount, rest) = split(&at)?;
            let path = format!("{mount}/data/{rest}");
            let c = config::client(&client)?;
            c.request("DELETE", &path, None).await?;
            println!("Success! Data deleted (if it existed) at: {path}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
