//! Identity key pairs and their printable forms (docs/protocol.md §2).

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::ParsedPublicKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::seal::EncryptionKey;
use crate::{CryptoError, KeyId, random};

const PUBLIC_HRP: &str = "sigil";
const SECRET_HRP: &str = "sigil-secret-key-";

/// The public half of an identity: an Ed25519 signing key and an independent X25519
/// encryption key. Printed as `sigil1…`.
#[derive(Clone)]
pub struct PublicIdentity {
    signing: VerifyingKey,
    encryption: [u8; 32],
    /// The signing key as aws-lc parsed it, on first use: signatures are verified there
    /// (see [`PublicIdentity::verify`]).
    verifier: Arc<OnceLock<Option<ParsedPublicKey>>>,
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.signing == other.signing && self.encryption == other.encryption
    }
}

impl Eq for PublicIdentity {}

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("signing", &self.signing)
            .field("encryption", &self.encryption)
            .finish()
    }
}

impl PublicIdentity {
    /// Builds a public identity from its two raw keys. The signing key must be a canonical
    /// encoding of a point that is not of small order (a "weak" key verifies signatures of
    /// almost any message; a non-canonical one would have a second spelling).
    pub fn from_parts(signing: [u8; 32], encryption: [u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(&signing).map_err(|_| CryptoError::InvalidKey)?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != signing {
            return Err(CryptoError::InvalidKey);
        }
        Ok(Self::with_key(key, encryption))
    }

    fn with_key(signing: VerifyingKey, encryption: [u8; 32]) -> Self {
        PublicIdentity {
            signing,
            encryption,
            verifier: Arc::new(OnceLock::new()),
        }
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

    /// Verifies an Ed25519 signature, strictly: what ed25519-dalek's `verify_strict` accepts
    /// and nothing else. The public key is canonical and not of small order (checked when it
    /// was built); `R` must be canonical and not a small-order point ([`acceptable_r`]); aws-lc
    /// then checks `S < ℓ` and that the encoding of `[S]B − [k]A` equals `R` byte for byte
    /// (cofactorless). aws-lc does this in about three quarters of dalek's time, without
    /// decompressing `R` (performance.md; a test compares the two on edge cases and random
    /// inputs).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let signature: &[u8; 64] = signature
            .try_into()
            .map_err(|_| CryptoError::BadSignature)?;
        if !acceptable_r(signature) {
            return Err(CryptoError::BadSignature);
        }
        let verifier = self.verifier.get_or_init(|| {
            ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, self.signing.as_bytes()).ok()
        });
        match verifier {
            Some(key) => key.verify_sig(message, signature),
            None => Err(aws_lc_rs::error::Unspecified),
        }
        .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies as [`PublicIdentity::verify`] does, with ed25519-dalek's `verify_strict`
    /// (the reference the aws-lc path is checked against).
    pub fn verify_with_dalek(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
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
    /// The same Ed25519 key in aws-lc, which signs: 8 µs against dalek's 13 µs here, and
    /// Ed25519 signatures are deterministic, so both give the same bytes (tested). aws-lc
    /// wipes the key when it frees it.
    signer: aws_lc_rs::signature::Ed25519KeyPair,
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
        Self::from_keys(&seed, EncryptionKey::generate()?)
    }

    fn from_keys(seed: &[u8; 32], encryption: EncryptionKey) -> Result<Self, CryptoError> {
        let signer = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| CryptoError::InvalidKey)?;
        Ok(SecretIdentity {
            signing: SigningKey::from_bytes(seed),
            signer,
            encryption,
        })
    }

    /// The public identity.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity::with_key(self.signing.verifying_key(), self.encryption.public())
    }

    /// The X25519 half, for HPKE.
    pub fn encryption_key(&self) -> &EncryptionKey {
        &self.encryption
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let signature = self.signer.sign(message);
        signature
            .as_ref()
            .try_into()
            .expect("an Ed25519 signature is 64 bytes")
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
        if !crate::encoding::ct_eq(canonical.as_bytes(), given.as_bytes()) {
            return Err(CryptoError::Encoding(
                "key line is not in its canonical form",
            ));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&bytes[..32]);
        let mut enc = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&bytes[32..]);
        Self::from_keys(&seed, EncryptionKey::from_secret(enc))
    }
}

/// Whether a signature's `R` (its first 32 bytes) passes what `verify_strict` checks of it
/// before the equation: a canonical encoding, and not a small-order point with either sign
/// bit. (Alone, aws-lc's byte comparison would refuse a non-canonical `R` anyway; a batch
/// decompresses `R`, so it needs this: `crate::batch`.)
pub(crate) fn acceptable_r(signature: &[u8; 64]) -> bool {
    let r: &[u8; 32] = signature[..32].try_into().expect("64 bytes");
    canonical_point_encoding(r) && !small_order_whatever_its_sign(r)
}

/// p = 2^255 − 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Whether `encoding`'s `y` is below `p`. The only other non-canonical encodings, `x = 0` with
/// the sign bit set, are of `y = ±1`: small-order points, refused by
/// [`small_order_whatever_its_sign`].
fn canonical_point_encoding(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f;
    // y < p, compared from the most significant byte.
    for i in (0..32).rev() {
        if y[i] != P[i] {
            return y[i] < P[i];
        }
    }
    false
}

/// Whether `encoding`, with its sign bit ignored, is one of the eight small-order points.
fn small_order_whatever_its_sign(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f;
    small_order_encodings().iter().any(|t| {
        let mut t = *t;
        t[31] &= 0x7f;
        t == y
    })
}

/// The canonical encodings of the eight points of small order (the 8-torsion): an `R` that
/// is one of them is refused, as dalek's `verify_strict` refuses it.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    ENCODINGS
        .get_or_init(|| curve25519_dalek::constants::EIGHT_TORSION.map(|p| p.compress().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// aws-lc signs what dalek signs, byte for byte (Ed25519 is deterministic), and the
    /// signatures verify.
    #[test]
    fn aws_lc_signatures_are_dalek_signatures() {
        use ed25519_dalek::Signer as _;
        for len in [0usize, 1, 63, 64, 320, 4096] {
            let id = SecretIdentity::generate().unwrap();
            let message: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let ours = id.sign(&message);
            assert_eq!(ours, id.signing.sign(&message).to_bytes(), "{len} bytes");
            assert!(id.public().verify(&message, &ours).is_ok());
        }
    }

    /// The aws-lc path accepts exactly what dalek's `verify_strict` accepts: valid
    /// signatures, and none of the malleable or small-order forms.
    #[test]
    fn aws_lc_verification_agrees_with_verify_strict() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::scalar::Scalar;

        let id = SecretIdentity::generate().unwrap();
        let public = id.public();
        let agree = |msg: &[u8], sig: &[u8]| {
            let (aws, dalek) = (public.verify(msg, sig), public.verify_with_dalek(msg, sig));
            assert_eq!(
                aws.is_ok(),
                dalek.is_ok(),
                "{} {sig:02x?}",
                String::from_utf8_lossy(msg)
            );
            aws.is_ok()
        };
        let msg = b"GET /v1/secret/data/app";
        let sig = id.sign(msg);
        assert!(agree(msg, &sig));
        assert!(!agree(b"another message", &sig));
        assert!(!agree(msg, &sig[..63]));
        assert!(!agree(msg, &[sig.as_slice(), &[0]].concat()));
        // Every single bit flipped.
        for bit in 0..512 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!agree(msg, &bad), "bit {bit}");
        }
        // S + ℓ: the same point equation, a non-canonical scalar.
        let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
        let ell_bytes = {
            // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
            let mut l = [0u8; 32];
            l[..16].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3edu128.to_le_bytes());
            l[31] = 0x10;
            l
        };
        let mut plus_ell = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s.to_bytes()[i]) + u16::from(ell_bytes[i]) + carry;
            plus_ell[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "S + ℓ < 2^256");
        let malleable = [&sig[..32], &plus_ell[..]].concat();
        assert!(!agree(msg, &malleable));
        // R moved by a torsion point: the cofactored equation would hold, the strict one not.
        let r = CompressedEdwardsY(sig[..32].try_into().unwrap())
            .decompress()
            .unwrap();
        for t in EIGHT_TORSION.iter().skip(1) {
            let moved = [&(r + t).compress().to_bytes()[..], &sig[32..]].concat();
            assert!(!agree(msg, &moved));
        }
        // Small-order R with any S, and R that is not a point or not canonical.
        for t in EIGHT_TORSION {
            for s in [[0u8; 32], sig[32..].try_into().unwrap()] {
                assert!(!agree(
                    msg,
                    &[&t.compress().to_bytes()[..], &s[..]].concat()
                ));
            }
        }
        let mut not_canonical = [0xffu8; 32];
        not_canonical[31] = 0x7f;
        assert!(!agree(msg, &[&not_canonical[..], &sig[32..]].concat()));
        // Random signatures.
        for _ in 0..200 {
            let mut random = [0u8; 64];
            crate::random::fill(&mut random).unwrap();
            assert!(!agree(msg, &random));
        }
    }

    #[test]
    fn the_encoding_checks_match_dalek() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // Canonical: every small-order point's encoding, and a random key's.
        for t in EIGHT_TORSION {
            let e = t.compress().to_bytes();
            assert!(canonical_point_encoding(&e));
            assert!(small_order_whatever_its_sign(&e));
        }
        let key = SecretIdentity::generate().unwrap().public();
        let e = key.signing_key().to_bytes();
        assert!(canonical_point_encoding(&e));
        assert!(!small_order_whatever_its_sign(&e));
        // y = p − 1 is canonical; p and above are not.
        let mut y = P;
        y[0] = 0xec;
        assert!(canonical_point_encoding(&y));
        assert!(!canonical_point_encoding(&P));
        let mut max = [0xffu8; 32];
        assert!(!canonical_point_encoding(&max));
        max[31] = 0x7f;
        assert!(!canonical_point_encoding(&max));
        // What dalek decompresses to a point whose encoding differs is refused here.
        for _ in 0..2000 {
            let mut e = [0u8; 32];
            crate::random::fill(&mut e).unwrap();
            if let Some(p) = CompressedEdwardsY(e).decompress() {
                assert_eq!(canonical_point_encoding(&e), p.compress().to_bytes() == e);
            }
        }
    }

    #[test]
    fn weak_and_non_canonical_signing_keys_are_refused() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        for t in EIGHT_TORSION {
            assert!(PublicIdentity::from_parts(t.compress().to_bytes(), [9; 32]).is_err());
        }
        // y = 2^255 − 19 + 1 ≡ 1: a second spelling of the identity point.
        let mut y = [0xffu8; 32];
        y[0] = 0xee;
        y[31] = 0x7f;
        assert!(PublicIdentity::from_parts(y, [9; 32]).is_err());
        let good = SecretIdentity::generate().unwrap().public();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(good.signing_key().as_bytes());
        assert!(PublicIdentity::from_parts(bytes, [9; 32]).is_ok());
    }

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
