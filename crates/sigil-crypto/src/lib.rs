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
mod batch;
mod encoding;
mod error;
mod identity;
mod keyid;
pub mod random;
mod seal;
pub mod shamir;
mod stream;
mod xchacha;

pub use barrier::{BarrierKey, KeyTerm};
pub use batch::{Signed, verify_batch};
pub use encoding::{b64url_decode, b64url_encode, ct_eq, hex};
pub use error::CryptoError;
pub use identity::{PublicIdentity, SecretIdentity};
pub use keyid::KeyId;
pub use seal::{
    ChannelKey, ChannelKeys, EncryptionKey, Envelope, SealInfo, open_base, open_from,
    open_from_exporting, seal_base_to, seal_to, seal_to_exporting, seal_to_in_place,
};
pub use stream::{StreamOpener, StreamSealer, TAG_LEN};
