//! Encodings shared by the engines: PEM, and base64 serde for zeroizing key material.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// `der` as a PEM block labelled `label` (zeroizing: it may hold a private key).
pub fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(B64.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `#[serde(with = "crate::encoding::b64_zeroizing")]`: key bytes as standard base64, never
/// left behind in a non-zeroizing buffer.
pub mod b64_zeroizing {
    use base64::Engine as _;
    use serde::{Deserialize as _, Deserializer, Serializer};
    use zeroize::Zeroizing;

    /// As standard base64.
    pub fn serialize<S: Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(super::B64.encode(v.as_slice())))
    }

    /// From standard base64, into zeroizing memory.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        super::B64
            .decode(text.as_bytes())
            .map(Zeroizing::new)
            .map_err(serde::de::Error::custom)
    }
}
