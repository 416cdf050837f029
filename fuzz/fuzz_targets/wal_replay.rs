//! The file backend's write-ahead log (`sigil-storage` `wal.rs`), through the one public way
//! in: `FileBackend::open` of a fresh database with fuzzed logs beside it, which reads,
//! checks and replays them into redb; then every replayed key is listed and read back.
//! (The decoder, `wal::read`, is private; a direct target would be much faster.)
//!
//! Input: see `sigil_fuzz::wal_files` (raw log bytes, or chunks framed as records with correct
//! digests so that the payload decoder is reached). The files live in a directory of this
//! process under /dev/shm (or the temporary directory), emptied on every run.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigil_storage::{Backend as _, FileBackend};

fn dir() -> &'static PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    CELL.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        base.join(format!("sigil-fuzz-wal-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let files = sigil_fuzz::wal_files(data);
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the scratch directory");
    let db = dir.join("db");
    let log = |epoch: u64| dir.join(format!("db.wal.{epoch}"));
    if let Some(older) = &files.older {
        std::fs::write(log(sigil_fuzz::WAL_EPOCH - 1), older).expect("write the older log");
    }
    std::fs::write(log(sigil_fuzz::WAL_EPOCH), &files.newest).expect("write the log");
    if let Ok(backend) = FileBackend::open(&db) {
        let keys = backend.list("").expect("list after replay");
        for key in keys.iter().take(64) {
            let _ = backend.get(key).expect("read a replayed key");
        }
        backend
            .put("after-replay", b"x")
            .expect("write after replay");
    }
    let _ = std::fs::remove_dir_all(dir);
});
