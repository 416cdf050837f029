//! Initialising and unsealing: `sys/init` (anyone, once, under a small body budget),
//! `sys/unseal/share` and `sys/unseal` (signed by a seal admin, who need not be an identity of
//! the sealed core).

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};
use sigil_core::Node;
use sigil_crypto::PublicIdentity;
use sigil_proto::sys::InitRequest;

use super::authn::authenticate;
use super::blocking::blocking;
use super::body::{UNAUTHENTICATED_BODY, read_body};
use super::plain::{plain_json, unavailable};
use super::state::AppState;
use crate::error::ApiError;
use sigil_engine::timefmt::unix_now as now;

/// What a request to an init or unseal endpoint got: an answer, or its body back when it is
/// not one of them.
pub(super) enum Seal {
    /// Answered.
    Done(Result<Response, ApiError>),
    /// Not an init or unseal request.
    Pass(Body),
}

/// Answers `sys/init`, `sys/unseal/share` and `sys/unseal`; any other request gets its body
/// back.
pub(super) async fn handle(
    state: &Arc<AppState>,
    parts: &Parts,
    raw_path: &str,
    body: Body,
) -> Seal {
    let write = parts.method == Method::POST || parts.method == Method::PUT;
    Seal::Done(match raw_path {
        "sys/init" if write => init(state, parts, body).await,
        // Into a new, uninitialized cluster anyone may restore (as anyone may init it); into
        // an initialized one the request goes on to the authenticated endpoints.
        "sys/storage/raft/snapshot" if write && !state.node.initialized() => {
            restore_fresh(state, parts, body).await
        }
        "sys/unseal/share" if parts.method == Method::GET => share(state, parts, body).await,
        "sys/unseal" if write => submit(state, parts, body).await,
        _ => return Seal::Pass(body),
    })
}

/// `POST sys/storage/raft/snapshot` on a new cluster: the snapshot file itself
/// (`content-type: application/vnd.sigil.snapshot`, read as it comes into a spool; or, from
/// older clients, `{"snapshot":"<base64url>"}`), checked as `sigil operator restore` checks
/// it, is written through Raft, the seal configuration last; the cluster is then sealed with
/// the backup's admins and server key.
async fn restore_fresh(
    state: &Arc<AppState>,
    parts: &Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(cluster) = state.cluster.clone() else {
        return Err(ApiError::bad_request(
            "only a cluster restores through the API; restore a file storage with `sigil operator restore FILE --data-dir DIR` while the server is stopped",
        ));
    };
    let spool = if super::upload::is(parts, sigil_proto::headers::SNAPSHOT) {
        super::upload::receive(body, state.spool_dir.clone(), super::upload::Sealed::Plain)
            .await?
            .0
    } else {
        let body = read_body(parts, body, state.authenticated()).await?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Restore {
            snapshot: String,
        }
        let request: Restore = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("expected {{\"snapshot\":\"<base64url>\"}}: {e}"))
        })?;
        let bytes = sigil_crypto::b64url_decode(&request.snapshot)
            .map_err(|_| ApiError::bad_request("snapshot is not base64url"))?;
        super::upload::spool_bytes(&bytes, state.spool_dir.as_deref())?
    };
    let worker = Arc::clone(state);
    blocking(move || {
        let snapshot = crate::cluster::restore::Spooled::check(spool, None)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let header = snapshot.header.clone();
        crate::cluster::restore::into_empty(&cluster.raft, &worker.node, snapshot)?;
        tracing::info!(
            entries = header.entries,
            keyring_term = header.keyring_term,
            created = %header.created,
            "restored a snapshot into a new cluster: sealed until the backup's admins unseal"
        );
        Ok(plain_json(
            StatusCode::OK,
            &serde_json::json!({
                "entries": header.entries,
                "keyring_term": header.keyring_term,
                "created": header.created,
                "server_key": header.server_key,
            }),
        ))
    })
    .await
}

async fn init(state: &Arc<AppState>, parts: &Parts, body: Body) -> Result<Response, ApiError> {
    let body = read_body(parts, body, UNAUTHENTICATED_BODY).await?;
    let worker = Arc::clone(state);
    blocking(move || initialize(&worker.node, &body)).await
}

/// A seal admin's share of the unseal, sealed to them.
async fn share(state: &Arc<AppState>, parts: &Parts, body: Body) -> Result<Response, ApiError> {
    let node = &state.node;
    let (authn, _) = authenticate(state, node, parts, body).await?;
    let share = node
        .sealed_share(&authn.caller.0)
        .ok_or_else(|| unavailable(node))?;
    Ok(plain_json(StatusCode::OK, &share))
}

/// A seal admin's opened share; the last one of the quorum unseals.
async fn submit(state: &Arc<AppState>, parts: &Parts, body: Body) -> Result<Response, ApiError> {
    let (authn, body) = authenticate(state, &state.node, parts, body).await?;
    let worker = Arc::clone(state);
    blocking(move || {
        let status = worker.node.submit_share(&authn.caller.0, &body)?;
        if let Some(core) = worker.node.core().filter(|_| !status.sealed) {
            // The requests that wrote before the restart stay refused (replay.rs).
            let t = now();
            let marks = core.replay_marks(t)?;
            worker.fresh.replay.restore(&marks, t);
            tracing::info!(marks = marks.len(), "replay marks restored");
        }
        Ok(plain_json(StatusCode::OK, &status))
    })
    .await
}

/// Admin public keys with their names (`admin-N` when not given).
pub(super) fn parse_admins(
    admins: &[String],
    names: &[String],
) -> Result<Vec<(String, PublicIdentity)>, ApiError> {
    if !names.is_empty() && names.len() != admins.len() {
        return Err(ApiError::bad_request("names must match admins one to one"));
    }
    admins
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let public = PublicIdentity::parse(text)
                .map_err(|e| ApiError::bad_request(format!("admins[{i}]: {e}")))?;
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("admin-{}", i + 1));
            Ok((name, public))
        })
        .collect()
}

fn initialize(node: &Node, body: &[u8]) -> Result<Response, ApiError> {
    let req: InitRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"admins\":[\"sigil1…\"],\"threshold\":K}}: {e}"
        ))
    })?;
    let admins = parse_admins(&req.admins, &req.names)?;
    let response = node.init(admins, req.threshold)?;
    Ok(plain_json(StatusCode::OK, &response))
}
