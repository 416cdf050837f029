//! The one error type of the HTTP edge: a status and a message that is safe to show.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sigil_core::{CoreError, Severity};
use sigil_proto::ErrorBody;

/// An error answered as plain `{"errors":["…"]}` (docs/protocol.md §8). Never carries secrets.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds, for 429.
    retry_after: Option<u64>,
    /// The body was sealed to a channel the server does not hold (`Sigil-Channel: expired`).
    /// `Sigil-Channel: expired; sig=…`: the server's signature over
    /// `headers::channel_expired_message`.
    channel_expired: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            channel_expired: None,
        }
    }

    /// 400 for a body sealed to a channel the server does not hold for this caller: the
    /// client seals it to the server key and sends it again. `signature`: the server's, over
    /// `headers::channel_expired_message` for this request (base64url).
    pub(crate) fn channel_expired(signature: String) -> Self {
        ApiError {
            channel_expired: Some(signature),
            ..Self::bad_request(
                "the body is sealed to a channel this server does not hold (expired or unknown): seal it to the server key",
            )
        }
    }

    /// 429, with the seconds to wait.
    pub(crate) fn rate_limited(wait: std::time::Duration) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "rate limited: slow down".into(),
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            channel_expired: None,
        }
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// The HTTP status of a core error: the only place the two meet.
fn status_of(e: &CoreError) -> StatusCode {
    match e {
        CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
        CoreError::Forbidden | CoreError::GrantRefused(_) => StatusCode::FORBIDDEN,
        CoreError::NotFound(_) => StatusCode::NOT_FOUND,
        CoreError::UnsupportedOperation => StatusCode::METHOD_NOT_ALLOWED,
        CoreError::Conflict(_) | CoreError::Contended => StatusCode::CONFLICT,
        CoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CoreError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        CoreError::AuditUnavailable
        | CoreError::StorageStopped
        | CoreError::StorageUnavailable(_)
        | CoreError::Keyring(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e.severity() {
            Severity::Request => {}
            Severity::Unavailable => tracing::warn!(error = ?e, "request failed"),
            Severity::Internal | Severity::Fatal => tracing::error!(error = ?e, "request failed"),
        }
        ApiError::new(status_of(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.message.is_empty() {
            ErrorBody { errors: vec![] }
        } else {
            ErrorBody::new(self.message)
        };
        let mut resp = (
            self.status,
            serde_json::to_string(&body).expect("error body serializes"),
        )
            .into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(sig) = &self.channel_expired
            && let Ok(value) = HeaderValue::from_str(&format!("expired; sig={sig}"))
        {
            resp.headers_mut()
                .insert(sigil_proto::headers::SIGIL_CHANNEL, value);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_their_statuses() {
        for (e, status) in [
            (CoreError::bad("x"), 400),
            (CoreError::Forbidden, 403),
            (CoreError::GrantRefused("admin".into()), 403),
            (CoreError::NotFound(String::new()), 404),
            (CoreError::UnsupportedOperation, 405),
            (CoreError::Conflict("cas".into()), 409),
            (CoreError::Contended, 409),
            (
                sigil_storage::StorageError::TooLarge { bytes: 2, max: 1 }.into(),
                413,
            ),
            (
                sigil_storage::StorageError::Unavailable {
                    reason: "this node is not the leader".into(),
                }
                .into(),
                503,
            ),
            (CoreError::Integrity, 500),
            (CoreError::rng(), 500),
            (CoreError::Unavailable("db".into()), 502),
            (CoreError::AuditUnavailable, 503),
            (CoreError::StorageStopped, 503),
            (CoreError::Keyring("x"), 503),
        ] {
            assert_eq!(status_of(&e).as_u16(), status, "{e:?}");
        }
    }
}
