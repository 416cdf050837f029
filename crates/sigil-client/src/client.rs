use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sigil_crypto::{ChannelKeys, KeyId, PublicIdentity, SealInfo, SecretIdentity};
use sigil_proto::body::{self as sealed, Sealed};
use sigil_proto::stream::{Direction, StreamReader};
use sigil_proto::{ErrorBody, headers, signature, sys::ServerKey};
use tokio::sync::OnceCell;
use url::{Position, Url};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::transport::{ClientCertificate, Transport};

/// How to reach and trust a server.
pub struct ClientConfig {
    /// `https://host:port`.
    pub addr: String,
    /// The caller's key; needed for every authenticated call.
    pub key: Option<SecretIdentity>,
    /// PEM of the CA to trust instead of the system roots (`SIGIL_CACERT`).
    pub ca_pem: Option<Vec<u8>>,
    /// The keyid of the server's key (`SIGIL_SERVER_KEY`); needed for sealed calls.
    pub server_keyid: Option<String>,
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
    pub(crate) http: Transport,
    base: Url,
    key: Option<SecretIdentity>,
    pinned: Option<KeyId>,
    server: OnceCell<PublicIdentity>,
    /// Whether to ask for channels (docs/protocol.md §6).
    channels: bool,
    /// The channel in use, if any.
    channel: Mutex<Option<Channel>>,
    /// A request asking for a channel is in flight (one at a time).
    asking: AtomicBool,
    /// Requests are authenticated by a client certificate (docs/protocol.md §7), not signed.
    mtls: bool,
    /// The CA the client trusts, kept to rebuild the HTTP client with a certificate.
    ca_pem: Option<Vec<u8>>,
    /// `-output-policy`: authenticated requests are not sent (see [`Client::output_policy`]).
    output_policy: bool,
}

/// A channel the server granted: its id, key and when to stop using it.
struct Channel {
    id: String,
    key: Arc<ChannelKeys>,
    until: Instant,
}

/// Stop using a channel this long before the server would drop it.
const CHANNEL_MARGIN: Duration = Duration::from_secs(30);

/// Clears the "asking for a channel" flag when a request ends, however it ends.
struct Asking<'a>(Option<&'a AtomicBool>);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(false, Ordering::Release);
        }
    }
}

/// What came back: status, the channel header, the body, the nonce the request used.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) channel: Option<String>,
    /// `Sigil-Receipt`, on a 2xx without a body.
    pub(crate) receipt: Option<String>,
    pub(crate) bytes: bytes::Bytes,
    pub(crate) nonce: String,
}

impl Answer {
    /// The associated data the server sealed this answer with.
    fn aad(&self) -> String {
        sealed::response_aad(self.status, &self.nonce)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("keyid", &self.key.as_ref().map(|k| k.public().keyid()))
            .finish_non_exhaustive()
    }
}

/// A successful response: its status and the opened JSON (none for 204). Its `Debug` does not
/// print the body, which may hold secrets.
#[derive(Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The opened body.
    pub body: Option<Value>,
}

impl ApiResponse {
    /// The body's `data` member (Vault's envelope), `Null` when there is none.
    pub fn data(&self) -> &Value {
        self.body
            .as_ref()
            .and_then(|b| b.get("data"))
            .unwrap_or(&Value::Null)
    }
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An HTTP request to `url` (sent as its path and query) with `headers`, and `body` with its
/// media type.
fn http_request<V: AsRef<str>>(
    method: &str,
    url: &Url,
    headers: &[(&'static str, V)],
    body: Option<(Vec<u8>, &'static str)>,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, ClientError> {
    let (content_type, bytes) = match body {
        Some((bytes, content_type)) => (Some(content_type), bytes.into()),
        None => (None, bytes::Bytes::new()),
    };
    request_with(
        method,
        url,
        headers,
        content_type,
        http_body_util::Full::new(bytes),
    )
}

/// A request to `url` (its path and query: the transport adds the host) with `headers` and
/// `body` of media type `content_type`.
pub(crate) fn request_with<V: AsRef<str>, B>(
    method: &str,
    url: &Url,
    headers: &[(&'static str, V)],
    content_type: Option<&str>,
    body: B,
) -> Result<http::Request<B>, ClientError> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| ClientError::Config(format!("invalid method {method:?}")))?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url[Position::BeforePath..Position::AfterQuery]);
    for (name, value) in headers {
        req = req.header(*name, value.as_ref());
    }
    if let Some(content_type) = content_type {
        req = req.header(http::header::CONTENT_TYPE, content_type);
    }
    req.body(body)
        .map_err(|e| ClientError::Config(format!("invalid request: {e}")))
}

pub(crate) fn rng() -> ClientError {
    ClientError::Config("random number generator failed".into())
}

/// A body to send as is, with its media type.
struct RawBody {
    bytes: Vec<u8>,
    content_type: &'static str,
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
        let pinned = match config.server_keyid {
            Some(k) => Some(KeyId::parse(k.trim()).ok_or_else(|| {
                ClientError::Config(
                    "SIGIL_SERVER_KEY must be the server's keyid (43 base64url characters)".into(),
                )
            })?),
            None => None,
        };
        let http = Transport::new(&base, config.ca_pem.as_deref(), None)?;
        Ok(Client {
            http,
            base,
            key: config.key,
            pinned,
            server: OnceCell::new(),
            channels: true,
            channel: Mutex::new(None),
            asking: AtomicBool::new(false),
            mtls: false,
            ca_pem: config.ca_pem,
            output_policy: false,
        })
    }

    /// Authenticates every request with this client certificate (PEM chain and PKCS#8 key)
    /// instead of a signature (docs/protocol.md §7): the server maps the certificate to an identity
    /// through its `auth/cert` roles. Bodies and answers are still sealed, and each request
    /// still carries a fresh nonce (`Sigil-Nonce`).
    pub fn with_client_certificate(
        mut self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ClientError> {
        let certificate = ClientCertificate::from_pem(chain_pem, key_pem)?;
        self.http = Transport::new(&self.base, self.ca_pem.as_deref(), Some(certificate))?;
        self.mtls = true;
        Ok(self)
    }

    /// Whether to ask the server for a channel (docs/protocol.md §6; on by default): after one
    /// HPKE-sealed answer, bodies are sealed with a symmetric key both sides derived from it.
    /// Requests are signed either way.
    pub fn with_channels(mut self, on: bool) -> Self {
        self.channels = on;
        self
    }

    /// Vault's `-output-policy`: [`Client::request`] sends nothing and fails with
    /// [`ClientError::OutputPolicy`], naming the request a policy would have to allow. Mount
    /// lookups (`sys/internal/ui/mounts`, which only read) are still sent, so a command can
    /// resolve its path first.
    pub fn output_policy(mut self) -> Self {
        self.output_policy = true;
        self
    }

    /// The id of the channel this client uses now, if any (for diagnostics and tests).
    pub fn channel_id(&self) -> Option<String> {
        self.live_channel().map(|(id, _)| id)
    }

    /// The live channel, if any.
    fn live_channel(&self) -> Option<(String, Arc<ChannelKeys>)> {
        let mut slot = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(c) if Instant::now() < c.until => Some((c.id.clone(), Arc::clone(&c.key))),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// Forgets channel `id` (the server no longer holds it).
    fn drop_channel(&self, id: &str) {
        let mut slot = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.id == id) {
            *slot = None;
        }
    }

    /// The caller's key.
    pub fn key(&self) -> Result<&SecretIdentity, ClientError> {
        self.key.as_ref().ok_or_else(|| {
            ClientError::Config(
                "no key: set SIGIL_KEY to your key file (create one with `sigil key generate -o FILE`)"
                    .into(),
            )
        })
    }

    /// `path` (below `/v1/`, with any query) on the server. Only the path and query are
    /// parsed; the scheme, host and port are the base address's, parsed once.
    pub(crate) fn url(&self, path: &str) -> Url {
        let path = path.trim_start_matches('/');
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}/v1/{path}",
            self.base.path().trim_end_matches('/')
        ));
        url.set_query(query);
        url
    }

    /// Fetches `sys/server-key` and checks it against the pinned keyid (once per client).
    pub async fn server_key(&self) -> Result<&PublicIdentity, ClientError> {
        let Some(pinned) = &self.pinned else {
            return Err(ClientError::Config(
                "the server key is not pinned: set SIGIL_SERVER_KEY to the keyid the server printed"
                    .into(),
            ));
        };
        self.server
            .get_or_try_init(|| async {
                let resp = self.plain("GET", "sys/server-key", None).await?;
                let key: ServerKey = serde_json::from_value(resp.body.unwrap_or_default())
                    .map_err(|e| ClientError::Response(format!("sys/server-key: {e}")))?;
                let public = PublicIdentity::parse(&key.public_key)
                    .map_err(|e| ClientError::Response(format!("sys/server-key: {e}")))?;
                // The keyid is derived from the key itself; the server's "keyid" field is not
                // trusted.
                let presented = public.keyid();
                if !sigil_crypto::ct_eq(presented.as_str().as_bytes(), pinned.as_str().as_bytes()) {
                    return Err(ClientError::ServerKeyMismatch {
                        pinned: pinned.to_string(),
                        presented: presented.to_string(),
                    });
                }
                Ok(public)
            })
            .await
    }

    /// An unauthenticated call with a plain JSON body and answer (`sys/health`,
    /// `sys/seal-status`, `sys/init`, …).
    pub async fn plain(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        let body = body.map(|b| {
            (
                serde_json::to_vec(b).expect("JSON serializes"),
                "application/json",
            )
        });
        let (status, bytes) = self.plain_raw(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        let body = if bytes.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| ClientError::Response(format!("invalid JSON: {e}")))?,
            )
        };
        Ok(ApiResponse { status, body })
    }

    /// An unauthenticated call, its answer as the server sent it: status and body, whatever
    /// the status (`sys/health` answers 429, 501 or 503 with its JSON).
    pub async fn plain_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let reply = self
            .http
            .send(http_request(
                method,
                &self.url(path),
                &[] as &[(&str, &str)],
                body,
            )?)
            .await?;
        Ok((reply.status, reply.body.to_vec()))
    }

    /// Signs and sends a request; answers with any status.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<RawBody>,
        nonce: String,
        channel: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let fields = channel.map(|c| (headers::SIGIL_CHANNEL, c));
        let request = self.signed_request(method, path, body, &nonce, fields.as_slice())?;
        let reply = self.http.send(request).await?;
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Answer {
            status: reply.status,
            channel: header(headers::SIGIL_CHANNEL),
            receipt: header(headers::SIGIL_RECEIPT),
            bytes: reply.body,
            nonce,
        })
    }

    /// A request signed (or, over mTLS, carrying its nonce) with `more` headers and `body`.
    fn signed_request(
        &self,
        method: &str,
        path: &str,
        body: Option<RawBody>,
        nonce: &str,
        more: &[(&'static str, &str)],
    ) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, ClientError> {
        let url = self.url(path);
        let digest = body.as_ref().map(|b| signature::content_digest(&b.bytes));
        let mut fields = self.authentication(method, &url, digest, nonce)?;
        fields.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let body = body.map(|b| (b.bytes, b.content_type));
        http_request(method, &url, &fields, body)
    }

    /// The headers that authenticate a request to `url` whose body has `content_digest`: its
    /// signature, or over mTLS its nonce.
    pub(crate) fn authentication(
        &self,
        method: &str,
        url: &Url,
        content_digest: Option<String>,
        nonce: &str,
    ) -> Result<Vec<(&'static str, String)>, ClientError> {
        let key = self.key()?;
        let mut fields = Vec::with_capacity(5);
        if self.mtls {
            fields.push((headers::SIGIL_NONCE, nonce.to_owned()));
            return Ok(fields);
        }
        let target = format!(
            "https://{}{}",
            &url[Position::BeforeHost..Position::AfterPort],
            &url[Position::BeforePath..Position::AfterQuery]
        );
        let created = now();
        let signed = signature::sign_digest(
            key,
            method,
            &target,
            content_digest,
            (created, created + signature::DEFAULT_VALIDITY_SECS),
            nonce.to_owned(),
        );
        fields.push((headers::SIGNATURE_INPUT, signed.signature_input));
        fields.push((headers::SIGNATURE, signed.signature));
        if let Some(digest) = signed.content_digest {
            fields.push((headers::CONTENT_DIGEST, digest));
        }
        Ok(fields)
    }

    /// With the output policy on, refuses every request but `GET sys/internal/ui/mounts…`.
    pub(crate) fn check_output_policy(&self, method: &str, path: &str) -> Result<(), ClientError> {
        if self.output_policy && !(method == "GET" && path.starts_with("sys/internal/ui/mounts")) {
            return Err(ClientError::OutputPolicy {
                method: method.to_owned(),
                path: path.split('?').next().unwrap_or(path).to_owned(),
            });
        }
        Ok(())
    }

    /// Downloads what `GET path` streams (docs/protocol.md §4.7: an operator backup), opening
    /// each chunk as it arrives and writing it to `out`; returns how many bytes it wrote. A
    /// stream that ends early or does not open is an error — but what came before it was
    /// already written: write to a temporary file and keep it only on success.
    pub async fn download(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, ClientError> {
        self.check_output_policy("GET", path)?;
        let server = self.server_key().await?.clone();
        let key = self.key()?;
        let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
        let accept = [(http::header::ACCEPT.as_str(), headers::SEALED_STREAM)];
        let request = self.signed_request("GET", path, None, &nonce, &accept)?;
        let mut answer = self.http.send_streaming(request).await?;
        if !(200..300).contains(&answer.status) {
            let bytes = answer.body_up_to(64 * 1024).await?;
            return Err(api_error(answer.status, &bytes));
        }
        let media = answer.headers.get(http::header::CONTENT_TYPE);
        if media.and_then(|v| v.to_str().ok()) != Some(headers::SEALED_STREAM) {
            return Err(ClientError::Response(
                "the server did not stream its answer".into(),
            ));
        }
        let bad = |e: sealed::BodyError| ClientError::Response(e.to_string());
        let direction = Direction::Response {
            status: answer.status,
            nonce: &nonce,
        };
        let mut reader =
            StreamReader::new(key.encryption_key(), server.encryption_key(), direction);
        let mut written = 0u64;
        while let Some(bytes) = answer.next_bytes().await? {
            reader.push(&bytes).map_err(bad)?;
            while let Some(chunk) = reader.next_chunk().map_err(bad)? {
                out.write_all(&chunk)
                    .map_err(|e| ClientError::Config(format!("writing the download: {e}")))?;
                written += chunk.len() as u64;
            }
        }
        reader.finish().map_err(bad)?;
        Ok(written)
    }

    /// [`Client::send`], with anything but 2xx as an error.
    async fn send_signed(
        &self,
        method: &str,
        path: &str,
        body: Option<RawBody>,
        nonce: String,
    ) -> Result<(u16, bytes::Bytes, String), ClientError> {
        let a = self.send(method, path, body, nonce, None).await?;
        if !(200..300).contains(&a.status) {
            return Err(api_error(a.status, &a.bytes));
        }
        Ok((a.status, a.bytes, a.nonce))
    }

    /// Sends a signed request. `path` is below `/v1/` and may carry a query; `body` is sealed
    /// to the pinned server key (or on the channel, docs/protocol.md §6) and the answer opened with
    /// the caller's key (or the channel's).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        self.check_output_policy(method, path)?;
        let server = self.server_key().await?.clone();
        let key = self.key()?;
        let plain = body.map(|v| Zeroizing::new(serde_json::to_vec(v).expect("JSON serializes")));
        // A body sealed to a channel the server has dropped is refused before anything runs
        // (`Sigil-Channel: expired`): then once more, sealed to the server key.
        let mut use_channel = true;
        loop {
            let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
            let channel = if use_channel {
                self.live_channel()
            } else {
                None
            };
            let asking = Asking(
                (channel.is_none()
                    && self.channels
                    && self
                        .asking
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok())
                .then_some(&self.asking),
            );
            let sealed_body = match &plain {
                None => None,
                Some(p) => Some(RawBody {
                    bytes: match &channel {
                        Some((id, ck)) => sealed::seal_channel(&ck.request, id, &nonce, p),
                        None => sealed::seal(
                            key.encryption_key(),
                            server.encryption_key(),
                            SealInfo::Request,
                            &nonce,
                            p,
                        ),
                    }
                    .map_err(|e| ClientError::Config(e.to_string()))?,
                    content_type: headers::SEALED_JSON,
                }),
            };
            let header = match (&channel, asking.0.is_some()) {
                (Some((id, _)), _) => Some(id.as_str()),
                (None, true) => Some("new"),
                (None, false) => None,
            };
            let answer = self.send(method, path, sealed_body, nonce, header).await?;
            if !(200..300).contains(&answer.status) {
                if let Some((id, _)) = &channel
                    && let Some(sig) = answer
                        .channel
                        .as_deref()
                        .and_then(headers::channel_expired_signature)
                {
                    // Sent again only on the server's word that nothing ran: a proxy could
                    // otherwise make a request it forwarded run twice.
                    let message = headers::channel_expired_message(&answer.nonce);
                    if server.verify(&message, &sig).is_err() {
                        return Err(ClientError::Response(
                            "an answer said the channel expired, but the server did not sign it: not sending the request again".into(),
                        ));
                    }
                    self.drop_channel(id);
                    use_channel = false;
                    continue;
                }
                return Err(api_error(answer.status, &answer.bytes));
            }
            if answer.bytes.is_empty() {
                self.check_receipt(&server, &answer, channel.as_ref())?;
                return Ok(ApiResponse {
                    status: answer.status,
                    body: None,
                });
            }
            let opened = self.open(&server, &answer, channel.as_ref(), asking.0.is_some())?;
            let value = serde_json::from_slice(&opened)
                .map_err(|e| ClientError::Response(format!("invalid JSON: {e}")))?;
            return Ok(ApiResponse {
                status: answer.status,
                body: Some(value),
            });
        }
    }

    /// A 2xx without a body must carry the server's receipt for this request and status: a
    /// bare 2xx could come from anyone between the two (a TLS-terminating proxy).
    fn check_receipt(
        &self,
        server: &PublicIdentity,
        answer: &Answer,
        channel: Option<&(String, Arc<ChannelKeys>)>,
    ) -> Result<(), ClientError> {
        let Some(receipt) = &answer.receipt else {
            return Err(ClientError::Response(format!(
                "a {} answer without a body or a receipt: the server did not send it",
                answer.status
            )));
        };
        let receipt = Answer {
            status: answer.status,
            channel: None,
            receipt: None,
            bytes: bytes::Bytes::copy_from_slice(receipt.as_bytes()),
            nonce: answer.nonce.clone(),
        };
        let opened = self.open(server, &receipt, channel, false)?;
        if opened.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Response("the receipt is not empty".into()))
        }
    }

    /// Opens a sealed answer: on the channel the request used, or HPKE from the server (then
    /// keeping the channel it grants, if one was asked for).
    pub(crate) fn open(
        &self,
        server: &PublicIdentity,
        answer: &Answer,
        channel: Option<&(String, Arc<ChannelKeys>)>,
        asked: bool,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let bad = |e: sealed::BodyError| ClientError::Response(e.to_string());
        let key = self.key()?;
        let aad = answer.aad();
        match sealed::parse(&answer.bytes).map_err(bad)? {
            Sealed::Channel { id, nonce, ct } => match channel {
                Some((mine, ck)) if *mine == id => {
                    sealed::open_channel(&ck.response, &aad, &nonce, &ct).map_err(bad)
                }
                _ => Err(ClientError::Response(
                    "the answer is sealed to a channel this request did not use".into(),
                )),
            },
            Sealed::Hpke(envelope) => {
                if let Some((id, _)) = channel {
                    // The server no longer holds it and fell back (docs/protocol.md §6).
                    self.drop_channel(id);
                }
                let grant = answer.channel.as_deref().and_then(headers::channel_grant);
                match grant {
                    Some((id, ttl)) if asked => {
                        let (plain, ck) = sigil_crypto::open_from_exporting(
                            key.encryption_key(),
                            server.encryption_key(),
                            SealInfo::Response,
                            aad.as_bytes(),
                            &envelope,
                        )
                        .map_err(|_| bad(sealed::BodyError::Open))?;
                        let until = Instant::now()
                            + Duration::from_secs(ttl).saturating_sub(CHANNEL_MARGIN);
                        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(Channel {
                            id,
                            key: Arc::new(ck),
                            until,
                        });
                        Ok(plain)
                    }
                    _ => sigil_crypto::open_from(
                        key.encryption_key(),
                        server.encryption_key(),
                        SealInfo::Response,
                        aad.as_bytes(),
                        &envelope,
                    )
                    .map_err(|_| bad(sealed::BodyError::Open)),
                }
            }
            _ => Err(bad(sealed::BodyError::Malformed("unknown envelope"))),
        }
    }

    /// A signed request whose body and answer are plain JSON: for the admin endpoints that
    /// carry no secret and must work without the server's key (`sys/rekey/approve`).
    pub async fn signed_plain(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
        let raw = RawBody {
            bytes: serde_json::to_vec(body).expect("JSON serializes"),
            content_type: "application/json",
        };
        let (_, bytes, _) = self.send_signed(method, path, Some(raw), nonce).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Response(format!("{path}: {e}")))
    }

    /// Submits this admin's unseal share (docs/protocol.md §9): reads the seal status, fetches the
    /// admin's sealed share, opens it locally, and sends it sealed to this boot's unseal key
    /// for the current attempt. Returns the new seal status.
    pub async fn unseal(&self) -> Result<Value, ClientError> {
        let key = self.key()?;
        let status = self
            .plain("GET", "sys/seal-status", None)
            .await?
            .body
            .unwrap_or_default();
        let field = |name: &str| -> Result<String, ClientError> {
            status
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Response(format!("seal status lacks {name}")))
        };
        if status.get("sealed") == Some(&Value::Bool(false)) {
            return Ok(status);
        }
        let unseal_key: [u8; 32] = sigil_crypto::b64url_decode(&field("unseal_key")?)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ClientError::Response("invalid unseal_key".into()))?;
        let attempt = field("attempt")?;

        let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
        let (_, bytes, _) = self
            .send_signed("GET", "sys/unseal/share", None, nonce)
            .await?;
        let share: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Response(format!("sys/unseal/share: {e}")))?;
        let part = |name: &str| {
            share
                .get(name)
                .and_then(Value::as_str)
                .and_then(|s| sigil_crypto::b64url_decode(s).ok())
                .ok_or_else(|| ClientError::Response(format!("sys/unseal/share lacks {name}")))
        };
        let envelope = sigil_crypto::Envelope {
            enc: part("enc")?,
            ct: part("ct")?,
        };
        let opened = sigil_crypto::open_base(key.encryption_key(), SealInfo::Share, b"", &envelope)
            .map_err(|_| ClientError::Response("the share does not open with this key".into()))?;
        let submission = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "share": sigil_crypto::b64url_encode(&opened)
            }))
            .expect("JSON serializes"),
        );
        let env = sigil_crypto::seal_to(
            key.encryption_key(),
            &unseal_key,
            SealInfo::Unseal,
            attempt.as_bytes(),
            &submission,
        )
        .map_err(|_| ClientError::Response("invalid unseal key".into()))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "enc": sigil_crypto::b64url_encode(&env.enc),
            "ct": sigil_crypto::b64url_encode(&env.ct),
        }))
        .expect("JSON serializes");
        let nonce = sigil_crypto::random::nonce().map_err(|_| rng())?;
        let (_, bytes, _) = self
            .send_signed(
                "POST",
                "sys/unseal",
                Some(RawBody {
                    bytes: body,
                    content_type: headers::SEALED_JSON,
                }),
                nonce,
            )
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Response(format!("sys/unseal: {e}")))
    }
}

pub(crate) fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    let errors = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| b.errors)
        .unwrap_or_else(|_| vec![String::from_utf8_lossy(bytes).chars().take(200).collect()]);
    ClientError::Api { status, errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(addr: &str) -> Client {
        Client::new(ClientConfig {
            addr: addr.into(),
            key: None,
            ca_pem: None,
            server_keyid: None,
        })
        .unwrap()
    }

    #[test]
    fn urls_keep_the_base_and_the_query_and_encode_the_rest() {
        let c = client("https://127.0.0.1:8200/");
        assert_eq!(
            c.url("secret/data/a?version=2").as_str(),
            "https://127.0.0.1:8200/v1/secret/data/a?version=2"
        );
        assert_eq!(
            c.url("/sys/health").as_str(),
            "https://127.0.0.1:8200/v1/sys/health"
        );
        // Nothing in a path reaches past it: a `#` is part of the name, spaces are encoded.
        assert_eq!(
            c.url("secret/data/a b#c").as_str(),
            "https://127.0.0.1:8200/v1/secret/data/a%20b%23c"
        );
        let c = client("https://sigil.example:443/prefix/");
        assert_eq!(
            c.url("kv/x").as_str(),
            "https://sigil.example/prefix/v1/kv/x"
        );
    }
}
