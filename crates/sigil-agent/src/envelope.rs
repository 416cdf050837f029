//! Vault's answer envelope, for what the agent answers itself.

use serde_json::{Value, json};

/// Vault's answer envelope around `data`, for what the agent answers itself (no lease).
pub fn envelope(data: Value) -> Value {
    json!({
        "request_id": "",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    })
}
