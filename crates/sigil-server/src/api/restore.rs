//! A restore over the running cluster (cluster/restore.rs): `POST sys/storage/raft/snapshot`
//! stages it (update and sudo) — the snapshot sent as a sealed stream ([`upload`]) or, from
//! older clients, whole in JSON ([`stage`]) —, `sys/storage/raft/snapshot/restore` shows (read
//! and sudo) or drops it (delete and sudo), and `sys/storage/raft/snapshot/approve` — signed by
//! a seal admin, audited like every write — approves it; the last approval needed carries it
//! out.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;
use serde_json::Value;
use sigil_core::Core;
use sigil_core::policy::Capability;
use sigil_proto::raft::RestoreStatus;

use super::blocking::blocking;
use super::plain::plain_json;
use super::state::AppState;
use super::upload::{Sealed, receive, spool_bytes};
use crate::audit_trail::{Trail, audit_request};
use crate::cluster::Cluster;
use crate::cluster::restore::Spooled;
use crate::error::ApiError;
use crate::sealing::{Reply, Sealing};
use crate::spool::Spool;
use sigil_engine::timefmt::unix_now as now;

/// The endpoint that takes a snapshot to restore.
pub(super) const PATH: &str = "sys/storage/raft/snapshot";

fn cluster_of(state: &AppState) -> Result<Arc<Cluster>, ApiError> {
    state.cluster.clone().ok_or_else(|| {
        ApiError::bad_request(
            "only a cluster restores through the API; restore a file storage with `sigil operator restore FILE --data-dir DIR` while the server is stopped",
        )
    })
}

/// The seal threshold (approvals a restore needs).
fn required(state: &AppState) -> u8 {
    state.node.status().threshold
}

fn answer(reply: &Reply<'_>, status: &RestoreStatus) -> Result<Response, ApiError> {
    reply.seal(sigil_core::Response::data(
        serde_json::to_value(status).expect("status serializes"),
    ))
}

/// `POST sys/storage/raft/snapshot` on an initialized cluster: checks the snapshot (whole,
/// signed by this cluster's server key, its keyring under the current root key) and stages it.
pub(super) async fn stage(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
    data: Option<Value>,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let cluster = cluster_of(state)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Restore {
        snapshot: String,
    }
    let request: Restore = serde_json::from_value(data.unwrap_or_default()).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"snapshot\":\"<base64url>\"}}: {e}"))
    })?;
    let worker = Arc::clone(state);
    let status = blocking(move || {
        let bytes = sigil_crypto::b64url_decode(&request.snapshot)
            .map_err(|_| ApiError::bad_request("snapshot is not base64url"))?;
        let spool = spool_bytes(&bytes, worker.spool_dir.as_deref())?;
        stage_spooled(&worker, &cluster, spool)
    })
    .await?;
    answer(reply, &status)
}

/// `POST sys/storage/raft/snapshot` with the snapshot as a sealed stream (docs/protocol.md
/// §4.7) on an initialized cluster: authenticated from the headers, authorized (update and
/// sudo) and audited before a byte of the body is read, which then goes, opened frame by frame,
/// to a spool in the data directory; the signature's digest is checked once it has all come,
/// then the snapshot is checked and staged as [`stage`] does. `[limits] max_request_bytes` does
/// not apply: the snapshot is never held in memory.
pub(super) async fn upload(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, Option<Value>), ApiError> {
    let pending = super::authn::caller_before_body(state, core, parts, trail).await?;
    trail.operation = Some(sigil_core::Operation::Update);
    trail.path = PATH.to_owned();
    if !trail.mtls {
        trail.record_signature(parts);
    }
    audit_request(core, || trail.request_entry(None)).await?;
    core.authorize(
        pending.caller(),
        PATH,
        &[Capability::Update, Capability::Sudo],
    )?;
    let cluster = cluster_of(state)?;
    let sealed = Sealed::Stream {
        server: core.server_identity().encryption_key(),
        caller: pending.caller().public.encryption_key(),
        nonce: pending.nonce(),
    };
    let (spool, sha256) = receive(body, state.spool_dir.clone(), sealed).await?;
    let authn = pending.finish(state, parts, &sha256)?;
    let worker = Arc::clone(state);
    let status = blocking(move || stage_spooled(&worker, &cluster, spool)).await?;
    let sealing = Sealing::of(&state.channels, &parts.headers, &authn.caller);
    let reply = Reply {
        core,
        channels: &state.channels,
        authn: &authn,
        sealing: &sealing,
        request_id: &trail.request_id.clone(),
        headers: &parts.headers,
    };
    Ok((answer(&reply, &status)?, None))
}

/// Checks a spooled snapshot for a restore over this cluster — whole, signed by this
/// cluster's server key, its keyring under the current root key — and stages it.
fn stage_spooled(
    state: &AppState,
    cluster: &Cluster,
    spool: Spool,
) -> Result<RestoreStatus, ApiError> {
    let server_key = state
        .node
        .server_key()
        .ok_or_else(|| super::plain::unavailable(&state.node))?
        .to_string();
    let snapshot = Spooled::check(spool, Some(&server_key)).map_err(|e| {
        ApiError::bad_request(format!(
            "{e} (a snapshot of another cluster restores only into a new, uninitialized one)"
        ))
    })?;
    snapshot.fits(&cluster.raft)?;
    state.node.opens(&snapshot.keyring).map_err(|_| {
        ApiError::bad_request(
            "the snapshot's keyring does not open with this cluster's root key (it was taken before a rekey): restore it into a new cluster and unseal that with the snapshot's admins",
        )
    })?;
    let status = cluster.restores.stage(snapshot, required(state), now())?;
    tracing::warn!(
        digest = status.digest,
        entries = status.entries,
        created = status.created,
        "a restore over the running cluster is staged: it runs when the seal admins approve it"
    );
    Ok(status)
}

/// `GET sys/storage/raft/snapshot/restore` (read and sudo).
pub(super) fn status(
    state: &AppState,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Read)?;
    let cluster = cluster_of(state)?;
    answer(reply, &cluster.restores.status(required(state), now()))
}

/// `DELETE sys/storage/raft/snapshot/restore` (delete and sudo).
pub(super) fn cancel(
    state: &AppState,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Delete)?;
    cluster_of(state)?.restores.cancel();
    reply.receipt(StatusCode::NO_CONTENT)
}

/// `sys/storage/raft/snapshot/approve`: signed by a seal admin; the last approval needed
/// writes the snapshot over the cluster's storage and starts this leader's core from it.
pub(super) async fn approve(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, Option<Value>), ApiError> {
    let (keyid, digest) = super::rekey::admin_approval(state, core, parts, body, trail).await?;
    let cluster = cluster_of(state)?;
    let worker = Arc::clone(state);
    let status = blocking(move || {
        let required = worker.node.admin_quorum(&keyid)?;
        let (status, ready) = cluster.restores.approve(&keyid, &digest, required, now())?;
        if let Some(snapshot) = ready {
            // New requests wait until it is written (those already running may still finish).
            struct Gate<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Gate<'_> {
                fn drop(&mut self) {
                    self.0.store(false, std::sync::atomic::Ordering::Release);
                }
            }
            cluster
                .restoring
                .store(true, std::sync::atomic::Ordering::Release);
            let _gate = Gate(&cluster.restoring);
            crate::cluster::restore::over_running(&cluster.raft, &worker.node, snapshot)?;
            // The replay marks written since the snapshot were kept; the snapshot's count too.
            worker.load_replay_marks();
            tracing::warn!(
                entries = status.entries,
                created = status.created,
                "restored a snapshot over the running cluster (approved by the seal admins)"
            );
        }
        Ok(status)
    })
    .await?;
    Ok((plain_json(StatusCode::OK, &status), None))
}
