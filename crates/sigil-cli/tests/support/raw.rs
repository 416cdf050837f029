//! A raw HTTP/1.1-over-TLS client: sends exactly the bytes a test builds (no URL
//! normalization), so tests can replay, tamper and send hostile input.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use sigil_crypto::{PublicIdentity, SealInfo, SecretIdentity};
use sigil_proto::{body as sealed, signature};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;

use super::Server;

pub struct Raw {
    addr: SocketAddr,
    /// Sign and send with this Host instead of the server's address.
    pub host_override: Option<String>,
    /// Connect from this loopback address (the server's rate limits and connection caps are
    /// per source address) instead of the system's choice.
    pub source: Option<std::net::IpAddr>,
    connector: TlsConnector,
    config: Arc<rustls::ClientConfig>,
    ca_pem: Vec<u8>,
    pub key: SecretIdentity,
    pub server: PublicIdentity,
}

/// A request as it will go on the wire.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub nonce: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_text(&self) -> String {
        self.json()["errors"].to_string()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Raw {
    /// A raw client for `server` using the key file at `key`.
    pub async fn new(server: &Server, key: &std::path::Path) -> Raw {
        Self::with_client_cert(server, key, None).await
    }

    /// As [`Raw::new`], presenting a client certificate chain and key (PEM) in the handshake.
    pub async fn with_client_cert(
        server: &Server,
        key: &std::path::Path,
        cert: Option<(&str, &str)>,
    ) -> Raw {
        let pinned = server
            .env
            .iter()
            .find(|(k, _)| k == "SIGIL_SERVER_KEY")
            .map(|(_, v)| v.as_str());
        Self::connect(
            server.addr(),
            Path::new(server.var("SIGIL_CACERT")),
            key,
            cert,
            pinned,
        )
        .await
    }

    /// A raw client for the server at `addr` (trusting `ca`), signing with the key file at
    /// `key`; the server key fetched must be `pinned` when given.
    pub async fn connect(
        addr: std::net::SocketAddr,
        ca: &Path,
        key: &std::path::Path,
        cert: Option<(&str, &str)>,
        pinned: Option<&str>,
    ) -> Raw {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                use rustls_pki_types::PrivateKeyDer;
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(chain.as_bytes())
                        .map(Result::unwrap)
                        .collect();
                builder
                    .with_client_auth_cert(
                        chain,
                        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                    )
                    .unwrap()
            }
        };
        let key = SecretIdentity::from_key_file(&std::fs::read_to_string(key).unwrap()).unwrap();
        let mut raw = Raw {
            addr,
            host_override: None,
            source: None,
            connector: TlsConnector::from(Arc::new(config.clone())),
            config: Arc::new(config),
            ca_pem: std::fs::read(ca).unwrap(),
            key,
            server: SecretIdentity::generate().unwrap().public(),
        };
        // A refused client certificate fails the handshake: leave the tests to see that.
        let Some(resp) = raw
            .try_send(&raw.unsigned("GET", "/v1/sys/server-key"))
            .await
        else {
            return raw;
        };
        if resp.status != 200 {
            // Not initialized yet: no server key to seal to.
            return raw;
        }
        raw.server = PublicIdentity::parse(resp.json()["public_key"].as_str().unwrap()).unwrap();
        if let Some(pinned) = pinned {
            assert_eq!(raw.server.keyid().as_str(), pinned);
        }
        raw
    }

    pub fn host(&self) -> String {
        self.host_override
            .clone()
            .unwrap_or_else(|| self.addr.to_string())
    }

    pub fn unsigned(&self, method: &str, target: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: vec![],
            body: vec![],
            nonce: String::new(),
        }
    }

    /// A signed request, valid now for 60 s; `plain` is sealed to the server first.
    pub fn signed(&self, method: &str, target: &str, plain: Option<&[u8]>) -> Req {
        let t = now();
        self.signed_at(method, target, plain, t, t + 60)
    }

    /// A signed request with explicit `created` and `expires`.
    pub fn signed_at(
        &self,
        method: &str,
        target: &str,
        plain: Option<&[u8]>,
        created: i64,
        expires: i64,
    ) -> Req {
        let nonce = sigil_crypto::random::nonce().unwrap();
        let body = plain.map(|p| {
            sealed::seal(
                self.key.encryption_key(),
                self.server.encryption_key(),
                SealInfo::Request,
                &nonce,
                p,
            )
            .unwrap()
        });
        self.sign_raw(method, target, body, nonce, created, expires)
    }

    /// Signs `body` as given (not sealed), for hostile-input tests.
    pub fn sign_raw(
        &self,
        method: &str,
        target: &str,
        body: Option<Vec<u8>>,
        nonce: String,
        created: i64,
        expires: i64,
    ) -> Req {
        let uri = format!("https://{}{}", self.host(), target);
        let h = signature::sign(
            &self.key,
            method,
            &uri,
            body.as_deref(),
            (created, expires),
            nonce,
        );
        let mut headers = vec![
            ("Signature-Input".to_owned(), h.signature_input),
            ("Signature".to_owned(), h.signature),
        ];
        if let Some(d) = h.content_digest {
            headers.push(("Content-Digest".into(), d));
            headers.push((
                "Content-Type".into(),
                "application/vnd.sigil.sealed+json".into(),
            ));
        }
        Req {
            method: method.into(),
            target: target.into(),
            headers,
            body: body.unwrap_or_default(),
            nonce: h.nonce,
        }
    }

    /// Sends `req` on a new connection and reads the whole response.
    pub async fn send(&self, req: &Req) -> Resp {
        self.try_send(req).await.expect("a response")
    }

    /// Sends `req` over HTTP/2 (ALPN `h2`, as Go's and most other clients negotiate), through
    /// reqwest rather than bytes built here.
    pub async fn send_h2(&self, req: &Req) -> Resp {
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&self.ca_pem).unwrap())
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut r = http.request(method, format!("https://{}{}", self.host(), req.target));
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        let resp = r.body(req.body.clone()).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = resp.bytes().await.unwrap().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Sends raw bytes and parses the response.
    pub async fn send_bytes(&self, bytes: &[u8]) -> Resp {
        self.exchange(bytes).await.expect("a response")
    }

    /// Sends `req`; `None` when the connection fails (e.g. the handshake refuses a
    /// certificate) before a response arrives.
    pub async fn try_send(&self, req: &Req) -> Option<Resp> {
        self.send_or_refusal(req).await.ok()
    }

    /// A TLS connection to the server from `source` (any loopback address), with `alpn`
    /// offered; `None` when the server closes it before the handshake ends.
    pub async fn connect_from(
        &self,
        source: std::net::IpAddr,
        alpn: &[&[u8]],
    ) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let tcp = socket.connect(self.addr).await.ok()?;
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .ok()
    }

    /// Sends `req`, and says how the server refused it when no response came: a TLS alert
    /// (a certificate refused in the handshake) or a connection closed without one.
    pub async fn send_or_refusal(&self, req: &Req) -> Result<Resp, Refusal> {
        self.exchange(&self.wire(req)).await
    }

    /// `req` as HTTP/1.1 bytes, on a connection that closes after it.
    pub fn wire(&self, req: &Req) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            req.method,
            req.target,
            self.host()
        );
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !req.body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
        }
        head.push_str("\r\n");
        [head.as_bytes(), &req.body].concat()
    }

    async fn exchange(&self, bytes: &[u8]) -> Result<Resp, Refusal> {
        let tcp = match self.source {
            None => tokio::net::TcpStream::connect(self.addr).await.unwrap(),
            Some(source) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind((source, 0).into()).unwrap();
                socket.connect(self.addr).await.unwrap()
            }
        };
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| Refusal::from_io(&e))?;
        // The server may answer (e.g. 413/431) before reading everything: ignore write errors.
        let _ = tls.write_all(bytes).await;
        let _ = tls.flush().await;
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        let mut failure = None;
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        if out.is_empty() {
            return Err(
                failure.map_or(Refusal::Closed("closed without a response".into()), |e| {
                    Refusal::from_io(&e)
                }),
            );
        }
        Ok(parse(&out))
    }

    /// Opens a sealed response to `req` with this client's key.
    pub fn open(&self, req: &Req, resp: &Resp) -> Value {
        let plain = sealed::open(
            self.key.encryption_key(),
            self.server.encryption_key(),
            SealInfo::Response,
            &sealed::response_aad(resp.status, &req.nonce),
            &resp.body,
        )
        .expect("response opens with the caller's key");
        serde_json::from_slice(&plain).unwrap()
    }
}

/// Why no response came.
#[derive(Debug)]
pub enum Refusal {
    /// The server sent a TLS alert (its description, e.g. `BadCertificate`).
    Alert(String),
    /// The connection ended without an alert or a response.
    Closed(String),
}

impl Refusal {
    fn from_io(e: &std::io::Error) -> Refusal {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::AlertReceived(alert)) => Refusal::Alert(format!("{alert:?}")),
            _ => Refusal::Closed(e.to_string()),
        }
    }

    /// Whether the server refused with a TLS alert.
    pub fn is_alert(&self) -> bool {
        matches!(self, Refusal::Alert(_))
    }
}

pub fn parse(bytes: &[u8]) -> Resp {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// The unseal protocol (docs/protocol.md §9), done by hand.
impl Raw {
    pub async fn seal_status(&self) -> Value {
        self.send(&self.unsigned("GET", "/v1/sys/seal-status"))
            .await
            .json()
    }

    /// Fetches this key's sealed share and opens it.
    pub async fn my_share(&self) -> Vec<u8> {
        let req = self.signed("GET", "/v1/sys/unseal/share", None);
        let resp = self.send(&req).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let v = resp.json();
        let env = sigil_crypto::Envelope {
            enc: sigil_crypto::b64url_decode(v["enc"].as_str().unwrap()).unwrap(),
            ct: sigil_crypto::b64url_decode(v["ct"].as_str().unwrap()).unwrap(),
        };
        sigil_crypto::open_base(self.key.encryption_key(), SealInfo::Share, b"", &env)
            .unwrap()
            .to_vec()
    }

    /// A signed unseal submission of `share` for this `attempt` and `unseal_key`.
    pub fn unseal_request(&self, share: &[u8], unseal_key: &str, attempt: &str) -> Req {
        let key: [u8; 32] = sigil_crypto::b64url_decode(unseal_key)
            .unwrap()
            .try_into()
            .unwrap();
        let plain =
            serde_json::to_vec(&serde_json::json!({ "share": sigil_crypto::b64url_encode(share) }))
                .unwrap();
        let env = sigil_crypto::seal_to(
            self.key.encryption_key(),
            &key,
            SealInfo::Unseal,
            attempt.as_bytes(),
            &plain,
        )
        .unwrap();
        let body = serde_json::to_vec(&serde_json::json!({
            "enc": sigil_crypto::b64url_encode(&env.enc),
            "ct": sigil_crypto::b64url_encode(&env.ct),
        }))
        .unwrap();
        let t = now();
        self.sign_raw(
            "POST",
            "/v1/sys/unseal",
            Some(body),
            sigil_crypto::random::nonce().unwrap(),
            t,
            t + 60,
        )
    }

    /// Submits this key's share for the current attempt; returns the response.
    pub async fn unseal(&self) -> Resp {
        let status = self.seal_status().await;
        let share = self.my_share().await;
        let req = self.unseal_request(
            &share,
            status["unseal_key"].as_str().unwrap(),
            status["attempt"].as_str().unwrap(),
        );
        self.send(&req).await
    }
}
