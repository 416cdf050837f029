//! The engine contract: what a secrets engine declares (its kind, its routes) and what the
//! core asks of a mounted one. The core routes a request to the mount whose path prefixes it,
//! checks policy, and hands the engine the rest of the path; the engine's route table is where
//! its paths are written down (documentation, the OpenAPI document, metrics labels).

use std::sync::Arc;

use crate::barrier::View;
use crate::caller::Caller;
use crate::{CoreError, Operation, Request, Response};

/// One endpoint of an engine, below its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The path template with the mount: `{mount}/keys/{name}/rotate`.
    pub path: &'static str,
    /// HTTP methods (`LIST` for Vault's LIST).
    pub methods: &'static [&'static str],
    /// What it does, for people (the OpenAPI document's summary).
    pub summary: &'static str,
}

impl Route {
    /// A route at `path` for `methods`, described by `summary`.
    pub const fn new(
        path: &'static str,
        methods: &'static [&'static str],
        summary: &'static str,
    ) -> Self {
        Route {
            path,
            methods,
            summary,
        }
    }
}

/// What an unauthenticated read serves (PKI's raw CA certificates and CRLs): public data that
/// relying parties fetch without a key.
#[derive(Debug)]
pub struct PublicBody {
    /// `application/pkix-cert`, `application/pkix-crl` or a PEM type.
    pub content_type: &'static str,
    /// The DER or PEM bytes.
    pub body: Vec<u8>,
}

/// A mount's lease TTLs (`sys/mounts/<path>/tune`), 0 when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseLimits {
    /// Default TTL of leases issued below the mount, seconds.
    pub default_ttl: u64,
    /// Their maximum TTL, seconds.
    pub max_ttl: u64,
}

/// What an engine is told besides the request: who asks, and the mount's lease limits.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The authenticated caller (policy already checked).
    pub caller: &'a Caller,
    /// The mount's lease TTLs.
    pub limits: LeaseLimits,
}

/// A mounted engine.
pub trait Engine: Send + Sync {
    /// Answers `req`; `rest` is its path below the mount (canonical: no leading `/`, a
    /// trailing `/` only for LIST).
    fn handle(&self, req: &Request, rest: &str, cx: &Context<'_>) -> Result<Response, CoreError>;

    /// Whether something exists at `rest` (a write to an existing path needs `update`, to a
    /// new one `create`).
    fn exists(&self, rest: &str) -> Result<bool, CoreError>;

    /// The route template (`{mount}/…`, one of [`EngineKind::routes`]) that `rest` falls
    /// under: the metrics label and the documentation of a request.
    fn route(&self, rest: &str) -> &'static str;

    /// Whether `op` on `rest` may write to storage (and so wait on an fsync): such requests
    /// run on a blocking thread. By default everything but reads and lists.
    fn may_write(&self, op: Operation, rest: &str) -> bool {
        let _ = rest;
        !matches!(op, Operation::Read | Operation::List)
    }

    /// Whether `rest` is read without authentication (PKI's raw CA and CRL endpoints).
    /// Touches no storage: the server asks before it authenticates anything.
    fn is_public(&self, rest: &str) -> bool {
        let _ = rest;
        false
    }

    /// The answer to an unauthenticated read of `rest` (`None` when it is not one).
    fn public_read(&self, rest: &str) -> Option<Result<PublicBody, CoreError>> {
        let _ = rest;
        None
    }

    /// Periodic work (rotating keys that are due), run every few seconds by the server;
    /// returns how many things it did.
    fn periodic(&self, now: time::OffsetDateTime) -> Result<usize, CoreError> {
        let _ = now;
        Ok(0)
    }
}

/// A kind of engine that can be mounted (`sigil secrets enable transit`).
pub trait EngineKind: Send + Sync {
    /// Its type name in `sys/mounts` (`transit`).
    fn name(&self) -> &'static str;

    /// Every route its mounts serve.
    fn routes(&self) -> &'static [Route];

    /// A mounted instance keeping its data in `view`.
    fn mount(&self, view: View) -> Box<dyn Engine>;
}

/// The engine kinds a server offers, by name.
#[derive(Clone, Default)]
pub struct EngineKinds(Vec<Arc<dyn EngineKind>>);

impl std::fmt::Debug for EngineKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| k.name()))
            .finish()
    }
}

impl EngineKinds {
    /// The kinds `kinds`.
    pub fn new(kinds: Vec<Arc<dyn EngineKind>>) -> Self {
        EngineKinds(kinds)
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn EngineKind>> {
        self.0.iter().find(|k| k.name() == name)
    }

    /// Every kind.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn EngineKind>> {
        self.0.iter()
    }
}
