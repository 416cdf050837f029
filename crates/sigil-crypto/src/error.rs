/// Why a cryptographic operation failed. Messages never contain key or plaintext material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A printable key, identity or binary field is malformed.
    #[error("malformed encoding: {0}")]
    Encoding(&'static str),
    /// A public key is not a valid point for its algorithm.
    #[error("invalid public key")]
    InvalidKey,
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Sealing failed (should not happen with valid keys).
    #[error("sealing failed")]
    Seal,
    /// A sealed body, envelope or barrier entry could not be opened: wrong key, wrong sender,
    /// wrong context or tampered ciphertext. Deliberately says nothing more.
    #[error("ciphertext could not be opened")]
    Open,
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Rng,
}
