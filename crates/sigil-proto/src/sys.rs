//! Plain JSON of the unauthenticated `sys/` endpoints.

use serde::{Deserialize, Serialize};

/// `GET /v1/sys/server-key`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerKey {
    /// The server's public identity, `sigil1…`.
    pub public_key: String,
    /// The keyid of its signing key; clients pin this.
    pub keyid: String,
}

/// `GET /v1/sys/health`, in Vault's shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Whether the server has been initialized.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Always false: Sigil has no standby nodes yet.
    pub standby: bool,
    /// Server time, Unix seconds.
    pub server_time_utc: i64,
    /// Sigil's version.
    pub version: String,
    /// `"ok"`, or `"failed"` when the storage stopped taking writes (then the answer is 503).
    #[serde(default = "storage_ok")]
    pub storage: String,
    /// Why the storage failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_error: Option<String>,
}

fn storage_ok() -> String {
    "ok".into()
}
