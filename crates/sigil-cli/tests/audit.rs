//! The audit log end to end: entries for successes and failures, no secret in the file, a
//! tamper-evident chain with signed checkpoints, fail-closed devices that recover, and a hung
//! device that costs a bounded wait, never a hang.

mod support;

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Server, ok, run, stderr, stdout};

fn transient_with_audit(args: &[&str]) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut all = vec!["--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Server::start_in(tmp, &all, &[])
}

fn verify(log: &Path, keyid: &str) -> std::process::Output {
    // `--server-key=K`: a keyid is base64url and may start with `-`.
    run(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        &format!("--server-key={keyid}"),
    ])
}

#[test]
fn every_request_is_recorded_without_secrets_and_the_chain_verifies() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("audit.log");
    let mut s = transient_with_audit(&["--audit-file", log.to_str().unwrap()]);
    let secret = "correct-horse-audit-7";
    ok(s.sigil(&["kv", "put", "secret/app", &format!("password={secret}")]));
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=password", "secret/app"])).trim(),
        secret
    );
    let stranger = s.new_key("stranger");
    assert!(
        !s.sigil_as(&stranger, &["kv", "get", "secret/app"])
            .status
            .success()
    );
    assert!(!s.sigil(&["kv", "get", "secret/missing"]).status.success());
    let bob = s.new_identity("bob", &[]);
    // `-mount`: straight to the read, which the server refuses (without it the CLI would
    // first ask which mount serves the path, and bob may use none).
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "-mount=secret", "app"])).contains("403"));

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(secret),
        "the plaintext secret is in the audit log"
    );
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |kind: &str, path: &str, status: Option<u64>| {
        entries.iter().find(|e| {
            e["type"] == kind && e["path"] == path && status.is_none_or(|s| e["status"] == s)
        })
    };
    // The write: request entry with the signature (non-repudiation) and the HMAC of the value.
    let write = find("request", "secret/data/app", None).expect("request entry");
    assert_eq!(write["operation"], "create");
    assert_eq!(write["identity"]["name"], "admin");
    assert!(
        write["signature"]["signature_input"]
            .as_str()
            .unwrap()
            .contains("sigil-request")
    );
    assert!(
        write["remote_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let hash = ok(s.sigil(&["audit", "hash", "-device=file", secret]))
        .trim()
        .to_owned();
    assert!(hash.starts_with("hmac-sha256:"));
    assert_eq!(write["data"]["data"]["password"], hash.as_str());
    // Successes and failures alike.
    assert!(find("response", "secret/data/app", Some(200)).is_some());
    assert!(find("response", "secret/data/missing", Some(404)).is_some());
    let denied = find("response", "secret/data/app", Some(403)).expect("403 recorded");
    assert_eq!(denied["identity"]["name"], "bob");
    let unknown = entries
        .iter()
        .find(|e| e["status"] == 401)
        .expect("401 recorded");
    assert!(unknown["identity"].is_null());
    assert!(unknown["error"].as_str().unwrap().contains("unknown"));

    // The live log has no checkpoint yet (one comes every 100 entries and at a clean stop):
    // its chain verifies, and it says that nothing is vouched for yet; --strict refuses it.
    let keyid = s.var("SIGIL_SERVER_KEY").to_owned();
    let out = verify(&log, &keyid);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no signed checkpoint yet"),
        "{}",
        stdout(&out)
    );
    let strict = run(&[
        "audit",
        "verify",
        "--strict",
        log.to_str().unwrap(),
        &format!("--server-key={keyid}"),
    ]);
    assert!(!strict.status.success());
    assert!(
        stderr(&strict).contains("vouches for none"),
        "{}",
        stderr(&strict)
    );

    // Graceful stop writes a signed checkpoint; the whole log verifies against the server key.
    nix_term(&mut s);
    let out = verify(&log, &keyid);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 signed checkpoints"),
        "{}",
        stdout(&out)
    );

    // Edit, delete, reorder one line: verify names that line.
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let check = |mutated: Vec<String>, line: usize| {
        let p = logdir.path().join("tampered.log");
        std::fs::write(&p, mutated.join("\n") + "\n").unwrap();
        let out = verify(&p, &keyid);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("line {line}:")),
            "{}",
            stderr(&out)
        );
    };
    let mut edited = lines.clone();
    edited[2] = edited[2].replacen("\"path\":\"", "\"path\":\"x", 1);
    check(edited, 3);
    let mut deleted = lines.clone();
    deleted.remove(3);
    check(deleted, 4);
    let mut swapped = lines;
    swapped.swap(4, 5);
    check(swapped, 5);
    // Another server's key is not accepted for the checkpoints.
    let other = s.new_key("other");
    let other_keyid = stdout(&run(&["key", "public", other.to_str().unwrap()]));
    let out = run(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        &format!("--server-key={}", other_keyid.trim()),
    ]);
    assert!(
        stderr(&out).contains("another server key"),
        "{}",
        stderr(&out)
    );
}

/// SIGTERM, and wait for the exit (the final checkpoint is written on the way out).
fn nix_term(s: &mut Server) {
    std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while s.is_running() {
        assert!(Instant::now() < end, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unwritable_only_device_refuses_requests_and_recovers() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("audit.log");
    // Every write to /dev/full fails (ENOSPC).
    std::os::unix::fs::symlink("/dev/full", &log).unwrap();
    let s = transient_with_audit(&["--audit-file", log.to_str().unwrap()]);
    let out = s.sigil(&["kv", "put", "secret/app", "v=1"]);
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    assert!(stderr(&out).contains("audit"), "{}", stderr(&out));
    // Nothing happened: after recovery the secret is not there.
    std::fs::remove_file(&log).unwrap();
    let out = s.sigil(&["kv", "get", "secret/app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    ok(s.sigil(&["kv", "put", "secret/app", "v=2"]));
    assert_eq!(ok(s.sigil(&["kv", "get", "-field=v", "secret/app"])), "2\n");
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() >= 4);
}

#[test]
fn a_hung_socket_device_costs_a_bounded_wait_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("audit.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&reading);
    // Accept connections; read nothing until told to.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let flag = std::sync::Arc::clone(&flag);
            std::thread::spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut buf = [0u8; 65536];
                while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    let config = dir.path().join("sigil.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\n[[audit]]\nname = \"siem\"\ntype = \"socket\"\naddress = \"unix:{}\"\n",
            data.display(),
            sock.display()
        ),
    )
    .unwrap();
    let s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
        2,
    );
    let key = dir.path().join("admin.key");
    ok(run(&["key", "generate", "-o", key.to_str().unwrap()]));
    let init = ok(s.sigil_env(&["operator", "init", "--admin", key.to_str().unwrap()], &[]));
    let keyid = init
        .trim()
        .strip_prefix("export SIGIL_SERVER_KEY=")
        .unwrap()
        .to_owned();
    let env = [
        ("SIGIL_KEY", key.to_str().unwrap()),
        ("SIGIL_SERVER_KEY", keyid.as_str()),
    ];
    ok(s.sigil_env(&["operator", "unseal"], &env));

    // Fill the socket until writes block; then requests fail, each within the bound.
    let mut refused = false;
    for i in 0..2000 {
        let t = Instant::now();
        let out = s.sigil_env(
            &[
                "kv",
                "put",
                &format!("secret/fill/{i}"),
                &format!("v={}", "x".repeat(200)),
            ],
            &env,
        );
        // A generous bound: the socket timeout is 2 s; a request the device blocked for
        // good would wait for ever.
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "request {i} took {:?}",
            t.elapsed()
        );
        if !out.status.success() {
            assert!(stderr(&out).contains("503"), "{}", stderr(&out));
            refused = true;
            break;
        }
    }
    assert!(refused, "the hung device never made a request fail");
    // Many requests stuck on the device at once do not stall the server: an endpoint that
    // does not audit answers meanwhile. "Meanwhile" is checked, not timed: the device's queue
    // (read from the plain metrics listener, which is not audited) holds entries before the
    // status request and still after it. A failed write drops the connection and the next
    // one starts with an empty socket buffer, so writers keep sending until it is full again
    // and requests wait on it.
    let depth = || {
        s.metric("sigil_audit_queue_depth{device=\"siem\"}")
            .unwrap_or(0.0)
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (addr, ca, key, keyid, stop) = (
                s.var("SIGIL_ADDR").to_owned(),
                s.var("SIGIL_CACERT").to_owned(),
                key.clone(),
                keyid.clone(),
                std::sync::Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let out = std::process::Command::new(support::SIGIL)
                        .args(["kv", "put", &format!("secret/stuck/{t}-{n}"), "v=1"])
                        .env("SIGIL_ADDR", &addr)
                        .env("SIGIL_CACERT", &ca)
                        .env("SIGIL_KEY", &key)
                        .env("SIGIL_SERVER_KEY", &keyid)
                        .output()
                        .unwrap();
                    outcomes.push(out);
                }
                outcomes
            })
        })
        .collect();
    let mut served_while_stuck = false;
    let end = Instant::now() + Duration::from_secs(120);
    while !served_while_stuck && Instant::now() < end {
        if depth() < 1.0 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        ok(s.sigil_env(&["operator", "status"], &[]));
        served_while_stuck = depth() >= 1.0;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        for out in w.join().unwrap() {
            assert!(
                out.status.success() || stderr(&out).contains("503"),
                "{}",
                stderr(&out)
            );
        }
    }
    assert!(
        served_while_stuck,
        "operator status was never answered while requests were stuck on the device"
    );

    // The device recovers when the reader does.
    reading.store(true, std::sync::atomic::Ordering::Relaxed);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = s.sigil_env(&["kv", "put", "secret/after", "v=1"], &env);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < end, "no recovery: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Unix-socket audit sink the test controls: it reads every line into `lines`, and `stop`
/// closes its connections and removes the socket, so the device can neither write nor
/// reconnect until `start` binds it again.
struct Sink {
    path: std::path::PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<String>>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections being read (and the accept loop, counted as one while it runs).
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Sink {
    fn new(path: std::path::PathBuf) -> Sink {
        let sink = Sink {
            path,
            lines: Default::default(),
            running: Default::default(),
            open: Default::default(),
        };
        sink.start();
        sink
    }

    fn start(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::os::unix::net::UnixListener::bind(&self.path).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, SeqCst);
        self.open.fetch_add(1, SeqCst);
        let (lines, running, open) = (
            std::sync::Arc::clone(&self.lines),
            std::sync::Arc::clone(&self.running),
            std::sync::Arc::clone(&self.open),
        );
        std::thread::spawn(move || {
            while running.load(SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                open.fetch_add(1, SeqCst);
                let (lines, running, open) = (
                    std::sync::Arc::clone(&lines),
                    std::sync::Arc::clone(&running),
                    std::sync::Arc::clone(&open),
                );
                std::thread::spawn(move || {
                    let _closed = Closed(open);
                    let mut buf = [0u8; 65536];
                    while running.load(SeqCst) {
                        match conn.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => lines
                                .lock()
                                .unwrap()
                                .push_str(&String::from_utf8_lossy(&buf[..n])),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => return,
                        }
                    }
                    // Dropping the connection: the device's next write fails.
                });
            }
            drop(listener);
            open.fetch_sub(1, SeqCst);
        });
    }

    fn stop(&self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        std::fs::remove_file(&self.path).unwrap();
        // Until the accept loop and every reader have ended (their polls notice the flag).
        support::eventually(10, || {
            self.open.load(std::sync::atomic::Ordering::SeqCst) == 0
        });
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().clone()
    }
}

/// Counts a reader's connection as closed when its thread ends, however it ends.
struct Closed(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Several devices: a request succeeds when any one of them records it, and is refused (503,
/// and not carried out) only when none does.
#[test]
fn a_request_needs_one_device_of_several_and_fails_when_none_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.log");
    // Every write to /dev/full fails (ENOSPC): this device never records anything.
    std::os::unix::fs::symlink("/dev/full", &broken).unwrap();
    let sink = Sink::new(dir.path().join("audit.sock"));
    let config = dir.path().join("sigil.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\n[[audit]]\nname = \"broken\"\ntype = \"file\"\npath = \"{}\"\n[[audit]]\nname = \"siem\"\ntype = \"socket\"\naddress = \"unix:{}\"\n",
            dir.path().join("data").display(),
            broken.display(),
            sink.path.display()
        ),
    )
    .unwrap();
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    let key = dir.path().join("admin.key");
    ok(run(&["key", "generate", "-o", key.to_str().unwrap()]));
    s.init_and_unseal(&key);

    // One of two devices records: the request succeeds, and that device has it.
    ok(s.sigil(&["kv", "put", "secret/one-device", "v=1"]));
    support::eventually(10, || sink.text().contains("secret/data/one-device"));
    assert!(
        s.log_text().contains("broken"),
        "the failing device is logged"
    );

    // Neither records: refused with 503, and nothing was written.
    sink.stop();
    let out = s.sigil(&["kv", "put", "secret/no-device", "v=1"]);
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    sink.start();
    let out = s.sigil(&["kv", "get", "secret/no-device"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The device is back: requests succeed again.
    ok(s.sigil(&["kv", "put", "secret/back", "v=1"]));
    support::eventually(10, || sink.text().contains("secret/data/back"));
}

/// A live log after a checkpoint (issue "The first hour", point 10): the lines up to the last
/// checkpoint are vouched for, the newer ones are reported and accepted; `--strict` refuses.
#[test]
fn a_live_log_verifies_up_to_its_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("audit.log"));
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--audit-file",
        log.to_str().unwrap(),
    ];
    let mut s = Server::spawn(tempfile::tempdir().unwrap(), &args, &[], 2);
    let admin = tmp.path().join("admin.key");
    ok(run(&["key", "generate", "-o", admin.to_str().unwrap()]));
    s.init_and_unseal(&admin);
    ok(s.sigil(&["kv", "put", "secret/a", "v=1"]));
    let keyid = s.var("SIGIL_SERVER_KEY").to_owned();
    // A clean stop signs a checkpoint; the next server goes on with the same chain.
    nix_term(&mut s);
    let mut s = Server::spawn(tempfile::tempdir().unwrap(), &args, &[], 3);
    s.env
        .push(("SIGIL_KEY".into(), admin.to_str().unwrap().to_owned()));
    ok(s.sigil(&["operator", "unseal"]));
    ok(s.sigil(&["kv", "put", "secret/b", "v=2"]));

    let out = verify(&log, &keyid);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.starts_with("OK up to line "), "{said}");
    assert!(
        said.contains("newer lines are not yet vouched for"),
        "{said}"
    );
    let strict = run(&[
        "audit",
        "verify",
        "--strict",
        log.to_str().unwrap(),
        &format!("--server-key={keyid}"),
    ]);
    assert!(!strict.status.success(), "{}", stdout(&strict));
}

/// SIGHUP (issue 21, first increment) no longer ends the server: it reopens the audit devices,
/// as logrotate's `postrotate` expects. The moved file ends with a signed checkpoint and
/// verifies on its own (`--strict`); the new file at the same path continues the chain
/// (`--continued`). `copytruncate` needs no signal: the file is opened for appending, so the
/// server writes on at the start of the truncated file.
#[test]
fn sighup_reopens_audit_files_and_the_server_lives_on() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("audit.log");
    let rotated = logdir.path().join("audit.log.1");
    let mut s = transient_with_audit(&["--audit-file", log.to_str().unwrap()]);
    let keyid = s.var("SIGIL_SERVER_KEY").to_owned();
    ok(s.sigil(&["kv", "put", "secret/a", "v=1"]));

    // logrotate's default: move the file, then signal.
    std::fs::rename(&log, &rotated).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    support::eventually(10, || s.log_text().contains("audit_devices_reopened=1"));
    assert!(s.is_running(), "SIGHUP ended the server");
    ok(s.sigil(&["kv", "put", "secret/b", "v=2"]));
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=v", "secret/a"])),
        "1\n",
        "not sealed"
    );

    let strict = run(&[
        "audit",
        "verify",
        "--strict",
        rotated.to_str().unwrap(),
        &format!("--server-key={keyid}"),
    ]);
    assert!(
        strict.status.success(),
        "the moved file is complete: {}",
        stderr(&strict)
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("secret/data/a") && !old.contains("secret/data/b"));
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        new.contains("secret/data/b"),
        "the new file gets the new entries"
    );
    let continued = run(&[
        "audit",
        "verify",
        "--continued",
        log.to_str().unwrap(),
        &format!("--server-key={keyid}"),
    ]);
    assert!(continued.status.success(), "{}", stderr(&continued));
    // The chain runs across the two files: the new one starts where the old one ended.
    let last_old: serde_json::Value = serde_json::from_str(old.lines().last().unwrap()).unwrap();
    let first_new: serde_json::Value = serde_json::from_str(new.lines().next().unwrap()).unwrap();
    assert_eq!(
        first_new["seq"].as_u64().unwrap(),
        last_old["seq"].as_u64().unwrap() + 1,
        "{first_new}"
    );

    // copytruncate: copy, truncate in place, no signal.
    std::fs::copy(&log, logdir.path().join("audit.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    ok(s.sigil(&["kv", "put", "secret/c", "v=3"]));
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(
        after.starts_with('{') && after.contains("secret/data/c"),
        "written from the start of the truncated file, no hole: {after:.200}"
    );
    nix_term(&mut s);
}

/// Built-in rotation (`rotate_bytes`, `rotate_keep`): the files a device rotated verify as one
/// chain oldest first, across a restart; a missing or misplaced file is named; only
/// `rotate_keep` rotated files stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_verify_as_one_chain_and_gaps_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let config = dir.path().join("sigil.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\n[[audit]]\ntype = \"file\"\npath = \"{}\"\nrotate_bytes = 65536\nrotate_keep = 3\n",
            data.display(),
            log.display()
        ),
    )
    .unwrap();
    let args = ["-c", config.to_str().unwrap()];
    let mut s = Server::spawn(tempfile::tempdir().unwrap(), &args, &[], 2);
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    let keyid = s.var("SIGIL_SERVER_KEY").to_owned();
    let client = s.sdk(&admin);
    let rotated = |n: u32| sigil_core::audit::Rotation::numbered(&log, n);
    let mut writes = 0;
    while !rotated(3).exists() || writes < 50 {
        let body = serde_json::json!({ "data": { "n": writes } });
        client
            .request("POST", &format!("secret/data/r/{writes}"), Some(&body))
            .await
            .unwrap();
        writes += 1;
        assert!(writes < 5000, "never rotated three times");
    }
    // Rotate past the kept number, restart, write on: the chain continues.
    for i in 0..200 {
        let body = serde_json::json!({ "data": { "n": i } });
        client
            .request("POST", &format!("secret/data/more/{i}"), Some(&body))
            .await
            .unwrap();
    }
    s.terminate();
    let mut s = Server::spawn(tempfile::tempdir().unwrap(), &args, &[], 3);
    s.env
        .push(("SIGIL_KEY".into(), admin.to_str().unwrap().to_owned()));
    ok(s.sigil(&["operator", "unseal"]));
    ok(s.sigil(&["kv", "put", "secret/after-restart", "v=1"]));
    s.terminate();

    assert!(
        rotated(3).exists() && !rotated(4).exists(),
        "rotate_keep = 3"
    );
    for n in 1..=3 {
        let size = std::fs::metadata(rotated(n)).unwrap().len();
        assert!(size >= 65536, "{n}: {size}");
    }
    let key = format!("--server-key={keyid}");
    // The oldest kept file continues one that was deleted: --continued.
    let all = run(&[
        "audit",
        "verify",
        "--rotated",
        "--continued",
        "--strict",
        log.to_str().unwrap(),
        &key,
    ]);
    assert!(all.status.success(), "{}{}", stdout(&all), stderr(&all));
    assert!(
        stdout(&all).contains("the 4 files are one chain"),
        "{}",
        stdout(&all)
    );
    let p = |n: u32| rotated(n).to_str().unwrap().to_owned();
    let live = log.to_str().unwrap();
    let missing = run(&["audit", "verify", "--continued", &p(3), &p(1), live, &key]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("a file is missing between"),
        "{}",
        stderr(&missing)
    );
    let reordered = run(&[
        "audit",
        "verify",
        "--continued",
        &p(3),
        &p(1),
        &p(2),
        live,
        &key,
    ]);
    assert_eq!(reordered.status.code(), Some(1));
    assert!(
        stderr(&reordered).contains("out of order"),
        "{}",
        stderr(&reordered)
    );
    // Without --continued the oldest kept file is not a chain's beginning.
    let start = run(&["audit", "verify", "--rotated", live, &key]);
    assert_eq!(start.status.code(), Some(1), "{}", stdout(&start));
}
