//! How long one Ed25519 verification of a signed request takes, through aws-lc (what the
//! server does) and through ed25519-dalek's `verify_strict` (the reference):
//! `cargo run --release -p sigil-crypto --example verify_speed`.

use std::time::Instant;

use sigil_crypto::SecretIdentity;

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
}

#[derive(Clone, Copy)]
enum PublicIdentityVerify {
    Aws,
    Dalek,
}
