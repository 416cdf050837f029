//! The engine contract: what a secrets engine declares (its kind, its routes) and what the
//! core asks of a mounted one. The core routes a request to the mount whose path prefixes it,
//! checks policy, and hands the engine the rest of the path; the engine's route table is where
//! its paths are written down (documentation, the OpenAPI document, metrics labels).

use std::sync::Arc;

use crate::barrier::View;
use crate::caller::Caller;
use crate::lease::{LeaseLimits, Leases, Passwords};
use crate::{CoreError, Operation, Request, Response};

/// Which requests to a route may write to storage (and so wait on an fsync): the server runs
/// the others on its async workers instead of a blocking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Creates, updates, patches and deletes; reads and lists do not.
    Changes,
    /// Only a create (what the route names is made: transit's encrypt makes its key); an
    /// update only reads (a cryptographic operation on an existing key).
    OnCreate,
    /// Reads too (PKI's CRL reads re-sign a CRL that is due).
    AlsoReads,
    /// Everything, lists included (the database engine waits on a database for all of it).
    Always,
}

impl Writes {
    /// Whether `op` may write.
    pub fn may_write(self, op: Operation) -> bool {
        match (self, op) {
            (Writes::Always, _) => true,
            (Writes::AlsoReads, Operation::List) => false,
            (Writes::AlsoReads, _) => true,
            (Writes::OnCreate, op) => op == Operation::Create,
            (Writes::Changes, op) => !matches!(op, Operation::Read | Operation::List),
        }
    }
}

/// One endpoint of an engine, below its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The path template with the mount: `{mount}/keys/{name}/rotate`.
    pub path: &'static str,
    /// HTTP methods (`LIST` for Vault's LIST).
    pub methods: &'static [&'static str],
    /// What it does, for people (the OpenAPI document's summary).
    pub summary: &'static str,
    /// Read without authentication, answered raw (PKI's CA certificates and CRLs, which
    /// relying parties fetch without a key); the engine's [`Engine::is_public`] says which
    /// paths these are.
    pub public: bool,
    /// Which requests to it may write.
    pub writes: Writes,
}

impl Route {
    /// An authenticated route at `path` for `methods`, described by `summary`.
    pub const fn new(
        path: &'static str,
        methods: &'static [&'static str],
        summary: &'static str,
    ) -> Self {
        Route {
            path,
            methods,
            summary,
            public: false,
            writes: Writes::Changes,
        }
    }

    /// This route, with `writes` saying which requests to it may write.
    pub const fn writing(self, writes: Writes) -> Self {
        Route { writes, ..self }
    }

    /// A route anyone may `GET` without a key, answered raw.
    pub const fn public(path: &'static str, summary: &'static str) -> Self {
        Route {
            path,
            methods: &["GET"],
            summary,
            public: true,
            writes: Writes::Changes,
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

/// What an engine is told besides the request: who asks, and the mount's lease limits.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The authenticated caller (policy already checked).
    pub caller: &'a Caller,
    /// The mount's lease TTLs.
    pub limits: LeaseLimits,
}

/// Where an engine is mounted and what the core lends it.
#[derive(Clone)]
pub struct MountPoint<'a> {
    /// Its data: `logical/<uuid>/` under the barrier.
    pub view: View,
    /// The mount path, ending in `/` (`secret/`).
    pub path: &'a str,
    /// The mount's uuid: stable while it is mounted, unique among mounts.
    pub uuid: &'a str,
    /// The lease store, for engines that issue leases.
    pub leases: &'a Arc<dyn Leases>,
    /// Password policies.
    pub passwords: &'a Arc<dyn Passwords>,
}

impl std::fmt::Debug for MountPoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountPoint")
            .field("path", &self.path)
            .field("uuid", &self.uuid)
            .finish_non_exhaustive()
    }
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

    /// Every route this mount serves: its kind's [`EngineKind::routes`].
    fn routes(&self) -> &'static [Route];

    /// Whether `op` on `rest` may write to storage (and so wait on an fsync): such requests
    /// run on a blocking thread. What the route `rest` falls under says ([`Route::writes`]).
    fn may_write(&self, op: Operation, rest: &str) -> bool {
        let template = self.route(rest);
        let writes = self
            .routes()
            .iter()
            .find(|r| r.path == template)
            .map_or(Writes::Changes, |r| r.writes);
        writes.may_write(op)
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

    /// Periodic work (rotating keys or passwords that are due), run every second by the
    /// server; returns how many things it did.
    fn periodic(&self, now: time::OffsetDateTime) -> Result<usize, CoreError> {
        let _ = now;
        Ok(0)
    }

    /// Revokes the secret of a lease this engine issued (`secret` as it gave it in
    /// [`NewLease::secret`](crate::lease::NewLease::secret)). The core forgets the lease once
    /// this succeeds.
    fn revoke(&self, secret: &serde_json::Value) -> Result<(), CoreError> {
        let _ = secret;
        Err(no_leases())
    }

    /// Extends the secret of a lease this engine issued to `expire` (unix seconds).
    fn renew(&self, secret: &serde_json::Value, expire: i64) -> Result<(), CoreError> {
        let _ = (secret, expire);
        Err(no_leases())
    }

    /// The mount is being disabled (its leases are already revoked): release what it holds
    /// outside storage (connections). Its data is removed by the core.
    fn unmount(&self) {}
}

fn no_leases() -> CoreError {
    CoreError::Unavailable("the mount at this lease's path issues no leases".into())
}

/// A kind of engine that can be mounted (`sigil secrets enable transit`).
pub trait EngineKind: Send + Sync {
    /// Its type name in `sys/mounts` (`transit`).
    fn name(&self) -> &'static str;

    /// Other names it can be enabled by (`kv-v2` for `kv`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// How it is listed in an error naming what can be mounted (`kv (version 2)`).
    fn offered_as(&self) -> &'static str {
        self.name()
    }

    /// Every route its mounts serve.
    fn routes(&self) -> &'static [Route];

    /// The `options` `sys/mounts` shows for its mounts (`{"version": "2"}` for KV).
    fn options(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Checks the `options` given when it is enabled or tuned. By default only Vault's KV
    /// `version` option is known, and this kind has no versions.
    fn check_options(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), CoreError> {
        match options.get("version") {
            Some(_) => Err(CoreError::bad(
                "only KV version 2 is supported (options.version = \"2\")",
            )),
            None => Ok(()),
        }
    }

    /// A mounted instance at `at`.
    fn mount(&self, at: MountPoint<'_>) -> Box<dyn Engine>;
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

    /// The kind named `name` (or one of its aliases).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn EngineKind>> {
        self.0
            .iter()
            .find(|k| k.name() == name || k.aliases().contains(&name))
    }

    /// Every kind.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn EngineKind>> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_operations_may_write() {
        use Operation::*;
        let all = [Read, List, Create, Update, Patch, Delete];
        let writing = |w: Writes| -> Vec<Operation> {
            all.into_iter().filter(|op| w.may_write(*op)).collect()
        };
        assert_eq!(writing(Writes::Changes), [Create, Update, Patch, Delete]);
        assert_eq!(writing(Writes::OnCreate), [Create]);
        assert_eq!(
            writing(Writes::AlsoReads),
            [Read, Create, Update, Patch, Delete]
        );
        assert_eq!(writing(Writes::Always), all);
    }
}
