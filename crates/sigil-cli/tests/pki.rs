//! PKI through the real binary: a root generated on the server, certificates issued under a
//! role and checked by `openssl verify`, a CRL that `openssl crl` parses and that lists the
//! revoked serial, and the internal CA as the trust anchor of a `cert` auth role — an issued
//! certificate authenticates over mTLS until it is revoked. Then an intermediate CA on a second
//! mount signed by the root, several issuers, role key usages and RSA sizes, and the raw
//! unauthenticated CA and CRL endpoints.

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
    // The SDK over mTLS: no signatures, a nonce per request, answers sealed (then on a
    // channel).
    let sdk = s
        .sdk(&svc_key)
        .with_client_certificate(chain.as_bytes(), key.as_bytes())
        .unwrap();
    for _ in 0..2 {
        let read = sdk.request("GET", "secret/data/app", None).await.unwrap();
        assert_eq!(read.body.unwrap()["data"]["data"]["v"], "over-mtls");
    }
    assert!(sdk.channel_id().is_some(), "a channel over mTLS too");

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
    // Until it expired and the safety buffer below (1 s) has passed too.
    let expiration = short["expiration"].as_i64().unwrap();
    support::eventually(30, || support::raw::now() > expiration + 1);
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
    let outcome = revoked.send_or_refusal(&get(&revoked)).await;
    assert!(
        outcome
            .as_ref()
            .map_or_else(support::raw::Refusal::is_alert, |r| r.status == 401),
        "a revoked certificate still authenticates: {:?}",
        outcome.map(|r| r.status)
    );
    // The server is well: the refusal was the answer, not a crash.
    assert_eq!(
        admin
            .send(&admin.unsigned("GET", "/v1/sys/health"))
            .await
            .status,
        200
    );
}

/// Writes `pem` to `dir/name` and returns the path as text.
fn file(dir: &std::path::Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn intermediates_issuers_usages_and_raw_endpoints() {
    let s = Server::start();
    let dir = s.tmp.path();
    let write = |args: &[&str]| {
        let mut all = vec!["write", "-format=json"];
        all.extend_from_slice(args);
        data(ok(s.sigil(&all)))
    };
    let refused = |args: &[&str], why: &str| {
        let mut all = vec!["write"];
        all.extend_from_slice(args);
        let out = s.sigil(&all);
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    };
    ok(s.sigil(&["secrets", "enable", "pki"]));
    ok(s.sigil(&["secrets", "enable", "-path=pki_int", "pki"]));
    let root = write(&[
        "pki/root/generate/internal",
        "common_name=Sigil Root",
        "key_type=rsa",
        "key_bits=3072",
        "issuer_name=root-2026",
        "ttl=8760h",
    ]);
    let root_pem = root["certificate"].as_str().unwrap().to_owned();
    let root_file = file(dir, "root.pem", &root_pem);
    assert!(
        openssl(&["x509", "-in", &root_file, "-noout", "-text"]).contains("(3072 bit)"),
        "an RSA-3072 root"
    );

    // An intermediate: its key made on pki_int, its CSR signed by the root on pki, the signed
    // certificate (with the root after it) set back on pki_int.
    // As in Vault's tutorial: `-field` output into files, read back with `@FILE`.
    let csr_pem = ok(s.sigil(&[
        "write",
        "-field=csr",
        "pki_int/intermediate/generate/internal",
        "common_name=Sigil Intermediate",
    ]));
    assert!(
        csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST"),
        "{csr_pem}"
    );
    let csr_file = file(dir, "int.csr", &csr_pem);
    let signed = write(&[
        "pki/root/sign-intermediate",
        &format!("csr=@{csr_file}"),
        "ttl=43800h",
        "max_path_length=0",
    ]);
    let int_pem = signed["certificate"].as_str().unwrap().to_owned();
    assert!(
        signed["expiration"].as_i64().unwrap() <= root["expiration"].as_i64().unwrap(),
        "the intermediate does not outlive the root"
    );
    let int_file = file(dir, "int.pem", &int_pem);
    let int_text = openssl(&["x509", "-in", &int_file, "-noout", "-text"]);
    assert!(int_text.contains("CA:TRUE, pathlen:0"), "{int_text}");
    assert!(openssl(&["verify", "-CAfile", &root_file, &int_file]).contains(": OK"));
    // A certificate whose key this mount does not hold, or that is not a CA, is refused.
    refused(
        &[
            "pki_int/intermediate/set-signed",
            &format!("certificate={root_pem}"),
        ],
        "not one of this mount's keys",
    );
    refused(
        &[
            "pki_int/intermediate/set-signed",
            &format!("certificate={root_pem}{int_pem}"),
        ],
        "not signed by the one after it",
    );
    let imported = write(&[
        "pki_int/intermediate/set-signed",
        &format!("certificate={int_pem}{root_pem}"),
    ]);
    assert_eq!(imported["imported_issuers"].as_array().unwrap().len(), 1);

    // Roles: RSA 2048 leaves with the usages asked for.
    ok(s.sigil(&[
        "write",
        "pki_int/roles/web",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "key_type=rsa",
        "key_usage=DigitalSignature,KeyEncipherment",
        "ext_key_usage=CodeSigning",
        "client_flag=false",
        "max_ttl=72h",
    ]));
    let leaf = write(&["pki_int/issue/web", "common_name=www.example.com"]);
    let chain: Vec<&str> = leaf["ca_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(chain.len(), 2, "intermediate, then root");
    assert_eq!(chain[1].trim(), root_pem.trim());
    let leaf_file = file(dir, "leaf.pem", leaf["certificate"].as_str().unwrap());
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            &root_file,
            "-untrusted",
            &int_file,
            &leaf_file
        ])
        .contains(": OK")
    );
    let text = openssl(&["x509", "-in", &leaf_file, "-noout", "-text"]);
    for wanted in [
        "(2048 bit)",
        "Digital Signature, Key Encipherment",
        "Code Signing",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(wanted), "{wanted} not in:\n{text}");
    }
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
    // no_store: issued, but not kept, so neither listed nor revocable.
    ok(s.sigil(&[
        "write",
        "pki_int/roles/ephemeral",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "no_store=true",
    ]));
    let ephemeral = write(&["pki_int/issue/ephemeral", "common_name=tmp.example.com"]);
    let ephemeral_serial = ephemeral["serial_number"].as_str().unwrap();
    assert!(!ok(s.sigil(&["list", "pki_int/certs"])).contains(ephemeral_serial));
    refused(
        &[
            "pki_int/revoke",
            &format!("serial_number={ephemeral_serial}"),
        ],
        "no_store",
    );
    for (field, why) in [
        ("key_usage=CertSign", "not one Sigil issues"),
        ("ext_key_usage=Bogus", "not known"),
        ("key_bits=1024", "key_type/key_bits"),
    ] {
        refused(&["pki_int/roles/bad", "key_type=rsa", field], why);
    }

    // A CSR's RSA key must be at least the role's size.
    ok(s.sigil(&[
        "write",
        "pki_int/roles/big",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "key_type=rsa",
        "key_bits=3072",
    ]));
    let rsa_csr = |bits: &str| {
        let out = dir.join(format!("rsa{bits}.csr"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-keyout",
            dir.join(format!("rsa{bits}.key")).to_str().unwrap(),
            "-subj",
            "/CN=rsa.example.com",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::read_to_string(out).unwrap()
    };
    refused(
        &["pki_int/sign/big", &format!("csr={}", rsa_csr("2048"))],
        "key is not what the role allows",
    );
    let big = write(&["pki_int/sign/big", &format!("csr={}", rsa_csr("4096"))]);
    let big_file = file(dir, "big.pem", big["certificate"].as_str().unwrap());
    assert!(openssl(&["x509", "-in", &big_file, "-noout", "-text"]).contains("(4096 bit)"));

    // Several issuers: a second root leaves the default alone until config/issuers names it.
    let second = write(&[
        "pki/root/generate/internal",
        "common_name=Second Root",
        "issuer_name=second",
    ]);
    refused(
        &[
            "pki/root/generate/internal",
            "common_name=x",
            "issuer_name=second",
        ],
        "named \"second\" already",
    );
    refused(
        &[
            "pki/root/generate/internal",
            "common_name=x",
            "issuer_name=default",
        ],
        "pick another name",
    );
    refused(
        &["pki/root/generate/exported", "common_name=x"],
        "never leaves",
    );
    let listed = ok(s.sigil(&["list", "pki/issuers"]));
    assert!(
        listed.contains(second["issuer_id"].as_str().unwrap()),
        "{listed}"
    );
    ok(s.sigil(&["write", "pki/roles/any", "allow_any_name=true"]));
    let from_second = write(&["pki/issuer/second/issue/any", "common_name=two.example.com"]);
    assert_eq!(
        from_second["issuing_ca"].as_str().unwrap().trim(),
        second["certificate"].as_str().unwrap().trim()
    );

    // The raw endpoints answer anyone: DER and PEM certificates and CRLs.
    let anon = Raw::new(&s, &s.admin_key()).await;
    let get = |path: &str| {
        let req = anon.unsigned("GET", path);
        let anon = &anon;
        async move { anon.send(&req).await }
    };
    let der = get("/v1/pki_int/ca").await;
    assert_eq!(der.status, 200);
    assert_eq!(der.header("content-type"), Some("application/pkix-cert"));
    let der_file = dir.join("int.der");
    std::fs::write(&der_file, &der.body).unwrap();
    let from_der = openssl(&["x509", "-inform", "DER", "-in", der_file.to_str().unwrap()]);
    assert_eq!(from_der.trim(), int_pem.trim());
    let pem = get("/v1/pki_int/ca/pem").await;
    assert_eq!(String::from_utf8(pem.body).unwrap().trim(), int_pem.trim());
    let chain_pem = String::from_utf8(get("/v1/pki_int/ca_chain").await.body).unwrap();
    assert!(chain_pem.contains(int_pem.trim()) && chain_pem.contains(root_pem.trim()));
    ok(s.sigil(&[
        "write",
        "pki_int/revoke",
        &format!("serial_number={}", leaf["serial_number"].as_str().unwrap()),
    ]));
    let crl = get("/v1/pki_int/crl").await;
    assert_eq!(crl.header("content-type"), Some("application/pkix-crl"));
    let crl_file = dir.join("int.crl");
    std::fs::write(&crl_file, &crl.body).unwrap();
    let crl_text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_file.to_str().unwrap(),
        "-noout",
        "-text",
        "-CAfile",
        &file(dir, "int-chain.pem", &format!("{int_pem}{root_pem}")),
    ]);
    let serial = leaf["serial_number"]
        .as_str()
        .unwrap()
        .replace(':', "")
        .to_uppercase();
    assert!(crl_text.contains(&serial), "{serial} not in:\n{crl_text}");
    let named = get(&format!(
        "/v1/pki/issuer/{}/crl/pem",
        second["issuer_id"].as_str().unwrap()
    ))
    .await;
    assert!(
        String::from_utf8(named.body)
            .unwrap()
            .contains("BEGIN X509 CRL")
    );
    assert_eq!(get("/v1/pki/issuer/nope/pem").await.status, 400);

    // The default issuer moves; the raw CA follows.
    ok(s.sigil(&["write", "pki/config/issuers", "default=second"]));
    let now_default = String::from_utf8(get("/v1/pki/ca/pem").await.body).unwrap();
    assert_eq!(
        now_default.trim(),
        second["certificate"].as_str().unwrap().trim()
    );
    ok(s.sigil(&["delete", "pki/issuer/second"]));
    assert_eq!(
        get("/v1/pki/ca/pem").await.status,
        400,
        "no default issuer now"
    );
}
