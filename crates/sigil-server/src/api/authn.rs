//! Authentication, one module: an RFC 9421 signature (verified from the headers before the
//! body is read, then against the body's digest) or a client certificate (mTLS, docs/protocol.md
//! §7). A failure counts against the source address; a success against the caller's own rate
//! limit.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use http::StatusCode;
use http::request::Parts;
use sigil_core::{Caller, Core};
use sigil_proto::headers;

use super::body::read_body;
use super::state::AppState;
use crate::audit_trail::{PeerCerts, RemoteAddr, Trail};
use crate::auth::{self, Authenticated};
use crate::error::ApiError;
use crate::limits::address_key;
use crate::telemetry;
use sigil_engine::timefmt::unix_now as now;

/// The caller of a request for the core, and its body: a client certificate authenticates the
/// connection; a signature, if present, wins. Records who it is in the audit trail.
pub(super) async fn caller(
    state: &AppState,
    core: &Core,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(Authenticated<Arc<Caller>>, Bytes), ApiError> {
    let (authn, body) = match parts.extensions.get::<Arc<PeerCerts>>() {
        Some(certs) if !parts.headers.contains_key(headers::SIGNATURE_INPUT) => {
            trail.mtls = true;
            let authn = authenticate_mtls(state, core, parts, certs)?;
            (authn, read_body(parts, body, state.authenticated()).await?)
        }
        _ => authenticate(state, core, parts, body).await?,
    };
    trail.identity = Some((
        authn.caller.identity.keyid.clone(),
        authn.caller.identity.name.clone(),
    ));
    Ok((authn, body))
}

/// A caller known from the headers alone, whose body is read as it comes (a snapshot to
/// restore): a client certificate, or a signature whose digest the body must still match.
pub(super) enum Pending {
    Mtls(Authenticated<Arc<Caller>>),
    Signed(auth::Verified<Arc<Caller>>),
}

impl Pending {
    pub(super) fn caller(&self) -> &Arc<Caller> {
        match self {
            Pending::Mtls(a) => &a.caller,
            Pending::Signed(v) => v.caller(),
        }
    }

    /// The request's nonce: the associated data of its sealed body.
    pub(super) fn nonce(&self) -> &str {
        match self {
            Pending::Mtls(a) => &a.nonce,
            Pending::Signed(v) => v.nonce(),
        }
    }

    /// The caller, once the body (its bytes as sent hashed into `sha256`) matches the signed
    /// digest and the nonce is new. Counts a failure against the source address.
    pub(super) fn finish(
        self,
        state: &AppState,
        parts: &Parts,
        sha256: &[u8; 32],
    ) -> Result<Authenticated<Arc<Caller>>, ApiError> {
        match self {
            Pending::Mtls(a) => Ok(a),
            Pending::Signed(v) => v
                .streamed_body(sha256, &state.fresh.replay)
                .map_err(|e| auth_failed(state, parts, e)),
        }
    }
}

/// [`caller`] without reading the body: the signature verified from the headers (the body
/// is checked against it by [`Pending::finish`]), or the client certificate.
pub(super) async fn caller_before_body(
    state: &AppState,
    core: &Core,
    parts: &Parts,
    trail: &mut Trail,
) -> Result<Pending, ApiError> {
    let pending = match parts.extensions.get::<Arc<PeerCerts>>() {
        Some(certs) if !parts.headers.contains_key(headers::SIGNATURE_INPUT) => {
            trail.mtls = true;
            Pending::Mtls(authenticate_mtls(state, core, parts, certs)?)
        }
        _ => {
            let verified = auth::authenticate(core, &state.fresh, parts, now())
                .map_err(|e| auth_failed(state, parts, e))?
                .verify(&state.signatures)
                .await
                .map_err(|e| auth_failed(state, parts, e))?;
            state
                .limits
                .identity
                .take(&verified.caller().identity.keyid)
                .map_err(ApiError::rate_limited)?;
            Pending::Signed(verified)
        }
    };
    let caller = pending.caller();
    trail.identity = Some((caller.identity.keyid.clone(), caller.identity.name.clone()));
    Ok(pending)
}

/// Verifies the signature from the headers, then reads the body (only then, under the full
/// budget) and checks it against the signed digest.
pub(super) async fn authenticate<S: auth::Signers>(
    state: &AppState,
    signers: &S,
    parts: &Parts,
    body: Body,
) -> Result<(Authenticated<S::Signer>, Bytes), ApiError> {
    let verified = auth::authenticate(signers, &state.fresh, parts, now())
        .map_err(|e| auth_failed(state, parts, e))?
        .verify(&state.signatures)
        .await
        .map_err(|e| auth_failed(state, parts, e))?;
    let body = read_body(parts, body, state.authenticated()).await?;
    let authn = verified
        .body(&body, &state.fresh.replay)
        .map_err(|e| auth_failed(state, parts, e))?;
    let authn = account(state, parts, Ok(authn), |c| {
        S::public_key(c).keyid().to_string()
    })?;
    Ok((authn, body))
}

/// Counts a failed authentication against the source address (and in the metrics).
fn auth_failed(state: &AppState, parts: &Parts, e: ApiError) -> ApiError {
    let addr = address_key(parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip()));
    let _ = state.limits.auth_failures.take(&addr);
    telemetry::auth_failure(e.message());
    e
}

/// Counts a failed authentication against the source address (and in the metrics), a
/// success against the signer's own rate limit.
fn account<C>(
    state: &AppState,
    parts: &Parts,
    result: Result<Authenticated<C>, ApiError>,
    keyid: impl Fn(&C) -> String,
) -> Result<Authenticated<C>, ApiError> {
    match result {
        Ok(authn) => {
            state
                .limits
                .identity
                .take(&keyid(&authn.caller))
                .map_err(ApiError::rate_limited)?;
            Ok(authn)
        }
        Err(e) => Err(auth_failed(state, parts, e)),
    }
}

/// How long an mTLS connection's chain verification is reused when the roles do not change.
const MTLS_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// mTLS (docs/protocol.md §7): the handshake verified the chain against the certificate roles'
/// CAs (dates, CRLs); a role maps it to an identity; the `Sigil-Nonce` header is the AAD of
/// the sealed bodies and is refused if seen before.
fn authenticate_mtls(
    state: &AppState,
    core: &Core,
    parts: &Parts,
    certs: &PeerCerts,
) -> Result<Authenticated<Arc<Caller>>, ApiError> {
    let result = (|| {
        state.fresh.hosts.check(parts)?;
        let caller = certificate_caller(state, core, certs)?;
        let nonce = fresh_nonce(state, parts, &caller)?;
        // No durable mark: only the holder of the client's TLS key can send it again.
        Ok(Authenticated {
            caller,
            nonce,
            mark: None,
        })
    })();
    account(state, parts, result, |c| c.identity.keyid.clone())
}

/// The identity the client certificate maps to. Verified per role: the role is the one whose
/// own CA (and CRL) accepts the chain, never one picked from names the client sent. The
/// result, and the identity the role maps the leaf to, hold for this connection until the
/// roles or their mappings change (a new CA, CRL or mapping, a deleted identity) or a minute
/// has passed (dates). The identity itself (enabled, policies) is looked up at every request.
fn certificate_caller(
    state: &AppState,
    core: &Core,
    certs: &PeerCerts,
) -> Result<Arc<Caller>, ApiError> {
    let generation = core.cert_generation();
    let (leaf, intermediates) = certs
        .chain
        .split_first()
        .ok_or_else(|| ApiError::unauthorized("no client certificate"))?;
    let cached = certs
        .verified
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|(g, _, at)| *g == generation && at.elapsed() < MTLS_RECHECK);
    Ok(
        match cached.and_then(|(_, name, _)| core.caller_by_name(&name)) {
            Some(caller) => caller,
            None => {
                let trust = state.client_trust(&state.tls_identity()).ok_or_else(|| {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Sigil is sealed")
                })?;
                let leaf_der = rustls::pki_types::CertificateDer::from(leaf.clone());
                let intermediates: Vec<_> = intermediates
                    .iter()
                    .map(|c| rustls::pki_types::CertificateDer::from(c.clone()))
                    .collect();
                let at = rustls::pki_types::UnixTime::now();
                let (name, caller) = trust
                    .roles
                    .iter()
                    .filter(|(_, v)| v.verify_client_cert(&leaf_der, &intermediates, at).is_ok())
                    .find_map(|(role, _)| core.caller_for_certificate(role, leaf))
                    .ok_or_else(|| {
                        ApiError::unauthorized(
                            "the client certificate maps to no identity (see auth/cert/certs)",
                        )
                    })?;
                *certs.verified.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((generation, name, std::time::Instant::now()));
                caller
            }
        },
    )
}

/// The request's `Sigil-Nonce` (the AAD of its sealed bodies), refused if seen before.
fn fresh_nonce(state: &AppState, parts: &Parts, caller: &Caller) -> Result<String, ApiError> {
    let nonce = parts
        .headers
        .get(headers::SIGIL_NONCE)
        .and_then(|v| v.to_str().ok())
        .filter(|n| n.len() <= 128)
        .filter(|n| sigil_crypto::b64url_decode(n).is_ok_and(|b| b.len() >= 16))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "mTLS requests need a Sigil-Nonce header (at least 16 random bytes, base64url)",
            )
        })?
        .to_owned();
    // Remembered as long as a default signature's nonce (2 minutes with the grace): a
    // replay over mTLS needs the client's TLS key anyway, and at tens of thousands of
    // requests a second every minute of memory costs tens of MiB.
    let t = now();
    if state
        .fresh
        .replay
        .check_and_insert(
            &caller.identity.keyid,
            &nonce,
            t + sigil_proto::signature::DEFAULT_VALIDITY_SECS,
            t,
        )
        .is_none()
    {
        return Err(ApiError::unauthorized(
            "replayed request: this nonce was already used",
        ));
    }
    Ok(nonce)
}
