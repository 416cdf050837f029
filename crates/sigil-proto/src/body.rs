//! Sealed bodies: `{"enc":"<base64url>","ct":"<base64url>"}` (PROTOCOL.md §4).

use serde::{Deserialize, Serialize};
use sigil_crypto::{EncryptionKey, Envelope, SealInfo, b64url_decode, b64url_encode};
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedJson {
    enc: String,
    ct: String,
}

/// Seals `plaintext` (the JSON the endpoint would otherwise carry) and returns the envelope's
/// JSON bytes. `nonce` is the request's nonce, bound in as associated data.
pub fn seal(
    sender: &EncryptionKey,
    recipient: &[u8; 32],
    info: SealInfo,
    nonce: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, BodyError> {
    let env = sigil_crypto::seal_to(sender, recipient, info, nonce.as_bytes(), plaintext)
        .map_err(|_| BodyError::Seal)?;
    let json = SealedJson {
        enc: b64url_encode(&env.enc),
        ct: b64url_encode(&env.ct),
    };
    serde_json::to_vec(&json).map_err(|_| BodyError::Seal)
}

/// Opens an envelope's JSON bytes sealed by `sender` to `recipient` for this `nonce`.
pub fn open(
    recipient: &EncryptionKey,
    sender: &[u8; 32],
    info: SealInfo,
    nonce: &str,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let json: SealedJson = serde_json::from_slice(body)
        .map_err(|_| BodyError::Malformed("expected {\"enc\":…,\"ct\":…}"))?;
    let env = Envelope {
        enc: b64url_decode(&json.enc).map_err(|_| BodyError::Malformed("enc is not base64url"))?,
        ct: b64url_decode(&json.ct).map_err(|_| BodyError::Malformed("ct is not base64url"))?,
    };
    sigil_crypto::open_from(recipient, sender, info, nonce.as_bytes(), &env)
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
}
