//! How long one Ed25519 verification of a signed request takes, through aws-lc (what the
//! server does for a write) and through ed25519-dalek's `verify_strict` (the reference), and
//! per signature in batches of 2 to 32 signatures of different keys (what the server does for
//! reads under load): `cargo run --release -p sigil-crypto --example verify_speed`.

use std::time::Instant;

use sigil_crypto::{SecretIdentity, Signed, verify_batch};

fn main() {
    let id = SecretIdentity::generate().expect("an identity");
    let public = id.public();
    // About the size of a signed request's signature base.
    let message = vec![b'x'; 320];
    let signature = id.sign(&message);
    let rounds = 20_000;
    for (name, verify) in [
        ("aws-lc", PublicIdentityVerify::Aws),
        ("dalek verify_strict", PublicIdentityVerify::Dalek),
    ] {
        let started = Instant::now();
        for _ in 0..rounds {
            let ok = match verify {
                PublicIdentityVerify::Aws => public.verify(&message, &signature),
                PublicIdentityVerify::Dalek => public.verify_with_dalek(&message, &signature),
            };
            assert!(ok.is_ok());
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!("{name}: {per:.1} µs per verification");
    }
    let signers: Vec<SecretIdentity> = (0..32)
        .map(|_| SecretIdentity::generate().expect("an identity"))
        .collect();
    for size in [2usize, 4, 8, 16, 32] {
        let batch: Vec<Signed> = signers[..size]
            .iter()
            .map(|id| {
                Signed::new(&id.public(), message.clone(), &id.sign(&message)).expect("genuine")
            })
            .collect();
        let batches = rounds / u32::try_from(size).expect("small");
        let started = Instant::now();
        for _ in 0..batches {
            assert!(verify_batch(&batch).iter().all(|ok| *ok));
        }
        let per = started.elapsed().as_secs_f64() * 1e6
            / f64::from(batches * u32::try_from(size).expect("small"));
        println!("batch of {size}: {per:.1} µs per signature");
    }
}

#[derive(Clone, Copy)]
enum PublicIdentityVerify {
    Aws,
    Dalek,
}
