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
}
