//! What a Vault user reaches for in the first hour (issue "The first hour of a Vault user"),
//! through the real binary: values from standard input and files, and the errors that say
//! what happened.

mod support;

use support::{Server, ok, stderr};

/// `k=-` reads the value from standard input, `k=@FILE` from a file, a lone `-` or `@FILE` is
/// a JSON object; on `kv put`, `kv patch`, `write` and `e2e put` alike. `-` with nothing on
/// standard input is an error, never a stored `-`.
#[test]
fn values_come_from_standard_input_and_files() {
    let s = Server::start();
    let get =
        |path: &str, field: &str| ok(s.sigil(&["kv", "get", &format!("-field={field}"), path]));

    ok(s.sigil_stdin(
        &["kv", "put", "secret/x", "password=-", "user=app"],
        b"s3cr3t",
    ));
    assert_eq!(get("secret/x", "password"), "s3cr3t\n");
    assert_eq!(get("secret/x", "user"), "app\n");

    ok(s.sigil_stdin(&["kv", "patch", "secret/x", "password=-"], b"n3w\n"));
    assert_eq!(
        get("secret/x", "password"),
        "n3w\n\n",
        "as sent, newline included"
    );

    let file = s.tmp.path().join("cert.pem");
    std::fs::write(&file, "-----BEGIN X-----\nabc\n-----END X-----\n").unwrap();
    ok(s.sigil(&["kv", "put", "secret/f", &format!("pem=@{}", file.display())]));
    assert!(get("secret/f", "pem").starts_with("-----BEGIN X-----\nabc"));

    // A JSON object on standard input keeps its types (as `vault kv put PATH -`).
    ok(s.sigil_stdin(
        &["kv", "put", "secret/j", "-"],
        br#"{"port": 5432, "tls": true}"#,
    ));
    let json = ok(s.sigil(&["kv", "get", "-format=json", "secret/j"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data"]["data"]["port"], 5432);
    assert_eq!(v["data"]["data"]["tls"], true);

    // The generic `write` too.
    ok(s.sigil_stdin(
        &["write", "secret/data/w", "-"],
        br#"{"data": {"v": "via-write"}}"#,
    ));
    assert_eq!(get("secret/w", "v"), "via-write\n");

    // Nothing on standard input: an error, and nothing stored.
    let out = s.sigil_stdin(&["kv", "put", "secret/empty", "password=-"], b"");
    assert!(stderr(&out).contains("read nothing"), "{}", stderr(&out));
    assert_eq!(
        s.sigil(&["kv", "get", "secret/empty"]).status.code(),
        Some(2)
    );
    // Twice from one standard input: an error.
    let out = s.sigil_stdin(&["kv", "put", "secret/two", "a=-", "b=-"], b"x");
    assert!(stderr(&out).contains("already read"), "{}", stderr(&out));
}

/// Request size (point 5): the default is Vault's 32 MiB, so a 5 MB value is stored; above the
/// limit the CLI's error says the size and the limit and where it is set.
#[test]
fn request_size_is_vaults_and_the_413_says_the_limit() {
    let s = Server::start();
    let file = s.tmp.path().join("big");
    std::fs::write(&file, "x".repeat(5_000_000)).unwrap();
    ok(s.sigil(&["kv", "put", "secret/big", &format!("v=@{}", file.display())]));
    let got = ok(s.sigil(&["kv", "get", "-field=v", "secret/big"]));
    assert_eq!(got.len(), 5_000_001);

    std::fs::write(&file, "x".repeat(33 * 1024 * 1024)).unwrap();
    let out = s.sigil(&[
        "kv",
        "put",
        "secret/bigger",
        &format!("v=@{}", file.display()),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("413")
            && err.contains("limit is 33554432 bytes")
            && err.contains("max_request_bytes"),
        "{err}"
    );
}
