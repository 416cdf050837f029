//! Reloading a running server (SIGHUP, `sys/reload`): a new TLS identity for new connections,
//! new rate limits, reopened audit devices. Nothing is sealed and no connection is dropped:
//! a connection keeps the TLS session it has; only new handshakes see the new certificate.
//!
//! What the server reloads comes from a [`ReloadSource`] the composition root provides (the
//! CLI re-reads its configuration file); a source that fails changes nothing. The server's
//! state applies it (`api/state.rs`).

use serde::Serialize;

use crate::limits::RateLimits;
use crate::tls::TlsIdentity;

/// What may change while the server runs, as read again from its configuration.
#[derive(Debug)]
pub struct Reloaded {
    /// The TLS identity for new connections (`None`: keep the current one, e.g. a transient
    /// server's certificate, generated in memory).
    pub tls: Option<TlsIdentity>,
    /// Rate limits, body limit and connections per address.
    pub limits: RateLimits,
    /// What the source did itself or could not apply (a changed setting that needs a restart,
    /// a new log level), for the report.
    pub notes: Vec<String>,
}

/// Reads again what may change. Called on a blocking thread.
pub trait ReloadSource: Send + Sync + std::fmt::Debug + 'static {
    /// The settings as they are now, or why they cannot be used (nothing then changes).
    fn load(&self) -> Result<Reloaded, String>;
}

/// What a reload did: logged, and the answer of `sys/reload`.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Whether a TLS identity was loaded (new connections get it).
    pub tls_reloaded: bool,
    /// SHA-256 of the certificate new connections get, hex.
    pub tls_certificate_sha256: String,
    /// Whether the limits changed.
    pub limits_changed: bool,
    /// Audit devices reopened (0 while sealed).
    pub audit_devices_reopened: usize,
    /// Everything else worth knowing: settings that need a restart, the log level, …
    pub notes: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[error("reload refused, nothing changed: {0}")]
pub struct ReloadError(pub String);
