//! The contract between Sigil's core and its secrets engines.
//!
//! An engine sees an authenticated logical [`Request`] (operation, path below its mount, JSON
//! data) and answers a [`Response`] or a [`CoreError`]. It keeps its data in a [`View`]: a
//! prefix of the [`Barrier`], where every value is encrypted under the keyring before it
//! reaches storage, and every batch it commits carries the request's replay mark. Field
//! parsing, durations, paths and encodings are shared here so that every engine reads input
//! the same way.
//!
//! This crate knows no engine, no HTTP and no seal: the core (`sigil-core`) routes to engines
//! and holds the node; engines depend on this crate only.

#![warn(missing_docs)]

pub mod barrier;
pub mod caller;
pub mod duration;
pub mod encoding;
pub mod engine;
/// Why a request failed.
pub mod error;
pub mod fields;
pub mod id;
pub mod key_usage;
pub mod lease;
pub mod path;
pub mod replay;
/// The logical request and response.
pub mod request;
pub mod route;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timefmt;

pub use barrier::{Barrier, View, ViewBatch};
pub use caller::{Caller, Identity};
pub use engine::{Context, Engine, EngineKind, EngineKinds, MountPoint, PublicBody};
pub use error::{CoreError, Severity};
pub use lease::{LeaseLimits, Leases, NewLease, Passwords};
pub use replay::{ReplayMark, carried_by_writes_of};
pub use request::{LeaseInfo, Operation, Request, Response};
pub use route::{Matched, Route, Writes};
pub use timefmt::now_rfc3339;
