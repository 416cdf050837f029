//! The age file format, version 1 (<https://age-encryption.org/v1>, C2SP `age.md`), for X25519
//! recipients: the multi-recipient envelope of end-to-end secrets and one-time wraps; and, in
//! [`passphrase`], age's scrypt recipient with its ASCII armor for passphrase-protected key files.
//!
//! A Sigil identity's X25519 key is an age X25519 key, so `sigil key export-age` gives an
//! `AGE-SECRET-KEY-1…` identity that the age tools accept, and they open these envelopes.
//! Everything is composed from maintained primitives (X25519 from `x25519-dalek`, HKDF/HMAC from
//! RustCrypto, ChaCha20-Poly1305 from `chacha20poly1305`); the format is followed to the letter
//! and checked against the age tools in the test suite.
//!
//! ```text
//! age-encryption.org/v1
//! -> X25519 <ephemeral share, base64>
//! <file key wrapped by ChaCha20-Poly1305, base64>
//! --- <HMAC-SHA-256 of the header, base64>
//! <16-byte nonce><STREAM payload: 64 KiB ChaCha20-Poly1305 chunks>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{CryptoError, EncryptionKey, random};

pub mod passphrase;

const INTRO: &[u8] = b"age-encryption.org/v1\n";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// Most recipients an envelope may have (bounds the work of opening one).
pub const MAX_RECIPIENTS: usize = 256;
/// Largest header Sigil parses.
const MAX_HEADER: usize = 64 * 1024;

/// Encrypts `plaintext` to each X25519 public key in `recipients` (1 to [`MAX_RECIPIENTS`]).
pub fn encrypt(recipients: &[[u8; 32]], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(CryptoError::Encoding(
            "an envelope needs 1 to 256 recipients",
        ));
    }
    let file_key = Zeroizing::new(random::bytes::<16>()?);
    let mut header = INTRO.to_vec();
    for r in recipients {
        let ephemeral = StaticSecret::from(random::bytes::<32>()?);
        let share = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&PublicKey::from(*r));
        if !shared.was_contributory() {
            return Err(CryptoError::InvalidKey);
        }
        let body = wrap_file_key(&wrap_key(shared.as_bytes(), share.as_bytes(), r), &file_key)?;
        header.extend_from_slice(b"-> X25519 ");
        header.extend_from_slice(B64.encode(share.as_bytes()).as_bytes());
        header.push(b'\n');
        // 32 bytes are 43 base64 characters: one line, shorter than 64, as the format requires.
        header.extend_from_slice(B64.encode(&body).as_bytes());
        header.push(b'\n');
    }
    seal(&file_key, header, plaintext)
}

/// Finishes a file whose header (the intro and the stanzas) is `header`: the MAC line, then
/// the payload encrypted under `file_key`.
fn seal(
    file_key: &[u8; 16],
    mut header: Vec<u8>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    header.extend_from_slice(b"---");
    let mac = header_mac(file_key, &header);
    header.push(b' ');
    header.extend_from_slice(B64.encode(mac).as_bytes());
    header.push(b'\n');

    let nonce = random::bytes::<16>()?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    let payload = ChaCha20Poly1305::new((&*payload_key(file_key, &nonce)).into());
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(CHUNK).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let ct = payload
            .encrypt(&chunk_nonce(i as u128, i + 1 == chunks.len())?, *chunk)
            .map_err(|_| CryptoError::Seal)?;
        out.extend_from_slice(&ct);
    }
    Ok(out)
}

/// Opens an envelope with `key`, if one of its stanzas is for it.
pub fn decrypt(key: &EncryptionKey, file: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let header = Header::parse(file)?;
    let stanzas = x25519_stanzas(&header)?;
    let secret = StaticSecret::from(*key.expose_secret());
    let public = PublicKey::from(&secret);
    let mut file_key = None;
    for (share, body) in &stanzas {
        let shared = secret.diffie_hellman(&PublicKey::from(*share));
        if !shared.was_contributory() {
            return Err(CryptoError::Open);
        }
        let wrap_key = wrap_key(shared.as_bytes(), share, public.as_bytes());
        if let Some(k) = unwrap_file_key(&wrap_key, body) {
            file_key = Some(k);
            break;
        }
    }
    let file_key = file_key.ok_or(CryptoError::Open)?;
    open(&file_key, &header, file)
}

/// A stanza body: the file key wrapped by ChaCha20-Poly1305 under `wrap_key`, zero nonce.
fn wrap_file_key(wrap_key: &[u8; 32], file_key: &[u8; 16]) -> Result<Vec<u8>, CryptoError> {
    ChaCha20Poly1305::new(wrap_key.into())
        .encrypt(&Nonce::from([0u8; 12]), &file_key[..])
        .map_err(|_| CryptoError::Seal)
}

/// The file key wrapped in a stanza body (ChaCha20-Poly1305, zero nonce), if `wrap_key` opens it.
fn unwrap_file_key(wrap_key: &[u8; 32], body: &[u8]) -> Option<Zeroizing<[u8; 16]>> {
    let k = Zeroizing::new(
        ChaCha20Poly1305::new(wrap_key.into())
            .decrypt(&Nonce::from([0u8; 12]), body)
            .ok()?,
    );
    let mut fk = Zeroizing::new([0u8; 16]);
    fk.copy_from_slice(k.get(..16).filter(|_| k.len() == 16)?);
    Some(fk)
}

/// Checks the header's MAC with `file_key`, then decrypts the payload.
fn open(
    file_key: &[u8; 16],
    header: &Header,
    file: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut check = header_hmac(file_key);
    check.update(&file[..header.mac_input_len]);
    // Constant-time comparison of the MAC.
    check
        .verify_slice(&header.mac)
        .map_err(|_| CryptoError::Open)?;

    let rest = &file[header.len..];
    if rest.len() < 16 {
        return Err(CryptoError::Open);
    }
    let (nonce, body) = rest.split_at(16);
    let payload = ChaCha20Poly1305::new((&*payload_key(file_key, nonce)).into());
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let chunks: Vec<&[u8]> = body.chunks(CHUNK + TAG).collect();
    if chunks.is_empty() {
        return Err(CryptoError::Open);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let pt = Zeroizing::new(
            payload
                .decrypt(&chunk_nonce(i as u128, last)?, *chunk)
                .map_err(|_| CryptoError::Open)?,
        );
        // Only the first chunk of an empty file may be empty.
        if pt.is_empty() && i > 0 {
            return Err(CryptoError::Open);
        }
        out.extend_from_slice(&pt);
    }
    Ok(out)
}

/// How many X25519 stanzas an envelope's header has, after checking its structure (what a
/// server can check without a key).
pub fn recipient_count(file: &[u8]) -> Result<usize, CryptoError> {
    let header = Header::parse(file)?;
    let stanzas = x25519_stanzas(&header)?;
    let payload = file.len() - header.len;
    // The nonce and at least one chunk's tag.
    if payload < 16 + TAG {
        return Err(CryptoError::Encoding("age payload is truncated"));
    }
    Ok(stanzas.len())
}

/// `age1…`: an X25519 public key as the age tools print recipients.
pub fn recipient_string(public: &[u8; 32]) -> String {
    let hrp = Hrp::parse("age").expect("valid hrp");
    bech32::encode::<Bech32>(hrp, public).expect("32 bytes fit a bech32 string")
}

/// Parses an `age1…` recipient.
pub fn parse_recipient(text: &str) -> Result<[u8; 32], CryptoError> {
    let checked = CheckedHrpstring::new::<Bech32>(text)
        .map_err(|_| CryptoError::Encoding("invalid age recipient"))?;
    if checked.hrp().as_str() != "age" || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(CryptoError::Encoding("invalid age recipient"));
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CryptoError::Encoding("invalid age recipient"))?;
    // As age: one spelling per key (the padding bits must be zero).
    if recipient_string(&key) != text {
        return Err(CryptoError::Encoding("invalid age recipient"));
    }
    Ok(key)
}

/// `AGE-SECRET-KEY-1…`: the X25519 key as an age identity. The result is secret.
pub fn identity_string(key: &EncryptionKey) -> Zeroizing<String> {
    let hrp = Hrp::parse("age-secret-key-").expect("valid hrp");
    Zeroizing::new(
        bech32::encode_upper::<Bech32>(hrp, key.expose_secret())
            .expect("32 bytes fit a bech32 string"),
    )
}

/// One recipient stanza: `-> TYPE ARG…` and its base64 body, decoded.
struct Stanza {
    kind: Vec<u8>,
    args: Vec<Vec<u8>>,
    body: Vec<u8>,
}

struct Header {
    stanzas: Vec<Stanza>,
    mac: [u8; 32],
    /// Bytes covered by the MAC: up to and including `---`.
    mac_input_len: usize,
    /// The whole header, through the newline after the MAC.
    len: usize,
}

/// An X25519 stanza: the ephemeral share and the wrapped file key.
type X25519Stanza = ([u8; 32], [u8; 32]);

/// The (ephemeral share, wrapped file key) of each stanza, which must all be X25519: Sigil's
/// envelopes carry nothing else, and anything else (age's scrypt, SSH or plugin stanzas) is
/// refused rather than stored blind.
fn x25519_stanzas(header: &Header) -> Result<Vec<X25519Stanza>, CryptoError> {
    header
        .stanzas
        .iter()
        .map(|s| {
            if s.kind != b"X25519" {
                return Err(bad("age header: only X25519 recipients are supported"));
            }
            let [share] = &s.args[..] else {
                return Err(bad("age header: X25519 stanza takes one argument"));
            };
            let body: [u8; 32] = s
                .body
                .clone()
                .try_into()
                .map_err(|_| bad("age header: wrong field length"))?;
            Ok((b64_exact::<32>(share)?, body))
        })
        .collect()
}

fn bad(what: &'static str) -> CryptoError {
    CryptoError::Encoding(what)
}

/// Canonical unpadded base64 of exactly `N` bytes.
fn b64_exact<const N: usize>(text: &[u8]) -> Result<[u8; N], CryptoError> {
    let bytes = B64
        .decode(text)
        .map_err(|_| bad("age header: invalid base64"))?;
    bytes
        .try_into()
        .map_err(|_| bad("age header: wrong field length"))
}

impl Header {
    fn parse(file: &[u8]) -> Result<Header, CryptoError> {
        if !file.starts_with(INTRO) {
            return Err(bad("not an age v1 file"));
        }
        let mut pos = INTRO.len();
        let mut stanzas = Vec::new();
        // One line at a time; every line ends in '\n'.
        let line = |pos: &mut usize| -> Result<(usize, usize), CryptoError> {
            let start = *pos;
            let limit = file.len().min(MAX_HEADER);
            let end = file[start..limit]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| start + i)
                .ok_or_else(|| bad("age header: truncated or too long"))?;
            *pos = end + 1;
            Ok((start, end))
        };
        loop {
            let (s, e) = line(&mut pos)?;
            let l = &file[s..e];
            if let Some(mac) = l.strip_prefix(b"--- ") {
                let mac = b64_exact::<32>(mac)?;
                if stanzas.is_empty() {
                    return Err(bad("age header: no recipients"));
                }
                return Ok(Header {
                    stanzas,
                    mac,
                    mac_input_len: s + 3,
                    len: pos,
                });
            }
            let args = l
                .strip_prefix(b"-> ")
                .ok_or_else(|| bad("age header: expected a stanza or the MAC line"))?;
            let mut parts = args.split(|&b| b == b' ');
            let kind = parts.next().unwrap_or_default().to_vec();
            let args: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();
            // As the format: a type and arguments are non-empty strings of printable ASCII.
            if kind.is_empty()
                || std::iter::once(&kind)
                    .chain(&args)
                    .any(|a| a.is_empty() || a.iter().any(|b| !(33..=126).contains(b)))
            {
                return Err(bad("age header: malformed stanza line"));
            }
            // The body: lines of 64 base64 characters, ended by a shorter one (maybe empty).
            let mut body = Vec::new();
            loop {
                let (bs, be) = line(&mut pos)?;
                let chunk = &file[bs..be];
                if chunk.len() > 64 {
                    return Err(bad("age header: stanza line longer than 64 characters"));
                }
                body.extend_from_slice(chunk);
                if chunk.len() < 64 {
                    break;
                }
            }
            let body = B64
                .decode(&body)
                .map_err(|_| bad("age header: invalid base64"))?;
            stanzas.push(Stanza { kind, args, body });
            if stanzas.len() > MAX_RECIPIENTS {
                return Err(bad("age header: too many recipients"));
            }
        }
    }
}

fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out[..])
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    out
}

fn wrap_key(shared: &[u8; 32], share: &[u8; 32], recipient: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(recipient);
    hkdf32(shared, &salt, X25519_LABEL)
}

fn header_hmac(file_key: &[u8; 16]) -> Hmac<Sha256> {
    <Hmac<Sha256>>::new_from_slice(&*hkdf32(file_key, b"", b"header"))
        .expect("HMAC takes any key length")
}

fn header_mac(file_key: &[u8; 16], header: &[u8]) -> [u8; 32] {
    let mut mac = header_hmac(file_key);
    mac.update(header);
    mac.finalize().into_bytes().into()
}

fn payload_key(file_key: &[u8; 16], nonce: &[u8]) -> Zeroizing<[u8; 32]> {
    hkdf32(file_key, nonce, b"payload")
}

/// STREAM nonce: 11-byte big-endian chunk counter, then 1 on the last chunk.
fn chunk_nonce(counter: u128, last: bool) -> Result<Nonce, CryptoError> {
    if counter >= 1 << 88 {
        return Err(CryptoError::Seal);
    }
    let mut n = [0u8; 12];
    n[..11].copy_from_slice(&counter.to_be_bytes()[5..]);
    n[11] = u8::from(last);
    Ok(Nonce::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EncryptionKey {
        EncryptionKey::generate().unwrap()
    }

    #[test]
    fn round_trips_for_every_recipient_and_size() {
        let (a, b, c) = (key(), key(), key());
        for size in [
            0,
            1,
            100,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            2 * CHUNK + 7,
        ] {
            let pt: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let file = encrypt(&[a.public(), b.public()], &pt).unwrap();
            assert_eq!(recipient_count(&file).unwrap(), 2);
            assert_eq!(&decrypt(&a, &file).unwrap()[..], &pt[..], "{size}");
            assert_eq!(&decrypt(&b, &file).unwrap()[..], &pt[..], "{size}");
            assert!(decrypt(&c, &file).is_err(), "not a recipient");
        }
    }

    #[test]
    fn tampering_is_refused() {
        let a = key();
        let file = encrypt(&[a.public()], b"top secret value").unwrap();
        for i in 0..file.len() {
            let mut t = file.clone();
            t[i] ^= 0x01;
            assert!(decrypt(&a, &t).is_err(), "byte {i}");
        }
        for cut in 0..file.len() {
            assert!(decrypt(&a, &file[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = file;
        longer.push(0);
        assert!(decrypt(&a, &longer).is_err());
    }

    #[test]
    fn headers_are_checked_strictly() {
        let a = key();
        let file = encrypt(&[a.public()], b"x").unwrap();
        let text = String::from_utf8_lossy(&file[..file.len() - 33]).into_owned();
        for bad in [
            text.replace("age-encryption.org/v1", "age-encryption.org/v2"),
            text.replace("-> X25519 ", "-> scrypt "),
            text.replace("-> X25519 ", "-> X25519  "),
            text.replacen("---", "-> X25519 AAAA\n\n---", 1),
            text.replace("--- ", "---"),
        ] {
            let mut f = bad.into_bytes();
            f.extend_from_slice(&file[file.len() - 33..]);
            assert!(recipient_count(&f).is_err());
            assert!(decrypt(&a, &f).is_err());
        }
        // A low-order ephemeral share (all-zero shared secret) is refused on decryption.
        let share = text
            .lines()
            .nth(1)
            .unwrap()
            .strip_prefix("-> X25519 ")
            .unwrap()
            .to_owned();
        let zero_share = text.replace(&share, &B64.encode([0u8; 32]));
        let mut f = zero_share.into_bytes();
        f.extend_from_slice(&file[file.len() - 33..]);
        assert!(decrypt(&a, &f).is_err());
        // Non-canonical base64 (non-zero trailing bits) is refused.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut noncanonical = share.clone().into_bytes();
        let end = noncanonical.len() - 1;
        let value = ALPHABET
            .iter()
            .position(|c| *c == noncanonical[end])
            .unwrap();
        noncanonical[end] = ALPHABET[value | 1]; // 43 characters carry 2 spare bits: set one
        let bad_share = std::str::from_utf8(&noncanonical).unwrap();
        let mut f = text.replace(&share, bad_share).into_bytes();
        f.extend_from_slice(&file[file.len() - 33..]);
        assert!(recipient_count(&f).is_err());
        assert!(recipient_count(b"").is_err());
        assert!(recipient_count(b"age-encryption.org/v1\n--- AAAA\n").is_err());
        assert!(encrypt(&[], b"x").is_err());
        // The all-zero point is refused.
        assert!(encrypt(&[[0u8; 32]], b"x").is_err());
    }

    #[test]
    fn printable_keys() {
        let a = key();
        let r = recipient_string(&a.public());
        assert!(r.starts_with("age1"));
        assert_eq!(parse_recipient(&r).unwrap(), a.public());
        assert!(parse_recipient(&r.to_uppercase()).is_err());
        assert!(parse_recipient("sigil1qqqq").is_err());
        assert!(identity_string(&a).starts_with("AGE-SECRET-KEY-1"));
    }
}
