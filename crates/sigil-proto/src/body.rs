//! Sealed bodies: `{"enc":"<base64url>","ct":"<base64url>"}` (HPKE) and, on a channel,
//! `{"ch":"<id>","n":"<base64url>","ct":"<base64url>"}` (docs/protocol.md). A request body's
//! associated data is the request's nonce; an answer's is [`response_aad`].

use std::borrow::Cow;

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;
#[cfg(test)]
use sigil_crypto::b64url_encode;
use sigil_crypto::{ChannelKey, EncryptionKey, Envelope, SealInfo, b64url_decode};
use zeroize::Zeroizing;

/// Why a sealed body could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is not a sealed envelope.
    #[error("body is not a sealed envelope ({0})")]
    Malformed(&'static str),
    /// The envelope does not open with these keys and this nonce.
    #[error("sealed body could not be opened")]
    Open,
    /// Sealing failed.
    #[error("sealing failed")]
    Seal,
}

/// What [`hpke_json`] writes by hand, for the test that it matches serde's output.
#[cfg(test)]
#[derive(Serialize)]
struct SealedJson {
    enc: String,
    ct: String,
}

/// What [`seal_channel`] writes by hand, for the test that it matches serde's output.
#[cfg(test)]
#[derive(Serialize)]
struct ChannelJson {
    ch: String,
    n: String,
    ct: String,
}

/// Either envelope's fields, read in one pass (an untagged enum buffered the document and built
/// an error for the shape that did not match, on every answer).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyJson<'a> {
    #[serde(borrow, default)]
    enc: Option<Cow<'a, str>>,
    #[serde(default)]
    ch: Option<String>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ct: Cow<'a, str>,
}

/// A sealed body as received.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sealed {
    /// HPKE (§4).
    Hpke(Envelope),
    /// Sealed with the key of channel `id` (§6) under `nonce`.
    Channel {
        /// The channel id.
        id: String,
        /// The 24-byte XChaCha20 nonce.
        nonce: Vec<u8>,
        /// Ciphertext and tag.
        ct: Vec<u8>,
    },
}

/// Parses either envelope.
pub fn parse(body: &[u8]) -> Result<Sealed, BodyError> {
    let b64 = |s: &str, what| b64url_decode(s).map_err(|_| BodyError::Malformed(what));
    let shape =
        || BodyError::Malformed("expected {\"enc\":…,\"ct\":…} or {\"ch\":…,\"n\":…,\"ct\":…}");
    let j = serde_json::from_slice::<AnyJson<'_>>(body).map_err(|_| shape())?;
    match (j.enc, j.ch, j.n) {
        (Some(enc), None, None) => Ok(Sealed::Hpke(Envelope {
            enc: b64(&enc, "enc is not base64url")?,
            ct: b64(&j.ct, "ct is not base64url")?,
        })),
        (None, Some(id), Some(n)) => Ok(Sealed::Channel {
            id,
            nonce: b64(&n, "n is not base64url")?,
            ct: b64(&j.ct, "ct is not base64url")?,
        }),
        _ => Err(shape()),
    }
}

/// The associated data of an answer: its status and the request's nonce, `"<status> <nonce>"`.
/// An answer opens only for the request it answers and only with the status it was sent with:
/// a proxy can neither move it to another request nor pass a sealed 200 off as a 204.
pub fn response_aad(status: u16, nonce: &str) -> String {
    format!("{status} {nonce}")
}

/// Seals `plaintext` with channel `id`'s key (the one for its direction) and `aad` (a request's
/// nonce, or an answer's [`response_aad`]).
pub fn seal_channel(
    key: &ChannelKey,
    id: &str,
    aad: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, BodyError> {
    seal_channel_in_place(key, id, aad, plaintext.to_vec())
}

/// [`seal_channel`] of a plaintext handed over: encrypted where it lies and written out once,
/// so that a large answer is held at most twice (its ciphertext and the envelope).
pub fn seal_channel_in_place(
    key: &ChannelKey,
    id: &str,
    aad: &str,
    mut plaintext: Vec<u8>,
) -> Result<Vec<u8>, BodyError> {
    let n = key
        .seal_in_place(aad.as_bytes(), &mut plaintext)
        .map_err(|_| BodyError::Seal)?;
    let ct = plaintext;
    // The same bytes serde would write for `ChannelJson`, without scanning the base64url
    // strings (which never need escaping) for characters to escape.
    let mut out = Vec::with_capacity(id.len() + b64url_len(n.len()) + b64url_len(ct.len()) + 24);
    out.extend_from_slice(b"{\"ch\":");
    serde_json::to_writer(&mut out, id).map_err(|_| BodyError::Seal)?;
    out.extend_from_slice(b",\"n\":\"");
    push_b64url(&mut out, &n);
    out.extend_from_slice(b"\",\"ct\":\"");
    push_b64url(&mut out, &ct);
    out.extend_from_slice(b"\"}");
    Ok(out)
}

/// The length of `len` bytes in base64url without padding.
fn b64url_len(len: usize) -> usize {
    len / 3 * 4 + [0, 2, 3][len % 3]
}

/// Appends `bytes` to `out` in base64url without padding, in place.
fn push_b64url(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + b64url_len(bytes.len()), 0);
    let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode_slice(bytes, &mut out[start..])
        .expect("sized for the encoding");
    debug_assert_eq!(written, out.len() - start);
}

/// Opens a channel envelope's parts with the channel's key for its direction and `aad`.
pub fn open_channel(
    key: &ChannelKey,
    aad: &str,
    sealed_nonce: &[u8],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    key.open(sealed_nonce, aad.as_bytes(), ct)
        .map_err(|_| BodyError::Open)
}

/// Serializes an HPKE envelope.
pub fn hpke_json(env: &Envelope) -> Vec<u8> {
    // Byte for byte what serde writes for `SealedJson`, in one buffer of the right size.
    let mut out = Vec::with_capacity(b64url_len(env.enc.len()) + b64url_len(env.ct.len()) + 18);
    out.extend_from_slice(b"{\"enc\":\"");
    push_b64url(&mut out, &env.enc);
    out.extend_from_slice(b"\",\"ct\":\"");
    push_b64url(&mut out, &env.ct);
    out.extend_from_slice(b"\"}");
    out
}

/// Seals `plaintext` (the JSON the endpoint would otherwise carry) and returns the envelope's
/// JSON bytes, with `aad` (a request's nonce, or an answer's [`response_aad`]) bound in.
pub fn seal(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, BodyError> {
    seal_in_place(sender, recipient, info, aad, plaintext.to_vec())
}

/// [`seal`] of a plaintext handed over: encrypted where it lies and written out once, so that
/// a large answer is held at most twice (its ciphertext and the envelope).
pub fn seal_in_place(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    aad: &str,
    plaintext: Vec<u8>,
) -> Result<Vec<u8>, BodyError> {
    let env = sigil_crypto::seal_to_in_place(sender, recipient, info, aad.as_bytes(), plaintext)
        .map_err(|_| BodyError::Seal)?;
    Ok(hpke_json(&env))
}

/// Opens an envelope's JSON bytes sealed by `sender` to `recipient` with `aad`.
pub fn open(
    recipient: &EncryptionKey,
    sender: &[u8; 32],
    info: SealInfo,
    aad: &str,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let Sealed::Hpke(env) = parse(body)? else {
        return Err(BodyError::Malformed("expected {\"enc\":…,\"ct\":…}"));
    };
    sigil_crypto::open_from(recipient, sender, info, aad.as_bytes(), &env)
        .map_err(|_| BodyError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_reject_garbage() {
        let a = EncryptionKey::generate().unwrap();
        let b = EncryptionKey::generate().unwrap();
        let body = seal(&a, &b.public(), SealInfo::Response, "n1", b"{\"x\":1}").unwrap();
        let pt = open(&b, &a.public(), SealInfo::Response, "n1", &body).unwrap();
        assert_eq!(&pt[..], b"{\"x\":1}");
        assert_eq!(
            open(&b, &a.public(), SealInfo::Response, "n2", &body),
            Err(BodyError::Open)
        );
        for garbage in [
            &b""[..],
            b"{}",
            b"{\"ch\":\"c\",\"n\":\"AA\",\"ct\":\"AA\"}",
            b"{\"ch\":\"c\",\"n\":\"AA\",\"ct\":\"AA\",\"enc\":\"AA\"}",
            b"[1]",
            b"{\"enc\":\"a\",\"ct\":\"b\",\"x\":1}",
            b"{\"enc\":\"***\",\"ct\":\"b\"}",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                open(&b, &a.public(), SealInfo::Response, "n1", garbage),
                Err(BodyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn channel_envelopes_parse_open_and_refuse_garbage() {
        let a = EncryptionKey::generate().unwrap();
        let b = EncryptionKey::generate().unwrap();
        let (env, keys) = sigil_crypto::seal_to_exporting(
            &a,
            &b.public(),
            SealInfo::Response,
            b"n",
            b"{}".to_vec(),
        )
        .unwrap();
        let key = keys.response;
        assert_eq!(parse(&hpke_json(&env)).unwrap(), Sealed::Hpke(env.clone()));
        // Written by hand, byte for byte what serde writes, for every length modulo 3.
        for len in 0..7 {
            let env = Envelope {
                enc: env.enc.clone(),
                ct: vec![0xfb; len],
            };
            let expected = serde_json::to_vec(&SealedJson {
                enc: b64url_encode(&env.enc),
                ct: b64url_encode(&env.ct),
            })
            .unwrap();
            assert_eq!(hpke_json(&env), expected, "{len}");
        }
        let body = seal_channel(&key, "c1", "n2", b"{\"x\":1}").unwrap();
        let Sealed::Channel { id, nonce, ct } = parse(&body).unwrap() else {
            panic!("a channel envelope");
        };
        assert_eq!(id, "c1");
        assert_eq!(
            &open_channel(&key, "n2", &nonce, &ct).unwrap()[..],
            b"{\"x\":1}"
        );
        assert_eq!(open_channel(&key, "n3", &nonce, &ct), Err(BodyError::Open));
        // Written by hand, byte for byte what serde writes (an id needing escapes included).
        for id in ["c1", "a\"b\\c\u{1}é"] {
            let body = seal_channel(&key, id, "n2", b"{}").unwrap();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["ch"], id);
            let expected = serde_json::to_vec(&ChannelJson {
                ch: id.to_owned(),
                n: value["n"].as_str().unwrap().to_owned(),
                ct: value["ct"].as_str().unwrap().to_owned(),
            })
            .unwrap();
            assert_eq!(body, expected);
        }
        for garbage in [
            &b"{\"ch\":\"c\",\"n\":\"***\",\"ct\":\"AA\"}"[..],
            b"{\"ch\":\"c\",\"n\":\"AA\"}",
            b"{\"ch\":1,\"n\":\"AA\",\"ct\":\"AA\"}",
            b"{\"enc\":\"AA\",\"n\":\"AA\",\"ct\":\"AA\"}",
            b"{\"ch\":\"c\",\"ct\":\"AA\"}",
            b"{\"ch\":\"c\",\"ch\":\"d\",\"n\":\"AA\",\"ct\":\"AA\"}",
            b"{\"enc\":\"AA\",\"enc\":\"AA\",\"ct\":\"AA\"}",
        ] {
            assert!(matches!(parse(garbage), Err(BodyError::Malformed(_))));
        }
        // JSON escapes are read as the characters they stand for.
        assert_eq!(
            parse(b"{\"ch\":\"c\",\"n\":\"A\\u0041\",\"ct\":\"AA\"}").unwrap(),
            Sealed::Channel {
                id: "c".into(),
                nonce: vec![0],
                ct: vec![0]
            }
        );
        assert_eq!(
            crate::headers::channel_grant("abc_-1; ttl=3600"),
            Some(("abc_-1".into(), 3600))
        );
        for bad in ["abc", "; ttl=1", "a b; ttl=1", "abc; ttl=x", "abc; max=1"] {
            assert_eq!(crate::headers::channel_grant(bad), None, "{bad}");
        }
    }
}
