//! Go's own text/template renders the cases Sigil's template engine is tested on
//! (`tests/interop/gotemplate/cases.json`; the engine's unit tests check the same file): each
//! case must give the expected output in Go too, and each error case must fail in Go too. So
//! the expectations are Go's behaviour, not our reading of it. Needs `go` (Debian's
//! `golang-go`; `.ci/run` installs it).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn go_renders_the_cases_as_the_engine_is_tested_to() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/gotemplate");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new("go")
        .args(["run", "main.go", "cases.json"])
        .current_dir(&dir)
        .env("GOCACHE", cache.path().join("cache"))
        .env("GOPATH", cache.path().join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "off")
        .output()
        .expect("the Go toolchain (Debian package `golang-go`; .ci/run installs it)");
    assert!(
        out.status.success(),
        "go run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = file["cases"].as_array().unwrap();
    let errors = file["errors"].as_array().unwrap();
    assert_eq!(results.len(), cases.len() + errors.len());
    for (case, got) in cases.iter().zip(&results) {
        assert_eq!(
            got.get("out"),
            Some(&case[1]),
            "Go renders {} differently: {got}",
            case[0]
        );
    }
    for (text, got) in errors.iter().zip(&results[cases.len()..]) {
        assert!(
            got.get("err").is_some(),
            "Go renders {text} without error: {got}"
        );
    }
}
