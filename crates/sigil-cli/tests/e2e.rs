//! End-to-end secrets and one-time wraps (docs/e2e.md) through the real binary: data
//! encrypted on the client to certified recipients, checked signatures, the age tools opening
//! what Sigil wrote, wraps that open once, expire, and show who took them, and plaintext that
//! never reaches the server's storage, audit log or output.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use support::{Server, ok, public_of, stderr, stdout, wrap_id};

const POLICY: &str = r#"
path "private/data/*" { capabilities = ["create", "read", "update"] }
path "private/metadata/*" { capabilities = ["read"] }
path "identity/entity/name/*" { capabilities = ["read"] }
path "identity/group/name/*" { capabilities = ["read"] }
path "sys/wrapping/*" { capabilities = ["update"] }
"#;

fn fails(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected a failure: {}", stdout(out));
    assert!(
        stderr(out).contains(needle),
        "{needle:?} not in: {}",
        stderr(out)
    );
}

/// A transient server with `private/` as an e2e mount and the e2e policy written.
fn server() -> Server {
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "-path=private", "e2e"]));
    s.write_policy("e2e-user", POLICY);
    s
}

#[test]
fn e2e_secrets_are_encrypted_on_the_client_to_certified_recipients() {
    let s = server();
    let trust = format!("--trust={}", public_of(&s.admin_key()));
    let alice = s.new_identity("alice", &["e2e-user"]);
    let bob = s.new_identity("bob", &["e2e-user"]);
    let carol = s.new_identity("carol", &["e2e-user"]);
    ok(s.sigil(&["group", "create", "ops", "--member", "bob"]));

    ok(s.sigil(&[
        "e2e",
        "put",
        "--to",
        "alice",
        "--to",
        "group:ops",
        "private/x",
        "password=hunter2-e2e",
    ]));
    let get = |key: &Path, extra: &[&str]| {
        let mut args = vec!["e2e", "get"];
        args.extend_from_slice(extra);
        args.push("private/x");
        s.sigil_as(key, &args)
    };
    for reader in [&alice, &bob] {
        assert_eq!(
            ok(get(reader, &[&trust, "-field=password"])).trim(),
            "hunter2-e2e"
        );
    }
    let table = ok(get(&alice, &[&trust]));
    assert!(
        table.contains("written_by") && table.contains("a trust anchor"),
        "{table}"
    );
    assert!(table.contains("group:ops/bob"), "{table}");
    // Policy allows carol to fetch it, but it is not encrypted to her key.
    fails(&get(&carol, &[&trust]), "not encrypted to your key");
    // Without the admin among her trust anchors, alice does not accept the writer.
    fails(&get(&alice, &[]), "neither in SIGIL_TRUST");

    // What the server holds and serves is the envelope, never the value.
    let raw = ok(s.sigil(&["read", "-format=json", "private/data/x"]));
    assert!(!raw.contains("hunter2-e2e"));
    let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let envelope = base64::engine::general_purpose::STANDARD
        .decode(stored["data"]["data"]["envelope"].as_str().unwrap())
        .unwrap();
    assert!(envelope.starts_with(b"age-encryption.org/v1\n-> X25519 "));

    // The age tools open it with alice's exported identity.
    let identity = s.tmp.path().join("alice.age");
    let recipient = ok(s.sigil(&[
        "key",
        "export-age",
        alice.to_str().unwrap(),
        "-o",
        identity.to_str().unwrap(),
    ]));
    assert!(recipient.trim().starts_with("age1"), "{recipient}");
    let file = s.tmp.path().join("x.age");
    std::fs::write(&file, &envelope).unwrap();
    let opened = Command::new("age")
        .args([
            "-d",
            "-i",
            identity.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .output()
        .expect("the age tool (Debian package `age`; .ci/run installs it)");
    assert!(opened.status.success(), "{}", stderr(&opened));
    assert_eq!(stdout(&opened), r#"{"password":"hunter2-e2e"}"#);
    // And Sigil opens what the age tool encrypts to alice.
    let by_age = Command::new("age")
        .args(["-r", recipient.trim(), "-o", file.to_str().unwrap()])
        .stdin(std::fs::File::open(s.tmp.path().join("alice.age")).unwrap())
        .output()
        .unwrap();
    assert!(by_age.status.success(), "{}", stderr(&by_age));
    let key_file = std::fs::read_to_string(&alice).unwrap();
    let key = sigil_crypto::SecretIdentity::from_key_file(&key_file).unwrap();
    let plain =
        sigil_crypto::age::decrypt(key.encryption_key(), &std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(&plain[..], std::fs::read(&identity).unwrap());

    // A non-admin writer: bob sees alice as the author, certified by the admin.
    ok(s.sigil_as(
        &alice,
        &[
            "e2e",
            "put",
            &trust,
            "--to",
            "bob",
            "private/from-alice",
            "note=hi",
        ],
    ));
    let from_alice = ok(s.sigil_as(&bob, &["e2e", "get", &trust, "private/from-alice"]));
    assert!(from_alice.contains("alice ("), "{from_alice}");

    // A substituted key: the server now hands out another key for bob, uncertified.
    let mallory = s.new_key("mallory");
    let mallory_public = public_of(&mallory);
    ok(s.sigil(&[
        "write",
        "identity/entity/name/bob",
        &format!("public_key={mallory_public}"),
    ]));
    let put_to_bob = || {
        s.sigil_as(
            &alice,
            &["e2e", "put", &trust, "--to", "bob", "private/y", "k=v"],
        )
    };
    fails(&put_to_bob(), "has no certification");
    // An admin certifies only the key it expects.
    fails(
        &s.sigil(&[
            "identity",
            "certify",
            "bob",
            "--public-key",
            bob.to_str().unwrap(),
        ]),
        "another key on the server",
    );
    ok(s.sigil(&[
        "identity",
        "certify",
        "bob",
        "--public-key",
        &mallory_public,
    ]));
    ok(put_to_bob());

    // A key certified by an admin alice does not trust is refused until she trusts it.
    let admin2 = s.new_identity("admin2", &["admin"]);
    let eve = s.new_key("eve");
    ok(s.sigil_as(
        &admin2,
        &[
            "identity",
            "create",
            "eve",
            "--public-key",
            eve.to_str().unwrap(),
        ],
    ));
    let put_to_eve = |trust: &str| {
        s.sigil_as(
            &alice,
            &["e2e", "put", trust, "--to", "eve", "private/z", "k=v"],
        )
    };
    fails(&put_to_eve(&trust), "not in SIGIL_TRUST");
    ok(put_to_eve(&format!("{trust},{}", public_of(&admin2))));

    // The server checks what it stores: an envelope moved to another path, a plain KV write,
    // PATCH and subkeys are refused.
    let data =
        serde_json::json!({ "data": stored["data"]["data"], "options": { "cas": 0 } }).to_string();
    let copy = Command::new(support::SIGIL)
        .args(["write", "private/data/moved", "-"])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(data.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    fails(&copy, "does not verify for this mount, path and version");
    fails(
        &s.sigil(&["kv", "put", "private/plain", "a=b"]),
        "e2e write",
    );
    fails(&s.sigil(&["kv", "patch", "private/x", "a=b"]), "no PATCH");
    fails(
        &s.sigil(&["read", "private/subkeys/x"]),
        "no PATCH and no subkeys",
    );
    // Versions, listing and metadata work as on KV.
    assert!(ok(s.sigil(&["kv", "list", "private/"])).contains("from-alice"));
    ok(s.sigil(&["kv", "metadata", "get", "private/x"]));
}

#[test]
fn wraps_open_once_for_their_recipient_expire_and_show_who_took_them() {
    let s = server();
    let trust = format!("--trust={}", public_of(&s.admin_key()));
    let bob = s.new_identity("bob", &["e2e-user"]);
    let carol = s.new_identity("carol", &["e2e-user"]);
    let keyid = |key: &Path| -> String {
        let out = ok(s.sigil_as(
            key,
            &[
                "read",
                "-format=json",
                &format!(
                    "identity/entity/name/{}",
                    key.file_stem().unwrap().to_str().unwrap()
                ),
            ],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["data"]["keyid"].as_str().unwrap().to_owned()
    };
    let secret_file = s.tmp.path().join("secret.txt");
    std::fs::write(&secret_file, "wrapped-secret-42\n").unwrap();
    let wrap = |extra: &[&str]| {
        let mut args = vec!["wrap", "--to", "bob"];
        args.extend_from_slice(extra);
        args.push(secret_file.to_str().unwrap());
        wrap_id(&ok(s.sigil(&args)))
    };

    let id = wrap(&[]);
    fails(&s.sigil_as(&carol, &["unwrap", &trust, &id]), "403");
    fails(&s.sigil_as(&carol, &["unwrap", &trust, &id]), "403");
    let first = s.sigil_as(&bob, &["unwrap", &trust, &id]);
    assert_eq!(ok(first.clone()), "wrapped-secret-42\n");
    assert!(
        stderr(&first).contains("a trust anchor; the server calls it \"admin\""),
        "{}",
        stderr(&first)
    );
    fails(
        &s.sigil_as(&bob, &["unwrap", &trust, &id]),
        "already consumed",
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(s.sigil(&["wrap", "status", "-format=json", &id]))).unwrap();
    assert_eq!(status["status"], "consumed");
    assert_eq!(status["consumed_by"], keyid(&bob));
    assert_ne!(status["consumed_at"], serde_json::Value::Null);
    assert_eq!(
        status["refused"][0]["keyid"],
        keyid(&carol),
        "the interception attempts show"
    );
    assert_eq!(status["refused"][0]["count"], 2);
    assert_eq!(status["refused_total"], 2);
    ok(s.sigil_as(&bob, &["wrap", "status", &id]));
    fails(&s.sigil_as(&carol, &["wrap", "status", &id]), "403");

    // Expiry.
    let short = wrap(&["--ttl", "1s"]);
    // Until the server's own status says so (a read; it consumes nothing).
    support::eventually(30, || {
        ok(s.sigil(&["wrap", "status", "-format=json", &short])).contains("\"expired\"")
    });
    fails(&s.sigil_as(&bob, &["unwrap", &trust, &short]), "expired");
    fails(
        &s.sigil(&[
            "wrap",
            "--to",
            "bob",
            "--ttl",
            "31d",
            secret_file.to_str().unwrap(),
        ]),
        "30 days",
    );

    // Response wrapping: the caller gets only a wrap id; bob gets the response. A bad
    // recipient or TTL, or a path whose answers are never wrapped, is refused up front.
    ok(s.sigil(&["kv", "put", "secret/app", "api=resp-wrapped-7"]));
    fails(
        &s.sigil(&["kv", "get", "-wrap-to=nobody", "secret/app"]),
        "no enabled identity",
    );
    fails(
        &s.sigil(&[
            "kv",
            "get",
            "-wrap-to=bob",
            "-wrap-ttl=forever",
            "secret/app",
        ]),
        "ttl",
    );
    fails(
        &s.sigil(&[
            "write",
            "sys/wrapping/lookup?wrap_to=bob",
            &format!("id={id}"),
        ]),
        "cannot be wrapped",
    );
    let wrapped = ok(s.sigil(&["kv", "get", "-wrap-to=bob", "secret/app"]));
    assert!(!wrapped.contains("resp-wrapped-7"), "{wrapped}");
    let resp_id = wrap_id(&wrapped);
    let out = s.sigil_as(&bob, &["unwrap", &resp_id]);
    assert!(ok(out.clone()).contains("resp-wrapped-7"));
    assert!(stderr(&out).contains("the server"), "{}", stderr(&out));
    // Whoever asked for the wrapped response can see who took it.
    let status = ok(s.sigil(&["wrap", "status", "-format=json", &resp_id]));
    assert!(
        status.contains(&keyid(&bob)) && status.contains("\"consumed\""),
        "{status}"
    );

    // Exactly once under concurrency.
    let id = wrap(&[]);
    let results: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| s.sigil_as(&bob, &["unwrap", &trust, &id])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "exactly one parallel unwrap succeeds");
    for o in results.iter().filter(|o| !o.status.success()) {
        assert!(stderr(o).contains("already consumed"), "{}", stderr(o));
    }
}

#[test]
fn plaintext_never_reaches_storage_audit_log_or_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let audit = tmp.path().join("audit.log");
    let mut s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--audit-file",
            audit.to_str().unwrap(),
        ],
        &[("SIGIL_LOG", Path::new("trace"))],
        2,
    );
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    ok(s.sigil(&["secrets", "enable", "-path=private", "e2e"]));
    let bob = s.new_identity("bob", &["admin"]);
    let e2e_plain = "e2e-plaintext-Qx81";
    let wrap_plain = "wrap-plaintext-Zk27";
    ok(s.sigil(&[
        "e2e",
        "put",
        "--to",
        "bob",
        "private/s",
        &format!("v={e2e_plain}"),
    ]));
    let file = s.tmp.path().join("w.txt");
    std::fs::write(&file, wrap_plain).unwrap();
    let id = wrap_id(&ok(s.sigil(&[
        "wrap",
        "--to",
        "bob",
        file.to_str().unwrap(),
    ])));
    let trust = format!("--trust={}", public_of(&admin));
    assert_eq!(ok(s.sigil_as(&bob, &["unwrap", &trust, &id])), wrap_plain);
    assert!(ok(s.sigil_as(&bob, &["e2e", "get", &trust, "private/s"])).contains(e2e_plain));
    let log = s.log_text();
    drop(s);

    let mut haystacks = vec![("server output", log.into_bytes())];
    haystacks.push(("audit log", std::fs::read(&audit).unwrap()));
    let files = support::files_under(&data);
    // The scan must have something to scan: the database itself, not only an empty directory.
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("sigil.redb") && std::fs::metadata(f).is_ok_and(|m| m.len() > 0)),
        "no database in {}: {files:?}",
        data.display()
    );
    for entry in files {
        haystacks.push(("data directory", std::fs::read(&entry).unwrap()));
    }
    for (what, bytes) in &haystacks {
        for plain in [e2e_plain, wrap_plain] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{plain} found in the {what}"
            );
        }
    }
}

/// A wrap's recipient needs no policy to open it, and `sigil unwrap` checks the sender
/// against SIGIL_TRUST *before* it fetches: an untrusted sender leaves the wrap in place.
/// Anyone else without a policy gets 403, whether the wrap exists or not.
#[test]
fn a_recipient_unwraps_without_policy_and_an_untrusted_sender_leaves_the_wrap() {
    let s = server();
    s.write_policy(
        "reader",
        "path \"private/*\" { capabilities = [\"read\"] }\n",
    );
    let alice = s.new_identity("alice", &["e2e-user"]);
    let bob = s.new_identity("bob", &["reader"]);
    let carol = s.new_identity("carol", &[]);
    let secret_file = s.tmp.path().join("secret.txt");
    std::fs::write(&secret_file, "for-bob-only\n").unwrap();
    // Alice trusts the admin, who certified bob's key.
    let admin_trust = format!("--trust={}", public_of(&s.admin_key()));
    let send = || {
        wrap_id(&ok(s.sigil_as(
            &alice,
            &[
                "wrap",
                &admin_trust,
                "--to",
                "bob",
                secret_file.to_str().unwrap(),
            ],
        )))
    };
    let id = send();

    // Alice is not certified and not in bob's SIGIL_TRUST: refused before the fetch.
    let out = s.sigil_as(&bob, &["unwrap", &id]);
    fails(&out, "still there");
    let status = ok(s.sigil_as(&bob, &["wrap", "status", "-format=json", &id]));
    assert!(status.contains("\"pending\""), "{status}");
    // Alice, the sender, may look it up too, without a policy on lookup beyond her own.
    ok(s.sigil_as(&alice, &["wrap", "status", &id]));

    // Carol holds no policy: 403 for a wrap that is not hers, and for one that does not exist.
    fails(&s.sigil_as(&carol, &["unwrap", &id]), "403");
    fails(&s.sigil_as(&carol, &["wrap", "status", &id]), "403");
    fails(
        &s.sigil_as(
            &carol,
            &["wrap", "status", "00000000000000000000000000000000"],
        ),
        "403",
    );

    // With alice's key trusted, bob opens it (no policy on sys/wrapping needed).
    let trust = format!("--trust={}", public_of(&alice));
    let opened = ok(s.sigil_as(&bob, &["unwrap", &trust, &id]));
    assert_eq!(opened, "for-bob-only\n");
    let status = ok(s.sigil_as(&bob, &["wrap", "status", "-format=json", &id]));
    assert!(status.contains("\"consumed\""), "{status}");

    // A wrap fetched by hand (the raw API) opens later with --saved.
    let id = send();
    let raw = ok(s.sigil_as(
        &bob,
        &[
            "write",
            "-format=json",
            "sys/wrapping/unwrap",
            &format!("id={id}"),
        ],
    ));
    let fetched: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let saved = s.tmp.path().join("saved.json");
    std::fs::write(&saved, fetched["data"].to_string()).unwrap();
    fails(
        &s.sigil_as(&bob, &["unwrap", "--saved", saved.to_str().unwrap()]),
        "SIGIL_TRUST",
    );
    let opened = ok(s.sigil_as(
        &bob,
        &["unwrap", &trust, "--saved", saved.to_str().unwrap()],
    ));
    assert_eq!(opened, "for-bob-only\n");
}
