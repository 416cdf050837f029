//! age v1 envelopes of end-to-end secrets and wraps (`sigil-crypto` `age.rs`): the server's
//! structural check (`age::recipient_count`) and decryption with the fixed client identity
//! (`age::decrypt`). What decrypts must also pass the server's check.
//!
//! Input: the envelope's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_crypto::age;

fuzz_target!(|data: &[u8]| {
    let count = age::recipient_count(data);
    if let Ok(n) = count {
        assert!((1..=age::MAX_RECIPIENTS).contains(&n));
    }
    if age::decrypt(sigil_fuzz::client().encryption_key(), data).is_ok() {
        assert!(count.is_ok(), "decrypts but the server would refuse it");
    }
});
