//! Interoperability: an independent Python client (RFC 9421 via `http-message-signatures`,
//! RFC 9180 via `pyhpke`, keys via `cryptography`) registers, writes and reads against the
//! real server. The interpreter comes from `SIGIL_TEST_PYTHON` (set by `scripts/test`), or
//! `python3`. Missing packages fail the test: it is never skipped.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{Server, ok, python, python_keygen, stderr, stdout};

fn script() -> PathBuf {
    support::interop_script("sigil_interop.py")
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

    let run = Command::new(python())
        .arg(script())
        .args(["run", keydir.to_str().unwrap()])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "python client failed:\n{}\n{}",
        stdout(&run),
        stderr(&run)
    );
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
