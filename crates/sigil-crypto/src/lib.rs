//! Sigil's cryptographic building blocks.
//!
//! This crate holds the key types (an identity is an Ed25519 signing key plus an independent
//! X25519 encryption key), their printable forms (`sigil1…` and `SIGIL-SECRET-KEY-1…`, Bech32),
//! the keyid derivation, HPKE sealing of request and response bodies (RFC 9180, mode_auth) and
//! the barrier's AES-256-GCM, and Shamir sharing of the root key.
//!
//! It does not do I/O, talk HTTP or know about storage: callers hand it bytes and get bytes back.
//! Every primitive comes from a maintained crate (RustCrypto `hpke`, `ed25519-dalek`,
//! `aes-gcm`, `sha2`); nothing here invents cryptography.

#![warn(missing_docs)]

pub mod age;
mod barrier;
mod error;
mod identity;
mod keyid;
pub mod random;
mod seal;
pub mod shamir;

pub use barrier::{BarrierKey, KeyTerm};
pub use error::CryptoError;
pub use identity::{PublicIdentity, SecretIdentity};
pub use keyid::KeyId;
pub use seal::{
    ChannelKey, ChannelKeys, EncryptionKey, Envelope, SealInfo, open_base, open_from,
    open_from_exporting, seal_base_to, seal_to, seal_to_exporting,
};

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Base64url without padding (RFC 4648 §5), the encoding of every binary field on the wire.
pub fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding or other alphabets are refused.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::Encoding("invalid base64url"))
}

/// Compares two byte strings in constant time (for tags, MACs and key fingerprints).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}
