//! The `pki` engine: an internal CA at Vault's paths (rcgen). This first part has one issuer
//! (a generated root), roles, `issue` (the key is made on the server and returned in the
//! sealed response), `revoke` and a CRL rebuilt on every revocation.
//!
//! `root/generate/internal`, `cert/ca`, `cert/crl`, `cert/<serial>`, `certs` (LIST),
//! `roles/<name>` (GET/POST/DELETE, LIST), `issue/<role>`, `revoke`.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::barrier::{View, ViewBatch};
use crate::path::check_name;
use crate::request::{children, list_response};
use crate::{CoreError, Operation, Request, Response, duration};

const ISSUER_KEY: &str = "issuer";
const CRL_KEY: &str = "crl";
/// Default certificate TTL and maximum without a role `max_ttl` (Vault's system default, 32
/// days).
const DEFAULT_TTL: u64 = 32 * 24 * 3600;
const DEFAULT_MAX_TTL: u64 = 32 * 24 * 3600;
/// How long a CRL is valid: it is rebuilt on every revocation and on demand.
const CRL_LIFETIME: i64 = 72 * 3600;

#[derive(Clone, Serialize, Deserialize)]
struct StoredIssuer {
    issuer_id: String,
    issuer_name: String,
    certificate: String,
    /// PKCS#8 PEM.
    key: String,
    not_after: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(default)]
struct Role {
    allowed_domains: Vec<String>,
    allow_subdomains: bool,
    allow_bare_domains: bool,
    allow_any_name: bool,
    allow_localhost: bool,
    allow_ip_sans: bool,
    allowed_uri_sans: Vec<String>,
    key_type: String,
    key_bits: u64,
    ttl: u64,
    max_ttl: u64,
    no_store: bool,
    server_flag: bool,
    client_flag: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredCert {
    certificate: String,
    not_after: i64,
    #[serde(default)]
    revocation_time: i64,
}

/// A CSR's key must be the role's type and size. The length of the public key catches an EC
/// key whose curve differs from what its signature algorithm implies.
fn csr_key_matches(key: &rcgen::PublicKey, role: &Role) -> Result<(), CoreError> {
    use rcgen::PublicKeyData as _;
    let alg = key.algorithm();
    let len = key.der_bytes().len();
    let ok = match (role.key_type.as_str(), role.key_bits) {
        ("ec", 0 | 256) => alg == &rcgen::PKCS_ECDSA_P256_SHA256 && len == 65,
        ("ec", 384) => alg == &rcgen::PKCS_ECDSA_P384_SHA384 && len == 97,
        ("ed25519", _) => alg == &rcgen::PKCS_ED25519 && len == 32,
        ("rsa", _) => [
            &rcgen::PKCS_RSA_SHA256,
            &rcgen::PKCS_RSA_SHA384,
            &rcgen::PKCS_RSA_SHA512,
        ]
        .contains(&alg),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "the CSR's key is not what the role allows (key_type {}, key_bits {})",
            role.key_type, role.key_bits
        )))
    }
}

/// The names a certificate is asked for.
struct Names {
    cn: String,
    dns: Vec<String>,
    ips: Vec<String>,
    uris: Vec<String>,
}

/// A distinguished-name value as text.
fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        // Other string types are not used for host names: ask for common_name instead.
        _ => String::new(),
    }
}

#[derive(Clone, Serialize, Deserialize, Default)]
struct CrlState {
    number: u64,
    pem: String,
    /// Unix seconds; the CRL is signed again once less than half its lifetime is left.
    #[serde(default)]
    next_update: i64,
}

pub(crate) struct PkiEngine {
    view: View,
    writes: Mutex<()>,
}

impl std::fmt::Debug for PkiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiEngine").finish_non_exhaustive()
    }
}

fn bad(e: impl std::fmt::Display) -> CoreError {
    CoreError::bad(e.to_string())
}

fn list_of(v: Option<&Value>) -> Result<Vec<String>, CoreError> {
    Ok(match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("lists hold strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("expected a list or a comma-separated string")),
    })
}

fn flag(body: &Map<String, Value>, name: &str, default: bool) -> Result<bool, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| bad(format!("{name} must be true or false"))),
        Some(_) => Err(bad(format!("{name} must be true or false"))),
    }
}

fn ttl(body: &Map<String, Value>, name: &str) -> Result<u64, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(v) => duration::seconds(v, name),
    }
}

/// A number field, given as a JSON number or a string of digits (`sigil write` sends strings).
fn number(body: &Map<String, Value>, name: &str) -> Result<u64, CoreError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad(format!("{name} must be a number"))),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| bad(format!("{name} must be a number"))),
        Some(_) => Err(bad(format!("{name} must be a number"))),
    }
}

/// Refuses fields an endpoint does not implement, so none is silently ignored.
fn only(body: &Map<String, Value>, known: &[&str]) -> Result<(), CoreError> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "{k} is not supported here (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A DNS name Sigil certifies: letters, digits and hyphens in labels of 1–63 characters,
/// at most 253 in all; no wildcards.
fn valid_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn key_pair(key_type: &str, bits: u64) -> Result<KeyPair, CoreError> {
    let alg = match (key_type, bits) {
        ("ec", 0 | 256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        ("ec", 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        ("ed25519", 0) => &rcgen::PKCS_ED25519,
        ("rsa", 0 | 2048) => &rcgen::PKCS_RSA_SHA256,
        _ => {
            return Err(bad(
                "key_type/key_bits must be ec (256, 384), ed25519, or rsa (2048)",
            ));
        }
    };
    KeyPair::generate_for(alg).map_err(bad)
}

fn serial_hex(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_serial(text: &str) -> Result<Vec<u8>, CoreError> {
    let hex: String = text.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.is_empty()
        || !hex.len().is_multiple_of(2)
        || hex.len() > 40
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad("serial_number must be hex, e.g. 1a:2b:…"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad("serial_number must be hex"))
        })
        .collect()
}

/// A random positive 128-bit serial (RFC 5280: at most 20 octets, positive).
fn new_serial() -> Result<Vec<u8>, CoreError> {
    let mut b =
        sigil_crypto::random::bytes::<16>().map_err(|_| bad("random number generator failed"))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(b.to_vec())
}

/// `a.example.com` matches `example.com` (bare) or `*.example.com` (subdomains) per role.
fn domain_allowed(role: &Role, name: &str) -> bool {
    if role.allow_any_name {
        return true;
    }
    if role.allow_localhost && name == "localhost" {
        return true;
    }
    role.allowed_domains.iter().any(|d| {
        let d = d.trim_start_matches("*.");
        (role.allow_bare_domains && name == d)
            || (role.allow_subdomains
                && name.len() > d.len() + 1
                && name.ends_with(d)
                && name.as_bytes()[name.len() - d.len() - 1] == b'.')
    })
}

/// A glob with `*` matching any run of characters (Vault's allowed_uri_sans).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| {
                    text.is_char_boundary(head.len() + i) && glob(tail, &text[head.len() + i..])
                })
        }
    }
}

impl PkiEngine {
    pub(crate) fn new(view: View) -> Self {
        PkiEngine {
            view,
            writes: Mutex::new(()),
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CoreError> {
        match self.view.get(key)? {
            Some(e) => Ok(Some(
                serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
            )),
            None => Ok(None),
        }
    }

    fn put(&self, batch: &mut ViewBatch, key: &str, value: &impl Serialize) {
        batch.put(key, serde_json::to_vec(value).expect("serializes"));
    }

    fn issuer(&self) -> Result<StoredIssuer, CoreError> {
        self.get(ISSUER_KEY)?
            .ok_or_else(|| bad("this mount has no issuer yet: POST root/generate/internal first"))
    }

    pub(crate) fn exists(&self, rest: &str) -> Result<bool, CoreError> {
        Ok(match rest.strip_prefix("roles/") {
            Some(name) => self.view.get(&format!("roles/{name}"))?.is_some(),
            None => true,
        })
    }

    pub(crate) fn handle(&self, req: &Request, rest: &str) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let body = match &req.data {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(bad("the request body must be a JSON object")),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let resp = match (parts.as_slice(), req.operation) {
            (["root", "generate", "internal" | "exported"], _) if write => {
                if parts[2] == "exported" {
                    return Err(bad(
                        "exported roots are not supported: the CA key never leaves Sigil",
                    ));
                }
                self.generate_root(&body)
            }
            (["cert", "ca"] | ["ca", "pem"], Operation::Read) => Ok(Response::data(
                json!({ "certificate": self.issuer()?.certificate }),
            )),
            (["cert", "crl"] | ["crl", "pem"], Operation::Read) => {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                let crl: CrlState = match self.get::<CrlState>(CRL_KEY)? {
                    Some(c) if c.next_update - now > CRL_LIFETIME / 2 => c,
                    _ => self.rebuild_crl()?,
                };
                Ok(Response::data(json!({ "certificate": crl.pem })))
            }
            (["crl", "rotate"], Operation::Read) => {
                self.rebuild_crl()?;
                Ok(Response::data(json!({ "success": true })))
            }
            (["cert", serial], Operation::Read) => {
                let key = format!("certs/{}", serial_hex(&parse_serial(serial)?));
                let cert: StoredCert = self
                    .get(&key)?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(json!({
                    "certificate": cert.certificate,
                    "revocation_time": cert.revocation_time,
                })))
            }
            (["certs"] | ["certs", ""], Operation::List) => {
                let keys = self.view.list("certs/")?;
                list_response(children("certs/".len(), keys))
            }
            (["roles"] | ["roles", ""], Operation::List) => {
                list_response(children("roles/".len(), self.view.list("roles/")?))
            }
            (["roles", name], Operation::Read) => {
                let role: Role = self
                    .get(&format!("roles/{name}"))?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(Response::data(
                    serde_json::to_value(role).expect("serializes"),
                ))
            }
            (["roles", name], _) if write => self.write_role(name, &body),
            (["roles", name], Operation::Delete) => {
                let mut batch = ViewBatch::default();
                batch.delete(&format!("roles/{name}"));
                self.view.apply(batch)?;
                Ok(Response::no_content())
            }
            (["issue", role], _) if write => self.issue(role, &body),
            (["sign", role], _) if write => self.sign_csr(role, &body),
            (["revoke"], _) if write => self.revoke(&body),
            (["tidy"], _) if write => self.tidy(&body),
            (
                [
                    "root" | "cert" | "crl" | "certs" | "roles" | "issue" | "revoke" | "ca",
                    ..,
                ],
                _,
            ) => Err(CoreError::UnsupportedOperation),
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\" (PKI: root/generate/internal, roles, issue, revoke, cert/ca, cert/crl)",
                req.path
            ))),
        };
        resp.map(|r| r.with_mount_type("pki"))
    }

    fn generate_root(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(
            body,
            &["common_name", "ttl", "key_type", "key_bits", "issuer_name"],
        )?;
        let cn = body
            .get("common_name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("common_name is required"))?;
        let lifetime = match ttl(body, "ttl")? {
            0 => 10 * 365 * 24 * 3600,
            t => t,
        };
        let key_type = body.get("key_type").and_then(Value::as_str).unwrap_or("ec");
        let bits = number(body, "key_bits")?;
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        if self.view.get(ISSUER_KEY)?.is_some() {
            return Err(bad(
                "this mount has an issuer already (several issuers are not supported yet)",
            ));
        }
        let key = key_pair(key_type, bits)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::seconds(30);
        params.not_after = now + Duration::seconds(lifetime as i64);
        let serial = new_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key).map_err(bad)?;
        let issuer = StoredIssuer {
            issuer_id: crate::identity::random_id()?,
            issuer_name: body
                .get("issuer_name")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned(),
            certificate: cert.pem(),
            key: key.serialize_pem(),
            not_after: params.not_after.unix_timestamp(),
        };
        let mut batch = ViewBatch::default();
        batch.expect(ISSUER_KEY, None);
        self.put(&mut batch, ISSUER_KEY, &issuer);
        self.view.apply(batch)?;
        tracing::info!(issuer = %issuer.issuer_id, "pki root generated");
        Ok(Response::data(json!({
            "certificate": issuer.certificate,
            "issuing_ca": issuer.certificate,
            "serial_number": serial_hex(&serial),
            "issuer_id": issuer.issuer_id,
            "issuer_name": issuer.issuer_name,
            "expiration": issuer.not_after,
        })))
    }

    fn write_role(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        check_name("role", name)?;
        let known = [
            "allowed_domains",
            "allow_subdomains",
            "allow_bare_domains",
            "allow_any_name",
            "allow_localhost",
            "allow_ip_sans",
            "allowed_uri_sans",
            "key_type",
            "key_bits",
            "ttl",
            "max_ttl",
            "no_store",
            "server_flag",
            "client_flag",
        ];
        if let Some(k) = body.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "{k} is not supported in a role yet (known: {})",
                known.join(", ")
            )));
        }
        let role = Role {
            allowed_domains: list_of(body.get("allowed_domains"))?,
            allow_subdomains: flag(body, "allow_subdomains", false)?,
            allow_bare_domains: flag(body, "allow_bare_domains", false)?,
            allow_any_name: flag(body, "allow_any_name", false)?,
            allow_localhost: flag(body, "allow_localhost", true)?,
            allow_ip_sans: flag(body, "allow_ip_sans", true)?,
            allowed_uri_sans: list_of(body.get("allowed_uri_sans"))?,
            key_type: body
                .get("key_type")
                .and_then(Value::as_str)
                .unwrap_or("ec")
                .to_owned(),
            key_bits: number(body, "key_bits")?,
            ttl: ttl(body, "ttl")?,
            max_ttl: ttl(body, "max_ttl")?,
            no_store: flag(body, "no_store", false)?,
            server_flag: flag(body, "server_flag", true)?,
            client_flag: flag(body, "client_flag", true)?,
        };
        key_pair_check(&role.key_type, role.key_bits)?;
        if role.max_ttl != 0 && role.ttl > role.max_ttl {
            return Err(bad("ttl cannot exceed max_ttl"));
        }
        let mut batch = ViewBatch::default();
        self.put(&mut batch, &format!("roles/{name}"), &role);
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    fn role(&self, name: &str) -> Result<Role, CoreError> {
        self.get(&format!("roles/{name}"))?
            .ok_or_else(|| bad(format!("unknown role {name:?}")))
    }

    /// `issue/<role>`: a new key pair made here, certified for the names asked.
    fn issue(&self, role_name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(
            body,
            &["common_name", "alt_names", "ip_sans", "uri_sans", "ttl"],
        )?;
        let role = self.role(role_name)?;
        let cn = body
            .get("common_name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("common_name is required"))?;
        let names = Names {
            cn: cn.to_owned(),
            dns: list_of(body.get("alt_names"))?,
            ips: list_of(body.get("ip_sans"))?,
            uris: list_of(body.get("uri_sans"))?,
        };
        let key = key_pair(&role.key_type, role.key_bits)?;
        let mut out = self.certify(role_name, &role, &names, ttl(body, "ttl")?, &key)?;
        let private_key = Zeroizing::new(key.serialize_pem());
        out["private_key"] = json!(private_key.as_str());
        out["private_key_type"] = json!(role.key_type);
        Ok(Response::data(out))
    }

    /// `sign/<role>`: certifies the public key of a CSR, for the CSR's names, under the role.
    /// Only the names and the key are taken from the CSR; extensions (a CA flag, key usages)
    /// come from the role.
    fn sign_csr(&self, role_name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(body, &["csr", "common_name", "ttl"])?;
        let role = self.role(role_name)?;
        let csr = body
            .get("csr")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("csr (PEM) is required"))?;
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr)
            .map_err(|_| {
                bad("csr is not a valid, correctly signed PEM certificate request (or has an extension Sigil does not read)")
            })?;
        csr_key_matches(&csr.public_key, &role)?;
        let cn = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(dn_text)
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
        for san in &csr.params.subject_alt_names {
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
        let out = self.certify(role_name, &role, &names, ttl(body, "ttl")?, &csr.public_key)?;
        Ok(Response::data(out))
    }

    /// Checks `names` against `role` and issues a certificate for `public_key`.
    fn certify(
        &self,
        role_name: &str,
        role: &Role,
        names: &Names,
        asked_ttl: u64,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<Value, CoreError> {
        let stored = self.issuer()?;
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
            if !domain_allowed(role, name) {
                return Err(bad(format!(
                    "{name:?} is not an allowed domain for role {role_name:?}"
                )));
            }
        }
        if !names.ips.is_empty() && !role.allow_ip_sans {
            return Err(bad(format!("role {role_name:?} does not allow IP SANs")));
        }
        for u in &names.uris {
            if !role.allowed_uri_sans.iter().any(|p| glob(p, u)) {
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
            .min(OffsetDateTime::from_unix_timestamp(stored.not_after).map_err(bad)?);
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
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = [
            (role.server_flag, ExtendedKeyUsagePurpose::ServerAuth),
            (role.client_flag, ExtendedKeyUsagePurpose::ClientAuth),
        ]
        .into_iter()
        .filter_map(|(on, p)| on.then_some(p))
        .collect();
        params.not_before = now - Duration::seconds(30);
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;

        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut serial = new_serial()?;
        while self
            .view
            .get(&format!("certs/{}", serial_hex(&serial)))?
            .is_some()
        {
            serial = new_serial()?;
        }
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let ca_key = KeyPair::from_pem(&stored.key).map_err(|_| CoreError::Integrity)?;
        let issuer = Issuer::from_ca_cert_pem(&stored.certificate, ca_key)
            .map_err(|_| CoreError::Integrity)?;
        let cert = params.signed_by(public_key, &issuer).map_err(bad)?;
        let pem = cert.pem();
        let serial_text = serial_hex(&serial);
        if !role.no_store {
            let mut batch = ViewBatch::default();
            self.put(
                &mut batch,
                &format!("certs/{serial_text}"),
                &StoredCert {
                    certificate: pem.clone(),
                    not_after: not_after.unix_timestamp(),
                    revocation_time: 0,
                },
            );
            self.view.apply(batch)?;
        }
        Ok(json!({
            "certificate": pem,
            "issuing_ca": stored.certificate,
            "ca_chain": [stored.certificate],
            "serial_number": serial_text,
            "expiration": not_after.unix_timestamp(),
        }))
    }

    fn revoke(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        let serial = body
            .get("serial_number")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("serial_number is required"))?;
        let key = format!("certs/{}", serial_hex(&parse_serial(serial)?));
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cert: StoredCert = self
            .get(&key)?
            .ok_or_else(|| bad("no stored certificate has that serial (certificates from no_store roles cannot be revoked)"))?;
        if cert.revocation_time == 0 {
            cert.revocation_time = OffsetDateTime::now_utc().unix_timestamp();
            let mut batch = ViewBatch::default();
            self.put(&mut batch, &key, &cert);
            self.view.apply(batch)?;
        }
        self.rebuild_crl_locked()?;
        Ok(Response::data(
            json!({ "revocation_time": cert.revocation_time }),
        ))
    }

    /// Vault's `tidy`, run at once: removes stored certificates (`tidy_cert_store`) and revoked
    /// ones (`tidy_revoked_certs`) that expired more than `safety_buffer` (default 72h) ago,
    /// then signs a new CRL without them.
    fn tidy(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        let store = flag(body, "tidy_cert_store", false)?;
        let revoked = flag(body, "tidy_revoked_certs", false)?;
        if !store && !revoked {
            return Err(bad("set tidy_cert_store and/or tidy_revoked_certs"));
        }
        let buffer = match body.get("safety_buffer") {
            None | Some(Value::Null) => 72 * 3600,
            Some(v) => duration::seconds(v, "safety_buffer")?,
        };
        let cutoff = OffsetDateTime::now_utc().unix_timestamp() - buffer as i64;
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = ViewBatch::default();
        let mut removed = 0u64;
        for key in self.view.list("certs/")? {
            let Some(cert) = self.get::<StoredCert>(&key)? else {
                continue;
            };
            let is_revoked = cert.revocation_time != 0;
            if cert.not_after < cutoff && ((is_revoked && revoked) || (!is_revoked && store)) {
                batch.delete(&key);
                removed += 1;
            }
        }
        self.view.apply(batch)?;
        if self.view.get(ISSUER_KEY)?.is_some() {
            self.rebuild_crl_locked()?;
        }
        tracing::info!(removed, "pki tidy");
        Ok(Response::data(json!({ "removed": removed })))
    }

    fn rebuild_crl(&self) -> Result<CrlState, CoreError> {
        let _guard = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        self.rebuild_crl_locked()
    }

    /// Signs a new CRL listing every revoked certificate still stored (`tidy` removes expired
    /// ones).
    fn rebuild_crl_locked(&self) -> Result<CrlState, CoreError> {
        let stored = self.issuer()?;
        let mut revoked = Vec::new();
        for key in self.view.list("certs/")? {
            let Some(cert) = self.get::<StoredCert>(&key)? else {
                continue;
            };
            if cert.revocation_time != 0 {
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&parse_serial(&key["certs/".len()..])?),
                    revocation_time: OffsetDateTime::from_unix_timestamp(cert.revocation_time)
                        .map_err(bad)?,
                    reason_code: None,
                    invalidity_date: None,
                });
            }
        }
        let previous: CrlState = self.get(CRL_KEY)?.unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::seconds(CRL_LIFETIME),
            crl_number: SerialNumber::from(previous.number + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let ca_key = KeyPair::from_pem(&stored.key).map_err(|_| CoreError::Integrity)?;
        let issuer = Issuer::from_ca_cert_pem(&stored.certificate, ca_key)
            .map_err(|_| CoreError::Integrity)?;
        let crl = params.signed_by(&issuer).map_err(bad)?;
        let state = CrlState {
            number: previous.number + 1,
            pem: crl.pem().map_err(bad)?,
            next_update: params.next_update.unix_timestamp(),
        };
        let mut batch = ViewBatch::default();
        self.put(&mut batch, CRL_KEY, &state);
        self.view.apply(batch)?;
        Ok(state)
    }
}

fn key_pair_check(key_type: &str, bits: u64) -> Result<(), CoreError> {
    match (key_type, bits) {
        ("ec", 0 | 256 | 384) | ("ed25519", 0) | ("rsa", 0 | 2048) => Ok(()),
        _ => Err(bad(
            "key_type/key_bits must be ec (256, 384), ed25519, or rsa (2048)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs() {
        let role = Role {
            allowed_domains: vec!["example.com".into()],
            allow_subdomains: true,
            ..Role::default()
        };
        assert!(domain_allowed(&role, "a.example.com"));
        assert!(domain_allowed(&role, "a.b.example.com"));
        assert!(!domain_allowed(&role, "example.com"), "bare not allowed");
        assert!(!domain_allowed(&role, "badexample.com"));
        assert!(!domain_allowed(&role, "example.com.evil.org"));
        assert!(glob("spiffe://prod/*", "spiffe://prod/ns/app"));
        assert!(!glob("spiffe://prod/*", "spiffe://dev/ns/app"));
        assert!(glob("a*c*e", "abcde"));
        assert_eq!(parse_serial("0a:ff").unwrap(), vec![0x0a, 0xff]);
        assert!(parse_serial("zz").is_err());
    }
}
