//! XChaCha20-Poly1305 for channels (docs/protocol.md §6), as draft-irtf-cfrg-xchacha-03 §2
//! builds it: HChaCha20 (RustCrypto `chacha20`) of the key and the nonce's first 16 bytes gives
//! a subkey, under which ChaCha20-Poly1305 (RFC 8439, aws-lc) seals with the nonce
//! `0⁴ ‖ nonce[16..24]`. For the short messages a channel carries, aws-lc's AEAD costs a
//! fraction of what RustCrypto's `XChaCha20Poly1305` does (whose Poly1305 prepares four
//! blocks at a time); the tests check the two agree byte for byte.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// The ChaCha20-Poly1305 key and nonce for `key` and the 24-byte `nonce`.
fn inner(key: &[u8; 32], nonce: &[u8; 24]) -> Result<(LessSafeKey, Nonce), CryptoError> {
    let mut derived =
        chacha20::hchacha::<chacha20::R20>(key.into(), nonce[..16].try_into().expect("16 bytes"));
    let mut subkey = Zeroizing::new([0u8; 32]);
    subkey.copy_from_slice(&derived);
    zeroize::Zeroize::zeroize(derived.as_mut_slice());
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    let key =
        UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice()).map_err(|_| CryptoError::Seal)?;
    Ok((LessSafeKey::new(key), Nonce::assume_unique_for_key(short)))
}

/// Seals `buffer` where it lies and appends the tag (after encrypting: a regrown buffer only
/// ever held ciphertext). Wiped on failure.
pub(crate) fn seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let sealed = inner(key, nonce).and_then(|(key, nonce)| {
        key.seal_in_place_append_tag(nonce, Aad::from(aad), buffer)
            .map_err(|_| CryptoError::Seal)
    });
    if sealed.is_err() {
        zeroize::Zeroize::zeroize(buffer);
    }
    sealed
}

/// Opens what [`seal_in_place`] sealed with the same key, nonce and `aad`.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (key, nonce) = inner(key, nonce).map_err(|_| CryptoError::Open)?;
    let mut buffer = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), buffer.as_mut_slice())
        .map_err(|_| CryptoError::Open)?
        .len();
    buffer.truncate(len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::XChaCha20Poly1305;
    use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};

    use super::*;

    /// The same ciphertext as RustCrypto's XChaCha20Poly1305 for every length up to a few
    /// blocks, and each opens the other's.
    #[test]
    fn agrees_with_rustcrypto_xchacha20poly1305() {
        for len in (0..300).chain([1024, 4097]) {
            let key: [u8; 32] = crate::random::bytes().unwrap();
            let nonce: [u8; 24] = crate::random::bytes().unwrap();
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let aad = format!("200 nonce-{len}");
            let theirs = XChaCha20Poly1305::new((&key).into())
                .encrypt(
                    &nonce.into(),
                    Payload {
                        msg: &plain,
                        aad: aad.as_bytes(),
                    },
                )
                .unwrap();
            let mut ours = plain.clone();
            seal_in_place(&key, &nonce, aad.as_bytes(), &mut ours).unwrap();
            assert_eq!(ours, theirs, "length {len}");
            assert_eq!(*open(&key, &nonce, aad.as_bytes(), &theirs).unwrap(), plain);
        }
    }

    /// The draft's own test vector (draft-irtf-cfrg-xchacha-03 §A.3.1).
    #[test]
    fn the_draft_test_vector() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let mut sealed = plain.to_vec();
        seal_in_place(&key, &nonce, &aad, &mut sealed).unwrap();
        let (ct, tag) = sealed.split_at(plain.len());
        assert_eq!(
            ct,
            hex(
                "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
            )
        );
        assert_eq!(tag, hex("c0875924c1c7987947deafd8780acf49"));
    }

    /// A changed byte, tag, nonce, key or associated data does not open.
    #[test]
    fn anything_changed_does_not_open() {
        let key = [1u8; 32];
        let nonce = [2u8; 24];
        let mut ct = b"secret".to_vec();
        seal_in_place(&key, &nonce, b"aad", &mut ct).unwrap();
        assert!(open(&key, &nonce, b"aad", &ct).is_ok());
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(open(&key, &nonce, b"aad", &bad).is_err());
        }
        let mut other_nonce = nonce;
        other_nonce[20] ^= 1;
        assert!(open(&key, &other_nonce, b"aad", &ct).is_err());
        let mut other_nonce = nonce;
        other_nonce[3] ^= 1;
        assert!(open(&key, &other_nonce, b"aad", &ct).is_err());
        assert!(open(&[3u8; 32], &nonce, b"aad", &ct).is_err());
        assert!(open(&key, &nonce, b"aae", &ct).is_err());
        assert!(open(&key, &nonce, b"aad", &ct[..10]).is_err());
        assert!(open(&key, &nonce, b"aad", &[]).is_err());
    }
}
