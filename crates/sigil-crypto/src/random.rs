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

/// `N` random bytes for a value that must be unpredictable and never repeat but is not a key:
/// nonces and ids, drawn on every request. They come from the thread's generator (`rand`'s
/// `ThreadRng`: ChaCha12, seeded from the OS and reseeded from it every 64 KiB) instead of a
/// system call each; keys and key material use [`bytes`] and [`fill`]. Like `ThreadRng`, it
/// panics if the OS cannot seed it (on Linux `getrandom` only blocks until the pool is seeded,
/// at boot), where [`bytes`] returns an error.
pub fn nonce_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore as _;
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A fresh random nonce for a request: 18 bytes (≥ 16 as docs/protocol.md §3 asks), base64url.
pub fn nonce() -> Result<String, CryptoError> {
    Ok(crate::encoding::b64url_encode(&nonce_bytes::<18>()))
}

/// 128 random bits as 32 lower-case hex digits: an id that carries no authority and never
/// starts with `-` on a command line (wrap ids).
pub fn hex_id() -> Result<String, CryptoError> {
    Ok(crate::encoding::hex(&nonce_bytes::<16>()))
}

/// A random (version 4) UUID in its usual text form, for ids that must not be guessable.
pub fn uuid() -> Result<String, CryptoError> {
    let mut b = nonce_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::encoding::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols; rejection sampling,
/// so no symbol is favoured). For generated user names and passwords.
pub fn string_from(alphabet: &[u8], len: usize) -> Result<zeroize::Zeroizing<String>, CryptoError> {
    assert!(
        !alphabet.is_empty() && alphabet.len() <= 256,
        "an alphabet has 1 to 256 symbols"
    );
    // The largest multiple of the alphabet's size that fits in a byte: bytes above it are
    // drawn again.
    let limit = 256 - 256 % alphabet.len();
    let mut out = zeroize::Zeroizing::new(String::with_capacity(len));
    let mut buf = zeroize::Zeroizing::new([0u8; 64]);
    while out.len() < len {
        fill(&mut buf[..])?;
        for &b in buf.iter() {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_do_not_repeat_within_or_across_threads() {
        let draw = || (0..2000).map(|_| nonce_bytes::<16>()).collect::<Vec<_>>();
        let mut all: Vec<[u8; 16]> = std::thread::scope(|s| {
            let others: Vec<_> = (0..3).map(|_| s.spawn(draw)).collect();
            let mut all = draw();
            for t in others {
                all.extend(t.join().unwrap());
            }
            all
        });
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 8000);
        assert_eq!(nonce().unwrap().len(), 24);
    }

    #[test]
    fn strings_use_only_the_alphabet_and_every_symbol() {
        let s = string_from(b"abc", 3000).unwrap();
        assert_eq!(s.len(), 3000);
        assert!(s.bytes().all(|b| b"abc".contains(&b)));
        for c in ['a', 'b', 'c'] {
            // Uniform: each about 1000 times; 800 is far out in the tail.
            assert!(s.chars().filter(|x| *x == c).count() > 800, "{c}");
        }
        assert_ne!(
            string_from(b"ab", 64).unwrap(),
            string_from(b"ab", 64).unwrap()
        );
    }
}
