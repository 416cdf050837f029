//! mTLS (docs/protocol.md §7): certificate roles trust a CA and map client certificates to
//! identities; responses stay sealed to the identity's key. Expired, revoked, untrusted and
//! unmapped certificates are refused.

mod support;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use support::raw::{Raw, Refusal, Req};
use support::{Server, ok};
use time::{Duration, OffsetDateTime};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate with a SAN URI, valid now (or `expired`); returns (chain PEM,
    /// key PEM).
    fn client(&self, uri: &str, serial: u64, expired: bool) -> (String, String) {
        let now = OffsetDateTime::now_utc();
        let (from, until) = if expired {
            (now - Duration::days(10), now - Duration::days(1))
        } else {
            (now - Duration::days(1), now + Duration::days(1))
        };
        self.client_valid(uri, serial, from, until)
    }

    fn client_valid(
        &self,
        uri: &str,
        serial: u64,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        p.distinguished_name.push(DnType::CommonName, "client");
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = from;
        p.not_after = until;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn crl(&self, revoked: u64) -> String {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(revoked),
                revocation_time: now - Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// Writes policy `app` (read on `secret/data/app`) from a file, whose path it returns.
fn app_policy(s: &Server) -> std::path::PathBuf {
    let policy = s.tmp.path().join("app.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "app", policy.to_str().unwrap()]));
    policy
}

fn mtls_get(raw: &Raw, target: &str, nonce: Option<&str>) -> Req {
    let mut req = raw.unsigned("GET", target);
    if let Some(n) = nonce {
        req.headers.push(("Sigil-Nonce".into(), n.into()));
        req.nonce = n.into();
    }
    req
}

#[tokio::test]
async fn certificates_map_to_identities_and_bad_ones_are_refused() {
    let s = Server::start();
    app_policy(&s);
    let alice_key = s.new_identity("alice", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/app", "v=read-over-mtls"]));

    let ca = Ca::new("Test Client CA");
    let admin = Raw::new(&s, &s.admin_key()).await;
    let role = serde_json::json!({
        "certificate": ca.pem(),
        "crl": ca.crl(3),
        "mappings": [{ "uri": "spiffe://test/alice", "identity": "alice" }],
    });
    let req = admin.signed(
        "PUT",
        "/v1/auth/cert/certs/test",
        Some(&serde_json::to_vec(&role).unwrap()),
    );
    let r = admin.send(&req).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A mapping to an identity that does not exist is refused.
    let bad = serde_json::json!({ "certificate": ca.pem(), "mappings": [{ "uri": "x", "identity": "ghost" }] });
    let req = admin.signed(
        "PUT",
        "/v1/auth/cert/certs/bad",
        Some(&serde_json::to_vec(&bad).unwrap()),
    );
    assert_eq!(admin.send(&req).await.status, 400);

    // A good certificate: the response is sealed to alice's key, and only alice's key opens it.
    let (chain, key) = ca.client("spiffe://test/alice", 2, false);
    let alice = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
    let nonce = sigil_crypto::random::nonce().unwrap();
    let req = mtls_get(&alice, "/v1/secret/data/app", Some(&nonce));
    let resp = alice.send(&req).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(!String::from_utf8_lossy(&resp.body).contains("read-over-mtls"));
    assert_eq!(
        alice.open(&req, &resp)["data"]["data"]["v"],
        "read-over-mtls"
    );
    // Outside alice's policy: 403. Same nonce again: replay. No nonce: refused.
    let other = sigil_crypto::random::nonce().unwrap();
    assert_eq!(
        alice
            .send(&mtls_get(&alice, "/v1/sys/policies/acl/app", Some(&other)))
            .await
            .status,
        403
    );
    assert_eq!(
        alice
            .send(&mtls_get(&alice, "/v1/secret/data/app", Some(&nonce)))
            .await
            .status,
        401
    );
    let r = alice
        .send(&mtls_get(&alice, "/v1/secret/data/app", None))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.error_text().contains("Sigil-Nonce"));

    // Trusted CA but no mapping: 401.
    let (chain, key) = ca.client("spiffe://test/nobody", 4, false);
    let nobody = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
    let r = nobody
        .send(&mtls_get(
            &nobody,
            "/v1/secret/data/app",
            Some(&sigil_crypto::random::nonce().unwrap()),
        ))
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.error_text().contains("maps to no identity"),
        "{}",
        r.error_text()
    );

    // Expired, revoked (serial 3 is on the CRL), and from an untrusted CA: the handshake fails.
    let untrusted = Ca::new("Someone Else");
    for (name, (chain, key)) in [
        ("expired", ca.client("spiffe://test/alice", 5, true)),
        ("revoked", ca.client("spiffe://test/alice", 3, false)),
        (
            "not yet valid",
            ca.client_valid(
                "spiffe://test/alice",
                8,
                OffsetDateTime::now_utc() + Duration::days(1),
                OffsetDateTime::now_utc() + Duration::days(2),
            ),
        ),
        (
            "untrusted",
            untrusted.client("spiffe://test/alice", 6, false),
        ),
    ] {
        let raw = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
        let r = raw
            .send_or_refusal(&mtls_get(
                &raw,
                "/v1/secret/data/app",
                Some(&sigil_crypto::random::nonce().unwrap()),
            ))
            .await;
        assert!(
            r.as_ref().is_err_and(Refusal::is_alert),
            "{name} certificate: not refused with a TLS alert: {:?}",
            r.map(|r| r.status)
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

    // Signed requests keep working on the same server, with or without a client certificate.
    let r = admin
        .send(&admin.signed("GET", "/v1/secret/data/app", None))
        .await;
    assert_eq!(r.status, 200);
    // Deleting the role stops mTLS for that CA.
    let r = admin
        .send(&admin.signed("DELETE", "/v1/auth/cert/certs/test", None))
        .await;
    assert_eq!(r.status, 204);
    let (chain, key) = ca.client("spiffe://test/alice", 7, false);
    let late = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
    let r = late
        .send_or_refusal(&mtls_get(
            &late,
            "/v1/secret/data/app",
            Some(&sigil_crypto::random::nonce().unwrap()),
        ))
        .await;
    assert!(
        r.as_ref()
            .map_or_else(Refusal::is_alert, |r| r.status == 401),
        "{:?}",
        r.map(|r| r.status)
    );
    assert_eq!(
        admin
            .send(&admin.unsigned("GET", "/v1/sys/health"))
            .await
            .status,
        200
    );
}

/// Disabling an identity refuses it on every path at once: signed requests and requests over a
/// client certificate mapped to it (both 401); enabled again, both work.
#[tokio::test]
async fn a_disabled_identity_is_refused_signed_and_over_mtls() {
    let s = Server::start();
    app_policy(&s);
    let alice_key = s.new_identity("alice", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/app", "v=1"]));
    let ca = Ca::new("Test Client CA");
    let admin = Raw::new(&s, &s.admin_key()).await;
    let role = serde_json::json!({
        "certificate": ca.pem(),
        "mappings": [{ "uri": "spiffe://test/alice", "identity": "alice" }],
    });
    let req = admin.signed(
        "PUT",
        "/v1/auth/cert/certs/test",
        Some(&serde_json::to_vec(&role).unwrap()),
    );
    assert_eq!(admin.send(&req).await.status, 200);
    let (chain, key) = ca.client("spiffe://test/alice", 2, false);
    let alice = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
    let statuses = || async {
        let signed = alice
            .send(&alice.signed("GET", "/v1/secret/data/app", None))
            .await
            .status;
        let nonce = sigil_crypto::random::nonce().unwrap();
        let mtls = alice
            .send(&mtls_get(&alice, "/v1/secret/data/app", Some(&nonce)))
            .await
            .status;
        (signed, mtls)
    };
    assert_eq!(statuses().await, (200, 200));
    ok(s.sigil(&["write", "identity/entity/name/alice", "disabled=true"]));
    assert_eq!(statuses().await, (401, 401));
    ok(s.sigil(&["write", "identity/entity/name/alice", "disabled=false"]));
    assert_eq!(statuses().await, (200, 200));
}

#[test]
fn certificate_roles_through_the_generic_cli() {
    let s = Server::start();
    s.new_identity("svc", &[]);
    let ca = Ca::new("CLI CA");
    let role = serde_json::json!({
        "certificate": ca.pem(),
        "mappings": [{ "dns": "svc.internal", "identity": "svc" }],
    });
    let mut child = std::process::Command::new(support::SIGIL)
        .args(["write", "auth/cert/certs/cli", "-"])
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SIGIL_KEY", s.admin_key())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(role.to_string().as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap());
    assert_eq!(
        ok(s.sigil(&["list", "auth/cert/certs"])),
        "Keys\n----\ncli\n"
    );
    assert!(ok(s.sigil(&["read", "auth/cert/certs/cli"])).contains("svc.internal"));
    ok(s.sigil(&["delete", "auth/cert/certs/cli"]));
    let out = s.sigil(&["read", "auth/cert/certs/cli"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn a_chain_cannot_pick_another_roles_mappings() {
    let s = Server::start();
    app_policy(&s);
    let alice_key = s.new_identity("alice", &[]);
    s.new_identity("bob", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/app", "v=bobs"]));
    let (ca_a, ca_b) = (Ca::new("Test CA A"), Ca::new("Test CA B"));
    let admin = Raw::new(&s, &s.admin_key()).await;
    for (name, ca, uri, who) in [
        ("a", &ca_a, "spiffe://a/alice", "alice"),
        ("b", &ca_b, "spiffe://b/bob", "bob"),
    ] {
        let role = serde_json::json!({ "certificate": ca.pem(), "mappings": [{ "uri": uri, "identity": who }] });
        let req = admin.signed(
            "PUT",
            &format!("/v1/auth/cert/certs/{name}"),
            Some(&serde_json::to_vec(&role).unwrap()),
        );
        assert_eq!(admin.send(&req).await.status, 200);
    }
    // A certificate from CA A naming bob's URI, with a self-signed extra certificate whose
    // subject is CA B's name appended to the chain.
    let (leaf, key) = ca_a.client("spiffe://b/bob", 9, false);
    let fake = {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "Test CA B");
        p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
    };
    let chain = format!("{leaf}{fake}");
    let raw = Raw::with_client_cert(&s, &alice_key, Some((&chain, &key))).await;
    let r = raw
        .send_or_refusal(&mtls_get(
            &raw,
            "/v1/secret/data/app",
            Some(&sigil_crypto::random::nonce().unwrap()),
        ))
        .await;
    assert!(
        r.as_ref()
            .map_or_else(Refusal::is_alert, |r| r.status == 401),
        "the chain reached bob's mapping: {:?}",
        r.map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
    );
    // The same CA A certificate for alice's URI works (as alice, who may not read the app).
    let (leaf, key) = ca_a.client("spiffe://a/alice", 10, false);
    let raw = Raw::with_client_cert(&s, &alice_key, Some((&leaf, &key))).await;
    let r = raw
        .send(&mtls_get(
            &raw,
            "/v1/secret/data/app",
            Some(&sigil_crypto::random::nonce().unwrap()),
        ))
        .await;
    assert_eq!(r.status, 403);
    // Deleting alice drops the mapping: a later "alice" does not inherit the certificate.
    ok(s.sigil(&["identity", "delete", "alice"]));
    assert!(!ok(s.sigil(&["read", "auth/cert/certs/a"])).contains("spiffe://a/alice"));
}

/// One kept-alive connection (the SDK's pooled HTTP/1.1 connection): the identity a
/// certificate maps to is remembered per connection, yet a changed mapping, a changed policy
/// and a deleted identity take effect at the next request on it.
#[tokio::test]
async fn a_kept_alive_connection_follows_mapping_policy_and_identity_changes() {
    let s = Server::start();
    let policy = app_policy(&s);
    let alice_key = s.new_identity("alice", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/app", "v=kept-alive"]));
    let ca = Ca::new("Keep-alive CA");
    let admin = Raw::new(&s, &s.admin_key()).await;
    let role = async |identity: Option<&str>| {
        let mappings = match identity {
            Some(who) => serde_json::json!([{ "uri": "spiffe://test/alice", "identity": who }]),
            None => serde_json::json!([]),
        };
        let role = serde_json::json!({ "certificate": ca.pem(), "mappings": mappings });
        let body = serde_json::to_vec(&role).unwrap();
        let req = admin.signed("PUT", "/v1/auth/cert/certs/test", Some(&body));
        assert_eq!(admin.send(&req).await.status, 200);
    };
    role(Some("alice")).await;
    let (chain, key) = ca.client("spiffe://test/alice", 2, false);
    let sdk = s
        .sdk(&alice_key)
        .with_client_certificate(chain.as_bytes(), key.as_bytes())
        .unwrap();
    let status = |r: Result<sigil_client::ApiResponse, sigil_client::ClientError>| match r {
        Ok(a) => a.status,
        Err(sigil_client::ClientError::Api { status, .. }) => status,
        Err(e) => panic!("{e}"),
    };
    let read = || sdk.request("GET", "secret/data/app", None);
    assert_eq!(status(read().await), 200);
    assert_eq!(status(read().await), 200);

    // The mapping is removed: the next request on the same connection maps to no one.
    role(None).await;
    assert_eq!(status(read().await), 401);
    role(Some("alice")).await;
    assert_eq!(status(read().await), 200);
    // Alice's policy no longer grants the path: refused at once, the mapping unchanged.
    std::fs::write(
        &policy,
        "path \"secret/data/other\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "app", policy.to_str().unwrap()]));
    assert_eq!(status(read().await), 403);
    // Alice is deleted: her certificate authenticates no one.
    ok(s.sigil(&["identity", "delete", "alice"]));
    assert_eq!(status(read().await), 401);
}
