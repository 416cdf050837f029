//! A three-node cluster of the real `sigil` binary on loopback, built by `scripts/cluster-demo`
//! exactly as a user would: joining by approval, forwarding, `kill -9` of the leader, a sealed
//! restart unsealed through another node, removing a peer.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::demo::{Demo, free_base};
use support::{SIGIL, eventually, ok, stderr, stdout};

#[test]
fn a_three_node_cluster_forwards_survives_kill_9_of_its_leader_and_unseals_in_one_run() {
    let mut demo = Demo::start();
    let peers = demo.peers(1);
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(peers.iter().all(|p| p["voter"] == true), "{peers:?}");
    assert_eq!(demo.leader(1), "sigil-1");
    assert_eq!(
        peers.iter().filter(|p| p["state"] == "follower").count(),
        2,
        "{peers:?}"
    );

    // Any node answers: writes and reads through followers are forwarded to the leader.
    ok(demo.sigil(1, &["kv", "put", "secret/app", "password=one"]));
    assert_eq!(
        ok(demo.sigil(2, &["kv", "get", "-field=password", "secret/app"])).trim(),
        "one"
    );
    ok(demo.sigil(3, &["kv", "put", "secret/app", "password=two"]));
    assert_eq!(
        ok(demo.sigil(1, &["kv", "get", "-field=password", "secret/app"])).trim(),
        "two"
    );
    // The same server key and CA on every node: one SIGIL_SERVER_KEY/SIGIL_CACERT for all.
    for node in [2, 3] {
        let health = ok(demo.sigil(node, &["operator", "status", "--format", "json"]));
        assert!(health.contains("\"sealed\": false"), "{health}");
    }

    // An SDK client on a follower (with a channel, which lives on the leader).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let var = |k: &str| demo.var(k);
    let sdk = demo.sdk(2);
    let body = serde_json::json!({ "data": { "n": "0" } });
    rt.block_on(sdk.request("POST", "secret/data/sdk", Some(&body)))
        .unwrap();
    rt.block_on(sdk.request("GET", "secret/data/sdk", None))
        .unwrap();
    assert!(sdk.channel_id().is_some(), "the SDK got a channel");

    // A write larger than one Raft entry may carry (max_entry_size, 1 MiB as Vault's) is
    // refused whole with 413 and what to change; the cluster goes on replicating (each node
    // answers from its own storage: -stale).
    let big = serde_json::json!({ "data": { "blob": "x".repeat(1100 * 1024) } });
    match rt.block_on(sdk.request("POST", "secret/data/big", Some(&big))) {
        Err(sigil_client::ClientError::Api { status, errors }) => {
            assert_eq!(status, 413, "{errors:?}");
            assert!(errors.join(" ").contains("max_entry_size"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    let fits = serde_json::json!({ "data": { "blob": "y".repeat(900 * 1024) } });
    rt.block_on(sdk.request("POST", "secret/data/big", Some(&fits)))
        .unwrap();
    for node in 1..=3 {
        eventually(30, || {
            let out = demo.sigil(node, &["kv", "get", "-stale", "-field=blob", "secret/big"]);
            out.status.success() && stdout(&out).trim().len() == 900 * 1024
        });
    }

    // A signed write sent through a follower runs once; the same bytes sent again are
    // refused — by the leader now, and (below) by the next leader after a failover.
    let follower: std::net::SocketAddr = format!("127.0.0.1:{}", demo.base + 2).parse().unwrap();
    let raw = rt.block_on(support::raw::Raw::connect(
        follower,
        Path::new(&var("SIGIL_CACERT")),
        Path::new(&var("SIGIL_KEY")),
        None,
        Some(&var("SIGIL_SERVER_KEY")),
    ));
    let captured = raw.signed(
        "POST",
        "/v1/secret/data/replayed",
        Some(br#"{"data":{"n":"once"}}"#),
    );
    assert_eq!(rt.block_on(raw.send(&captured)).status, 200);
    let again = rt.block_on(raw.send(&captured));
    assert_eq!(again.status, 401, "{}", again.error_text());
    assert!(
        again.error_text().contains("replayed"),
        "{}",
        again.error_text()
    );

    // kill -9 of the leader: another node leads within seconds, nothing acknowledged is lost.
    demo.kill9(1);
    let started = Instant::now();
    eventually(30, || {
        demo.sigil(2, &["kv", "put", "secret/after", "x=1"])
            .status
            .success()
    });
    let failover = started.elapsed();
    eprintln!("first write after kill -9 of the leader: {failover:?}");
    assert!(failover < Duration::from_secs(15), "{failover:?}");
    assert_eq!(
        ok(demo.sigil(3, &["kv", "get", "-field=password", "secret/app"])).trim(),
        "two"
    );
    let leader = demo.leader(2);
    assert!(leader == "sigil-2" || leader == "sigil-3", "{leader}");
    // The write the old leader ran is refused by the new one (it loaded the replay marks).
    let replayed = rt.block_on(raw.send(&captured));
    assert_eq!(replayed.status, 401, "{}", replayed.error_text());
    assert!(
        replayed.error_text().contains("replayed"),
        "{}",
        replayed.error_text()
    );
    // The SDK's channel was on the dead leader: the next request re-establishes one, unseen.
    let body = serde_json::json!({ "data": { "n": "1" } });
    let mut sdk_ok = false;
    for _ in 0..50 {
        if rt
            .block_on(sdk.request("POST", "secret/data/sdk", Some(&body)))
            .is_ok()
        {
            sdk_ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sdk_ok, "the SDK carries on after the leader died");
    let read = rt
        .block_on(sdk.request("GET", "secret/data/sdk", None))
        .unwrap();
    assert_eq!(read.data()["data"]["n"], "1");

    // The old leader restarts sealed; one unseal run through another node unseals it.
    demo.restart(1);
    eventually(30, || {
        stdout(&demo.sigil(1, &["operator", "status", "--format", "json"]))
            .contains("\"sealed\": true")
    });
    let unseal = ok(demo.sigil(2, &["operator", "unseal"]));
    assert!(
        unseal.contains(&format!("{}: unsealed", demo.api(1))),
        "{unseal}"
    );
    eventually(30, || {
        demo.sigil(1, &["kv", "get", "-field=x", "secret/after"])
            .status
            .success()
    });
    assert_eq!(
        ok(demo.sigil(1, &["kv", "get", "-field=x", "secret/after"])).trim(),
        "1"
    );
    eventually(30, || {
        demo.peers(2)
            .iter()
            .all(|p| p["voter"] == true && !p["address"].as_str().unwrap_or("").is_empty())
    });

    // Removing a peer: it leaves the membership.
    let leader = demo.leader(2);
    let victim = if leader == "sigil-3" {
        "sigil-1"
    } else {
        "sigil-3"
    };
    ok(demo.sigil(2, &["operator", "raft", "remove-peer", victim]));
    eventually(10, || demo.peers(2).len() == 2);
    assert!(demo.peers(2).iter().all(|p| p["node_id"] != victim));
}

#[test]
fn join_requests_are_checked_and_only_an_admin_approves() {
    let demo = Demo::start();
    // A request with a bad fingerprint, name or key: refused, nothing recorded.
    let bad = [
        r#"{"node_id":"x","cluster_addr":"127.0.0.1:1","api_addr":"","cert_sha256":"zz","join_key":"AAAA"}"#,
        r#"{"node_id":"../x","cluster_addr":"127.0.0.1:1","api_addr":"","cert_sha256":"00000000000000000000000000000000000000000000000000000000000000aa","join_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        r#"{"node_id":"x"}"#,
        "not json",
    ];
    let ca = std::fs::read(demo.var("SIGIL_CACERT")).unwrap();
    for body in bad {
        let (status, text) = post_plain(&ca, demo.base + 2, "/v1/sys/storage/raft/join", body);
        assert_eq!(status, 400, "{body}: {text}");
    }
    // Approving a node that never asked fails and changes nothing.
    let out = demo.sigil(1, &["operator", "raft", "approve", "ghost"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has asked to join"),
        "{}",
        stderr(&out)
    );
    // A non-admin identity may not approve (sudo on sys/storage/raft/approve).
    let key = demo.path().join("reader.key");
    ok(Command::new(SIGIL)
        .args(["key", "generate", "-o"])
        .arg(&key)
        .output()
        .unwrap());
    ok(demo.sigil(
        1,
        &[
            "identity",
            "create",
            "reader",
            "--public-key",
            key.to_str().unwrap(),
        ],
    ));
    let mut cmd = Command::new(SIGIL);
    cmd.args(["operator", "raft", "approve", "ghost"]);
    for (k, v) in &demo.env {
        cmd.env(k, v);
    }
    cmd.env("SIGIL_KEY", &key).env("SIGIL_ADDR", demo.api(3));
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403") || stderr(&out).to_lowercase().contains("permission"),
        "{}",
        stderr(&out)
    );
    assert_eq!(demo.peers(1).len(), 3);
}

/// An unauthenticated `POST` of `body` to `path` on 127.0.0.1:`port` over TLS 1.3 (HTTP/1.1);
/// the status and the body as text.
fn post_plain(ca: &[u8], port: u16, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = support::tls_connector(ca, &[&rustls::version::TLS13]);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut stream = tls.connect(name, tcp).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    })
}

#[test]
fn autopilot_reports_health_and_removes_a_dead_voter_only_above_the_minimum_quorum() {
    let mut demo = Demo::start();
    let state = |demo: &Demo| -> Value {
        serde_json::from_str(&ok(demo.sigil(
            1,
            &["operator", "raft", "autopilot", "state", "--format", "json"],
        )))
        .unwrap()
    };
    eventually(10, || state(&demo)["healthy"] == true);
    let s = state(&demo);
    assert_eq!(s["failure_tolerance"], 1, "{s}");
    assert_eq!(s["leader"], "sigil-1");
    assert_eq!(s["voters"].as_array().unwrap().len(), 3);

    // A short dead-server threshold; the default minimum quorum (3) keeps all three voters.
    ok(demo.sigil(
        1,
        &[
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "--dead-server-last-contact-threshold",
            "2s",
            "--last-contact-threshold",
            "1s",
        ],
    ));
    let config: Value = serde_json::from_str(&ok(demo.sigil(
        1,
        &[
            "operator",
            "raft",
            "autopilot",
            "get-config",
            "--format",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(config["dead_server_last_contact_threshold"], "2s");
    assert_eq!(config["min_quorum"], 3);
    demo.kill9(3);
    eventually(10, || {
        let s = state(&demo);
        s["healthy"] == false && s["servers"]["sigil-3"]["node_status"] == "left"
    });
    assert_eq!(state(&demo)["failure_tolerance"], 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        demo.peers(1).len(),
        3,
        "not removed below the minimum quorum"
    );

    // With a minimum quorum of 2 the dead voter goes; the cluster keeps working.
    ok(demo.sigil(
        1,
        &[
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "--min-quorum",
            "2",
        ],
    ));
    eventually(15, || demo.peers(1).len() == 2);
    assert!(demo.peers(1).iter().all(|p| p["node_id"] != "sigil-3"));
    eventually(10, || state(&demo)["healthy"] == true);
    ok(demo.sigil(2, &["kv", "put", "secret/after-cleanup", "x=1"]));
    // Bad settings are refused and change nothing.
    let out = demo.sigil(
        1,
        &[
            "operator",
            "raft",
            "autopilot",
            "set-config",
            "--dead-server-last-contact-threshold",
            "soon",
        ],
    );
    assert!(!out.status.success());
    let config: Value = serde_json::from_str(&ok(demo.sigil(
        1,
        &[
            "operator",
            "raft",
            "autopilot",
            "get-config",
            "--format",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(config["dead_server_last_contact_threshold"], "2s");
}

#[test]
fn a_snapshot_saved_from_a_cluster_restores_into_a_new_cluster_sealed_with_its_admins() {
    let mut demo = Demo::start();
    ok(demo.sigil(1, &["kv", "put", "secret/app", "password=kept"]));
    // Snapshots travel a chunk at a time, not as one request body: nodes 2 and 3 (one of
    // them leads after the step-down below) take bodies of at most 1 MiB, and the snapshot
    // holds more than that.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..3 {
        let blob = format!("{i}").repeat(600 * 1024);
        let body = serde_json::json!({ "data": { "blob": blob } });
        rt.block_on(
            demo.sdk(1)
                .request("POST", &format!("secret/data/big-{i}"), Some(&body)),
        )
        .unwrap();
    }
    for node in [2, 3] {
        demo.restart_with(node, &["--max-request-bytes", "1048576"]);
        eventually(30, || {
            stdout(&demo.sigil(node, &["operator", "status", "--format", "json"]))
                .contains("\"sealed\": true")
        });
        ok(demo.sigil(1, &["operator", "unseal"]));
        eventually(30, || {
            demo.sigil(node, &["kv", "get", "-field=password", "secret/app"])
                .status
                .success()
        });
    }
    let file = demo.path().join("cluster.snap");
    let saved = ok(demo.sigil(
        2,
        &[
            "operator",
            "raft",
            "snapshot",
            "save",
            file.to_str().unwrap(),
        ],
    ));
    assert!(saved.contains("Snapshot written"), "{saved}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 1024 * 1024, "{size} bytes");
    // Not over an existing file.
    assert!(
        !demo
            .sigil(
                2,
                &[
                    "operator",
                    "raft",
                    "snapshot",
                    "save",
                    file.to_str().unwrap()
                ]
            )
            .status
            .success()
    );
    // sys/ha-status and sys/leader name the same leader; step-down hands leadership over.
    let ha: Value = serde_json::from_str(&ok(
        demo.sigil(3, &["read", "-format=json", "sys/ha-status"])
    ))
    .unwrap();
    let nodes = ha["data"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{ha}"));
    assert_eq!(nodes.len(), 3, "{ha}");
    let active: Vec<&Value> = nodes.iter().filter(|n| n["active_node"] == true).collect();
    assert_eq!(active.len(), 1, "{ha}");
    assert_eq!(active[0]["hostname"], "sigil-1");
    ok(demo.sigil(2, &["operator", "step-down"]));
    eventually(20, || {
        let l = demo.leader(2);
        !l.is_empty() && l != "sigil-1"
    });
    // The old leader answers again once it follows (it paused its heartbeats to step down).
    eventually(20, || {
        demo.sigil(1, &["kv", "put", "secret/after-step-down", "x=1"])
            .status
            .success()
    });
    // A follower's own sys/leader points at the new leader.
    let new_leader = demo.leader(2);
    let follower = if new_leader == "sigil-2" { 3 } else { 2 };
    let leader_json = ok(Command::new(SIGIL)
        .args(["read", "-format=json", "sys/leader"])
        .envs(demo.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SIGIL_ADDR", demo.api(follower))
        .output()
        .unwrap());
    let leader_json: Value = serde_json::from_str::<Value>(&leader_json).unwrap()["data"].clone();
    assert_eq!(leader_json["is_self"], false, "{leader_json}");
    assert_eq!(leader_json["ha_enabled"], true, "{leader_json}");
    assert_eq!(
        leader_json["leader_address"],
        demo.api(new_leader.trim_start_matches("sigil-").parse().unwrap()),
        "{leader_json}"
    );

    // Over the running cluster a restore is staged and changes nothing until the seal
    // admins approve it; then what the snapshot held is back and what came after is gone.
    ok(demo.sigil(1, &["kv", "put", "secret/app", "password=changed"]));
    let restore = |node: u16, file: &Path| {
        demo.sigil(
            node,
            &[
                "operator",
                "raft",
                "snapshot",
                "restore",
                file.to_str().unwrap(),
            ],
        )
    };
    // Sent whole in JSON (as older clients do) it is over the leader's limit; streamed by
    // the CLI, through a follower or not, it is staged.
    let whole = serde_json::json!({
        "snapshot": sigil_crypto::b64url_encode(&std::fs::read(&file).unwrap())
    });
    let leader = Demo::number(&demo.leader(2));
    let refused = rt
        .block_on(
            demo.sdk(leader)
                .request("POST", "sys/storage/raft/snapshot", Some(&whole)),
        )
        .unwrap_err();
    assert_eq!(refused.status(), Some(413), "{refused}");
    // Through a follower, which passes the stream on to the leader as it comes.
    let staged = ok(restore(follower, &file));
    let digest = staged
        .split("snapshot approve ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{staged}"))
        .to_owned();
    let read_app =
        |node: u16| ok(demo.sigil(node, &["kv", "get", "-field=password", "secret/app"]));
    assert_eq!(read_app(1).trim(), "changed");
    let approve = |node: u16, key: &Path, digest: &str| {
        let mut cmd = Command::new(SIGIL);
        cmd.args(["operator", "raft", "snapshot", "approve", digest]);
        cmd.envs(demo.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SIGIL_KEY", key)
            .env("SIGIL_ADDR", demo.api(node))
            .stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let admin_key = PathBuf::from(demo.var("SIGIL_KEY"));
    // Only the staged digest, and only from a seal admin — an identity with every policy
    // capability (sudo) is not one: the approval endpoint knows only the seal admins' keys.
    let out = approve(2, &admin_key, "AAAA");
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    let operator_key = demo.path().join("operator.key");
    ok(Command::new(SIGIL)
        .args(["key", "generate", "-o"])
        .arg(&operator_key)
        .output()
        .unwrap());
    ok(demo.sigil(
        1,
        &[
            "identity",
            "create",
            "operator",
            "--public-key",
            operator_key.to_str().unwrap(),
            "--policy",
            "admin",
        ],
    ));
    let out = approve(2, &operator_key, &digest);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert_eq!(read_app(2).trim(), "changed");
    let term = || -> u64 {
        let v: Value = serde_json::from_str(&ok(
            demo.sigil(1, &["read", "-format=json", "sys/key-status"])
        ))
        .unwrap();
        v["data"]["term"].as_u64().unwrap()
    };
    let before = term();
    let done = ok(approve(2, &admin_key, &digest));
    assert!(done.contains("Restored"), "{done}");
    // Nothing encrypted from now on counts on the snapshot's (older) usage record.
    assert_eq!(term(), before + 1, "the keyring has a new term");
    for node in 1..=3 {
        assert_eq!(read_app(node).trim(), "kept");
    }
    assert!(
        !demo
            .sigil(3, &["kv", "get", "secret/after-step-down"])
            .status
            .success(),
        "written after the snapshot"
    );
    ok(demo.sigil(3, &["kv", "put", "secret/app", "password=again"]));
    // The digest was used: approving again finds nothing staged.
    let out = approve(1, &admin_key, &digest);
    assert!(
        stderr(&out).contains("no restore is staged"),
        "{}",
        stderr(&out)
    );
    // A damaged snapshot, or one of another server, is refused at staging.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    let damaged = demo.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(!restore(1, &damaged).status.success());
    // Streamed anyway (the SDK does not check it first), the server refuses it once it has
    // come; an identity without sudo is refused before its body is read.
    let refused = rt
        .block_on(
            demo.sdk(follower)
                .upload("sys/storage/raft/snapshot", &damaged),
        )
        .unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert!(refused.to_string().contains("SHA-256"), "{refused}");
    let nobody_key = demo.path().join("nobody.key");
    ok(Command::new(SIGIL)
        .args(["key", "generate", "-o"])
        .arg(&nobody_key)
        .output()
        .unwrap());
    ok(demo.sigil(
        1,
        &[
            "identity",
            "create",
            "nobody",
            "--public-key",
            nobody_key.to_str().unwrap(),
        ],
    ));
    let refused = rt
        .block_on(
            demo.sdk_as(leader, &nobody_key)
                .upload("sys/storage/raft/snapshot", &file),
        )
        .unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    let status: Value = serde_json::from_str(&ok(demo.sigil(
        1,
        &["read", "-format=json", "sys/storage/raft/snapshot/restore"],
    )))
    .unwrap();
    assert_eq!(status["data"]["staged"], false, "{status}");
    let other_data = tempfile::tempdir().unwrap();
    let mut other = support::Server::start_data_dir(other_data.path(), false);
    let other_admin = other.new_key("admin");
    other.init_and_unseal(&other_admin);
    let foreign = demo.path().join("foreign.snap");
    ok(other.sigil(&["operator", "backup", foreign.to_str().unwrap()]));
    // The CLI refuses it before sending (it is not signed by the pinned server key), and so
    // does the server when it is sent by hand.
    assert!(!restore(1, &foreign).status.success());
    let body = serde_json::json!({
        "snapshot": sigil_crypto::b64url_encode(&std::fs::read(&foreign).unwrap())
    });
    let refused = rt
        .block_on(
            demo.sdk(2)
                .request("POST", "sys/storage/raft/snapshot", Some(&body)),
        )
        .unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");
    assert!(refused.to_string().contains("another cluster"), "{refused}");
    assert_eq!(read_app(1).trim(), "again");

    // A new cluster of one, never initialized.
    let base = free_base();
    let dir = demo.path().join("new");
    let log = std::fs::File::create(demo.path().join("new.log")).unwrap();
    let _node = Killed(
        Command::new(SIGIL)
            .args(["server", "--data-dir"])
            .arg(&dir)
            .args([
                "--node-id",
                "fresh-1",
                "--listen",
                &format!("127.0.0.1:{base}"),
            ])
            .args(["--cluster-listen", &format!("127.0.0.1:{}", base + 1)])
            .args(["--max-request-bytes", "1048576"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ca = dir.join("tls/ca.pem");
    let addr = format!("https://127.0.0.1:{base}");
    let fresh = |args: &[&str], server_key: Option<&str>| {
        let mut cmd = Command::new(SIGIL);
        cmd.args(args)
            .env("SIGIL_ADDR", &addr)
            .env("SIGIL_CACERT", &ca)
            .env("SIGIL_KEY", demo.var("SIGIL_KEY"))
            .env_remove("SIGIL_SERVER_KEY")
            .stdin(Stdio::null());
        if let Some(k) = server_key {
            cmd.env("SIGIL_SERVER_KEY", k);
        }
        cmd.output().unwrap()
    };
    eventually(30, || {
        ca.exists()
            && stdout(&fresh(&["operator", "status", "--format", "json"], None))
                .contains("\"initialized\": false")
    });
    // A damaged snapshot is refused and leaves the cluster uninitialized.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    let damaged = demo.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = fresh(
        &[
            "operator",
            "raft",
            "snapshot",
            "restore",
            damaged.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stdout(&fresh(&["operator", "status", "--format", "json"], None))
            .contains("\"initialized\": false")
    );
    // The real one, pinned to the cluster's server key: sealed with its admins.
    let server_key = demo.var("SIGIL_SERVER_KEY");
    let restored = ok(fresh(
        &[
            "operator",
            "raft",
            "snapshot",
            "restore",
            file.to_str().unwrap(),
        ],
        Some(&server_key),
    ));
    assert!(restored.contains(&server_key), "{restored}");
    // (`operator status` exits 2 while sealed, as `vault status` does.)
    let status = stdout(&fresh(&["operator", "status", "--format", "json"], None));
    assert!(status.contains("\"sealed\": true"), "{status}");
    ok(fresh(&["operator", "unseal"], Some(&server_key)));
    assert_eq!(
        ok(fresh(
            &["kv", "get", "-field=password", "secret/app"],
            Some(&server_key)
        ))
        .trim(),
        "kept"
    );
    let blob = ok(fresh(
        &["kv", "get", "-field=blob", "secret/big-2"],
        Some(&server_key),
    ));
    assert_eq!(blob.trim(), "2".repeat(600 * 1024));
}

/// A process killed (and reaped) when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A rekey on the leader reaches the followers: after it, a follower that takes over opens the
/// keyring (it is not sealed), and a restarted node is unsealed with the new shares only.
#[test]
fn a_rekey_reaches_every_member_and_a_new_leader_still_opens_the_keyring() {
    let mut demo = Demo::start();
    ok(demo.sigil(1, &["kv", "put", "secret/app", "password=before"]));
    // A new admin set: a second admin, threshold 2 (the current admin approves alone).
    let carol = demo.path().join("carol.key");
    ok(Command::new(SIGIL)
        .args(["key", "generate", "-o"])
        .arg(&carol)
        .output()
        .unwrap());
    let admin = demo.var("SIGIL_KEY");
    let proposal = ok(demo.sigil(
        2,
        &[
            "operator",
            "rekey",
            "init",
            "--admin",
            &admin,
            "--admin",
            carol.to_str().unwrap(),
            "--threshold",
            "2",
        ],
    ));
    let digest = proposal
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .expect("a digest line")
        .trim()
        .to_owned();
    ok(demo.sigil(
        3,
        &["operator", "rekey", "approve", &format!("-digest={digest}")],
    ));
    // The leader dies; a follower takes over with the rekeyed root key and serves.
    demo.kill9(1);
    eventually(30, || {
        demo.sigil(2, &["kv", "get", "-field=password", "secret/app"])
            .status
            .success()
    });
    let status = stdout(&demo.sigil(2, &["operator", "status", "--format", "json"]));
    assert!(status.contains("\"sealed\": false"), "{status}");
    assert!(status.contains("\"threshold\": 2"), "{status}");
    // The old leader restarts sealed: one admin's share is not enough any more, two are.
    demo.restart(1);
    eventually(30, || {
        stdout(&demo.sigil(1, &["operator", "status", "--format", "json"]))
            .contains("\"sealed\": true")
    });
    let one = ok(demo.sigil(1, &["operator", "unseal"]));
    assert!(one.contains("Unseal progress: 1/2"), "{one}");
    let mut cmd = Command::new(SIGIL);
    cmd.args(["operator", "unseal"]);
    for (k, v) in &demo.env {
        cmd.env(k, v);
    }
    cmd.env("SIGIL_ADDR", demo.api(1)).env("SIGIL_KEY", &carol);
    let two = ok(cmd.output().unwrap());
    assert!(two.contains("Unsealed."), "{two}");
    eventually(30, || {
        demo.sigil(1, &["kv", "get", "-field=password", "secret/app"])
            .status
            .success()
    });
}

/// Leases move with leadership: after `kill -9` of the leader, a lease issued before is still
/// known and revoked once (by its TTL on the new leader's sweeper, or on request), against a
/// real PostgreSQL.
#[test]
fn database_leases_survive_the_loss_of_the_leader_and_are_revoked_once() {
    use support::databases::Postgres;
    let Some(pg) = Postgres::start() else { return };
    let mut demo = Demo::start();
    ok(demo.sigil(1, &["secrets", "enable", "database"]));
    let args = pg.config_args();
    ok(demo.sigil(1, &args.iter().map(String::as_str).collect::<Vec<_>>()));
    for (role, ttl) in [("short", "6s"), ("long", "10m")] {
        ok(demo.sigil(
            1,
            &[
                "write",
                &format!("database/roles/{role}"),
                "db_name=pg",
                "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                &format!("default_ttl={ttl}"),
                "max_ttl=1h",
            ],
        ));
    }
    let creds = |node: u16, role: &str| -> (String, String) {
        let v: Value = serde_json::from_str(&ok(demo.sigil(
            node,
            &[
                "read",
                "--format",
                "json",
                &format!("database/creds/{role}"),
            ],
        )))
        .unwrap();
        (
            v["lease_id"].as_str().unwrap().to_owned(),
            v["data"]["username"].as_str().unwrap().to_owned(),
        )
    };
    let (_, short_user) = creds(2, "short");
    let (long_lease, long_user) = creds(3, "long");
    assert!(pg.user_exists(&short_user) && pg.user_exists(&long_user));

    demo.kill9(1);
    eventually(30, || !demo.leader(2).is_empty());
    // The short lease expires on the new leader's watch: its user is dropped.
    eventually(30, || !pg.user_exists(&short_user));
    // The long one is still known, and revoked once on request.
    let lookup = ok(demo.sigil(2, &["lease", "lookup", "--format", "json", &long_lease]));
    assert!(lookup.contains(&long_lease), "{lookup}");
    assert!(pg.user_exists(&long_user));
    ok(demo.sigil(3, &["lease", "revoke", &long_lease]));
    assert!(!pg.user_exists(&long_user));
    assert!(
        !demo
            .sigil(2, &["lease", "lookup", &long_lease])
            .status
            .success()
    );
    // The old leader comes back as a follower: it revokes nothing (its sweepers do not run),
    // and the cluster still knows no lease of those users.
    demo.restart(1);
    eventually(30, || {
        stdout(&demo.sigil(1, &["operator", "status", "--format", "json"]))
            .contains("\"sealed\": true")
    });
    ok(demo.sigil(2, &["operator", "unseal"]));
    eventually(30, || {
        demo.sigil(1, &["operator", "raft", "list-peers"])
            .status
            .success()
    });
    let gone = demo.sigil(1, &["lease", "lookup", &long_lease]);
    assert!(!gone.status.success(), "{}", stdout(&gone));
    assert!(!pg.user_exists(&long_user) && !pg.user_exists(&short_user));
}

/// `[storage] performance_multiplier` (Vault's): 1–10 and only for raft storage; a node that
/// takes it runs Raft's clock that much slower. So with Vault's `max_entry_size`,
/// `snapshot_threshold` and `trailing_logs`.
#[test]
fn the_performance_multiplier_slows_raft_and_only_raft_takes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = support::ports::free_port;
    let config = |name: &str, storage: &str| {
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[storage]\npath = \"{}\"\n{storage}\n[listener]\naddress = \"127.0.0.1:{}\"\n",
                tmp.path().join(name).with_extension("d").display(),
                port()
            ),
        )
        .unwrap();
        path
    };
    let raft = |m: &str| {
        format!(
            "type = \"raft\"\nnode_id = \"n1\"\ncluster_addr = \"127.0.0.1:{}\"\nperformance_multiplier = {m}",
            port()
        )
    };
    for (file, want) in [
        (config("zero.toml", &raft("0")), "1 to 10"),
        (config("eleven.toml", &raft("11")), "1 to 10"),
        (
            config("file.toml", "type = \"file\"\nperformance_multiplier = 2"),
            "are for type = \"raft\"",
        ),
        (
            config(
                "file-entry.toml",
                "type = \"file\"\nmax_entry_size = 2097152",
            ),
            "are for type = \"raft\"",
        ),
        (
            config("tiny.toml", &(raft("1") + "\nmax_entry_size = 1024")),
            "max_entry_size must be between 65536 and 67108864 bytes, not 1024",
        ),
        (
            config("huge.toml", &(raft("1") + "\nmax_entry_size = 1073741824")),
            "max_entry_size must be between",
        ),
        (
            config("never.toml", &(raft("1") + "\nsnapshot_threshold = 0")),
            "snapshot_threshold must be at least 1",
        ),
    ] {
        let out = Command::new(SIGIL)
            .args(["server", "-c", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
    let file = config(
        "three.toml",
        &(raft("3") + "\nmax_entry_size = 2097152\nsnapshot_threshold = 77\ntrailing_logs = 9"),
    );
    let log = tmp.path().join("three.log");
    let mut server = Command::new(SIGIL)
        .args(["server", "-c", file.to_str().unwrap()])
        .env("SIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(20) && !text.contains("raft node started") {
        std::thread::sleep(Duration::from_millis(100));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    server.kill().ok();
    server.wait().ok();
    assert!(text.contains("heartbeat_ms=450"), "{text}");
    assert!(text.contains("max_entry_size=2097152"), "{text}");
    assert!(text.contains("snapshot_threshold=77"), "{text}");
    assert!(text.contains("trailing_logs=9"), "{text}");
}
