//! Persistence and the seal: init with admin keys, quorum unseal across restarts, refusals that
//! do not count, integrity of the stored bytes, crash safety, keyring rotation. The real binary
//! on real redb files.

mod support;

use std::path::{Path, PathBuf};

use support::raw::Raw;
use support::{Server, ok, run, stderr, stdout};

struct Admins {
    dir: tempfile::TempDir,
    keys: Vec<PathBuf>,
}

fn admins(names: &[&str]) -> Admins {
    let dir = tempfile::tempdir().unwrap();
    let keys = names
        .iter()
        .map(|n| {
            let p = dir.path().join(format!("{n}.key"));
            ok(run(&["key", "generate", "-o", p.to_str().unwrap()]));
            p
        })
        .collect();
    Admins { dir, keys }
}

/// Starts a new server on `data`, initializes it with `admins` and `threshold`, and returns the
/// restarted-aware pieces: the server (sealed) and the pinned server keyid.
fn init(data: &Path, admins: &Admins, threshold: u8) -> (Server, String, String) {
    let s = Server::start_data_dir(data, false);
    let mut args = vec!["operator".to_owned(), "init".to_owned()];
    for k in &admins.keys {
        args.extend(["--admin".to_owned(), k.to_str().unwrap().to_owned()]);
    }
    args.extend(["--threshold".to_owned(), threshold.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.sigil_env(&args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let init_output = format!("{}{}", stdout(&out), stderr(&out));
    let keyid = stdout(&out)
        .trim()
        .strip_prefix("export SIGIL_SERVER_KEY=")
        .expect("init prints the server key")
        .to_owned();
    (s, keyid, init_output)
}

fn unseal(s: &Server, keyid: &str, key: &Path) -> String {
    let out = s.sigil_env(
        &["operator", "unseal"],
        &[
            ("SIGIL_KEY", key.to_str().unwrap()),
            ("SIGIL_SERVER_KEY", keyid),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn as_admin<'a>(s: &Server, keyid: &'a str, key: &'a Path, args: &[&str]) -> std::process::Output {
    s.sigil_env(
        args,
        &[
            ("SIGIL_KEY", key.to_str().unwrap()),
            ("SIGIL_SERVER_KEY", keyid),
        ],
    )
}

fn sealed(s: &Server) -> bool {
    let out = s.sigil_env(&["operator", "status", "-format=json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["sealed"].as_bool().unwrap()
}

#[test]
fn init_restart_and_unseal_with_any_quorum() {
    let a = admins(&["alice", "bob", "carol"]);
    let data = a.dir.path().join("data");
    let (mut s, keyid, _) = init(&data, &a, 2);
    let [alice, bob, carol] = [&a.keys[0], &a.keys[1], &a.keys[2]];
    assert!(sealed(&s));
    // For people: each admin by name and keyid, the threshold once, the unseal key named.
    let table = stdout(&s.sigil_env(&["operator", "status"], &[]));
    for (name, key) in [("alice", alice), ("bob", bob), ("carol", carol)] {
        let public = ok(support::run(&["key", "public", key.to_str().unwrap()]));
        let admin_keyid = sigil_crypto::PublicIdentity::parse(public.trim())
            .unwrap()
            .keyid()
            .as_str()
            .to_owned();
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("Admin {name} ")) && l.ends_with(&admin_keyid)),
            "{table}"
        );
    }
    assert_eq!(table.matches("Threshold").count(), 1, "{table}");
    assert!(table.contains("2 of 3 admins"), "{table}");
    assert!(table.contains("Unseal Public Key"), "{table}");
    let refused = as_admin(&s, &keyid, alice, &["kv", "get", "secret/x"]);
    assert!(stderr(&refused).contains("503"), "{}", stderr(&refused));

    assert_eq!(unseal(&s, &keyid, alice), "Unseal progress: 1/2");
    // The same admin again counts once.
    assert_eq!(unseal(&s, &keyid, alice), "Unseal progress: 1/2");
    assert!(sealed(&s));
    assert_eq!(unseal(&s, &keyid, carol), "Unsealed.");
    ok(as_admin(
        &s,
        &keyid,
        alice,
        &["kv", "put", "secret/app", "password=persisted-1"],
    ));
    ok(as_admin(
        &s,
        &keyid,
        bob,
        &["kv", "put", "secret/app", "password=persisted-2"],
    ));
    assert_eq!(
        ok(as_admin(&s, &keyid, carol, &["identity", "list"])),
        "Keys\n----\nalice\nbob\ncarol\n"
    );

    for order in [[carol, bob], [bob, alice]] {
        s.kill9();
        s = Server::start_data_dir(&data, true);
        assert_eq!(s.var("SIGIL_SERVER_KEY"), keyid);
        assert!(sealed(&s));
        // K − 1 shares: still sealed.
        assert_eq!(unseal(&s, &keyid, order[0]), "Unseal progress: 1/2");
        assert!(sealed(&s));
        let out = as_admin(&s, &keyid, order[0], &["kv", "get", "secret/app"]);
        assert!(stderr(&out).contains("503"));
        assert_eq!(unseal(&s, &keyid, order[1]), "Unsealed.");
        assert_eq!(
            ok(as_admin(
                &s,
                &keyid,
                alice,
                &["kv", "get", "-field=password", "secret/app"]
            )),
            "persisted-2\n"
        );
        assert_eq!(
            ok(as_admin(
                &s,
                &keyid,
                alice,
                &["kv", "get", "-field=password", "-version=1", "secret/app"]
            )),
            "persisted-1\n"
        );
    }

    // Seal again: admin-only, then everything answers 503 until a quorum unseals.
    ok(as_admin(&s, &keyid, bob, &["operator", "seal"]));
    assert!(sealed(&s));
    let out = as_admin(&s, &keyid, bob, &["kv", "get", "secret/app"]);
    assert!(stderr(&out).contains("503"));
}

#[test]
fn threshold_one_gives_each_admin_the_whole_key() {
    let a = admins(&["alice", "bob"]);
    let data = a.dir.path().join("data");
    let (mut s, keyid, _) = init(&data, &a, 1);
    assert_eq!(unseal(&s, &keyid, &a.keys[1]), "Unsealed.");
    ok(as_admin(
        &s,
        &keyid,
        &a.keys[0],
        &["kv", "put", "secret/x", "y=1"],
    ));
    s.kill9();
    let s = Server::start_data_dir(&data, true);
    assert_eq!(unseal(&s, &keyid, &a.keys[0]), "Unsealed.");
    assert_eq!(
        ok(as_admin(
            &s,
            &keyid,
            &a.keys[1],
            &["kv", "get", "-field=y", "secret/x"]
        )),
        "1\n"
    );
}

#[test]
fn init_is_refused_twice_and_with_bad_parameters() {
    let a = admins(&["alice", "bob"]);
    let data = a.dir.path().join("data");
    let s = Server::start_data_dir(&data, false);
    let alice = a.keys[0].to_str().unwrap();
    for (args, needle) in [
        (
            vec!["operator", "init", "--admin", alice, "--threshold", "2"],
            "threshold",
        ),
        (
            vec!["operator", "init", "--admin", alice, "--admin", alice],
            "twice",
        ),
        (
            vec!["operator", "init", "--admin", alice, "--threshold", "0"],
            "threshold",
        ),
    ] {
        let out = s.sigil_env(&args, &[]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    ok(s.sigil_env(&["operator", "init", "--admin", alice], &[]));
    let again = s.sigil_env(
        &["operator", "init", "--admin", a.keys[1].to_str().unwrap()],
        &[],
    );
    assert!(
        stderr(&again).contains("already initialized"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn bad_unseal_submissions_are_refused_and_not_counted() {
    let a = admins(&["alice", "bob", "carol", "mallory"]);
    let data = a.dir.path().join("data");
    let admins3 = Admins {
        dir: tempfile::tempdir().unwrap(),
        keys: a.keys[..3].to_vec(),
    };
    let (s, _keyid, _) = init(&data, &admins3, 2);
    let alice = Raw::new(&s, &a.keys[0]).await;
    let mallory = Raw::new(&s, &a.keys[3]).await;
    let progress = |v: &serde_json::Value| v["progress"].as_u64().unwrap();

    // A non-admin can neither fetch a share nor submit one.
    assert_eq!(
        mallory
            .send(&mallory.signed("GET", "/v1/sys/unseal/share", None))
            .await
            .status,
        401
    );
    let status = mallory.seal_status().await;
    let forged = mallory.unseal_request(
        &[1u8; 33],
        status["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    assert_eq!(mallory.send(&forged).await.status, 401);
    assert_eq!(progress(&alice.seal_status().await), 0);

    // A submission for the attempt of an earlier boot (a real one) does not open.
    let share = alice.my_share().await;
    let before = alice.seal_status().await;
    let stale = alice.unseal_request(
        &share,
        before["unseal_key"].as_str().unwrap(),
        before["attempt"].as_str().unwrap(),
    );
    let mut s = s;
    s.kill9();
    let s = Server::start_data_dir(&data, true);
    let alice = Raw::new(&s, &a.keys[0]).await;
    let bob = Raw::new(&s, &a.keys[1]).await;
    // Signed afresh for the restarted server (its port changed); the body is the old one.
    let t = support::raw::now();
    let stale = alice.sign_raw(
        "POST",
        "/v1/sys/unseal",
        Some(stale.body),
        sigil_crypto::random::nonce().unwrap(),
        t,
        t + 60,
    );
    let r = alice.send(&stale).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.error_text().contains("another attempt"),
        "{}",
        r.error_text()
    );
    // The current attempt nonce under the old boot's unseal key does not open either.
    let status = alice.seal_status().await;
    assert_ne!(status["attempt"], before["attempt"]);
    let old_key = alice.unseal_request(
        &share,
        before["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    assert_eq!(alice.send(&old_key).await.status, 400);
    assert_eq!(progress(&alice.seal_status().await), 0);

    // A corrupted share is refused before it counts.
    let mut corrupted = share.clone();
    corrupted[5] ^= 0x01;
    let bad = alice.unseal_request(
        &corrupted,
        status["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    let r = alice.send(&bad).await;
    assert_eq!(r.status, 400);
    assert!(r.error_text().contains("not counted"), "{}", r.error_text());
    // Bob's share submitted under Alice's key is not Alice's share.
    let bobs = bob.my_share().await;
    let wrong = alice.unseal_request(
        &bobs,
        status["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    assert_eq!(alice.send(&wrong).await.status, 400);
    assert_eq!(progress(&alice.seal_status().await), 0);

    // A good submission counts; replaying it byte for byte is refused.
    let good = alice.unseal_request(
        &share,
        status["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    let r = alice.send(&good).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(progress(&r.json()), 1);
    assert_eq!(alice.send(&good).await.status, 401);
    // A tampered signature is refused.
    let mut tampered = alice.unseal_request(
        &share,
        status["unseal_key"].as_str().unwrap(),
        status["attempt"].as_str().unwrap(),
    );
    tampered.target = "/v1/sys/unseal?x=1".into();
    assert_eq!(alice.send(&tampered).await.status, 401);
    assert_eq!(progress(&alice.seal_status().await), 1);

    // Bob completes the quorum.
    let r = bob.unseal().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sealed"], false);
}

#[tokio::test]
async fn no_share_root_key_or_secret_in_output_or_on_disk() {
    let a = admins(&["alice", "bob"]);
    let data = a.dir.path().join("data");
    let trace = PathBuf::from("trace");
    let s = Server::start_data_dir_with(&data, false, &[("SIGIL_LOG", &trace)]);
    // Init by hand, keeping the raw HTTP response bytes.
    let raw = Raw::new(&s, &a.keys[0]).await;
    let publics: Vec<String> = a
        .keys
        .iter()
        .map(|k| {
            stdout(&run(&["key", "public", k.to_str().unwrap()]))
                .trim()
                .to_owned()
        })
        .collect();
    let mut req = raw.unsigned("POST", "/v1/sys/init");
    req.headers
        .push(("Content-Type".into(), "application/json".into()));
    req.body =
        serde_json::to_vec(&serde_json::json!({ "admins": publics, "threshold": 2 })).unwrap();
    let resp = raw.send(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let keyid = resp.json()["keyid"].as_str().unwrap().to_owned();
    let init_output = String::from_utf8_lossy(&resp.body).into_owned();
    let alice = Raw::new(&s, &a.keys[0]).await;
    let bob = Raw::new(&s, &a.keys[1]).await;
    let shares = [alice.my_share().await, bob.my_share().await];
    let root = sigil_crypto::shamir::combine(&[&shares[0], &shares[1]]).unwrap();
    assert_eq!(root.len(), 32);
    assert_eq!(alice.unseal().await.status, 200);
    assert_eq!(bob.unseal().await.json()["sealed"], false);
    let secret = "plaintext-secret-4711-never-on-disk";
    ok(as_admin(
        &s,
        &keyid,
        &a.keys[0],
        &["kv", "put", "secret/app", &format!("v={secret}")],
    ));
    assert_eq!(
        ok(as_admin(
            &s,
            &keyid,
            &a.keys[0],
            &["kv", "get", "-field=v", "secret/app"]
        )),
        format!("{secret}\n")
    );

    let mut needles: Vec<(String, Vec<u8>)> = vec![("secret".into(), secret.as_bytes().to_vec())];
    for (name, bytes) in [
        ("share 0", &shares[0][..]),
        ("share 1", &shares[1][..]),
        ("root key", &root[..]),
    ] {
        needles.push((format!("{name} (raw)"), bytes[bytes.len() - 24..].to_vec()));
        needles.push((
            format!("{name} (base64url)"),
            sigil_crypto::b64url_encode(bytes).into_bytes(),
        ));
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        needles.push((format!("{name} (hex)"), hex.into_bytes()));
    }
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("init output".into(), init_output.into_bytes()),
        ("server log".into(), s.log_text().into_bytes()),
    ];
    for entry in support::files_under(&data) {
        haystacks.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    assert!(
        haystacks.len() >= 5,
        "{:?}",
        haystacks.iter().map(|h| &h.0).collect::<Vec<_>>()
    );
    for (hname, hay) in &haystacks {
        for (nname, needle) in &needles {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{nname} found in {hname}"
            );
        }
    }
}

#[test]
fn a_configuration_file_runs_the_server_and_a_bad_one_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sigil.toml");
    let data = tmp.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n\n[listener]\naddress = \"127.0.0.1:0\"\nnames = [\"sigil.test\"]\n",
            data.display()
        ),
    )
    .unwrap();
    let s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    assert!(data.join("sigil.redb").exists());
    assert!(data.join("tls/ca.pem").exists());
    let key = tmp.path().join("a.key");
    ok(run(&["key", "generate", "-o", key.to_str().unwrap()]));
    ok(s.sigil_env(&["operator", "init", "--admin", key.to_str().unwrap()], &[]));
    drop(s);

    std::fs::write(
        &config,
        "[storage]\ntype = \"file\"\npath = \"/tmp/x\"\nport = 8200\n",
    )
    .unwrap();
    let out = run(&["server", "-c", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sigil.toml") && err.contains("line 4") && err.contains("port"),
        "{err}"
    );
}

fn digest_of(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .expect("a digest line")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn rekey_changes_admins_and_threshold_and_old_shares_stop_working() {
    let a = admins(&["alice", "bob", "carol", "dave", "mallory"]);
    let [alice, bob, carol, dave, mallory] =
        [&a.keys[0], &a.keys[1], &a.keys[2], &a.keys[3], &a.keys[4]];
    let data = a.dir.path().join("data");
    let first = Admins {
        dir: tempfile::tempdir().unwrap(),
        keys: a.keys[..3].to_vec(),
    };
    let (mut s, keyid, _) = init(&data, &first, 2);
    let old_shares = [
        Raw::new(&s, alice).await.my_share().await,
        Raw::new(&s, bob).await.my_share().await,
    ];
    let old_root = sigil_crypto::shamir::combine(&[&old_shares[0], &old_shares[1]]).unwrap();
    unseal(&s, &keyid, alice);
    unseal(&s, &keyid, bob);
    ok(as_admin(
        &s,
        &keyid,
        alice,
        &["kv", "put", "secret/app", "v=before-rekey"],
    ));

    // A proposal that expires cannot be approved.
    let short = ok(as_admin(
        &s,
        &keyid,
        alice,
        &[
            "operator",
            "rekey",
            "init",
            "--admin",
            alice.to_str().unwrap(),
            "--ttl",
            "1",
        ],
    ));
    // Until the deadline the server printed has passed (by the wall clock it keeps too).
    // The deadline is printed as an RFC 3339 time.
    let deadline: i64 = short
        .lines()
        .find_map(|l| l.split("open until ").nth(1))
        .and_then(|rest| {
            time::OffsetDateTime::parse(
                rest.trim_end_matches(['(', ')', ':', ' ']),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        })
        .map(time::OffsetDateTime::unix_timestamp)
        .unwrap_or_else(|| panic!("no RFC 3339 deadline in: {short}"));
    support::eventually(30, || support::raw::now() > deadline);
    let out = as_admin(
        &s,
        &keyid,
        bob,
        &[
            "operator",
            "rekey",
            "approve",
            // `-digest=D`, as the CLI prints it: a base64url digest may start with `-`.
            &format!("-digest={}", digest_of(&short)),
        ],
    );
    assert!(
        stderr(&out).contains("no rekey") || stderr(&out).contains("expired"),
        "{}",
        stderr(&out)
    );

    let proposal = ok(as_admin(
        &s,
        &keyid,
        alice,
        &[
            "operator",
            "rekey",
            "init",
            "--admin",
            alice.to_str().unwrap(),
            "--admin",
            dave.to_str().unwrap(),
            "--threshold",
            "2",
        ],
    ));
    let digest = digest_of(&proposal);
    assert!(proposal.contains("Approvals: 0/2"), "{proposal}");
    // Refused, and not counted: a wrong digest, a stranger, a proposed-but-not-current admin.
    let out = as_admin(
        &s,
        &keyid,
        bob,
        &["operator", "rekey", "approve", "-digest=AAAA"],
    );
    assert!(
        stderr(&out).contains("digest does not match"),
        "{}",
        stderr(&out)
    );
    for who in [mallory, dave] {
        let out = as_admin(
            &s,
            &keyid,
            who,
            &["operator", "rekey", "approve", &format!("-digest={digest}")],
        );
        assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    }
    let out = ok(as_admin(
        &s,
        &keyid,
        alice,
        &["operator", "rekey", "approve", &format!("-digest={digest}")],
    ));
    assert!(out.contains("Approvals: 1/2"), "{out}");
    let out = ok(as_admin(
        &s,
        &keyid,
        alice,
        &["operator", "rekey", "approve", &format!("-digest={digest}")],
    ));
    assert!(
        out.contains("Approvals: 1/2"),
        "one admin counts once: {out}"
    );
    let out = ok(as_admin(
        &s,
        &keyid,
        carol,
        &["operator", "rekey", "approve", &format!("-digest={digest}")],
    ));
    assert!(out.contains("Rekeyed: 2 admin(s), threshold 2"), "{out}");
    assert!(ok(as_admin(&s, &keyid, alice, &["identity", "list"])).contains("dave"));

    s.kill9();
    s = Server::start_data_dir(&data, true);
    let status: serde_json::Value = serde_json::from_slice(
        &s.sigil_env(&["operator", "status", "-format=json"], &[])
            .stdout,
    )
    .unwrap();
    assert_eq!(status["threshold"], 2);
    assert_eq!(status["admins"].as_array().unwrap().len(), 2);
    // Bob is no longer an admin; Alice's old share is refused and not counted.
    let bob_raw = Raw::new(&s, bob).await;
    assert_eq!(
        bob_raw
            .send(&bob_raw.signed("GET", "/v1/sys/unseal/share", None))
            .await
            .status,
        401
    );
    // The CLI says why (issue 20, point 8), and names the admins it has now.
    let out = as_admin(&s, &keyid, bob, &["operator", "unseal"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not one of the server's admins")
            && stderr(&out).contains("a rekey may have removed it"),
        "{}",
        stderr(&out)
    );
    let alice_raw = Raw::new(&s, alice).await;
    let st = alice_raw.seal_status().await;
    let old = alice_raw.unseal_request(
        &old_shares[0],
        st["unseal_key"].as_str().unwrap(),
        st["attempt"].as_str().unwrap(),
    );
    assert_eq!(alice_raw.send(&old).await.status, 400);
    assert_eq!(alice_raw.seal_status().await["progress"], 0);
    let dave_raw = Raw::new(&s, dave).await;
    let new_root =
        sigil_crypto::shamir::combine(&[&alice_raw.my_share().await, &dave_raw.my_share().await])
            .unwrap();
    assert_ne!(&new_root[..], &old_root[..]);
    assert_eq!(unseal(&s, &keyid, alice), "Unseal progress: 1/2");
    assert_eq!(unseal(&s, &keyid, dave), "Unsealed.");
    assert_eq!(
        ok(as_admin(
            &s,
            &keyid,
            dave,
            &["kv", "get", "-field=v", "secret/app"]
        )),
        "before-rekey\n"
    );

    // On disk: the old root key opens nothing; the new one opens the keyring.
    s.kill9();
    let backend = sigil_storage::FileBackend::open(&data.join("sigil.redb")).unwrap();
    use sigil_storage::Backend as _;
    let keyring = backend.get("core/keyring").unwrap().unwrap();
    let key = |bytes: &[u8]| {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        k.copy_from_slice(bytes);
        sigil_crypto::BarrierKey::from_secret(sigil_crypto::KeyTerm(0), k)
    };
    assert!(key(&old_root).open(b"core/keyring", &keyring).is_err());
    assert!(key(&new_root).open(b"core/keyring", &keyring).is_ok());
}
