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
