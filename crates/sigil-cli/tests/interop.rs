//! Interoperability: an independent Python client (RFC 9421 via `http-message-signatures`,
//! RFC 9180 via `pyhpke`, keys via `cryptography`) registers, writes and reads against the
//! real server. The interpreter comes from `SIGIL_TEST_PYTHON` (set by `scripts/test`), or
//! `python3`. Missing packages fail the test: it is never skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Server, ok, python, python_keygen, stderr, stdout};

fn script() -> PathBuf {
    support::interop_script("sigil_interop.py")
}

/// Runs the Python client's `mode` with the keys in `keydir` against `s`; it must succeed.
fn run_client(s: &Server, mode: &str, keydir: &Path) -> Output {
    let run = Command::new(python())
        .arg(script())
        .args([mode, keydir.to_str().unwrap()])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "python client failed:\n{}\n{}",
        stdout(&run),
        stderr(&run)
    );
    run
}

#[test]
fn python_client_signs_seals_writes_and_reads() {
    let s = Server::start();
    let keydir = s.tmp.path().join("py");
    let public = python_keygen(&keydir);

    s.write_policy("py", "path \"secret/data/py/*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}\n\
         path \"secret/metadata/py/*\" {\n  capabilities = [\"list\"]\n}\n\
         path \"secret/data/from-rust\" {\n  capabilities = [\"read\"]\n}\n\
         path \"sys/storage/snapshot\" {\n  capabilities = [\"read\", \"sudo\"]\n}\n");
    ok(s.sigil(&[
        "identity",
        "create",
        "python",
        "--public-key",
        &public,
        "--policy",
        "py",
    ]));
    ok(s.sigil(&["kv", "put", "secret/from-rust", "greeting=hello-python"]));

    let run = run_client(&s, "run", &keydir);
    // The operator backup was streamed, opened by pyhpke and its snapshot checked.
    assert!(stderr(&run).contains("streamed)"), "{}", stderr(&run));
    let line = stdout(&run);
    let secret = line
        .trim()
        .strip_prefix("interop ok: ")
        .expect("interop ok line");

    // What Python wrote, Rust reads.
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=token", "secret/py/app"])).trim(),
        secret
    );
}

/// The Python client streams a cluster's snapshot down and back up as a sealed request stream
/// (docs/protocol.md §4.7), sealed with pyhpke's sender context, and the server stages it for a
/// restore; a body changed after signing and a stream cut short are refused.
#[test]
fn python_client_streams_a_snapshot_up_to_be_restored() {
    let base = support::ports::free_ports(2);
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{base}");
    let cluster = format!("127.0.0.1:{}", base + 1);
    let mut s = Server::spawn(
        tmp,
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--node-id",
            "py-1",
            "--listen",
            &listen,
            "--cluster-listen",
            &cluster,
        ],
        &[],
        2,
    );
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    // Enough data for the snapshot to span several frames.
    for i in 0..3 {
        let value = format!("v={}", "x".repeat(40_000 + i));
        ok(s.sigil(&["kv", "put", &format!("secret/bulk-{i}"), &value]));
    }
    let keydir = s.tmp.path().join("py");
    let public = python_keygen(&keydir);
    s.write_policy(
        "restorer",
        "path \"sys/storage/raft/snapshot\" {\n  capabilities = [\"read\", \"update\", \"sudo\"]\n}\n",
    );
    ok(s.sigil(&[
        "identity",
        "create",
        "python",
        "--public-key",
        &public,
        "--policy",
        "restorer",
    ]));
    let run = run_client(&s, "restore", &keydir);
    let digest = stdout(&run)
        .trim()
        .strip_prefix("restore staged: ")
        .expect("a staged restore")
        .to_owned();
    // The Rust CLI sees the same staged restore.
    let status = ok(s.sigil(&["read", "-format=json", "sys/storage/raft/snapshot/restore"]));
    assert!(status.contains(&digest), "{status}");
}
