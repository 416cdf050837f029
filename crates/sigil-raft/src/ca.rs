//! The cluster's certificate authority: it issues each node the certificate it presents on the
//! cluster listener (for both ends of a connection), and nothing else.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

use crate::tls::ClusterTls;

/// A cluster CA: its certificate and the key that signs node certificates.
pub struct ClusterCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A node's certificate chain and key, in PEM.
pub struct NodeCredentials {
    /// The node certificate, then the CA's.
    pub chain_pem: String,
    /// The node's private key.
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials").finish_non_exhaustive()
    }
}

fn err(e: rcgen::Error) -> String {
    format!("cluster certificate: {e}")
}

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "Sigil cluster CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate every node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for the node called `name`, valid for the `hosts` (names or IP addresses)
    /// its peers dial, for serving and for connecting.
    pub fn issue(&self, name: &str, hosts: &[String]) -> Result<NodeCredentials, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(NodeCredentials {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The TLS credentials of the node called `name` at `hosts`, freshly issued.
    pub fn node_tls(&self, name: &str, hosts: &[String]) -> Result<ClusterTls, String> {
        let creds = self.issue(name, hosts)?;
        ClusterTls::from_pem(
            self.cert_pem.as_bytes(),
            creds.chain_pem.as_bytes(),
            creds.key_pem.as_bytes(),
        )
    }
}
