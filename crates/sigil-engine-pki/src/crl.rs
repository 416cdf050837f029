//! Revocation: `revoke`, one CRL per issuer (rebuilt on every revocation, re-signed when half
//! its lifetime is gone), and `tidy`.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use crate::issuer::StoredIssuer;
use crate::store::{Store, StoredCert, parse_serial, serial_hex};
use sigil_engine::barrier::ViewBatch;
use sigil_engine::fields::{bad, flag};
use sigil_engine::request::list_response;
use sigil_engine::{CoreError, Response, duration};

/// How long a CRL is valid.
const CRL_LIFETIME: i64 = 72 * 3600;

#[derive(Clone, Serialize, Deserialize, Default)]
pub(super) struct CrlState {
    number: u64,
    pub(super) pem: String,
    /// Unix seconds.
    next_update: i64,
}

impl Store {
    /// `issuer`'s current CRL, signed again first if less than half its lifetime is left.
    pub(crate) fn crl(&self, issuer: &StoredIssuer) -> Result<CrlState, CoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match self.get::<CrlState>(&format!("crls/{}", issuer.issuer_id))? {
            Some(c) if c.next_update - now > CRL_LIFETIME / 2 => Ok(c),
            _ => {
                let _guard = self.lock();
                self.rebuild_crl_locked(issuer)
            }
        }
    }

    /// `crl/rotate`: every issuer's CRL signed anew.
    pub(crate) fn rotate_crls(&self) -> Result<Response, CoreError> {
        let _guard = self.lock();
        for issuer in self.issuers()? {
            self.rebuild_crl_locked(&issuer)?;
        }
        Ok(Response::data(json!({ "success": true })))
    }

    /// Signs a new CRL for `issuer` listing every revoked certificate it issued that is still
    /// stored (`tidy` removes expired ones). Call with the write lock held.
    fn rebuild_crl_locked(&self, issuer: &StoredIssuer) -> Result<CrlState, CoreError> {
        let mut revoked = Vec::new();
        for key in self.view.list("certs/")? {
            let Some(cert) = self.get::<StoredCert>(&key)? else {
                continue;
            };
            if cert.revocation_time != 0 && cert.issuer_id == issuer.issuer_id {
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&parse_serial(&key["certs/".len()..])?),
                    revocation_time: OffsetDateTime::from_unix_timestamp(cert.revocation_time)
                        .map_err(bad)?,
                    reason_code: None,
                    invalidity_date: None,
                });
            }
        }
        let key = format!("crls/{}", issuer.issuer_id);
        let previous: CrlState = self.get(&key)?.unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::seconds(CRL_LIFETIME),
            crl_number: SerialNumber::from(previous.number + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.signer(issuer)?).map_err(bad)?;
        let state = CrlState {
            number: previous.number + 1,
            pem: crl.pem().map_err(bad)?,
            next_update: params.next_update.unix_timestamp(),
        };
        let mut batch = ViewBatch::default();
        self.put(&mut batch, &key, &state);
        self.view.apply(batch)?;
        Ok(state)
    }

    pub(crate) fn revoke(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        sigil_engine::fields::only(body, &["serial_number"])?;
        let serial = body
            .get("serial_number")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("serial_number is required"))?;
        let key = format!("certs/{}", serial_hex(&parse_serial(serial)?));
        let _guard = self.lock();
        let mut cert: StoredCert = self.get(&key)?.ok_or_else(|| {
            bad("no stored certificate has that serial (certificates from no_store roles cannot be revoked)")
        })?;
        if cert.revocation_time == 0 {
            cert.revocation_time = OffsetDateTime::now_utc().unix_timestamp();
            let mut batch = ViewBatch::default();
            self.put(&mut batch, &key, &cert);
            self.view.apply(batch)?;
        }
        // The issuer may have been deleted since; then no CRL lists the certificate.
        if let Some(issuer) = self.get::<StoredIssuer>(&format!("issuers/{}", cert.issuer_id))? {
            self.rebuild_crl_locked(&issuer)?;
        }
        Ok(Response::data(
            json!({ "revocation_time": cert.revocation_time }),
        ))
    }

    /// Vault's `LIST certs/revoked`: the serials of the stored certificates that were revoked
    /// (whether or not they expired since; `tidy` removes those).
    pub(crate) fn revoked_serials(&self) -> Result<Response, CoreError> {
        let mut serials = Vec::new();
        for key in self.view.list("certs/")? {
            let cert: StoredCert = self.get(&key)?.ok_or(CoreError::Integrity)?;
            if cert.revocation_time != 0 {
                serials.push(key["certs/".len()..].to_owned());
            }
        }
        list_response(serials)
    }

    /// Vault's `tidy`, run at once: removes stored certificates (`tidy_cert_store`) and revoked
    /// ones (`tidy_revoked_certs`) that expired more than `safety_buffer` (default 72h) ago,
    /// then signs new CRLs without them.
    pub(crate) fn tidy(&self, body: &Map<String, Value>) -> Result<Response, CoreError> {
        sigil_engine::fields::only(
            body,
            &["tidy_cert_store", "tidy_revoked_certs", "safety_buffer"],
        )?;
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
        let _guard = self.lock();
        let mut tidied = Vec::new();
        for key in self.view.list("certs/")? {
            let Some(cert) = self.get::<StoredCert>(&key)? else {
                continue;
            };
            let is_revoked = cert.revocation_time != 0;
            if cert.not_after < cutoff && ((is_revoked && revoked) || (!is_revoked && store)) {
                tidied.push(key);
            }
        }
        self.view.delete_all(&tidied, false)?;
        let removed = tidied.len() as u64;
        for issuer in self.issuers()? {
            self.rebuild_crl_locked(&issuer)?;
        }
        tracing::info!(removed, "pki tidy");
        Ok(Response::data(json!({ "removed": removed })))
    }
}
