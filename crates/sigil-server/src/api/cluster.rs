//! The API in a cluster: whether this node answers a request or forwards it to the leader,
//! and the cluster's endpoints (join, approve, remove a peer, the configuration, the leader,
//! step down).

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sigil_core::policy::Capability;
use sigil_proto::raft::{Approve, JoinRequest, JoinResponse, RemovePeer};
use sigil_raft::Member;

use super::blocking::blocking;
use super::body::{UNAUTHENTICATED_BODY, read_body};
use super::plain::plain_json;
use super::state::AppState;
use crate::audit_trail::Forwarded;
use crate::cluster::Cluster;
use crate::cluster::forward::{self, Seen};
use crate::error::ApiError;
use crate::sealing::Reply;

/// Where a request goes in a cluster.
pub(super) enum Here {
    /// Answered (forwarded, or a join request).
    Answered(Result<Response, ApiError>),
    /// This node leads and answers it.
    Serve(Parts, Body),
}

/// Forwards the request when this node does not lead; when it leads, makes its core current
/// for its term first, and answers join requests.
pub(super) async fn serve_here(
    state: &Arc<AppState>,
    cluster: &Arc<Cluster>,
    parts: Parts,
    body: Body,
) -> Here {
    if cluster.restoring.load(std::sync::atomic::Ordering::Acquire) {
        return Here::Answered(Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a snapshot is being restored over the cluster's storage; try again",
        )));
    }
    if cluster.leads() && !cluster.holds_lease() {
        return Here::Answered(Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has not heard from a majority of the cluster lately and may no longer lead; try again",
        )));
    }
    if !cluster.leads() && stale_read(&parts) {
        return match stale_here(state, cluster).await {
            Ok(()) => Here::Serve(parts, body),
            Err(e) => Here::Answered(Err(e)),
        };
    }
    if !cluster.leads() {
        if parts.extensions.get::<Forwarded>().is_some() {
            return Here::Answered(Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "leadership moved while the request was forwarded; try again",
            )));
        }
        let seen = Seen {
            authority: crate::auth::authority(&parts).ok().map(str::to_owned),
            authority_ok: state.fresh.hosts.check(&parts).is_ok(),
            // A sealed body is at most ~1.4 times the limit; the leader enforces the limit.
            max_body: state.limits.max_request_bytes().saturating_mul(2),
        };
        return Here::Answered(forward::to_leader(cluster, parts, body, seen).await);
    }
    // Once per term the core is started again from storage (blocking); every other request
    // only checks that this was done.
    let ready = if cluster.is_active() {
        Ok(true)
    } else {
        let worker = Arc::clone(state);
        blocking(move || Ok(worker.activate())).await
    };
    match ready {
        Ok(true) => {}
        Ok(false) => {
            return Here::Answered(Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node is taking over as the leader; try again",
            )));
        }
        Err(e) => return Here::Answered(Err(e)),
    }
    let join = parts.uri.path() == "/v1/sys/storage/raft/join"
        && (parts.method == Method::POST || parts.method == Method::PUT);
    if join {
        return Here::Answered(join_request(state, cluster, &parts, body).await);
    }
    Here::Serve(parts, body)
}

/// Whether the request is a read that asks to be answered from this node's storage
/// (`?stale=true`, covered by the signature as the whole query is).
fn stale_read(parts: &Parts) -> bool {
    let read = parts.method == Method::GET || parts.method.as_str() == "LIST";
    read && form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "stale" && v == "true")
}

/// A follower answers a stale read itself while it follows a leader (one that has been heard
/// from within the election timeout), with a core at most [`crate::cluster::STALE_CORE`]
/// behind its storage.
async fn stale_here(state: &Arc<AppState>, cluster: &Arc<Cluster>) -> Result<(), ApiError> {
    if cluster.raft.leader().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node follows no leader (it may be cut off): it does not answer stale reads; try another",
        ));
    }
    let worker = Arc::clone(state);
    let cluster = Arc::clone(cluster);
    blocking(move || {
        cluster
            .freshen_for_stale_read(&worker.node)
            .map_err(ApiError::from)
    })
    .await
}

/// `sys/storage/raft/join` (anyone): records the request, or hands out the approved package.
async fn join_request(
    state: &Arc<AppState>,
    cluster: &Arc<Cluster>,
    parts: &Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(parts, body, UNAUTHENTICATED_BODY).await?;
    let request: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a join request: {e}")))?;
    let server_key = state
        .node
        .server_key()
        .ok_or_else(|| super::plain::unavailable(&state.node))?
        .to_string();
    let package = cluster.joins.ask(request).map_err(ApiError::bad_request)?;
    Ok(plain_json(
        StatusCode::OK,
        &JoinResponse {
            status: if package.is_some() {
                "approved"
            } else {
                "pending"
            }
            .into(),
            server_key,
            package,
        },
    ))
}

/// Answers the cluster's authenticated endpoints; `None` for any other path.
pub(super) async fn handle(
    state: &Arc<AppState>,
    reply: &Reply<'_>,
    path: &str,
    write: bool,
    read: bool,
    data: &mut Option<Value>,
) -> Option<Result<Response, ApiError>> {
    let known = [
        "sys/storage/raft/autopilot/state",
        "sys/storage/raft/autopilot/configuration",
        "sys/storage/raft/approve",
        "sys/storage/raft/remove-peer",
        "sys/storage/raft/configuration",
        "sys/ha-status",
        "sys/step-down",
    ];
    if !known.contains(&path) {
        return None;
    }
    let Some(cluster) = state.cluster.clone() else {
        return Some(Err(ApiError::bad_request(
            "this server does not run in a cluster (its storage is not raft)",
        )));
    };
    Some(match path {
        "sys/storage/raft/approve" if write => approve(state, &cluster, reply, path, data).await,
        "sys/storage/raft/remove-peer" if write => remove(&cluster, reply, path, data).await,
        "sys/step-down" if write => step_down(&cluster, reply, path).await,
        "sys/storage/raft/configuration" if read => {
            reply.authorize(path, Capability::Read).and_then(|()| {
                reply.seal(sigil_core::Response::data(to_json(
                    &cluster.configuration(),
                )))
            })
        }
        "sys/storage/raft/autopilot/state" if read => {
            reply.authorize(path, Capability::Read).and_then(|()| {
                reply.seal(sigil_core::Response::data(to_json(
                    &cluster.autopilot_state(cluster.leading_since()),
                )))
            })
        }
        "sys/storage/raft/autopilot/configuration" if read => {
            reply.authorize(path, Capability::Read).and_then(|()| {
                reply.seal(sigil_core::Response::data(to_json(
                    &cluster.autopilot_config(),
                )))
            })
        }
        "sys/storage/raft/autopilot/configuration" if write => {
            autopilot_config(&cluster, reply, path, data).await
        }
        "sys/ha-status" if read => reply
            .authorize(path, Capability::Read)
            .and_then(|()| reply.seal(sigil_core::Response::data(to_json(&cluster.ha_status())))),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "unsupported operation",
        )),
    })
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

fn body_of<T: serde::de::DeserializeOwned>(data: &mut Option<Value>) -> Result<T, ApiError> {
    serde_json::from_value(data.take().unwrap_or(Value::Null))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `sys/storage/raft/approve` (sudo): seals the package for the node and adds it as a voter
/// once it has caught up.
async fn approve(
    state: &Arc<AppState>,
    cluster: &Arc<Cluster>,
    reply: &Reply<'_>,
    path: &str,
    data: &mut Option<Value>,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let approve: Approve = body_of(data)?;
    let (worker, c) = (Arc::clone(state), Arc::clone(cluster));
    let member = blocking(move || {
        let request = c
            .joins
            .request(&approve.node_id, approve.cert_sha256.as_deref())
            .map_err(ApiError::bad_request)?;
        let package = c
            .package(&worker.node, &request)
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
        c.joins.approved(&request, package);
        let member = Member {
            name: request.node_id.clone(),
            cluster_addr: request.cluster_addr.clone(),
            api_addr: request.api_addr.clone(),
            cert_sha256: request.cert_sha256,
        };
        c.raft
            .add_voter(member.clone())
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        tracing::info!(node = %member.name, cert_sha256 = %member.cert_sha256, "a node joined the cluster");
        Ok(member)
    })
    .await?;
    reply.seal(sigil_core::Response::data(json!({
        "node_id": member.name,
        "cluster_addr": member.cluster_addr,
        "api_addr": member.api_addr,
        "cert_sha256": member.cert_sha256,
        "voter": true,
    })))
}

/// `sys/storage/raft/remove-peer` (sudo), as Vault's.
async fn remove(
    cluster: &Arc<Cluster>,
    reply: &Reply<'_>,
    path: &str,
    data: &mut Option<Value>,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let peer: RemovePeer = body_of(data)?;
    let c = Arc::clone(cluster);
    blocking(move || {
        let known = c
            .raft
            .status()
            .peers
            .iter()
            .any(|p| p.member.name == peer.server_id);
        if !known {
            return Err(ApiError::bad_request(format!(
                "{} is not a member of this cluster",
                peer.server_id
            )));
        }
        c.raft
            .remove(&peer.server_id)
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        c.joins.forget(&peer.server_id);
        tracing::info!(node = %peer.server_id, "a node was removed from the cluster");
        Ok(())
    })
    .await?;
    reply.receipt(StatusCode::NO_CONTENT)
}

/// `sys/step-down` (sudo): the leader hands leadership to another voter.
async fn step_down(
    cluster: &Arc<Cluster>,
    reply: &Reply<'_>,
    path: &str,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let answer = reply.receipt(StatusCode::NO_CONTENT);
    let c = Arc::clone(cluster);
    // After the answer is on its way: stepping down stops this node's heartbeats for a while.
    tokio::task::spawn_blocking(move || {
        if let Err(e) = c.raft.step_down() {
            tracing::warn!(error = %e, "step-down failed");
        }
    });
    answer
}

/// `POST sys/storage/raft/autopilot/configuration` (sudo): the fields given replace the
/// stored ones.
async fn autopilot_config(
    cluster: &Arc<Cluster>,
    reply: &Reply<'_>,
    path: &str,
    data: &mut Option<Value>,
) -> Result<Response, ApiError> {
    reply.authorize_sudo(path, Capability::Update)?;
    let mut config = to_json(&cluster.autopilot_config());
    let Some(Value::Object(changes)) = data.take() else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    for (k, v) in changes {
        if config.get(&k).is_none() {
            return Err(ApiError::bad_request(format!("unknown field {k}")));
        }
        // Vault's CLI sends numbers for durations too.
        let v = match (&k[..], v) {
            ("dead_server_last_contact_threshold" | "last_contact_threshold", Value::Number(n)) => {
                Value::String(format!("{n}s"))
            }
            (_, v) => v,
        };
        config[k] = v;
    }
    let config: sigil_proto::raft::AutopilotConfig =
        serde_json::from_value(config).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let c = Arc::clone(cluster);
    blocking(move || {
        c.set_autopilot_config(&config)
            .map_err(ApiError::bad_request)
    })
    .await?;
    reply.receipt(StatusCode::NO_CONTENT)
}
