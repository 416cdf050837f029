//! Backup files as `sigil operator restore` reads them (`sigil_core::snapshot::decode`).
//!
//! Input: a flags byte, then bytes. Bit 0 clear: the bytes are the whole file. Bit 0 set
//! (template mode): the bytes are the entries, and a header that checks out (length, SHA-256,
//! signed by the fixed server key) announcing `flags >> 1` entries is made for them, so the
//! fuzzer's edits reach the entry reader behind the checksum and the signature.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Digest as _;
use sigil_core::snapshot::{Header, decode};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let built;
    let bytes = if flags & 1 == 1 {
        let mut header = Header {
            created: "2027-01-15T08:00:00Z".into(),
            storage: "file".into(),
            entries: u64::from(flags >> 1),
            body_bytes: rest.len() as u64,
            body_sha256: sigil_crypto::hex(&sha2::Sha256::digest(rest)),
            keyring_term: 1,
            server_key: String::new(),
            signature: String::new(),
        };
        header.sign(sigil_fuzz::server());
        built = header.file(rest);
        built.as_slice()
    } else {
        rest
    };
    let pinned = sigil_fuzz::publics()[0].keyid().to_string();
    if let Ok(s) = decode(bytes, Some(&pinned)) {
        assert_eq!(s.entries.len() as u64, s.header.entries);
        assert!(s.entries.windows(2).all(|w| w[0].0 < w[1].0));
        let total: usize = s.entries.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
        assert_eq!(total as u64, s.header.body_bytes);
    }
});
