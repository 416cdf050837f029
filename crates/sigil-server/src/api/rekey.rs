//! Rekeying (a new set of seal admins): `sys/rekey/init` and the cancel (sudo, from an
//! identity), `sys/rekey/approve` (signed by a current seal admin, audited like every write).

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};
use sigil_core::policy::Capability;
use sigil_core::{Core, Operation};
use sigil_proto::sys::{RekeyApproval, RekeyRequest};

use super::authn::authenticate;
use super::blocking::blocking;
use super::plain::plain_json;
use super::state::AppState;
use super::unseal::parse_admins;
use crate::audit_trail::Trail;
use crate::audit_trail::audit_request;
use crate::error::ApiError;
use crate::sealing::Reply;
use sigil_engine::timefmt::unix_now as now;

/// `sys/rekey/init`: proposes the new admins and threshold (update and sudo).
pub(super) fn start(
    state: &AppState,
    reply: &Reply<'_>,
    path: &str,
    data: Option<Value>,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let req: RekeyRequest = serde_json::from_value(data.unwrap_or_default()).map_err(|_| {
        ApiError::bad_request(
            "expected {\"admins\":[\"sigil1…\"],\"threshold\":K,\"names\":[…],\"ttl_seconds\":N}",
        )
    })?;
    let admins = parse_admins(&req.admins, &req.names)?;
    let status = state
        .node
        .rekey_start(admins, req.threshold, req.ttl_seconds, now())?;
    reply.seal(sigil_core::Response::data(
        serde_json::to_value(status).expect("status serializes"),
    ))
}

/// `DELETE sys/rekey`: drops the proposal (delete and sudo).
pub(super) fn cancel(
    state: &AppState,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Delete)?;
    state.node.rekey_cancel();
    reply.receipt(StatusCode::NO_CONTENT)
}

/// An approval signed by a seal admin (`{"digest": …}`), authenticated and audited like every
/// write before anything is counted: the signer's keyid and the digest.
pub(super) async fn admin_approval(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(String, String), ApiError> {
    let (authn, body) = authenticate(state, &state.node, parts, body).await?;
    let keyid = authn.caller.0.clone();
    let name = core
        .caller(&keyid)
        .map(|c| c.identity.name.clone())
        .unwrap_or_default();
    trail.identity = Some((keyid.clone(), name));
    trail.operation = Some(Operation::Update);
    trail.record_signature(parts);
    let approval: RekeyApproval = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("expected {\"digest\": \"<digest>\"}"))?;
    let data = json!({ "digest": approval.digest });
    audit_request(core, || trail.request_entry(Some(&data))).await?;
    Ok((keyid, approval.digest))
}

/// `sys/rekey/approve`: signed by a current seal admin, audited like every other write.
pub(super) async fn approve(
    state: &Arc<AppState>,
    core: &Arc<Core>,
    parts: &Parts,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, Option<Value>), ApiError> {
    let (keyid, digest) = admin_approval(state, core, parts, body, trail).await?;
    let worker = Arc::clone(state);
    let (response, complete) = blocking(move || {
        let status = worker.node.rekey_approve(&keyid, &digest, now())?;
        Ok((plain_json(StatusCode::OK, &status), status.complete))
    })
    .await?;
    if complete && let Some(cluster) = &state.cluster {
        let took = cluster.push_root(&state.node).await;
        tracing::info!(
            members = took,
            "the rekeyed root key was handed to the other members"
        );
    }
    Ok((response, None))
}
