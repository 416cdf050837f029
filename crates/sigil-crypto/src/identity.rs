//! Identity key pairs and their printable forms (docs/protocol.md §2).

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::seal::EncryptionKey;
use crate::{CryptoError, KeyId, random};

const PUBLIC_HRP: &str = "sigil";
const SECRET_HRP: &str = "sigil-secret-key-";

/// The public half of an identity: an Ed25519 signing key and an independent X25519
/// encryption key. Printed as `sigil1…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    signing: VerifyingKey,
    encryption: [u8; 32],
}

impl PublicIdentity {
    /// Builds a public identity from its two raw keys.
    pub fn from_parts(signing: [u8; 32], encryption: [u8; 32]) -> Result<Self, CryptoError> {
        let signing = VerifyingKey::from_bytes(&signing).map_err(|_| CryptoError::InvalidKey)?;
        Ok(PublicIdentity {
            signing,
            encryption,
        })
    }

    /// Parses a `sigil1…` string (Bech32, BIP 173 checksum, no length limit of 90).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let checked = CheckedHrpstring::new::<Bech32>(text.trim())
            .map_err(|_| CryptoError::Encoding("not a valid sigil1 identity string"))?;
        if checked.hrp().to_lowercase() != PUBLIC_HRP {
            return Err(CryptoError::Encoding(
                "identity string must start with sigil1",
            ));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| CryptoError::Encoding("identity string must hold 64 bytes"))?;
        let (signing, encryption) = bytes.split_at(32);
        let parsed = Self::from_parts(
            signing.try_into().expect("split at 32"),
            encryption.try_into().expect("split at 32"),
        )?;
        // One key, one spelling: the bech32 crate does not check that the padding bits are
        // zero, so without this a key would have several accepted strings.
        if parsed.to_string() != text.trim().to_lowercase() {
            return Err(CryptoError::Encoding(
                "identity string is not in its canonical form",
            ));
        }
        Ok(parsed)
    }

    /// The Ed25519 verifying key.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The raw X25519 public key.
    pub fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }

    /// The keyid of the signing key.
    pub fn keyid(&self) -> KeyId {
        KeyId::for_ed25519(self.signing.as_bytes())
    }

    /// Verifies an Ed25519 signature (strict: rejects small-order and non-canonical forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)?;
        self.signing
            .verify_strict(message, &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::fmt::Display for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(self.signing.as_bytes());
        bytes[32..].copy_from_slice(&self.encryption);
        let hrp = Hrp::parse_unchecked(PUBLIC_HRP);
        let text = bech32::encode::<Bech32>(hrp, &bytes).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// The private half of an identity. Zeroized on drop; never printed.
pub struct SecretIdentity {
    signing: SigningKey,
    encryption: EncryptionKey,
}

impl std::fmt::Debug for SecretIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretIdentity")
            .field("keyid", &self.public().keyid())
            .finish_non_exhaustive()
    }
}

impl SecretIdentity {
    /// Generates a fresh identity from the OS random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random::bytes::<32>()?);
        Ok(SecretIdentity {
            signing: SigningKey::from_bytes(&seed),
            encryption: EncryptionKey::generate()?,
        })
    }

    /// The public identity.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            signing: self.signing.verifying_key(),
            encryption: self.encryption.public(),
        }
    }

    /// The X25519 half, for HPKE.
    pub fn encryption_key(&self) -> &EncryptionKey {
        &self.encryption
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Renders a key file (docs/protocol.md §2): comment lines with the creation time and the
    /// public identity, then the `SIGIL-SECRET-KEY-1…` line. The result is secret.
    pub fn to_key_file(&self, created: &str) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; 64]);
        bytes[..32].copy_from_slice(self.signing.as_bytes());
        bytes[32..].copy_from_slice(self.encryption.expose_secret());
        let hrp = Hrp::parse_unchecked(SECRET_HRP);
        let line = Zeroizing::new(
            bech32::encode_upper::<Bech32>(hrp, &bytes[..]).expect("64 bytes fit a bech32 string"),
        );
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.public(),
            line.as_str()
        ))
    }

    /// Parses a key file: `#` comments and blank lines are skipped; exactly one
    /// `SIGIL-SECRET-KEY-1…` line must remain. Comments are not trusted: the public key is
    /// always derived from the secret.
    pub fn from_key_file(text: &str) -> Result<Self, CryptoError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next().ok_or(CryptoError::Encoding(
            "no SIGIL-SECRET-KEY-1 line in key file",
        ))?;
        if lines.next().is_some() {
            return Err(CryptoError::Encoding(
                "key file holds more than one key line",
            ));
        }
        if line.starts_with("AGE-") {
            return Err(CryptoError::Encoding(
                "an age identity (AGE-SECRET-KEY-1…), not a Sigil key",
            ));
        }
        if line.starts_with("age-encryption.org") || line.starts_with("-----BEGIN AGE") {
            // The CLI opens a passphrase-protected key file before it gets here
            // (age::passphrase); the text itself is not a key.
            return Err(CryptoError::Encoding(
                "an encrypted (age) file: open it with its passphrase first",
            ));
        }
        let checked = CheckedHrpstring::new::<Bech32>(line)
            .map_err(|_| CryptoError::Encoding("not a valid SIGIL-SECRET-KEY-1 line"))?;
        if checked.hrp().to_lowercase() != SECRET_HRP {
            return Err(CryptoError::Encoding(
                "key line must start with SIGIL-SECRET-KEY-1",
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 64]);
        let mut n = 0;
        for b in checked.byte_iter() {
            if n == 64 {
                return Err(CryptoError::Encoding("secret key must hold 64 bytes"));
            }
            bytes[n] = b;
            n += 1;
        }
        if n != 64 {
            return Err(CryptoError::Encoding("secret key must hold 64 bytes"));
        }
        let hrp = Hrp::parse_unchecked(SECRET_HRP);
        let canonical = Zeroizing::new(
            bech32::encode_upper::<Bech32>(hrp, &bytes[..]).expect("64 bytes fit a bech32 string"),
        );
        let given = Zeroizing::new(line.to_uppercase());
        if !crate::ct_eq(canonical.as_bytes(), given.as_bytes()) {
            return Err(CryptoError::Encoding(
                "key line is not in its canonical form",
            ));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let mut enc = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&bytes[32..]);
        Ok(SecretIdentity {
            signing: SigningKey::from_bytes(&seed),
            encryption: EncryptionKey::from_secret(enc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_string_round_trips() {
        let id = SecretIdentity::generate().unwrap();
        let text = id.public().to_string();
        assert!(text.starts_with("sigil1"));
        assert_eq!(PublicIdentity::parse(&text).unwrap(), id.public());
        // BIP 173: an all-upper-case string is the same string.
        assert_eq!(
            PublicIdentity::parse(&text.to_uppercase()).unwrap(),
            id.public()
        );
    }

    #[test]
    fn key_file_round_trips_and_ignores_comments() {
        let id = SecretIdentity::generate().unwrap();
        let file = id.to_key_file("2026-11-23T00:00:00Z");
        assert!(file.contains(&format!("# public key: {}", id.public())));
        let back = SecretIdentity::from_key_file(&file).unwrap();
        assert_eq!(back.public(), id.public());
        // A lying comment changes nothing: the public key is derived from the secret.
        let other = SecretIdentity::generate().unwrap().public();
        let lying = file.replace(&id.public().to_string(), &other.to_string());
        assert_eq!(
            SecretIdentity::from_key_file(&lying).unwrap().public(),
            id.public()
        );
    }

    #[test]
    fn fail_malformed_strings() {
        let id = SecretIdentity::generate().unwrap();
        let text = id.public().to_string();
        // Flipped character: checksum fails.
        let mut flipped = text.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'q' { b'p' } else { b'q' };
        assert!(PublicIdentity::parse(std::str::from_utf8(&flipped).unwrap()).is_err());
        // Mixed case is refused by BIP 173.
        let mixed = format!("SIGIL{}", &text[5..]);
        assert!(PublicIdentity::parse(&mixed).is_err());
        // A secret key line is not a public identity, and vice versa.
        let file = id.to_key_file("t");
        let secret_line = file.lines().last().unwrap();
        assert!(PublicIdentity::parse(secret_line).is_err());
        assert!(SecretIdentity::from_key_file(&text).is_err());
        // Bech32m checksum over the same data is refused.
        let hrp = Hrp::parse("sigil").unwrap();
        let m = bech32::encode::<bech32::Bech32m>(hrp, &[0u8; 64]).unwrap();
        assert!(PublicIdentity::parse(&m).is_err());
        // Wrong length.
        let short = bech32::encode::<Bech32>(hrp, &[0u8; 63]).unwrap();
        assert!(PublicIdentity::parse(&short).is_err());
        assert!(PublicIdentity::parse("").is_err());
        assert!(SecretIdentity::from_key_file("").is_err());
        assert!(SecretIdentity::from_key_file(&format!("{secret_line}\n{secret_line}")).is_err());
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let id = SecretIdentity::generate().unwrap();
        let debug = format!("{id:?}");
        let file = id.to_key_file("t");
        let secret_line = file.lines().last().unwrap();
        assert!(!debug.contains(&secret_line[20..40]));
        assert!(debug.contains(id.public().keyid().as_str()));
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let id = SecretIdentity::generate().unwrap();
        let sig = id.sign(b"hello");
        id.public().verify(b"hello", &sig).unwrap();
        assert!(id.public().verify(b"hellO", &sig).is_err());
        assert!(id.public().verify(b"hello", &sig[..63]).is_err());
    }
}

#[cfg(test)]
mod garbage {
    use super::*;

    #[test]
    fn fail_random_input_never_panics() {
        let mut seed = [0u8; 8192];
        random::fill(&mut seed).unwrap();
        for i in 0..2000 {
            let r = &seed[(i * 3) % 8000..][..120];
            let text = String::from_utf8_lossy(r);
            assert!(PublicIdentity::parse(&text).is_err());
            assert!(SecretIdentity::from_key_file(&text).is_err());
            let lower: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let _ = PublicIdentity::parse(&format!("sigil1{}", lower.to_lowercase()));
        }
    }

    /// Found by the fuzzer (fuzz/regressions/identity): bech32 does not check the padding bits,
    /// so a key had several accepted spellings.
    #[test]
    fn fail_non_canonical_spellings() {
        let odd = "sigil1ww4fvlsac7r76kxnehm5wc8q8507y5f3px7pypz78v4m2kue28tfjpakwx9ugullmqln2c688jhg8w5zaqtf3pru9uxtgcm89ug92z3ka4u9z";
        assert!(PublicIdentity::parse(odd).is_err());
        let key = SecretIdentity::generate().unwrap();
        let text = key.public().to_string();
        assert_eq!(PublicIdentity::parse(&text).unwrap(), key.public());
        assert_eq!(
            PublicIdentity::parse(&text.to_uppercase()).unwrap(),
            key.public()
        );
        assert!(
            crate::age::parse_recipient(
                "age12k3yeknthagh08wd6atmxmjvrxmrq95d9fa6lhm8877yk0k7lpc3v4ffqq"
            )
            .is_err()
        );
        let file = key.to_key_file("t");
        assert!(SecretIdentity::from_key_file(&file).is_ok());
    }
}
