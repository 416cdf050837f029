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
    /// `-output-policy` ([`crate::Client::output_policy`]): this request was not sent.
    #[error("not sent (-output-policy): {method} {path}")]
    OutputPolicy {
        /// The HTTP method (`LIST` for a list).
        method: String,
        /// The API path below `/v1/`, without a query.
        path: String,
    },
}

fn api_message(status: u16, errors: &[String]) -> String {
    if errors.is_empty() {
        format!("server answered {status}")
    } else {
        format!("server answered {status}: {}", errors.join("; "))
    }
}

impl ClientError {
    /// The policy that allows a request, as Vault's `-output-policy` prints it: the path, and
    /// the capabilities its method needs (a write may create or update). `None` for other
    /// errors.
    pub fn sample_policy(&self) -> Option<String> {
        let ClientError::OutputPolicy { method, path } = self else {
            return None;
        };
        let capabilities = match method.as_str() {
            "GET" | "HEAD" => r#""read""#,
            "LIST" => r#""list""#,
            "POST" | "PUT" => r#""create", "update""#,
            "PATCH" => r#""patch""#,
            "DELETE" => r#""delete""#,
            _ => r#""sudo""#,
        };
        // A JSON string is an HCL string: quotes and backslashes stay escaped.
        let path = serde_json::to_string(path).ok()?;
        Some(format!(
            "path {path} {{\n  capabilities = [{capabilities}]\n}}\n"
        ))
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
