//! Batched Ed25519 verification (`sigil_crypto::Signed`, `verify_batch`), as the server uses it
//! for reads: each signature gets, in a batch with good ones, exactly the answer
//! `verify_strict` gives it alone (and aws-lc's single check agrees with both).
//!
//! Input: a mode byte, then bytes. Mode 0: a 64-byte signature, then the message. Mode 1: a
//! 64-byte mask XORed into the fixed client's genuine signature of the message that follows.
//! Mode 2: a byte choosing a small-order point added to the genuine signature's `R`, then the
//! message. Mode 3: 32 bytes replacing the genuine signature's `S`, then the message.

#![no_main]

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use libfuzzer_sys::fuzz_target;
use sigil_crypto::{Signed, verify_batch};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let client = sigil_fuzz::client();
    let (signature, message) = match mode % 4 {
        0 if rest.len() >= 64 => (rest[..64].to_vec(), &rest[64..]),
        1 if rest.len() >= 64 => {
            let message = &rest[64..];
            let mut sig = client.sign(message);
            sig.iter_mut().zip(&rest[..64]).for_each(|(s, m)| *s ^= m);
            (sig.to_vec(), message)
        }
        2 if !rest.is_empty() => {
            let message = &rest[1..];
            let mut sig = client.sign(message);
            let r = CompressedEdwardsY(sig[..32].try_into().expect("32 bytes"))
                .decompress()
                .expect("a genuine R is a point");
            let moved = r + EIGHT_TORSION[usize::from(rest[0] % 8)];
            sig[..32].copy_from_slice(&moved.compress().to_bytes());
            (sig.to_vec(), message)
        }
        3 if rest.len() >= 32 => {
            let message = &rest[32..];
            let mut sig = client.sign(message);
            sig[32..].copy_from_slice(&rest[..32]);
            (sig.to_vec(), message)
        }
        _ => return,
    };
    let public = &sigil_fuzz::publics()[1];
    let strict = public.verify_with_dalek(message, &signature).is_ok();
    assert_eq!(public.verify(message, &signature).is_ok(), strict, "aws-lc and dalek disagree");
    let good = |m: &[u8]| Signed::new(public, m.to_vec(), &client.sign(m)).expect("genuine");
    match Signed::new(public, message.to_vec(), &signature) {
        Err(_) => assert!(!strict, "refused before the equation, accepted by verify_strict"),
        Ok(candidate) => {
            let batch = [good(b"before"), candidate, good(b"after")];
            assert_eq!(verify_batch(&batch), [true, strict, true]);
        }
    }
});
