//! `sigil run` and `sigil inject`: secrets into a command's environment (never onto disk), or
//! a template rendered once.

use std::future::Future;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use sigil_client::Client;
use zeroize::Zeroizing;

use crate::reference::{Reference, parse_env_lines};
use crate::template::{Fetched, Template, render_fetching};

/// Environment variables with secret values.
pub type Env = Vec<(String, Zeroizing<String>)>;

/// How long a command stopped for a restart gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Renders `text` once as `client`: the output (for `sigil inject`).
pub async fn render_once(
    client: &Arc<Client>,
    name: &str,
    text: &str,
) -> Result<Zeroizing<String>, String> {
    let template = Template::parse(name, text)?;
    let mut fetched = Fetched::new();
    render_fetching(&template, &mut fetched, |dep| {
        let client = Arc::clone(client);
        async move {
            let (method, body) = dep.request();
            client
                .request(method, &dep.path, body.as_ref())
                .await
                .map(|a| a.body.unwrap_or(Value::Null))
                .map_err(|e| e.to_string())
        }
    })
    .await
    .map(|(text, _)| text)
}

/// The environment `sigil run` gives its command: each `NAME=PATH#FIELD` of `refs`, then each
/// env file (a template whose output is `NAME=value` lines), read now.
pub async fn resolve_env(
    client: &Arc<Client>,
    refs: &[(String, Reference)],
    env_files: &[(String, String)],
) -> Result<Env, String> {
    let mut env = Env::new();
    for (name, r) in refs {
        env.push((name.clone(), r.read(client).await?));
    }
    for (name, text) in env_files {
        let rendered = render_once(client, name, text).await?;
        env.extend(parse_env_lines(&rendered).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(env)
}

fn spawn(command: &[String], env: &Env) -> Result<Child, String> {
    let (program, args) = command
        .split_first()
        .ok_or("no command to run: sigil run [OPTIONS] -- COMMAND [ARGS]")?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))
}

fn signal(child_pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(child_pid as i32) {
        let _ = kill_process(pid, signal);
    }
}

/// The exit code a shell reports for `status`.
fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Runs `command` with `env` until it exits (its exit code), passing on SIGINT and SIGTERM.
/// With `watch`, `reload` is called every `watch` period and the command restarted (SIGTERM,
/// then SIGKILL after 10 s) when the environment it returns differs.
pub async fn run<R, Fut>(
    command: &[String],
    mut env: Env,
    watch: Option<Duration>,
    mut reload: R,
) -> Result<i32, String>
where
    R: FnMut() -> Fut,
    Fut: Future<Output = Result<Env, String>>,
{
    use tokio::signal::unix::{SignalKind, signal as on};
    let mut interrupt = on(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = on(SignalKind::terminate()).map_err(|e| e.to_string())?;
    loop {
        let child = spawn(command, &env)?;
        let pid = child.id();
        let mut exited = tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait()
        });
        let mut ticker =
            watch.map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
        let restart = loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = &mut exited => {
                    let status = status.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                    return Ok(code_of(status));
                }
                _ = interrupt.recv() => signal(pid, Signal::INT),
                _ = terminate.recv() => signal(pid, Signal::TERM),
                () = tick => match reload().await {
                    Ok(new) if !same(&new, &env) => break new,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the secrets again; the command keeps its environment"),
                },
            }
        };
        tracing::info!("a secret changed: restarting the command");
        signal(pid, Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, &mut exited).await.is_err() {
            signal(pid, Signal::KILL);
            let _ = exited.await;
        }
        env = restart;
    }
}

fn same(a: &Env, b: &Env) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && va.as_str() == vb.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
            .collect()
    }

    #[tokio::test]
    async fn the_command_gets_the_environment_and_its_exit_code_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("printf %s \"$SECRET\" > {}; exit 7", out.display());
        let code = run(
            &["sh".into(), "-c".into(), script],
            env(&[("SECRET", "s3cret")]),
            None,
            || async { Ok(Env::new()) },
        )
        .await
        .unwrap();
        assert_eq!(code, 7);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "s3cret");
    }

    #[tokio::test]
    async fn watching_restarts_the_command_when_a_value_changes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // Each start appends its value; the second start exits on its own.
        let script = format!(
            "echo \"$V\" >> {0}; if [ \"$V\" = two ]; then exit 0; fi; sleep 30",
            log.display()
        );
        let mut calls = 0;
        let code = run(
            &["sh".into(), "-c".into(), script],
            env(&[("V", "one")]),
            Some(Duration::from_millis(200)),
            || {
                calls += 1;
                let v = if calls < 2 { "one" } else { "two" };
                async move { Ok(env(&[("V", v)])) }
            },
        )
        .await
        .unwrap();
        assert_eq!(code, 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn a_missing_command_is_an_error() {
        assert!(spawn(&[], &Env::new()).is_err());
        assert!(
            spawn(&["/nonexistent/x".into()], &Env::new())
                .unwrap_err()
                .contains("cannot run")
        );
    }
}
