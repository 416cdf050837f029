//! End-to-end through the CLI: the real binary, real TLS, loopback.

mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::{Server, ok, run, stderr, stdout};

#[test]
fn put_get_list_delete_round_trip() {
    let s = Server::start();
    let out = ok(s.sigil(&["kv", "put", "secret/app", "password=s3cr3t", "user=bob"]));
    assert!(out.contains("version            1"), "{out}");
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=password", "secret/app"])),
        "s3cr3t\n"
    );
    let table = ok(s.sigil(&["kv", "get", "secret/app"]));
    assert!(table.contains("password    s3cr3t"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(s.sigil(&["kv", "get", "-format=json", "secret/app"]))).unwrap();
    assert_eq!(json["data"]["data"]["user"], "bob");
    assert_eq!(json["data"]["metadata"]["version"], 1);
    assert_eq!(json["mount_type"], "kv");

    ok(s.sigil(&["kv", "put", "secret/app", "password=v2"]));
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=password", "secret/app"])),
        "v2\n"
    );
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=password", "-version=1", "secret/app"])),
        "s3cr3t\n"
    );
    ok(s.sigil(&["kv", "put", "secret/team/db", "x=1"]));
    assert_eq!(
        ok(s.sigil(&["kv", "list", "secret/"])),
        "Keys\n----\napp\nteam/\n"
    );

    ok(s.sigil(&["kv", "delete", "secret/app"]));
    let gone = s.sigil(&["kv", "get", "secret/app"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(stderr(&gone).contains("No value found at secret/data/app"));
    // The older version is still there.
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=password", "-version=1", "secret/app"])),
        "s3cr3t\n"
    );
}

#[test]
fn versions_can_be_deleted_undeleted_destroyed_and_metadata_read() {
    let s = Server::start();
    for v in ["a", "b", "c"] {
        ok(s.sigil(&["kv", "put", "secret/app", &format!("v={v}")]));
    }
    let get = |version: &str| {
        s.sigil(&[
            "kv",
            "get",
            "-field=v",
            &format!("-version={version}"),
            "secret/app",
        ])
    };
    let out = ok(s.sigil(&["kv", "delete", "-versions=1,2", "secret/app"]));
    assert!(out.contains("secret/delete/app"), "{out}");
    assert_eq!(get("1").status.code(), Some(2));
    assert_eq!(get("2").status.code(), Some(2));
    assert_eq!(ok(get("3")), "c\n");

    ok(s.sigil(&["kv", "undelete", "-versions=1", "secret/app"]));
    assert_eq!(ok(get("1")), "a\n");
    ok(s.sigil(&["kv", "destroy", "-versions=2", "secret/app"]));
    ok(s.sigil(&["kv", "undelete", "-versions=2", "secret/app"]));
    assert_eq!(
        get("2").status.code(),
        Some(2),
        "a destroyed version stays gone"
    );
    let missing = s.sigil(&["kv", "undelete", "secret/app"]);
    assert!(!missing.status.success(), "-versions is required");

    let meta: serde_json::Value = serde_json::from_str(&ok(s.sigil(&[
        "kv",
        "metadata",
        "get",
        "-format=json",
        "secret/app",
    ])))
    .unwrap();
    assert_eq!(meta["data"]["current_version"], 3);
    assert_eq!(meta["data"]["versions"]["2"]["destroyed"], true);
    assert_eq!(meta["data"]["versions"]["1"]["deletion_time"], "");
    let table = ok(s.sigil(&["kv", "metadata", "get", "secret/app"]));
    assert!(table.contains("Version 3"), "{table}");
    assert!(table.contains("current_version"), "{table}");

    ok(s.sigil(&["kv", "metadata", "delete", "secret/app"]));
    assert_eq!(get("3").status.code(), Some(2));
    let gone = s.sigil(&["kv", "metadata", "get", "secret/app"]);
    assert_eq!(gone.status.code(), Some(2));
    let empty = s.sigil(&["kv", "list", "secret/"]);
    assert_eq!(empty.status.code(), Some(2), "nothing left to list");
}

#[test]
fn patch_and_metadata_settings_through_the_cli() {
    let s = Server::start();
    let metadata = || -> serde_json::Value {
        let out = ok(s.sigil(&["kv", "metadata", "get", "-format=json", "secret/p"]));
        serde_json::from_str(&out).unwrap()
    };
    let missing = s.sigil(&["kv", "patch", "secret/p", "a=1"]);
    assert!(!missing.status.success(), "patch needs an existing secret");
    ok(s.sigil(&["kv", "put", "secret/p", "a=1", "b=2"]));
    let out = ok(s.sigil(&["kv", "patch", "-format=json", "secret/p", "b=3", "c=4"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["version"], 2);
    let got: serde_json::Value =
        serde_json::from_str(&ok(s.sigil(&["kv", "get", "-format=json", "secret/p"]))).unwrap();
    assert_eq!(
        got["data"]["data"],
        serde_json::json!({ "a": "1", "b": "3", "c": "4" })
    );
    let sub = ok(s.sigil(&["read", "-format=json", "secret/subkeys/p"]));
    let sub: serde_json::Value = serde_json::from_str(&sub).unwrap();
    assert_eq!(
        sub["data"]["subkeys"],
        serde_json::json!({ "a": null, "b": null, "c": null })
    );
    assert!(!sub.to_string().contains("\"3\""), "no values in subkeys");
    let stale = s.sigil(&["kv", "patch", "-cas=1", "secret/p", "d=5"]);
    assert!(stderr(&stale).contains("409"), "{}", stderr(&stale));

    ok(s.sigil(&[
        "kv",
        "metadata",
        "put",
        "-max-versions=2",
        "-custom-metadata=owner=ops",
        "-custom-metadata=tier=1",
        "secret/p",
    ]));
    ok(s.sigil(&["kv", "metadata", "patch", "-cas-required=true", "secret/p"]));
    let meta = metadata();
    assert_eq!(meta["data"]["max_versions"], 2);
    assert_eq!(meta["data"]["cas_required"], true);
    assert_eq!(
        meta["data"]["custom_metadata"],
        serde_json::json!({ "owner": "ops", "tier": "1" })
    );
    let no_cas = s.sigil(&["kv", "put", "secret/p", "a=9"]);
    assert!(
        stderr(&no_cas).contains("check-and-set parameter required"),
        "{}",
        stderr(&no_cas)
    );
    ok(s.sigil(&["kv", "put", "-cas=2", "secret/p", "a=9"]));
    let meta = metadata();
    assert_eq!(
        meta["data"]["oldest_version"], 2,
        "max_versions 2 trims version 1"
    );
    let bad = s.sigil(&[
        "kv",
        "metadata",
        "put",
        "-custom-metadata=novalue",
        "secret/p",
    ]);
    assert!(!bad.status.success());
}

/// `sigil … | head`: a reader that closes the pipe early ends the command quietly (status 141,
/// as SIGPIPE would), not with a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let s = Server::start();
    let mut child = std::process::Command::new(support::SIGIL)
        .args(["read", "sys/metrics"])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SIGIL_KEY", s.admin_key())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

#[test]
fn check_and_set_conflict_is_refused() {
    let s = Server::start();
    ok(s.sigil(&["kv", "put", "-cas=0", "secret/c", "a=1"]));
    let again = s.sigil(&["kv", "put", "-cas=0", "secret/c", "a=2"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("409"), "{}", stderr(&again));
    ok(s.sigil(&["kv", "put", "-cas=1", "secret/c", "a=2"]));
    assert_eq!(ok(s.sigil(&["kv", "get", "-field=a", "secret/c"])), "2\n");
}

#[test]
fn second_identity_is_allowed_by_policy_and_denied_outside_it() {
    let s = Server::start();
    let policy = s.tmp.path().join("team.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/team/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n\
         path \"secret/data/team/locked\" {\n  capabilities = [\"deny\"]\n}\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "team", policy.to_str().unwrap()]));
    let bob = s.new_identity("bob", &["team"]);
    ok(s.sigil(&["kv", "put", "secret/other", "a=1"]));
    ok(s.sigil(&["kv", "put", "secret/team/locked", "a=1"]));

    ok(s.sigil_as(&bob, &["kv", "put", "secret/team/app", "k=v"]));
    assert_eq!(
        ok(s.sigil_as(&bob, &["kv", "get", "-field=k", "secret/team/app"])),
        "v\n"
    );
    for args in [
        &["kv", "get", "secret/other"][..],
        &["kv", "put", "secret/other", "a=2"],
        &["kv", "get", "secret/team/locked"],
        &["kv", "list", "secret/"],
        &["kv", "delete", "secret/team/app"],
        &["policy", "list"],
        &[
            "identity",
            "create",
            "eve",
            "--public-key",
            bob.to_str().unwrap(),
            "--policy",
            "admin",
        ],
    ] {
        let out = s.sigil_as(&bob, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("403"), "{args:?}: {}", stderr(&out));
    }
    // The admin's data is untouched by the refused write.
    assert_eq!(
        ok(s.sigil(&["kv", "get", "-field=a", "secret/other"])),
        "1\n"
    );

    // Identity and policy administration round trip.
    assert_eq!(
        ok(s.sigil(&["identity", "list"])),
        "Keys\n----\nadmin\nbob\n"
    );
    assert!(ok(s.sigil(&["identity", "read", "bob"])).contains("[\"team\"]"));
    assert_eq!(ok(s.sigil(&["policy", "list"])), "admin\nteam\n");
    assert!(ok(s.sigil(&["policy", "read", "team"])).contains("secret/data/team/*"));
    ok(s.sigil(&["identity", "delete", "bob"]));
    let after = s.sigil_as(&bob, &["kv", "get", "secret/team/app"]);
    assert!(stderr(&after).contains("401"), "{}", stderr(&after));
    ok(s.sigil(&["policy", "delete", "team"]));
    assert_eq!(ok(s.sigil(&["policy", "list"])), "admin\n");
}

#[test]
fn unknown_key_gets_401() {
    let s = Server::start();
    let stranger = s.new_key("stranger");
    let out = s.sigil_as(&stranger, &["kv", "get", "secret/app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown or disabled key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn admin_policy_and_last_admin_are_protected() {
    let s = Server::start();
    let out = s.sigil(&["policy", "delete", "admin"]);
    assert!(stderr(&out).contains("built-in"), "{}", stderr(&out));
    let out = s.sigil(&["identity", "delete", "admin"]);
    assert!(
        stderr(&out).contains("last enabled identity with the admin policy"),
        "{}",
        stderr(&out)
    );
    ok(s.sigil(&["kv", "put", "secret/still", "works=yes"]));
}

#[test]
fn invalid_policy_is_refused_with_a_clear_message() {
    let s = Server::start();
    let p = s.tmp.path().join("bad.hcl");
    std::fs::write(
        &p,
        "path \"secret/*\" {\n  capabilities = [\"read\"]\n  allowed_parameters = {}\n}\n",
    )
    .unwrap();
    let out = s.sigil(&["policy", "write", "bad", p.to_str().unwrap()]);
    assert!(stderr(&out).contains("400"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\\\"allowed_parameters\\\" is not supported yet")
            || stderr(&out).contains("allowed_parameters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(s.sigil(&["policy", "list"])), "admin\n");
}

#[test]
fn key_files_are_private_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("me.key");
    let p = path.to_str().unwrap();
    let public = ok(run(&["key", "generate", "-o", p]));
    assert!(public.starts_with("sigil1"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(ok(run(&["key", "public", p])), public);
    let before = std::fs::read(&path).unwrap();
    let again = run(&["key", "generate", "-o", p]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let text = String::from_utf8(before).unwrap();
    assert!(text.contains(&format!("# public key: {}", public.trim())));
    assert!(text.lines().any(|l| l.starts_with("SIGIL-SECRET-KEY-1")));
}

#[test]
fn transient_server_writes_only_the_ca_certificate_and_admin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (tmpdir, home, cwd) = (
        tmp.path().join("tmp"),
        tmp.path().join("home"),
        tmp.path().join("cwd"),
    );
    for d in [&tmpdir, &home, &cwd] {
        std::fs::create_dir(d).unwrap();
    }
    let s = Server::start_in(
        tmp,
        &[],
        &[
            ("TMPDIR", tmpdir.as_path()),
            ("HOME", home.as_path()),
            ("CWD", cwd.as_path()),
        ],
    );
    ok(s.sigil(&["kv", "put", "secret/app", "password=hunter2-unique"]));
    ok(s.sigil(&["kv", "get", "secret/app"]));

    let state: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(state.len(), 1, "{state:?}");
    let mut files: Vec<String> = std::fs::read_dir(&state[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, vec!["admin.key", "ca.pem"]);
    let key_mode = std::fs::metadata(state[0].join("admin.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    assert!(std::fs::read_dir(&home).unwrap().next().is_none());
    assert!(std::fs::read_dir(&cwd).unwrap().next().is_none());
    assert_eq!(
        s.var("SIGIL_CACERT"),
        state[0].join("ca.pem").to_str().unwrap()
    );
    // Nothing secret in what the server printed.
    let log = s.log_text();
    assert!(!log.contains("hunter2-unique"));
    assert!(!log.contains("SIGIL-SECRET-KEY"));
    for (_, v) in &s.env {
        assert!(!v.contains("SIGIL-SECRET-KEY"));
    }
}

#[test]
fn admins_can_be_given_as_files_or_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = tmp.path().join("alice.key");
    let public = ok(run(&["key", "generate", "-o", alice.to_str().unwrap()]));
    let pubfile = tmp.path().join("carol.pub");
    let carol = tmp.path().join("carol.key");
    std::fs::write(
        &pubfile,
        ok(run(&["key", "generate", "-o", carol.to_str().unwrap()])),
    )
    .unwrap();
    let dir = tmp.path().join("state");
    let s = Server::start_in(
        tmp,
        &[
            "--admin",
            public.trim(),
            "--admin",
            pubfile.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!dir.join("admin.key").exists());
    assert_eq!(
        ok(s.sigil_as(&alice, &["identity", "list"])),
        "Keys\n----\nadmin\ncarol\n"
    );
    ok(s.sigil_as(&carol, &["kv", "put", "secret/x", "a=1"]));
}

#[test]
fn client_refuses_a_server_with_another_key() {
    let s = Server::start();
    let other = Server::start();
    let out = std::process::Command::new(support::SIGIL)
        .args(["kv", "get", "secret/app"])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SIGIL_SERVER_KEY", other.var("SIGIL_SERVER_KEY"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("server key mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn policy_matrix_through_the_server() {
    let s = Server::start();
    s.write_policy(
        "matrix",
        r#"
path "secret/data/+/shared" { capabilities = ["read"] }
path "secret/data/team/*" { capabilities = ["create", "read", "update"] }
path "secret/data/team/secret*" { capabilities = ["deny"] }
path "secret/data/team/open" { capabilities = ["read"] }
path "secret/metadata/team/*" { capabilities = ["list"] }
"#,
    );
    let bob = s.new_identity("bob", &["matrix"]);
    for path in [
        "secret/x/shared",
        "secret/x/y/shared",
        "secret/team/secret-plans",
        "secret/team/open",
    ] {
        ok(s.sigil(&["kv", "put", path, "v=1"]));
    }
    let allowed = |args: &[&str]| {
        let out = s.sigil_as(&bob, args);
        assert!(
            out.status.success(),
            "{args:?} should be allowed: {}",
            stderr(&out)
        );
    };
    let denied = |args: &[&str]| {
        let out = s.sigil_as(&bob, args);
        assert!(
            stderr(&out).contains("403"),
            "{args:?} should be denied: {}",
            stderr(&out)
        );
    };
    // `+` matches exactly one segment.
    allowed(&["kv", "get", "secret/x/shared"]);
    denied(&["kv", "get", "secret/x/y/shared"]);
    denied(&["kv", "put", "secret/x/shared", "v=2"]);
    // The glob grants create, read, update below team/.
    allowed(&["kv", "put", "secret/team/a", "v=1"]);
    allowed(&["kv", "put", "secret/team/a", "v=2"]);
    allowed(&["kv", "get", "secret/team/a"]);
    // A longer glob wins: deny below team/secret*.
    denied(&["kv", "get", "secret/team/secret-plans"]);
    denied(&["kv", "put", "secret/team/secret-new", "v=1"]);
    // An exact rule beats every pattern: read only.
    allowed(&["kv", "get", "secret/team/open"]);
    denied(&["kv", "put", "secret/team/open", "v=2"]);
    // Priority between `+` and a glob: team/* has its wildcard later than +/shared, so it wins
    // at secret/data/team/shared and grants create.
    allowed(&["kv", "put", "secret/team/shared", "v=1"]);
    // List through the metadata glob; nothing else.
    allowed(&["kv", "list", "secret/team/"]);
    denied(&["kv", "list", "secret/"]);
    denied(&["kv", "delete", "secret/team/a"]);
}

#[test]
fn the_server_locks_its_memory_and_cannot_dump_core() {
    let s = Server::start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmLck line");
    assert!(locked > 0, "no memory locked: {status}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    assert!(
        s.log_text().contains("memory_locked=true"),
        "{}",
        s.log_text()
    );
}

#[test]
fn templated_policies_and_groups() {
    let s = Server::start();
    let bob = s.new_key("bob");
    let policy = s.tmp.path().join("users.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/users/{{identity.name}}/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n\
         path \"secret/data/teams/{{identity.groups.names}}/*\" {\n  capabilities = [\"read\"]\n}\n\
         path \"secret/data/by-team/{{identity.metadata.team}}\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "users", policy.to_str().unwrap()]));
    let alice = s.new_identity("alice", &["users"]);
    ok(s.sigil(&[
        "identity",
        "create",
        "bob",
        "--public-key",
        bob.to_str().unwrap(),
        "--policy",
        "users",
        "--metadata",
        "team=blue",
    ]));
    for path in [
        "secret/users/bob/x",
        "secret/teams/ops/runbook",
        "secret/teams/dev/plan",
        "secret/by-team/blue",
        "secret/by-team/red",
    ] {
        ok(s.sigil(&["kv", "put", path, "v=1"]));
    }
    // Each reads and writes only below their own name.
    ok(s.sigil_as(&alice, &["kv", "put", "secret/users/alice/x", "v=mine"]));
    assert_eq!(
        ok(s.sigil_as(&alice, &["kv", "get", "-field=v", "secret/users/alice/x"])),
        "mine\n"
    );
    for args in [
        &["kv", "get", "secret/users/bob/x"][..],
        &["kv", "put", "secret/users/bob/x", "v=2"],
    ] {
        assert!(
            stderr(&s.sigil_as(&alice, args)).contains("403"),
            "{args:?}"
        );
    }
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/users/alice/x"])).contains("403"));
    // {{identity.metadata.team}}: bob (team=blue) reads by-team/blue only; alice has no team.
    ok(s.sigil_as(&bob, &["kv", "get", "secret/by-team/blue"]));
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/by-team/red"])).contains("403"));
    assert!(stderr(&s.sigil_as(&alice, &["kv", "get", "secret/by-team/blue"])).contains("403"));
    // An unsafe value is not a glob: team="*" grants nothing.
    ok(s.sigil(&[
        "identity",
        "create",
        "bob",
        "--public-key",
        bob.to_str().unwrap(),
        "--metadata",
        "team=*",
    ]));
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/by-team/blue"])).contains("403"));
    // Still holding its policy (the update kept it): the denial above is the template's doing.
    ok(s.sigil_as(&bob, &["kv", "get", "secret/users/bob/x"]));

    // Group membership fills {{identity.groups.names}}; group policies apply to members.
    assert!(
        stderr(&s.sigil_as(&alice, &["kv", "get", "secret/teams/ops/runbook"])).contains("403")
    );
    ok(s.sigil(&["group", "create", "ops", "--member", "alice"]));
    ok(s.sigil_as(&alice, &["kv", "get", "secret/teams/ops/runbook"]));
    assert!(stderr(&s.sigil_as(&alice, &["kv", "get", "secret/teams/dev/plan"])).contains("403"));
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/teams/ops/runbook"])).contains("403"));
    let extra = s.tmp.path().join("extra.hcl");
    std::fs::write(
        &extra,
        "path \"secret/data/shared/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "shared", extra.to_str().unwrap()]));
    ok(s.sigil(&["kv", "put", "secret/shared/doc", "v=1"]));
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/shared/doc"])).contains("403"));
    ok(s.sigil(&[
        "group", "create", "readers", "--member", "bob", "--policy", "shared",
    ]));
    ok(s.sigil_as(&bob, &["kv", "get", "secret/shared/doc"]));
    assert_eq!(
        ok(s.sigil(&["group", "list"])),
        "Keys\n----\nops\nreaders\n"
    );
    ok(s.sigil(&["group", "delete", "readers"]));
    assert!(stderr(&s.sigil_as(&bob, &["kv", "get", "secret/shared/doc"])).contains("403"));
    // Members must exist; a deleted identity leaves its groups, so a new identity with the
    // same name does not inherit them.
    let out = s.sigil(&["group", "create", "ghosts", "--member", "nobody"]);
    assert!(
        stderr(&out).contains("no identity named"),
        "{}",
        stderr(&out)
    );
    ok(s.sigil(&["identity", "delete", "alice"]));
    assert!(!ok(s.sigil(&["group", "read", "ops"])).contains("alice"));
    let alice2 = s.new_key("alice2");
    ok(s.sigil(&[
        "identity",
        "create",
        "alice",
        "--public-key",
        alice2.to_str().unwrap(),
        "--policy",
        "users",
    ]));
    assert!(
        stderr(&s.sigil_as(&alice2, &["kv", "get", "secret/teams/ops/runbook"])).contains("403")
    );

    // An unknown template is refused when the policy is written.
    std::fs::write(
        &extra,
        "path \"secret/data/{{identity.password}}\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    let out = s.sigil(&["policy", "write", "bad", extra.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("unknown template"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn secrets_engines_are_mounted_tuned_listed_and_disabled() {
    let s = Server::start();
    ok(s.sigil(&[
        "secrets",
        "enable",
        "-path=team/kv",
        "-description=team secrets",
        "kv",
    ]));
    ok(s.sigil(&["secrets", "enable", "kv-v2"]));
    let dup = s.sigil(&["secrets", "enable", "-path=team/kv/x", "kv"]);
    assert!(
        stderr(&dup).contains("already in use at team/kv/"),
        "{}",
        stderr(&dup)
    );
    let reserved = s.sigil(&["secrets", "enable", "-path=sys/kv", "kv"]);
    assert!(!reserved.status.success());

    ok(s.sigil(&["kv", "put", "-mount=team/kv", "app", "k=team"]));
    ok(s.sigil(&["kv", "put", "secret/app", "k=default"]));
    ok(s.sigil(&["kv", "put", "kv-v2/app", "k=other"]));
    let field = |args: &[&str]| ok(s.sigil(args)).trim().to_owned();
    assert_eq!(
        field(&["kv", "get", "-mount=team/kv", "-field=k", "app"]),
        "team"
    );
    assert_eq!(field(&["kv", "get", "-field=k", "secret/app"]), "default");
    assert_eq!(field(&["kv", "get", "-field=k", "kv-v2/app"]), "other");

    let table = ok(s.sigil(&["secrets", "list"]));
    let line = table
        .lines()
        .find(|l| l.starts_with("team/kv/"))
        .expect(&table);
    assert!(
        line.contains("kv") && line.contains("team secrets"),
        "{line}"
    );
    assert!(table.lines().any(|l| l.starts_with("sys/")), "{table}");

    ok(s.sigil(&[
        "secrets",
        "tune",
        "-description=tuned",
        "-max-lease-ttl=2h",
        "team/kv",
    ]));
    let mounts: serde_json::Value =
        serde_json::from_str(&ok(s.sigil(&["secrets", "list", "-format=json"]))).unwrap();
    assert_eq!(mounts["team/kv/"]["description"], "tuned");
    assert_eq!(mounts["team/kv/"]["config"]["max_lease_ttl"], 7200);

    // A policy on one mount's paths does not reach another mount with the same secret name.
    s.write_policy(
        "team",
        "path \"team/kv/data/*\" { capabilities = [\"read\"] }\n",
    );
    let reader = s.new_identity("reader", &["team"]);
    let r = reader.to_str().unwrap();
    let as_reader = |args: &[&str]| s.sigil_as(&reader, args);
    assert!(ok(as_reader(&["kv", "get", "-mount=team/kv", "app"])).contains("team"));
    assert!(stderr(&as_reader(&["kv", "get", "-mount=secret", "app"])).contains("403"));
    assert!(
        stderr(&as_reader(&["secrets", "disable", "team/kv"])).contains("403"),
        "{r}"
    );

    ok(s.sigil(&["secrets", "disable", "team/kv"]));
    let gone = s.sigil(&["kv", "get", "-mount=team/kv", "app"]);
    assert!(!gone.status.success());
    assert_eq!(field(&["kv", "get", "-field=k", "secret/app"]), "default");
}
