//! The HTTP API: one handler for `/v1/…`. Rate limits first; the endpoints anyone may call
//! (health, seal status, init, unseal: [`public`], [`unseal`]); then — only when unsealed —
//! the request is planned once ([`sigil_core::Plan`]), authenticated ([`authn`]), opened,
//! audited, run by the core or the server ([`logical`], [`sys`], [`rekey`]) and sealed.

mod authn;
mod backup;
mod blocking;
mod body;
mod cluster;
pub(crate) mod forwarded;
mod logical;
mod plain;
mod public;
mod rekey;
mod restore;
mod state;
mod sys;
mod unseal;
mod upload;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, StatusCode};

use crate::audit_trail::{RemoteAddr, Trail};
use crate::auth;
use crate::error::ApiError;
use crate::limits::address_key;
use crate::telemetry;
use logical::{Incoming, Wrap, plan, take_query};
use plain::unavailable;
pub(crate) use state::AppState;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// A request a follower forwarded to this node (the leader), answered as its own.
pub(super) async fn handle_forwarded(state: Arc<AppState>, req: Request) -> Response {
    handle(State(state), req).await
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    // The server's own endpoints by name; a core path gets its label from the request's plan.
    let mut route = telemetry::server_route(req.uri().path().strip_prefix("/v1/").unwrap_or(""));
    let method = req.method().as_str().to_owned();
    let (req, leftover) = crate::leftover::Leftover::split(req);
    // A body refused as too large may be up to ~1.4 times the limit once sealed and encoded:
    // read that much of it (within the time limit) so the client gets to see the 413.
    let drain_too_large = state.limits.max_request_bytes().saturating_mul(2);
    let resp = match dispatch(state, req, &mut route).await {
        Ok(r) => r,
        Err(e) => {
            // Answered early: the client sees the status, not a reset (leftover.rs).
            if let Some(leftover) = leftover {
                let (bytes, time) = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    (drain_too_large, crate::leftover::DRAIN_TIME_TOO_LARGE)
                } else {
                    (0, std::time::Duration::ZERO)
                };
                leftover.drain(bytes, time).await;
            }
            e.into_response()
        }
    };
    telemetry::request(route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

async fn dispatch(
    state: Arc<AppState>,
    req: Request,
    route: &mut String,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    auth::refuse_tokens(&parts.headers)?;
    let Some(raw_path) = parts.uri.path().strip_prefix("/v1/") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Sigil's API is under /v1/",
        ));
    };
    let addr = admit(&state, &parts, raw_path)?;
    if parts.method == Method::GET
        && let Some(answer) = public::answer(&state, raw_path)
    {
        return answer;
    }
    // Init and unseal are the node's own (each node of a cluster is unsealed by itself). The
    // body is read only once the request is authenticated, except for init, under a small
    // budget.
    let body = match unseal::handle(&state, &parts, raw_path, body).await {
        unseal::Seal::Done(answer) => return answer,
        unseal::Seal::Pass(body) => body,
    };
    let (parts, body) = match &state.cluster {
        None => (parts, body),
        Some(cluster) => match cluster::serve_here(&state, cluster, parts, body).await {
            cluster::Here::Answered(answer) => return answer,
            cluster::Here::Serve(parts, body) => (parts, body),
        },
    };
    serve(state, parts, body, addr, route).await
}

/// Plans, authenticates and runs a request this node answers.
async fn serve(
    state: Arc<AppState>,
    parts: Parts,
    body: axum::body::Body,
    addr: String,
    route: &mut String,
) -> Result<Response, ApiError> {
    let raw_path = parts.uri.path().strip_prefix("/v1/").unwrap_or("");
    let node = &state.node;
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    // `stale=true`: a follower answered this read itself (api/cluster.rs); elsewhere it changes
    // nothing, but a request that writes may not carry it.
    let stale = logical::take_query(&mut query, "stale").is_some_and(|v| v == "true");
    let core = node.core();
    let mut planned = core
        .as_deref()
        .map(|core| plan(core, &parts.method, raw_path, &query));
    if let Some(Ok(plan)) = &planned
        && let Some(label) = plan.label()
    {
        *route = label;
    }
    if let Some(core) = &core
        && let Some(Ok(plan)) = planned.take_if(|p| p.as_ref().is_ok_and(|p| p.is_public_read()))
    {
        // A CA certificate or CRL: public, served raw to anyone (relying parties fetch
        // them), under the unauthenticated per-address limit.
        state
            .limits
            .unauthenticated
            .take(&addr)
            .map_err(ApiError::rate_limited)?;
        return public::raw_read(Arc::clone(core), plan).await;
    }
    let (Some(core), Some(planned)) = (core, planned) else {
        return Err(unavailable(node));
    };
    if stale && planned.as_ref().is_ok_and(|p| p.writes()) {
        return Err(ApiError::bad_request(
            "stale=true is for reads, and this request writes (it may issue a lease); send it without stale",
        ));
    }
    let mut trail = Trail::new(&parts, raw_path)?;
    // Approvals signed by seal admins (who need not be identities).
    let approval = matches!(
        raw_path,
        "sys/rekey/approve" | "sys/storage/raft/snapshot/approve"
    ) && (parts.method == Method::POST || parts.method == Method::PUT);
    if approval {
        let outcome = if raw_path == "sys/rekey/approve" {
            rekey::approve(&state, &core, &parts, body, &mut trail).await
        } else {
            restore::approve(&state, &core, &parts, body, &mut trail).await
        };
        return trail.finish(&core, outcome).await;
    }
    // A snapshot to restore, streamed (its body is not read whole).
    if raw_path == restore::PATH
        && (parts.method == Method::POST || parts.method == Method::PUT)
        && upload::is(&parts, sigil_proto::headers::SEALED_STREAM)
    {
        let outcome = restore::upload(&state, &core, &parts, body, &mut trail).await;
        return trail.finish(&core, outcome).await;
    }
    // Response wrapping (docs/e2e.md): in the query, so the request's signature covers it.
    let wrap = Wrap {
        to: take_query(&mut query, "wrap_to"),
        ttl: take_query(&mut query, "wrap_ttl"),
    };
    let request = Incoming {
        parts: &parts,
        planned,
        query,
        wrap,
    };
    let outcome = logical::handle(&state, &core, request, body, &mut trail).await;
    trail.finish(&core, outcome).await
}

/// The per-address limits: every request takes from its address's bucket; an address with
/// too many failed authentications waits; the endpoints anyone may call have a stricter one.
/// Returns the address's key in the limiters.
fn admit(state: &AppState, parts: &Parts, raw_path: &str) -> Result<String, ApiError> {
    let addr = address_key(parts.extensions.get::<RemoteAddr>().map(|r| r.0.ip()));
    let limits = &state.limits;
    limits.address.take(&addr).map_err(ApiError::rate_limited)?;
    limits
        .auth_failures
        .peek(&addr)
        .map_err(ApiError::rate_limited)?;
    if UNAUTHENTICATED.contains(&raw_path) {
        limits
            .unauthenticated
            .take(&addr)
            .map_err(ApiError::rate_limited)?;
    }
    Ok(addr)
}

/// Endpoints anyone may call (stricter per-address limit).
pub(crate) const UNAUTHENTICATED: &[&str] = &[
    "sys/openapi.json",
    "sys/health",
    "sys/seal-status",
    "sys/server-key",
    "sys/rekey",
    "sys/init",
    "sys/unseal",
    "sys/unseal/share",
    "sys/rekey/approve",
    "sys/storage/raft/snapshot/approve",
    "sys/leader",
    "sys/storage/raft/join",
    "sys/storage/raft/peers",
    "sys/storage/raft/snapshot",
];
