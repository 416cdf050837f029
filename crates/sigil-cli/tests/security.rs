//! The findings of the security review (issue 17), each reproduced against the real binary
//! over TLS on loopback as the reviewer did, and refused.

mod support;

use support::{Server, ok, stderr};

fn denied(out: std::process::Output, what: &str) {
    assert!(!out.status.success(), "{what}: succeeded");
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("permission denied"),
        "{what}: {err}"
    );
}

/// Finding 1: with `database/roles/*` and `secret/*` allowed but `database/roles/admin` and
/// `secret/config` denied, the same paths with a `/` appended were read and rewritten.
#[test]
fn a_trailing_slash_does_not_step_around_a_deny() {
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "database"]));
    ok(s.sigil(&[
        "write",
        "database/config/main",
        "plugin_name=postgresql-database-plugin",
        "connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres",
        "username=postgres",
        "password=unused",
        "verify_connection=false",
        "allowed_roles=*",
    ]));
    ok(s.sigil(&[
        "write",
        "database/roles/admin",
        "db_name=main",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH SUPERUSER LOGIN PASSWORD '{{password}}'",
    ]));
    s.write_policy(
        "almost",
        r#"
path "database/roles/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "database/roles/admin" { capabilities = ["deny"] }
path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "secret/config" { capabilities = ["deny"] }
"#,
    );
    let mallory = s.new_identity("mallory", &["almost"]);
    for path in ["database/roles/admin", "database/roles/admin/"] {
        denied(s.sigil_as(&mallory, &["read", path]), path);
        denied(
            s.sigil_as(
                &mallory,
                &[
                    "write",
                    path,
                    "db_name=main",
                    "creation_statements=SELECT 1",
                ],
            ),
            path,
        );
        denied(s.sigil_as(&mallory, &["delete", path]), path);
    }
    for path in ["secret/config", "secret/config/"] {
        denied(
            s.sigil_as(&mallory, &["write", path, "max_versions=1"]),
            path,
        );
        denied(s.sigil_as(&mallory, &["read", path]), path);
    }
    // The admin role is as it was; what the policy grants still works.
    let role = ok(s.sigil(&["read", "-field=creation_statements", "database/roles/admin"]));
    assert!(role.contains("SUPERUSER"), "{role}");
    ok(s.sigil_as(
        &mallory,
        &[
            "write",
            "database/roles/app/",
            "db_name=main",
            "creation_statements=SELECT 1",
        ],
    ));
    ok(s.sigil_as(&mallory, &["read", "database/roles/app"]));
}

/// Finding 2: an identity with only `create`/`update` on its team's group made itself a member
/// with `policies=["admin"]` and then held `sudo` everywhere.
#[test]
fn editing_a_group_does_not_make_anyone_admin() {
    let s = Server::start();
    s.write_policy(
        "team-lead",
        r#"path "identity/group/name/team-a" { capabilities = ["create", "update", "read"] }"#,
    );
    let mallory = s.new_identity("mallory", &["team-lead"]);
    let out = s.sigil_as(
        &mallory,
        &[
            "group", "create", "team-a", "--policy", "admin", "--member", "mallory",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("only an admin may grant the admin policy"),
        "{err}"
    );
    // Still no admin: the sudo path stays closed to her, and the group holds nothing.
    denied(s.sigil_as(&mallory, &["policy", "list"]), "policy list");
    ok(s.sigil_as(
        &mallory,
        &[
            "group",
            "create",
            "team-a",
            "--policy",
            "team-lead",
            "--member",
            "mallory",
        ],
    ));
}

/// Finding 5: 4096 connections that finished the TLS handshake and then sent nothing filled
/// the connection table, and new clients were reset for as long as the attacker kept them.
/// Now one address holds at most its share, others are served at once, and silent
/// connections (before any request, after the HTTP/2 preface, idle after a request) close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_clients_out() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let s = Server::start();
    let raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let attacker: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let started = std::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4200 {
        silent.extend(raw.connect_from(attacker, &[]).await);
    }
    // An HTTP/2 connection that sends its preface and then nothing, and an HTTP/1.1 one that
    // makes one request and then keeps the connection idle.
    let third: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let mut h2 = raw.connect_from(third, &[b"h2"]).await.expect("connected");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut idle = raw.connect_from(third, &[]).await.expect("connected");
    idle.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        silent.len() <= 256,
        "one address held {} connections",
        silent.len()
    );

    // Another address is served at once.
    let mut other = raw
        .connect_from("127.0.0.2".parse().unwrap(), &[])
        .await
        .expect("a client from another address is let in");
    other
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        other.read_to_end(&mut answer),
    )
    .await
    .expect("answered")
    .ok();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Every silent connection is closed by the server, well within 30 s of being made (the
    // idle one within 30 s of its answer plus a margin).
    let mut waiting = tokio::task::JoinSet::new();
    for mut c in silent.into_iter().chain([h2, idle]) {
        waiting.spawn(tokio::time::timeout(
            std::time::Duration::from_secs(50),
            async move {
                let mut buf = [0u8; 1024];
                // An HTTP/2 SETTINGS or GOAWAY frame may come first; then the end.
                while let Ok(1..) = c.read(&mut buf).await {}
            },
        ));
    }
    while let Some(r) = waiting.join_next().await {
        r.unwrap().expect("the server closed the connection");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// The listener's time limits, each against a client that starts and stalls: a TCP connection
/// that never starts TLS, a request head that never ends (both closed, 10 s), and a signed
/// request whose body never ends (408 after 30 s). Run side by side; the bounds checked are
/// generous (what matters is that each ends, not how fast).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_heads_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = Server::start();
    let raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let limit = std::time::Duration::from_secs(90);

    // No TLS at all: TCP connected, nothing sent.
    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let handshake = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        tokio::time::timeout(limit, tcp.read(&mut buf))
            .await
            .expect("a connection without a handshake is closed")
            .map_or(0, |n| n)
    });

    // A request head that never ends.
    let mut head = raw
        .connect_from("127.0.0.4".parse().unwrap(), &[])
        .await
        .expect("connected");
    head.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let head = tokio::spawn(async move {
        let mut answer = Vec::new();
        tokio::time::timeout(limit, head.read_to_end(&mut answer))
            .await
            .expect("a head that never ends is cut off")
            .ok();
        answer
    });

    // A signed request (authenticated: the full body budget) whose body stops half way.
    let req = raw.signed("POST", "/v1/secret/data/slow", Some(b"{\"data\":{}}"));
    let mut text = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
        req.target,
        raw.host(),
        req.body.len()
    );
    for (k, v) in &req.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let mut body = raw
        .connect_from("127.0.0.5".parse().unwrap(), &[])
        .await
        .expect("connected");
    body.write_all(text.as_bytes()).await.unwrap();
    body.write_all(&req.body[..req.body.len() / 2])
        .await
        .unwrap();
    let body = tokio::spawn(async move {
        let mut answer = Vec::new();
        tokio::time::timeout(limit, body.read_to_end(&mut answer))
            .await
            .expect("a body that never ends is cut off")
            .ok();
        answer
    });

    assert_eq!(handshake.await.unwrap(), 0, "closed without a word");
    let head = head.await.unwrap();
    assert!(
        head.is_empty() || head.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let body = body.await.unwrap();
    assert!(
        body.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The server is well, and the stalled write did nothing.
    let r = raw
        .send(&raw.signed("GET", "/v1/secret/data/slow", None))
        .await;
    assert_eq!(r.status, 404);
}

/// Finding 4: a captured signed `POST sys/rotate` was accepted again after a restart and
/// unseal (the replay cache lived in memory only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_write_is_not_accepted_again_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = tmp.path().join("admin.key");
    ok(support::run(&[
        "key",
        "generate",
        "-o",
        key.to_str().unwrap(),
    ]));
    let mut server = Server::start_data_dir(&data, false);
    server.init_and_unseal(&key);
    let term = |s: &Server| -> u64 {
        ok(s.sigil(&["read", "-field=term", "sys/key-status"]))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(term(&server), 1);
    let raw = support::raw::Raw::new(&server, &key).await;
    let rotate = raw.signed("POST", "/v1/sys/rotate", None);
    assert_eq!(raw.send(&rotate).await.status, 200);
    assert_eq!(term(&server), 2);

    // kill -9, the same port, unsealed again: the captured request is still a replay.
    let port = server.addr().port();
    let env = server.env.clone();
    server.kill9();
    let listen = format!("127.0.0.1:{port}");
    let restarted = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["--data-dir", data.to_str().unwrap(), "--listen", &listen],
        &[],
        3,
    );
    let mut restarted = restarted;
    restarted.env = env;
    ok(restarted.sigil(&["operator", "unseal"]));
    let again = raw.send(&rotate).await;
    assert_eq!(again.status, 401, "{}", again.error_text());
    assert!(
        again.error_text().contains("replayed"),
        "{}",
        again.error_text()
    );
    assert_eq!(term(&restarted), 2);
    // A fresh signature of the same request is a new request.
    assert_eq!(
        raw.send(&raw.signed("POST", "/v1/sys/rotate", None))
            .await
            .status,
        200
    );
    assert_eq!(term(&restarted), 3);
}

/// Finding 4, transient mode: no nonces survive a restart, so a signature made before the
/// server started is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_server_refuses_signatures_older_than_itself() {
    let s = Server::start();
    let raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let t = support::raw::now();
    let old = raw.signed_at("POST", "/v1/sys/rotate", None, t - 30, t + 60);
    let refused = raw.send(&old).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.error_text().contains("before this server started"),
        "{}",
        refused.error_text()
    );
    assert_eq!(
        raw.send(&raw.signed("POST", "/v1/sys/rotate", None))
            .await
            .status,
        200
    );
}

/// Finding 4: every server accepted `localhost`, `127.0.0.1` and `::1` and ignored the port in
/// `@target-uri`, so a request signed for one server was accepted by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_for_another_port_is_refused() {
    let s = Server::start();
    let mut raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let port = s.addr().port();
    for (authority, accepted) in [
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
        (format!("[::1]:{port}"), true),
        (format!("127.0.0.1:{}", port.wrapping_add(1)), false),
        ("127.0.0.1".to_owned(), false),
        (format!("sigil.example:{port}"), false),
    ] {
        raw.host_override = Some(authority.clone());
        let resp = raw
            .send(&raw.signed("GET", "/v1/sys/key-status", None))
            .await;
        if accepted {
            assert_eq!(resp.status, 200, "{authority}: {}", resp.error_text());
        } else {
            assert_eq!(resp.status, 401, "{authority}");
            assert!(
                resp.error_text().contains("not a name and port"),
                "{authority}"
            );
        }
    }
}

/// Finding 6: the body (up to 1 MiB, 30 s) was read before the signature was checked, and
/// "unknown or disabled key" and "does not verify" were different answers (anyone could probe
/// which public keys are registered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_before_the_body_and_refusals_look_alike() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let s = Server::start();
    let raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let stranger_key = s.new_key("stranger");
    let stranger = support::raw::Raw::new(&s, &stranger_key).await;

    // A stranger announces a large body and sends none of it: refused at once, not after the
    // body timeout.
    let req = stranger.signed("POST", "/v1/secret/data/x", Some(b"{}"));
    let mut head = format!(
        "POST /v1/secret/data/x HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n",
        raw.host()
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = raw
        .connect_from("127.0.0.1".parse().unwrap(), &[])
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_exact(&mut status),
    )
    .await
    .expect("answered before the body")
    .unwrap();
    assert_eq!(&status, b"HTTP/1.1 401");

    // An unknown key and a bad signature by a known key get the same answer.
    let unknown = stranger
        .send(&stranger.signed("GET", "/v1/secret/data/x", None))
        .await;
    let mut bad = raw.signed("GET", "/v1/secret/data/x", None);
    for (k, v) in bad.headers.iter_mut() {
        if k == "Signature" {
            let mut b = v.clone().into_bytes();
            b[7] = if b[7] == b'A' { b'B' } else { b'A' };
            *v = String::from_utf8(b).unwrap();
        }
    }
    let bad = raw.send(&bad).await;
    assert_eq!((unknown.status, bad.status), (401, 401));
    assert_eq!(unknown.body, bad.body);
}

/// How the TLS-terminating proxy of [`a_proxy_cannot_forge_success`] answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proxy {
    /// Forwards requests and answers as they are.
    Honest,
    /// Answers 200 with the request's own body (a channel-sealed one, reflected).
    Reflect,
    /// Answers a bare 204 without forwarding.
    Bare204,
    /// Forwards the request, then answers that the channel expired: unsigned (`false`) or
    /// with a signature that is not the server's (`true`).
    ForwardThenExpired(bool),
}

/// One HTTP/1.1 request read off `conn`: head lines and body.
async fn read_request(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).ok()?;
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.ok()?;
    Some((line, headers, body))
}

/// Finding 3: a TLS-terminating proxy the client trusts forged success — a channel-sealed
/// request reflected as its own answer, a bare 204, and a forged `Sigil-Channel: expired` that
/// made the SDK send a request the proxy had forwarded a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cannot_forge_success() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt as _;

    // The proxy's address is what clients use (api_addr), so the server accepts what they sign.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let server_addr = std::net::SocketAddr::from(([127, 0, 0, 1], support::ports::free_port()));
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sigil.toml");
    std::fs::write(
        &config,
        format!(
            "api_addr = \"https://localhost:{proxy_port}\"\n[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"{server_addr}\"\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let key = tmp.path().join("admin.key");
    ok(support::run(&[
        "key",
        "generate",
        "-o",
        key.to_str().unwrap(),
    ]));
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    // The CLI goes to the server directly (it prints the proxy's address as SIGIL_ADDR).
    for (k, v) in s.env.iter_mut() {
        if k == "SIGIL_ADDR" {
            *v = format!("https://{server_addr}");
        }
    }
    s.init_and_unseal(&key);

    let mode = Arc::new(Mutex::new(Proxy::Honest));
    let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let upstream = reqwest::Client::builder()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(&std::fs::read(s.var("SIGIL_CACERT")).unwrap())
                .unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    {
        let (mode, forwarded) = (Arc::clone(&mode), Arc::clone(&forwarded));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                let (mode, forwarded) = (Arc::clone(&mode), Arc::clone(&forwarded));
                tokio::spawn(async move {
                    let Ok(mut conn) = acceptor.accept(tcp).await else {
                        return;
                    };
                    while let Some((line, headers, body)) = read_request(&mut conn).await {
                        let mut parts = line.split(' ');
                        let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
                        let now = *mode.lock().unwrap();
                        let forward = || async {
                            forwarded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let mut r = upstream.request(
                                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                                format!("https://{server_addr}{target}"),
                            );
                            for (k, v) in &headers {
                                if k != "content-length" {
                                    r = r.header(k, v);
                                }
                            }
                            let resp = r.body(body.clone()).send().await.unwrap();
                            let status = resp.status().as_u16();
                            let hs: Vec<(String, String)> = resp
                                .headers()
                                .iter()
                                .filter(|(k, _)| k.as_str() != "content-length")
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                                .collect();
                            (status, hs, resp.bytes().await.unwrap().to_vec())
                        };
                        let (status, hs, out) = match now {
                            Proxy::Honest => forward().await,
                            Proxy::Reflect => (
                                200,
                                vec![(
                                    "content-type".into(),
                                    "application/vnd.sigil.sealed+json".into(),
                                )],
                                body.clone(),
                            ),
                            Proxy::Bare204 => (204, vec![], vec![]),
                            Proxy::ForwardThenExpired(signed) => {
                                forward().await;
                                let value = if signed {
                                    format!(
                                        "expired; sig={}",
                                        sigil_crypto::b64url_encode(&[7u8; 64])
                                    )
                                } else {
                                    "expired".to_owned()
                                };
                                (
                                    400,
                                    vec![("sigil-channel".into(), value)],
                                    br#"{"errors":["expired"]}"#.to_vec(),
                                )
                            }
                        };
                        let mut answer = format!("HTTP/1.1 {status} X\r\n");
                        for (k, v) in hs {
                            answer.push_str(&format!("{k}: {v}\r\n"));
                        }
                        answer.push_str(&format!("content-length: {}\r\n\r\n", out.len()));
                        let mut bytes = answer.into_bytes();
                        bytes.extend_from_slice(&out);
                        if conn.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }

    let client = sigil_client::Client::new(sigil_client::ClientConfig {
        addr: format!("https://localhost:{proxy_port}"),
        key: Some(
            sigil_crypto::SecretIdentity::from_key_file(&std::fs::read_to_string(&key).unwrap())
                .unwrap(),
        ),
        ca_pem: Some(cert.cert.pem().into_bytes()),
        server_keyid: Some(s.var("SIGIL_SERVER_KEY").to_owned()),
    })
    .unwrap()
    .with_channels(true);
    let set = |m| *mode.lock().unwrap() = m;
    let write = |v: &str| serde_json::json!({ "data": { "v": v } });
    let version = || {
        let out = ok(s.sigil(&["kv", "metadata", "get", "-format=json", "secret/app"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["data"]["current_version"]
            .as_u64()
            .unwrap()
    };

    // Through the honest proxy: a channel, a write, a 204 with its receipt.
    client
        .request("POST", "secret/data/app", Some(&write("1")))
        .await
        .unwrap();
    client
        .request("GET", "secret/data/app", None)
        .await
        .unwrap();
    assert!(client.channel_id().is_some(), "on a channel");
    client
        .request("DELETE", "secret/data/gone", None)
        .await
        .expect("a 204 with a receipt");
    assert_eq!(version(), 1);

    // Reflection: the proxy answers the channel-sealed write with the request's own body.
    set(Proxy::Reflect);
    let err = client
        .request("POST", "secret/data/app", Some(&write("2")))
        .await
        .expect_err("a reflected body is not an answer");
    assert!(err.to_string().contains("opened"), "{err}");
    // A bare 204 for a request the server never got.
    set(Proxy::Bare204);
    let err = client
        .request("DELETE", "secret/metadata/app", None)
        .await
        .expect_err("a bare 204 is not an answer");
    assert!(err.to_string().contains("receipt"), "{err}");
    // A forged "channel expired" for a request the proxy did forward: not sent again, whether
    // it carries no signature or one that is not the server's.
    for (n, signed) in [(2, false), (3, true)] {
        set(Proxy::ForwardThenExpired(signed));
        let before = forwarded.load(std::sync::atomic::Ordering::SeqCst);
        let err = client
            .request("POST", "secret/data/app", Some(&write("x")))
            .await
            .expect_err("an unsigned 'expired' is not trusted");
        if signed {
            assert!(err.to_string().contains("did not sign"), "{err}");
        }
        assert_eq!(
            forwarded.load(std::sync::atomic::Ordering::SeqCst),
            before + 1
        );
        assert_eq!(version(), n, "the forwarded write ran once");
    }
    set(Proxy::Honest);
    client
        .request("GET", "secret/data/app", None)
        .await
        .unwrap();
}

/// Finding 6: an answer the server gives before reading the body (here 401: not signed) reached
/// a client that was still sending as a connection reset, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_still_sending() {
    let s = Server::start();
    let ca = reqwest::Certificate::from_pem_bundle(&std::fs::read(s.var("SIGIL_CACERT")).unwrap())
        .unwrap();
    for h2 in [false, true] {
        let builder = reqwest::Client::builder().tls_certs_only(ca.clone());
        let client = if h2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        }
        .build()
        .unwrap();
        for _ in 0..5 {
            let resp = client
                .post(format!("{}/v1/secret/data/x", s.var("SIGIL_ADDR")))
                .header("content-type", "application/vnd.sigil.sealed+json")
                .body(vec![b'x'; 900 * 1024])
                .send()
                .await
                .unwrap_or_else(|e| panic!("h2={h2}: {e:?}"));
            assert_eq!(resp.status(), 401, "h2={h2}");
        }
    }
}

/// Finding 6: unseal progress never reset; `sigil operator unseal -reset` discards it, as in
/// Vault (the 10-minute limit is a unit test in sigil-core's seal.rs).
#[test]
fn unseal_progress_can_be_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.key"), tmp.path().join("b.key"));
    for k in [&a, &b] {
        ok(support::run(&[
            "key",
            "generate",
            "-o",
            k.to_str().unwrap(),
        ]));
    }
    let s = Server::start_data_dir(&tmp.path().join("data"), false);
    let out = ok(s.sigil_env(
        &[
            "operator",
            "init",
            "--admin",
            a.to_str().unwrap(),
            "--admin",
            b.to_str().unwrap(),
            "--threshold",
            "2",
        ],
        &[],
    ));
    let keyid = out
        .trim()
        .strip_prefix("export SIGIL_SERVER_KEY=")
        .unwrap()
        .to_owned();
    let as_admin = |key: &std::path::Path, args: &[&str]| {
        ok(s.sigil_env(
            args,
            &[
                ("SIGIL_KEY", key.to_str().unwrap()),
                ("SIGIL_SERVER_KEY", &keyid),
            ],
        ))
    };
    assert!(as_admin(&a, &["operator", "unseal"]).contains("1/2"));
    assert!(as_admin(&a, &["operator", "unseal", "-reset"]).contains("0/2"));
    assert!(as_admin(&b, &["operator", "unseal"]).contains("1/2"));
    assert!(as_admin(&a, &["operator", "unseal"]).contains("Unsealed"));
}
