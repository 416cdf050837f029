//! HPKE sealing (RFC 9180): mode_auth, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20Poly1305, single-shot (docs/protocol.md §4).

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use zeroize::Zeroizing;

use crate::{CryptoError, random};

pub(crate) type Kem = X25519HkdfSha256;

/// The `info` string that binds a sealed body to its purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealInfo {
    /// A request body, client → server.
    Request,
    /// A response body, server → client.
    Response,
    /// An admin's unseal share at rest (mode_base, docs/protocol.md §9).
    Share,
    /// An unseal submission, admin → the per-boot unseal key (docs/protocol.md §9).
    Unseal,
    /// What a cluster's leader hands a node an admin admitted: the root key, sealed by the
    /// server key to the node's join key (docs/protocol.md §13).
    Join,
    /// A sealed stream's chunks, server → client (docs/protocol.md §4.7).
    ResponseStream,
    /// A sealed stream's chunks, client → server (an uploaded snapshot, docs/protocol.md §4.7).
    RequestStream,
}

impl SealInfo {
    pub(crate) fn bytes(self) -> &'static [u8] {
        match self {
            SealInfo::Request => b"sigil/v1/request",
            SealInfo::Response => b"sigil/v1/response",
            SealInfo::Share => b"sigil/v1/share",
            SealInfo::Unseal => b"sigil/v1/unseal",
            SealInfo::Join => b"sigil/v1/join",
            SealInfo::ResponseStream => b"sigil/v1/response-stream",
            SealInfo::RequestStream => b"sigil/v1/request-stream",
        }
    }
}

/// An X25519 private key (zeroized on drop; never printed) and its public key, computed once.
pub struct EncryptionKey {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(…)")
    }
}

impl EncryptionKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::from_secret(Zeroizing::new(random::bytes::<32>()?)))
    }

    pub(crate) fn from_secret(secret: Zeroizing<[u8; 32]>) -> Self {
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&secret[..])
            .expect("32 bytes are an X25519 key");
        let mut public = [0u8; 32];
        public.copy_from_slice(&Kem::sk_to_pk(&sk).to_bytes());
        EncryptionKey { secret, public }
    }

    /// The raw secret scalar; only for writing a key file.
    pub(crate) fn expose_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The matching public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    pub(crate) fn hpke_private(&self) -> <Kem as hpke::Kem>::PrivateKey {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&self.secret[..])
            .expect("32 bytes are an X25519 key")
    }

    /// The key pair as HPKE's sender identity (the public half is not computed again).
    pub(crate) fn hpke_pair(
        &self,
    ) -> Result<
        (
            <Kem as hpke::Kem>::PrivateKey,
            <Kem as hpke::Kem>::PublicKey,
        ),
        CryptoError,
    > {
        Ok((self.hpke_private(), public_key(&self.public)?))
    }
}

/// A sealed body: the encapsulated key and the ciphertext (tag appended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// HPKE `enc` (the sender's ephemeral public key), 32 bytes.
    pub enc: Vec<u8>,
    /// AEAD ciphertext with its 16-byte tag.
    pub ct: Vec<u8>,
}

pub(crate) fn public_key(bytes: &[u8; 32]) -> Result<<Kem as hpke::Kem>::PublicKey, CryptoError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidKey)
}

/// One HPKE single-shot seal in `mode`.
fn seal(
    mode: &OpModeS<Kem>,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Envelope, CryptoError> {
    seal_buffer(mode, recipient, info, aad, plaintext.to_vec())
}

/// One HPKE single-shot seal in `mode` of `buffer`, encrypted where it lies: the envelope's
/// `ct` is `buffer` with the tag appended (a large answer is not copied). Wiped on failure.
fn seal_buffer(
    mode: &OpModeS<Kem>,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    mut buffer: Vec<u8>,
) -> Result<Envelope, CryptoError> {
    let sealed = public_key(recipient).and_then(|key| {
        hpke::single_shot_seal_inout_detached::<ChaCha20Poly1305, HkdfSha256, Kem>(
            mode,
            &key,
            info.bytes(),
            buffer.as_mut_slice().into(),
            aad,
        )
        .map_err(|_| CryptoError::Seal)
    });
    envelope(buffer, sealed)
}

/// The envelope of a `buffer` that `sealed` encrypted in place: its tag appended (after the
/// encryption, so a regrown buffer only ever held ciphertext). A failure wipes the buffer.
fn envelope(
    mut buffer: Vec<u8>,
    sealed: Result<
        (
            <Kem as hpke::Kem>::EncappedKey,
            hpke::aead::AeadTag<ChaCha20Poly1305>,
        ),
        CryptoError,
    >,
) -> Result<Envelope, CryptoError> {
    match sealed {
        Ok((enc, tag)) => {
            buffer.extend_from_slice(&tag.to_bytes());
            Ok(Envelope {
                enc: enc.to_bytes().to_vec(),
                ct: buffer,
            })
        }
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut buffer);
            Err(e)
        }
    }
}

/// One HPKE single-shot open in `mode`.
fn open(
    mode: &OpModeR<Kem>,
    recipient: &EncryptionKey,
    info: SealInfo,
    aad: &[u8],
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&envelope.enc)
        .map_err(|_| CryptoError::Open)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        mode,
        &recipient.hpke_private(),
        &enc,
        info.bytes(),
        &envelope.ct,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| CryptoError::Open)
}

/// Seals `plaintext` from `sender` to `recipient` (HPKE mode_auth) with `aad` bound in.
pub fn seal_to(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Envelope, CryptoError> {
    seal_to_in_place(sender, recipient, info, aad, plaintext.to_vec())
}

/// [`seal_to`] of a plaintext handed over: encrypted where it lies, so that a large answer is
/// not held twice; the envelope's `ct` is that buffer. Wiped on failure.
pub fn seal_to_in_place(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    plaintext: Vec<u8>,
) -> Result<Envelope, CryptoError> {
    match sender.hpke_pair() {
        Ok(pair) => seal_buffer(&OpModeS::Auth(pair), recipient, info, aad, plaintext),
        Err(e) => envelope(plaintext, Err(e)),
    }
}

/// What an HPKE context exports for a channel (docs/protocol.md): one key per direction, so
/// that nothing sealed one way opens the other way (a proxy cannot reflect a request's body as
/// its answer).
const CHANNEL_EXPORT_REQUEST: &[u8] = b"sigil/v1/channel/request";
const CHANNEL_EXPORT_RESPONSE: &[u8] = b"sigil/v1/channel/response";

/// A channel's two keys: client → server bodies, server → client answers.
#[derive(Debug)]
pub struct ChannelKeys {
    /// Seals request bodies.
    pub request: ChannelKey,
    /// Seals answers.
    pub response: ChannelKey,
}

fn export_channel<E>(
    export: impl Fn(&[u8], &mut [u8]) -> Result<(), E>,
) -> Result<ChannelKeys, CryptoError> {
    let mut request = Zeroizing::new([0u8; 32]);
    let mut response = Zeroizing::new([0u8; 32]);
    export(CHANNEL_EXPORT_REQUEST, &mut request[..]).map_err(|_| CryptoError::Seal)?;
    export(CHANNEL_EXPORT_RESPONSE, &mut response[..]).map_err(|_| CryptoError::Seal)?;
    Ok(ChannelKeys {
        request: ChannelKey(request),
        response: ChannelKey(response),
    })
}

/// [`seal_to`], also exporting the context's channel keys (docs/protocol.md, channels).
pub fn seal_to_exporting(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    plaintext: Vec<u8>,
) -> Result<(Envelope, ChannelKeys), CryptoError> {
    let mut buffer = plaintext;
    let mut keys = None;
    let sealed = (|| {
        let (enc, mut ctx) = hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeS::Auth(sender.hpke_pair()?),
            &public_key(recipient)?,
            info.bytes(),
        )
        .map_err(|_| CryptoError::Seal)?;
        let tag = ctx
            .seal_inout_detached(buffer.as_mut_slice().into(), aad)
            .map_err(|_| CryptoError::Seal)?;
        keys = Some(export_channel(|label, out| ctx.export(label, out))?);
        Ok((enc, tag))
    })();
    let envelope = envelope(buffer, sealed)?;
    Ok((envelope, keys.expect("exported whenever sealed")))
}

/// [`open_from`], also exporting the context's channel keys (docs/protocol.md, channels).
pub fn open_from_exporting(
    recipient: &EncryptionKey,
    sender: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    envelope: &Envelope,
) -> Result<(Zeroizing<Vec<u8>>, ChannelKeys), CryptoError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&envelope.enc)
        .map_err(|_| CryptoError::Open)?;
    let mut ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Auth(public_key(sender)?),
        &recipient.hpke_private(),
        &enc,
        info.bytes(),
    )
    .map_err(|_| CryptoError::Open)?;
    let plain = Zeroizing::new(ctx.open(&envelope.ct, aad).map_err(|_| CryptoError::Open)?);
    let keys =
        export_channel(|label, out| ctx.export(label, out)).map_err(|_| CryptoError::Open)?;
    Ok((plain, keys))
}

/// One direction's channel key (docs/protocol.md): XChaCha20-Poly1305 with a random 24-byte nonce per message
/// and the request's nonce as associated data. Zeroized on drop; never printed.
pub struct ChannelKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKey(…)")
    }
}

impl ChannelKey {
    /// Encrypts `plaintext` under a fresh random nonce; returns the nonce and the ciphertext
    /// (tag appended).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; 24], Vec<u8>), CryptoError> {
        let mut buffer = plaintext.to_vec();
        let nonce = self.seal_in_place(aad, &mut buffer)?;
        Ok((nonce, buffer))
    }

    /// [`ChannelKey::seal`] of `buffer` where it lies (the tag appended), so that a large
    /// answer is not held twice; returns the nonce. Wiped on failure.
    pub fn seal_in_place(&self, aad: &[u8], buffer: &mut Vec<u8>) -> Result<[u8; 24], CryptoError> {
        let nonce = random::nonce_bytes::<24>();
        crate::xchacha::seal_in_place(&self.0, &nonce, aad, buffer)?;
        Ok(nonce)
    }

    /// Decrypts what [`ChannelKey::seal`] produced with the same `aad`.
    pub fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        crate::xchacha::open(&self.0, &nonce, aad, ct)
    }
}

/// Seals `plaintext` to `recipient` without a sender key (HPKE mode_base): anyone could have
/// sealed it. Used for data at rest addressed to one key (unseal shares).
pub fn seal_base_to(
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Envelope, CryptoError> {
    seal(&OpModeS::Base, recipient, info, aad, plaintext)
}

/// Opens an envelope sealed with [`seal_base_to`].
pub fn open_base(
    recipient: &EncryptionKey,
    info: SealInfo,
    aad: &[u8],
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open(&OpModeR::Base, recipient, info, aad, envelope)
}

/// Opens an envelope sealed to `recipient` by the holder of `sender`'s key. Fails if the
/// sender, the recipient, `info`, `aad` or any byte of the envelope differs.
pub fn open_from(
    recipient: &EncryptionKey,
    sender: &[u8; 32],
    info: SealInfo,
    aad: &[u8],
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    open(
        &OpModeR::Auth(public_key(sender)?),
        recipient,
        info,
        aad,
        envelope,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_channel_keys_agree_and_bind_the_nonce() {
        let server = EncryptionKey::generate().unwrap();
        let client = EncryptionKey::generate().unwrap();
        let export = || {
            seal_to_exporting(
                &server,
                &client.public(),
                SealInfo::Response,
                b"n1",
                b"{}".to_vec(),
            )
            .unwrap()
        };
        let (env, sent) = export();
        let (plain, got) =
            open_from_exporting(&client, &server.public(), SealInfo::Response, b"n1", &env)
                .unwrap();
        assert_eq!(&plain[..], b"{}");
        assert_eq!(*sent.request.0, *got.request.0);
        assert_eq!(*sent.response.0, *got.response.0);
        // One key per direction: a request's body does not open as an answer.
        assert_ne!(*sent.request.0, *sent.response.0);
        let (n, c) = got.request.seal(b"n2", b"{}").unwrap();
        assert!(sent.response.open(&n, b"n2", &c).is_err());
        let (sent, got) = (sent.response, got.response);
        // The same envelope opens single-shot too: exporting changes nothing on the wire.
        assert_eq!(
            &open_from(&client, &server.public(), SealInfo::Response, b"n1", &env).unwrap()[..],
            b"{}"
        );
        let (nonce, ct) = sent.seal(b"n2", b"secret").unwrap();
        assert_eq!(&got.open(&nonce, b"n2", &ct).unwrap()[..], b"secret");
        assert!(
            got.open(&nonce, b"n3", &ct).is_err(),
            "another request's nonce"
        );
        assert!(got.open(&nonce[..23], b"n2", &ct).is_err());
        let mut flipped = ct;
        flipped[0] ^= 1;
        assert!(got.open(&nonce, b"n2", &flipped).is_err());
        let (other, _) = export();
        assert_ne!(
            env.enc, other.enc,
            "a fresh ephemeral key, so a fresh channel key"
        );
    }

    #[test]
    fn base_mode_round_trip() {
        let bob = EncryptionKey::generate().unwrap();
        let env = seal_base_to(&bob.public(), SealInfo::Share, b"", b"share").unwrap();
        assert_eq!(
            &open_base(&bob, SealInfo::Share, b"", &env).unwrap()[..],
            b"share"
        );
        assert!(open_base(&bob, SealInfo::Unseal, b"", &env).is_err());
        let eve = EncryptionKey::generate().unwrap();
        assert!(open_base(&eve, SealInfo::Share, b"", &env).is_err());
    }

    #[test]
    fn round_trip_and_every_binding_matters() {
        let alice = EncryptionKey::generate().unwrap();
        let bob = EncryptionKey::generate().unwrap();
        let mallory = EncryptionKey::generate().unwrap();
        let env = seal_to(
            &alice,
            &bob.public(),
            SealInfo::Request,
            b"nonce",
            b"secret",
        )
        .unwrap();
        let pt = open_from(&bob, &alice.public(), SealInfo::Request, b"nonce", &env).unwrap();
        assert_eq!(&pt[..], b"secret");

        let fails = |r: Result<Zeroizing<Vec<u8>>, CryptoError>| {
            assert_eq!(r.err(), Some(CryptoError::Open));
        };
        fails(open_from(
            &bob,
            &mallory.public(),
            SealInfo::Request,
            b"nonce",
            &env,
        ));
        fails(open_from(
            &mallory,
            &alice.public(),
            SealInfo::Request,
            b"nonce",
            &env,
        ));
        fails(open_from(
            &bob,
            &alice.public(),
            SealInfo::Response,
            b"nonce",
            &env,
        ));
        fails(open_from(
            &bob,
            &alice.public(),
            SealInfo::Request,
            b"other",
            &env,
        ));
        let mut bad = env.clone();
        bad.ct[0] ^= 1;
        fails(open_from(
            &bob,
            &alice.public(),
            SealInfo::Request,
            b"nonce",
            &bad,
        ));
        let mut bad = env;
        bad.enc.pop();
        fails(open_from(
            &bob,
            &alice.public(),
            SealInfo::Request,
            b"nonce",
            &bad,
        ));
    }
}
