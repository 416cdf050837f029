//! The Rust SDK for Sigil.
//!
//! A [`Client`] signs every request with the caller's key (RFC 9421, Sigil's profile), seals
//! request bodies to the server's key, opens sealed responses, and refuses to talk to a server
//! whose key does not match the pinned keyid. It speaks Vault's paths and JSON shapes.
//!
//! It does not retry (only a request that a pooled connection, closed by the server, never sent
//! goes out again on a new one), cache secrets, or hold any credential other than the caller's
//! key.

#![warn(missing_docs)]

mod client;
pub mod e2e;
mod error;
mod transport;
mod upload;

pub use client::{ApiResponse, Client, ClientConfig};
pub use error::ClientError;
