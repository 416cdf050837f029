//! Printable keys (`sigil-crypto` `identity.rs`, `keyid.rs`, `age.rs`): key files
//! (`SecretIdentity::from_key_file`), `sigil1…` public identities (`PublicIdentity::parse`),
//! keyids (`KeyId::parse`) and `age1…` recipients (`age::parse_recipient`). What parses must
//! print and parse back to the same key, and a printable form is accepted only in the one
//! spelling Sigil prints (any case for `sigil1…`, as BIP 173 allows).
//!
//! Input: UTF-8 text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_crypto::{KeyId, PublicIdentity, SecretIdentity, age};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SecretIdentity::from_key_file(text) {
        let again = SecretIdentity::from_key_file(&id.to_key_file("fuzz"))
            .expect("a key file this code wrote parses");
        assert_eq!(again.public(), id.public());
    }
    if let Ok(public) = PublicIdentity::parse(text) {
        let printed = public.to_string();
        assert_eq!(PublicIdentity::parse(&printed).as_ref(), Ok(&public));
        assert_eq!(
            printed,
            text.trim().to_lowercase(),
            "a non-canonical sigil1 string is accepted"
        );
    }
    if let Some(keyid) = KeyId::parse(text) {
        assert_eq!(keyid.as_str(), text);
    }
    if let Ok(key) = age::parse_recipient(text) {
        assert_eq!(
            age::recipient_string(&key),
            text,
            "a non-canonical age1 recipient is accepted"
        );
    }
});
