//! Ed25519 signatures verified together: one multiscalar multiplication for a batch costs
//! about half of what verifying each signature does once there are four or more
//! (docs/performance.md). The server batches the signatures of reads that arrive together.
//!
//! What a batch accepts. Each signature first passes checks that refuse what `verify_strict`
//! refuses for the signature's form alone: 64 bytes, an `R` that is a canonical encoding and
//! not a small-order point, with either sign bit (dalek's batch checks `S < ℓ`; the key was
//! checked when it was built).
//! The batch then checks, with ed25519-dalek's `verify_batch`, one random linear combination
//! of the signatures' equations (128-bit coefficients derived from every signature, key and
//! message of the batch). If it holds, every signature in it satisfies its own equation up to a
//! small-order point: such a signature can only have been made with the signing key, as with
//! single verification; only a key holder who crafts signatures that differ by a small-order
//! point could see one accepted in a batch and refused alone. If the batch does not hold, each
//! signature is verified alone, so a bad signature costs its batch one failed check more and
//! never makes a good one fail.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{CryptoError, PublicIdentity};

/// A signature ready to be verified, alone or in a batch: its key, its message and its bytes,
/// having passed the checks that come before the equation.
pub struct Signed {
    key: PublicIdentity,
    message: Vec<u8>,
    bytes: [u8; 64],
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("keyid", &self.key.keyid())
            .field("message_len", &self.message.len())
            .finish_non_exhaustive()
    }
}

impl Signed {
    /// Checks what can be checked of `signature` without its equation: its length and its `R`
    /// (canonical, not of small order). Refuses what [`PublicIdentity::verify`] would refuse
    /// for those reasons.
    pub fn new(
        key: &PublicIdentity,
        message: Vec<u8>,
        signature: &[u8],
    ) -> Result<Self, CryptoError> {
        let bytes: [u8; 64] = signature
            .try_into()
            .map_err(|_| CryptoError::BadSignature)?;
        if !crate::identity::acceptable_r(&bytes) {
            return Err(CryptoError::BadSignature);
        }
        Ok(Signed {
            key: key.clone(),
            message,
            bytes,
        })
    }

    /// Verifies this signature alone ([`PublicIdentity::verify`]).
    pub fn verify(&self) -> Result<(), CryptoError> {
        self.key.verify(&self.message, &self.bytes)
    }
}

/// Verifies `batch`: for each signature, whether it verifies. One check for all when they
/// all do; each one alone otherwise (see the module's documentation).
pub fn verify_batch(batch: &[Signed]) -> Vec<bool> {
    if batch.len() > 1 && batch_holds(batch) {
        return vec![true; batch.len()];
    }
    batch.iter().map(|s| s.verify().is_ok()).collect()
}

/// Whether the random linear combination of the batch's equations holds.
fn batch_holds(batch: &[Signed]) -> bool {
    let messages: Vec<&[u8]> = batch.iter().map(|s| s.message.as_slice()).collect();
    let signatures: Vec<Signature> = batch
        .iter()
        .map(|s| Signature::from_bytes(&s.bytes))
        .collect();
    let keys: Vec<VerifyingKey> = batch.iter().map(|s| *s.key.signing_key()).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretIdentity;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;

    fn signed(id: &SecretIdentity, message: &[u8]) -> Signed {
        Signed::new(&id.public(), message.to_vec(), &id.sign(message)).unwrap()
    }

    /// Good signatures of several keys pass as one batch, and the batch check itself (not the
    /// fallback) holds for them and fails when any one of them is wrong.
    #[test]
    fn a_batch_of_good_signatures_holds_and_one_bad_one_breaks_it() {
        let ids: Vec<SecretIdentity> = (0..6)
            .map(|_| SecretIdentity::generate().unwrap())
            .collect();
        let batch = || -> Vec<Signed> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| signed(id, format!("GET /v1/secret/data/{i}").as_bytes()))
                .collect()
        };
        assert!(batch_holds(&batch()));
        assert_eq!(verify_batch(&batch()), vec![true; 6]);
        for wrong in 0..ids.len() {
            let mut batch = batch();
            batch[wrong].message.push(b'!');
            assert!(!batch_holds(&batch), "{wrong}");
            let expected: Vec<bool> = (0..batch.len()).map(|i| i != wrong).collect();
            assert_eq!(verify_batch(&batch), expected);
        }
        // The same key twice, and one signature twice.
        let id = &ids[0];
        let twice = [signed(id, b"a"), signed(id, b"b"), signed(id, b"a")];
        assert!(batch_holds(&twice));
        assert!(verify_batch(&[]).is_empty());
    }

    /// In any batch, each signature gets exactly the answer `verify_strict` gives it alone:
    /// good ones, bit flips, `S + ℓ`, `R` moved by a torsion point, small-order and
    /// non-canonical `R` (refused before any batch), random bytes.
    #[test]
    fn a_batch_answers_each_signature_as_verify_strict_does() {
        let id = SecretIdentity::generate().unwrap();
        let public = id.public();
        let msg = b"GET /v1/secret/data/app".to_vec();
        let sig = id.sign(&msg);
        let mut candidates: Vec<(Vec<u8>, Vec<u8>)> = vec![(msg.clone(), sig.to_vec())];
        for bit in (0..512).step_by(7) {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            candidates.push((msg.clone(), bad.to_vec()));
        }
        candidates.push((b"another".to_vec(), sig.to_vec()));
        let r = CompressedEdwardsY(sig[..32].try_into().unwrap())
            .decompress()
            .unwrap();
        for t in EIGHT_TORSION.iter().skip(1) {
            candidates.push((
                msg.clone(),
                [&(r + t).compress().to_bytes()[..], &sig[32..]].concat(),
            ));
        }
        for t in EIGHT_TORSION {
            let mut r = t.compress().to_bytes();
            candidates.push((msg.clone(), [&r[..], &sig[32..]].concat()));
            r[31] ^= 0x80;
            candidates.push((msg.clone(), [&r[..], &sig[32..]].concat()));
        }
        // Every y from p to 2^255 − 1, with either sign.
        for low in 0xedu8..=0xff {
            for sign in [0u8, 0x80] {
                let mut r = [0xffu8; 32];
                r[0] = low;
                r[31] = 0x7f | sign;
                candidates.push((msg.clone(), [&r[..], &sig[32..]].concat()));
            }
        }
        for _ in 0..40 {
            let mut random = [0u8; 64];
            crate::random::fill(&mut random).unwrap();
            candidates.push((msg.clone(), random.to_vec()));
        }
        for (m, s) in &candidates {
            let good = [signed(&id, b"one"), signed(&id, b"two")];
            let strict = public.verify_with_dalek(m, s).is_ok();
            match Signed::new(&public, m.clone(), s) {
                Err(_) => assert!(!strict, "refused early but verify_strict accepts {s:02x?}"),
                Ok(one) => {
                    let batch: Vec<Signed> = good.into_iter().chain([one]).collect();
                    assert_eq!(verify_batch(&batch), vec![true, true, strict], "{s:02x?}");
                }
            }
        }
    }

    #[test]
    fn debug_output_holds_no_message() {
        let id = SecretIdentity::generate().unwrap();
        let s = signed(&id, b"secret-message");
        assert!(!format!("{s:?}").contains("secret"));
    }
}
