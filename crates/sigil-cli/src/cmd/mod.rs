//! One module per command group.

mod audit;
mod group;
mod identity;
mod key;
mod kv;
mod operator;
mod policy;
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
        Command::Operator(c) => operator::run(c).await,
        Command::Audit(c) => audit::run(c).await,
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
