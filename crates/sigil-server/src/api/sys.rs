//! The server's own endpoints behind authentication (they need more than the core: the
//! node, the configuration, the listener's channels): `sys/seal`, `sys/reload`,
//! `sys/storage/snapshot`, `sys/metrics`, the rekey proposal and a staged restore.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use sigil_core::Operation;
use sigil_core::policy::Capability;

use super::blocking::blocking;
use super::state::AppState;
use super::{rekey, restore};
use crate::audit_trail::Trail;
use crate::error::ApiError;
use crate::sealing::Reply;
use crate::telemetry;

/// Answers `operation` on `path` if it is one of the server's own endpoints (`data` is taken
/// by the one that reads a body); `None` sends the request on to the core.
pub(super) async fn handle(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
    operation: Operation,
    data: &mut Option<Value>,
    trail: &mut Trail,
) -> Option<Result<Response, ApiError>> {
    let write = matches!(operation, Operation::Create | Operation::Update);
    let read = operation == Operation::Read;
    if let Some(answer) = super::cluster::handle(state, reply, path, write, read, data).await {
        return Some(answer);
    }
    Some(match (path, operation) {
        ("sys/rekey/init", _) if write => rekey::start(state, reply, path, data.take()),
        ("sys/rekey", Operation::Delete) => rekey::cancel(state, reply, path),
        ("sys/reload", _) if write => reload(state, reply, path).await,
        ("sys/storage/snapshot" | "sys/storage/raft/snapshot", Operation::Read) => {
            snapshot(state, reply, path).await
        }
        ("sys/storage/raft/snapshot", _) if write => {
            restore::stage(state, reply, path, data.take()).await
        }
        ("sys/storage/raft/snapshot/restore", Operation::Read) => {
            restore::status(state, reply, path)
        }
        ("sys/storage/raft/snapshot/restore", Operation::Delete) => {
            restore::cancel(state, reply, path)
        }
        ("sys/metrics", Operation::Read) => metrics(state, reply),
        ("sys/seal", _) if write => seal(state, reply, path, trail).await,
        _ => return None,
    })
}

/// `sys/reload` (update and sudo): re-reads the configuration file, as SIGHUP does.
async fn reload(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let worker = Arc::clone(state);
    let report = blocking(move || {
        worker
            .reload()
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await?;
    reply.seal(sigil_core::Response::data(
        serde_json::to_value(report).expect("report serializes"),
    ))
}

/// `sys/storage/snapshot` (read and sudo): an online backup. Streamed when the caller asks
/// (api/backup.rs); otherwise checked as a restore would check it and sealed whole, in JSON.
async fn snapshot(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Read)?;
    if super::backup::asked(reply.headers) {
        return super::backup::stream_snapshot(reply, state.spool_dir.clone()).await;
    }
    let worker = Arc::clone(reply.core);
    let bytes = blocking(move || worker.snapshot().map_err(ApiError::from)).await?;
    let header = sigil_core::snapshot::check(&bytes, None).map_err(|e| {
        tracing::error!(error = %e, "a snapshot just taken does not read back");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the snapshot failed its own check",
        )
    })?;
    let encoded = sigil_crypto::b64url_encode(&bytes);
    drop(bytes);
    reply.seal(sigil_core::Response::data(json!({
        "snapshot": encoded,
        "created": header.created,
        "entries": header.entries,
        "keyring_term": header.keyring_term,
        "body_sha256": header.body_sha256,
    })))
}

/// `sys/metrics` for an authenticated caller with `read` on it (the plain listener is
/// `--metrics-listen`).
fn metrics(state: &AppState, reply: &Reply<'_>) -> Result<Response, ApiError> {
    reply.authorize("sys/metrics", Capability::Read)?;
    let text = telemetry::render(&state.node);
    reply.seal(sigil_core::Response::data(
        json!({ "format": "prometheus", "text": text }),
    ))
}

/// `sys/seal` (update and sudo). Sealing closes the audit devices (with a signed
/// checkpoint): no response entry. The receipt is made first, while the server key is still
/// at hand.
async fn seal(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let answer = reply.receipt(StatusCode::NO_CONTENT)?;
    let worker = Arc::clone(state);
    let sealed = blocking(move || {
        worker.node.seal()?;
        worker.channels.clear();
        Ok(answer)
    })
    .await?;
    trail.closed = true;
    Ok(sealed)
}
