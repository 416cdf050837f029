//! What an `e2e` mount accepts as a version: an age envelope the writer encrypted and signed
//! on the client (`sigil_proto::e2e::SealedSecret`). The server checks the shape and the
//! signature, binds it to the authenticated writer, and cannot open it.

use serde_json::{Map, Value};
use sigil_crypto::age;
use sigil_proto::e2e::{E2eSlot, SealedSecret};

use sigil_engine::{Caller, CoreError};

/// Longest recipient label kept.
const MAX_LABEL: usize = 256;

/// Checks a write's `data` for `slot` (the version it becomes) by `caller`, and returns what
/// to store: the same, with the writer's name and certification attached.
pub(super) fn check(
    slot: E2eSlot<'_>,
    data: Map<String, Value>,
    caller: &Caller,
) -> Result<Map<String, Value>, CoreError> {
    let mut sealed: SealedSecret = serde_json::from_value(Value::Object(data)).map_err(|_| {
        CoreError::bad(
            "an e2e write is {\"data\": {\"envelope\": \"<age file, base64>\", \"signer\": \
             \"sigil1…\", \"signature\": \"…\", \"recipients\": [\"…\"]}}: use `sigil e2e put`",
        )
    })?;
    if sealed.recipients.len() > age::MAX_RECIPIENTS
        || sealed.recipients.iter().any(|r| r.len() > MAX_LABEL)
    {
        return Err(CoreError::bad(
            "recipients: at most 256 labels of at most 256 bytes",
        ));
    }
    let (envelope, signer) = sealed.verify(slot).map_err(|_| {
        CoreError::bad(
            "the envelope's signature does not verify for this mount, path and version (docs/e2e.md)",
        )
    })?;
    if signer.keyid() != caller.public.keyid() {
        return Err(CoreError::bad(
            "the envelope must be signed with the writer's own key",
        ));
    }
    age::recipient_count(&envelope).map_err(|e| {
        CoreError::bad(format!(
            "the envelope is not an age v1 file for X25519 recipients: {e}"
        ))
    })?;
    sealed.author = Some(caller.identity.author());
    match serde_json::to_value(sealed).expect("sealed secret serializes") {
        Value::Object(m) => Ok(m),
        _ => unreachable!("a struct serializes to an object"),
    }
}
