//! The barrier's AEAD: AES-256-GCM per entry, the storage key bound in as associated data so
//! that a ciphertext moved to another key fails to open (DESIGN.md §2.3).

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

/// The number of a barrier key in the keyring; stored in every entry's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyTerm(pub u32);

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4;
const NONCE: usize = 12;

/// One AES-256-GCM data key of the keyring. Zeroized on drop; never printed.
pub struct BarrierKey {
    term: KeyTerm,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for BarrierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarrierKey")
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl BarrierKey {
    /// A fresh random key for `term`.
    pub fn generate(term: KeyTerm) -> Result<Self, CryptoError> {
        Ok(BarrierKey {
            term,
            key: Zeroizing::new(random::bytes::<32>()?),
        })
    }

    /// Rebuilds a key from its raw bytes (a keyring entry opened with the root key).
    pub fn from_secret(term: KeyTerm, key: Zeroizing<[u8; 32]>) -> Self {
        BarrierKey { term, key }
    }

    /// The raw key. Only for wrapping a keyring entry under the root key; never log or send it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// This key's term.
    pub fn term(&self) -> KeyTerm {
        self.term
    }

    /// The term an entry was written under, read from its header.
    pub fn term_of(entry: &[u8]) -> Result<KeyTerm, CryptoError> {
        if entry.len() < HEADER + NONCE + 16 || entry[0] != VERSION {
            return Err(CryptoError::Open);
        }
        Ok(KeyTerm(u32::from_be_bytes(
            entry[1..HEADER].try_into().expect("4 bytes"),
        )))
    }

    fn aad(header: &[u8], storage_key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(header.len() + storage_key.len());
        aad.extend_from_slice(header);
        aad.extend_from_slice(storage_key);
        aad
    }

    /// Encrypts `plaintext` for storage under `storage_key`:
    /// `version(1) ‖ term(4, BE) ‖ nonce(12) ‖ ciphertext+tag`, with header and storage key as
    /// associated data. The nonce is random; rotate the key long before 2³² entries.
    pub fn seal(&self, storage_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..].copy_from_slice(&self.term.0.to_be_bytes());
        let nonce = random::bytes::<NONCE>()?;
        let cipher = Aes256Gcm::new((&*self.key).into());
        let aad = Self::aad(&header, storage_key);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(HEADER + NONCE + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts an entry written by [`BarrierKey::seal`] under the same storage key.
    pub fn open(
        &self,
        storage_key: &[u8],
        entry: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if Self::term_of(entry)? != self.term {
            return Err(CryptoError::Open);
        }
        let (header, rest) = entry.split_at(HEADER);
        let (nonce, ct) = rest.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().expect("12 bytes");
        let cipher = Aes256Gcm::new((&*self.key).into());
        let aad = Self::aad(header, storage_key);
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_bound_to_their_storage_key() {
        let key = BarrierKey::generate(KeyTerm(1)).unwrap();
        let a = key.seal(b"kv/a", b"alpha").unwrap();
        let b = key.seal(b"kv/b", b"beta").unwrap();
        assert_eq!(&key.open(b"kv/a", &a).unwrap()[..], b"alpha");
        // Swapped ciphertexts fail.
        assert!(key.open(b"kv/a", &b).is_err());
        assert!(key.open(b"kv/b", &a).is_err());
        // A flipped bit anywhere fails.
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 0x40;
            assert!(key.open(b"kv/a", &bad).is_err(), "byte {i}");
        }
        // Truncated and empty entries fail cleanly.
        assert!(key.open(b"kv/a", &a[..a.len() - 1]).is_err());
        assert!(key.open(b"kv/a", &[]).is_err());
        // Another key (or term) fails.
        let other = BarrierKey::generate(KeyTerm(1)).unwrap();
        assert!(other.open(b"kv/a", &a).is_err());
        assert_eq!(BarrierKey::term_of(&a).unwrap(), KeyTerm(1));
    }
}
