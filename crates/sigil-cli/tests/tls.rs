//! The listener's TLS: version 1.3 only, and certificate files an operator supplies
//! (`tls_cert_file`, `tls_key_file`, `tls_ca_file` in `[listener]`) are what is served.

mod support;

use rustls::pki_types::ServerName;
use support::{Server, stderr, stdout, tls_connector as connector};

#[tokio::test]
async fn a_tls_1_2_client_is_refused_and_1_3_is_served() {
    let s = Server::start();
    let ca = std::fs::read(s.var("SIGIL_CACERT")).unwrap();
    let name = ServerName::try_from("localhost").unwrap();

    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let refused = connector(&ca, &[&rustls::version::TLS12])
        .connect(name.clone(), tcp)
        .await;
    let err = refused.expect_err("a TLS 1.2 handshake succeeded");
    let alert = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert!(
        matches!(alert, Some(rustls::Error::AlertReceived(_))),
        "not refused with an alert: {err}"
    );

    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let tls = connector(&ca, &[&rustls::version::TLS13])
        .connect(name, tcp)
        .await
        .expect("a TLS 1.3 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn operator_certificate_files_are_what_is_served() {
    // An operator's own CA and server certificate (rcgen here; openssl or a company CA there).
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Operator CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sigil.operator.test");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let config = dir.path().join("sigil.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"file\"\npath = \"{}\"\n[listener]\naddress = \"127.0.0.1:0\"\nnames = [\"localhost\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_ca_file = \"{}\"\n",
            dir.path().join("data").display(),
            cert_file.display(),
            key_file.display(),
            ca_file.display(),
        ),
    )
    .unwrap();
    let s = Server::spawn(
        tempfile::tempdir().unwrap(),
        &["-c", config.to_str().unwrap()],
        &[],
        2,
    );
    // The CA clients are told to trust is the operator's file.
    assert_eq!(
        std::fs::read(s.var("SIGIL_CACERT")).unwrap(),
        std::fs::read(&ca_file).unwrap(),
        "SIGIL_CACERT={}",
        s.var("SIGIL_CACERT")
    );
    // The certificate served is the operator's, chained to the operator's CA.
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let tls = connector(ca.pem().as_bytes(), &[&rustls::version::TLS13])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the operator's CA verifies the served certificate");
    let served = tls.get_ref().1.peer_certificates().unwrap();
    assert_eq!(served[0].as_ref(), cert.der().as_ref());
    // And the CLI, given nothing but that CA, talks to the server.
    // (Exit 2, as Vault's: it is not initialized, so sealed.)
    let out = s.sigil_env(&["operator", "status"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("Initialized ") && l.ends_with(" false")),
        "{}",
        stdout(&out)
    );
    // No generated CA was written beside the data.
    assert!(!dir.path().join("data").join("tls").exists());
}
