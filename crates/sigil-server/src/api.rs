//! The HTTP API: one handler for `/v1/…` that authenticates, opens, dispatches and seals.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use sigil_core::{Core, Operation};
use sigil_crypto::SealInfo;
use sigil_proto::{body as sealed, headers, sys};
use zeroize::Zeroizing;

use crate::auth::{self, Authenticated};
use crate::error::ApiError;
use crate::replay::ReplayCache;

/// The largest request body accepted (413 above).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(crate) struct AppState {
    pub(crate) core: Core,
    pub(crate) replay: ReplayCache,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match dispatch(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn plain_json(value: &impl serde::Serialize) -> Response {
    let mut resp = serde_json::to_string(value)
        .expect("plain JSON serializes")
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn dispatch(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    auth::refuse_tokens(&parts.headers)?;
    let Some(raw_path) = parts.uri.path().strip_prefix("/v1/") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Sigil's API is under /v1/",
        ));
    };
    if parts.method == Method::GET
        && let Some(r) = unauthenticated(state, raw_path)
    {
        return Ok(r);
    }

    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;

    let authn = auth::authenticate(&state.core, &state.replay, &parts, &body, now())?;
    let data = open_body(state, &authn, &parts.headers, &body)?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let list_flag = query.iter().any(|(k, v)| k == "list" && v == "true");
    let operation = match parts.method.as_str() {
        "GET" if list_flag => Operation::List,
        "LIST" => Operation::List,
        "GET" => Operation::Read,
        "POST" | "PUT" => Operation::Update,
        "PATCH" => Operation::Patch,
        "DELETE" => Operation::Delete,
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported method",
            ));
        }
    };
    let mut path = sigil_core::normalize_path(raw_path)?;
    if operation == Operation::List && !path.ends_with('/') {
        path.push('/');
    }
    let request = sigil_core::Request {
        operation,
        path,
        data,
        query,
    };
    let response = state.core.handle(&authn.caller, request)?;
    seal_response(state, &authn, response)
}

/// The three endpoints anyone may read, in plain JSON (PROTOCOL.md §4).
fn unauthenticated(state: &AppState, path: &str) -> Option<Response> {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    Some(match path {
        "sys/health" => plain_json(&sys::Health {
            initialized: true,
            sealed: false,
            standby: false,
            server_time_utc: now(),
            version,
        }),
        "sys/seal-status" => plain_json(&sys::SealStatus {
            kind: "shamir".into(),
            initialized: true,
            sealed: false,
            threshold: 1,
            admins: 1,
            progress: 0,
            storage_type: state.core.storage_kind().into(),
            version,
        }),
        "sys/server-key" => {
            let public = state.core.server_identity().public();
            plain_json(&sys::ServerKey {
                public_key: public.to_string(),
                keyid: public.keyid().to_string(),
            })
        }
        _ => return None,
    })
}

fn open_body(
    state: &AppState,
    authn: &Authenticated,
    headers_in: &http::HeaderMap,
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
    let plain = sealed::open(
        state.core.server_identity().encryption_key(),
        authn.caller.public.encryption_key(),
        SealInfo::Request,
        &authn.nonce,
        body,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
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

fn seal_response(
    state: &AppState,
    authn: &Authenticated,
    response: sigil_core::Response,
) -> Result<Response, ApiError> {
    if response.status == 204 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let request_id = sigil_crypto::random::uuid().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "random number generator failed",
        )
    })?;
    let envelope = json!({
        "request_id": request_id,
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": response.data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": response.mount_type,
    });
    let plain = Zeroizing::new(serde_json::to_vec(&envelope).expect("response serializes"));
    drop(envelope);
    let body = sealed::seal(
        state.core.server_identity().encryption_key(),
        authn.caller.public.encryption_key(),
        SealInfo::Response,
        &authn.nonce,
        &plain,
    )
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sealing the response failed",
        )
    })?;
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, Body::from(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(headers::SEALED_JSON),
    );
    Ok(resp)
}
