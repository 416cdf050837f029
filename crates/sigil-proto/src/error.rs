use serde::{Deserialize, Serialize};

/// Vault's error body: `{"errors":["message"]}` (docs/protocol.md §8). Never carries secrets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Human-readable messages.
    pub errors: Vec<String>,
}

impl ErrorBody {
    /// One message.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            errors: vec![message.into()],
        }
    }
}
