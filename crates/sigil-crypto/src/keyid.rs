use sha2::{Digest, Sha256};

/// The name of a signing key: base64url(SHA-256(DER SubjectPublicKeyInfo)) (docs/protocol.md §2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (32 bytes) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl KeyId {
    /// The keyid of an Ed25519 public key.
    pub fn for_ed25519(public: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(ED25519_SPKI_PREFIX);
        h.update(public);
        KeyId(crate::encoding::b64url_encode(&h.finalize()))
    }

    /// Wraps a keyid received from a peer (checked only for shape: 43 base64url characters).
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| KeyId(text.to_owned()))
    }

    /// The keyid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_prefix_matches_rfc8410_example() {
        // RFC 8410 §10.1 public key, in PEM:
        // MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=")
            .unwrap();
        assert_eq!(&der[..12], &ED25519_SPKI_PREFIX);
        let public: [u8; 32] = der[12..].try_into().unwrap();
        let expected = crate::encoding::b64url_encode(&Sha256::digest(&der));
        assert_eq!(KeyId::for_ed25519(&public).as_str(), expected);
    }

    #[test]
    fn parse_checks_shape() {
        let id = KeyId::for_ed25519(&[7; 32]);
        assert_eq!(KeyId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(KeyId::parse("short"), None);
        assert_eq!(KeyId::parse(&format!("{}=", &id.as_str()[..42])), None);
    }
}
