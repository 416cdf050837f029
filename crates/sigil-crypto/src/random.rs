//! Randomness from the operating system.

use crate::CryptoError;

/// Fills `buf` with random bytes from the OS CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Rng)
}

/// Returns `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// A fresh random nonce for a request: 18 bytes (≥ 16 as PROTOCOL.md §3 asks), base64url.
pub fn nonce() -> Result<String, CryptoError> {
    Ok(crate::b64url_encode(&bytes::<18>()?))
}
