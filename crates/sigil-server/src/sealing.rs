//! Opening request bodies and sealing responses: HPKE to the caller's key (PROTOCOL.md §4) or,
//! on a channel, XChaCha20-Poly1305 under the channel's key (§6).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sigil_core::{Caller, Core};
use sigil_crypto::{ChannelKey, SealInfo};
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
    Channel { id: String, key: Arc<ChannelKey> },
    /// The request named a channel the server does not hold for this caller (expired, from
    /// before a restart, or someone else's): answers fall back to HPKE.
    Unknown,
}

impl Sealing {
    pub(crate) fn of(channels: &Channels, headers_in: &HeaderMap, keyid: &str) -> Sealing {
        match headers_in
            .get(headers::SIGIL_CHANNEL)
            .and_then(|v| v.to_str().ok())
        {
            None => Sealing::Hpke { grant: false },
            Some("new") => Sealing::Hpke { grant: true },
            Some(id) => match channels.get(id, keyid) {
                Some(key) => Sealing::Channel {
                    id: id.to_owned(),
                    key,
                },
                None => Sealing::Unknown,
            },
        }
    }
}

/// Vault's response envelope around a core response.
pub(crate) fn vault_envelope(request_id: &str, response: &sigil_core::Response) -> Value {
    json!({
        "request_id": request_id,
        "lease_id": response.lease.as_ref().map_or("", |l| l.id.as_str()),
        "renewable": response.lease.as_ref().is_some_and(|l| l.renewable),
        "lease_duration": response.lease.as_ref().map_or(0, |l| l.duration),
        "data": response.data,
        "wrap_info": null,
        "warnings": if response.warnings.is_empty() { Value::Null } else { json!(response.warnings) },
        "auth": null,
        "mount_type": response.mount_type,
    })
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
                sealed::open_channel(key, &authn.nonce, &nonce, &ct).map_err(bad)?
            }
            _ => return Err(ApiError::channel_expired()),
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

/// Seals a 2xx core response to the caller (204 has no body), granting a channel when asked.
pub(crate) fn seal_response(
    core: &Core,
    channels: &Channels,
    authn: &Authenticated<Arc<Caller>>,
    sealing: &Sealing,
    request_id: &str,
    response: sigil_core::Response,
) -> Result<Response, ApiError> {
    if response.status == 204 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let envelope = vault_envelope(request_id, &response);
    drop(response.data);
    let plain = Zeroizing::new(serde_json::to_vec(&envelope).expect("response serializes"));
    drop(envelope);
    let failed = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sealing the response failed",
        )
    };
    let server = core.server_identity().encryption_key();
    let recipient = authn.caller.public.encryption_key();
    let aad = authn.nonce.as_bytes();
    let mut grant = None;
    let body = match sealing {
        Sealing::Channel { id, key } => {
            sealed::seal_channel(key, id, &authn.nonce, &plain).map_err(|_| failed())?
        }
        Sealing::Hpke { grant: true } => {
            let (env, key) =
                sigil_crypto::seal_to_exporting(server, recipient, SealInfo::Response, aad, &plain)
                    .map_err(|_| failed())?;
            grant = channels.insert(&authn.caller.identity.keyid, key);
            sealed::hpke_json(&env)
        }
        Sealing::Hpke { grant: false } | Sealing::Unknown => {
            sealed::seal(server, recipient, SealInfo::Response, &authn.nonce, &plain)
                .map_err(|_| failed())?
        }
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
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
