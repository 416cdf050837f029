//! `sigil`: run a server, manage keys, identities, policies and secrets.

mod args;
mod cmd;
mod config;
mod keyfile;
mod output;
mod server_config;

use std::process::ExitCode;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the request path
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;

/// `sigil … | head` closes the pipe before everything is printed. Rust ignores SIGPIPE, so the
/// next print panics; stop quietly instead, with the status a shell gives a process SIGPIPE
/// ended (128 + 13), as other command-line tools do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = args::Cli::parse_from(args::vault_style_flags(std::env::args_os()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cmd::run(cli));
    // Not a plain drop, which waits for every blocking task: one still waiting on storage
    // that will never answer (a Raft write without a quorum) would keep a stopped server
    // from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            // -output-policy: the request was not sent; its policy is the output.
            if let Some(policy) = e
                .downcast_ref::<sigil_client::ClientError>()
                .and_then(sigil_client::ClientError::sample_policy)
            {
                print!("{policy}");
                return ExitCode::SUCCESS;
            }
            // Nothing found is exit code 2, as Vault's CLI.
            if let Some(missing) = e.downcast_ref::<cmd::Missing>() {
                eprintln!("{missing}");
                return ExitCode::from(2);
            }
            eprintln!("Error: {e:#}");
            let not_found = e
                .downcast_ref::<sigil_client::ClientError>()
                .is_some_and(|c| c.status() == Some(404));
            ExitCode::from(if not_found { 2 } else { 1 })
        }
    }
}
