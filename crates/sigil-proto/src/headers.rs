//! Header names and media types of the protocol.

/// RFC 9421 `Signature-Input`.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// RFC 9421 `Signature`.
pub const SIGNATURE: &str = "signature";
/// RFC 9530 `Content-Digest`.
pub const CONTENT_DIGEST: &str = "content-digest";
/// The request nonce for mTLS requests without a signature (PROTOCOL.md §4).
pub const SIGIL_NONCE: &str = "sigil-nonce";
/// Media type of a sealed body.
pub const SEALED_JSON: &str = "application/vnd.sigil.sealed+json";
/// Vault's token header, which Sigil refuses.
pub const VAULT_TOKEN: &str = "x-vault-token";
/// Channels (PROTOCOL.md §6): `new` or an id in requests, `<id>; ttl=<seconds>` in the response
/// that grants one, `expired` on the error for a body sealed to a channel the server no longer
/// holds.
pub const SIGIL_CHANNEL: &str = "sigil-channel";

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
