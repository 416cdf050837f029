//! `sigil kv …`, as `vault kv …` for a KV version 2 mount.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};
use sigil_client::ClientError;

use crate::args::{
    ClientArgs, Format, KvCommand, KvMetadataCommand, KvPathArgs, KvShowArgs, KvWriteArgs,
    VersionRead,
};
use crate::{config, output};

/// `(mount, path below it)`: with `-mount`, as given; otherwise the server says which mount
/// serves the path (the longest prefix: `team/kv/app` on a mount `team/kv/`), as Vault's CLI
/// asks `sys/internal/ui/mounts/<path>`. A path under no mount the caller may use is an error
/// that names the mounts it may use (exit 2).
pub(super) async fn split(
    at: &KvPathArgs,
    client: &ClientArgs,
) -> anyhow::Result<(String, String)> {
    split_with(at, client, false).await
}

/// [`split`], asking a cluster follower to answer itself with `stale` (`kv get -stale`).
async fn split_with(
    at: &KvPathArgs,
    client: &ClientArgs,
    stale: bool,
) -> anyhow::Result<(String, String)> {
    let path = at.path.trim_matches('/');
    if let Some(m) = &at.mount {
        let mount = m.trim_matches('/').to_owned();
        if mount.is_empty() {
            bail!("-mount is empty");
        }
        return Ok((mount, path.to_owned()));
    }
    if path.is_empty() {
        bail!("missing mount: use mount/path (e.g. secret/app) or -mount");
    }
    let c = config::client(client)?;
    let query = if stale { "?stale=true" } else { "" };
    match c
        .request(
            "GET",
            &format!("sys/internal/ui/mounts/{path}{query}"),
            None,
        )
        .await
    {
        Ok(resp) => {
            let mount = resp
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/path"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned();
            let rest = path
                .strip_prefix(mount.as_str())
                .unwrap_or(path)
                .trim_start_matches('/')
                .to_owned();
            if mount.is_empty() {
                bail!("the server named no mount for {path}");
            }
            Ok((mount, rest))
        }
        // -output-policy before the caller may use the mount: the first segment is the mount.
        Err(_) if client.output_policy => {
            let (first, rest) = path.split_once('/').unwrap_or((path, ""));
            eprintln!("(cannot look up the mount of {path}; assuming {first}/)");
            Ok((first.to_owned(), rest.to_owned()))
        }
        Err(e) if e.status() == Some(404) => {
            let first = path.split('/').next().unwrap_or(path);
            let mounts: Vec<String> = c
                .request("GET", "sys/internal/ui/mounts", None)
                .await
                .ok()
                .and_then(|r| r.body)
                .and_then(|b| b.pointer("/data/secret").cloned())
                .and_then(|m| m.as_object().map(|m| m.keys().cloned().collect()))
                .unwrap_or_default();
            Err(if mounts.is_empty() {
                super::data::Missing(format!("No value found at {path}")).into()
            } else {
                super::data::Missing(format!(
                    "no mount at {first}/ that you may use (mounts you may use: {})",
                    mounts.join(", ")
                ))
                .into()
            })
        }
        Err(e) => Err(e.into()),
    }
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
    let method = match &cmd {
        KvCommand::Patch(_) | KvCommand::Metadata(KvMetadataCommand::Patch(_)) => "PATCH",
        _ => "POST",
    };
    match cmd {
        KvCommand::Put(w) | KvCommand::Patch(w) => {
            let KvWriteArgs {
                at,
                pairs,
                cas,
                format,
                client,
            } = w;
            let (mount, rest) = split(&at, &client).await?;
            let data = super::pairs::parse_pairs(&pairs)?;
            let mut body = json!({ "data": data });
            if let Some(cas) = cas {
                body["options"] = json!({ "cas": cas });
            }
            let path = format!("{mount}/data/{rest}");
            let c = config::client(&client)?;
            let resp = c.request(method, &path, Some(&body)).await?;
            let body = resp.body.unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => output::structured(format, &body),
                Format::Table => print_secret(&path, &body, false),
            }
        }
        KvCommand::Get {
            at,
            read:
                VersionRead {
                    field,
                    version,
                    format,
                },
            stale,
            wrap,
            client,
        } => {
            let (mount, rest) = split_with(&at, &client, stale.stale).await?;
            let path = format!("{mount}/data/{rest}");
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(v) = version {
                query.push(("version", v.to_string()));
            }
            if stale.stale {
                query.push(("stale", "true".into()));
            }
            let query = super::data::query_string(&query);
            let target = super::data::wrapped_path(&format!("{path}{query}"), &wrap);
            let Some(body) = fetch(&client, "GET", &target).await? else {
                return Ok(super::data::not_found(&path));
            };
            if wrap.wrap_to.is_some() {
                super::data::print_wrap_info(body.get("data").unwrap_or(&Value::Null), format);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(f) = field {
                match body.pointer("/data/data").and_then(|d| d.get(&f)) {
                    Some(v) => println!("{}", output::cell(v)),
                    None => bail!("field {f:?} not present in secret"),
                }
            } else {
                match format {
                    Format::Json | Format::Yaml => output::structured(format, &body),
                    Format::Table => print_secret(&path, &body, true),
                }
            }
        }
        KvCommand::Rollback {
            at,
            version,
            format,
            client,
        } => {
            let (mount, rest) = split(&at, &client).await?;
            let meta_path = format!("{mount}/metadata/{rest}");
            let Some(meta) = fetch(&client, "GET", &meta_path).await? else {
                return Ok(super::data::not_found(&meta_path));
            };
            let current = meta
                .pointer("/data/current_version")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if version == 0 || version > current {
                bail!("version {version} does not exist (the current version is {current})");
            }
            if version == current {
                bail!("version {version} is already the current version");
            }
            let path = format!("{mount}/data/{rest}");
            let old = fetch(&client, "GET", &format!("{path}?version={version}")).await?;
            let data = old
                .as_ref()
                .and_then(|b| b.pointer("/data/data"))
                .filter(|d| d.is_object())
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "version {version} is deleted or destroyed; nothing to roll back to"
                    )
                })?;
            let body = json!({ "data": data, "options": { "cas": current } });
            let c = config::client(&client)?;
            let resp = c.request("POST", &path, Some(&body)).await?;
            let body = resp.body.unwrap_or_default();
            match format {
                Format::Json | Format::Yaml => output::structured(format, &body),
                Format::Table => print_secret(&path, &body, false),
            }
        }
        KvCommand::List(KvShowArgs { at, format, client }) => {
            let (mount, rest) = split(&at, &client).await?;
            let path = format!("{mount}/metadata/{rest}");
            let Some(body) = fetch(&client, "LIST", &path).await? else {
                return Ok(super::data::not_found(&path));
            };
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(format, body.pointer("/data/keys").unwrap_or(&Value::Null))
                }
                Format::Table => output::keys(&body),
            }
        }
        KvCommand::Delete {
            at,
            versions,
            client,
        } if versions.is_empty() => {
            let (mount, rest) = split(&at, &client).await?;
            let path = format!("{mount}/data/{rest}");
            let c = config::client(&client)?;
            c.request("DELETE", &path, None).await?;
            println!("Success! Data deleted (if it existed) at: {path}");
        }
        KvCommand::Delete {
            at,
            versions,
            client,
        } => {
            write_versions(&at, "delete", &versions, &client).await?;
        }
        KvCommand::Undelete(a) => {
            write_versions(&a.at, "undelete", &a.versions, &a.client).await?;
        }
        KvCommand::Destroy(a) => {
            write_versions(&a.at, "destroy", &a.versions, &a.client).await?;
        }
        KvCommand::Metadata(KvMetadataCommand::Get(KvShowArgs { at, format, client })) => {
            let (mount, rest) = split(&at, &client).await?;
            let path = format!("{mount}/metadata/{rest}");
            let Some(body) = fetch(&client, "GET", &path).await? else {
                return Ok(super::data::not_found(&path));
            };
            match format {
                Format::Json | Format::Yaml => output::structured(format, &body),
                Format::Table => print_metadata(&path, &body),
            }
        }
        KvCommand::Metadata(KvMetadataCommand::Put(m) | KvMetadataCommand::Patch(m)) => {
            let (mount, rest) = split(&m.at, &m.client).await?;
            let path = format!("{mount}/metadata/{rest}");
            let mut body = serde_json::Map::new();
            if let Some(v) = m.max_versions {
                body.insert("max_versions".into(), json!(v));
            }
            if let Some(v) = &m.delete_version_after {
                body.insert("delete_version_after".into(), json!(v));
            }
            if let Some(v) = m.cas_required {
                body.insert("cas_required".into(), json!(v));
            }
            if !m.custom_metadata.is_empty() {
                let custom = super::pairs::string_pairs("-custom-metadata", &m.custom_metadata)?;
                body.insert("custom_metadata".into(), Value::Object(custom));
            }
            let c = config::client(&m.client)?;
            c.request(method, &path, Some(&Value::Object(body))).await?;
            println!("Success! Data written to: {path}");
        }
        KvCommand::Metadata(KvMetadataCommand::Delete { at, client }) => {
            let (mount, rest) = split(&at, &client).await?;
            let path = format!("{mount}/metadata/{rest}");
            let c = config::client(&client)?;
            c.request("DELETE", &path, None).await?;
            println!("Success! Data deleted (if it existed) at: {path}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The response body, or `None` when the server answers 404.
async fn fetch(client: &ClientArgs, method: &str, path: &str) -> anyhow::Result<Option<Value>> {
    match config::client(client)?.request(method, path, None).await {
        Ok(r) => Ok(Some(r.body.unwrap_or_default())),
        Err(ClientError::Api { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `POST mount/{action}/path {"versions": […]}` for delete, undelete and destroy.
async fn write_versions(
    at: &KvPathArgs,
    action: &str,
    versions: &[u64],
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let (mount, rest) = split(at, client).await?;
    let path = format!("{mount}/{action}/{rest}");
    let c = config::client(client)?;
    c.request("POST", &path, Some(&json!({ "versions": versions })))
        .await?;
    println!("Success! Data written to: {path}");
    Ok(())
}

fn print_metadata(path: &str, body: &Value) {
    output::header("Metadata Path", 22);
    println!("{path}\n");
    let mut meta = body.get("data").cloned().unwrap_or_default();
    let versions = meta
        .as_object_mut()
        .and_then(|m| m.remove("versions"))
        .unwrap_or_default();
    output::header("Metadata", 20);
    output::table(&output::rows(Some(&meta)));
    if let Some(versions) = versions.as_object() {
        let mut numbered: Vec<_> = versions.iter().collect();
        numbered.sort_by_key(|(n, _)| n.parse::<u64>().unwrap_or(0));
        for (n, v) in numbered {
            println!();
            output::header(&format!("Version {n}"), 20);
            output::table(&output::rows(Some(v)));
        }
    }
}
