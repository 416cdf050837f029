//! Reloading a running server (SIGHUP, `sys/reload`): a new TLS identity for new connections,
//! new rate limits, reopened audit devices. Nothing is sealed and no connection is dropped:
//! a connection keeps the TLS session it has; only new handshakes see the new certificate.
//!
//! What the server reloads comes from a [`ReloadSource`] the composition root provides (the
//! CLI re-reads its configuration file); a source that fails changes nothing.

use std::sync::Arc;

use serde::Serialize;
use sha2::Digest as _;

use crate::api::AppState;
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

impl AppState {
    /// Reloads what the source gives, then reopens the audit devices. Blocking (file I/O).
    pub(crate) fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let (tls_reloaded, limits_changed, notes) = match &self.reload_source {
            None => (false, false, Vec::new()),
            Some(source) => {
                let loaded = source.load().map_err(ReloadError)?;
                let tls_reloaded = loaded.tls.is_some();
                if let Some(identity) = loaded.tls {
                    *self.tls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(identity);
                }
                let changed = self.limits.set(loaded.limits);
                self.connections
                    .set_per_address(loaded.limits.connections_per_address);
                (tls_reloaded, changed, loaded.notes)
            }
        };
        let audit_devices_reopened = self.node.core().map_or(0, |core| core.audit().reopen());
        let report = ReloadReport {
            tls_reloaded,
            tls_certificate_sha256: certificate_sha256(&self.tls_identity()),
            limits_changed,
            audit_devices_reopened,
            notes,
        };
        tracing::info!(
            tls_reloaded = report.tls_reloaded,
            tls_certificate_sha256 = %report.tls_certificate_sha256,
            limits_changed = report.limits_changed,
            audit_devices_reopened = report.audit_devices_reopened,
            notes = ?report.notes,
            "reloaded"
        );
        Ok(report)
    }
}

fn certificate_sha256(identity: &TlsIdentity) -> String {
    identity
        .leaf_der()
        .map(|der| {
            sha2::Sha256::digest(der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default()
}
