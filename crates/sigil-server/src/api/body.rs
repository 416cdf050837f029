//! Body limits: how much of a body is read, and for how long. The full budget only once the
//! request is authenticated (a verified signature or a client certificate).

use axum::body::{Body, Bytes};
use http::request::Parts;
use http::{StatusCode, header};

use super::state::AppState;
use crate::error::ApiError;

/// How long a client may take to send its body (408 after).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How much of a body is read, and for how long: the full budget only once the request is
/// authenticated (a verified signature or a client certificate).
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    bytes: usize,
    time: std::time::Duration,
    /// Where the limit is set, for the 413's message.
    setting: &'static str,
}

impl AppState {
    /// An authenticated caller's budget: `[limits] max_request_bytes`.
    pub(crate) fn authenticated(&self) -> Budget {
        Budget {
            bytes: self.limits.max_request_bytes(),
            time: BODY_TIMEOUT,
            setting: "the server's [limits] max_request_bytes",
        }
    }
}

/// For the endpoints anyone may call with a body (`sys/init`): init certificates and admin
/// keys fit with room to spare.
pub(super) const UNAUTHENTICATED_BODY: Budget = Budget {
    bytes: 64 * 1024,
    time: std::time::Duration::from_secs(10),
    setting: "fixed for requests without a signature",
};

pub(super) async fn read_body(
    parts: &Parts,
    body: Body,
    budget: Budget,
) -> Result<Bytes, ApiError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        let size = declared.map_or_else(|| "more than that".to_owned(), |n| format!("{n} bytes"));
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: {size}, the limit is {} bytes ({}; the body is measured as sent, sealed)",
                budget.bytes, budget.setting
            ),
        )
    };
    if declared.is_some_and(|n| n > budget.bytes) {
        return Err(too_large());
    }
    match tokio::time::timeout(budget.time, axum::body::to_bytes(body, budget.bytes)).await {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
    }
}
