/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Bad configuration (address, CA file, keyid).
    #[error("configuration: {0}")]
    Config(String),
    /// The connection or TLS failed.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server's key does not match the pinned keyid: not talking to it.
    #[error(
        "server key mismatch: pinned keyid {pinned}, server presented {presented}; refusing to talk to this server"
    )]
    ServerKeyMismatch {
        /// The keyid the client was told to expect.
        pinned: String,
        /// The keyid of the key the server presented.
        presented: String,
    },
    /// The server answered with an error.
    #[error("{}", api_message(*.status, .errors))]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's messages.
        errors: Vec<String>,
    },
    /// A response could not be opened or parsed: it was not sealed by the pinned server to
    /// this key, or it was tampered with.
    #[error("response could not be opened: {0}")]
    Response(String),
    /// Client-encrypted data or a key failed a check against the trust anchors (docs/e2e.md):
    /// nothing was encrypted to it or decrypted from it.
    #[error("refused: {0}")]
    Untrusted(String),
}

fn api_message(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        format!("server answered {status}")
    } else {
        format!("server answered {status}: {}", errors.join("; "))
    }
}

impl ClientError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
