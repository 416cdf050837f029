//! The file backend's write-ahead-log decoder (`sigil-storage` `wal.rs`), directly: records,
//! their lengths and digests, and the writes inside them. Whatever the bytes, it reads the
//! whole records it can and stops, never panics. Records with correct framing come from
//! `sigil_fuzz::wal_files`, so the payload decoder is reached past the digests.
//!
//! Input: see `sigil_fuzz::wal_files`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files = sigil_fuzz::wal_files(data);
    let _ = sigil_storage::fuzzing::decode_wal(&files.newest, sigil_fuzz::WAL_EPOCH);
    if let Some(older) = &files.older {
        let _ = sigil_storage::fuzzing::decode_wal(older, sigil_fuzz::WAL_EPOCH - 1);
    }
});
