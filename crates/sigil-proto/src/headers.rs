//! Header names and media types of the protocol.

/// RFC 9421 `Signature-Input`.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// RFC 9421 `Signature`.
pub const SIGNATURE: &str = "signature";
/// RFC 9530 `Content-Digest`.
pub const CONTENT_DIGEST: &str = "content-digest";
/// The request nonce for mTLS requests without a signature (docs/protocol.md §4).
pub const SIGIL_NONCE: &str = "sigil-nonce";
/// Media type of a sealed body.
pub const SEALED_JSON: &str = "application/vnd.sigil.sealed+json";
/// Media type of a sealed stream (docs/protocol.md §4.7): asked for with `Accept` where an
/// endpoint can stream its answer (an operator backup).
pub const SEALED_STREAM: &str = "application/vnd.sigil.sealed-stream";
/// Media type of a snapshot file sent as it is (a restore into a new cluster, §4.7).
pub const SNAPSHOT: &str = "application/vnd.sigil.snapshot";
/// Vault's token header, which Sigil refuses.
pub const VAULT_TOKEN: &str = "x-vault-token";
/// Channels (docs/protocol.md): `new` or an id in requests, `<id>; ttl=<seconds>` in the
/// response that grants one, `expired; sig=<base64url>` on the error for a body sealed to a
/// channel the server no longer holds (signed by the server: see [`channel_expired_message`]).
pub const SIGIL_CHANNEL: &str = "sigil-channel";
/// On a 2xx answer without a body (204): the empty plaintext sealed as a body would be, with
/// the answer's associated data (`body::response_aad`), as the JSON envelope. It proves the
/// server sent that status for that request.
pub const SIGIL_RECEIPT: &str = "sigil-receipt";

/// What the server signs (Ed25519, its identity key) when it answers that a request's channel
/// has expired: nothing ran, and the client may send the request again sealed to the server
/// key. Bound to the request's nonce, so a proxy cannot forge it to make a client send a
/// request it already forwarded a second time.
pub fn channel_expired_message(nonce: &str) -> Vec<u8> {
    format!("sigil/v1/channel-expired {nonce}").into_bytes()
}

/// The signature in a `Sigil-Channel: expired; sig=<base64url>` answer.
pub fn channel_expired_signature(value: &str) -> Option<Vec<u8>> {
    let (word, sig) = value.split_once(';')?;
    if word.trim() != "expired" {
        return None;
    }
    sigil_crypto::b64url_decode(sig.trim().strip_prefix("sig=")?).ok()
}

/// A channel grant (`<id>; ttl=<seconds>`) as its id and lifetime.
pub fn channel_grant(value: &str) -> Option<(String, u64)> {
    let (id, ttl) = value.split_once(';')?;
    let ttl = ttl.trim().strip_prefix("ttl=")?.parse().ok()?;
    let id = id.trim();
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| (id.to_owned(), ttl))
}
