//! Schemathesis (PyPI) against the generated OpenAPI document, bounded: no response may be a
//! 5xx, and the server must be healthy afterwards. The tool comes from the test virtualenv
//! (`scripts/test`); missing, it fails the test — it is never skipped.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{Server, stdout};

fn schemathesis() -> PathBuf {
    let python = std::env::var("SIGIL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let python = PathBuf::from(python);
    match python.parent() {
        Some(bin) if bin.join("schemathesis").exists() => bin.join("schemathesis"),
        _ => PathBuf::from("schemathesis"),
    }
}

#[test]
fn schemathesis_finds_no_server_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    // Generous limits so the fuzzer reaches the handlers instead of the rate limiter.
    let s = Server::start_in(
        tmp,
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--limit-unauthenticated",
            "100000",
            "--limit-auth-failures",
            "100000",
            "--limit-address",
            "100000",
        ],
        &[],
    );
    let out = Command::new(schemathesis())
        .args([
            "run",
            &format!("{}/v1/sys/openapi.json", s.var("SIGIL_ADDR")),
        ])
        .args([
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--request-timeout",
            "10",
            // A Hypothesis health check about the generator (too many of its own examples
            // discarded), not about the server; it failed CI once on an operation with three
            // path parameters.
            "--suppress-health-check=filter_too_much",
        ])
        .args(["--tls-verify", s.var("SIGIL_CACERT")])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis (install tests/interop/requirements.txt, or run scripts/test)");
    let report = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    let cases = report
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no test case summary:\n{report}"));
    assert!(
        cases.contains("passed") && !cases.contains("failed"),
        "{cases}"
    );
    // Still serving, and still unsealed (exit 0; 2 would mean sealed).
    support::ok(s.sigil_env(&["operator", "status"], &[]));
    support::ok(s.sigil(&["kv", "put", "secret/after-fuzz", "v=1"]));
}
