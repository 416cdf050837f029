//! What anyone may ask without a key: health, seal status, the server's key, the OpenAPI
//! document, the rekey status, and the public reads of engines (PKI's CA certificates and
//! CRLs, served raw to relying parties).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sigil_core::{Core, Node, Plan};
use sigil_proto::sys;

use super::blocking::blocking;
use super::plain::{plain_json, unavailable};
use super::state::AppState;
use crate::error::ApiError;
use sigil_engine::timefmt::unix_now as now;

/// The answer to `GET /v1/<raw_path>` if it is one of the server's unauthenticated endpoints.
pub(super) fn answer(state: &AppState, raw_path: &str) -> Option<Result<Response, ApiError>> {
    let node = &state.node;
    let cluster = state.cluster.as_deref();
    Some(match raw_path {
        "sys/health" => Ok(health(node, cluster)),
        "sys/storage/raft/peers" => match cluster {
            Some(c) => Ok(plain_json(StatusCode::OK, &c.peers())),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "this server does not run in a cluster",
            )),
        },
        "sys/leader" => match cluster {
            Some(c) => Ok(plain_json(StatusCode::OK, &c.leader())),
            None => Ok(plain_json(
                StatusCode::OK,
                &sigil_proto::raft::Leader {
                    ha_enabled: false,
                    is_self: true,
                    leader_address: String::new(),
                    leader_cluster_address: String::new(),
                    performance_standby: false,
                    raft_applied_index: 0,
                    raft_term: 0,
                },
            )),
        },
        "sys/openapi.json" => Ok(plain_json(StatusCode::OK, &crate::openapi::document())),
        "sys/seal-status" => Ok(plain_json(StatusCode::OK, &node.status())),
        "sys/rekey" => match node.core() {
            Some(_) => Ok(plain_json(StatusCode::OK, &node.rekey_status(now()))),
            None => Err(unavailable(node)),
        },
        "sys/server-key" => match node.server_key() {
            Some(public) => Ok(plain_json(
                StatusCode::OK,
                &sys::ServerKey {
                    public_key: public.to_string(),
                    keyid: public.keyid().to_string(),
                },
            )),
            None => Err(unavailable(node)),
        },
        _ => return None,
    })
}

/// A planned public read ([`Plan::is_public_read`]), served raw on a blocking thread (a CRL
/// read may sign a fresh CRL).
pub(super) async fn raw_read(core: Arc<Core>, plan: Plan) -> Result<Response, ApiError> {
    blocking(move || {
        let raw = core.public_read(&plan).map_err(ApiError::from)?;
        let mut resp = (StatusCode::OK, raw.body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(raw.content_type),
        );
        Ok(resp)
    })
    .await
}

fn health(node: &Node, cluster: Option<&crate::cluster::Cluster>) -> Response {
    let status = node.status();
    // Vault's codes: 200 unsealed, 503 sealed, 501 not initialized; and 503 when the storage
    // stopped taking writes (a load balancer must not send writes here).
    let code = match (status.initialized, status.sealed) {
        (false, _) => StatusCode::NOT_IMPLEMENTED,
        (true, true) => StatusCode::SERVICE_UNAVAILABLE,
        (true, false) if status.storage_error.is_some() => StatusCode::SERVICE_UNAVAILABLE,
        (true, false) => StatusCode::OK,
    };
    plain_json(
        code,
        &sys::Health {
            initialized: status.initialized,
            sealed: status.sealed,
            standby: cluster.is_some_and(|c| !c.leads()),
            server_time_utc: now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            storage: if status.storage_error.is_some() {
                "failed"
            } else {
                "ok"
            }
            .to_owned(),
            storage_error: status.storage_error,
        },
    )
}
