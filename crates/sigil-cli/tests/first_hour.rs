//! What a Vault user reaches for in the first hour (issue "The first hour of a Vault user"),
//! through the real binary: values from standard input and files, and the errors that say
//! what happened.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

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
    let port = support::ports::free_port();
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
    s.write_policy(
        "team",
        "path \"team/kv/data/*\" { capabilities = [\"read\"] }\n",
    );
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

/// Runs the CLI detached from any terminal (`setsid`), so a passphrase prompt cannot wait on
/// the developer's terminal, with `env` set and no server configuration.
fn detached(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w")
        .arg(support::SIGIL)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("SIGIL_KEY_PASSPHRASE_FILE")
        .env_remove("SIGIL_KEY_NEW_PASSPHRASE_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run setsid sigil")
}

/// Passphrase-protected key files (point 17): `key generate --passphrase` writes age's scrypt
/// encryption, armored, which rage (an independent age implementation) opens; a file rage
/// wrote is a key Sigil uses; every command that reads a key asks for the passphrase or reads
/// SIGIL_KEY_PASSPHRASE_FILE; `key passwd` adds, changes and removes it; never on the command
/// line.
#[test]
fn protected_key_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let pass = secret("pass", "correct horse battery staple\n");
    let wrong = secret("wrong", "correct horse battery stapler\n");
    let key = dir.path().join("bob.key");
    let key_s = key.to_str().unwrap();
    const PASS_ENV: &str = "SIGIL_KEY_PASSPHRASE_FILE";

    let public = ok(detached(
        &["key", "generate", "--passphrase", "-o", key_s],
        &[(PASS_ENV, &pass)],
    ));
    let public = public.trim();
    assert!(public.starts_with("sigil1"), "{public}");
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"),
        "{text}"
    );
    assert!(!text.contains("SIGIL-SECRET-KEY"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // rage opens it with the passphrase: inside is the plain key file.
    let opened = Command::new(support::python())
        .arg(support::interop_script("age_passphrase.py"))
        .args(["decrypt", key_s, pass.to_str().unwrap()])
        .output()
        .unwrap();
    let plain = ok(opened);
    assert!(plain.contains("SIGIL-SECRET-KEY-1"), "rage did not open it");
    assert!(plain.contains(public), "the key file names its public key");

    // Without the passphrase (no terminal, no file) or with a wrong one: a clear error.
    let out = detached(&["key", "public", key_s], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(PASS_ENV), "{}", stderr(&out));
    let out = detached(&["key", "public", key_s], &[(PASS_ENV, &wrong)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase for key file"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("correct horse"));
    assert_eq!(
        ok(detached(&["key", "public", key_s], &[(PASS_ENV, &pass)])).trim(),
        public
    );

    // The protected key signs requests: bob is an identity and writes a secret with it.
    ok(s.sigil_stdin(
        &["policy", "write", "bob", "-"],
        br#"path "secret/data/bob/*" { capabilities = ["create", "read", "update"] }"#,
    ));
    ok(s.sigil(&[
        "identity",
        "create",
        "bob",
        "--public-key",
        public,
        "--policy",
        "bob",
    ]));
    let bob = |args: &[&str], pass_file: &Path| {
        s.sigil_as_env(&key, args, &[(PASS_ENV, pass_file.to_str().unwrap())])
    };
    ok(bob(&["kv", "put", "secret/bob/x", "v=1"], &pass));
    let out = bob(&["kv", "get", "secret/bob/x"], &wrong);
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );

    // `key passwd`: change (old from SIGIL_KEY_PASSPHRASE_FILE, new from
    // SIGIL_KEY_NEW_PASSPHRASE_FILE), then the old passphrase no longer opens it.
    let new = secret("new", "tr0ub4dor&3");
    ok(detached(
        &["key", "passwd", key_s],
        &[(PASS_ENV, &pass), ("SIGIL_KEY_NEW_PASSPHRASE_FILE", &new)],
    ));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !detached(&["key", "public", key_s], &[(PASS_ENV, &pass)])
            .status
            .success()
    );
    assert_eq!(
        ok(detached(&["key", "public", key_s], &[(PASS_ENV, &new)])).trim(),
        public
    );
    // Remove it: a plain key file again, the same key.
    ok(detached(
        &["key", "passwd", "--remove", key_s],
        &[(PASS_ENV, &new)],
    ));
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.contains("SIGIL-SECRET-KEY-1"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    ok(bob(&["kv", "get", "secret/bob/x"], &wrong));
    let out = detached(&["key", "passwd", "--remove", key_s], &[]);
    assert!(
        stderr(&out).contains("has no passphrase"),
        "{}",
        stderr(&out)
    );
    // And add one to a plain key file.
    ok(detached(
        &["key", "passwd", key_s],
        &[("SIGIL_KEY_NEW_PASSPHRASE_FILE", &pass)],
    ));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("BEGIN AGE ENCRYPTED FILE")
    );
    ok(bob(&["kv", "get", "secret/bob/x"], &pass));

    // A key file rage protected is a key file Sigil reads.
    let plain_key = dir.path().join("carol.plain");
    let carol_public = ok(detached(
        &["key", "generate", "-o", plain_key.to_str().unwrap()],
        &[],
    ));
    let carol = dir.path().join("carol.key");
    let mut rage = Command::new(support::python())
        .arg(support::interop_script("age_passphrase.py"))
        .args(["encrypt", carol.to_str().unwrap(), pass.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = rage.stdin.take().unwrap();
        stdin
            .write_all(&std::fs::read(&plain_key).unwrap())
            .unwrap();
    }
    assert!(rage.wait().unwrap().success());
    std::fs::set_permissions(&carol, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        ok(detached(
            &["key", "public", carol.to_str().unwrap()],
            &[(PASS_ENV, &pass)]
        )),
        carol_public
    );

    // The passphrase has no flag: it cannot be given on the command line.
    let out = detached(&["key", "generate", "--passphrase=hunter2"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `-output-policy` (point 13): the command prints the HCL policy its request needs and sends
/// nothing; that policy, attached, is enough to run it.
#[test]
fn output_policy_prints_what_a_command_needs() {
    let s = Server::start();
    let eve = s.new_identity("eve", &[]);
    let as_eve = |args: &[&str]| s.sigil_as(&eve, args);

    let put = ok(as_eve(&[
        "kv",
        "put",
        "-output-policy",
        "secret/app",
        "v=1",
    ]));
    assert_eq!(
        put,
        "path \"secret/data/app\" {\n  capabilities = [\"create\", \"update\"]\n}\n"
    );
    // Nothing was written.
    let out = s.sigil(&["kv", "get", "secret/app"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let get = ok(as_eve(&["kv", "get", "-output-policy", "secret/app"]));
    assert_eq!(
        get,
        "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n"
    );
    let list = ok(as_eve(&["kv", "list", "-output-policy", "secret/"]));
    assert!(
        list.contains("path \"secret/metadata") && list.contains("[\"list\"]"),
        "{list}"
    );
    let del = ok(as_eve(&[
        "kv",
        "metadata",
        "delete",
        "-output-policy",
        "secret/app",
    ]));
    assert!(
        del.contains("\"secret/metadata/app\"") && del.contains("[\"delete\"]"),
        "{del}"
    );
    let write = ok(as_eve(&[
        "write",
        "--output-policy",
        "sys/policies/acl/x",
        "policy=p",
    ]));
    assert!(write.contains("\"sys/policies/acl/x\""), "{write}");

    // The printed policies, attached to eve, let her run the commands.
    ok(s.sigil_stdin(
        &["policy", "write", "eve", "-"],
        format!("{put}{get}").as_bytes(),
    ));
    ok(s.sigil(&[
        "identity",
        "create",
        "eve",
        "--public-key",
        eve.to_str().unwrap(),
        "--policy",
        "eve",
    ]));
    ok(as_eve(&["kv", "put", "secret/app", "v=1"]));
    assert_eq!(ok(as_eve(&["kv", "get", "-field=v", "secret/app"])), "1\n");
}

/// `kv rollback -version=N` and `secrets list -detailed` (point 14).
#[test]
fn kv_rollback_and_secrets_list_detailed() {
    let s = Server::start();
    ok(s.sigil(&["kv", "put", "secret/app", "v=one"]));
    ok(s.sigil(&["kv", "put", "secret/app", "v=two"]));
    ok(s.sigil(&["kv", "rollback", "-version=1", "secret/app"]));
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=v", "secret/app"])),
        "one\n"
    );
    let meta = ok(s.sigil(&["kv", "metadata", "get", "-format=json", "secret/app"]));
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(
        meta["data"]["current_version"], 3,
        "a new version, as Vault"
    );
    // Refused: the current version, one that does not exist, a destroyed one.
    for (version, says) in [("3", "already the current"), ("9", "does not exist")] {
        let out = s.sigil(&[
            "kv",
            "rollback",
            &format!("-version={version}"),
            "secret/app",
        ]);
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    ok(s.sigil(&["kv", "destroy", "-versions=2", "secret/app"]));
    let out = s.sigil(&["kv", "rollback", "-version=2", "secret/app"]);
    assert!(
        stderr(&out).contains("deleted or destroyed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=v", "secret/app"])),
        "one\n"
    );

    ok(s.sigil(&["secrets", "enable", "-default-lease-ttl=1h", "database"]));
    let detailed = ok(s.sigil(&["secrets", "list", "-detailed"]));
    let header = detailed.lines().next().unwrap();
    for column in ["Default TTL", "Max TTL", "Options"] {
        assert!(header.contains(column), "{detailed}");
    }
    assert!(
        detailed
            .lines()
            .any(|l| l.starts_with("database/") && l.contains("3600")),
        "{detailed}"
    );
    assert!(
        detailed
            .lines()
            .any(|l| l.starts_with("secret/") && l.contains("version")),
        "{detailed}"
    );
    assert!(!ok(s.sigil(&["secrets", "list"])).contains("Max TTL"));
}

/// Help that is true (point 15): every command in `sigil --help`, every engine type in
/// `secrets enable --help`, every metadata verb in `kv metadata --help`, and settings that come
/// from the environment are not shown as required arguments.
#[test]
fn help_is_true() {
    let help = ok(support::run(&["--help"]));
    for command in [
        "server",
        "key",
        "identity",
        "group",
        "policy",
        "secrets",
        "kv",
        "read",
        "write",
        "list",
        "delete",
        "operator",
        "audit",
        "lease",
        "e2e",
        "wrap",
        "unwrap",
        "status",
        "version",
        "completion",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{help}"
        );
    }
    let enable = ok(support::run(&["secrets", "enable", "--help"]));
    for engine in ["kv", "e2e", "transit", "pki", "database"] {
        assert!(enable.contains(engine), "{engine}: {enable}");
    }
    let metadata = ok(support::run(&["kv", "metadata", "--help"]));
    for verb in ["get", "put", "patch", "delete"] {
        assert!(
            metadata
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "{verb}: {metadata}"
        );
    }
    for args in [
        &["kv", "get", "--help"][..],
        &["read", "--help"],
        &["operator", "unseal", "--help"],
    ] {
        let text = ok(support::run(args));
        let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap();
        for setting in ["--addr", "--key", "--ca-cert", "--server-key"] {
            assert!(!usage.contains(setting), "{args:?}: {usage}");
        }
    }
}

/// `-format=json|yaml` and `-field` where data is printed, and `-wrap-to` on `read` and
/// `write` (point 12). The YAML is read back by PyYAML and must equal the JSON.
#[test]
fn formats_fields_and_wrapping_on_every_command() {
    let s = Server::start();
    ok(s.sigil_stdin(
        &["policy", "write", "app", "-"],
        br#"path "secret/data/app" { capabilities = ["read"] }"#,
    ));
    let bob = s.new_identity("bob", &["app"]);
    ok(s.sigil(&["group", "create", "ops", "--member", "bob"]));
    ok(s.sigil(&["kv", "put", "secret/app", "v=line one\nline: two", "n=no"]));

    let parse_yaml = |text: &str| -> serde_json::Value {
        let out = Command::new(support::python())
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(text.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not YAML: {text}"))
    };
    for args in [
        &["identity", "read", "bob"][..],
        &["identity", "list"],
        &["group", "read", "ops"],
        &["group", "list"],
        &["policy", "list"],
        &["policy", "read", "app"],
        &["list", "secret/metadata/"],
        &["read", "secret/data/app"],
        &["kv", "get", "secret/app"],
        &["secrets", "list"],
        &["lease", "list", "database/creds/none"],
    ] {
        let run = |format: &str| {
            let mut a = args.to_vec();
            a.insert(
                a.len() - usize::from(args.len() > 2 || args[1] != "list"),
                format,
            );
            s.sigil(&a)
        };
        let json = run("-format=json");
        if !json.status.success() && args[0] == "lease" {
            // A list with nothing under it is "No value found" (exit 2), in every format.
            assert_eq!(json.status.code(), Some(2), "{args:?}: {}", stderr(&json));
            assert_eq!(run("-format=yaml").status.code(), Some(2), "{args:?}");
            continue;
        }
        // Two requests: all but the request id is the same.
        let without_id = |mut v: serde_json::Value| {
            if let Some(m) = v.as_object_mut() {
                m.remove("request_id");
            }
            v
        };
        let json = without_id(serde_json::from_slice(&json.stdout).unwrap());
        let yaml = ok(run("-format=yaml"));
        assert_eq!(without_id(parse_yaml(&yaml)), json, "{args:?}:\n{yaml}");
    }
    assert_eq!(
        ok(s.sigil(&["identity", "read", "-field=name", "bob"])),
        "bob\n"
    );
    assert_eq!(
        ok(s.sigil(&["group", "read", "-field=members", "ops"])),
        "[\"bob\"]\n"
    );
    let policy = ok(s.sigil(&["policy", "read", "-field=policy", "app"]));
    assert_eq!(policy, ok(s.sigil(&["policy", "read", "app"])));
    assert!(policy.contains("secret/data/app"), "{policy}");

    // -wrap-to on read and write: the answer goes into a wrap only bob opens.
    let trust = format!(
        "--trust={}",
        ok(support::run(&[
            "key",
            "public",
            s.admin_key().to_str().unwrap()
        ]))
        .trim()
    );
    let wrap_id = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("wrap_id"))
            .expect("a wrap id")
            .trim()
            .to_owned()
    };
    let id = wrap_id(&ok(s.sigil(&["read", "-wrap-to=bob", "secret/data/app"])));
    let opened = ok(s.sigil_as(&bob, &["unwrap", "-format=json", &trust, &id]));
    let opened: serde_json::Value = serde_json::from_str(&opened).unwrap();
    assert_eq!(opened["data"]["data"]["n"], "no", "{opened}");
    ok(s.sigil(&["secrets", "enable", "transit"]));
    ok(s.sigil(&["write", "transit/keys/k", "type=aes256-gcm96"]));
    let id = wrap_id(&ok(s.sigil(&[
        "write",
        "-wrap-to=bob",
        "-wrap-ttl=1m",
        "transit/encrypt/k",
        "plaintext=aGk=",
    ])));
    let opened = ok(s.sigil_as(&bob, &["unwrap", "-format=json", &trust, &id]));
    assert!(opened.contains("sigil:v1:"), "{opened}");
}

/// `policy fmt FILE` (point 14): checked with the server's parser, laid out in place with its
/// comments and permissions kept; an invalid policy is an error and the file stays as it was.
#[test]
fn policy_fmt_checks_and_lays_out_in_place() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.hcl");
    std::fs::write(
        &file,
        "# the app\npath \"secret/data/app\"{\ncapabilities=[\"read\"]   # only read\n   }\n\n\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = ok(detached(&["policy", "fmt", file.to_str().unwrap()], &[]));
    assert!(out.contains("Formatted policy"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# the app\npath \"secret/data/app\" {\n  capabilities = [\"read\"]   # only read\n}\n"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );

    let bad = dir.path().join("bad.hcl");
    let text = "path \"a\" {\ncapabilities = [\"reed\"]\n}\n";
    std::fs::write(&bad, text).unwrap();
    let out = detached(&["policy", "fmt", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reed"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), text);
}

/// `docs/cli.md` documents every flag of every command (the "done when" of the issue): each
/// command's `--help` is walked, and each long flag must appear in the document (as `-flag` or
/// `--flag`). The client settings are documented once, in "Client configuration".
#[test]
fn cli_md_documents_every_flag() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md"))
            .unwrap();
    fn walk(args: &mut Vec<String>, doc: &str, missing: &mut Vec<String>, seen: &mut usize) {
        let mut help_args: Vec<&str> = args.iter().map(String::as_str).collect();
        help_args.push("--help");
        let help = ok(support::run(&help_args));
        let mut section = "";
        let mut subcommands = Vec::new();
        for line in help.lines() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            let first = line.trim().split("  ").next().unwrap_or_default();
            if section.starts_with("Commands:") {
                let name = first.split_whitespace().next().unwrap_or_default();
                if name != "help" {
                    subcommands.push(name.to_owned());
                }
            } else if section.starts_with("Options:") {
                for flag in first.split([' ', ',']).filter_map(|w| w.strip_prefix("--")) {
                    *seen += 1;
                    let documented = ["-", "--"].iter().any(|dash| {
                        doc.match_indices(&format!("{dash}{flag}")).any(|(i, m)| {
                            let after = doc[i + m.len()..].chars().next();
                            !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                        })
                    });
                    if !documented && !["help", "version"].contains(&flag) {
                        missing.push(format!("sigil {} --{flag}", args.join(" ")));
                    }
                }
            }
        }
        for sub in subcommands {
            args.push(sub);
            walk(args, doc, missing, seen);
            args.pop();
        }
    }
    let (mut missing, mut seen) = (Vec::new(), 0);
    walk(&mut Vec::new(), &doc, &mut missing, &mut seen);
    assert!(
        seen > 100,
        "only {seen} flags found: is the help format still parsed?"
    );
    assert!(
        missing.is_empty(),
        "not in docs/cli.md:\n{}",
        missing.join("\n")
    );
}
