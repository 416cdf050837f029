//! Running a server for months: reload without restart (SIGHUP, `sigil operator reload`) and
//! a graceful shutdown that answers what is in flight and loses no acknowledged write.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use support::raw::Raw;
use support::{Server, eventually, ok, stderr, stdout, tls_connector};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An operator's CA, which signs server certificates for `localhost`.
struct OperatorCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl OperatorCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Operator CA");
        let cert = params.self_signed(&key).unwrap();
        OperatorCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A new server certificate (DER) and its chain and key files' contents.
    fn server_cert(&self, cn: &str) -> (Vec<u8>, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.der().to_vec(),
            format!("{}{}", cert.pem(), self.pem),
            key.serialize_pem(),
        )
    }
}

/// Replaces `path` as a certificate manager would: a new file renamed over the old one.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(s: &Server, ca_pem: &str) -> Tls {
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    tls_connector(ca_pem.as_bytes(), &[&rustls::version::TLS13])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake")
}

fn served(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// `GET /v1/sys/health` on a kept-alive HTTP/1.1 connection; the status.
async fn health(tls: &mut Tls, host: &str) -> u16 {
    tls.write_all(format!("GET /v1/sys/health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

fn config_text(data: &Path, cert: &Path, key: &Path, ca: &Path, extra: &str) -> String {
    format!(
        "{extra}\n[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\nnames = [\"localhost\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_ca_file = \"{}\"\n",
        data.display(),
        cert.display(),
        key.display(),
        ca.display(),
    )
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_connections_while_old_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OperatorCa::new();
    let (cert_a, chain_a, key_a) = ca.server_cert("sigil A");
    let (ca_file, cert_file, key_file, config) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("sigil.toml"),
    );
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&cert_file, &chain_a).unwrap();
    std::fs::write(&key_file, &key_a).unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        config_text(&data, &cert_file, &key_file, &ca_file, ""),
    )
    .unwrap();
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    let host = s.addr().to_string();

    let mut old = connect(&s, &ca.pem).await;
    assert_eq!(served(&old), cert_a);
    assert_eq!(health(&mut old, &host).await, 200);

    // The certificate is renewed (a new key too), the log level raised, a limit changed and
    // a setting changed that only a restart applies.
    let (cert_b, chain_b, key_b) = ca.server_cert("sigil B");
    replace(&cert_file, &chain_b);
    replace(&key_file, &key_b);
    std::fs::write(
        &config,
        config_text(
            &data,
            &cert_file,
            &key_file,
            &ca_file,
            "log_level = \"debug\"\n[limits]\nmax_request_bytes = 1048576\n",
        )
        .replace(
            "names = [\"localhost\"]",
            "names = [\"localhost\", \"sigil.example\"]",
        ),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually(10, || s.log_text().contains("reloaded"));
    assert!(s.is_running(), "SIGHUP ended the server");
    let log = s.log_text();
    assert!(log.contains("tls_reloaded=true"), "{log}");
    assert!(log.contains("limits_changed=true"), "{log}");
    assert!(log.contains(&sha256_hex(&cert_b)), "{log}");
    assert!(
        log.contains("listener.names changed") && log.contains("restart to apply"),
        "{log}"
    );
    assert!(log.contains("log level: info → debug"), "{log}");

    // A new connection gets the new certificate; the old one, still open, keeps its own and
    // is answered.
    let new = connect(&s, &ca.pem).await;
    assert_eq!(served(&new), cert_b);
    assert_eq!(health(&mut old, &host).await, 200);
    assert_eq!(served(&old), cert_a);
    // Not sealed: the data is there.
    ok(s.sigil(&["kv", "put", "secret/app", "password=hunter2"]));
    // The new limit is in force: a body over 1 MiB is refused.
    let blob = dir.path().join("blob");
    std::fs::write(&blob, "x".repeat(2 << 20)).unwrap();
    let refused = s.sigil(&[
        "kv",
        "put",
        "secret/big",
        &format!("blob=@{}", blob.display()),
    ]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("1048576"), "{}", stderr(&refused));
    // The debug level is on: a handshake that fails is logged.
    drop(tokio::net::TcpStream::connect(s.addr()).await.unwrap());
    eventually(10, || s.log_text().contains("TLS handshake failed"));

    // A key that does not match the certificate: refused, nothing changes.
    let (_, _, key_c) = ca.server_cert("sigil C");
    replace(&key_file, &key_c);
    let bad = s.sigil(&["operator", "reload"]);
    assert!(!bad.status.success(), "{}", stdout(&bad));
    assert!(stderr(&bad).contains("nothing changed"), "{}", stderr(&bad));
    assert_eq!(served(&connect(&s, &ca.pem).await), cert_b);
    // A configuration file that does not parse: refused, nothing changes.
    replace(&key_file, &key_b);
    let good_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good_config}\nunknown_key = 1\n")).unwrap();
    let bad = s.sigil(&["operator", "reload"]);
    assert!(stderr(&bad).contains("unknown_key"), "{}", stderr(&bad));
    std::fs::write(&config, good_config).unwrap();

    // `sigil operator reload` does what SIGHUP does, through the API, for admins.
    let (cert_d, chain_d, key_d) = ca.server_cert("sigil D");
    replace(&cert_file, &chain_d);
    replace(&key_file, &key_d);
    let report: serde_json::Value =
        serde_json::from_str(&ok(s.sigil(&["operator", "reload", "-format=json"]))).unwrap();
    assert_eq!(report["tls_reloaded"], true, "{report}");
    assert_eq!(report["tls_certificate_sha256"], sha256_hex(&cert_d));
    assert_eq!(report["limits_changed"], false, "{report}");
    assert_eq!(report["audit_devices_reopened"], 0);
    assert_eq!(served(&connect(&s, &ca.pem).await), cert_d);
    let table = ok(s.sigil(&["operator", "reload"]));
    assert!(table.contains("listener.names changed"), "{table}");
    // Not for those without sudo on sys/reload.
    let reader = s.new_identity("reader", &["default"]);
    let refused = s.sigil_as(&reader, &["operator", "reload"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("403"), "{}", stderr(&refused));
    assert_eq!(health(&mut old, &host).await, 200);
}

/// A signed write whose body arrives only after SIGTERM is still answered (and kept); new
/// connections are refused meanwhile; writes acknowledged under load all survive the restart.
#[tokio::test]
async fn sigterm_answers_requests_in_flight_and_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_data_dir(data.path(), false);
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);

    // Load: four writers, each acknowledging its writes in order.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = s.sdk(&admin);
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let path = format!("secret/data/w{w}/{n}");
                let body = serde_json::json!({ "data": { "n": n } });
                match client.request("POST", &path, Some(&body)).await {
                    Ok(_) => acknowledged.push(n),
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A request in flight: its head and half its body sent.
    let raw = Raw::new(&s, &admin).await;
    let body = serde_json::to_vec(&serde_json::json!({ "data": { "v": "in flight" } })).unwrap();
    let req = raw.signed("POST", "/v1/secret/data/inflight", Some(&body));
    let wire = raw.wire(&req);
    let half = wire.len() - req.body.len() / 2;
    let mut tls = raw
        .connect_from("127.0.0.1".parse().unwrap(), &[b"http/1.1"])
        .await
        .unwrap();
    tls.write_all(&wire[..half]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let term = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    eventually(10, || s.log_text().contains("shutting down"));
    // No new connections while draining.
    assert!(
        tokio::net::TcpStream::connect(s.addr()).await.is_err(),
        "a new connection was accepted while draining"
    );
    assert!(s.is_running(), "exited with a request in flight");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    tls.write_all(&wire[half..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.ok();
    let resp = support::raw::parse(&answer);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let opened = raw.open(&req, &resp);
    assert!(opened["data"]["version"].is_number(), "{opened}");

    eventually(20, || s.exit_status().is_some());
    assert!(s.exit_status().unwrap().success());
    let log = s.log_text();
    assert!(log.contains("stopped"), "{log}");
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.push(w.await.unwrap());
    }
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    assert!(total > 0, "no write was acknowledged under load");

    // Every acknowledged write is there after a restart (no log replay needed: the storage
    // was checkpointed at exit, but either way nothing may be missing).
    let mut again = Server::start_data_dir(data.path(), true);
    again
        .env
        .push(("SIGIL_KEY".into(), admin.to_str().unwrap().to_owned()));
    ok(again.sigil(&["operator", "unseal"]));
    assert_eq!(
        ok(again.sigil(&["kv", "get", "-field=v", "secret/inflight"])),
        "in flight\n"
    );
    let client = again.sdk(&admin);
    for (w, ns) in acknowledged.iter().enumerate() {
        for n in ns {
            let got = client
                .request("GET", &format!("secret/data/w{w}/{n}"), None)
                .await
                .unwrap_or_else(|e| panic!("acknowledged write w{w}/{n} lost: {e}"));
            assert_eq!(got.body.unwrap()["data"]["data"]["n"], *n);
        }
    }
}

/// A second SIGTERM does not wait for the requests in flight.
#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let mut s = Server::start();
    let admin = s.admin_key();
    let raw = Raw::new(&s, &admin).await;
    let body = br#"{"data":{"v":"never finished"}}"#;
    let req = raw.signed("POST", "/v1/secret/data/slow", Some(body));
    let wire = raw.wire(&req);
    let mut tls = raw
        .connect_from("127.0.0.1".parse().unwrap(), &[b"http/1.1"])
        .await
        .unwrap();
    tls.write_all(&wire[..wire.len() - 10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signal = |s: &Server| {
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &s.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal(&s);
    eventually(10, || s.log_text().contains("shutting down"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.is_running(), "the first SIGTERM did not wait");
    let started = std::time::Instant::now();
    signal(&s);
    eventually(5, || s.exit_status().is_some());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!s.exit_status().unwrap().success());
    assert!(s.log_text().contains("a second signal"));
}

/// `sigil operator backup` under write load, `sigil operator restore` into a new data
/// directory: every write acknowledged before the backup was asked for is there, the node
/// has the same server key and opens with the original admin's key; a damaged file, a
/// directory with data and a backup from another server are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_new_node() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_data_dir(data.path(), false);
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    let keyid = s.var("SIGIL_SERVER_KEY").to_owned();

    // Writers: each records what was acknowledged, in order.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<Vec<(usize, usize)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, stop, acked) = (s.sdk(&admin), Arc::clone(&stop), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = serde_json::json!({ "data": { "n": n } });
                client
                    .request("POST", &format!("secret/data/b{w}/{n}"), Some(&body))
                    .await
                    .unwrap();
                acked.lock().unwrap().push((w, n));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before: Vec<(usize, usize)> = acked.lock().unwrap().clone();
    assert!(!before.is_empty());
    let backup = s.tmp.path().join("sigil.snap");
    // The CLI blocks: the writers go on on the runtime's other worker meanwhile.
    let said = tokio::task::block_in_place(|| {
        ok(s.sigil(&["operator", "backup", backup.to_str().unwrap()]))
    });
    assert!(said.contains("Success! Backup written to"), "{said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let mode = std::fs::metadata(&backup).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(mode.mode() & 0o777, 0o600);
    // The file names no secret value (ciphertext only).
    let bytes = std::fs::read(&backup).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
    // Only with sudo on sys/storage/snapshot.
    let reader = s.new_identity("reader", &["default"]);
    let refused = s.sigil_as(&reader, &["operator", "backup", "/tmp/never"]);
    assert!(stderr(&refused).contains("403"), "{}", stderr(&refused));
    s.terminate();

    // Restore into a new directory, pinned to the server key.
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    let out = support::run_env(
        &[
            "operator",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ],
        &[("SIGIL_SERVER_KEY", &keyid)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Success! Restored"),
        "{}",
        stdout(&out)
    );
    let mut again = Server::start_data_dir(&target, true);
    assert_eq!(again.var("SIGIL_SERVER_KEY"), keyid, "the same server key");
    again
        .env
        .push(("SIGIL_KEY".into(), admin.to_str().unwrap().to_owned()));
    let status = again.sigil(&["operator", "status", "-format=json"]);
    assert!(
        stdout(&status).contains("\"sealed\": true"),
        "{}",
        stdout(&status)
    );
    ok(again.sigil(&["operator", "unseal"]));
    let client = again.sdk(&admin);
    for (w, n) in &before {
        let got = client
            .request("GET", &format!("secret/data/b{w}/{n}"), None)
            .await
            .unwrap_or_else(|e| {
                panic!("b{w}/{n}, acknowledged before the backup, is missing: {e}")
            });
        assert_eq!(got.body.unwrap()["data"]["data"]["n"], *n);
    }

    // Refused: a directory that holds data, a damaged file, another server's key.
    let into_used = support::run(&[
        "operator",
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(
        stderr(&into_used).contains("holds data already"),
        "{}",
        stderr(&into_used)
    );
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let damaged_file = s.tmp.path().join("damaged.snap");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let fresh = restored.path().join("fresh");
    let out = support::run(&[
        "operator",
        "restore",
        damaged_file.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));
    let other = sigil_crypto::SecretIdentity::generate()
        .unwrap()
        .public()
        .keyid()
        .to_string();
    let out = support::run_env(
        &[
            "operator",
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
        &[("SIGIL_SERVER_KEY", &other)],
    );
    assert!(
        stderr(&out).contains("not by the expected"),
        "{}",
        stderr(&out)
    );
    assert!(
        !fresh.join("sigil.redb").exists(),
        "a refused restore wrote nothing"
    );
}

/// `[[snapshot]]`: the active node writes a signed snapshot every interval and keeps the newest
/// `retain`; each restores as a backup does.
#[test]
fn scheduled_snapshots_are_written_signed_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (data, snaps, config) = (
        dir.path().join("data"),
        dir.path().join("snapshots"),
        dir.path().join("sigil.toml"),
    );
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\n[[snapshot]]\npath = \"{}\"\ninterval = \"1s\"\nretain = 2\n",
            data.display(),
            snaps.display()
        ),
    )
    .unwrap();
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    ok(s.sigil(&["kv", "put", "secret/app", "password=p"]));
    let files = || -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&snaps)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        f.sort();
        f
    };
    // Two kept, and at least a third one written and pruned meanwhile.
    let first = {
        eventually(20, || !files().is_empty());
        files()[0].clone()
    };
    eventually(20, || files().len() == 2 && !files().contains(&first));
    let server_key = s.var("SIGIL_SERVER_KEY").to_owned();
    for f in files() {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bytes = std::fs::read(&f).unwrap();
        let snapshot = sigil_core::snapshot::decode(&bytes, Some(&server_key)).unwrap();
        assert!(snapshot.header.entries > 0);
    }
    // A bad schedule stops the server at start with the file's name.
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[[snapshot]]\npath = \"/tmp/x\"\ninterval = \"0s\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = support::run(&["server", "-c", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[[snapshot]]"), "{}", stderr(&out));
}
