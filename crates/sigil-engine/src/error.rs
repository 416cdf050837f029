use sigil_storage::StorageError;

/// Why a request failed inside the core. Each variant has one HTTP status; messages are safe to
/// show the caller (no secret values, no internal detail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Bad input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Policy denies (403).
    #[error("permission denied")]
    Forbidden,
    /// A write would hand out policies the caller may not grant (403; grant.rs).
    #[error("permission denied: {0}")]
    GrantRefused(String),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// Check-and-set mismatch (409).
    #[error("{0}")]
    Conflict(String),
    /// Method not supported on this path (405).
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A stored entry failed its integrity check (500); details go to the log only.
    #[error("internal error: stored data failed its integrity check")]
    Integrity,
    /// No audit device could record the request (503): fail-closed.
    #[error("no audit device could record the request; refusing it")]
    AuditUnavailable,
    /// A system Sigil depends on (a database it manages users in) failed or timed out (502).
    #[error("{0}")]
    Unavailable(String),
    /// The storage backend failed (500); details go to the log only.
    #[error("internal error: storage failure")]
    Storage(#[source] StorageError),
    /// The storage backend stopped taking writes (503) until a restart; `sys/health` and the
    /// log say why.
    #[error(
        "storage has failed and takes no writes until the server is restarted (sys/health and the server log say why)"
    )]
    StorageStopped,
}

impl CoreError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            CoreError::BadRequest(_) => 400,
            CoreError::Forbidden | CoreError::GrantRefused(_) => 403,
            CoreError::NotFound(_) => 404,
            CoreError::UnsupportedOperation => 405,
            CoreError::Conflict(_) => 409,
            CoreError::Integrity | CoreError::Storage(_) => 500,
            CoreError::AuditUnavailable | CoreError::StorageStopped => 503,
            CoreError::Unavailable(_) => 502,
        }
    }

    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        CoreError::BadRequest(msg.into())
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict { .. } => {
                CoreError::Conflict("concurrent write to the same key, retry".into())
            }
            StorageError::Stopped { .. } => CoreError::StorageStopped,
            e => CoreError::Storage(e),
        }
    }
}
