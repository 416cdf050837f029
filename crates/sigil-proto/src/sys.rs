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
    /// Whether this node is a cluster follower (it forwards requests to the leader).
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

/// The answer to `sys/init`: public values only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitResponse {
    /// The server's public identity.
    pub server_key: String,
    /// Its keyid, for `SIGIL_SERVER_KEY`.
    pub keyid: String,
    /// The admins' keyids.
    pub admins: Vec<String>,
}

/// The seal state as `sys/seal-status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealStatus {
    /// `"shamir"`, as Vault prints.
    #[serde(rename = "type")]
    pub kind: String,
    /// Initialized?
    pub initialized: bool,
    /// Sealed?
    pub sealed: bool,
    /// Shares needed.
    pub threshold: u8,
    /// The admins' keyids.
    pub admins: Vec<String>,
    /// The admins' names as given at init or rekey, in the order of `admins` (empty for a
    /// transient server's admin, which has no seal configuration). Public, as in `sys/rekey`.
    #[serde(default)]
    pub admin_names: Vec<String>,
    /// Shares accepted in this attempt.
    pub progress: u8,
    /// This boot's unseal public key (X25519, base64url).
    pub unseal_key: String,
    /// The current attempt nonce (the AAD of unseal submissions).
    pub attempt: String,
    /// Vault's name for `threshold`.
    pub t: u8,
    /// Vault's count of key holders.
    pub n: u8,
    /// The storage backend kind.
    pub storage_type: String,
    /// Sigil's version (as Vault's seal status carries it).
    pub version: String,
    /// Why the storage stopped taking writes, if it did (then `sys/health` answers 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_error: Option<String>,
    /// Why the node is sealed when it is for a fault, not an operator's choice: the last unseal
    /// (or the running node) found that the keyring does not decrypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_because: Option<String>,
}

/// What `sys/rekey` shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RekeyStatus {
    /// Whether a proposal is open.
    pub started: bool,
    /// Its nonce.
    pub nonce: String,
    /// Unix seconds after which approvals are refused.
    pub deadline: i64,
    /// SHA-256 over the whole proposal; approvals must carry it.
    pub digest: String,
    /// The proposed admins (`sigil1…`).
    pub admins: Vec<String>,
    /// Their names.
    pub names: Vec<String>,
    /// The proposed threshold.
    pub threshold: u8,
    /// Keyids of the current admins who approved.
    pub approvals: Vec<String>,
    /// Approvals needed (the current threshold).
    pub required: u8,
    /// Set on the answer to the approval that carried out the rekey.
    pub complete: bool,
}

/// `POST /v1/sys/init`: the admins' public identities (`sigil1…`), their names and the
/// threshold.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// The admins' public identities.
    pub admins: Vec<String>,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Their names, in the order of `admins` (`admin-N` when empty).
    #[serde(default)]
    pub names: Vec<String>,
}

/// `POST /v1/sys/rekey/init`: the proposed admins and threshold, and how long the proposal
/// stays open.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// The proposed admins' public identities.
    pub admins: Vec<String>,
    /// The proposed threshold.
    pub threshold: u8,
    /// Their names, in the order of `admins`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Seconds the proposal stays open (default an hour).
    #[serde(default = "default_rekey_ttl")]
    pub ttl_seconds: i64,
}

fn default_rekey_ttl() -> i64 {
    3600
}

/// `POST /v1/sys/rekey/approve`: an admin's approval of the proposal with this digest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RekeyApproval {
    /// The proposal's digest, as `sys/rekey` shows it.
    pub digest: String,
}

/// `sys/leases/renew`, `revoke` and `lookup` with the lease in the body (Vault's shape). The
/// server also accepts Vault's duration strings for `increment` (`"1h"`); the CLI sends
/// seconds or the string it was given.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The lease id (`database/creds/app/…`).
    pub lease_id: String,
    /// How much longer the lease should live (renew only; none: its own TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment: Option<String>,
}

/// `sys/wrapping/unwrap` and `lookup`: which wrap.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WrapId {
    /// The wrap's id.
    pub id: String,
}

/// `sys/unseal` with `{"reset": true}`: an admin discards the shares given so far (Vault's
/// `-reset`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnsealReset {
    /// Always `true`.
    pub reset: bool,
}
