//! Issuers (CA certificates with the keys that sign for them) and their keys: roots,
//! intermediates (a CSR made here, signed by another CA, then `set-signed`), several issuers
//! per mount with a default (`config/issuers`), and `issuer_ref` resolution (id, name or
//! `default`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use x509_parser::pem::Pem;
use zeroize::Zeroizing;

use crate::role::KeySpec;
use crate::store::{Store, StoredCert, new_serial, serial_hex};
use sigil_engine::barrier::ViewBatch;
use sigil_engine::encoding::pem;
use sigil_engine::fields::{bad, integer, number, only, text, ttl};
use sigil_engine::path::check_name;
use sigil_engine::request::list_response;
use sigil_engine::{CoreError, Response};

pub(super) const CONFIG: &str = "config/issuers";
/// A root's lifetime when no `ttl` is given (10 years).
const ROOT_TTL: u64 = 10 * 365 * 24 * 3600;
/// An intermediate's lifetime when no `ttl` is given (1 year), within its issuer's.
const INTERMEDIATE_TTL: u64 = 365 * 24 * 3600;

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct StoredIssuer {
    pub(super) issuer_id: String,
    pub(super) issuer_name: String,
    pub(super) key_id: String,
    /// PEM.
    pub(super) certificate: String,
    /// PEM, this issuer's certificate first, then the CAs above it as far as they are known.
    pub(super) ca_chain: Vec<String>,
    pub(super) not_after: i64,
}

/// A CA key. It never leaves the server: there is no `exported` generation.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredKey {
    key_id: String,
    key_name: String,
    key_type: String,
    key_bits: u64,
    #[serde(with = "sigil_engine::encoding::b64_zeroizing")]
    pkcs8: Zeroizing<Vec<u8>>,
}

impl StoredKey {
    fn pair(&self) -> Result<KeyPair, CoreError> {
        KeyPair::try_from(self.pkcs8.as_slice()).map_err(|_| CoreError::Integrity)
    }
}

#[derive(Serialize, Deserialize, Default)]
struct IssuersConfig {
    default: String,
}

/// A parsed certificate: its DER and what Sigil reads from it.
struct Parsed {
    der: Vec<u8>,
    /// The subject public key (the bit string's contents).
    public_key: Vec<u8>,
    is_ca: bool,
    not_after: i64,
}

/// The certificates of a PEM bundle, in order, each signed by the next.
fn parse_bundle(text: &str) -> Result<Vec<Parsed>, CoreError> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|_| bad("certificate must be PEM"))?;
        if block.label == "CERTIFICATE" {
            blocks.push(block);
        }
    }
    let certs = blocks
        .iter()
        .map(|b| {
            b.parse_x509()
                .map_err(|_| bad("certificate holds a PEM block that is not an X.509 certificate"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(bad("certificate (PEM) is required"));
    }
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(bad(format!(
                "certificate {} of the bundle is not signed by the one after it: give the certificate first, then its issuers in order",
                i + 1
            )));
        }
    }
    Ok(blocks
        .iter()
        .zip(&certs)
        .map(|(block, cert)| Parsed {
            der: block.contents.clone(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            is_ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|b| b.value.ca),
            not_after: cert.validity().not_after.timestamp(),
        })
        .collect())
}

/// The subject and CA extensions of a CA certificate valid until `not_after`.
fn ca_params(
    cn: &str,
    not_after: OffsetDateTime,
    max_path_length: Option<i64>,
) -> Result<CertificateParams, CoreError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(match max_path_length {
        None | Some(-1) => BasicConstraints::Unconstrained,
        Some(n) => BasicConstraints::Constrained(
            u8::try_from(n).map_err(|_| bad("max_path_length must be -1 or 0..=255"))?,
        ),
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::seconds(30);
    params.not_after = not_after;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

fn required<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, CoreError> {
    match text(body, name, "")? {
        "" => Err(bad(format!("{name} is required"))),
        v => Ok(v),
    }
}

fn check_issuer_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() {
        return Ok(());
    }
    check_name("issuer", name)?;
    if name == "default" {
        return Err(bad(
            "\"default\" names the default issuer: pick another name",
        ));
    }
    Ok(())
}

impl Store {
    /// The issuer `reference` names: `default`, an id or a name.
    pub(crate) fn resolve_issuer(&self, reference: &str) -> Result<StoredIssuer, CoreError> {
        let id = if reference == "default" || reference.is_empty() {
            let config: IssuersConfig = self.get(CONFIG)?.unwrap_or_default();
            if config.default.is_empty() {
                return Err(bad(
                    "this mount has no default issuer: POST root/generate/internal or intermediate/set-signed first",
                ));
            }
            config.default
        } else {
            reference.to_owned()
        };
        if let Some(issuer) = self.get::<StoredIssuer>(&format!("issuers/{id}"))? {
            return Ok(issuer);
        }
        for key in self.view.list("issuers/")? {
            if let Some(issuer) = self.get::<StoredIssuer>(&key)?
                && issuer.issuer_name == reference
            {
                return Ok(issuer);
            }
        }
        Err(bad(format!("no issuer {reference:?} in this mount")))
    }

    /// What signs as `issuer`: its certificate with its key.
    pub(crate) fn signer(
        &self,
        issuer: &StoredIssuer,
    ) -> Result<Issuer<'static, KeyPair>, CoreError> {
        let key: StoredKey = self
            .get(&format!("keys/{}", issuer.key_id))?
            .ok_or(CoreError::Integrity)?;
        Issuer::from_ca_cert_pem(&issuer.certificate, key.pair()?).map_err(|_| CoreError::Integrity)
    }

    /// Every issuer of the mount.
    pub(crate) fn issuers(&self) -> Result<Vec<StoredIssuer>, CoreError> {
        let mut out = Vec::new();
        for key in self.view.list("issuers/")? {
            out.extend(self.get::<StoredIssuer>(&key)?);
        }
        Ok(out)
    }

    /// A new key, stored, and the pair to use it at once.
    fn new_key(
        &self,
        batch: &mut ViewBatch,
        spec: KeySpec,
        name: &str,
    ) -> Result<(String, KeyPair), CoreError> {
        let pair = spec.generate()?;
        let key = StoredKey {
            key_id: sigil_engine::id::random_id()?,
            key_name: name.to_owned(),
            key_type: spec.kind.to_owned(),
            key_bits: spec.bits,
            pkcs8: Zeroizing::new(pair.serialize_der()),
        };
        self.put(batch, &format!("keys/{}", key.key_id), &key);
        Ok((key.key_id, pair))
    }

    /// Adds `issuer` to `batch`, making it the default when the mount has none.
    fn add_issuer(&self, batch: &mut ViewBatch, issuer: &StoredIssuer) -> Result<(), CoreError> {
        if !issuer.issuer_name.is_empty()
            && self
                .issuers()?
                .iter()
                .any(|i| i.issuer_name == issuer.issuer_name)
        {
            return Err(bad(format!(
                "an issuer is named {:?} already",
                issuer.issuer_name
            )));
        }
        self.put(batch, &format!("issuers/{}", issuer.issuer_id), issuer);
        let config: IssuersConfig = self.get(CONFIG)?.unwrap_or_default();
        if config.default.is_empty() {
            self.put(
                batch,
                CONFIG,
                &IssuersConfig {
                    default: issuer.issuer_id.clone(),
                },
            );
        }
        Ok(())
    }

    /// `root/generate/internal`: a self-signed CA whose key never leaves Sigil.
    pub(crate) fn generate_root(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(
            body,
            &[
                "common_name",
                "ttl",
                "key_type",
                "key_bits",
                "issuer_name",
                "key_name",
                "max_path_length",
            ],
        )?;
        let cn = required(body, "common_name")?;
        let lifetime = match ttl(body, "ttl")? {
            0 => ROOT_TTL,
            t => t,
        };
        let spec = KeySpec::new(text(body, "key_type", "ec")?, number(body, "key_bits")?)?;
        let issuer_name = text(body, "issuer_name", "")?;
        check_issuer_name(issuer_name)?;
        let not_after = OffsetDateTime::now_utc() + Duration::seconds(lifetime as i64);
        let mut params = ca_params(cn, not_after, integer(body, "max_path_length")?)?;
        let serial = new_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));

        let _guard = self.lock();
        let mut batch = ViewBatch::default();
        let (key_id, pair) = self.new_key(&mut batch, spec, text(body, "key_name", "")?)?;
        let cert = params.self_signed(&pair).map_err(bad)?;
        let issuer = StoredIssuer {
            issuer_id: sigil_engine::id::random_id()?,
            issuer_name: issuer_name.to_owned(),
            key_id,
            certificate: cert.pem(),
            ca_chain: vec![cert.pem()],
            not_after: not_after.unix_timestamp(),
        };
        self.add_issuer(&mut batch, &issuer)?;
        self.view.apply(batch)?;
        tracing::info!(issuer = %issuer.issuer_id, "pki root generated");
        Ok(Response::data(json!({
            "certificate": issuer.certificate,
            "issuing_ca": issuer.certificate,
            "serial_number": serial_hex(&serial),
            "issuer_id": issuer.issuer_id,
            "issuer_name": issuer.issuer_name,
            "key_id": issuer.key_id,
            "expiration": issuer.not_after,
        })))
    }

    /// `intermediate/generate/internal`: a new CA key kept here and a CSR for it, to be signed
    /// by a root (here or elsewhere) and brought back with `intermediate/set-signed`.
    pub(crate) fn generate_intermediate(
        &self,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(body, &["common_name", "key_type", "key_bits", "key_name"])?;
        let cn = required(body, "common_name")?;
        let spec = KeySpec::new(text(body, "key_type", "ec")?, number(body, "key_bits")?)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        let _guard = self.lock();
        let mut batch = ViewBatch::default();
        let (key_id, pair) = self.new_key(&mut batch, spec, text(body, "key_name", "")?)?;
        let csr = params.serialize_request(&pair).map_err(bad)?;
        let csr = csr.pem().map_err(bad)?;
        self.view.apply(batch)?;
        tracing::info!(key = %key_id, "pki intermediate key generated");
        Ok(Response::data(json!({ "csr": csr, "key_id": key_id })))
    }

    /// `root/sign-intermediate` (`issuer/<ref>/sign-intermediate`): a CA certificate for a
    /// CSR's key, valid at most as long as the signing issuer.
    pub(crate) fn sign_intermediate(
        &self,
        issuer_ref: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(
            body,
            &[
                "csr",
                "common_name",
                "ttl",
                "max_path_length",
                "use_csr_values",
                "format",
            ],
        )?;
        if !matches!(text(body, "format", "pem")?, "pem" | "pem_bundle") {
            return Err(bad("format must be pem or pem_bundle"));
        }
        let csr = crate::store::parse_csr(required(body, "csr")?)?;
        let from_csr = csr
            .params
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(crate::store::dn_text);
        let cn = match text(body, "common_name", "")? {
            "" => from_csr
                .filter(|c| !c.is_empty())
                .ok_or_else(|| bad("common_name is required (the CSR has none)"))?,
            given => given.to_owned(),
        };
        let lifetime = match ttl(body, "ttl")? {
            0 => INTERMEDIATE_TTL,
            t => t,
        };
        let _guard = self.lock();
        let parent = self.resolve_issuer(issuer_ref)?;
        let now = OffsetDateTime::now_utc();
        let not_after = (now + Duration::seconds(lifetime as i64))
            .min(OffsetDateTime::from_unix_timestamp(parent.not_after).map_err(bad)?);
        if not_after <= now {
            return Err(bad("the issuer has expired: no certificate can be issued"));
        }
        let mut params = ca_params(&cn, not_after, integer(body, "max_path_length")?)?;
        params.use_authority_key_identifier_extension = true;
        let serial = self.unused_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(&csr.params.public_key, &self.signer(&parent)?)
            .map_err(bad)?;
        let pem = cert.pem();
        let mut batch = ViewBatch::default();
        self.put(
            &mut batch,
            &format!("certs/{}", serial_hex(&serial)),
            &StoredCert {
                certificate: pem.clone(),
                not_after: not_after.unix_timestamp(),
                revocation_time: 0,
                issuer_id: parent.issuer_id.clone(),
            },
        );
        self.view.apply(batch)?;
        let mut chain = vec![pem.clone()];
        chain.extend(parent.ca_chain.iter().cloned());
        Ok(Response::data(json!({
            "certificate": pem,
            "issuing_ca": parent.certificate,
            "ca_chain": chain,
            "serial_number": serial_hex(&serial),
            "expiration": not_after.unix_timestamp(),
        })))
    }

    /// `intermediate/set-signed`: makes a signed CA certificate (optionally followed by its
    /// chain) an issuer, if its key is one this mount holds.
    pub(crate) fn set_signed(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(body, &["certificate"])?;
        let bundle = parse_bundle(required(body, "certificate")?)?;
        let leaf = &bundle[0];
        if !leaf.is_ca {
            return Err(bad("the certificate is not a CA certificate"));
        }
        let _guard = self.lock();
        let existing = self.issuers()?;
        let chain: Vec<String> = bundle
            .iter()
            .map(|c| pem("CERTIFICATE", &c.der).to_string())
            .collect();
        if let Some(same) = existing.iter().find(|i| i.certificate == chain[0]) {
            return Ok(Response::data(json!({
                "imported_issuers": [],
                "existing_issuers": [same.issuer_id],
            })));
        }
        let mut key_id = None;
        for key in self.view.list("keys/")? {
            if let Some(stored) = self.get::<StoredKey>(&key)?
                && stored.pair()?.public_key_raw() == leaf.public_key.as_slice()
            {
                key_id = Some(stored.key_id);
                break;
            }
        }
        let key_id = key_id.ok_or_else(|| {
            bad("the certificate's key is not one of this mount's keys (generate it with intermediate/generate/internal)")
        })?;
        let issuer = StoredIssuer {
            issuer_id: sigil_engine::id::random_id()?,
            issuer_name: String::new(),
            key_id: key_id.clone(),
            certificate: chain[0].clone(),
            ca_chain: chain,
            not_after: leaf.not_after,
        };
        let mut batch = ViewBatch::default();
        self.add_issuer(&mut batch, &issuer)?;
        self.view.apply(batch)?;
        tracing::info!(issuer = %issuer.issuer_id, "pki intermediate imported");
        Ok(Response::data(json!({
            "imported_issuers": [issuer.issuer_id],
            "mapping": { issuer.issuer_id.clone(): key_id },
        })))
    }

    pub(crate) fn list_issuers(&self) -> Result<Response, CoreError> {
        let issuers = self.issuers()?;
        let mut info = Map::new();
        for i in &issuers {
            info.insert(
                i.issuer_id.clone(),
                json!({ "issuer_name": i.issuer_name, "key_id": i.key_id }),
            );
        }
        let mut ids: Vec<String> = issuers.iter().map(|i| i.issuer_id.clone()).collect();
        ids.sort();
        let mut resp = list_response(ids)?;
        if let Some(Value::Object(data)) = resp.data.as_mut() {
            data.insert("key_info".into(), Value::Object(info));
        }
        Ok(resp)
    }

    pub(crate) fn read_issuer(&self, reference: &str) -> Result<Response, CoreError> {
        let i = self.resolve_issuer(reference)?;
        Ok(Response::data(json!({
            "issuer_id": i.issuer_id,
            "issuer_name": i.issuer_name,
            "key_id": i.key_id,
            "certificate": i.certificate,
            "ca_chain": i.ca_chain,
            "not_after": i.not_after,
        })))
    }

    /// `POST issuer/<ref>`: renames an issuer (`issuer_name`).
    pub(crate) fn update_issuer(
        &self,
        reference: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(body, &["issuer_name"])?;
        let name = text(body, "issuer_name", "")?;
        check_issuer_name(name)?;
        let _guard = self.lock();
        let mut issuer = self.resolve_issuer(reference)?;
        if !name.is_empty()
            && self
                .issuers()?
                .iter()
                .any(|i| i.issuer_name == name && i.issuer_id != issuer.issuer_id)
        {
            return Err(bad(format!("an issuer is named {name:?} already")));
        }
        issuer.issuer_name = name.to_owned();
        let mut batch = ViewBatch::default();
        self.put(
            &mut batch,
            &format!("issuers/{}", issuer.issuer_id),
            &issuer,
        );
        self.view.apply(batch)?;
        self.read_issuer(&issuer.issuer_id)
    }

    /// `DELETE issuer/<ref>`: the issuer and its CRL go; its key and certificates stay (as in
    /// Vault). Deleting the default leaves the mount without one until `config/issuers` names
    /// another.
    pub(crate) fn delete_issuer(&self, reference: &str) -> Result<Response, CoreError> {
        let _guard = self.lock();
        let issuer = self.resolve_issuer(reference)?;
        let mut batch = ViewBatch::default();
        batch.delete(&format!("issuers/{}", issuer.issuer_id));
        batch.delete(&format!("crls/{}", issuer.issuer_id));
        let config: IssuersConfig = self.get(CONFIG)?.unwrap_or_default();
        if config.default == issuer.issuer_id {
            self.put(&mut batch, CONFIG, &IssuersConfig::default());
        }
        self.view.apply(batch)?;
        Ok(Response::no_content())
    }

    pub(crate) fn read_config(&self) -> Result<Response, CoreError> {
        let config: IssuersConfig = self.get(CONFIG)?.unwrap_or_default();
        Ok(Response::data(json!({ "default": config.default })))
    }

    pub(crate) fn write_config(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(body, &["default"])?;
        let reference = required(body, "default")?;
        let _guard = self.lock();
        let issuer = self.resolve_issuer(reference)?;
        let mut batch = ViewBatch::default();
        self.put(
            &mut batch,
            CONFIG,
            &IssuersConfig {
                default: issuer.issuer_id.clone(),
            },
        );
        self.view.apply(batch)?;
        Ok(Response::data(json!({ "default": issuer.issuer_id })))
    }

    /// `LIST keys`, with each key's name and type (never the key).
    pub(crate) fn list_keys(&self) -> Result<Response, CoreError> {
        let mut ids = Vec::new();
        let mut info = Map::new();
        for key in self.view.list("keys/")? {
            if let Some(k) = self.get::<StoredKey>(&key)? {
                info.insert(
                    k.key_id.clone(),
                    json!({ "key_name": k.key_name, "key_type": k.key_type, "key_bits": k.key_bits }),
                );
                ids.push(k.key_id);
            }
        }
        ids.sort();
        let mut resp = list_response(ids)?;
        if let Some(Value::Object(data)) = resp.data.as_mut() {
            data.insert("key_info".into(), Value::Object(info));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sigil_engine::testing::Harness;
    use sigil_engine::{CoreError, Operation};

    use crate::Pki;

    fn pki() -> Harness {
        Harness::new(&Pki, "pki/")
    }

    fn post(h: &Harness, path: &str, body: Value) -> Result<Value, CoreError> {
        h.call(Operation::Update, path, body)
    }

    fn read(h: &Harness, path: &str) -> Value {
        h.call(Operation::Read, path, Value::Null).unwrap()
    }

    #[test]
    fn issuers_resolve_by_id_name_and_default() {
        let h = pki();
        assert!(
            read_err(&h, "pki/issuer/default"),
            "no default issuer before a root exists"
        );
        let root = post(
            &h,
            "pki/root/generate/internal",
            json!({ "common_name": "Root A", "issuer_name": "root-a", "key_name": "ka" }),
        )
        .unwrap();
        let id = root["issuer_id"].as_str().unwrap().to_owned();
        for reference in [id.as_str(), "root-a", "default"] {
            let issuer = read(&h, &format!("pki/issuer/{reference}"));
            assert_eq!(issuer["issuer_id"], id.as_str(), "{reference}");
            assert_eq!(issuer["issuer_name"], "root-a");
        }
        assert_eq!(read(&h, "pki/config/issuers")["default"], id.as_str());
        // A second root does not take the default until told to.
        let second = post(
            &h,
            "pki/root/generate/internal",
            json!({ "common_name": "Root B", "issuer_name": "root-b" }),
        )
        .unwrap();
        assert_eq!(read(&h, "pki/config/issuers")["default"], id.as_str());
        post(&h, "pki/config/issuers", json!({ "default": "root-b" })).unwrap();
        assert_eq!(
            read(&h, "pki/config/issuers")["default"],
            second["issuer_id"]
        );
        let listed = h.call(Operation::List, "pki/issuers", Value::Null).unwrap();
        assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
        let keys = h.call(Operation::List, "pki/keys", Value::Null).unwrap();
        assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
        assert!(keys["key_info"].to_string().contains("\"ka\""));
        // Renamed, then deleted: the old name and the id no longer resolve.
        post(&h, "pki/issuer/root-a", json!({ "issuer_name": "renamed" })).unwrap();
        assert_eq!(read(&h, "pki/issuer/renamed")["issuer_id"], id.as_str());
        assert!(read_err(&h, "pki/issuer/root-a"));
        h.call(Operation::Delete, "pki/issuer/renamed", Value::Null)
            .unwrap();
        assert!(read_err(&h, &format!("pki/issuer/{id}")));
    }

    fn read_err(h: &Harness, path: &str) -> bool {
        h.call(Operation::Read, path, Value::Null).is_err()
    }

    #[test]
    fn an_intermediate_is_signed_by_a_root_and_set_signed() {
        let h = pki();
        post(
            &h,
            "pki/root/generate/internal",
            json!({ "common_name": "Root", "issuer_name": "root", "ttl": "48h" }),
        )
        .unwrap();
        let csr = post(
            &h,
            "pki/intermediate/generate/internal",
            json!({ "common_name": "Intermediate" }),
        )
        .unwrap()["csr"]
            .as_str()
            .unwrap()
            .to_owned();
        let signed = post(
            &h,
            "pki/root/sign-intermediate",
            json!({ "csr": csr, "ttl": "24h" }),
        )
        .unwrap();
        // The signed certificate with its issuer's, as `vault write … set-signed` sends them.
        let certificate = format!(
            "{}\n{}",
            signed["certificate"].as_str().unwrap(),
            signed["issuing_ca"].as_str().unwrap()
        );
        let imported = post(
            &h,
            "pki/intermediate/set-signed",
            json!({ "certificate": certificate }),
        )
        .unwrap();
        let new_id = imported["imported_issuers"][0].as_str().unwrap().to_owned();
        let issuer = read(&h, &format!("pki/issuer/{new_id}"));
        assert_eq!(
            issuer["ca_chain"].as_array().unwrap().len(),
            2,
            "itself and its root"
        );
        // The same certificate again imports nothing new.
        let again = post(
            &h,
            "pki/intermediate/set-signed",
            json!({ "certificate": certificate }),
        )
        .unwrap();
        assert_eq!(again["existing_issuers"][0], new_id.as_str());
    }

    #[test]
    fn bad_issuer_input_is_refused_and_changes_nothing() {
        let h = pki();
        for body in [
            json!({}),
            json!({ "common_name": "x", "issuer_name": "default" }),
            json!({ "common_name": "x", "key_type": "dsa" }),
            json!({ "common_name": "x", "unknown": 1 }),
        ] {
            assert!(
                post(&h, "pki/root/generate/internal", body.clone()).is_err(),
                "{body}"
            );
        }
        // A CA certificate whose key this mount does not hold, and not a certificate at all.
        let other = pki();
        let foreign = post(
            &other,
            "pki/root/generate/internal",
            json!({ "common_name": "Elsewhere" }),
        )
        .unwrap()["certificate"]
            .clone();
        assert!(
            post(
                &h,
                "pki/intermediate/set-signed",
                json!({ "certificate": foreign })
            )
            .is_err()
        );
        assert!(
            post(
                &h,
                "pki/intermediate/set-signed",
                json!({ "certificate": "junk" })
            )
            .is_err()
        );
        assert!(h.barrier.view("logical/pki/").list("").unwrap().is_empty());
    }
}
