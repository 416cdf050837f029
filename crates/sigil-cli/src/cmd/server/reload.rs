//! What SIGHUP and `sigil operator reload` re-read: the configuration file (flags still win
//! over it), the TLS certificate and key files, and the log level. Settings that cannot
//! change while the server runs are compared with the running ones and reported.

use sigil_server::{ReloadSource, Reloaded, TlsIdentity};
use tracing_subscriber::{EnvFilter, Registry, reload};

use super::plan::{Plan, plan};
use crate::args::ServerArgs;

/// Changes the log filter of the running process.
pub(super) type LogControl = reload::Handle<EnvFilter, Registry>;

/// The log filter: the file's `log_level`, else `SIGIL_LOG`, else `info`.
pub(super) fn log_filter(file_level: Option<&str>) -> (EnvFilter, String) {
    if let Some(level) = file_level
        && let Ok(filter) = EnvFilter::try_new(quiet_raft(level))
    {
        return (filter, level.to_owned());
    }
    match std::env::var("SIGIL_LOG") {
        Ok(level) => match EnvFilter::try_new(quiet_raft(&level)) {
            Ok(filter) => (filter, level),
            Err(_) => (EnvFilter::new(quiet_raft("info")), "info".into()),
        },
        Err(_) => (EnvFilter::new(quiet_raft("info")), "info".into()),
    }
}

/// openraft narrates every election and membership change at `info` (with whole state dumps):
/// only its warnings, unless the directives name it (`SIGIL_LOG=info,openraft=info`).
fn quiet_raft(level: &str) -> String {
    if level.contains("openraft") || level.trim() == "off" {
        level.to_owned()
    } else {
        format!("{level},openraft=warn")
    }
}

/// The configuration as the server started with it, and how to re-read it.
#[derive(Debug)]
pub(super) struct ConfigReload {
    args: ServerArgs,
    /// The settings a restart is needed for, as running.
    fixed: Vec<(&'static str, String)>,
    log: LogControl,
    /// The log filter as running.
    level: std::sync::Mutex<String>,
}

impl ConfigReload {
    pub(super) fn new(args: ServerArgs, running: &Plan, log: LogControl, level: String) -> Self {
        ConfigReload {
            args,
            fixed: fixed(running),
            log,
            level: std::sync::Mutex::new(level),
        }
    }
}

/// The settings that only a restart applies, named as in the configuration file.
fn fixed(plan: &Plan) -> Vec<(&'static str, String)> {
    let raft = |f: &dyn Fn(&super::plan::RaftPlan) -> String| {
        plan.raft.as_ref().map_or_else(String::new, f)
    };
    vec![
        ("storage.path", format!("{:?}", plan.data_dir)),
        ("storage.cache_mb", format!("{}", plan.cache_bytes >> 20)),
        (
            "storage.performance_multiplier",
            raft(&|r| format!("{:?}", r.timing.heartbeat)),
        ),
        (
            "storage.snapshot_threshold",
            raft(&|r| r.timing.snapshot_every.to_string()),
        ),
        (
            "storage.trailing_logs",
            raft(&|r| r.timing.keep_after_snapshot.to_string()),
        ),
        (
            "storage.max_entry_size",
            raft(&|r| r.max_entry_bytes.to_string()),
        ),
        ("listener.address", plan.listen.to_string()),
        ("listener.names", format!("{:?}", plan.names)),
        (
            "listener.metrics_address",
            format!("{:?}", plan.metrics_listen),
        ),
        ("api_addr", format!("{:?}", plan.api_addr)),
        ("disable_mlock", plan.allow_unlocked_memory.to_string()),
        ("[[audit]]", format!("{:?}", plan.audit)),
    ]
}

/// The TLS identity the plan names, read again: the operator's files, or the data
/// directory's generated ones (never generated anew here). A transient server's certificate
/// lives in memory only.
fn tls(plan: &Plan) -> anyhow::Result<Option<TlsIdentity>> {
    use anyhow::Context as _;
    let identity = match (&plan.tls_files, &plan.data_dir) {
        (Some((cert, key, ca)), _) => TlsIdentity::from_files(cert, key, ca.as_deref()),
        (None, Some(dir)) => {
            let dir = dir.join("tls");
            TlsIdentity::from_files(
                &dir.join("server.pem"),
                &dir.join("server.key"),
                Some(&dir.join("ca.pem")),
            )
        }
        (None, None) => return Ok(None),
    };
    identity
        .map(Some)
        .context("the TLS certificate and key cannot be used")
}

impl ReloadSource for ConfigReload {
    fn load(&self) -> Result<Reloaded, String> {
        // Everything is read and checked before anything is applied.
        let plan = plan(&self.args).map_err(|e| format!("{e:#}"))?;
        let tls = tls(&plan).map_err(|e| format!("{e:#}"))?;
        let mut notes: Vec<String> = fixed(&plan)
            .into_iter()
            .zip(&self.fixed)
            .filter(|((_, now), (_, was))| now != was)
            .map(|((key, now), (_, was))| {
                format!("{key} changed ({was} → {now}): not applied, restart to apply")
            })
            .collect();
        if tls.is_none() {
            notes.push(
                "TLS: a transient server's certificate is generated in memory; nothing to re-read"
                    .into(),
            );
        }
        let (filter, level) = log_filter(plan.log_level.as_deref());
        let mut running = self.level.lock().unwrap_or_else(|e| e.into_inner());
        if *running != level {
            match self.log.reload(filter) {
                Ok(()) => {
                    notes.push(format!("log level: {running} → {level}"));
                    *running = level;
                }
                Err(e) => notes.push(format!("log level not changed: {e}")),
            }
        }
        Ok(Reloaded {
            tls,
            limits: plan.limits,
            notes,
        })
    }
}
