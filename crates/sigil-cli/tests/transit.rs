//! Transit through the real binary, the way a Vault user drives it (`sigil write` on Vault's
//! paths), with its signatures verified by Python's `cryptography` (independent of aws-lc-rs).

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use support::{Server, ok, python, stderr, stdout};

/// A field of `sigil write`'s `Key  Value` table.
fn field(table: &str, name: &str) -> String {
    table
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next().unwrap_or("").to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{table}"))
}

#[test]
fn transit_encrypts_signs_and_its_signatures_verify_elsewhere() {
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "transit"]));
    ok(s.sigil(&["write", "transit/keys/app", "type=aes256-gcm96"]));
    let plain = B64.encode(b"card 4111-1111");
    let enc = ok(s.sigil(&[
        "write",
        "transit/encrypt/app",
        &format!("plaintext={plain}"),
    ]));
    let ciphertext = field(&enc, "ciphertext");
    assert!(ciphertext.starts_with("sigil:v1:"), "{enc}");
    ok(s.sigil(&["write", "-f", "transit/keys/app/rotate"]));
    let dec = ok(s.sigil(&[
        "write",
        "transit/decrypt/app",
        &format!("ciphertext={ciphertext}"),
    ]));
    assert_eq!(field(&dec, "plaintext"), plain);
    let bad = s.sigil(&[
        "write",
        "transit/decrypt/app",
        "ciphertext=sigil:v1:bm90IGl0",
    ]);
    assert!(stderr(&bad).contains("400"), "{}", stderr(&bad));

    // Signatures of every asymmetric type, checked by `cryptography`.
    let mut lines = String::new();
    let input = B64.encode(b"sign me");
    let digest = |alg: &str| {
        field(
            &ok(s.sigil(&[
                "write",
                &format!("transit/hash/{alg}"),
                &format!("input={input}"),
                "format=base64",
            ])),
            "sum",
        )
    };
    let (sha256, sha384) = (digest("sha2-256"), digest("sha2-384"));
    let prehashed_256 = format!("input={sha256}");
    let prehashed_384 = format!("input={sha384}");
    for (kind, extra) in [
        ("ed25519", vec![]),
        ("ecdsa-p256", vec![]),
        ("ecdsa-p256", vec!["marshaling_algorithm=jws"]),
        ("rsa-2048", vec![]),
        (
            "rsa-2048",
            vec!["signature_algorithm=pkcs1v15", "hash_algorithm=sha2-512"],
        ),
        ("ecdsa-p256", vec!["prehashed=true", &prehashed_256]),
        (
            "rsa-2048",
            vec!["prehashed=true", "hash_algorithm=sha2-384", &prehashed_384],
        ),
    ] {
        let name = format!("k-{kind}");
        ok(s.sigil(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={kind}"),
        ]));
        // A later `input=` (the digest, for prehashed) replaces the first.
        let mut args = vec![
            "write".to_owned(),
            format!("transit/sign/{name}"),
            format!("input={input}"),
        ];
        args.extend(extra.iter().map(|e| e.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let signature = field(&ok(s.sigil(&args)), "signature");
        let info: serde_json::Value = serde_json::from_str(&ok(s.sigil(&[
            "read",
            "-format=json",
            &format!("transit/keys/{name}"),
        ])))
        .unwrap();
        let mut item = serde_json::json!({
            "type": kind,
            "public_key": info["data"]["keys"]["1"]["public_key"],
            "input": input,
            "signature": signature,
        });
        for e in &extra {
            let (k, v) = e.split_once('=').unwrap();
            item[k] = serde_json::json!(v);
        }
        if item.get("prehashed").is_some() {
            item["message"] = serde_json::json!(input);
        }
        // The server agrees, and refuses a changed input.
        let mut verify = vec![
            "write".to_owned(),
            format!("transit/verify/{name}"),
            format!("input={input}"),
        ];
        verify.extend(extra.iter().map(|e| e.to_string()));
        verify.push(format!("signature={signature}"));
        // The input signed (the last `input=`), with its first base64 character changed: the
        // same length, another message (or digest).
        let signed = verify
            .iter()
            .filter_map(|a| a.strip_prefix("input="))
            .next_back()
            .unwrap()
            .to_owned();
        let first = if signed.starts_with('A') { "B" } else { "A" };
        let changed = format!("input={first}{}", &signed[1..]);
        let mut tampered = verify.clone();
        tampered.push(changed);
        let verify: Vec<&str> = verify.iter().map(String::as_str).collect();
        assert_eq!(field(&ok(s.sigil(&verify)), "valid"), "true");
        let tampered: Vec<&str> = tampered.iter().map(String::as_str).collect();
        assert_eq!(
            field(&ok(s.sigil(&tampered)), "valid"),
            "false",
            "{kind} {extra:?}: a changed input verifies"
        );
        lines.push_str(&item.to_string());
        lines.push('\n');
    }
    // Exported signing keys (exportable keys only) are the keys the public halves belong to.
    for kind in ["ed25519", "ecdsa-p256", "rsa-2048"] {
        let name = format!("x-{kind}");
        ok(s.sigil(&[
            "write",
            &format!("transit/keys/{name}"),
            &format!("type={kind}"),
        ]));
        let refused = s.sigil(&["read", &format!("transit/export/signing-key/{name}")]);
        assert!(
            stderr(&refused).contains("not exportable"),
            "{}",
            stderr(&refused)
        );
        ok(s.sigil(&[
            "write",
            &format!("transit/keys/{name}/config"),
            "exportable=true",
        ]));
        let json = |args: &[&str]| -> serde_json::Value {
            serde_json::from_str(&ok(s.sigil(args))).unwrap()
        };
        let info = json(&["read", "-format=json", &format!("transit/keys/{name}")]);
        let export = json(&[
            "read",
            "-format=json",
            &format!("transit/export/signing-key/{name}/1"),
        ]);
        let item = serde_json::json!({
            "type": kind,
            "public_key": info["data"]["keys"]["1"]["public_key"],
            "private_key": export["data"]["keys"]["1"],
        });
        lines.push_str(&item.to_string());
        lines.push('\n');
    }
    let mut child = Command::new(python())
        .arg(support::interop_script("transit_verify.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (install tests/interop/requirements.txt, or run scripts/test)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        10
    );
}
