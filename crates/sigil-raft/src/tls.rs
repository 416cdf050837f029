//! Node-to-node TLS: TLS 1.3 only, both sides present a certificate from the cluster's CA.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A node's credentials on the cluster listener: the cluster CA it trusts, and its own
/// certificate chain and key (issued by that CA).
pub struct ClusterTls {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for ClusterTls {
    fn clone(&self) -> Self {
        ClusterTls {
            roots: Arc::clone(&self.roots),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ClusterTls {
    /// From PEM: the cluster CA certificate(s), this node's chain (leaf first) and its key.
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| format!("cluster CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("cluster CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the cluster CA file holds no certificate".into());
        }
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("node certificate: {e}"))?;
        if chain.is_empty() {
            return Err("the node certificate file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("node key: {e}"))?;
        Ok(ClusterTls {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The cluster listener's configuration: a client certificate from the cluster CA is
    /// required.
    pub(crate) fn server(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider())
                .build()
                .map_err(|e| e.to_string())?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// How this node connects to the others: it trusts only the cluster CA and presents its
    /// own certificate.
    pub(crate) fn client(&self) -> Result<rustls::ClientConfig, String> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}
