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
    Context, CoreError, Engine, EngineKind, Operation, PublicBody, Request, Response, Route, Writes,
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
fn public_target(rest: &str) -> Option<(&str, Public)> {
    let parts: Vec<&str> = rest.split('/').collect();
    Some(match parts.as_slice() {
        ["ca"] | ["cert", "ca", "raw"] => ("default", Public::Der),
        ["ca", "pem"] | ["cert", "ca", "raw", "pem"] => ("default", Public::Pem),
        ["ca_chain"] => ("default", Public::Chain),
        ["crl"] | ["cert", "crl", "raw"] => ("default", Public::CrlDer),
        ["crl", "pem"] | ["cert", "crl", "raw", "pem"] => ("default", Public::CrlPem),
        ["issuer", r, "der"] => (*r, Public::Der),
        ["issuer", r, "pem"] => (*r, Public::Pem),
        ["issuer", r, "crl", "der"] => (*r, Public::CrlDer),
        ["issuer", r, "crl", "pem"] => (*r, Public::CrlPem),
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

    fn role_exists(&self, rest: &str) -> Result<bool, CoreError> {
        Ok(match rest.strip_prefix("roles/") {
            Some(name) => self.store.view.get(&format!("roles/{name}"))?.is_some(),
            None => true,
        })
    }

    /// Whether `rest` is one of the unauthenticated raw endpoints (no storage access).
    fn public_path(rest: &str) -> bool {
        public_target(rest).is_some()
    }

    /// The answer of an unauthenticated raw endpoint (`None` when `rest` is not one).
    fn public(&self, rest: &str) -> Option<Result<PublicBody, CoreError>> {
        let (reference, what) = public_target(rest)?;
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

    fn handle_request(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let body = match &req.data {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(bad("the request body must be a JSON object")),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let op = req.operation;
        let resp = match (parts.as_slice(), op) {
            (
                [
                    "root" | "intermediate",
                    "generate",
                    "exported" | "kms" | "existing",
                ],
                _,
            ) => Err(bad(
                "only internal generation is supported: a CA key never leaves Sigil",
            )),
            (["root", "generate", "internal"], _) if write => self.store.generate_root(&body),
            (["root", "sign-intermediate"], _) if write => {
                let reference = text(&body, "issuer_ref", "default")?.to_owned();
                let mut body = body;
                body.remove("issuer_ref");
                self.store.sign_intermediate(&reference, &body)
            }
            (["issuer", r, "sign-intermediate"], _) if write => {
                self.store.sign_intermediate(r, &body)
            }
            (["intermediate", "generate", "internal"], _) if write => {
                self.store.generate_intermediate(&body)
            }
            (["intermediate", "set-signed"], _) if write => self.store.set_signed(&body),
            (["issuers"] | ["issuers", ""], Operation::List) => self.store.list_issuers(),
            (["issuer", r] | ["issuer", r, "json"], Operation::Read) => self.store.read_issuer(r),
            (["issuer", r], _) if write => self.store.update_issuer(r, &body),
            (["issuer", r], Operation::Delete) => self.store.delete_issuer(r),
            (["issuer", r, "crl"], Operation::Read) => {
                let issuer = self.store.resolve_issuer(r)?;
                Ok(Response::data(
                    json!({ "crl": self.store.crl(&issuer)?.pem }),
                ))
            }
            (["config", "issuers"], Operation::Read) => self.store.read_config(),
            (["config", "issuers"], _) if write => self.store.write_config(&body),
            (["keys"] | ["keys", ""], Operation::List) => self.store.list_keys(),
            (["cert", "ca"], Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(json!({ "certificate": issuer.certificate })))
            }
            (["cert", "ca_chain"], Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(
                    json!({ "certificate": issuer.certificate, "ca_chain": issuer.ca_chain }),
                ))
            }
            (["cert", "crl"], Operation::Read) => {
                let issuer = self.store.resolve_issuer("default")?;
                Ok(Response::data(
                    json!({ "certificate": self.store.crl(&issuer)?.pem }),
                ))
            }
            (["crl", "rotate"], Operation::Read) => self.store.rotate_crls(),
            (["cert", serial], Operation::Read) => {
                let key = format!("certs/{}", serial_hex(&parse_serial(serial)?));
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
            (["certs", "revoked"] | ["certs", "revoked", ""], Operation::List) => {
                self.store.revoked_serials()
            }
            (["certs"] | ["certs", ""], Operation::List) => {
                list_response(self.store.view.list_children("certs/")?)
            }
            (["roles"] | ["roles", ""], Operation::List) => {
                list_response(self.store.view.list_children("roles/")?)
            }
            (["roles", name], Operation::Read) => {
                let role: Role = self
                    .store
                    .get(&format!("roles/{name}"))?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(
                    serde_json::to_value(role).expect("serializes"),
                ))
            }
            (["roles", name], _) if write => {
                check_name("role", name)?;
                let role = Role::from_body(&body)?;
                let mut batch = ViewBatch::default();
                self.store.put(&mut batch, &format!("roles/{name}"), &role);
                self.store.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (["roles", name], Operation::Delete) => {
                let mut batch = ViewBatch::default();
                batch.delete(&format!("roles/{name}"));
                self.store.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (["issue", role], _) if write => self.issue(None, role, &body),
            (["issuer", r, "issue", role], _) if write => self.issue(Some(r), role, &body),
            (["sign", role], _) if write => self.sign_csr(None, role, &body),
            (["issuer", r, "sign", role], _) if write => self.sign_csr(Some(r), role, &body),
            (["revoke"], _) if write => self.store.revoke(&body),
            (["tidy"], _) if write => self.store.tidy(&body),
            (
                [
                    "root" | "intermediate" | "issuer" | "issuers" | "config" | "keys" | "cert"
                    | "crl" | "certs" | "roles" | "issue" | "sign" | "revoke" | "tidy" | "ca"
                    | "ca_chain",
                    ..,
                ],
                _,
            ) => Err(CoreError::UnsupportedOperation),
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\" (see docs/pki.md)",
                req.path
            ))),
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

/// Every route of a PKI mount (the raw unauthenticated CA and CRL reads are the server's
/// own entries in its OpenAPI document); [`PkiEngine::route`] maps each request to one.
const ROUTES: &[Route] = &[
    Route::new(
        "{mount}/keys",
        &["LIST"],
        "PKI: list CA keys (key_info: name, type, bits; never the key)",
    ),
    Route::new(
        "{mount}/sign/{name}",
        &["POST", "PUT"],
        "PKI: certify a CSR's key under a role",
    ),
    Route::new(
        "{mount}/root/generate/internal",
        &["POST", "PUT"],
        "PKI: generate a root CA issuer (common_name, ttl, key_type ec|rsa|ed25519, key_bits, issuer_name, max_path_length); its key never leaves",
    ),
    Route::new(
        "{mount}/root/sign-intermediate",
        &["POST", "PUT"],
        "PKI: sign an intermediate CA's CSR with the default issuer (or issuer_ref)",
    ),
    Route::new(
        "{mount}/intermediate/generate/internal",
        &["POST", "PUT"],
        "PKI: a new CA key kept here and a CSR for it",
    ),
    Route::new(
        "{mount}/intermediate/set-signed",
        &["POST", "PUT"],
        "PKI: import the signed CA certificate (and chain) for a key of this mount as an issuer",
    ),
    Route::new(
        "{mount}/issuers",
        &["LIST"],
        "PKI: issuer ids with key_info (name, key)",
    ),
    Route::new(
        "{mount}/issuer/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "PKI: read an issuer (id, name or default), rename it (issuer_name) or delete it",
    ),
    Route::new(
        "{mount}/issuer/{name}/sign-intermediate",
        &["POST", "PUT"],
        "PKI: sign an intermediate CA's CSR with this issuer",
    ),
    Route::new(
        "{mount}/issuer/{name}/issue/{role}",
        &["POST", "PUT"],
        "PKI: issue under a role from this issuer",
    ),
    Route::new(
        "{mount}/issuer/{name}/sign/{role}",
        &["POST", "PUT"],
        "PKI: sign a CSR under a role with this issuer",
    ),
    Route::new(
        "{mount}/issuer/{name}/crl",
        &["GET"],
        "PKI: an issuer's CRL (PEM, JSON)",
    )
    .writing(Writes::AlsoReads),
    Route::new(
        "{mount}/config/issuers",
        &["GET", "POST", "PUT"],
        "PKI: the default issuer",
    ),
    Route::new("{mount}/roles", &["LIST"], "PKI: list roles"),
    Route::new(
        "{mount}/roles/{name}",
        &["GET", "POST", "PUT", "DELETE"],
        "PKI: a role (issuer_ref, allowed_domains, allow_subdomains, allow_bare_domains, allow_ip_sans, allowed_uri_sans, key_type, key_bits, key_usage, ext_key_usage, ttl, max_ttl, no_store)",
    ),
    Route::new(
        "{mount}/issue/{name}",
        &["POST", "PUT"],
        "PKI: issue a certificate and its private key (returned sealed) under a role",
    ),
    Route::new(
        "{mount}/revoke",
        &["POST", "PUT"],
        "PKI: revoke by serial_number; rebuilds the issuer's CRL",
    ),
    Route::new(
        "{mount}/tidy",
        &["POST", "PUT"],
        "PKI: remove expired stored and revoked certificates past safety_buffer; new CRLs",
    ),
    Route::new(
        "{mount}/cert/ca",
        &["GET"],
        "PKI: the default issuer's certificate (PEM, JSON)",
    ),
    Route::new(
        "{mount}/cert/ca_chain",
        &["GET"],
        "PKI: the default issuer's certificate and chain (PEM, JSON)",
    ),
    Route::new(
        "{mount}/cert/crl",
        &["GET"],
        "PKI: the default issuer's CRL (PEM, JSON)",
    )
    .writing(Writes::AlsoReads),
    Route::new(
        "{mount}/crl/rotate",
        &["GET"],
        "PKI: sign every issuer's CRL anew",
    )
    .writing(Writes::AlsoReads),
    Route::new(
        "{mount}/cert/{name}",
        &["GET"],
        "PKI: a stored certificate by serial",
    ),
    Route::new(
        "{mount}/certs",
        &["LIST"],
        "PKI: serials of stored certificates",
    ),
    Route::new(
        "{mount}/certs/revoked",
        &["LIST"],
        "PKI: serials of revoked certificates",
    ),
    Route::public(
        "{mount}/ca",
        "PKI: the default issuer's certificate, DER (also cert/ca/raw)",
    ),
    Route::public(
        "{mount}/ca/pem",
        "PKI: the default issuer's certificate, PEM (also cert/ca/raw/pem)",
    ),
    Route::public("{mount}/ca_chain", "PKI: the default issuer's chain, PEM"),
    Route::public(
        "{mount}/crl",
        "PKI: the default issuer's CRL, DER (also cert/crl/raw)",
    )
    .writing(Writes::AlsoReads),
    Route::public(
        "{mount}/crl/pem",
        "PKI: the default issuer's CRL, PEM (also cert/crl/raw/pem)",
    )
    .writing(Writes::AlsoReads),
    Route::public(
        "{mount}/issuer/{name}/pem",
        "PKI: an issuer's certificate, PEM (issuer/{name}/der: DER)",
    ),
    Route::public(
        "{mount}/issuer/{name}/crl/pem",
        "PKI: an issuer's CRL, PEM (issuer/{name}/crl/der: DER)",
    )
    .writing(Writes::AlsoReads),
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
    fn handle(&self, req: &Request, rest: &str, _cx: &Context<'_>) -> Result<Response, CoreError> {
        self.handle_request(req, rest)
    }

    fn exists(&self, rest: &str) -> Result<bool, CoreError> {
        self.role_exists(rest)
    }

    fn route(&self, rest: &str) -> &'static str {
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["root", "sign-intermediate"] => "{mount}/root/sign-intermediate",
            ["root", ..] => "{mount}/root/generate/internal",
            ["intermediate", "set-signed"] => "{mount}/intermediate/set-signed",
            ["intermediate", ..] => "{mount}/intermediate/generate/internal",
            ["issuers"] => "{mount}/issuers",
            ["issuer", _, "sign-intermediate"] => "{mount}/issuer/{name}/sign-intermediate",
            ["issuer", _, "issue", ..] => "{mount}/issuer/{name}/issue/{role}",
            ["issuer", _, "sign", ..] => "{mount}/issuer/{name}/sign/{role}",
            ["issuer", _, "pem" | "der"] => "{mount}/issuer/{name}/pem",
            ["issuer", _, "crl", _] => "{mount}/issuer/{name}/crl/pem",
            ["issuer", _, "crl"] => "{mount}/issuer/{name}/crl",
            ["issuer", ..] => "{mount}/issuer/{name}",
            ["config", ..] => "{mount}/config/issuers",
            ["keys", ..] => "{mount}/keys",
            ["roles"] => "{mount}/roles",
            ["roles", ..] => "{mount}/roles/{name}",
            ["issue", ..] => "{mount}/issue/{name}",
            ["sign", ..] => "{mount}/sign/{name}",
            ["revoke", ..] => "{mount}/revoke",
            ["tidy", ..] => "{mount}/tidy",
            ["certs", "revoked", ..] => "{mount}/certs/revoked",
            ["certs", ..] => "{mount}/certs",
            ["ca"] | ["cert", "ca", "raw"] => "{mount}/ca",
            ["ca", ..] | ["cert", "ca", "raw", ..] => "{mount}/ca/pem",
            ["ca_chain", ..] => "{mount}/ca_chain",
            ["crl", "rotate"] => "{mount}/crl/rotate",
            ["crl"] | ["cert", "crl", "raw"] => "{mount}/crl",
            ["crl", ..] | ["cert", "crl", "raw", ..] => "{mount}/crl/pem",
            ["cert", "ca"] => "{mount}/cert/ca",
            ["cert", "ca_chain"] => "{mount}/cert/ca_chain",
            ["cert", "crl"] => "{mount}/cert/crl",
            _ => "{mount}/cert/{name}",
        }
    }

    /// Reads of a CRL may sign a fresh one; other reads and lists write nothing.
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn is_public(&self, rest: &str) -> bool {
        Self::public_path(rest)
    }

    fn public_read(&self, rest: &str) -> Option<Result<PublicBody, CoreError>> {
        self.public(rest)
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
        assert_eq!(h.engine.route("certs/revoked/"), "{mount}/certs/revoked");
        assert_eq!(h.engine.route("certs/"), "{mount}/certs");
    }
}
