//! The SDK's HTTP transport: HTTP/1.1 with keep-alive over TLS 1.3 (rustls with aws-lc-rs), a
//! pool of idle connections, and an HTTP `CONNECT` proxy when the environment names one.
//!
//! It is hyper's connection API and little else: every request goes to the one server the
//! client was built for, redirects are never followed (a signature covers the target URI, so a
//! redirected request could only be refused — or carry its signed headers and sealed body to
//! another host), and nothing parses a URL per request. Sigil's requests and answers are small,
//! and HTTP/2's framing and header compression cost both sides about a fifth more CPU per
//! request on loopback (docs/performance.md); the server speaks both.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;
use zeroize::Zeroizing;

use crate::ClientError;

/// Idle connections kept for reuse; more than this many requests in flight at once open
/// connections that close after their answer.
const MAX_IDLE: usize = 256;

/// A client certificate chain and its key, for mTLS.
pub(crate) struct ClientCertificate {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl ClientCertificate {
    /// Parses a PEM certificate chain and a PEM (PKCS#8, SEC1 or PKCS#1) private key.
    pub(crate) fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, ClientError> {
        use rustls::pki_types::pem::PemObject as _;
        let bad =
            |what: &str| ClientError::Config(format!("invalid client certificate or key: {what}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("the certificate PEM does not parse"))?;
        if chain.is_empty() {
            return Err(bad("no certificate"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| bad("no usable private key"))?;
        Ok(ClientCertificate { chain, key })
    }
}

/// What came back.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// An answer whose body is read as it comes ([`Transport::send_streaming`]).
pub(crate) struct Streaming {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    body: hyper::body::Incoming,
    /// Kept until the body is read.
    _connection: Box<dyn Send>,
}

impl Streaming {
    /// The body's next bytes (`None`: it ended).
    pub(crate) async fn next_bytes(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(transport_error("reading the answer", &e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The body whole, if it is at most `limit` bytes (an error's).
    pub(crate) async fn body_up_to(&mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(bytes) = self.next_bytes().await? {
            if out.len() + bytes.len() > limit {
                return Err(ClientError::Response(
                    "the error answer is too large".into(),
                ));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

/// An HTTP proxy reached with `CONNECT` (`HTTPS_PROXY`, else `ALL_PROXY`; `NO_PROXY` exempts).
struct Proxy {
    host: String,
    port: u16,
    /// `Proxy-Authorization` from the proxy URL's user and password.
    authorization: Option<Zeroizing<String>>,
}

pub(crate) struct Transport {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    proxy: Option<Proxy>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

fn transport_error(context: &str, e: &(dyn std::error::Error + 'static)) -> ClientError {
    let mut msg = format!("{context}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    ClientError::Transport(msg)
}

impl Transport {
    /// A transport to `base` (an `https://` URL), trusting `ca_pem` (else the platform's
    /// roots), presenting `certificate` if given.
    pub(crate) fn new(
        base: &Url,
        ca_pem: Option<&[u8]>,
        certificate: Option<ClientCertificate>,
    ) -> Result<Self, ClientError> {
        let config = tls_config(ca_pem, certificate)?;
        let host = base
            .host_str()
            .ok_or_else(|| ClientError::Config("the server address has no host".into()))?;
        let port = base.port_or_known_default().unwrap_or(443);
        // `host_str` keeps an IPv6 address's brackets; the socket and TLS name do not want them.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(bare.clone())
            .map_err(|_| ClientError::Config(format!("invalid server name {host:?}")))?;
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        Ok(Transport {
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
            proxy: proxy_for(&bare)?,
            host: bare,
            port,
            authority: HeaderValue::from_str(&authority).map_err(|_| {
                ClientError::Config(format!("invalid server address {authority:?}"))
            })?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (its URI a path and query) on an idle connection, or a new one, and reads
    /// the whole answer.
    pub(crate) async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        req.headers_mut()
            .insert(header::HOST, self.authority.clone());
        let size = hyper::body::Body::size_hint(req.body()).lower();
        loop {
            let (mut sender, fresh) = match self.take_idle() {
                Some(s) => (s, false),
                None => (self.connect().await?, true),
            };
            // A connection goes back to the pool as soon as its answer is read, which can be
            // before it is ready for the next request: wait for that (an error: it closed).
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(transport_error("starting HTTP/1.1", &e));
                }
                continue;
            }
            let response = match sender.try_send_request(req).await {
                Ok(r) => r,
                Err(mut e) => match e.take_message() {
                    // A pooled connection the server had closed: the request was not sent, so
                    // it goes out again on a new one.
                    Some(unsent) if !fresh => {
                        req = unsent;
                        continue;
                    }
                    _ => {
                        let mut err = transport_error("sending the request", e.error());
                        // A server that refuses a large body (413) may close the connection
                        // before the client has sent it all and could read the answer.
                        if size > 1024 * 1024
                            && let ClientError::Transport(m) = &mut err
                        {
                            m.push_str(&format!(
                                " (the body was {size} bytes: the server may have refused it as too large; its limit is [limits] max_request_bytes, 32 MiB unless changed)"
                            ));
                        }
                        return Err(err);
                    }
                },
            };
            let status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| transport_error("reading the answer", &e))?
                .to_bytes();
            self.put_idle(sender);
            return Ok(Reply {
                status,
                headers: parts.headers,
                body,
            });
        }
    }

    /// Sends `req` on a connection of its own and hands back the answer as it comes (a large
    /// answer, or one to a request whose body streams: the connection is not pooled, and
    /// closes when the answer is dropped).
    pub(crate) async fn send_streaming<B>(
        &self,
        mut req: Request<B>,
    ) -> Result<Streaming, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        req.headers_mut()
            .insert(header::HOST, self.authority.clone());
        let mut sender = self.connect::<B>().await?;
        sender
            .ready()
            .await
            .map_err(|e| transport_error("starting HTTP/1.1", &e))?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| transport_error("sending the request", &e))?;
        let (parts, body) = response.into_parts();
        Ok(Streaming {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            _connection: Box::new(sender),
        })
    }

    /// [`Transport::send_streaming`] of a request whose body streams (an upload), reading
    /// the whole answer (a small one).
    pub(crate) async fn send_body<B>(&self, req: Request<B>) -> Result<Reply, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut answer = self.send_streaming(req).await?;
        let mut body = Vec::new();
        while let Some(bytes) = answer.next_bytes().await? {
            body.extend_from_slice(&bytes);
        }
        Ok(Reply {
            status: answer.status,
            headers: answer.headers,
            body: body.into(),
        })
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    /// A new connection: TCP (through the proxy's tunnel if there is one), TLS, HTTP/1.1.
    async fn connect<B>(&self) -> Result<SendRequest<B>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = match &self.proxy {
            None => TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| {
                    transport_error(&format!("connecting to {}:{}", self.host, self.port), &e)
                })?,
            Some(proxy) => self.tunnel(proxy).await?,
        };
        tcp.set_nodelay(true)
            .map_err(|e| transport_error("configuring the connection", &e))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| transport_error("TLS handshake", &e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport_error("starting HTTP/1.1", &e))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the last sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// A TCP connection to the server through `proxy`'s `CONNECT`.
    async fn tunnel(&self, proxy: &Proxy) -> Result<TcpStream, ClientError> {
        let fail = |what: String| {
            ClientError::Transport(format!("proxy {}:{}: {what}", proxy.host, proxy.port))
        };
        let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let target = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut head = Zeroizing::new(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"));
        if let Some(auth) = &proxy.authorization {
            head.push_str("Proxy-Authorization: ");
            head.push_str(auth);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        // The answer's head, read a line at a time so nothing after it is consumed (the TLS
        // handshake starts right after the blank line, and a proxy sends nothing more first).
        let mut reader = BufReader::with_capacity(1, &mut tcp);
        let mut status_line = String::new();
        let mut line = String::new();
        let mut total = 0;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .await
                .map_err(|e| fail(e.to_string()))?;
            total += n;
            if n == 0 || total > 16 * 1024 {
                return Err(fail("closed or sent an oversized answer to CONNECT".into()));
            }
            if status_line.is_empty() {
                status_line = line.trim_end().to_owned();
            } else if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if !code.starts_with('2') || code.len() != 3 {
            return Err(fail(format!("refused the tunnel: {status_line}")));
        }
        Ok(tcp)
    }
}

/// TLS 1.3 only, with aws-lc-rs; ALPN `http/1.1`.
fn tls_config(
    ca_pem: Option<&[u8]>,
    certificate: Option<ClientCertificate>,
) -> Result<rustls::ClientConfig, ClientError> {
    let tls_error = |e: rustls::Error| ClientError::Config(format!("TLS setup failed: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(tls_error)?;
    let builder = match ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Config(format!("invalid CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("CA file holds no certificate".into()));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Config(format!("invalid CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder.with_platform_verifier().map_err(tls_error)?
        }
    };
    let mut config = match certificate {
        Some(c) => builder
            .with_client_auth_cert(c.chain, c.key)
            .map_err(|e| ClientError::Config(format!("invalid client certificate or key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The proxy for `host`, from `HTTPS_PROXY` (or `https_proxy`), else `ALL_PROXY` (or
/// `all_proxy`), unless `NO_PROXY` (or `no_proxy`) exempts the host. Only `http://` proxies
/// (a plain connection carrying `CONNECT`) are supported.
fn proxy_for(host: &str) -> Result<Option<Proxy>, ClientError> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let Some(url) = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) else {
        return Ok(None);
    };
    if let Some(exempt) = var(&["NO_PROXY", "no_proxy"])
        && no_proxy_matches(&exempt, host)
    {
        return Ok(None);
    }
    let with_scheme = if url.contains("://") {
        url
    } else {
        format!("http://{url}")
    };
    let parsed = Url::parse(&with_scheme).map_err(|e| {
        ClientError::Config(format!("invalid proxy address in the environment: {e}"))
    })?;
    if parsed.scheme() != "http" {
        return Err(ClientError::Config(format!(
            "proxy scheme {:?} is not supported: use an http:// proxy (it carries the TLS \
             connection through CONNECT), or set NO_PROXY",
            parsed.scheme()
        )));
    }
    let proxy_host = parsed
        .host_str()
        .ok_or_else(|| ClientError::Config("the proxy address has no host".into()))?;
    let authorization = (!parsed.username().is_empty()).then(|| {
        let user = percent_decode(parsed.username());
        let password = percent_decode(parsed.password().unwrap_or_default());
        let both = Zeroizing::new(format!("{}:{}", &*user, &*password));
        Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(both.as_bytes())
        ))
    });
    Ok(Some(Proxy {
        host: proxy_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: parsed.port().unwrap_or(80),
        authorization,
    }))
}

fn percent_decode(s: &str) -> Zeroizing<String> {
    Zeroizing::new(
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    )
}

/// Whether `NO_PROXY`'s comma-separated list covers `host`: `*`, the host itself, or a domain
/// it is in (`example.com` and `.example.com` both cover `a.example.com`).
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let entry = entry.trim_start_matches('.');
            entry == "*"
                || host == entry
                || host
                    .strip_suffix(entry)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_lists() {
        assert!(no_proxy_matches("*", "sigil.example"));
        assert!(no_proxy_matches("localhost, 127.0.0.1", "127.0.0.1"));
        assert!(no_proxy_matches("example.com", "a.example.com"));
        assert!(no_proxy_matches(".example.com", "a.b.example.com"));
        assert!(no_proxy_matches("EXAMPLE.com", "example.com"));
        assert!(!no_proxy_matches("example.com", "badexample.com"));
        assert!(!no_proxy_matches("10.0.0.1", "10.0.0.10"));
        assert!(!no_proxy_matches("", "example.com"));
    }

    #[test]
    fn proxy_credentials_are_decoded() {
        assert_eq!(&*percent_decode("a%40b+c"), "a@b+c");
    }
}
