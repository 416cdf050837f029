//! Joining a cluster. A new node asks the leader (`POST sys/storage/raft/join`, no key: it has
//! none yet) with its name, addresses, the fingerprint of its cluster certificate and a join
//! key made for this join. An admin approves it by name (`sys/storage/raft/approve`, sudo);
//! the leader then seals the root key, the members' fingerprints and the API TLS identity to
//! the join key with the server key, and adds the node to Raft. The node, asking again, gets
//! that package, trusts the members, waits for the replicated seal configuration and unseals
//! with the root key: one approval, no key typed on the new node.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sigil_core::Node;
use sigil_crypto::{BarrierKey, EncryptionKey, Envelope, KeyTerm, PublicIdentity, SealInfo};
use sigil_proto::raft::{JoinPackage, JoinRequest, JoinResponse, SealedPackage, TlsBundle};
use sigil_raft::ClusterNode;
use zeroize::Zeroizing;

/// Requests waiting this long without an approval are forgotten (the node asks again).
const PENDING_TTL: Duration = Duration::from_secs(600);
/// At most this many nodes wait for approval at once (the endpoint takes no key).
const MAX_PENDING: usize = 32;

/// One node's join request, and its package once approved.
struct Pending {
    request: JoinRequest,
    asked: Instant,
    package: Option<SealedPackage>,
}

/// The join requests a leader holds (in memory: a node whose leader changes asks the new one).
#[derive(Default)]
pub(crate) struct Joins(Mutex<BTreeMap<String, Pending>>);

impl Joins {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `req` (a repeated request refreshes it; a different key or certificate under
    /// the same name replaces an unapproved one). Returns its package once approved.
    pub(crate) fn ask(&self, req: JoinRequest) -> Result<Option<SealedPackage>, String> {
        check(&req)?;
        let mut map = self.map();
        // An approved package stays until its node stops asking for it.
        map.retain(|_, p| p.asked.elapsed() < PENDING_TTL);
        if let Some(p) = map.get_mut(&req.node_id) {
            if p.request == req {
                p.asked = Instant::now();
                return Ok(p.package.clone());
            }
            if p.package.is_some() {
                return Err(format!(
                    "{} was approved with another key; it must ask with the key it was approved with",
                    req.node_id
                ));
            }
        } else if map.len() >= MAX_PENDING {
            return Err("too many nodes are waiting for approval; try again later".into());
        }
        map.insert(
            req.node_id.clone(),
            Pending {
                request: req,
                asked: Instant::now(),
                package: None,
            },
        );
        Ok(None)
    }

    /// The request of `node_id`, for an admin's approval; its certificate must be
    /// `cert_sha256` when that is given.
    pub(crate) fn request(
        &self,
        node_id: &str,
        cert_sha256: Option<&str>,
    ) -> Result<JoinRequest, String> {
        let map = self.map();
        let p = map.get(node_id).ok_or_else(|| {
            format!("no node called {node_id:?} has asked to join (or its request expired)")
        })?;
        if let Some(want) = cert_sha256
            && !want.eq_ignore_ascii_case(&p.request.cert_sha256)
        {
            return Err(format!(
                "{node_id} asked with certificate {}, not {want}: not approved",
                p.request.cert_sha256
            ));
        }
        Ok(p.request.clone())
    }

    /// Keeps `package` for `request`'s node to collect.
    pub(crate) fn approved(&self, request: &JoinRequest, package: SealedPackage) {
        if let Some(p) = self.map().get_mut(&request.node_id)
            && p.request == *request
        {
            p.package = Some(package);
        }
    }

    /// Forgets `node_id` (it is a member now, or was removed).
    pub(crate) fn forget(&self, node_id: &str) {
        self.map().remove(node_id);
    }
}

fn check(req: &JoinRequest) -> Result<(), String> {
    let name_ok = !req.node_id.is_empty()
        && req.node_id.len() <= 64
        && req
            .node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err("node_id must be 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    if req.cert_sha256.len() != 64 || !req.cert_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("cert_sha256 must be 64 hexadecimal digits".into());
    }
    let key =
        sigil_crypto::b64url_decode(&req.join_key).map_err(|_| "join_key is not base64url")?;
    if key.len() != 32 {
        return Err("join_key must be a 32-byte X25519 public key".into());
    }
    if req.cluster_addr.is_empty() || req.cluster_addr.len() > 255 || req.api_addr.len() > 255 {
        return Err("cluster_addr (host:port) is required; addresses are at most 255 bytes".into());
    }
    Ok(())
}

/// Where and how a new node asks to join.
#[derive(Debug, Clone)]
pub struct JoinSettings {
    /// The API address of a member (`https://host:port`), normally the leader's; a follower
    /// forwards the request.
    pub leader_api: String,
    /// The CA certificate (PEM) that member's API certificate is from.
    pub ca_pem: Option<String>,
    /// The cluster's server key (`sigil1…` or its keyid) when known: the package must be
    /// sealed by it.
    pub server_key: Option<String>,
    /// This node's API address, as the others should list it.
    pub api_addr: String,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The cluster refused the request or could not be reached in a way that will not change.
    #[error("joining the cluster failed: {0}")]
    Refused(String),
}

/// Asks to join until an admin approves (printing what the admin needs), then opens the
/// package, trusts the members, waits for the seal configuration to arrive and unseals.
/// Returns the cluster's API TLS identity when the package carries one.
pub async fn join_cluster(
    settings: &JoinSettings,
    node: &Node,
    raft: &ClusterNode,
) -> Result<Option<TlsBundle>, JoinError> {
    let refused = |m: String| JoinError::Refused(m);
    let join_key = EncryptionKey::generate().map_err(|e| refused(e.to_string()))?;
    let me = raft.me().clone();
    let request = JoinRequest {
        node_id: me.name.clone(),
        cluster_addr: me.cluster_addr.clone(),
        api_addr: settings.api_addr.clone(),
        cert_sha256: me.cert_sha256.clone(),
        join_key: sigil_crypto::b64url_encode(&join_key.public()),
    };
    let client = http_client(settings.ca_pem.as_deref()).map_err(refused)?;
    let url = format!(
        "{}/v1/sys/storage/raft/join",
        settings.leader_api.trim_end_matches('/')
    );
    tracing::info!(
        node = %me.name,
        cert_sha256 = %me.cert_sha256,
        leader = %settings.leader_api,
        "asking to join: an admin approves with `sigil operator raft approve {} -fingerprint {}`",
        me.name,
        me.cert_sha256
    );
    let mut waited = false;
    let answer = loop {
        let body = serde_json::to_vec(&request).expect("a join request serializes");
        let sent = client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| refused(format!("the join answer did not arrive: {e}")))?;
                let answer: JoinResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| refused(format!("the join answer does not decode: {e}")))?;
                if answer.package.is_some() {
                    break answer;
                }
                if !waited {
                    tracing::info!("waiting for an admin's approval");
                    waited = true;
                }
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                return Err(refused(format!("{url} answered {status}: {text}")));
            }
            Ok(resp) => {
                tracing::warn!(status = %resp.status(), "the cluster is not ready; asking again")
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach {url}; asking again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let server = PublicIdentity::parse(&answer.server_key)
        .map_err(|_| refused("the cluster's server key does not parse".into()))?;
    if let Some(pin) = &settings.server_key
        && *pin != answer.server_key
        && *pin != server.keyid().to_string()
    {
        return Err(refused(format!(
            "the cluster's server key is {}, not the expected {pin}",
            server.keyid()
        )));
    }
    let sealed = answer.package.expect("checked above");
    let decode = |s: &str| {
        sigil_crypto::b64url_decode(s).map_err(|_| refused("the package is not base64url".into()))
    };
    let envelope = Envelope {
        enc: decode(&sealed.enc)?,
        ct: decode(&sealed.ct)?,
    };
    let plain = sigil_crypto::open_from(
        &join_key,
        server.encryption_key(),
        SealInfo::Join,
        me.name.as_bytes(),
        &envelope,
    )
    .map_err(|_| refused("the package does not open with this join key and server key".into()))?;
    let mut package: JoinPackage = serde_json::from_slice(&plain)
        .map_err(|e| refused(format!("the package does not decode: {e}")))?;
    raft.trust().expect(package.members.iter().cloned());
    let decoded =
        Zeroizing::new(sigil_crypto::b64url_decode(&package.root_key).unwrap_or_default());
    if decoded.len() != 32 {
        return Err(refused("the package's root key is not 32 bytes".into()));
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&decoded);
    let root = BarrierKey::from_secret(KeyTerm(package.root_term), secret);
    tracing::info!("approved: waiting for the cluster's data to arrive");
    let deadline = Instant::now() + sigil_raft::CATCH_UP + Duration::from_secs(30);
    while !node.refresh().map_err(|e| refused(e.to_string()))? && !node.initialized() {
        if Instant::now() > deadline {
            return Err(refused(
                "approved, but the cluster's data did not arrive: can the leader reach this node's cluster address?".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.unseal_with_root(root).map_err(|e| {
        refused(format!(
            "the cluster's root key did not unseal this node: {e}"
        ))
    })?;
    Ok(package.tls.take())
}

fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let config = match ca_pem {
        Some(pem) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| format!("CA certificate: {e}"))?)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}
