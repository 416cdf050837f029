//! Node-to-node TLS: TLS 1.3 only, both sides present their node certificate, and each side
//! accepts only the certificates of the cluster's members — pinned by their SHA-256 in the
//! Raft membership, which only an admin's approval changes. There is no cluster CA whose key
//! could mint a member: a node is trusted because the cluster admitted that exact key.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The SHA-256 of a certificate's DER, in lower-case hex: how a member's certificate is
/// pinned.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A node's own certificate and key on the cluster listener (self-signed: peers pin it).
pub struct NodeIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

const CERT_FILE: &str = "node.pem";
const KEY_FILE: &str = "node.key";

impl NodeIdentity {
    /// A new key and a self-signed certificate naming `name`.
    pub fn generate(name: &str) -> Result<Self, String> {
        let (cert_pem, key_pem) = generate_pem(name)?;
        Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// The identity kept in `dir` (`node.pem`, `node.key`), made on first use.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, String> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if !cert_path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let (cert_pem, key_pem) = generate_pem(name)?;
            write_private(&key_path, key_pem.as_bytes())?;
            std::fs::write(&cert_path, cert_pem)
                .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        }
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let key = zeroize::Zeroizing::new(read(&key_path)?);
        Self::from_pem(&read(&cert_path)?, &key)
    }

    /// From PEM: a certificate and its key.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, String> {
        let cert =
            CertificateDer::from_pem_slice(cert).map_err(|e| format!("node certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("node key: {e}"))?;
        Ok(NodeIdentity { cert, key })
    }

    /// Its certificate's fingerprint, as members pin it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

fn generate_pem(name: &str) -> Result<(String, zeroize::Zeroizing<String>), String> {
    let err = |e: rcgen::Error| format!("node certificate: {e}");
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Pinned, not chained: its dates are not what makes it trusted; ten years.
    params.not_after = params.not_before + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The fingerprints this node accepts: its own, the members' (from the Raft membership), and
/// those it was told to expect before it is a member (the cluster it is joining).
#[derive(Clone, Debug, Default)]
pub struct Trust(Arc<RwLock<Pins>>);

#[derive(Debug, Default)]
struct Pins {
    members: BTreeSet<String>,
    expected: BTreeSet<String>,
}

impl Trust {
    fn pins(&self) -> std::sync::RwLockReadGuard<'_, Pins> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn pins_mut(&self) -> std::sync::RwLockWriteGuard<'_, Pins> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a peer presenting `der` is accepted.
    pub fn accepts(&self, der: &[u8]) -> bool {
        let f = fingerprint(der);
        let pins = self.pins();
        pins.members.contains(&f) || pins.expected.contains(&f)
    }

    /// The members' fingerprints, as the membership now says.
    pub(crate) fn set_members(&self, members: impl IntoIterator<Item = String>) {
        self.pins_mut().members = members.into_iter().collect();
    }

    /// Also accept these (the members of a cluster this node is joining, before the
    /// membership reaches it).
    pub fn expect(&self, fingerprints: impl IntoIterator<Item = String>) {
        self.pins_mut().expected.extend(fingerprints);
    }
}

/// Accepts exactly the pinned certificates; checks the handshake signature with the
/// certificate's key as any verifier does.
#[derive(Debug)]
struct Pinned {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.trust.accepts(end_entity) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

impl NodeIdentity {
    /// The cluster listener's configuration: a client certificate the `trust` accepts is
    /// required.
    pub(crate) fn server(&self, trust: &Trust) -> Result<Arc<rustls::ServerConfig>, String> {
        let verifier = Arc::new(Pinned {
            trust: trust.clone(),
            provider: provider(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// How this node connects to the others: it accepts only what `trust` accepts and
    /// presents its own certificate.
    pub(crate) fn client(&self, trust: &Trust) -> Result<rustls::ClientConfig, String> {
        let verifier = Arc::new(Pinned {
            trust: trust.clone(),
            provider: provider(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}
