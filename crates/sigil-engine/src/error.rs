use sigil_storage::StorageError;

/// Why a request failed inside the core. The server maps each variant to one HTTP status;
/// messages are safe to show the caller (no secret values, no internal detail).
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
    /// Check-and-set mismatch, a replayed request, a name in use (409).
    #[error("{0}")]
    Conflict(String),
    /// A batch's condition failed because another writer changed the key first (409): nothing
    /// was written; running the request again works on what that writer left.
    #[error("concurrent write to the same key, retry")]
    Contended,
    /// The write is larger than the storage takes in one (Raft's `max_entry_size`; 413):
    /// nothing was written.
    #[error("{0}")]
    TooLarge(String),
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
    /// The storage cannot take the write now — its cluster is electing a leader or lost its
    /// majority — and a retry may work (503); the message says why (no data).
    #[error("{0}; retry")]
    StorageUnavailable(String),
    /// The storage backend failed (500); details go to the log only.
    #[error("internal error: storage failure")]
    Storage(#[source] StorageError),
    /// A fault of this server, not of the request (500): the random number generator failed,
    /// sealing failed. The message names the fault, never data.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The keyring does not decrypt (503): the node cannot read its data and stays (or
    /// becomes) sealed; `sys/seal-status` says why. Never the caller's fault.
    #[error("the keyring cannot be read: {0}; the node is sealed (sys/seal-status says why)")]
    Keyring(&'static str),
    /// The storage backend stopped taking writes (503) until a restart; `sys/health` and the
    /// log say why.
    #[error(
        "storage has failed and takes no writes until the server is restarted (sys/health and the server log say why)"
    )]
    StorageStopped,
}

/// What kind of failure an error is: the caller's, a dependency's, this server's, or one
/// that stops the node from taking writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request cannot be served as asked (bad input, no permission, not there, a
    /// conflict): the caller can fix it; nothing is wrong with the server.
    Request,
    /// Something the server depends on failed or timed out (a managed database, every audit
    /// device): retrying later may work.
    Unavailable,
    /// A fault of this server (storage, integrity, randomness): logged in full, the caller
    /// gets a generic message.
    Internal,
    /// The node can no longer serve: its storage stopped taking writes until a restart, or its
    /// keyring does not decrypt (the node is sealed and says why).
    Fatal,
}

impl CoreError {
    /// How bad this error is. (Its HTTP status is the server's business: `sigil-server`.)
    pub fn severity(&self) -> Severity {
        match self {
            CoreError::BadRequest(_)
            | CoreError::Forbidden
            | CoreError::GrantRefused(_)
            | CoreError::NotFound(_)
            | CoreError::Conflict(_)
            | CoreError::Contended
            | CoreError::TooLarge(_)
            | CoreError::UnsupportedOperation => Severity::Request,
            CoreError::AuditUnavailable
            | CoreError::Unavailable(_)
            | CoreError::StorageUnavailable(_) => Severity::Unavailable,
            CoreError::Integrity | CoreError::Storage(_) | CoreError::Internal(_) => {
                Severity::Internal
            }
            CoreError::StorageStopped | CoreError::Keyring(_) => Severity::Fatal,
        }
    }

    /// The operating system's random number generator failed (an internal fault, 500).
    pub fn rng() -> Self {
        CoreError::Internal("random number generator failed")
    }

    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        CoreError::BadRequest(msg.into())
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict { .. } => CoreError::Contended,
            StorageError::Stopped { .. } => CoreError::StorageStopped,
            e @ StorageError::TooLarge { .. } => CoreError::TooLarge(e.to_string()),
            e @ StorageError::Unavailable { .. } => CoreError::StorageUnavailable(e.to_string()),
            e => CoreError::Storage(e),
        }
    }
}

impl From<sigil_crypto::CryptoError> for CoreError {
    /// A failed generator or sealing is this server's fault; a ciphertext that does not open
    /// is stored data that failed its check; a malformed key, encoding or signature is the
    /// caller's input.
    fn from(e: sigil_crypto::CryptoError) -> Self {
        use sigil_crypto::CryptoError as C;
        match e {
            C::Rng => CoreError::rng(),
            C::Seal => CoreError::Internal("sealing failed"),
            C::Open => CoreError::Integrity,
            other => CoreError::BadRequest(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_crypto::CryptoError;

    /// A failed generator is the server's fault, never the caller's (it was a 400 once).
    #[test]
    fn faults_are_told_from_request_errors() {
        assert_eq!(CoreError::rng().severity(), Severity::Internal);
        assert_eq!(
            CoreError::from(CryptoError::Rng).severity(),
            Severity::Internal
        );
        assert_eq!(
            CoreError::from(CryptoError::Seal).severity(),
            Severity::Internal
        );
        assert!(matches!(
            CoreError::from(CryptoError::Open),
            CoreError::Integrity
        ));
        assert_eq!(
            CoreError::from(CryptoError::InvalidKey).severity(),
            Severity::Request
        );
        assert_eq!(CoreError::bad("x").severity(), Severity::Request);
        assert_eq!(CoreError::Forbidden.severity(), Severity::Request);
        assert_eq!(
            CoreError::AuditUnavailable.severity(),
            Severity::Unavailable
        );
        assert_eq!(CoreError::StorageStopped.severity(), Severity::Fatal);
        assert_eq!(
            CoreError::rng().to_string(),
            "internal error: random number generator failed"
        );
    }
}
