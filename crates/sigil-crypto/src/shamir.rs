//! Shamir's secret sharing over GF(2⁸) (the AES field, x⁸ + x⁴ + x³ + x + 1), written to run in
//! constant time: no table lookups or branches indexed by secret values.
//!
//! A share is `x ‖ y₁ … yₙ`: one byte naming its evaluation point (1–255) and one byte per secret
//! byte. Any `threshold` distinct shares reconstruct the secret; fewer reveal nothing about it.

use zeroize::Zeroizing;

use crate::{CryptoError, random};

/// Multiplication in GF(2⁸), constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// Multiplicative inverse (a²⁵⁴), constant time; the inverse of 0 is 0 (never used: x ≠ 0).
fn inv(a: u8) -> u8 {
    // 254 = 0b1111_1110: square-and-multiply with a fixed sequence.
    let mut result = 1u8;
    let mut base = a;
    for bit in [0u8, 1, 1, 1, 1, 1, 1, 1] {
        let m = mul(result, base);
        let mask = 0u8.wrapping_sub(bit);
        result = (m & mask) | (result & !mask);
        base = mul(base, base);
    }
    result
}

/// Splits `secret` into `shares` shares, any `threshold` of which reconstruct it.
pub fn split(
    secret: &[u8],
    threshold: u8,
    shares: u8,
) -> Result<Vec<Zeroizing<Vec<u8>>>, CryptoError> {
    if threshold == 0 || shares < threshold || secret.is_empty() {
        return Err(CryptoError::Encoding(
            "need 1 <= threshold <= shares <= 255 and a non-empty secret",
        ));
    }
    // coefficients[i] holds the random coefficients c₁…c_{k-1} for secret byte i.
    let mut coefficients = Zeroizing::new(vec![0u8; secret.len() * (threshold as usize - 1)]);
    random::fill(&mut coefficients)?;
    let mut out = Vec::with_capacity(shares as usize);
    for x in 1..=shares {
        let mut share = Zeroizing::new(Vec::with_capacity(1 + secret.len()));
        share.push(x);
        for (i, &s) in secret.iter().enumerate() {
            let cs =
                &coefficients[i * (threshold as usize - 1)..(i + 1) * (threshold as usize - 1)];
            // Horner: ((c_{k-1}·x + c_{k-2})·x + … + c₁)·x + s
            let mut y = 0u8;
            for &c in cs.iter().rev() {
                y = mul(y, x) ^ c;
            }
            y = mul(y, x) ^ s;
            share.push(y);
        }
        out.push(share);
    }
    Ok(out)
}

/// Reconstructs a secret from shares made by [`split`]. Exactly the shares given are used, so
/// pass `threshold` of them; duplicates, x = 0 and mismatched lengths are refused. A wrong share
/// yields a wrong secret, not an error: check the result (e.g. by opening the keyring).
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let Some(first) = shares.first() else {
        return Err(CryptoError::Encoding("no shares"));
    };
    let len = first.len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(CryptoError::Encoding("shares differ in length"));
    }
    for (i, a) in shares.iter().enumerate() {
        if a[0] == 0 || shares[..i].iter().any(|b| b[0] == a[0]) {
            return Err(CryptoError::Encoding("duplicate or zero share index"));
        }
    }
    // Lagrange basis at 0: lᵢ = Π_{j≠i} xⱼ / (xⱼ ⊕ xᵢ). The x values are public.
    let basis: Vec<u8> = shares
        .iter()
        .enumerate()
        .map(|(i, si)| {
            shares
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .fold(1u8, |acc, (_, sj)| mul(acc, mul(sj[0], inv(sj[0] ^ si[0]))))
        })
        .collect();
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (share, l) in shares.iter().zip(&basis) {
        for (out, &y) in secret.iter_mut().zip(&share[1..]) {
            *out ^= mul(y, *l);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schoolbook reference multiplication (carry-less product reduced mod 0x11b).
    fn mul_ref(a: u8, b: u8) -> u8 {
        let mut p: u16 = 0;
        for i in 0..8 {
            if b >> i & 1 == 1 {
                p ^= (a as u16) << i;
            }
        }
        for i in (8..16).rev() {
            if p >> i & 1 == 1 {
                p ^= 0x11b << (i - 8);
            }
        }
        p as u8
    }

    #[test]
    fn field_arithmetic_matches_the_reference() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul_ref(a, b), "{a}·{b}");
            }
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            }
        }
        // FIPS 197 §4.2 example: {57}·{83} = {c1}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
    }

    #[test]
    fn known_answer() {
        // Secret 0x42 with polynomial 0x42 + 0x07·x (threshold 2): shares at x = 1, 2.
        let s1 = [1u8, 0x42 ^ mul_ref(0x07, 1)];
        let s2 = [2u8, 0x42 ^ mul_ref(0x07, 2)];
        assert_eq!(&combine(&[&s1, &s2]).unwrap()[..], &[0x42]);
        assert_eq!(&combine(&[&s2, &s1]).unwrap()[..], &[0x42]);
    }

    #[test]
    fn any_threshold_subset_reconstructs_and_fewer_do_not() {
        let secret = random::bytes::<32>().unwrap();
        for (k, n) in [(1u8, 1u8), (1, 3), (2, 3), (3, 5), (5, 5)] {
            let shares = split(&secret, k, n).unwrap();
            assert_eq!(shares.len(), n as usize);
            // Every k-subset (by bitmask) reconstructs.
            for mask in 0u32..(1 << n) {
                let subset: Vec<&[u8]> = (0..n as usize)
                    .filter(|i| mask >> i & 1 == 1)
                    .map(|i| &shares[i][..])
                    .collect();
                if subset.len() == k as usize {
                    assert_eq!(
                        &combine(&subset).unwrap()[..],
                        &secret[..],
                        "k={k} mask={mask:b}"
                    );
                } else if subset.len() == k as usize - 1 && k > 1 {
                    assert_ne!(&combine(&subset).unwrap()[..], &secret[..]);
                }
            }
        }
    }

    #[test]
    fn fail_bad_parameters_and_shares() {
        assert!(split(b"x", 0, 3).is_err());
        assert!(split(b"x", 4, 3).is_err());
        assert!(split(b"", 1, 1).is_err());
        let shares = split(b"secret", 2, 3).unwrap();
        assert!(combine(&[]).is_err());
        assert!(combine(&[&shares[0], &shares[0]]).is_err());
        assert!(combine(&[&shares[0], &shares[1][..3]]).is_err());
        let mut zero = shares[0].to_vec();
        zero[0] = 0;
        assert!(combine(&[&zero, &shares[1]]).is_err());
        // A corrupted share gives a wrong secret (detected by the caller).
        let mut bad = shares[0].to_vec();
        bad[3] ^= 1;
        assert_ne!(&combine(&[&bad, &shares[1]]).unwrap()[..], b"secret");
    }
}
