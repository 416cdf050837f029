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
use crate::error::ApiError;
use sigil_engine::timefmt::unix_now as now;

/// The answer to `GET /v1/<raw_path>` if it is one of the server's unauthenticated endpoints.
pub(super) fn answer(node: &Node, raw_path: &str) -> Option<Result<Response, ApiError>> {
    Some(match raw_path {
        "sys/health" => Ok(health(node)),
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

fn health(node: &Node) -> Response {
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
            standby: false,
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
