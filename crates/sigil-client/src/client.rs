use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sigil_crypto::{KeyId, PublicIdentity, SealInfo, SecretIdentity};
use sigil_proto::{ErrorBody, body as sealed, headers, signature, sys::ServerKey};
use tokio::sync::OnceCell;
use url::{Position, Url};
use zeroize::Zeroizing;

use crate::ClientError;

/// How to reach and trust a server.
pub struct ClientConfig {
    /// `https://host:port`.
    pub addr: String,
    /// The caller's key.
    pub key: SecretIdentity,
    /// PEM of the CA to trust instead of the system roots (`SIGIL_CACERT`).
    pub ca_pem: Option<Vec<u8>>,
    /// The keyid of the server's key (`SIGIL_SERVER_KEY`).
    pub server_keyid: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("server_keyid", &self.server_keyid)
            .finish_non_exhaustive()
    }
}

/// A signing, sealing client.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    key: SecretIdentity,
    pinned: KeyId,
    server: OnceCell<PublicIdentity>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("keyid", &self.key.public().keyid())
            .finish_non_exhaustive()
    }
}

/// A successful response: its status and the opened JSON (none for 204).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The opened body.
    pub body: Option<Value>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn transport(e: reqwest::Error) -> ClientError {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    ClientError::Transport(msg)
}

impl Client {
    /// Builds a client. No request is made until the first call.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let base = Url::parse(config.addr.trim_end_matches('/'))
            .map_err(|e| ClientError::Config(format!("invalid address {:?}: {e}", config.addr)))?;
        if base.scheme() != "https" {
            return Err(ClientError::Config(
                "the server address must be https:// (Sigil speaks only TLS)".into(),
            ));
        }
        let pinned = KeyId::parse(config.server_keyid.trim()).ok_or_else(|| {
            ClientError::Config(
                "SIGIL_SERVER_KEY must be the server's keyid (43 base64url characters)".into(),
            )
        })?;
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .tls_version_min(reqwest::tls::Version::TLS_1_3);
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("invalid CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("CA file holds no certificate".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("TLS setup failed: {e}")))?;
        Ok(Client {
            http,
            base,
            key: config.key,
            pinned,
            server: OnceCell::new(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        let path = path.trim_start_matches('/');
        Url::parse(&format!(
            "{}/v1/{path}",
            self.base.as_str().trim_end_matches('/')
        ))
        .map_err(|e| ClientError::Config(format!("invalid path {path:?}: {e}")))
    }

    /// Fetches `sys/server-key` and checks it against the pinned keyid (once per client).
    pub async fn server_key(&self) -> Result<&PublicIdentity, ClientError> {
        self.server
            .get_or_try_init(|| async {
                let resp = self
                    .http
                    .get(self.url("sys/server-key")?)
                    .send()
                    .await
                    .map_err(transport)?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(transport)?;
                if status != 200 {
                    return Err(api_error(status, &bytes));
                }
                let key: ServerKey = serde_json::from_slice(&bytes)
                    .map_err(|e| ClientError::Response(format!("sys/server-key: {e}")))?;
                let public = PublicIdentity::parse(&key.public_key)
                    .map_err(|e| ClientError::Response(format!("sys/server-key: {e}")))?;
                // The keyid is derived from the key itself; the server's "keyid" field is not
                // trusted.
                let presented = public.keyid();
                if !sigil_crypto::ct_eq(
                    presented.as_str().as_bytes(),
                    self.pinned.as_str().as_bytes(),
                ) {
                    return Err(ClientError::ServerKeyMismatch {
                        pinned: self.pinned.to_string(),
                        presented: presented.to_string(),
                    });
                }
                Ok(public)
            })
            .await
    }

    /// Sends a signed request. `path` is below `/v1/` and may carry a query; `body` is sealed.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        let server = self.server_key().await?.clone();
        let url = self.url(path)?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::Config(format!("invalid method {method:?}")))?;
        let nonce = sigil_crypto::random::nonce()
            .map_err(|_| ClientError::Config("random number generator failed".into()))?;
        let sealed_body = match body {
            Some(v) => {
                let plain = Zeroizing::new(serde_json::to_vec(v).expect("JSON serializes"));
                Some(
                    sealed::seal(
                        self.key.encryption_key(),
                        server.encryption_key(),
                        SealInfo::Request,
                        &nonce,
                        &plain,
                    )
                    .map_err(|e| ClientError::Config(e.to_string()))?,
                )
            }
            None => None,
        };
        let target = format!(
            "https://{}{}",
            &url[Position::BeforeHost..Position::AfterPort],
            &url[Position::BeforePath..Position::AfterQuery]
        );
        let signed = signature::sign(
            &self.key,
            method.as_str(),
            &target,
            sealed_body.as_deref(),
            {
                let created = now();
                (created, created + signature::DEFAULT_VALIDITY_SECS)
            },
            nonce,
        );
        let mut req = self
            .http
            .request(method, url)
            .header(headers::SIGNATURE_INPUT, signed.signature_input)
            .header(headers::SIGNATURE, signed.signature);
        if let (Some(digest), Some(b)) = (signed.content_digest, sealed_body) {
            req = req
                .header(headers::CONTENT_DIGEST, digest)
                .header(reqwest::header::CONTENT_TYPE, headers::SEALED_JSON)
                .body(b);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(ApiResponse { status, body: None });
        }
        let plain = sealed::open(
            self.key.encryption_key(),
            server.encryption_key(),
            SealInfo::Response,
            &signed.nonce,
            &bytes,
        )
        .map_err(|e| ClientError::Response(e.to_string()))?;
        let value = serde_json::from_slice(&plain)
            .map_err(|e| ClientError::Response(format!("invalid JSON: {e}")))?;
        Ok(ApiResponse {
            status,
            body: Some(value),
        })
    }
}

fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    let errors = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| b.errors)
        .unwrap_or_else(|_| vec![String::from_utf8_lossy(bytes).chars().take(200).collect()]);
    ClientError::Api { status, errors }
}
