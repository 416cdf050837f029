//! The server configuration file (TOML). Every key is documented in `docs/configuration.md`.
//!
//! ```toml
//! api_addr = "https://sigil.example.com:8200"   # what clients use (printed as SIGIL_ADDR)
//! disable_mlock = false                        # as Vault; true = --allow-unlocked-memory
//!
//! [storage]
//! type = "file"                                # the embedded redb storage; "raft": a cluster
//! path = "/var/lib/sigil"
//! # cache_mb = 64                              # redb's page cache, MiB (memory stays bounded)
//! # node_id = "sigil-1"                        # raft: this node's name
//! # cluster_addr = "10.0.0.1:8201"             # raft: the cluster listener
//! # performance_multiplier = 1                 # raft: 1–10, slows Raft's clock (as Vault's)
//! # max_entry_size = 1048576                   # raft: bytes one write may carry (as Vault's)
//! # snapshot_threshold = 10000                 # raft: entries between snapshots
//! # trailing_logs = 1000                       # raft: entries kept behind a snapshot
//! # [[storage.retry_join]]                     # raft: where to ask to join
//! # leader_api_addr = "https://10.0.0.2:8200"
//! # leader_ca_cert_file = "/etc/sigil/ca.pem"
//!
//! [[snapshot]]                                 # optional: scheduled snapshots
//! path = "/var/backups/sigil"
//! interval = "1h"
//! retain = 24
//!
//! [listener]
//! address = "0.0.0.0:8200"
//! tls_cert_file = "/etc/sigil/server.pem"      # optional: without both, a CA is generated
//! tls_key_file = "/etc/sigil/server.key"       #   once and kept in <storage.path>/tls
//! tls_ca_file = "/etc/sigil/ca.pem"     # optional: printed as SIGIL_CACERT
//! names = ["sigil.example.com"]                # names clients address; also in the cert
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// A parsed configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub(crate) storage: Storage,
    #[serde(default)]
    pub(crate) listener: Listener,
    pub(crate) api_addr: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub(crate) disable_mlock: bool,
    /// `[[audit]]` devices.
    #[serde(default)]
    pub(crate) audit: Vec<Audit>,
    /// `[limits]`, requests per second (bursts are twice that).
    #[serde(default)]
    pub(crate) limits: Limits,
    /// What is logged, as `SIGIL_LOG` (`info`, `debug`, `warn,sigil_server=debug`, …); over
    /// `SIGIL_LOG` when set. Reloaded by SIGHUP.
    pub(crate) log_level: Option<toml::Spanned<String>>,
    /// `[[snapshot]]` schedules.
    #[serde(default)]
    pub(crate) snapshot: Vec<Snapshot>,
}

/// `[[snapshot]]`: a snapshot of the whole storage every `interval` into `path`, the newest
/// `retain` kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    pub(crate) path: PathBuf,
    pub(crate) interval: String,
    #[serde(default = "default_retain")]
    pub(crate) retain: usize,
}

fn default_retain() -> usize {
    24
}

impl Snapshot {
    pub(crate) fn schedule(&self) -> Result<sigil_server::SnapshotSchedule, String> {
        sigil_server::SnapshotSchedule::new(self.path.clone(), &self.interval, self.retain)
    }
}

/// `[limits]`: requests per second; a missing key keeps the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub(crate) identity: Option<f64>,
    pub(crate) address: Option<f64>,
    pub(crate) unauthenticated: Option<f64>,
    pub(crate) auth_failures: Option<f64>,
    pub(crate) connections_per_address: Option<usize>,
    /// The largest request body, in bytes (Vault's `max_request_size`).
    pub(crate) max_request_bytes: Option<usize>,
}

/// One `[[audit]]` device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Audit {
    /// Defaults to the type.
    pub(crate) name: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: toml::Spanned<AuditKind>,
    /// For `file`.
    pub(crate) path: Option<PathBuf>,
    /// For `socket`: `tcp:HOST:PORT` or `unix:/PATH`.
    pub(crate) address: Option<String>,
    /// For `file`: rotate once the file reaches this many bytes.
    pub(crate) rotate_bytes: Option<u64>,
    /// For `file` with `rotate_bytes`: rotated files kept (default 10).
    pub(crate) rotate_keep: Option<u32>,
}

/// Rotated audit files kept when `rotate_keep` is not given.
const DEFAULT_ROTATE_KEEP: u32 = 10;

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuditKind {
    File,
    Socket,
}

/// `[storage]`. A plain struct (not a tagged enum) so that errors keep their line numbers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Storage {
    #[serde(rename = "type")]
    pub(crate) kind: StorageKind,
    pub(crate) path: PathBuf,
    /// MiB of redb's page cache (file and raft): what the store may hold in memory beyond
    /// the pending writes and the value cache. Default [`DEFAULT_CACHE_MB`].
    pub(crate) cache_mb: Option<u32>,
    /// Raft: this node's name.
    pub(crate) node_id: Option<String>,
    /// Raft: where the cluster listener binds (`host:port`).
    pub(crate) cluster_addr: Option<SocketAddr>,
    /// Raft: members to ask to join, when this node is in no cluster yet.
    #[serde(default)]
    pub(crate) retry_join: Vec<RetryJoin>,
    /// Raft: how many times slower than the default its clock runs (heartbeats, election
    /// timeouts), 1–10, default 1 (Vault's `performance_multiplier`).
    pub(crate) performance_multiplier: Option<u32>,
    /// Raft: the most key and value bytes one write may carry (Vault's `max_entry_size`),
    /// default 1 MiB.
    pub(crate) max_entry_size: Option<u64>,
    /// Raft: entries applied between snapshots (Vault's `snapshot_threshold`).
    pub(crate) snapshot_threshold: Option<u64>,
    /// Raft: entries kept in the log behind a snapshot (Vault's `trailing_logs`).
    pub(crate) trailing_logs: Option<u64>,
}

/// redb's page cache by default, MiB (redb's own default is 1 GiB, which a LIST over a large
/// store used to fill).
pub(crate) const DEFAULT_CACHE_MB: u32 = 64;

/// `[[storage.retry_join]]`, as Vault's.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryJoin {
    /// A member's API address (`https://host:port`).
    pub(crate) leader_api_addr: String,
    /// The CA certificate its API certificate is from.
    pub(crate) leader_ca_cert_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StorageKind {
    /// The embedded redb storage.
    File,
    /// Integrated Raft storage (a cluster).
    Raft,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    #[serde(default = "default_address")]
    pub(crate) address: SocketAddr,
    pub(crate) tls_cert_file: Option<toml::Spanned<PathBuf>>,
    pub(crate) tls_key_file: Option<toml::Spanned<PathBuf>>,
    pub(crate) tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) names: Vec<String>,
    /// Plain-HTTP Prometheus listener (`/metrics`).
    pub(crate) metrics_address: Option<SocketAddr>,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            address: default_address(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            names: Vec::new(),
            metrics_address: None,
        }
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8200))
}

impl ServerFile {
    /// Reads and checks `path`. Errors name the file, the line and what was expected.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a configuration's `text`; errors name `name` (the file), the line and
    /// what was expected. (Also the fuzz target's way in: fuzz/fuzz_targets/server_config.rs.)
    pub(crate) fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        let path = std::path::Path::new(name);
        let file: ServerFile = toml::from_str(text).map_err(|e| {
            if looks_like_vault_hcl(text) {
                anyhow::anyhow!(
                    "{}: this looks like a Vault (HCL) configuration; Sigil's configuration is TOML: see docs/configuration.md ([storage], [listener], [[audit]] tables)",
                    path.display()
                )
            } else {
                anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end())
            }
        })?;
        let line = |span: std::ops::Range<usize>| {
            text[..span.start.min(text.len())].lines().count().max(1)
        };
        let l = &file.listener;
        match (&l.tls_cert_file, &l.tls_key_file) {
            (Some(one), None) | (None, Some(one)) => bail!(
                "{}: line {}: [listener] needs both tls_cert_file and tls_key_file, or neither (then a CA is generated in the storage path)",
                path.display(),
                line(one.span())
            ),
            _ => {}
        }
        if let Some(addr) = &file.api_addr
            && api_authority(addr.get_ref()).is_none()
        {
            bail!(
                "{}: line {}: api_addr must be https://HOST[:PORT]",
                path.display(),
                line(addr.span())
            );
        }
        if let Some(level) = &file.log_level
            && let Err(e) = check_log_level(level.get_ref())
        {
            bail!(
                "{}: line {}: log_level: {e} (expected e.g. \"info\", \"debug\" or \"warn,sigil_server=debug\")",
                path.display(),
                line(level.span())
            );
        }
        for a in &file.audit {
            a.device().map_err(|e| {
                anyhow::anyhow!(
                    "{}: line {}: [[audit]] {e}",
                    path.display(),
                    line(a.kind.span())
                )
            })?;
        }
        Ok(file)
    }
}

/// A log filter: levels (`info`) and `target=level` directives. A bare word that is not a
/// level would be read as a target name and silence everything else: refused.
pub(crate) fn check_log_level(level: &str) -> Result<(), String> {
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err("an empty directive (write \"off\" to log nothing)".into());
        }
        if !directive.contains('=')
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(format!(
                "{directive:?} is not a level (trace, debug, info, warn, error, off)"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether `text` has a Vault configuration's blocks (`storage "raft" {`, `listener "tcp" {`, …).
fn looks_like_vault_hcl(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        [
            "storage",
            "listener",
            "seal",
            "telemetry",
            "service_registration",
            "ha_storage",
        ]
        .iter()
        .any(|block| {
            line.strip_prefix(block)
                .is_some_and(|rest| rest.trim_start().starts_with('"'))
        })
    })
}

impl Audit {
    /// The device this entry configures.
    pub(crate) fn device(&self) -> Result<sigil_server::AuditDevice, String> {
        let kind = *self.kind.get_ref();
        let sink = match (kind, &self.path, &self.address) {
            (AuditKind::File, Some(p), None) => sigil_server::AuditSink::File(p.clone()),
            (AuditKind::Socket, None, Some(a)) => parse_socket(a)?,
            (AuditKind::File, _, _) => {
                return Err("type \"file\" takes `path` (and no `address`)".into());
            }
            (AuditKind::Socket, _, _) => {
                return Err("type \"socket\" takes `address` (and no `path`)".into());
            }
        };
        let rotate = match (kind, self.rotate_bytes, self.rotate_keep) {
            (_, None, None) => None,
            (AuditKind::Socket, _, _) => {
                return Err("rotate_bytes and rotate_keep are for type \"file\"".into());
            }
            (AuditKind::File, None, Some(_)) => {
                return Err("rotate_keep needs rotate_bytes".into());
            }
            (AuditKind::File, Some(bytes), keep) => {
                let keep = keep.unwrap_or(DEFAULT_ROTATE_KEEP);
                if bytes < 64 * 1024 {
                    return Err("rotate_bytes must be at least 65536 (64 KiB)".into());
                }
                if !(1..=10_000).contains(&keep) {
                    return Err("rotate_keep must be between 1 and 10000".into());
                }
                Some(sigil_core::audit::Rotation { bytes, keep })
            }
        };
        let name = self.name.clone().unwrap_or_else(|| match kind {
            AuditKind::File => "file".into(),
            AuditKind::Socket => "socket".into(),
        });
        Ok(sigil_server::AuditDevice { name, sink, rotate })
    }
}

/// `tcp:HOST:PORT` or `unix:/PATH`.
pub(crate) fn parse_socket(address: &str) -> Result<sigil_server::AuditSink, String> {
    match address.split_once(':') {
        Some(("tcp", hp)) if hp.contains(':') => Ok(sigil_server::AuditSink::Tcp(hp.to_owned())),
        Some(("unix", p)) if p.starts_with('/') => Ok(sigil_server::AuditSink::Unix(p.into())),
        _ => Err(format!(
            "address {address:?} must be tcp:HOST:PORT or unix:/PATH"
        )),
    }
}

/// The host and port of an `https://HOST[:PORT]` address (443 when none is given).
pub(crate) fn api_authority(addr: &str) -> Option<(String, u16)> {
    let rest = addr.strip_prefix("https://")?;
    sigil_server::parse_authority(rest.split('/').next()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<ServerFile> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sigil.toml");
        std::fs::write(&p, text).unwrap();
        ServerFile::load(&p)
    }

    /// The sample deploy/systemd/sigil.toml is a valid configuration, with rotation.
    #[test]
    fn the_sample_systemd_configuration_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/sigil.toml");
        let f = ServerFile::load(&path).unwrap();
        assert_eq!(f.storage.path, Path::new("/var/lib/sigil"));
        let audit = f.audit[0].device().unwrap();
        assert_eq!(
            audit.rotate,
            Some(sigil_core::audit::Rotation {
                bytes: 256 << 20,
                keep: 20
            })
        );
        assert_eq!(f.log_level.unwrap().into_inner(), "info");
    }

    #[test]
    fn log_levels_are_levels_or_directives() {
        for good in [
            "info",
            "debug",
            "warn,sigil_server=debug",
            "off",
            "sigil_core=trace",
        ] {
            check_log_level(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["verbose", "info,loud", "", "sigil_server=loudest"] {
            assert!(check_log_level(bad).is_err(), "{bad:?} accepted");
        }
        let err = load("log_level = \"verbose\"\n[storage]\ntype = \"file\"\npath = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("verbose"), "{err}");
    }

    #[test]
    fn full_file_parses() {
        let f = load(
            "api_addr = \"https://s.example:8200\"\ndisable_mlock = true\n[storage]\ntype = \"file\"\npath = \"/var/lib/sigil\"\n[listener]\naddress = \"0.0.0.0:8300\"\nnames = [\"s.example\"]\n",
        )
        .unwrap();
        assert_eq!(f.storage.kind, StorageKind::File);
        assert_eq!(f.storage.path, Path::new("/var/lib/sigil"));
        assert_eq!(f.listener.address.port(), 8300);
        assert!(f.disable_mlock);
    }

    #[test]
    fn fail_bad_files_name_the_line_and_what_was_expected() {
        for (text, needles) in [
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\nbogus = 1\n",
                &["line 4", "bogus"][..],
            ),
            ("[storage]\ntype = \"s3\"\n", &["line 2", "file"]),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[listener]\naddress = \"nowhere\"\n",
                &["line 5", "address"],
            ),
            (
                "api_addr = 3\n[storage]\ntype = \"file\"\npath = \"/x\"\n",
                &["line 1", "string"],
            ),
            ("[listener]\naddress = \"127.0.0.1:1\"\n", &["storage"]),
            ("[storage\n", &["line 1"]),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[listener]\ntls_cert_file = \"/c\"\n",
                &["line 5", "tls_key_file"],
            ),
            (
                "api_addr = \"http://x\"\n[storage]\ntype = \"file\"\npath = \"/x\"\n",
                &["line 1", "https://"],
            ),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[[audit]]\ntype = \"socket\"\naddress = \"udp:1\"\n",
                &["line 5", "tcp:HOST:PORT"],
            ),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[[audit]]\ntype = \"file\"\n",
                &["line 5", "path"],
            ),
            (
                "[storage]\ntype = \"file\"\npath = \"/x\"\n[[audit]]\ntype = \"syslog\"\n",
                &["line 5", "file"],
            ),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains("sigil.toml"), "{e}");
            for n in needles {
                assert!(e.contains(n), "{text:?}: {e} lacks {n}");
            }
        }
    }
}
