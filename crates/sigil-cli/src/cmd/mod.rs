//! One module per command group.

mod agent;
mod audit;
mod data;
mod e2e;
mod generic;
mod group;
mod identity;
mod key;
mod kv;
mod lease;
mod operator;
mod pairs;
mod policy;
mod raft;
mod secrets;
mod server;
mod typed;

use std::process::ExitCode;

pub(crate) use data::Missing;

use crate::args::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(c) => key::run(c),
        Command::Server(c) => server::run(c).await,
        Command::Agent { config } => agent::agent(&config).await,
        Command::Run(args) => agent::run(args).await,
        Command::CsiProvider { socket, client } => agent::csi_provider(&socket, &client).await,
        Command::Inject {
            input,
            output,
            perms,
            client,
        } => agent::inject(input.as_deref(), output.as_deref(), &perms, &client).await,
        Command::Identity(c) => identity::run(c).await,
        Command::Group(c) => group::run(c).await,
        Command::Policy(c) => policy::run(c).await,
        Command::Kv(c) => kv::run(c).await,
        Command::Secrets(c) => secrets::run(c).await,
        Command::E2e(c) => e2e::run(c).await,
        Command::Wrap(w) => e2e::wrap(w).await,
        Command::Unwrap {
            id,
            saved,
            format,
            trust,
            client,
        } => e2e::unwrap(id.as_deref(), saved.as_deref(), format, &trust, &client).await,
        Command::Operator(c) => operator::run(c).await,
        Command::Status { format, client } => operator::status(format, &client).await,
        Command::Version => {
            println!("Sigil v{}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            // Into memory first: clap_complete panics when it cannot write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut crate::args::Cli::command(),
                "sigil",
                &mut script,
            );
            // A closed pipe (`| head`) is not an error.
            let _ = std::io::stdout().write_all(&script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(c) => audit::run(c).await,
        Command::Lease(c) => lease::run(c).await,
        Command::Read {
            path,
            format,
            field,
            stale,
            wrap,
            client,
        } => generic::read(&path, format, field.as_deref(), stale, &wrap, &client).await,
        Command::Write {
            path,
            pairs,
            force,
            format,
            field,
            wrap,
            client,
        } => {
            if pairs.is_empty() && !force {
                anyhow::bail!(
                    "give data (key=value, key=@FILE, - for JSON on standard input) or use -force to write with none"
                );
            }
            generic::write(&path, &pairs, format, field.as_deref(), &wrap, &client).await
        }
        Command::List { path, show, client } => generic::list(&path, &show, &client).await,
        Command::Delete { path, client } => generic::delete(&path, &client).await,
    }
}
