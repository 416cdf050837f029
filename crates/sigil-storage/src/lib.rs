//! Storage for Sigil: a `Backend` trait that moves opaque bytes, and its implementations.
//!
//! Backends only ever see ciphertext: the barrier in `sigil-core` encrypts every value before it
//! reaches a backend, with the storage key bound in. This crate does not encrypt, does not know
//! about engines or HTTP, and does not interpret keys beyond ordering them.
//!
//! Backends here: [`MemoryBackend`] (transient mode) and [`FileBackend`] (one redb file behind
//! a synced write-ahead log, group-committed). Each runs [`testing::run_conformance`].

#![warn(missing_docs)]

mod backend;
mod cache;
pub mod children;
mod file;
mod memory;
pub mod testing;
mod wal;

pub use backend::{Backend, Batch, DELETE_CHUNK, StorageError, Visit, delete_all, delete_chunks};
pub use file::{DEFAULT_PAGE_CACHE_BYTES, FileBackend};
pub use memory::MemoryBackend;

/// For the fuzz targets only, compiled with `--cfg fuzzing` (which cargo-fuzz sets) and never
/// into Sigil: the write-ahead log's decoder, reached directly instead of through a whole
/// `FileBackend::open`.
#[cfg(fuzzing)]
pub mod fuzzing {
    /// Decodes `bytes` as the log of `epoch`; returns the number of whole records read.
    pub fn decode_wal(bytes: &[u8], epoch: u64) -> usize {
        crate::wal::read(bytes, epoch).0.len()
    }
}
