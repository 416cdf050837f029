//! Sealed streams (docs/protocol.md §4.7): an answer too large to seal in one piece is sealed
//! as a sequence of chunks with one HPKE context (RFC 9180 §5.2, mode_auth, the suite of
//! §4.1): each chunk is one AEAD message under the context's next sequence number, so chunks
//! cannot be reordered, dropped or repeated without the next one failing to open. Whether a
//! chunk is the last one is bound into its associated data by the caller (`sigil_proto`), so a
//! stream cut short is told from a whole one.

use hpke::aead::{AeadCtxR, AeadCtxS, AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};

use crate::seal::{Kem, public_key};
use crate::{CryptoError, EncryptionKey, SealInfo};

/// The bytes of an AEAD tag each chunk carries.
pub const TAG_LEN: usize = 16;

/// Seals a stream's chunks, in order, to one recipient. Never printed.
pub struct StreamSealer(AeadCtxS<ChaCha20Poly1305, HkdfSha256, Kem>);

impl std::fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSealer(…)")
    }
}

impl StreamSealer {
    /// A context from `sender` to `recipient` for `info`, and its encapsulated key (`enc`,
    /// 32 bytes), which goes first on the wire.
    pub fn new(
        sender: &EncryptionKey,
        recipient: &[u8; 32],
        info: SealInfo,
    ) -> Result<(Self, [u8; 32]), CryptoError> {
        let (enc, ctx) = hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Auth(sender.hpke_pair()?),
            &public_key(recipient)?,
            info.bytes(),
        )
        .map_err(|_| CryptoError::Seal)?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&enc.to_bytes());
        Ok((StreamSealer(ctx), out))
    }

    /// Seals the next chunk where it lies and appends its tag (after encrypting: a buffer
    /// regrown for the tag only ever held ciphertext). Wiped on failure.
    pub fn seal_next(&mut self, aad: &[u8], chunk: &mut Vec<u8>) -> Result<(), CryptoError> {
        match self.0.seal_inout_detached(chunk.as_mut_slice().into(), aad) {
            Ok(tag) => {
                chunk.extend_from_slice(&tag.to_bytes());
                Ok(())
            }
            Err(_) => {
                zeroize::Zeroize::zeroize(chunk);
                Err(CryptoError::Seal)
            }
        }
    }
}

/// Opens a stream's chunks, in order, from one sender. Never printed.
pub struct StreamOpener(AeadCtxR<ChaCha20Poly1305, HkdfSha256, Kem>);

impl std::fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamOpener(…)")
    }
}

impl StreamOpener {
    /// The context `sender` set up for `recipient` with `enc`.
    pub fn new(
        recipient: &EncryptionKey,
        sender: &[u8; 32],
        info: SealInfo,
        enc: &[u8],
    ) -> Result<Self, CryptoError> {
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Open)?;
        let ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Auth(public_key(sender)?),
            &recipient.hpke_private(),
            &enc,
            info.bytes(),
        )
        .map_err(|_| CryptoError::Open)?;
        Ok(StreamOpener(ctx))
    }

    /// Opens the next chunk (ciphertext with its tag) where it lies: on success `chunk` holds
    /// the plaintext; on failure it is wiped and the context's sequence number does not move
    /// on (a reader stops at the first failure: `sigil_proto::stream`).
    pub fn open_next(&mut self, aad: &[u8], chunk: &mut Vec<u8>) -> Result<(), CryptoError> {
        let Some(at) = chunk.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Open);
        };
        let tag =
            AeadTag::<ChaCha20Poly1305>::from_bytes(&chunk[at..]).map_err(|_| CryptoError::Open)?;
        let opened = self
            .0
            .open_inout_detached(chunk[..at].as_mut().into(), aad, &tag);
        if opened.is_err() {
            zeroize::Zeroize::zeroize(chunk);
            return Err(CryptoError::Open);
        }
        chunk.truncate(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (EncryptionKey, EncryptionKey) {
        (
            EncryptionKey::generate().unwrap(),
            EncryptionKey::generate().unwrap(),
        )
    }

    fn sealed(server: &EncryptionKey, client: &EncryptionKey) -> ([u8; 32], Vec<Vec<u8>>) {
        let (mut s, enc) =
            StreamSealer::new(server, &client.public(), SealInfo::ResponseStream).unwrap();
        let chunks = [b"first".to_vec(), Vec::new(), vec![7u8; 70_000]]
            .into_iter()
            .map(|mut c| {
                s.seal_next(b"aad", &mut c).unwrap();
                c
            })
            .collect();
        (enc, chunks)
    }

    /// Chunks open in order with the sender's key; plaintexts come back.
    #[test]
    fn chunks_open_in_order() {
        let (server, client) = pair();
        let (enc, chunks) = sealed(&server, &client);
        let mut o =
            StreamOpener::new(&client, &server.public(), SealInfo::ResponseStream, &enc).unwrap();
        let opened: Vec<Vec<u8>> = chunks
            .into_iter()
            .map(|mut c| {
                o.open_next(b"aad", &mut c).unwrap();
                c
            })
            .collect();
        assert_eq!(
            opened,
            vec![b"first".to_vec(), Vec::new(), vec![7u8; 70_000]]
        );
    }

    /// A chunk skipped, swapped, repeated, changed or opened with other associated data, other
    /// keys or another `info` does not open — and a failure stops the stream.
    #[test]
    fn a_stream_opens_only_as_it_was_sealed() {
        let (server, client) = pair();
        let (enc, chunks) = sealed(&server, &client);
        let opener = |info| StreamOpener::new(&client, &server.public(), info, &enc).unwrap();
        let open = |o: &mut StreamOpener, aad: &[u8], c: &[u8]| {
            let mut c = c.to_vec();
            o.open_next(aad, &mut c).map(|()| c)
        };
        // Skipped or swapped.
        let mut o = opener(SealInfo::ResponseStream);
        assert!(open(&mut o, b"aad", &chunks[1]).is_err());
        // A failure does not move the sequence on: the right chunk still opens after it,
        // then a repeat does not.
        assert!(open(&mut o, b"aad", &chunks[0]).is_ok());
        assert!(open(&mut o, b"aad", &chunks[0]).is_err());
        // Other associated data, a flipped bit, a cut tag.
        let mut o = opener(SealInfo::ResponseStream);
        assert!(open(&mut o, b"aae", &chunks[0]).is_err());
        let mut flipped = chunks[0].clone();
        flipped[0] ^= 1;
        assert!(open(&mut o, b"aad", &flipped).is_err());
        assert!(open(&mut o, b"aad", &chunks[0][..10]).is_err());
        assert!(open(&mut o, b"aad", &[]).is_err());
        // Another info, another sender, another recipient.
        let mut o = opener(SealInfo::Response);
        assert!(open(&mut o, b"aad", &chunks[0]).is_err());
        let (other, _) = pair();
        let mut o =
            StreamOpener::new(&client, &other.public(), SealInfo::ResponseStream, &enc).unwrap();
        assert!(open(&mut o, b"aad", &chunks[0]).is_err());
        let mut o =
            StreamOpener::new(&other, &server.public(), SealInfo::ResponseStream, &enc).unwrap();
        assert!(open(&mut o, b"aad", &chunks[0]).is_err());
        // A bad `enc`.
        assert!(
            StreamOpener::new(&client, &server.public(), SealInfo::ResponseStream, &[1; 5])
                .is_err()
        );
    }

    #[test]
    fn debug_prints_no_key() {
        let (server, client) = pair();
        let (s, enc) =
            StreamSealer::new(&server, &client.public(), SealInfo::ResponseStream).unwrap();
        let o =
            StreamOpener::new(&client, &server.public(), SealInfo::ResponseStream, &enc).unwrap();
        assert_eq!(format!("{s:?} {o:?}"), "StreamSealer(…) StreamOpener(…)");
    }
}
