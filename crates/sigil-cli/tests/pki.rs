//! PKI through the real binary: a root generated on the server, certificates issued under a
//! role and checked by `openssl verify`, a CRL that `openssl crl` parses and that lists the
//! revoked serial, and the internal CA as the trust anchor of a `cert` auth role — an issued
//! certificate authenticates over mTLS until it is revoked.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::raw::Raw;
use support::{Server, ok, stderr, stdout};

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `openssl crl -text` of a PEM CRL, written to `file` first.
fn openssl_crl_text(file: &std::path::Path, pem: &str) -> String {
    std::fs::write(file, pem).unwrap();
    openssl(&["crl", "-in", file.to_str().unwrap(), "-noout", "-text"])
}

fn data(out: String) -> Value {
    serde_json::from_str::<Value>(&out).unwrap()["data"].clone()
}

#[tokio::test]
async fn issued_certificates_verify_are_revoked_and_authenticate_over_mtls() {
    let s = Server::start();
    let dir = s.tmp.path();
    ok(s.sigil(&["secrets", "enable", "pki"]));
    let root = data(ok(s.sigil(&[
        "write",
        "-format=json",
        "pki/root/generate/internal",
        "common_name=Sigil Test Root",
        "ttl=8760h",
    ])));
    let ca_pem = root["certificate"].as_str().unwrap().to_owned();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    // One issuer per mount for now: a second root is refused.
    assert!(
        !s.sigil(&["write", "pki/root/generate/internal", "common_name=again"])
            .status
            .success()
    );

    ok(s.sigil(&[
        "write",
        "pki/roles/svc",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "allowed_uri_sans=spiffe://prod/*",
        "ttl=24h",
        "max_ttl=72h",
    ]));
    let issue = |cn: &str, extra: &[&str]| {
        let mut args = vec!["write", "-format=json", "pki/issue/svc"];
        let cn = format!("common_name={cn}");
        args.push(&cn);
        args.extend_from_slice(extra);
        s.sigil(&args)
    };
    let cert = data(ok(issue(
        "api.example.com",
        &["uri_sans=spiffe://prod/api", "ttl=1000h"],
    )));
    let leaf = dir.join("leaf.pem");
    std::fs::write(&leaf, cert["certificate"].as_str().unwrap()).unwrap();
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            leaf.to_str().unwrap()
        ])
        .contains(": OK")
    );
    let text = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        text.contains("DNS:api.example.com") && text.contains("URI:spiffe://prod/api"),
        "{text}"
    );
    assert!(
        cert["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    // The TTL is clamped to the role's max_ttl (72 h), not the 1000 h asked for.
    let expiration = cert["expiration"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expiration <= now + 72 * 3600 + 5, "{expiration}");
    // Names and SANs outside the role are refused.
    for (cn, extra) in [
        ("evil.org", vec![]),
        ("example.com", vec![]),
        ("api.example.com", vec!["uri_sans=spiffe://dev/api"]),
        ("api.example.com", vec!["alt_names=x.evil.org"]),
    ] {
        let out = issue(cn, &extra);
        assert!(
            stderr(&out).contains("400"),
            "{cn} {extra:?}: {}",
            stderr(&out)
        );
    }
    // A CSR: only its names and key are used (its CA:TRUE request is not), under the role.
    let csr = |cn: &str, curve: &str| {
        let out = dir.join(format!("{cn}.csr"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-nodes",
            "-keyout",
            dir.join(format!("{cn}.key")).to_str().unwrap(),
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::read_to_string(out).unwrap()
    };
    let signed = data(ok(s.sigil(&[
        "write",
        "-format=json",
        "pki/sign/svc",
        &format!("csr={}", csr("csr.example.com", "P-256")),
    ])));
    let from_csr = dir.join("from-csr.pem");
    std::fs::write(&from_csr, signed["certificate"].as_str().unwrap()).unwrap();
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            from_csr.to_str().unwrap()
        ])
        .contains(": OK")
    );
    let text = openssl(&["x509", "-in", from_csr.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        text.contains("DNS:csr.example.com") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(signed.get("private_key").is_none());
    let refused = s.sigil(&[
        "write",
        "pki/sign/svc",
        &format!("csr={}", csr("csr.evil.org", "P-256")),
    ]);
    assert!(
        stderr(&refused).contains("not an allowed domain"),
        "{}",
        stderr(&refused)
    );
    let garbage = s.sigil(&[
        "write",
        "pki/sign/svc",
        "csr=-----BEGIN CERTIFICATE REQUEST-----",
    ]);
    assert!(stderr(&garbage).contains("400"), "{}", stderr(&garbage));

    // Host names are checked (no wildcards, no spaces), a CSR's key must be the role's type
    // (an ec P-384 key under a P-256 role is refused), and a bad serial is a 400.
    for cn in ["*.example.com", "a b.example.com", "a..example.com"] {
        let out = issue(cn, &[]);
        assert!(stderr(&out).contains("400"), "{cn}: {}", stderr(&out));
    }
    let p384 = csr("p.example.com", "P-384");
    let out = s.sigil(&["write", "pki/sign/svc", &format!("csr={p384}")]);
    assert!(
        stderr(&out).contains("key is not what the role allows"),
        "{}",
        stderr(&out)
    );
    let out = s.sigil(&["read", "pki/cert/é1"]);
    assert!(stderr(&out).contains("400"), "{}", stderr(&out));
    // Without a max_ttl on the role, certificates are capped at 32 days.
    ok(s.sigil(&[
        "write",
        "pki/roles/open",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "key_bits=256",
    ]));
    let long = data(ok(s.sigil(&[
        "write",
        "-format=json",
        "pki/issue/open",
        "common_name=long.example.com",
        "ttl=87600h",
    ])));
    assert!(long["expiration"].as_i64().unwrap() <= now + 32 * 86400 + 60);

    let listed = ok(s.sigil(&["list", "pki/certs"]));
    let serial = cert["serial_number"].as_str().unwrap();
    assert!(listed.contains(serial), "{listed}");

    // The internal CA as the trust anchor of a cert auth role: an issued certificate whose URI
    // SAN maps to an identity authenticates over mTLS.
    let policy = dir.join("app.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "app", policy.to_str().unwrap()]));
    let svc_key = s.new_identity("svc", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/app", "v=over-mtls"]));
    let crl = |s: &Server| {
        data(ok(s.sigil(&["read", "-format=json", "pki/cert/crl"])))["certificate"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let admin = Raw::new(&s, &s.admin_key()).await;
    let set_role = |crl: String| {
        let role = json!({
            "certificate": ca_pem,
            "crl": crl,
            "mappings": [{ "uri": "spiffe://prod/api", "identity": "svc" }],
        });
        admin.signed(
            "PUT",
            "/v1/auth/cert/certs/internal",
            Some(&serde_json::to_vec(&role).unwrap()),
        )
    };
    assert_eq!(admin.send(&set_role(crl(&s))).await.status, 200);
    let chain = cert["certificate"].as_str().unwrap();
    let key = cert["private_key"].as_str().unwrap();
    let get = |raw: &Raw| {
        let nonce = sigil_crypto::random::nonce().unwrap();
        let mut req = raw.unsigned("GET", "/v1/secret/data/app");
        req.headers.push(("Sigil-Nonce".into(), nonce.clone()));
        req.nonce = nonce;
        req
    };
    let client = Raw::with_client_cert(&s, &svc_key, Some((chain, key))).await;
    let req = get(&client);
    let resp = client.send(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(client.open(&req, &resp)["data"]["data"]["v"], "over-mtls");

    // Revoke: the new CRL lists the serial (openssl parses it); with it on the role, the same
    // certificate no longer authenticates.
    ok(s.sigil(&["write", "pki/revoke", &format!("serial_number={serial}")]));
    let crl_pem = crl(&s);
    let crl_file = dir.join("crl.pem");
    let crl_text = openssl_crl_text(&crl_file, &crl_pem);
    let openssl_serial = serial.replace(':', "").to_uppercase();
    assert!(
        crl_text.contains(&openssl_serial),
        "{openssl_serial} not in:\n{crl_text}"
    );
    assert!(crl_text.contains("Next Update"), "{crl_text}");
    openssl(&[
        "crl",
        "-in",
        crl_file.to_str().unwrap(),
        "-noout",
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    assert_eq!(admin.send(&set_role(crl_pem)).await.status, 200);
    // Tidy: a revoked certificate that has expired leaves the store and the CRL.
    let short = data(ok(issue("short.example.com", &["ttl=1s"])));
    let short_serial = short["serial_number"].as_str().unwrap().to_owned();
    ok(s.sigil(&[
        "write",
        "pki/revoke",
        &format!("serial_number={short_serial}"),
    ]));
    let listed_before = openssl_crl_text(&crl_file, &crl(&s));
    assert!(listed_before.contains(&short_serial.replace(':', "").to_uppercase()));
    std::thread::sleep(std::time::Duration::from_millis(3100));
    ok(s.sigil(&[
        "write",
        "pki/tidy",
        "tidy_revoked_certs=true",
        "safety_buffer=1s",
    ]));
    assert!(!ok(s.sigil(&["list", "pki/certs"])).contains(&short_serial));
    let tidied = openssl_crl_text(&crl_file, &crl(&s));
    assert!(
        !tidied.contains(&short_serial.replace(':', "").to_uppercase()),
        "{tidied}"
    );
    assert!(
        tidied.contains(&openssl_serial),
        "the unexpired revoked certificate stays listed"
    );
    let revoked = Raw::with_client_cert(&s, &svc_key, Some((chain, key))).await;
    let outcome = revoked.try_send(&get(&revoked)).await;
    assert!(
        outcome.as_ref().is_none_or(|r| r.status == 401),
        "a revoked certificate still authenticates: {:?}",
        outcome.map(|r| r.status)
    );
}
