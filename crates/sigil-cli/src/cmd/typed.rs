//! The server's documented answers, typed (the wire types of `sigil-proto`).

use anyhow::Context as _;
use serde_json::Value;
use sigil_proto::sys::SealStatus;

/// A JSON answer as the wire type it is documented to be.
pub(super) fn typed<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(value)
        .with_context(|| format!("the server's {what} answer is not as documented"))
}

/// `sys/seal-status`, typed.
pub(super) async fn seal_status(c: &sigil_client::Client) -> anyhow::Result<SealStatus> {
    let body = c
        .plain("GET", "sys/seal-status", None)
        .await?
        .body
        .unwrap_or_default();
    typed(body, "sys/seal-status")
}
