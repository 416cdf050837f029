//! What the PKI engine keeps and how: its view with a write lock, stored certificates, serial
//! numbers, PEM and CSR parsing. Issuers (issuer.rs) and revocation (crl.rs) work on it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use rcgen::CertificateSigningRequestParams;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer as _;

use crate::role::KeySpec;
use sigil_engine::CoreError;
use sigil_engine::barrier::{View, ViewBatch};
use sigil_engine::fields::bad;

/// A certificate this mount issued.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredCert {
    pub(crate) certificate: String,
    pub(crate) not_after: i64,
    #[serde(default)]
    pub(crate) revocation_time: i64,
    /// The issuer that signed it (its CRL lists it once revoked).
    #[serde(default)]
    pub(crate) issuer_id: String,
}

/// The engine's storage: its view, and a lock for read-modify-write sequences.
pub(crate) struct Store {
    pub(crate) view: View,
    writes: Mutex<()>,
}

impl Store {
    pub(crate) fn new(view: View) -> Self {
        Store {
            view,
            writes: Mutex::new(()),
        }
    }

    /// Serializes the engine's read-modify-write sequences.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, CoreError> {
        match self.view.get(key)? {
            Some(e) => Ok(Some(
                serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
            )),
            None => Ok(None),
        }
    }

    pub(crate) fn put(&self, batch: &mut ViewBatch, key: &str, value: &impl Serialize) {
        batch.put(key, serde_json::to_vec(value).expect("serializes"));
    }

    /// A serial no stored certificate has (call with the write lock held).
    pub(crate) fn unused_serial(&self) -> Result<Vec<u8>, CoreError> {
        loop {
            let serial = new_serial()?;
            if self
                .view
                .get(&format!("certs/{}", serial_hex(&serial)))?
                .is_none()
            {
                return Ok(serial);
            }
        }
    }
}

/// A distinguished-name value as text.
pub(crate) fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        // Other string types are not used for host names: ask for common_name instead.
        _ => String::new(),
    }
}

pub(crate) fn serial_hex(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn parse_serial(text: &str) -> Result<Vec<u8>, CoreError> {
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
pub(crate) fn new_serial() -> Result<Vec<u8>, CoreError> {
    let mut b = sigil_crypto::random::bytes::<16>().map_err(|_| CoreError::rng())?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(b.to_vec())
}

/// The DER inside a PEM text.
pub(crate) fn pem_contents(text: &str) -> Result<Vec<u8>, CoreError> {
    x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map(|(_, p)| p.contents)
        .map_err(|_| CoreError::Integrity)
}

/// A CSR, its signature checked, and the type and size of its key.
pub(crate) struct Csr {
    pub(crate) params: CertificateSigningRequestParams,
    pub(crate) key: Option<KeySpec>,
}

pub(crate) fn parse_csr(text: &str) -> Result<Csr, CoreError> {
    let invalid = || {
        bad(
            "csr is not a valid, correctly signed PEM certificate request (or has an extension Sigil does not read)",
        )
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|_| invalid())?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(invalid());
    }
    let params = CertificateSigningRequestParams::from_der(&block.contents.as_slice().into())
        .map_err(|_| invalid())?;
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|_| invalid())?;
    let key = KeySpec::of(&parsed.certification_request_info.subject_pki);
    Ok(Csr { params, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert_eq!(parse_serial("0a:ff").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(parse_serial("0a-ff").unwrap(), vec![0x0a, 0xff]);
        assert!(parse_serial("zz").is_err());
        assert!(parse_serial("abc").is_err());
        assert!(parse_serial(&"00".repeat(21)).is_err());
        let s = new_serial().unwrap();
        assert_eq!(parse_serial(&serial_hex(&s)).unwrap(), s);
        assert!(s[0] & 0x80 == 0 && s[0] != 0);
    }
}
