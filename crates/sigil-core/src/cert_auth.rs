//! Certificate authentication roles at Vault's `auth/cert/certs/<role>`: a role trusts one CA
//! (and optionally its CRL) and maps client certificates, by SPKI hash, SAN URI (e.g. a SPIFFE
//! ID), SAN DNS name or subject common name, to an existing identity. Responses to mTLS requests
//! are sealed to that identity's X25519 key, so the mapping is also what gives a certificate its
//! encryption key.
//!
//! The TLS handshake checks the chain, validity dates and CRLs against every role's CA; this
//! module picks the role whose CA issued the chain and applies its mappings.

use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::barrier::View;
use crate::grant::{Gate, Grant};
use crate::named::Named;
use crate::path::check_name;
use crate::{CoreError, Operation, Request, Response};

/// How one certificate field maps to an identity. Exactly one matcher is set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A SAN URI, e.g. `spiffe://example.org/ns/prod/sa/api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A SAN DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// The subject common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_cn: Option<String>,
    /// base64url(SHA-256(SubjectPublicKeyInfo DER)) of the client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<String>,
    /// The identity it authenticates as.
    pub identity: String,
}

/// A stored role.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRole {
    /// Its name.
    pub name: String,
    /// The trusted CA certificate, PEM.
    pub certificate: String,
    /// Its CRL, PEM, if any.
    #[serde(default)]
    pub crl: Option<String>,
    /// The mappings, first match wins.
    pub mappings: Vec<Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleInput {
    certificate: String,
    #[serde(default)]
    crl: Option<String>,
    mappings: Vec<Mapping>,
}

/// One role's trust anchor, DER.
#[derive(Debug, Clone)]
pub struct RoleTrust {
    /// The role's name.
    pub name: String,
    /// Its CA certificate.
    pub ca: Vec<u8>,
    /// Its CRL, if any.
    pub crl: Option<Vec<u8>>,
}

/// What the TLS layer needs: every role's CA and CRL, DER, roles in name order.
#[derive(Debug, Clone, Default)]
pub struct CertTrust {
    /// Changes whenever a role changes.
    pub generation: u64,
    /// The roles.
    pub roles: Vec<RoleTrust>,
}

/// Generations are unique in the process (not per core), so a TLS configuration cached for
/// one unseal is never taken for another.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct CertRoles {
    roles: Named<CertRole>,
    generation: AtomicU64,
}

impl std::fmt::Debug for CertRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertRoles").finish_non_exhaustive()
    }
}

fn ca_der(pem: &str) -> Result<Vec<u8>, CoreError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| CoreError::bad("certificate must be one PEM CERTIFICATE"))?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|_| CoreError::bad("certificate does not parse as X.509"))?;
    if !cert.is_ca() {
        return Err(CoreError::bad("certificate is not a CA certificate"));
    }
    Ok(der.to_vec())
}

/// The subject (raw DER) of a role's CA certificate.
fn ca_subject(pem: &str) -> Option<Vec<u8>> {
    let der = ca_der(pem).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    Some(cert.subject().as_raw().to_vec())
}

fn crl_der(pem: &str) -> Result<Vec<u8>, CoreError> {
    CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.to_vec())
        .map_err(|_| CoreError::bad("crl must be one PEM X509 CRL"))
}

/// The fields of a client certificate that mappings can match.
struct Fields {
    uris: Vec<String>,
    dns: Vec<String>,
    cn: Vec<String>,
    spki: String,
}

fn fields(leaf: &[u8]) -> Option<Fields> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    Some(Fields {
        uris,
        dns,
        cn,
        spki: sigil_crypto::b64url_encode(&Sha256::digest(cert.public_key().raw)),
    })
}

impl Mapping {
    fn check(&self) -> Result<(), CoreError> {
        let set = [&self.uri, &self.dns, &self.subject_cn, &self.spki_sha256]
            .iter()
            .filter(|m| m.is_some())
            .count();
        if set != 1 {
            return Err(CoreError::bad(
                "each mapping needs exactly one of uri, dns, subject_cn or spki_sha256, and an identity",
            ));
        }
        check_name("identity", &self.identity)
    }

    fn matches(&self, f: &Fields) -> bool {
        let any = |want: &Option<String>, have: &[String]| {
            want.as_ref().is_some_and(|w| have.iter().any(|h| h == w))
        };
        any(&self.uri, &f.uris)
            || any(&self.dns, &f.dns)
            || any(&self.subject_cn, &f.cn)
            || self
                .spki_sha256
                .as_ref()
                .is_some_and(|s| sigil_crypto::ct_eq(s.as_bytes(), f.spki.as_bytes()))
    }
}

impl CertRoles {
    pub(crate) fn new(view: View) -> Self {
        CertRoles {
            roles: Named::new(view),
            generation: AtomicU64::new(next_generation()),
        }
    }

    pub(crate) fn load_all(&self) -> Result<(), CoreError> {
        self.roles.load_all()?;
        self.generation.store(next_generation(), Ordering::Release);
        Ok(())
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.roles.exists(name)
    }

    /// Changes whenever a role changes (cheap: check it before building [`CertRoles::trust`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn trust(&self) -> CertTrust {
        let generation = self.generation();
        let roles = self
            .roles
            .all()
            .into_iter()
            .filter_map(|(name, role)| {
                Some(RoleTrust {
                    name,
                    ca: ca_der(&role.certificate).ok()?,
                    crl: role.crl.as_deref().and_then(|c| crl_der(c).ok()),
                })
            })
            .collect();
        CertTrust { generation, roles }
    }

    /// The identity name `role` maps a client certificate to. The caller has verified the
    /// certificate against that role's own CA (and CRL): the role is never chosen from names
    /// in the certificate chain, which the client controls.
    pub(crate) fn identity_for(&self, role: &str, leaf: &[u8]) -> Option<String> {
        let f = fields(leaf)?;
        self.roles
            .get(role)?
            .mappings
            .iter()
            .find(|m| m.matches(&f))
            .map(|m| m.identity.clone())
    }

    /// Drops mappings to a deleted identity, so a later identity with the same name does not
    /// inherit the certificates.
    pub(crate) fn remove_identity(&self, identity: &str) -> Result<(), CoreError> {
        let _guard = self.roles.lock();
        for (name, mut role) in self.roles.all() {
            if role.mappings.iter().any(|m| m.identity == identity) {
                role.mappings.retain(|m| m.identity != identity);
                self.roles.put(&name, &role)?;
            }
        }
        self.generation.store(next_generation(), Ordering::Release);
        Ok(())
    }

    fn write(&self, name: &str, input: Value, gate: &dyn Gate) -> Result<CertRole, CoreError> {
        check_name("role", name)?;
        let input: RoleInput = serde_json::from_value(input).map_err(|_| {
            CoreError::bad(
                "expected {\"certificate\": \"<CA PEM>\", \"crl\": \"<CRL PEM>\", \"mappings\": [{\"uri\"|\"dns\"|\"subject_cn\"|\"spki_sha256\": \"…\", \"identity\": \"…\"}]}",
            )
        })?;
        ca_der(&input.certificate)?;
        if let Some(c) = &input.crl {
            crl_der(c)?;
        }
        for m in &input.mappings {
            m.check()?;
            if !gate.identity_exists(&m.identity) {
                return Err(CoreError::bad(format!(
                    "no identity named {:?}",
                    m.identity
                )));
            }
        }
        let subject = ca_subject(&input.certificate).ok_or(CoreError::Integrity)?;
        let _guard = self.roles.lock();
        if let Some((other, _)) =
            self.roles.all().into_iter().find(|(n, r)| {
                n != name && ca_subject(&r.certificate).is_some_and(|s| s == subject)
            })
        {
            return Err(CoreError::bad(format!(
                "role {other:?} already trusts a CA with this subject"
            )));
        }
        // Whoever holds a certificate the role maps gets everything its identity holds: a new
        // CA hands out every mapped identity, a new mapping its own (grant.rs).
        let old = self.roles.get(name);
        let grant = Grant {
            policies: Vec::new(),
            identities: input
                .mappings
                .iter()
                .filter(|m| {
                    old.as_ref().is_none_or(|o| {
                        o.certificate != input.certificate || !o.mappings.contains(m)
                    })
                })
                .map(|m| m.identity.as_str())
                .collect(),
        };
        gate.check(&grant)?;
        let role = CertRole {
            name: name.to_owned(),
            certificate: input.certificate,
            crl: input.crl,
            mappings: input.mappings,
        };
        self.roles.put(name, &role)?;
        self.generation.store(next_generation(), Ordering::Release);
        Ok(role)
    }

    /// Handles `auth/cert/certs/<rest>`.
    pub(crate) fn handle(
        &self,
        req: &Request,
        rest: &str,
        gate: &dyn Gate,
    ) -> Result<Response, CoreError> {
        let response = self
            .roles
            .handle(req, rest, |name, input| self.write(name, input, gate))?;
        if req.operation == Operation::Delete {
            self.generation.store(next_generation(), Ordering::Release);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
        SanType,
    };
    use serde_json::json;
    use sigil_crypto::{BarrierKey, KeyTerm};
    use sigil_storage::MemoryBackend;

    use super::*;
    use crate::barrier::Barrier;

    fn roles() -> CertRoles {
        let root = BarrierKey::generate(KeyTerm(1)).unwrap();
        let barrier = Arc::new(Barrier::initialize(Arc::new(MemoryBackend::new()), root).unwrap());
        CertRoles::new(barrier.view("sys/cert-role/"))
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf with a SAN URI, a SAN DNS name and a common name; its DER and SPKI hash.
    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        uri: &str,
        dns: &str,
        cn: &str,
    ) -> (Vec<u8>, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![
            SanType::URI(uri.try_into().unwrap()),
            SanType::DnsName(dns.try_into().unwrap()),
        ];
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, ca).unwrap();
        let spki = sigil_crypto::b64url_encode(&Sha256::digest(key.subject_public_key_info()));
        (cert.der().to_vec(), spki)
    }

    /// Knows the identities `a`, `b` and `c`; allows every grant.
    struct Allow;

    impl Gate for Allow {
        fn identity_exists(&self, name: &str) -> bool {
            ["a", "b", "c"].contains(&name)
        }
        fn check(&self, _: &Grant<'_>) -> Result<(), CoreError> {
            Ok(())
        }
    }

    #[test]
    fn each_matcher_maps_a_leaf_first_match_wins() {
        let roles = roles();
        let issuer = ca("team CA");
        let (der, spki) = leaf(&issuer, "spiffe://x/ns/prod/sa/api", "api.internal", "api");
        let before = roles.generation();
        roles
            .write(
                "team",
                json!({
                    "certificate": issuer.pem(),
                    "mappings": [
                        { "uri": "spiffe://x/ns/prod/sa/other", "identity": "c" },
                        { "dns": "api.internal", "identity": "a" },
                        { "uri": "spiffe://x/ns/prod/sa/api", "identity": "b" },
                    ],
                }),
                &Allow,
            )
            .unwrap();
        assert_ne!(
            roles.generation(),
            before,
            "a change is seen by the TLS trust"
        );
        assert_eq!(roles.identity_for("team", &der).as_deref(), Some("a"));
        assert_eq!(roles.identity_for("nope", &der), None);
        assert_eq!(roles.identity_for("team", b"not DER"), None);
        for (mapping, want) in [
            (json!({ "subject_cn": "api", "identity": "c" }), "c"),
            (json!({ "spki_sha256": spki, "identity": "b" }), "b"),
        ] {
            let input = json!({ "certificate": issuer.pem(), "mappings": [mapping] });
            roles.write("team", input, &Allow).unwrap();
            assert_eq!(roles.identity_for("team", &der).as_deref(), Some(want));
        }
        let trust = roles.trust();
        assert_eq!(trust.roles.len(), 1);
        assert_eq!(trust.generation, roles.generation());
    }

    #[test]
    fn bad_roles_are_refused_and_change_nothing() {
        let roles = roles();
        let issuer = ca("one");
        let ok =
            json!({ "certificate": issuer.pem(), "mappings": [{ "dns": "d", "identity": "a" }] });
        roles.write("one", ok, &Allow).unwrap();
        let generation = roles.generation();
        for (name, input) in [
            ("two", json!({ "certificate": "not a PEM", "mappings": [] })),
            (
                "two",
                json!({ "certificate": ca("two").pem(), "crl": "junk", "mappings": [] }),
            ),
            // Two matchers in one mapping, or none.
            (
                "two",
                json!({ "certificate": ca("two").pem(), "mappings": [{ "dns": "d", "uri": "u:x", "identity": "a" }] }),
            ),
            (
                "two",
                json!({ "certificate": ca("two").pem(), "mappings": [{ "identity": "a" }] }),
            ),
            // An identity that does not exist.
            (
                "two",
                json!({ "certificate": ca("two").pem(), "mappings": [{ "dns": "d", "identity": "zed" }] }),
            ),
            // The same CA subject as another role.
            (
                "two",
                json!({ "certificate": ca("one").pem(), "mappings": [] }),
            ),
            (
                "bad name",
                json!({ "certificate": ca("three").pem(), "mappings": [] }),
            ),
        ] {
            assert!(
                roles.write(name, input.clone(), &Allow).is_err(),
                "{name} {input}"
            );
        }
        assert!(!roles.exists("two"));
        assert_eq!(roles.generation(), generation);
    }

    #[test]
    fn a_deleted_identity_loses_its_certificates() {
        let roles = roles();
        let issuer = ca("ca");
        let (der, _) = leaf(&issuer, "spiffe://x/a", "a.internal", "a");
        let input = json!({
            "certificate": issuer.pem(),
            "mappings": [{ "dns": "a.internal", "identity": "a" }, { "subject_cn": "a", "identity": "b" }],
        });
        roles.write("r", input, &Allow).unwrap();
        assert_eq!(roles.identity_for("r", &der).as_deref(), Some("a"));
        let generation = roles.generation();
        roles.remove_identity("a").unwrap();
        assert_ne!(roles.generation(), generation);
        assert_eq!(
            roles.identity_for("r", &der).as_deref(),
            Some("b"),
            "a later identity named a inherits nothing"
        );
    }
}
