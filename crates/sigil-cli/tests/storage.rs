//! What the stored bytes guarantee: tampering is detected, acknowledged writes survive
//! `kill -9`, keyring rotation and rewrap work under load and persist. Real redb files.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sigil_client::{Client, ClientConfig};
use sigil_crypto::SecretIdentity;
use support::{Server, ok, run, stderr};

/// A persistent server initialized with one admin (threshold 1) and unsealed.
struct Persistent {
    tmp: tempfile::TempDir,
    key: PathBuf,
    keyid: String,
    server: Server,
}

impl Persistent {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("admin.key");
        ok(run(&["key", "generate", "-o", key.to_str().unwrap()]));
        let server = Server::start_data_dir(&tmp.path().join("data"), false);
        let out = server.sigil_env(&["operator", "init", "--admin", key.to_str().unwrap()], &[]);
        let keyid = support::ok(out)
            .trim()
            .strip_prefix("export SIGIL_SERVER_KEY=")
            .unwrap()
            .to_owned();
        let p = Persistent {
            tmp,
            key,
            keyid,
            server,
        };
        p.unseal();
        p
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn unseal(&self) {
        assert_eq!(ok(self.cli(&["operator", "unseal"])).trim(), "Unsealed.");
    }

    fn restart(&mut self) {
        self.server.kill9();
        self.server = Server::start_data_dir(&self.data(), true);
        self.unseal();
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.server.sigil_env(
            args,
            &[
                ("SIGIL_KEY", self.key.to_str().unwrap()),
                ("SIGIL_SERVER_KEY", &self.keyid),
            ],
        )
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            addr: self.server.var("SIGIL_ADDR").to_owned(),
            key: Some(
                SecretIdentity::from_key_file(&std::fs::read_to_string(&self.key).unwrap())
                    .unwrap(),
            ),
            ca_pem: Some(std::fs::read(self.server.var("SIGIL_CACERT")).unwrap()),
            server_keyid: Some(self.keyid.clone()),
        })
        .unwrap()
    }
}

fn replace_all(hay: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= hay.len() {
        if &hay[i..i + from.len()] == from {
            hay[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn flipped_or_swapped_ciphertexts_fail_and_the_rest_keeps_working() {
    let mut p = Persistent::start();
    ok(p.cli(&["kv", "put", "secret/flip", &format!("v={}", "f".repeat(64))]));
    ok(p.cli(&["kv", "put", "secret/keep", "v=keep"]));
    ok(p.cli(&["kv", "put", "secret/s1", "v=AAAAAAAAAAAAAAAA"]));
    ok(p.cli(&["kv", "put", "secret/s2", "v=BBBBBBBBBBBBBBBB"]));
    p.server.kill9();

    let db = p.data().join("sigil.redb");
    let (flip_meta, pair) = {
        let backend = sigil_storage::FileBackend::open(&db).unwrap();
        use sigil_storage::Backend as _;
        // secret/'s data lives under logical/<its mount uuid>/.
        let meta_key = backend
            .list("logical/")
            .unwrap()
            .into_iter()
            .find(|k| k.ends_with("/meta/flip"))
            .expect("secret/flip's metadata");
        let prefix = meta_key.trim_end_matches("meta/flip");
        let flip_meta = backend.get(&meta_key).unwrap().unwrap();
        // The two version entries of equal length are s1's and s2's.
        let versions: Vec<Vec<u8>> = backend
            .list(&format!("{prefix}ver/"))
            .unwrap()
            .iter()
            .map(|k| backend.get(k).unwrap().unwrap())
            .collect();
        assert_eq!(versions.len(), 4);
        let mut pair = None;
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                if a.len() == b.len() {
                    assert!(pair.is_none(), "exactly one pair of equal length");
                    pair = Some((a.clone(), b.clone()));
                }
            }
        }
        (flip_meta, pair.expect("s1 and s2 versions"))
    };
    let mut bytes = std::fs::read(&db).unwrap();
    let mut flipped = flip_meta.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    assert!(replace_all(&mut bytes, &flip_meta, &flipped) >= 1);
    let marker = vec![0xEEu8; pair.0.len()];
    assert!(replace_all(&mut bytes, &pair.0, &marker) >= 1);
    assert!(replace_all(&mut bytes, &pair.1, &pair.0) >= 1);
    assert!(replace_all(&mut bytes, &marker, &pair.1) >= 1);
    std::fs::write(&db, &bytes).unwrap();

    p.server = Server::start_data_dir(&p.data(), true);
    p.unseal();
    for path in ["secret/flip", "secret/s1", "secret/s2"] {
        let out = p.cli(&["kv", "get", path]);
        assert!(!out.status.success(), "{path} read back after tampering");
        assert!(
            stderr(&out).contains("integrity"),
            "{path}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        ok(p.cli(&["kv", "get", "-field=v", "secret/keep"])),
        "keep\n"
    );
    ok(p.cli(&["kv", "put", "secret/after", "v=1"]));
    assert!(ok(p.cli(&["kv", "list", "secret/"])).contains("after"));
    // Stopped cleanly: redb's recovery after a crash verifies page checksums, and a page
    // tampered with (or rotted) that no later write rewrote makes it refuse the file; the
    // threat model says so.
    p.server.terminate();
    p.server = Server::start_data_dir(&p.data(), true);
    p.unseal();
    assert_eq!(ok(p.cli(&["kv", "get", "-field=v", "secret/after"])), "1\n");
}

/// `kill -9` under a write load: every write the server acknowledged is there after a restart.
/// What this proves is "written to the operating system before acknowledged": the kernel's
/// page cache survives the killed process, so a write that reached only the cache passes too.
/// Durability across a power loss (the fsync before each acknowledgement) is not shown here;
/// it is by construction (sigil-storage `wal.rs`: the write-ahead log is `fdatasync`ed before
/// a batch's callers are answered) and cannot be tested without cutting the power.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_write_load_loses_no_acknowledged_write() {
    let mut p = Persistent::start();
    let client = Arc::new(p.client());
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let tag = sigil_crypto::random::nonce().unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (client, acked, tag) = (Arc::clone(&client), Arc::clone(&acked), tag.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let path = format!("secret/data/load/{t}/{i}");
                let value = format!("{tag}-{t}-{i}");
                match client
                    .request("POST", &path, Some(&json!({ "data": { "v": value } })))
                    .await
                {
                    Ok(r) if r.status == 200 => acked.lock().unwrap().push((path, value)),
                    _ => return,
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acked.lock().unwrap().len() < 2000 {
        assert!(std::time::Instant::now() < deadline, "load too slow");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    p.server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2000);

    p.server = Server::start_data_dir(&p.data(), true);
    p.unseal();
    // The writes since the last checkpoint (at most a second old) were only in the
    // write-ahead log: the restart replayed them.
    assert!(
        p.server.log_text().contains("replayed writes from the log"),
        "{}",
        p.server.log_text()
    );
    let client = p.client();
    for (path, value) in &acked {
        let r = client
            .request("GET", path, None)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            r.body.unwrap()["data"]["data"]["v"],
            value.as_str(),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyring_rotation_under_load_then_rewrap() {
    let mut p = Persistent::start();
    let client = Arc::new(p.client());
    for i in 0..20 {
        client
            .request(
                "POST",
                &format!("secret/data/old/{i}"),
                Some(&json!({ "data": { "v": i.to_string() } })),
            )
            .await
            .unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Rounds of requests done by all tasks: each rotation waits for traffic, not for a time.
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, stop, done) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("secret/data/live/{t}");
                client
                    .request(
                        "POST",
                        &path,
                        Some(&json!({ "data": { "n": n.to_string() } })),
                    )
                    .await
                    .unwrap();
                let r = client.request("GET", &path, None).await.unwrap();
                assert_eq!(r.body.unwrap()["data"]["data"]["n"], n.to_string());
                let old = client
                    .request("GET", &format!("secret/data/old/{}", n % 20), None)
                    .await
                    .unwrap();
                assert_eq!(old.body.unwrap()["data"]["data"]["v"], (n % 20).to_string());
                n += 1;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            n
        }));
    }
    // Every rotation, and the end, comes after the tasks did 16 more rounds (two each, on
    // average) under the current term.
    let more_rounds = |n: u64| {
        let done = Arc::clone(&done);
        async move {
            let target = done.load(std::sync::atomic::Ordering::Relaxed) + n;
            let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while done.load(std::sync::atomic::Ordering::Relaxed) < target {
                assert!(std::time::Instant::now() < end, "the tasks stalled");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    for expected in 2..=4 {
        more_rounds(16).await;
        let r = client.request("POST", "sys/rotate", None).await.unwrap();
        assert_eq!(r.body.unwrap()["data"]["term"], expected);
    }
    more_rounds(16).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        assert!(t.await.unwrap() > 0, "every task made progress");
    }

    let status = |v: serde_json::Value| -> Vec<(u64, u64)> {
        v["data"]["terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["term"].as_u64().unwrap(), t["entries"].as_u64().unwrap()))
            .collect()
    };
    let before = status(
        client
            .request("GET", "sys/key-status", None)
            .await
            .unwrap()
            .body
            .unwrap(),
    );
    assert_eq!(
        before.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(before[0].1 > 0, "entries still under term 1: {before:?}");
    let r = client.request("POST", "sys/rewrap", None).await.unwrap();
    assert!(r.body.unwrap()["data"]["rewrapped"].as_u64().unwrap() > 0);
    let after = status(
        client
            .request("GET", "sys/key-status", None)
            .await
            .unwrap()
            .body
            .unwrap(),
    );
    assert!(
        after[..3].iter().all(|t| t.1 == 0),
        "old terms unused after rewrap: {after:?}"
    );
    assert!(after[3].1 > 0);
    // Commit groups are counted in batches (buckets 1…256), not bucketed as seconds.
    let metrics = ok(p.cli(&["read", "-field=text", "sys/metrics"]));
    assert!(
        metrics.contains("sigil_storage_commit_batches_bucket{le=\"16\"}"),
        "{metrics}"
    );

    // The rotated keyring persists: after a restart everything still reads.
    p.restart();
    let client = p.client();
    for i in 0..20 {
        let r = client
            .request("GET", &format!("secret/data/old/{i}"), None)
            .await
            .unwrap();
        assert_eq!(r.body.unwrap()["data"]["data"]["v"], i.to_string());
    }
    // Keyring maintenance needs sudo: `update` alone is refused.
    let op = p.tmp.path().join("op.key");
    ok(run(&["key", "generate", "-o", op.to_str().unwrap()]));
    let policy = p.tmp.path().join("op.hcl");
    std::fs::write(
        &policy,
        "path \"sys/rotate\" {\n  capabilities = [\"update\", \"create\"]\n}\n",
    )
    .unwrap();
    ok(p.cli(&["policy", "write", "op", policy.to_str().unwrap()]));
    ok(p.cli(&[
        "identity",
        "create",
        "op",
        "--public-key",
        op.to_str().unwrap(),
        "--policy",
        "op",
    ]));
    let out = p.server.sigil_env(
        &["operator", "rotate"],
        &[
            ("SIGIL_KEY", op.to_str().unwrap()),
            ("SIGIL_SERVER_KEY", &p.keyid),
        ],
    );
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
}

/// The storage key of version `n` of `path` in the mount whose data is under `prefix`.
fn version_key(prefix: &str, path: &str, n: u64) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(path.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}ver/{hex}/{n}")
}

#[test]
fn destroy_and_max_versions_remove_the_ciphertext_from_the_file() {
    use sigil_storage::Backend as _;
    let mut p = Persistent::start();
    let big = |i: usize| format!("v={}", format!("{i:04}-secret-value-").repeat(200));
    for i in 0..16 {
        ok(p.cli(&["kv", "put", &format!("secret/big{i}"), &big(i)]));
    }
    ok(p.cli(&["kv", "metadata", "put", "-max-versions=2", "secret/t"]));
    ok(p.cli(&["kv", "put", "secret/t", "v=one"]));
    p.server.kill9();
    let db = p.data().join("sigil.redb");
    // Every version's storage key and ciphertext, as the file holds them.
    let stored = |backend: &sigil_storage::FileBackend, path: &str, n: u64| {
        let meta = backend
            .list("logical/")
            .unwrap()
            .into_iter()
            .find(|k| k.ends_with("/meta/t"))
            .unwrap();
        let key = version_key(meta.trim_end_matches("meta/t"), path, n);
        (key.clone(), backend.get(&key).unwrap())
    };
    let before: Vec<(String, Vec<u8>)> = {
        let backend = sigil_storage::FileBackend::open(&db).unwrap();
        (0..16)
            .map(|i| format!("big{i}"))
            .chain(["t".to_owned()])
            .map(|path| {
                let (key, ct) = stored(&backend, &path, 1);
                (key, ct.expect("the version is stored"))
            })
            .collect()
    };

    p.server = Server::start_data_dir(&p.data(), true);
    p.unseal();
    // max_versions trims t's first version; destroy removes big0..big7's.
    ok(p.cli(&["kv", "put", "secret/t", "v=two"]));
    ok(p.cli(&["kv", "put", "secret/t", "v=three"]));
    for i in 0..8 {
        ok(p.cli(&["kv", "destroy", "-versions=1", &format!("secret/big{i}")]));
    }
    let kept = ok(p.cli(&["kv", "get", "-field=v", "secret/big8"]));
    assert!(kept.starts_with("0008-secret-value-"));
    p.server.kill9();

    let backend = sigil_storage::FileBackend::open(&db).unwrap();
    for (i, (key, _)) in before.iter().enumerate() {
        let gone = i < 8 || i == 16;
        assert_eq!(backend.get(key).unwrap().is_none(), gone, "{key}");
    }
    drop(backend);
    // Not even freed pages hold the removed ciphertexts: destroy compacts the file before it
    // answers, which also reclaims what the trimmed version left (trimming alone leaves its
    // bytes in freed pages until the next destroy, metadata delete or disable).
    let bytes = std::fs::read(&db).unwrap();
    let in_file = |ct: &Vec<u8>| bytes.windows(ct.len()).any(|w| w == ct.as_slice());
    for (i, (key, ct)) in before.iter().enumerate() {
        let gone = i < 8 || i == 16;
        assert_eq!(in_file(ct), !gone, "{key}: in the file = {}", in_file(ct));
    }
}

/// Only one process may hold a data directory: a second `sigil server` on it stops with a
/// message that says why, and the first goes on serving.
#[test]
fn a_second_server_process_cannot_open_the_same_data_directory() {
    let p = Persistent::start();
    let mut second = std::process::Command::new(support::SIGIL)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(p.data())
        .env_remove("SIGIL_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            second.kill().ok();
            panic!("a second server runs on the same data directory");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sigil.redb") && err.contains("already open"),
        "{err}"
    );
    assert_eq!(err.matches("already open").count(), 1, "said once: {err}");
    ok(p.cli(&["kv", "put", "secret/still", "v=1"]));
    assert_eq!(ok(p.cli(&["kv", "get", "-field=v", "secret/still"])), "1\n");
}

/// Every file of a data directory, read while the server is down (before anything replays or
/// checkpoints its write-ahead logs).
fn data_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    support::files_under(dir)
        .into_iter()
        .map(|f| (f.display().to_string(), std::fs::read(&f).unwrap()))
        .collect()
}

/// Every entry of the database: key and stored (encrypted) bytes.
fn entries(db: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use sigil_storage::Backend as _;
    let backend = sigil_storage::FileBackend::open(db).unwrap();
    backend
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = backend.get(&k).unwrap().unwrap();
            (k, v)
        })
        .collect()
}

/// docs/threat-model.md: `metadata` DELETE and `secrets disable` compact the file and delete the
/// write-ahead logs before they answer, so no file in the data directory holds a ciphertext
/// they removed, nor one that an earlier overwrite replaced.
#[test]
fn metadata_delete_and_secrets_disable_leave_no_ciphertext_in_any_file() {
    let mut p = Persistent::start();
    let big = |tag: &str, i: usize| format!("v={}", format!("{tag}{i:04}-secret-").repeat(150));
    ok(p.cli(&["secrets", "enable", "-path=other", "kv-v2"]));
    for i in 0..6 {
        ok(p.cli(&["kv", "put", &format!("secret/md{i}"), &big("md", i)]));
        ok(p.cli(&["kv", "put", &format!("other/o{i}"), &big("other", i)]));
    }
    // Two versions each of what stays, and an overwritten metadata entry.
    for i in 0..3 {
        ok(p.cli(&["kv", "put", &format!("secret/keep{i}"), &big("keep", i)]));
        ok(p.cli(&["kv", "put", &format!("secret/keep{i}"), &big("keep2-", i)]));
    }
    ok(p.cli(&["kv", "metadata", "put", "-max-versions=5", "secret/keep0"]));
    p.server.kill9();
    let db = p.data().join("sigil.redb");
    let before = entries(&db);

    p.server = Server::start_data_dir(&p.data(), true);
    p.unseal();
    for i in 0..3 {
        ok(p.cli(&["kv", "metadata", "delete", &format!("secret/md{i}")]));
    }
    ok(p.cli(&["secrets", "disable", "other/"]));
    // What stays still reads.
    let kept = ok(p.cli(&["kv", "get", "-field=v", "secret/md3"]));
    assert!(kept.starts_with("md0003-secret-"), "{kept}");
    p.server.kill9();

    let files = data_files(&p.data());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with("sigil.redb")), "{names:?}");
    let after: std::collections::HashMap<String, Vec<u8>> = entries(&db).into_iter().collect();

    let mut gone = 0;
    for (key, ct) in &before {
        if after.get(key) == Some(ct) {
            continue;
        }
        gone += 1;
        for (name, bytes) in &files {
            assert!(
                !bytes.windows(ct.len()).any(|w| w == ct.as_slice()),
                "{key}: its removed ciphertext ({} bytes) is still in {name}",
                ct.len()
            );
        }
    }
    // Three secrets' metadata and version (2 entries each) and the other mount's six secrets,
    // its mount entry and more: the scan must have had something to find.
    assert!(gone >= 3 * 2 + 6 * 2, "only {gone} entries were removed");
}

/// The SDK's channel (docs/protocol.md §6) does not outlive the server's memory: sealing drops every
/// channel, and then a body sealed to one is refused (`Sigil-Channel: expired`) before
/// anything runs, and the client seals it to the server key and sends it again; a read falls
/// back to HPKE.
#[tokio::test]
async fn the_sdk_falls_back_when_the_server_forgot_its_channel() {
    let p = Persistent::start();
    let c = p.client();
    let put = |v: &str| serde_json::json!({ "data": { "v": v } });
    c.request("POST", "secret/data/chan", Some(&put("1")))
        .await
        .unwrap();
    let first = c.channel_id().expect("the first answer grants a channel");
    let read = c.request("GET", "secret/data/chan", None).await.unwrap();
    assert_eq!(read.body.unwrap()["data"]["data"]["v"], "1");
    assert_eq!(c.channel_id().as_deref(), Some(first.as_str()), "kept");

    let seal_and_unseal = |p: &Persistent| {
        ok(p.cli(&["operator", "seal"]));
        p.unseal();
    };
    seal_and_unseal(&p);
    c.request("POST", "secret/data/chan", Some(&put("2")))
        .await
        .expect("sent again, sealed to the server key");
    let second = c.channel_id().expect("a new channel");
    assert_ne!(first, second);
    let read = c.request("GET", "secret/data/chan", None).await.unwrap();
    assert_eq!(read.body.unwrap()["data"]["data"]["v"], "2");
    let meta = c
        .request("GET", "secret/metadata/chan", None)
        .await
        .unwrap();
    assert_eq!(
        meta.body.unwrap()["data"]["current_version"],
        2,
        "written once, not twice"
    );

    seal_and_unseal(&p);
    let read = c.request("GET", "secret/data/chan", None).await.unwrap();
    assert_eq!(
        read.body.unwrap()["data"]["data"]["v"],
        "2",
        "HPKE fallback"
    );
}

/// A small tmpfs mounted for one test, unmounted on drop. `None` when this process may not
/// mount (not root): the caller records a skip.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700")])
            .arg("sigil-test")
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a ballast file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let ballast = self.path().join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk may have left a little room: fill it byte by byte.
        while f.write_all(&[0]).is_ok() {}
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk (issue "The first hour", point 4): the write that hits it fails, and every
/// later one with 503 and "restart the server", also after space is freed (a failed fsync
/// cannot be trusted); `sys/health` answers 503 with `"storage":"failed"` and the reason, the
/// metric `sigil_storage_failed` is 1, reads go on. A restart recovers everything
/// acknowledged before.
#[tokio::test]
async fn a_full_disk_stops_writes_says_so_in_health_and_a_restart_recovers() {
    let Some(disk) = SmallDisk::mount(48) else {
        support::record_skip("mounting a tmpfs needs root");
        return;
    };
    let data = disk.path().join("data");
    let key = disk.path().join("admin.key");
    ok(run(&["key", "generate", "-o", key.to_str().unwrap()]));
    let start = |initialized: bool| {
        Server::spawn(
            tempfile::tempdir().unwrap(),
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            &[],
            if initialized { 3 } else { 2 },
        )
    };
    let mut s = start(false);
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
    ok(s.sigil_env(&["kv", "put", "secret/before", "v=kept"], &env));

    let ballast = disk.fill();
    // The first write that needs space fails (perhaps only a checkpoint does, a moment later).
    let big = format!("v={}", "x".repeat(64 * 1024));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = s.sigil_env(&["kv", "put", "secret/big", &big], &env);
        if !out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "writes go on on a full disk"
        );
    }
    let raw = support::raw::Raw::new(&s, &key).await;
    let h = raw.send(&raw.unsigned("GET", "/v1/sys/health")).await;
    assert_eq!(h.status, 503, "{}", String::from_utf8_lossy(&h.body));
    let body = h.json();
    assert_eq!(body["storage"], "failed", "{body}");
    assert!(
        body["storage_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(s.metric("sigil_storage_failed"), Some(1.0));
    // Reads go on.
    assert_eq!(
        ok(s.sigil_env(&["kv", "get", "-field=v", "secret/before"], &env)),
        "kept\n"
    );
    // Space freed: writes are still refused, and the answer says what to do.
    std::fs::remove_file(&ballast).unwrap();
    let out = s.sigil_env(&["kv", "put", "secret/after", "v=1"], &env);
    assert!(
        stderr(&out).contains("503") && stderr(&out).contains("restarted"),
        "{}",
        stderr(&out)
    );

    // The log said it once, with what to do.
    let log = s.log_text();
    assert_eq!(log.matches("storage failed").count(), 1, "{log}");
    assert!(log.contains("restart the server"), "{log}");

    // A restart recovers: what was acknowledged is there, writes work, health is 200.
    s.terminate();
    s = start(true);
    ok(s.sigil_env(&["operator", "unseal"], &env));
    assert_eq!(
        ok(s.sigil_env(&["kv", "get", "-field=v", "secret/before"], &env)),
        "kept\n"
    );
    ok(s.sigil_env(&["kv", "put", "secret/after", "v=1"], &env));
    let raw = support::raw::Raw::new(&s, &key).await;
    let h = raw.send(&raw.unsigned("GET", "/v1/sys/health")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["storage"], "ok");
}
