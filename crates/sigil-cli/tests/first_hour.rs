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

/// Errors that say what happened (points 7–9): what was not found, exit 2; an unseal that
/// cannot work says why; a busy port is said once; `--listen localhost:PORT` works; a Vault
/// HCL file is recognised; an unknown policy is warned about.
#[test]
fn errors_say_what_happened() {
    let s = Server::start();
    let missing = |args: &[&str], needle: &str| {
        let out = s.sigil(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    };
    missing(&["policy", "read", "nope"], "No policy named: nope");
    missing(&["identity", "read", "nobody"], "No identity named: nobody");
    missing(&["group", "read", "nobody"], "No group named: nobody");
    let file = s.tmp.path().join("f");
    std::fs::write(&file, "x").unwrap();
    missing(
        &["wrap", "--to", "nobody", file.to_str().unwrap()],
        "No identity or group found for nobody",
    );

    // An unknown policy is attached (it may be written later), with a warning.
    let eve = s.new_key("eve");
    let public = ok(support::run(&["key", "public", eve.to_str().unwrap()]));
    let out = s.sigil(&[
        "identity",
        "create",
        "eve",
        "--policy",
        "doesnotexist",
        "--public-key",
        public.trim(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", support::stdout(&out), stderr(&out));
    assert!(
        said.contains("policy \"doesnotexist\" does not exist"),
        "{said}"
    );

    // The same port twice: the OS error once.
    let port = s.addr().port();
    let again = support::run(&[
        "server",
        "--transient",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let err = stderr(&again);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");

    // A Vault configuration file.
    let hcl = s.tmp.path().join("vault.hcl");
    std::fs::write(&hcl, "storage \"raft\" {\n  path = \"/v\"\n}\nlistener \"tcp\" {\n  address = \"0.0.0.0:8200\"\n}\n").unwrap();
    let out = support::run(&["server", "-c", hcl.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Sigil's configuration is TOML"),
        "{}",
        stderr(&out)
    );
}

/// `--listen localhost:PORT` works (a name is resolved).
#[test]
fn listen_takes_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tmp.path().join("state");
    let listen = format!("localhost:{port}");
    let s = Server::spawn(
        tmp,
        &[
            "--transient",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
        ],
        &[],
        4,
    );
    ok(s.sigil(&["kv", "put", "secret/x", "v=1"]));
}

/// `operator unseal` against a server that is not initialized says so.
#[test]
fn unsealing_an_uninitialized_server_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_data_dir(&tmp.path().join("data"), false);
    let key = tmp.path().join("k.key");
    ok(support::run(&[
        "key",
        "generate",
        "-o",
        key.to_str().unwrap(),
    ]));
    let out = s.sigil_env(
        &["operator", "unseal"],
        &[("SIGIL_KEY", key.to_str().unwrap())],
    );
    assert!(stderr(&out).contains("not initialized"), "{}", stderr(&out));
}

/// Mounts are found as Vault's CLI finds them (point 6): the longest mount prefix
/// (`team/kv/app` on a mount `team/kv/`), and a typo names the mounts the caller may use;
/// someone who may use none gets a plain "No value found".
#[test]
fn kv_finds_its_mount_and_a_typo_names_the_mounts() {
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "-path=team/kv", "kv-v2"]));
    ok(s.sigil(&["kv", "put", "team/kv/app", "v=team"]));
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=v", "team/kv/app"])),
        "team\n"
    );
    assert!(ok(s.sigil(&["kv", "list", "team/kv/"])).contains("app"));

    let out = s.sigil(&["kv", "get", "secrte/app"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no mount at secrte/") && err.contains("secret/") && err.contains("team/kv/"),
        "{err}"
    );
    // A caller who may use only team/kv/ learns of no other mount.
    let policy = s.tmp.path().join("team.hcl");
    std::fs::write(
        &policy,
        "path \"team/kv/data/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "team", policy.to_str().unwrap()]));
    let bob = s.new_identity("bob", &["team"]);
    assert_eq!(
        ok(s.sigil_as(&bob, &["kv", "get", "-field=v", "team/kv/app"])),
        "team\n"
    );
    let out = s.sigil_as(&bob, &["kv", "get", "secret/app"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no mount at secret/") && err.contains("team/kv/"),
        "{err}"
    );
    assert!(
        !err.contains("secret/,") && !err.contains("use: secret/"),
        "{err}"
    );
    // Nobody's mounts: a plain not-found.
    let carol = s.new_identity("carol", &[]);
    let out = s.sigil_as(&carol, &["kv", "get", "secret/app"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("No value found at secret/app"),
        "{}",
        stderr(&out)
    );
}

/// `sigil status` as `vault status` (exit 2 when sealed), and `sigil read` on the public
/// endpoints (point 11).
#[test]
fn status_and_public_reads() {
    let s = Server::start();
    let out = ok(s.sigil(&["status"]));
    for row in [
        "Seal Type",
        "Initialized",
        "Sealed",
        "Version",
        "Storage Type",
        "memory",
    ] {
        assert!(out.contains(row), "{row} not in:\n{out}");
    }
    let health = ok(s.sigil(&["read", "-format=json", "sys/health"]));
    let v: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["data"]["sealed"], false, "{health}");
    assert_eq!(v["data"]["storage"], "ok", "{health}");
    assert_eq!(
        ok(s.sigil(&["read", "-field=sealed", "sys/seal-status"])).trim(),
        "false"
    );
    ok(s.sigil(&["read", "sys/openapi.json"]));
    // Sealed (here: not initialized yet), exit 2 as `vault status`; no key needed.
    let tmp = tempfile::tempdir().unwrap();
    let sealed = Server::start_data_dir(&tmp.path().join("data"), false);
    let out = sealed.sigil_env(&["status"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        support::stdout(&out).contains("Sealed"),
        "{}",
        support::stdout(&out)
    );
}

/// The transient server's state directory (point 19): private (0700), and removed on a clean
/// exit unless `--dir` named it.
#[test]
fn the_transient_state_directory_is_private_and_goes_with_the_server() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut s = Server::spawn(tempfile::tempdir().unwrap(), &["--transient"], &[], 4);
    let dir = std::path::Path::new(s.var("SIGIL_CACERT"))
        .parent()
        .unwrap()
        .to_owned();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    assert!(dir.join("admin.key").exists());
    s.terminate();
    assert!(!dir.exists(), "{} is still there", dir.display());

    let kept = tempfile::tempdir().unwrap();
    let state = kept.path().join("state");
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["--transient", "--dir", state.to_str().unwrap()],
        &[],
        4,
    );
    s.terminate();
    assert!(state.join("admin.key").exists(), "--dir is kept");
}

/// `sigil version`, shell completion, and `write -f` (Vault's `-force`) for endpoints that take
/// no data, which `write` without data refuses (points 12, 14).
#[test]
fn version_completion_and_write_force() {
    let s = Server::start();
    let v = ok(support::run(&["version"]));
    assert!(v.starts_with("Sigil v"), "{v}");
    assert_eq!(
        ok(support::run(&["--version"])).trim(),
        format!("sigil {}", v.trim().trim_start_matches("Sigil v"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(support::run(&["completion", shell]));
        assert!(
            script.contains("sigil") && script.contains("operator"),
            "{shell}"
        );
    }
    ok(s.sigil(&["secrets", "enable", "transit"]));
    ok(s.sigil(&["write", "transit/keys/app", "type=ed25519"]));
    let out = s.sigil(&["write", "transit/keys/app/rotate"]);
    assert!(stderr(&out).contains("-force"), "{}", stderr(&out));
    ok(s.sigil(&["write", "-f", "transit/keys/app/rotate"]));
    ok(s.sigil(&["write", "-force", "transit/keys/app/rotate"]));
    let key = ok(s.sigil(&["read", "-field=latest_version", "transit/keys/app"]));
    assert_eq!(key.trim(), "3");
}
