//! Passphrase-protected key files (`sigil-crypto` `age::passphrase`): age's armor and the scrypt
//! recipient, as `sigil` reads a key file before it asks for nothing else.
//!
//! Input: the file's bytes. The passphrase is fixed (`fuzz`) and the work factor capped at 4,
//! so a fuzzed file never costs more than a tiny scrypt; the seeds are real files at 2^2.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_crypto::age::passphrase;

/// The largest work factor the target accepts (the CLI accepts 22).
const MAX: u8 = 4;

fuzz_target!(|data: &[u8]| {
    let binary = if data.trim_ascii_start().starts_with(b"-----") {
        match passphrase::dearmor(data) {
            Ok(b) => {
                // What dearmors, armored again, dearmors to the same bytes.
                let again = passphrase::dearmor(passphrase::armor(&b).as_bytes())
                    .expect("Sigil's own armor is read back");
                assert_eq!(again, b);
                b
            }
            Err(_) => return,
        }
    } else {
        data.to_vec()
    };
    if let Ok(plain) = passphrase::decrypt(b"fuzz", &binary, MAX) {
        assert!(passphrase::is_age_file(&binary));
        // The wrong passphrase never opens what the right one does.
        assert!(passphrase::decrypt(b"fuzz!", &binary, MAX).is_err());
        drop(plain);
    }
});
