//! What every request shares: the node, limits, channels, the TLS identity and the
//! client-certificate trust built from the certificate roles.

use std::sync::Arc;

use sha2::Digest as _;
use sigil_core::Node;

use crate::auth;
use crate::channels::Channels;
use crate::limits::Limits;
use crate::reload::{ReloadError, ReloadReport};
use crate::tls::{ClientTrust, TlsIdentity};

pub(crate) struct AppState {
    /// The TLS identity new connections get (replaced by a reload).
    pub(crate) tls: std::sync::RwLock<Arc<crate::tls::TlsIdentity>>,
    /// The client-certificate trust for the current certificate roles, by their generation
    /// and the identity it was built on.
    pub(crate) tls_cache: std::sync::Mutex<Option<TrustCache>>,
    pub(crate) node: Node,
    pub(crate) fresh: auth::Freshness,
    /// Verifies request signatures, in batches under load.
    pub(crate) signatures: crate::signatures::Verifier,
    pub(crate) limits: Limits,
    pub(crate) connections: Arc<crate::connections::Connections>,
    pub(crate) channels: Channels,
    /// Where a reload gets what may change (`None`: only the audit devices are reopened).
    pub(crate) reload_source: Option<Arc<dyn crate::reload::ReloadSource>>,
    /// One reload at a time.
    pub(crate) reloading: std::sync::Mutex<()>,
    /// The cluster this node is a member of, with raft storage.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where a streamed backup spools its entries (`None`: in memory).
    pub(crate) spool_dir: Option<std::path::PathBuf>,
}

/// A built client-certificate trust and what it was built from.
pub(crate) struct TrustCache {
    generation: u64,
    identity: Arc<crate::tls::TlsIdentity>,
    trust: Arc<ClientTrust>,
}

impl AppState {
    /// Makes the core current when this node has just started leading, and loads the replay
    /// marks the previous leader stored (the requests that wrote stay refused here). `true`
    /// when this node leads with a current core. Blocking.
    pub(crate) fn activate(&self) -> bool {
        use crate::cluster::Activation;
        let Some(cluster) = &self.cluster else {
            return true;
        };
        match cluster.activate(&self.node) {
            Activation::Active => true,
            Activation::Follower | Activation::CatchingUp | Activation::Failed => false,
            Activation::Started => {
                self.load_replay_marks();
                true
            }
        }
    }

    /// Loads the stored replay marks into the replay cache (after the core was started again
    /// from storage another node or a restore wrote): the requests that wrote stay refused.
    pub(crate) fn load_replay_marks(&self) {
        if let Some(core) = self.node.core() {
            let now = sigil_engine::timefmt::unix_now();
            match core.replay_marks(now) {
                Ok(marks) => self.fresh.replay.restore(&marks, now),
                Err(e) => tracing::warn!(error = %e, "loading the replay marks failed"),
            }
        }
    }

    /// The core, when it may do background work (sweepers): unsealed and, in a cluster,
    /// the active leader's.
    pub(crate) fn active_core(&self) -> Option<Arc<sigil_core::Core>> {
        match &self.cluster {
            Some(c) if !c.is_active() => None,
            _ => self.node.core(),
        }
    }

    /// The identity new connections get.
    pub(crate) fn tls_identity(&self) -> Arc<crate::tls::TlsIdentity> {
        Arc::clone(&self.tls.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The client-certificate trust for the current roles (rebuilt only when they or the
    /// server's identity change; an unchanged set costs one atomic read and a pointer
    /// comparison). `None` while sealed.
    pub(crate) fn client_trust(
        &self,
        identity: &Arc<crate::tls::TlsIdentity>,
    ) -> Option<Arc<ClientTrust>> {
        let core = self.node.core()?;
        let generation = core.cert_generation();
        let mut cache = self.tls_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref()
            && c.generation == generation
            && Arc::ptr_eq(&c.identity, identity)
        {
            return Some(Arc::clone(&c.trust));
        }
        let trust = core.cert_trust();
        let built = identity.with_client_roots(&trust).unwrap_or_else(|e| {
            tracing::error!(error = %e, "certificate roles unusable; not asking for client certificates");
            ClientTrust {
                config: Arc::clone(&identity.server_config),
                roles: Vec::new(),
            }
        });
        let built = Arc::new(built);
        *cache = Some(TrustCache {
            generation: trust.generation,
            identity: Arc::clone(identity),
            trust: Arc::clone(&built),
        });
        Some(built)
    }

    /// The TLS configuration for a new connection: client certificates are requested once
    /// certificate roles exist (and only while unsealed).
    pub(crate) fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        let identity = self.tls_identity();
        match self.client_trust(&identity) {
            Some(t) => Arc::clone(&t.config),
            None => Arc::clone(&identity.server_config),
        }
    }
}

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
