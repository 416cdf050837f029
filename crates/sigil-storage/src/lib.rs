//! Storage for Sigil: a `Backend` trait that moves opaque bytes, and its implementations.
//!
//! Backends only ever see ciphertext: the barrier in `sigil-core` encrypts every value before it
//! reaches a backend, with the storage key bound in. This crate does not encrypt, does not know
//! about engines or HTTP, and does not interpret keys beyond ordering them.
//!
//! Backends here: [`MemoryBackend`] (transient mode). The file (redb) and raft backends come
//! with the persistence milestone; each runs [`testing::run_conformance`].

#![warn(missing_docs)]

mod backend;
mod memory;
pub mod testing;

pub use backend::{Backend, Batch, StorageError};
pub use memory::MemoryBackend;
