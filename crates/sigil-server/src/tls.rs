//! TLS 1.3. A transient server generates a CA in memory that signs its certificate; only the CA
//! certificate (public) is written out, for clients to trust. A persistent server generates the
//! same once and keeps it in its data directory (`ca.pem`, `server.pem`, `server.key` 0600), or
//! uses certificate and key files it is given.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sigil_core::CertTrust;
use zeroize::Zeroizing;

/// The TLS configuration for the current certificate roles, and one verifier per role.
pub(crate) struct ClientTrust {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) roles: Vec<(String, Arc<dyn rustls::server::danger::ClientCertVerifier>)>,
}

/// A server's TLS identity: the CA certificate clients should trust (PEM, public) and a rustls
/// server configuration holding the server's certificate chain and key.
pub struct TlsIdentity {
    /// The CA certificate in PEM, for `SIGIL_CACERT`.
    pub ca_pem: String,
    /// The TLS 1.3 server configuration (ALPN h2 and http/1.1), without client certificates.
    pub server_config: Arc<rustls::ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// The one crypto provider of the whole tree (DEPENDENCIES.md: never two).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificates and key as generated: everything needed to serve, and to keep on disk.
struct Generated {
    ca_pem: String,
    chain_pem: String,
    key_pem: Zeroizing<String>,
}

fn generate(names: &[String]) -> Result<Generated, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Sigil CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "Sigil server");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: Zeroizing::new(leaf_key.serialize_pem()),
    })
}

/// Why a TLS identity could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate or key file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The certificate and key do not make a TLS configuration.
    #[error("invalid certificate or key: {0}")]
    Config(String),
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn parse(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Config(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Config(
            "no certificate in the certificate file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Config(format!("private key: {e}")))?;
    Ok((chain, key))
}

fn config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn identity(ca_pem: String, chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
    let (chain, key) = parse(chain_pem, key_pem)?;
    Ok(TlsIdentity {
        server_config: config(&chain, &key, None)?,
        ca_pem,
        chain,
        key,
    })
}

impl TlsIdentity {
    /// The served certificate (the chain's first), DER.
    pub(crate) fn leaf_der(&self) -> Option<&[u8]> {
        self.chain.first().map(|c| c.as_ref())
    }

    /// Generates a CA and a server certificate valid for `names` (DNS names or IP addresses),
    /// in memory. The CA's private key is dropped once the server certificate is signed.
    pub fn generate(names: &[String]) -> Result<Self, TlsError> {
        let g = generate(names)?;
        identity(g.ca_pem, g.chain_pem.as_bytes(), g.key_pem.as_bytes())
    }

    /// The configuration that also asks for client certificates, verified in the handshake
    /// (chain, dates, CRLs) against the union of the certificate roles' CAs, and one verifier
    /// per role, to find (at every request) which role's CA actually issued a certificate.
    /// Clients without a certificate still connect (they sign their requests). Session
    /// resumption is off, so every connection is verified afresh.
    pub(crate) fn with_client_roots(&self, trust: &CertTrust) -> Result<ClientTrust, TlsError> {
        if trust.roles.is_empty() {
            return Ok(ClientTrust {
                config: Arc::clone(&self.server_config),
                roles: Vec::new(),
            });
        }
        let verifier = |cas: &[&Vec<u8>],
                        crls: Vec<CertificateRevocationListDer<'static>>,
                        anonymous: bool| {
            let mut roots = rustls::RootCertStore::empty();
            for ca in cas {
                roots
                    .add(CertificateDer::from((*ca).clone()))
                    .map_err(|e| TlsError::Config(format!("role CA: {e}")))?;
            }
            let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .with_crls(crls)
            .allow_unknown_revocation_status();
            if anonymous {
                b = b.allow_unauthenticated();
            }
            b.build()
                .map_err(|e| TlsError::Config(format!("client verifier: {e}")))
        };
        let crl = |c: &Option<Vec<u8>>| {
            c.iter()
                .map(|d| CertificateRevocationListDer::from(d.clone()))
                .collect::<Vec<_>>()
        };
        let all_cas: Vec<&Vec<u8>> = trust.roles.iter().map(|r| &r.ca).collect();
        let all_crls = trust.roles.iter().flat_map(|r| crl(&r.crl)).collect();
        let mut roles = Vec::with_capacity(trust.roles.len());
        for r in &trust.roles {
            roles.push((r.name.clone(), verifier(&[&r.ca], crl(&r.crl), false)?));
        }
        let mut config = (*config(
            &self.chain,
            &self.key,
            Some(verifier(&all_cas, all_crls, true)?),
        )?)
        .clone();
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ClientTrust {
            config: Arc::new(config),
            roles,
        })
    }

    /// Loads `dir/ca.pem`, `dir/server.pem` and `dir/server.key`, generating them on first
    /// use (the key file 0600). The CA's private key is never stored.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let (ca, chain, key) = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        if !key.exists() {
            let g = generate(names)?;
            write_new(&key, g.key_pem.as_bytes(), 0o600)?;
            // Public, but every file in the data directory is its owner's alone.
            write_new(&chain, g.chain_pem.as_bytes(), 0o600)?;
            write_new(&ca, g.ca_pem.as_bytes(), 0o600)?;
        }
        Self::from_files(&chain, &key, Some(&ca))
    }

    /// Uses a certificate chain and key from files (`ca` is what clients should trust, if
    /// known).
    pub fn from_files(chain: &Path, key: &Path, ca: Option<&Path>) -> Result<Self, TlsError> {
        let chain_pem = std::fs::read(chain).map_err(|e| file_error(chain, e))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(key)
                .map_err(|e| file_error(key, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(file = %key.display(), "TLS key file is readable by other users; chmod 600 it");
            }
        }
        let key_pem = Zeroizing::new(std::fs::read(key).map_err(|e| file_error(key, e))?);
        let ca_pem = match ca {
            Some(p) => std::fs::read_to_string(p).map_err(|e| file_error(p, e))?,
            None => String::new(),
        };
        identity(ca_pem, &chain_pem, &key_pem)
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(path, e))
}
