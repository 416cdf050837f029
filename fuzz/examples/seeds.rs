//! Writes the generated seeds of `fuzz/seeds/<target>/` with Sigil's own code, and checks that
//! each is the valid input it claims to be (`docs/security/fuzzing.md`).
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds            # into fuzz/seeds
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- DIR
//! ```
//!
//! Signatures, envelopes and the channel grant use fresh randomness, so every run writes
//! different bytes; commit a run's output only when a seed has to change. When
//! `keys/channel-grant.json` does not open, a new one is written there (build again after).
//! Seeds taken from the `sigil` binary (the key file, the audit log) are not written here.

use std::path::{Path, PathBuf};

use sigil_crypto::{SealInfo, age};
use sigil_fuzz::{NONCE, NOW, TARGET_URI, client, other, publics, server};
use sigil_proto::{body, signature};
use sigil_storage::{Backend as _, Batch, FileBackend};

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn with_flag(flag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(bytes);
    out
}

fn signature_seeds(root: &Path) {
    let t = "signature";
    let get = signature::sign(
        client(),
        "GET",
        TARGET_URI,
        None,
        (NOW, NOW + 60),
        NONCE.into(),
    );
    let text = format!(
        "{}\n{}\n\nGET\n{TARGET_URI}\n",
        get.signature_input, get.signature
    );
    check_signature(&text, true);
    write(root, t, "get-no-body", text.as_bytes());

    let sealed = body::seal(
        client().encryption_key(),
        publics()[0].encryption_key(),
        SealInfo::Request,
        NONCE,
        br#"{"data":{"password":"s3cr3t"}}"#,
    )
    .expect("seal");
    let post = signature::sign(
        client(),
        "POST",
        TARGET_URI,
        Some(&sealed),
        (NOW, NOW + 60),
        NONCE.into(),
    );
    let digest = post.content_digest.clone().expect("a body has a digest");
    let mut text = format!(
        "{}\n{}\n{digest}\nPOST\n{TARGET_URI}\n",
        post.signature_input, post.signature
    )
    .into_bytes();
    text.extend_from_slice(&sealed);
    let text = String::from_utf8(text).expect("JSON envelopes are UTF-8");
    check_signature(&text, true);
    write(root, t, "post-with-digest", text.as_bytes());

    // The profile's other algorithm: parses, refused by verify.
    let ecdsa = format!(
        "{}\n{}\n\nDELETE\n{TARGET_URI}\n",
        get.signature_input
            .replace("alg=\"ed25519\"", "alg=\"ecdsa-p256-sha256\""),
        get.signature
    );
    check_signature(&ecdsa, false);
    write(root, t, "ecdsa-alg", ecdsa.as_bytes());
}

fn check_signature(text: &str, verifies: bool) {
    let [input, sig, digest, method, uri, body] = sigil_fuzz::fields::<6>(text);
    let digest = (!digest.is_empty()).then_some(digest);
    if let Some(d) = digest {
        signature::check_content_digest(d, body.as_bytes()).expect("digest matches");
    }
    let parsed = signature::parse(input, sig).expect("seed parses");
    parsed.check_time(NOW).expect("seed is fresh at NOW");
    assert_eq!(
        parsed.verify(&publics()[1], method, uri, digest).is_ok(),
        verifies
    );
}

fn sealed_body_seeds(root: &Path) {
    let t = "sealed_body";
    let [server_pub, client_pub, _] = publics();
    let request = body::seal(
        client().encryption_key(),
        server_pub.encryption_key(),
        SealInfo::Request,
        NONCE,
        br#"{"data":{"password":"s3cr3t","user":"app"}}"#,
    )
    .expect("seal");
    sigil_crypto::open_from(
        server().encryption_key(),
        client_pub.encryption_key(),
        SealInfo::Request,
        NONCE.as_bytes(),
        &match body::parse(&request).expect("parses") {
            body::Sealed::Hpke(e) => e,
            _ => unreachable!("an HPKE envelope"),
        },
    )
    .expect("the request opens");
    write(root, t, "hpke-request", &request);

    let response = body::seal(
        server().encryption_key(),
        client_pub.encryption_key(),
        SealInfo::Response,
        NONCE,
        br#"{"request_id":"r1","data":{"keys":["app"]}}"#,
    )
    .expect("seal");
    body::open(
        client().encryption_key(),
        server_pub.encryption_key(),
        SealInfo::Response,
        NONCE,
        &response,
    )
    .expect("the response opens");
    write(root, t, "hpke-response", &response);

    let keys = sigil_fuzz::channel_keys_from(sigil_fuzz::CHANNEL_GRANT_ENVELOPE)
        .expect("keys/channel-grant.json opens (run this example once more after a rebuild)");
    for (name, key) in [
        ("channel-request", &keys.request),
        ("channel-response", &keys.response),
    ] {
        let channel =
            body::seal_channel(key, "c7f3a9", NONCE, br#"{"data":{"x":1}}"#).expect("seal");
        match body::parse(&channel).expect("parses") {
            body::Sealed::Channel { nonce, ct, .. } => {
                body::open_channel(key, NONCE, &nonce, &ct).expect("the channel body opens");
            }
            _ => unreachable!("a channel envelope"),
        }
        write(root, t, name, &channel);
    }

    let share =
        sigil_crypto::seal_base_to(client_pub.encryption_key(), SealInfo::Share, b"", b"share")
            .expect("seal");
    write(root, t, "base-share", &body::hpke_json(&share));
    write(root, t, "short-fields", br#"{"enc":"AA","ct":"AA"}"#);
}

/// A fresh channel grant, when the committed one does not open (new keys).
fn ensure_channel_grant() {
    if sigil_fuzz::channel_keys_from(sigil_fuzz::CHANNEL_GRANT_ENVELOPE).is_some() {
        return;
    }
    let (envelope, _) = sigil_crypto::seal_to_exporting(
        server().encryption_key(),
        publics()[1].encryption_key(),
        SealInfo::Response,
        NONCE.as_bytes(),
        br#"{"data":{}}"#,
    )
    .expect("seal");
    let json = body::hpke_json(&envelope);
    assert!(sigil_fuzz::channel_keys_from(std::str::from_utf8(&json).unwrap()).is_some());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys/channel-grant.json");
    std::fs::write(&path, [&json[..], b"\n"].concat()).expect("write the channel grant");
    eprintln!(
        "wrote a new {}: build again, then run this example again",
        path.display()
    );
    std::process::exit(2);
}

fn identity_seeds(root: &Path) {
    let t = "identity";
    let [server_pub, client_pub, _] = publics();
    write(
        root,
        t,
        "public-identity",
        server_pub.to_string().as_bytes(),
    );
    write(
        root,
        t,
        "public-identity-upper",
        client_pub.to_string().to_uppercase().as_bytes(),
    );
    write(root, t, "keyid", client_pub.keyid().as_str().as_bytes());
    write(
        root,
        t,
        "age-recipient",
        age::recipient_string(client_pub.encryption_key()).as_bytes(),
    );
}

fn policy_seeds(root: &Path) {
    let t = "policy";
    let seeds: [(&str, &str); 6] = [
        ("admin", sigil_core::policy::ADMIN_POLICY_HCL),
        (
            "team",
            "path \"secret/data/team/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n",
        ),
        (
            "globs-and-deny",
            "# docs/concepts.md\npath \"secret/data/team/*\"   { capabilities = [\"create\", \"read\", \"update\"] }\npath \"secret/data/+/config\" { capabilities = [\"read\"] }\npath \"secret/data/team/ops\" { capabilities = [\"deny\"] }\npath \"secret/metadata/\" { capabilities = [\"list\"] }\n",
        ),
        (
            "templated",
            "path \"secret/data/users/{{identity.name}}/*\" { capabilities = [\"create\", \"read\", \"update\"] }\npath \"secret/data/groups/{{identity.groups.names}}/*\" { capabilities = [\"read\"] }\npath \"kv/{{identity.entity.metadata.team}}/+\" {\n  capabilities = [\"read\", \"list\", \"sudo\"]\n}\n",
        ),
        (
            "json",
            "{\"path\": {\"secret/data/*\": {\"capabilities\": [\"read\", \"list\"]},\n  \"secret/data/x\": [{\"policy\": \"deny\"}]},\n \"path\": [{\"a/+/b\": {\"capabilities\": [\"update\"]}}]}\n",
        ),
        (
            "hcl1-one-line",
            "path \"secret/*\" { policy = \"read\" capabilities = [\"update\",] }, /* c */ path = { \"sys/\\u0061\" = { capabilities = [\"sudo\"] } }\n",
        ),
    ];
    for (name, text) in seeds {
        sigil_core::policy::parse_policy(name, text).expect("seed policy parses");
        write(root, t, name, text.as_bytes());
    }
}

/// An age seed: its file name, its recipients and its plaintext.
struct AgeCase {
    name: &'static str,
    recipients: Vec<[u8; 32]>,
    plaintext: &'static [u8],
    /// Whether the client, then the other identity, can open it.
    opens: (bool, bool),
}

fn age_seeds(root: &Path) {
    let t = "age_envelope";
    let [server_pub, client_pub, other_pub] = publics();
    let (s, c, o) = (
        *server_pub.encryption_key(),
        *client_pub.encryption_key(),
        *other_pub.encryption_key(),
    );
    let cases = [
        AgeCase {
            name: "one-recipient",
            recipients: vec![c],
            plaintext: b"s3cr3t",
            opens: (true, false),
        },
        AgeCase {
            name: "three-recipients",
            recipients: vec![o, c, s],
            plaintext: br#"{"password":"hunter2"}"#,
            opens: (true, true),
        },
        AgeCase {
            name: "empty-plaintext",
            recipients: vec![c],
            plaintext: b"",
            opens: (true, false),
        },
        AgeCase {
            name: "not-for-us",
            recipients: vec![o],
            plaintext: b"x",
            opens: (false, true),
        },
    ];
    for case in cases {
        let file = age::encrypt(&case.recipients, case.plaintext).expect("encrypt");
        let opens = (
            age::decrypt(client().encryption_key(), &file).is_ok(),
            age::decrypt(other().encryption_key(), &file).is_ok(),
        );
        assert_eq!(opens, case.opens, "{}", case.name);
        write(root, t, case.name, &file);
    }
}

fn audit_seeds(root: &Path) {
    let t = "audit_verify";
    let server_key = publics()[0].to_string();
    let keyid = publics()[1].keyid();
    let request = format!(
        r#"{{"seq":1,"prev":"@PREV@","type":"request","time":"2027-01-15T08:00:00Z","request_id":"r1","remote_address":"127.0.0.1:50624","identity":{{"keyid":"{keyid}","name":"client"}},"operation":"create","path":"secret/data/app","auth":"signature","data":{{"data":{{"password":"hmac-sha256:6689"}}}}}}"#
    );
    let response = r#"{"seq":2,"prev":"@PREV@","type":"response","time":"2027-01-15T08:00:00Z","request_id":"r1","operation":"create","path":"secret/data/app","auth":"signature","status":200}"#;
    let checkpoint = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"prev":"@PREV@","type":"checkpoint","time":"2027-01-15T08:00:01Z","server_key":"{server_key}","signature":"@SIG@"}}"#
        )
    };
    let signed = format!("{request}\n{response}\n{}\n", checkpoint(3));
    let log = sigil_fuzz::seal_audit_template(&signed);
    let summary = sigil_core::audit::verify(&log, Some(&server_key), false)
        .expect("the sealed template verifies");
    assert_eq!((summary.lines, summary.checkpoints), (3, 1));
    // Template mode, the fixed server's sigil1 string expected.
    write(
        root,
        t,
        "template-signed",
        &with_flag(0x08 | 0x04, signed.as_bytes()),
    );
    // The same log sealed: raw mode, the fixed server's keyid expected.
    write(root, t, "sealed-signed", &with_flag(0x02, log.as_bytes()));
    // An unsigned tail after the checkpoint, continued from an earlier log.
    let tail = format!(
        "{}\n{}\n{}\n",
        checkpoint(7),
        request.replace("\"seq\":1", "\"seq\":8"),
        response.replace("\"seq\":2", "\"seq\":9")
    );
    let sealed_tail = sigil_fuzz::seal_audit_template(&tail);
    let summary = sigil_core::audit::verify(&sealed_tail, None, true).expect("verifies");
    assert_eq!(summary.unsigned_tail, 2);
    write(
        root,
        t,
        "template-continued",
        &with_flag(0x08 | 0x01, tail.as_bytes()),
    );
}

fn wal_seeds(root: &Path) {
    let t = "wal_replay";
    // Real log bytes, written by the file backend itself: a fresh database's first log is of
    // epoch 1 (`sigil_fuzz::WAL_EPOCH`), and it is read before a checkpoint empties it.
    let dir = std::env::temp_dir().join(format!("sigil-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let db = dir.join("db");
    let real = {
        let backend = FileBackend::open(&db).expect("open");
        backend
            .put("core/seal-config", br#"{"shares":1}"#)
            .expect("put");
        backend
            .apply(
                Batch::new()
                    .put("logical/kv/app".to_owned(), vec![0xa5; 40])
                    .delete("logical/kv/old".to_owned()),
            )
            .expect("apply");
        std::fs::read(dir.join(format!("db.wal.{}", sigil_fuzz::WAL_EPOCH))).expect("read the log")
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!real.is_empty(), "the log holds the writes");
    write(root, t, "real-log", &with_flag(0, &real));
    write(
        root,
        t,
        "real-log-torn",
        &with_flag(0, &real[..real.len() - 3]),
    );

    let chunk = |ctl: u8, payload: &[u8]| {
        let mut c = vec![ctl];
        c.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        c.extend_from_slice(payload);
        c
    };
    let a = sigil_fuzz::wal_payload(&[("a", Some(b"1")), ("b", None)]);
    let b = sigil_fuzz::wal_payload(&[("c", Some(b"")), ("a", Some(b"2"))]);
    write(
        root,
        t,
        "framed",
        &[&[1u8][..], &chunk(0, &a), &chunk(0, &b)].concat(),
    );
    write(
        root,
        t,
        "framed-two-logs",
        &[&[1u8][..], &chunk(1, &a), &chunk(0, &b)].concat(),
    );
}

fn canonical_path_seeds(root: &Path) {
    let t = "canonical_path";
    // The first byte chooses the operation: 0 read, 1 list, 2 create, 3 update, 4 patch,
    // 5 delete.
    for (name, op, raw) in [
        ("kv-read", 0u8, "secret/data/app"),
        ("kv-list", 1, "secret/metadata/"),
        ("percent-encoded", 3, "secret/data/a%20b/%C3%A9"),
        ("trailing-slash-delete", 5, "sys/mounts/secret/"),
        ("pki", 0, "pki/issuer/default/json"),
    ] {
        sigil_core::canonical_path(
            raw,
            [
                sigil_core::Operation::Read,
                sigil_core::Operation::List,
                sigil_core::Operation::Create,
                sigil_core::Operation::Update,
                sigil_core::Operation::Patch,
                sigil_core::Operation::Delete,
            ][usize::from(op)],
        )
        .expect("seed path is accepted");
        write(root, t, name, &with_flag(op, raw.as_bytes()));
    }
}

fn headers_seeds(root: &Path) {
    let t = "headers";
    for (name, text) in [
        ("authority-name", "sigil.example:8200"),
        ("authority-default-port", "Sigil.Example"),
        ("authority-ipv6", "[::1]:8200"),
        ("channel-grant", "AbC_12-x; ttl=3600"),
        (
            "channel-expired",
            "expired; sig=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f",
        ),
    ] {
        write(root, t, name, text.as_bytes());
    }
}

fn e2e_documents_seeds(root: &Path) {
    use sigil_proto::e2e::{Certification, E2eSlot, SealedSecret, WrapRequest};
    let t = "e2e_documents";
    // The first byte chooses the document: 0 certification, 1 secret version, 2 wrap request.
    let cert = Certification::sign(other(), "fuzz", &client().public());
    let json = |v: &dyn erased::Json| v.json();
    write(root, t, "certification", &with_flag(0, &json(&cert)));
    let slot = E2eSlot {
        mount: "private",
        path: "fuzz",
        version: 1,
    };
    let envelope =
        age::encrypt(&[*client().public().encryption_key()], b"fuzz").expect("age encrypts");
    let secret = SealedSecret::new(other(), slot, &envelope, vec!["fuzz".into()]);
    secret.verify(slot).expect("the seed secret verifies");
    write(root, t, "secret", &with_flag(1, &json(&secret)));
    let wrap = WrapRequest {
        id: "00112233445566778899aabbccddeeff".into(),
        to: client().public().keyid().as_str().to_owned(),
        envelope: "YWdl".into(),
        signature: "AAAA".into(),
        ttl: Some(serde_json::json!("5m")),
    };
    write(root, t, "wrap", &with_flag(2, &json(&wrap)));
}

/// Serialises the seed documents without naming each type.
mod erased {
    pub(super) trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec_pretty(self).expect("a seed document prints")
        }
    }
}

fn snapshot_seeds(root: &Path) {
    let t = "snapshot";
    let entries = vec![
        ("core/keyring".to_owned(), vec![1, 2, 3, 4]),
        ("core/seal-config".to_owned(), br#"{"threshold":1}"#.to_vec()),
        ("logical/kv/secret/data/app".to_owned(), vec![0; 48]),
    ];
    let file = sigil_core::snapshot::encode(&entries, "file", 2, "2027-01-15T08:00:00Z".into(), server());
    let pinned = publics()[0].keyid().to_string();
    let read = sigil_core::snapshot::decode(&file, Some(&pinned)).expect("the seed snapshot reads back");
    assert_eq!(read.entries, entries);
    // Raw mode: the whole file.
    write(root, t, "whole-file", &with_flag(0, &file));
    // Template mode: the entries alone, three announced.
    let body_start = file.len() - read.header.body_bytes as usize;
    write(root, t, "entries", &with_flag(1 | (3 << 1), &file[body_start..]));
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    ensure_channel_grant();
    signature_seeds(&root);
    sealed_body_seeds(&root);
    identity_seeds(&root);
    policy_seeds(&root);
    age_seeds(&root);
    audit_seeds(&root);
    wal_seeds(&root);
    canonical_path_seeds(&root);
    headers_seeds(&root);
    e2e_documents_seeds(&root);
    snapshot_seeds(&root);
    println!("seeds written to {}", root.display());
}
