//! The Sigil wire contract (docs/protocol.md), shared by the server and every Rust client.
//!
//! It builds and checks RFC 9421 request signatures in Sigil's profile, seals and opens
//! request and response bodies in the `{"enc","ct"}` envelope, and defines the plain JSON of
//! the unauthenticated endpoints and of errors.
//!
//! It does not send or receive anything, and it does not decide policy: the server decides
//! what a verified request may do, and the transport is the caller's.

#![warn(missing_docs)]

pub mod body;
pub mod e2e;
mod error;
pub mod headers;
pub mod raft;
pub mod signature;
pub mod stream;
pub mod sys;

pub use error::ErrorBody;
