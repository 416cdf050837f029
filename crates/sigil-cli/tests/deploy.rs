//! The packaged systemd unit (deploy/systemd/sigil.service): hardened as documented, and valid
//! for `systemd-analyze verify` where that tool is present.

mod support;

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/sigil.service");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_unit_is_hardened_and_reloads_with_sighup() {
    let unit = unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for directive in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_IPC_LOCK",
        "AmbientCapabilities=CAP_IPC_LOCK",
        "LimitMEMLOCK=infinity",
        "LimitCORE=0",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "ExecStart=/usr/local/bin/sigil server -c /etc/sigil/sigil.toml --log-format json",
    ] {
        assert!(lines.contains(&directive), "missing: {directive}");
    }
    // systemd's stop timeout leaves room for the server's 30 s drain.
    let timeout: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(timeout > 30, "{timeout}");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        support::record_skip("systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    // The unit as installed, with ExecStart pointing at the binary under test (verify checks
    // that the program exists).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sigil.service");
    std::fs::write(
        &path,
        unit().replace("/usr/local/bin/sigil", support::SIGIL),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("sigil.service"),
        "systemd-analyze has something to say about the unit: {stderr}"
    );
}
