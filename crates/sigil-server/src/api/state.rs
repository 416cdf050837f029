//! What every request shares: the node, limits, channels, the TLS identity and the
//! client-certificate trust built from the certificate roles.

use std::sync::Arc;

use sigil_core::Node;

use crate::auth;
use crate::channels::Channels;
use crate::limits::Limits;
use crate::tls::ClientTrust;

pub(crate) struct AppState {
    /// The TLS identity new connections get (replaced by a reload).
    pub(crate) tls: std::sync::RwLock<Arc<crate::tls::TlsIdentity>>,
    /// The client-certificate trust for the current certificate roles, by their generation
    /// and the identity it was built on.
    pub(crate) tls_cache: std::sync::Mutex<Option<TrustCache>>,
    pub(crate) node: Node,
    pub(crate) fresh: auth::Freshness,
    pub(crate) limits: Limits,
    pub(crate) connections: Arc<crate::connections::Connections>,
    pub(crate) channels: Channels,
    /// Where a reload gets what may change (`None`: only the audit devices are reopened).
    pub(crate) reload_source: Option<Arc<dyn crate::reload::ReloadSource>>,
    /// One reload at a time.
    pub(crate) reloading: std::sync::Mutex<()>,
}

/// A built client-certificate trust and what it was built from.
pub(crate) struct TrustCache {
    generation: u64,
    identity: Arc<crate::tls::TlsIdentity>,
    trust: Arc<ClientTrust>,
}

impl AppState {
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
