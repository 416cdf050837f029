//! Opening request bodies and sealing responses: HPKE to the caller's key or, on a channel,
//! XChaCha20-Poly1305 under the channel's key for that direction (docs/protocol.md). Every 2xx
//! answer is sealed with the answer's status and the request's nonce as associated data; one
//! without a body carries a sealed empty receipt instead.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use sigil_core::{Caller, Core};
use sigil_crypto::{ChannelKeys, SealInfo};
use sigil_proto::body::{self as sealed, Sealed};
use sigil_proto::headers;
use zeroize::Zeroizing;

use crate::auth::Authenticated;
use crate::channels::Channels;
use crate::error::ApiError;

/// How one request's bodies are sealed.
pub(crate) enum Sealing {
    /// HPKE; `grant` when the caller asked for a channel (`Sigil-Channel: new`).
    Hpke { grant: bool },
    /// A live channel of the caller's.
    Channel { id: String, key: Arc<ChannelKeys> },
    /// The request named a channel the server does not hold for this caller (expired, from
    /// before a restart, or someone else's): answers fall back to HPKE.
    Unknown,
}

impl Sealing {
    pub(crate) fn of(channels: &Channels, headers_in: &HeaderMap, caller: &Caller) -> Sealing {
        match headers_in
            .get(headers::SIGIL_CHANNEL)
            .and_then(|v| v.to_str().ok())
        {
            None => Sealing::Hpke { grant: false },
            Some("new") => Sealing::Hpke { grant: true },
            Some(id) => match channels.get(id, caller) {
                Some(key) => Sealing::Channel {
                    id: id.to_owned(),
                    key,
                },
                None => Sealing::Unknown,
            },
        }
    }
}

/// Vault's response envelope around a core response. It borrows the response's data (no copy
/// of a secret to drop unzeroized) and serializes its members in the order `json!` would
/// (sorted), so answers are byte for byte what they were.
#[derive(serde::Serialize)]
pub(crate) struct VaultEnvelope<'a> {
    auth: Option<()>,
    data: &'a Option<Value>,
    lease_duration: u64,
    lease_id: &'a str,
    mount_type: &'static str,
    renewable: bool,
    request_id: &'a str,
    warnings: Option<&'a [String]>,
    wrap_info: Option<()>,
}

pub(crate) fn vault_envelope<'a>(
    request_id: &'a str,
    response: &'a sigil_core::Response,
) -> VaultEnvelope<'a> {
    let lease = response.lease.as_ref();
    VaultEnvelope {
        auth: None,
        data: &response.data,
        lease_duration: lease.map_or(0, |l| l.duration),
        lease_id: lease.map_or("", |l| l.id.as_str()),
        mount_type: response.mount_type,
        renewable: lease.is_some_and(|l| l.renewable),
        request_id,
        warnings: (!response.warnings.is_empty()).then_some(response.warnings.as_slice()),
        wrap_info: None,
    }
}

/// The request's JSON body, opened (none when empty).
pub(crate) fn open_body(
    core: &Core,
    authn: &Authenticated<Arc<Caller>>,
    sealing: &Sealing,
    headers_in: &HeaderMap,
    body: &[u8],
) -> Result<Option<Value>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let sealed_type = headers_in
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(headers::SEALED_JSON))
        });
    if !sealed_type {
        return Err(ApiError::bad_request(format!(
            "request bodies must be sealed to the server key (Content-Type: {})",
            headers::SEALED_JSON
        )));
    }
    let bad = |e: sealed::BodyError| ApiError::bad_request(e.to_string());
    let plain = match sealed::parse(body).map_err(bad)? {
        Sealed::Hpke(envelope) => sigil_crypto::open_from(
            core.server_identity().encryption_key(),
            authn.caller.public.encryption_key(),
            SealInfo::Request,
            authn.nonce.as_bytes(),
            &envelope,
        )
        .map_err(|_| bad(sealed::BodyError::Open))?,
        Sealed::Channel { id, nonce, ct } => match sealing {
            Sealing::Channel { id: live, key } if *live == id => {
                sealed::open_channel(&key.request, &authn.nonce, &nonce, &ct).map_err(bad)?
            }
            // Nothing runs; signed, so that the client can trust it to send again.
            _ => {
                let message = headers::channel_expired_message(&authn.nonce);
                let sig = core.server_identity().sign(&message);
                return Err(ApiError::channel_expired(sigil_crypto::b64url_encode(&sig)));
            }
        },
        _ => return Err(bad(sealed::BodyError::Malformed("unknown envelope"))),
    };
    let text = std::str::from_utf8(&plain)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "request body is not valid JSON: line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    Ok(Some(value))
}

/// What answering one authenticated request takes: the core (its server key), the channels,
/// the caller and how it asked to be answered.
pub(crate) struct Reply<'a> {
    pub(crate) core: &'a Arc<Core>,
    pub(crate) channels: &'a Channels,
    pub(crate) authn: &'a Authenticated<Arc<Caller>>,
    pub(crate) sealing: &'a Sealing,
    pub(crate) request_id: &'a str,
    /// The request's headers (a backup reads `Accept`: docs/protocol.md §4.7).
    pub(crate) headers: &'a HeaderMap,
}

impl Reply<'_> {
    /// [`seal_response`] for this request.
    pub(crate) fn seal(&self, response: sigil_core::Response) -> Result<Response, ApiError> {
        seal_response(
            self.core,
            self.channels,
            self.authn,
            self.sealing,
            self.request_id,
            response,
        )
    }

    /// Whether the caller holds `capability` on `path`.
    pub(crate) fn authorize(
        &self,
        path: &str,
        capability: sigil_core::policy::Capability,
    ) -> Result<(), ApiError> {
        Ok(self
            .core
            .authorize(&self.authn.caller, path, &[capability])?)
    }

    /// Whether the caller holds `capability` and `sudo` on `path` (the server's own
    /// endpoints that change or reveal the whole node).
    pub(crate) fn authorize_sudo(
        &self,
        path: &str,
        capability: sigil_core::policy::Capability,
    ) -> Result<(), ApiError> {
        use sigil_core::policy::Capability;
        Ok(self
            .core
            .authorize(&self.authn.caller, path, &[capability, Capability::Sudo])?)
    }

    /// [`receipt`] for this request.
    pub(crate) fn receipt(&self, status: StatusCode) -> Result<Response, ApiError> {
        receipt(self.core, self.authn, self.sealing, status)
    }
}

/// Seals a 2xx core response to the caller, granting a channel when asked; a response without
/// a body (204) gets a sealed receipt.
pub(crate) fn seal_response(
    core: &Core,
    channels: &Channels,
    authn: &Authenticated<Arc<Caller>>,
    sealing: &Sealing,
    request_id: &str,
    response: sigil_core::Response,
) -> Result<Response, ApiError> {
    if response.status == 204 {
        return receipt(core, authn, sealing, StatusCode::NO_CONTENT);
    }
    // Sized once (the tag included), so that a large answer is not regrown by doubling, and
    // encrypted where it lies: a backup is held about three times at the peak (the answer's
    // JSON, then its ciphertext and the envelope's base64), not a dozen.
    let mut plain = Zeroizing::new(Vec::with_capacity(envelope_capacity(&response.data)));
    serde_json::to_writer(&mut *plain, &vault_envelope(request_id, &response))
        .expect("response serializes");
    drop(response.data);
    // Handed over to be encrypted in place (and wiped there if sealing fails).
    let plain = std::mem::take(&mut *plain);
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let aad = sealed::response_aad(status.as_u16(), &authn.nonce);
    let server = core.server_identity().encryption_key();
    let recipient = authn.caller.public.encryption_key();
    let mut grant = None;
    let body = match sealing {
        Sealing::Channel { id, key } => {
            sealed::seal_channel_in_place(&key.response, id, &aad, plain)
                .map_err(|_| sealing_failed())?
        }
        Sealing::Hpke { grant: true } => {
            let (env, keys) = sigil_crypto::seal_to_exporting(
                server,
                recipient,
                SealInfo::Response,
                aad.as_bytes(),
                plain,
            )
            .map_err(|_| sealing_failed())?;
            grant = channels.insert(&authn.caller, keys);
            sealed::hpke_json(&env)
        }
        Sealing::Hpke { grant: false } | Sealing::Unknown => {
            sealed::seal_in_place(server, recipient, SealInfo::Response, &aad, plain)
                .map_err(|_| sealing_failed())?
        }
    };
    let mut resp = (status, Body::from(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(headers::SEALED_JSON),
    );
    if let Some((id, ttl)) = grant
        && let Ok(value) = HeaderValue::from_str(&format!("{id}; ttl={ttl}"))
    {
        resp.headers_mut().insert(headers::SIGIL_CHANNEL, value);
    }
    Ok(resp)
}

/// Room for an answer's JSON: the strings directly in its `data` (where a backup's base64 is)
/// plus enough for the rest of a usual answer, and the AEAD tag sealing appends (after
/// encrypting: a buffer too small is regrown with ciphertext in it, never plaintext).
fn envelope_capacity(data: &Option<serde_json::Value>) -> usize {
    let strings: usize = data
        .as_ref()
        .and_then(serde_json::Value::as_object)
        .map_or(0, |m| {
            m.values().filter_map(|v| v.as_str()).map(str::len).sum()
        });
    strings + 1024 + 16
}

fn sealing_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "sealing the response failed",
    )
}

/// A bodiless 2xx answer: `status` with a `Sigil-Receipt`, the empty plaintext sealed as a body
/// would be, so that the client knows the server sent it for this request.
pub(crate) fn receipt(
    core: &Core,
    authn: &Authenticated<Arc<Caller>>,
    sealing: &Sealing,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let aad = sealed::response_aad(status.as_u16(), &authn.nonce);
    let sealed = match sealing {
        Sealing::Channel { id, key } => sealed::seal_channel(&key.response, id, &aad, b""),
        Sealing::Hpke { .. } | Sealing::Unknown => sealed::seal(
            core.server_identity().encryption_key(),
            authn.caller.public.encryption_key(),
            SealInfo::Response,
            &aad,
            b"",
        ),
    }
    .map_err(|_| sealing_failed())?;
    let value = HeaderValue::from_bytes(&sealed).map_err(|_| sealing_failed())?;
    let mut resp = status.into_response();
    resp.headers_mut().insert(headers::SIGIL_RECEIPT, value);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sigil_core::{LeaseInfo, Response};

    use super::vault_envelope;

    /// The envelope Vault clients parse: every member, in the order (and with the values) the
    /// server has always sent, with and without a lease and warnings.
    #[test]
    fn the_envelope_is_vaults_byte_for_byte() {
        let plain = Response::data(json!({ "b": 1, "a": "x" })).with_mount_type("kv");
        assert_eq!(
            serde_json::to_string(&vault_envelope("id-1", &plain)).unwrap(),
            r#"{"auth":null,"data":{"a":"x","b":1},"lease_duration":0,"lease_id":"","mount_type":"kv","renewable":false,"request_id":"id-1","warnings":null,"wrap_info":null}"#
        );
        let mut leased = Response::data(json!({ "username": "u" }));
        leased.lease = Some(LeaseInfo {
            id: "database/creds/app/abc".into(),
            duration: 3600,
            renewable: true,
        });
        leased.warnings = vec!["capped".into()];
        assert_eq!(
            serde_json::to_string(&vault_envelope("id-2", &leased)).unwrap(),
            r#"{"auth":null,"data":{"username":"u"},"lease_duration":3600,"lease_id":"database/creds/app/abc","mount_type":"","renewable":true,"request_id":"id-2","warnings":["capped"],"wrap_info":null}"#
        );
    }
}
