//! One module per command group.

mod audit;
mod e2e;
mod generic;
mod group;
mod identity;
mod key;
mod kv;
mod lease;
mod operator;
mod policy;
mod secrets;
mod server;

use std::process::ExitCode;

use crate::args::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(c) => key::run(c),
        Command::Server(c) => server::run(c).await,
        Command::Identity(c) => identity::run(c).await,
        Command::Group(c) => group::run(c).await,
        Command::Policy(c) => policy::run(c).await,
        Command::Kv(c) => kv::run(c).await,
        Command::Secrets(c) => secrets::run(c).await,
        Command::E2e(c) => e2e::run(c).await,
        Command::Wrap(w) => e2e::wrap(w).await,
        Command::Unwrap {
            id,
            format,
            trust,
            client,
        } => e2e::unwrap(&id, format, &trust, &client).await,
        Command::Operator(c) => operator::run(c).await,
        Command::Audit(c) => audit::run(c).await,
        Command::Lease(c) => lease::run(c).await,
        Command::Read {
            path,
            format,
            field,
            client,
        } => generic::read(&path, format, field.as_deref(), &client).await,
        Command::Write {
            path,
            pairs,
            format,
            field,
            client,
        } => generic::write(&path, &pairs, format, field.as_deref(), &client).await,
        Command::List { path, client } => generic::list(&path, &client).await,
        Command::Delete { path, client } => generic::delete(&path, &client).await,
    }
}

/// `?k=v&…` (percent-encoded), or nothing.
pub(crate) fn query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut q = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A wrap's info, as `vault` prints a wrapping token.
pub(crate) fn print_wrap_info(info: &serde_json::Value, format: crate::args::Format) {
    match format {
        crate::args::Format::Json => crate::output::json(info),
        crate::args::Format::Table => {
            let cell =
                |k: &str| crate::output::cell(info.get(k).unwrap_or(&serde_json::Value::Null));
            crate::output::table(&[
                ("wrap_id".into(), cell("id")),
                ("wrap_ttl".into(), format!("{}s", cell("ttl"))),
                ("wrap_expiration_time".into(), cell("expiration_time")),
                ("wrap_creation_path".into(), cell("creation_path")),
                ("wrap_recipient".into(), cell("recipient")),
            ]);
        }
    }
}

/// RFC 3339 now, for key file comments.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `LIST path`, printed as Vault prints keys.
pub(crate) async fn list_keys(client: &crate::args::ClientArgs, path: &str) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    let resp = c.request("LIST", path, None).await?;
    crate::output::keys(&resp.body.unwrap_or_default());
    Ok(())
}

/// `GET path`, its `data` printed as a table.
pub(crate) async fn read_table(client: &crate::args::ClientArgs, path: &str) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    let resp = c.request("GET", path, None).await?;
    crate::output::table(&crate::output::rows(
        resp.body.as_ref().and_then(|b| b.get("data")),
    ));
    Ok(())
}

/// `DELETE path`, then `Success! Deleted <what>: <name>`.
pub(crate) async fn delete(
    client: &crate::args::ClientArgs,
    path: &str,
    what: &str,
    name: &str,
) -> anyhow::Result<()> {
    let c = crate::config::client(client)?;
    c.request("DELETE", path, None).await?;
    println!("Success! Deleted {what}: {name}");
    Ok(())
}

/// `KEY=VALUE` flag values (`--metadata`, `-custom-metadata`) as a map of strings.
pub(crate) fn string_pairs(
    flag: &str,
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.into())),
            None => Err(anyhow::anyhow!("{flag} {pair:?} is not KEY=VALUE")),
        })
        .collect()
}

/// `key=value` pairs into a JSON object; `key=@FILE` reads the value from a file. A key given
/// twice takes the later value.
pub(crate) fn parse_pairs(
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use anyhow::{Context as _, bail};
    let mut data = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{pair:?} is not key=value");
        };
        if k.is_empty() {
            bail!("{pair:?} has an empty key");
        }
        let value = match v.strip_prefix('@') {
            Some(file) => {
                std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
            }
            None => v.to_owned(),
        };
        data.insert(k.to_owned(), serde_json::Value::String(value));
    }
    Ok(data)
}

/// Vault's "No value found at …", exit code 2.
pub(crate) fn not_found(path: &str) -> ExitCode {
    eprintln!("No value found at {path}");
    ExitCode::from(2)
}
