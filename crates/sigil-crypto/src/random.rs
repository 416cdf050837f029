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

/// 128 random bits as 32 lower-case hex digits: an id that carries no authority and never
/// starts with `-` on a command line (wrap ids).
pub fn hex_id() -> Result<String, CryptoError> {
    Ok(crate::hex(&bytes::<16>()?))
}

/// A random (version 4) UUID in its usual text form, for ids that must not be guessable.
pub fn uuid() -> Result<String, CryptoError> {
    let mut b = bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
