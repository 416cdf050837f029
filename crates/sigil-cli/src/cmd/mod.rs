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
