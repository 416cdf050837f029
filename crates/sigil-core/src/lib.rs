//! Sigil's core: everything between an authenticated caller and the storage backend.
//!
//! It holds the barrier (every stored value encrypted, the storage key bound in), the identity
//! store, ACL policies, the secret engines and the logical router that checks policy and
//! dispatches a [`Request`] to the engine mounted at its path.
//!
//! It does not speak HTTP, TLS or the wire protocol, and it never sees a request that has not
//! been authenticated: the server crate verifies signatures and opens sealed bodies first, then
//! hands the core a [`Caller`] and a [`Request`].

#![warn(missing_docs)]

pub mod audit;
mod cert_auth;
mod core;
mod grant;
mod group;
mod identity;
mod lease;
mod lease_api;
mod mounts;
mod named;
mod password_policy;
mod plan;
pub mod policy;
mod policy_store;
mod replay_marks;
mod route;
mod seal;
pub mod snapshot;
mod vault_hcl;
mod wrap;

// The engine contract's modules, under the names the core's code has always used.
pub(crate) use sigil_engine::{barrier, duration, error, fields, path, replay, request, timefmt};

pub use barrier::{Barrier, View};
pub use cert_auth::{CertRole, CertTrust, Mapping, RoleTrust};
pub use core::{Core, CoreConfig};
pub use error::{CoreError, Severity};
pub use group::Group;
pub use identity::{Caller, Identity};
pub use path::canonical as canonical_path;
pub use plan::Plan;
pub use replay::{ReplayMark, carried_by_writes_of};
pub use request::{LeaseInfo, Operation, Request, Response};
pub use route::{ENDPOINTS, Endpoint};
pub use seal::{AdminShare, InitResponse, Node, SealConfig, SealStatus};
pub use sigil_engine::PublicBody;
pub use sigil_proto::sys::RekeyStatus;
pub use timefmt::now_rfc3339;
