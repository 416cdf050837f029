//! Work that may wait (on an fsync, a lock, a database) runs on tokio's blocking threads.

use http::StatusCode;

use crate::error::ApiError;

/// Runs `f` (which may wait on an fsync or a lock) on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "request handler failed"))?
}
