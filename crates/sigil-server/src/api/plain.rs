//! Answers in plain JSON: what anyone may read (health, seal status), and the refusal of a
//! node that is sealed or not initialized.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sigil_core::Node;

use crate::error::ApiError;

pub(super) fn plain_json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let mut resp = (
        status,
        serde_json::to_string(value).expect("plain JSON serializes"),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(super) fn unavailable(node: &Node) -> ApiError {
    if node.initialized() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Sigil is sealed")
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sigil is not initialized: run `sigil operator init`",
        )
    }
}
