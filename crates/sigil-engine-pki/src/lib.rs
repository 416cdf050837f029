//! The `pki` engine: an internal CA at Vault's paths (rcgen, x509-parser).
//!
//! Issuers (`issuer.rs`): `root/generate/internal`, `intermediate/generate/internal` →
//! `root/sign-intermediate` → `intermediate/set-signed`, several per mount with a default
//! (`config/issuers`). Roles (`role.rs`) say which names, keys and usages a certificate may
//! have. `issue/<role>` makes the key on the server and returns it in the sealed response;
//! `sign/<role>` certifies a CSR's key. Revocation and CRLs are in `crl.rs`. CA certificates
//! and CRLs are also served raw and unauthenticated (`Engine::public_read`), as Vault does, so
//! relying parties can fetch them.

mod crl;
mod issuer;
mod role;
mod store;

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyIdMethod, SanType, SerialNumber};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use issuer::StoredIssuer;
use role::{Role, valid_hostname};
use sigil_engine::barrier::{View, ViewBatch};
use sigil_engine::fields::{bad, list_of, only, text, ttl};
use sigil_engine::path::check_name;
use sigil_engine::request::list_response;
use sigil_engine::{
    Context, CoreError, Engine, EngineKind, Matched, Operation, PublicBody, Request, Response,
    Route, Writes,
};
use store::{Store, StoredCert, dn_text, parse_csr, parse_serial, pem_contents, serial_hex};

/// Default certificate TTL and maximum without a role `max_ttl` (Vault's system default, 32
/// days).
const DEFAULT_TTL: u64 = 32 * 24 * 3600;
const DEFAULT_MAX_TTL: u64 = 32 * 24 * 3600;

const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// What an unauthenticated raw endpoint serves.
enum Public {
    Der,
    Pem,
    Chain,
    CrlDer,
    CrlPem,
}

/// The issuer reference and what to serve, for Vault's raw CA and CRL paths.
fn public_target<'r>(at: &Matched<'r>) -> Option<(&'r str, Public)> {
    Some(match at.route.path {
        CA_DER | CA_RAW => ("default", Public::Der),
        CA_PEM | CA_RAW_PEM => ("default", Public::Pem),
        CA_CHAIN => ("default", Public::Chain),
        CRL_DER | CRL_RAW => ("default", Public::CrlDer),
        CRL_PEM | CRL_RAW_PEM => ("default", Public::CrlPem),
        ISSUER_DER => (at.param("name"), Public::Der),
        ISSUER_PEM => (at.param("name"), Public::Pem),
        ISSUER_CRL_DER => (at.param("name"), Public::CrlDer),
        ISSUER_CRL_PEM => (at.param("name"), Public::CrlPem),
        _ => return None,
    })
}

/// The names a certificate is asked for.
struct Names {
    cn: String,
    dns: Vec<String>,
    ips: Vec<String>,
    uris: Vec<String>,
}

struct PkiEngine {
    store: Store,
}

impl std::fmt::Debug for PkiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiEngine").finish_non_exhaustive()
    }
}

impl PkiEngine {
    fn new(view: View) -> Self {
        PkiEngine {
            store: Store::new(view),
        }
    }

    fn role_exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        Ok(match at.route.path {
            ROLE => {
                let name = at.param("name");
                self.store.view.get(&format!("roles/{name}"))?.is_some()
            }
            _ => true,
        })
    }

    /// The answer of an unauthenticated raw endpoint (`None` when `at` is not one).
    fn public(&self, at: &Matched<'_>) -> Option<Result<PublicBody, CoreError>> {
        let (reference, what) = public_target(at)?;
        Some((|| {
            let issuer = self.store.resolve_issuer(reference)?;
            let (content_type, body) = match what {
                Public::Der => ("application/pkix-cert", pem_contents(&issuer.certificate)?),
                Public::Pem => (PEM_CHAIN, issuer.certificate.into_bytes()),
                Public::Chain => (PEM_CHAIN, issuer.ca_chain.concat().into_bytes()),
                Public::CrlDer => (
                    "application/pkix-crl",
                    pem_contents(&self.store.crl(&issuer)?.pem)?,
                ),
                Public::CrlPem => (
                    "application/x-pem-file",
                    self.store.crl(&issuer)?.pem.into_bytes(),
                ),
            };
            Ok(PublicBody { content_type, body })
        })())
    }

    fn handle_request(&self, req: &Request, at: &Matched<'_>) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let body = match &req.data {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(bad("the request body must be a JSON object")),
        };
        let (name, role) = (at.param("name"), at.param("role"));
        let resp = match (at.route.path, req.operation) {
            (ROOT_GENERATE_OTHER | INTERMEDIATE_GENERATE_OTHER, _) => Err(bad(
                "only internal generation is supported: a CA key never leaves Sigil",
            )),
            (ROOT_GENERATE, _) if write => self.store.generate_root(&body),
            (ROOT_SIGN_INTERMEDIATE, _) if write => {
                let reference = text(&body, "issuer_ref", "default")?.to_owned();
                let mut body = body;
                body.remove("issuer_ref");
                self.store.sign_intermediate(&reference, &body)
            }
            (ISSUER_SIGN_INTERMEDIATE, _) if write => self.store.sign_intermediate(name, &body),
            (INTERMEDIATE_GENERATE, _) if write => self.store.generate_intermediate(&body),
            (SET_SIGNED, _) if write => self.store.set_signed(&body),
            (ISSUERS, Operation::List) => self.store.list_issuers(),
            (ISSUER | ISSUER_JSON, Operation::Read) => self.store.read_issuer(name),
            (ISSUER, _) if write => self.store.update_issuer(name, &body),
            (ISSUER, Operation::Delete) => self.store.delete_issuer(name),
            (ISSUER_CRL, Operation::Read) => {
                let issuer = self.store.resolve_issuer(name)?;
                Ok(Response::data(
                    json!({ "crl": self.store.crl(&issuer)?.pem }),
                ))
            }
            (CONFIG_ISSUERS, Operation::Read) => self.store.read_config(),
            (CONFIG_ISSUERS, _) if write => self.store.write_config(&body),
            (KEYS, Operation::List) => self.store.list_keys(),
            (CERT_CA, Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(json!({ "certificate": issuer.certificate })))
            }
            (CERT_CA_CHAIN, Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(
                    json!({ "certificate": issuer.certificate, "ca_chain": issuer.ca_chain }),
                ))
            }
            (CERT_CRL, Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(
                    json!({ "certificate": self.store.crl(&issuer)?.pem }),
                ))
            }
            (CRL_ROTATE, Operation::Read) => self.store.rotate_crls(),
            (CERT, Operation::Read) => {
                let key = format!("certs/{}", serial_hex(&parse_serial(name)?));
                let cert: StoredCert = self
                    .store
                    .get(&key)?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(json!({
                    "certificate": cert.certificate,
                    "revocation_time": cert.revocation_time,
                    "issuer_id": cert.issuer_id,
                })))
            }
            (CERTS_REVOKED, Operation::List) => self.store.revoked_serials(),
            (CERTS, Operation::List) => list_response(self.store.view.list_children("certs/")?),
            (ROLES, Operation::List) => list_response(self.store.view.list_children("roles/")?),
            (ROLE, Operation::Read) => {
                let role: Role = self
                    .store
                    .get(&format!("roles/{name}"))?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(
                    serde_json::to_value(role).expect("serializes"),
                ))
            }
            (ROLE, _) if write => {
                check_name("role", name)?;
                let role = Role::from_body(&body)?;
                let mut batch = ViewBatch::default();
                self.store.put(&mut batch, &format!("roles/{name}"), &role);
                self.store.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (ROLE, Operation::Delete) => {
                let mut batch = ViewBatch::default();
                batch.delete(&format!("roles/{name}"));
                self.store.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (ISSUE, _) if write => self.issue(None, name, &body),
            (ISSUER_ISSUE, _) if write => self.issue(Some(name), role, &body),
            (SIGN, _) if write => self.sign_csr(None, name, &body),
            (ISSUER_SIGN, _) if write => self.sign_csr(Some(name), role, &body),
            (REVOKE, _) if write => self.store.revoke(&body),
            (TIDY, _) if write => self.store.tidy(&body),
            _ => Err(CoreError::UnsupportedOperation),
        };
        resp.map(|r| r.with_mount_type("pki"))
    }

    fn role(&self, name: &str) -> Result<Role, CoreError> {
        self.store
            .get(&format!("roles/{name}"))?
            .ok_or_else(|| bad(format!("unknown role {name:?}")))
    }

    /// `issue/<role>`: a new key pair made here, certified for the names asked.
    fn issue(
        &self,
        issuer_ref: Option<&str>,
        role_name: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(
            body,
            &["common_name", "alt_names", "ip_sans", "uri_sans", "ttl"],
        )?;
        let role = self.role(role_name)?;
        let names = Names {
            cn: match text(body, "common_name", "")? {
                "" => return Err(bad("common_name is required")),
                cn => cn.to_owned(),
            },
            dns: list_of(body.get("alt_names"))?,
            ips: list_of(body.get("ip_sans"))?,
            uris: list_of(body.get("uri_sans"))?,
        };
        let key = role.key_spec()?.generate()?;
        let issuer = self
            .store
            .resolve_issuer(issuer_ref.unwrap_or(&role.issuer_ref))?;
        let mut out = self.certify(&issuer, role_name, &role, &names, ttl(body, "ttl")?, &key)?;
        let private_key = Zeroizing::new(key.serialize_pem());
        out["private_key"] = json!(private_key.as_str());
        out["private_key_type"] = json!(role.key_type);
        Ok(Response::data(out))
    }

    /// `sign/<role>`: certifies the public key of a CSR, for the CSR's names, under the role.
    /// Only the names and the key are taken from the CSR; extensions (a CA flag, key usages)
    /// come from the role.
    fn sign_csr(
        &self,
        issuer_ref: Option<&str>,
        role_name: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(body, &["csr", "common_name", "ttl"])?;
        let role = self.role(role_name)?;
        let csr = parse_csr(text(body, "csr", "")?)?;
        role.key_spec()?.admits(csr.key)?;
        let params = &csr.params.params;
        let cn = params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(dn_text)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                body.get("common_name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("the CSR has no common name (give common_name)"))?;
        let mut names = Names {
            cn,
            dns: vec![],
            ips: vec![],
            uris: vec![],
        };
        for san in &params.subject_alt_names {
            match san {
                SanType::DnsName(d) => names.dns.push(d.as_str().to_owned()),
                SanType::IpAddress(ip) => names.ips.push(ip.to_string()),
                SanType::URI(u) => names.uris.push(u.as_str().to_owned()),
                _ => {
                    return Err(bad(
                        "the CSR has a SAN type Sigil does not issue (email, other name)",
                    ));
                }
            }
        }
        let issuer = self
            .store
            .resolve_issuer(issuer_ref.unwrap_or(&role.issuer_ref))?;
        let out = self.certify(
            &issuer,
            role_name,
            &role,
            &names,
            ttl(body, "ttl")?,
            &csr.params.public_key,
        )?;
        Ok(Response::data(out))
    }

    /// Checks `names` against `role` and issues a certificate for `public_key` from `issuer`.
    fn certify(
        &self,
        issuer: &StoredIssuer,
        role_name: &str,
        role: &Role,
        names: &Names,
        asked_ttl: u64,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<Value, CoreError> {
        let cn = names.cn.to_ascii_lowercase();
        let mut dns = vec![cn.clone()];
        dns.extend(
            names
                .dns
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .filter(|d| *d != cn),
        );
        for name in &dns {
            if !valid_hostname(name) {
                return Err(bad(format!(
                    "{name:?} is not a host name Sigil certifies (letters, digits, hyphens; no wildcards)"
                )));
            }
            if !role.allows_domain(name) {
                return Err(bad(format!(
                    "{name:?} is not an allowed domain for role {role_name:?}"
                )));
            }
        }
        if !names.ips.is_empty() && !role.allow_ip_sans {
            return Err(bad(format!("role {role_name:?} does not allow IP SANs")));
        }
        for u in &names.uris {
            if !role.allowed_uri_sans.iter().any(|p| role::glob(p, u)) {
                return Err(bad(format!(
                    "URI SAN {u:?} is not allowed by role {role_name:?}"
                )));
            }
        }
        let mut lifetime = match (asked_ttl, role.ttl) {
            (0, 0) => DEFAULT_TTL,
            (0, t) => t,
            (a, _) => a,
        };
        // The role's max_ttl, or Vault's default maximum of 32 days.
        lifetime = lifetime.min(match role.max_ttl {
            0 => DEFAULT_MAX_TTL,
            m => m,
        });
        let now = OffsetDateTime::now_utc();
        // Never outlive the issuer.
        let not_after = (now + Duration::seconds(lifetime as i64))
            .min(OffsetDateTime::from_unix_timestamp(issuer.not_after).map_err(bad)?);
        if not_after <= now {
            return Err(bad("the issuer has expired: no certificate can be issued"));
        }

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names.cn.as_str());
        let mut sans = Vec::new();
        for d in &dns {
            let name = d
                .clone()
                .try_into()
                .map_err(|_| bad(format!("{d:?} is not a valid DNS name")))?;
            sans.push(SanType::DnsName(name));
        }
        for ip in &names.ips {
            sans.push(SanType::IpAddress(
                ip.parse::<IpAddr>()
                    .map_err(|_| bad(format!("{ip:?} is not an IP address")))?,
            ));
        }
        for u in &names.uris {
            sans.push(SanType::URI(
                u.clone()
                    .try_into()
                    .map_err(|_| bad(format!("{u:?} is not a valid URI")))?,
            ));
        }
        params.subject_alt_names = sans;
        params.key_usages = role.key_usages();
        params.extended_key_usages = role.ext_key_usages();
        params.not_before = now - Duration::seconds(30);
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;

        let signer = self.store.signer(issuer)?;
        let _guard = self.store.lock();
        let serial = self.store.unused_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(public_key, &signer).map_err(bad)?;
        let pem = cert.pem();
        let serial_text = serial_hex(&serial);
        if !role.no_store {
            let mut batch = ViewBatch::default();
            self.store.put(
                &mut batch,
                &format!("certs/{serial_text}"),
                &StoredCert {
                    certificate: pem.clone(),
                    not_after: not_after.unix_timestamp(),
                    revocation_time: 0,
                    issuer_id: issuer.issuer_id.clone(),
                },
            );
            self.store.view.apply(batch)?;
        }
        Ok(json!({
            "certificate": pem,
            "issuing_ca": issuer.certificate,
            "ca_chain": issuer.ca_chain,
            "serial_number": serial_text,
            "expiration": not_after.unix_timestamp(),
        }))
    }
}

/// The `pki` engine kind: register it with the core to offer `sigil secrets enable pki`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pki;

const KEYS: &str = "{mount}/keys";
const SIGN: &str = "{mount}/sign/{name}";
const ROOT_GENERATE: &str = "{mount}/root/generate/internal";
const ROOT_SIGN_INTERMEDIATE: &str = "{mount}/root/sign-intermediate";
const INTERMEDIATE_GENERATE: &str = "{mount}/intermediate/generate/internal";
const SET_SIGNED: &str = "{mount}/intermediate/set-signed";
const ISSUERS: &str = "{mount}/issuers";
const ISSUER: &str = "{mount}/issuer/{name}";
const ISSUER_SIGN_INTERMEDIATE: &str = "{mount}/issuer/{name}/sign-intermediate";
const ISSUER_ISSUE: &str = "{mount}/issuer/{name}/issue/{role}";
const ISSUER_SIGN: &str = "{mount}/issuer/{name}/sign/{role}";
const ISSUER_CRL: &str = "{mount}/issuer/{name}/crl";
const CONFIG_ISSUERS: &str = "{mount}/config/issuers";
const ROLES: &str = "{mount}/roles";
const ROLE: &str = "{mount}/roles/{name}";
const ISSUE: &str = "{mount}/issue/{name}";
const REVOKE: &str = "{mount}/revoke";
const TIDY: &str = "{mount}/tidy";
const CERT_CA: &str = "{mount}/cert/ca";
const CERT_CA_CHAIN: &str = "{mount}/cert/ca_chain";
const CERT_CRL: &str = "{mount}/cert/crl";
const CRL_ROTATE: &str = "{mount}/crl/rotate";
const CERT: &str = "{mount}/cert/{name}";
const CERTS: &str = "{mount}/certs";
const CERTS_REVOKED: &str = "{mount}/certs/revoked";
const CA_DER: &str = "{mount}/ca";
const CA_PEM: &str = "{mount}/ca/pem";
const CA_CHAIN: &str = "{mount}/ca_chain";
const CRL_DER: &str = "{mount}/crl";
const CRL_PEM: &str = "{mount}/crl/pem";
const ISSUER_PEM: &str = "{mount}/issuer/{name}/pem";
const ISSUER_CRL_PEM: &str = "{mount}/issuer/{name}/crl/pem";
const ROOT_GENERATE_OTHER: &str = "{mount}/root/generate/{type}";
const INTERMEDIATE_GENERATE_OTHER: &str = "{mount}/intermediate/generate/{type}";
const ISSUER_JSON: &str = "{mount}/issuer/{name}/json";
const CA_RAW: &str = "{mount}/cert/ca/raw";
const CA_RAW_PEM: &str = "{mount}/cert/ca/raw/pem";
const CRL_RAW: &str = "{mount}/cert/crl/raw";
const CRL_RAW_PEM: &str = "{mount}/cert/crl/raw/pem";
const ISSUER_DER: &str = "{mount}/issuer/{name}/der";
const ISSUER_CRL_DER: &str = "{mount}/issuer/{name}/crl/der";

/// Every route of a PKI mount, the raw unauthenticated CA and CRL reads among them.
const ROUTES: &[Route] = &[
    Route::new(
        KEYS,
        &["LIST"],
        "PKI: list CA keys (key_info: name, type, bits; never the key)",
    ),
    Route::new(
        SIGN,
        &["POST", "PUT"],
        "PKI: certify a CSR's key under a role",
    ),
    Route::new(
        ROOT_GENERATE,
        &["POST", "PUT"],
        "PKI: generate a root CA issuer (common_name, ttl, key_type ec|rsa|ed25519, key_bits, issuer_name, max_path_length); its key never leaves",
    ),
    Route::new(
        ROOT_SIGN_INTERMEDIATE,
        &["POST", "PUT"],
        "PKI: sign an intermediate CA's CSR with the default issuer (or issuer_ref)",
    ),
    Route::new(
        INTERMEDIATE_GENERATE,
        &["POST", "PUT"],
        "PKI: a new CA key kept here and a CSR for it",
    ),
    Route::new(
        SET_SIGNED,
        &["POST", "PUT"],
        "PKI: import the signed CA certificate (and chain) for a key of this mount as an issuer",
    ),
    Route::new(
        ISSUERS,
        &["LIST"],
        "PKI: issuer ids with key_info (name, key)",
    ),
    Route::new(
        ISSUER,
        &["GET", "POST", "PUT", "DELETE"],
        "PKI: read an issuer (id, name or default), rename it (issuer_name) or delete it",
    ),
    Route::new(
        ISSUER_SIGN_INTERMEDIATE,
        &["POST", "PUT"],
        "PKI: sign an intermediate CA's CSR with this issuer",
    ),
    Route::new(
        ISSUER_ISSUE,
        &["POST", "PUT"],
        "PKI: issue under a role from this issuer",
    ),
    Route::new(
        ISSUER_SIGN,
        &["POST", "PUT"],
        "PKI: sign a CSR under a role with this issuer",
    ),
    Route::new(ISSUER_CRL, &["GET"], "PKI: an issuer's CRL (PEM, JSON)").writing(Writes::AlsoReads),
    Route::new(
        CONFIG_ISSUERS,
        &["GET", "POST", "PUT"],
        "PKI: the default issuer",
    ),
    Route::new(ROLES, &["LIST"], "PKI: list roles"),
    Route::new(
        ROLE,
        &["GET", "POST", "PUT", "DELETE"],
        "PKI: a role (issuer_ref, allowed_domains, allow_subdomains, allow_bare_domains, allow_ip_sans, allowed_uri_sans, key_type, key_bits, key_usage, ext_key_usage, ttl, max_ttl, no_store)",
    ),
    Route::new(
        ISSUE,
        &["POST", "PUT"],
        "PKI: issue a certificate and its private key (returned sealed) under a role",
    ),
    Route::new(
        REVOKE,
        &["POST", "PUT"],
        "PKI: revoke by serial_number; rebuilds the issuer's CRL",
    ),
    Route::new(
        TIDY,
        &["POST", "PUT"],
        "PKI: remove expired stored and revoked certificates past safety_buffer; new CRLs",
    ),
    Route::new(
        CERT_CA,
        &["GET"],
        "PKI: the default issuer's certificate (PEM, JSON)",
    ),
    Route::new(
        CERT_CA_CHAIN,
        &["GET"],
        "PKI: the default issuer's certificate and chain (PEM, JSON)",
    ),
    Route::new(
        CERT_CRL,
        &["GET"],
        "PKI: the default issuer's CRL (PEM, JSON)",
    )
    .writing(Writes::AlsoReads),
    Route::new(CRL_ROTATE, &["GET"], "PKI: sign every issuer's CRL anew")
        .writing(Writes::AlsoReads),
    Route::new(CERT, &["GET"], "PKI: a stored certificate by serial"),
    Route::new(CERTS, &["LIST"], "PKI: serials of stored certificates"),
    Route::new(
        CERTS_REVOKED,
        &["LIST"],
        "PKI: serials of revoked certificates",
    ),
    Route::public(CA_DER, "PKI: the default issuer's certificate, DER"),
    Route::public(CA_PEM, "PKI: the default issuer's certificate, PEM"),
    Route::public(CA_CHAIN, "PKI: the default issuer's chain, PEM"),
    Route::public(CRL_DER, "PKI: the default issuer's CRL, DER").writing(Writes::AlsoReads),
    Route::public(CRL_PEM, "PKI: the default issuer's CRL, PEM").writing(Writes::AlsoReads),
    Route::public(ISSUER_PEM, "PKI: an issuer's certificate, PEM"),
    Route::public(ISSUER_CRL_PEM, "PKI: an issuer's CRL, PEM").writing(Writes::AlsoReads),
    Route::new(
        ROOT_GENERATE_OTHER,
        &["POST", "PUT"],
        "PKI: exported, kms and existing are refused: a CA key never leaves Sigil",
    ),
    Route::new(
        INTERMEDIATE_GENERATE_OTHER,
        &["POST", "PUT"],
        "PKI: exported, kms and existing are refused: a CA key never leaves Sigil",
    ),
    Route::new(
        ISSUER_JSON,
        &["GET"],
        "PKI: read an issuer (as issuer/{name})",
    ),
    Route::public(CA_RAW, "PKI: the default issuer's certificate, DER (as ca)"),
    Route::public(
        CA_RAW_PEM,
        "PKI: the default issuer's certificate, PEM (as ca/pem)",
    ),
    Route::public(CRL_RAW, "PKI: the default issuer's CRL, DER (as crl)")
        .writing(Writes::AlsoReads),
    Route::public(
        CRL_RAW_PEM,
        "PKI: the default issuer's CRL, PEM (as crl/pem)",
    )
    .writing(Writes::AlsoReads),
    Route::public(ISSUER_DER, "PKI: an issuer's certificate, DER"),
    Route::public(ISSUER_CRL_DER, "PKI: an issuer's CRL, DER").writing(Writes::AlsoReads),
];

impl EngineKind for Pki {
    fn name(&self) -> &'static str {
        "pki"
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn mount(&self, at: sigil_engine::MountPoint<'_>) -> Box<dyn Engine> {
        Box::new(PkiEngine::new(at.view))
    }
}

impl Engine for PkiEngine {
    fn handle(
        &self,
        req: &Request,
        at: &Matched<'_>,
        _cx: &Context<'_>,
    ) -> Result<Response, CoreError> {
        self.handle_request(req, at)
    }

    fn exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        self.role_exists(at)
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn public_read(&self, at: &Matched<'_>) -> Option<Result<PublicBody, CoreError>> {
        self.public(at)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sigil_engine::testing::Harness;
    use sigil_engine::{CoreError, Operation};

    use super::Pki;

    #[test]
    fn revoked_serials_are_listed_and_only_those() {
        let h = Harness::new(&Pki, "pki/");
        let post = |path: &str, body: Value| h.call(Operation::Update, path, body).unwrap();
        post(
            "pki/root/generate/internal",
            json!({ "common_name": "Test Root", "ttl": "24h" }),
        );
        post(
            "pki/roles/web",
            json!({ "allowed_domains": "example.com", "allow_subdomains": true, "ttl": "1h" }),
        );
        let list = || h.call(Operation::List, "pki/certs/revoked", Value::Null);
        assert!(matches!(list(), Err(CoreError::NotFound(_))), "none yet");
        let issue = |name: &str| {
            post("pki/issue/web", json!({ "common_name": name }))["serial_number"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (kept, revoked) = (issue("a.example.com"), issue("b.example.com"));
        post("pki/revoke", json!({ "serial_number": revoked }));
        assert_eq!(list().unwrap()["keys"], json!([revoked]));
        let all = h.call(Operation::List, "pki/certs", Value::Null).unwrap();
        assert!(all["keys"].as_array().unwrap().contains(&json!(kept)));
        // The raw, unauthenticated reads by each of Vault's names.
        for (paths, content_type) in [
            (
                ["pki/ca", "pki/cert/ca/raw", "pki/issuer/default/der"],
                "application/pkix-cert",
            ),
            (
                [
                    "pki/ca/pem",
                    "pki/cert/ca/raw/pem",
                    "pki/issuer/default/pem",
                ],
                super::PEM_CHAIN,
            ),
            (
                ["pki/crl", "pki/cert/crl/raw", "pki/issuer/default/crl/der"],
                "application/pkix-crl",
            ),
            (
                [
                    "pki/crl/pem",
                    "pki/cert/crl/raw/pem",
                    "pki/issuer/default/crl/pem",
                ],
                "application/x-pem-file",
            ),
        ] {
            let bodies: Vec<Vec<u8>> = paths
                .iter()
                .map(|path| {
                    let body = h.public_read(path).expect(path).unwrap();
                    assert_eq!(body.content_type, content_type, "{path}");
                    body.body
                })
                .collect();
            assert!(bodies.iter().all(|b| *b == bodies[0]), "{paths:?}");
        }
        assert!(
            h.public_read("pki/cert/ca").is_none(),
            "the JSON read is signed"
        );
        let json = h.call(Operation::Read, "pki/issuer/default/json", Value::Null);
        assert!(json.unwrap()["certificate"].is_string());
        match h.call(Operation::Update, "pki/root/generate/exported", json!({})) {
            Err(CoreError::BadRequest(m)) => assert!(m.contains("never leaves"), "{m}"),
            other => panic!("{other:?}"),
        }
        let route = |path| h.route(Operation::List, path);
        assert_eq!(route("pki/certs/revoked"), Some("{mount}/certs/revoked"));
        assert_eq!(route("pki/certs"), Some("{mount}/certs"));
    }
}
