//! The engine contract: what a secrets engine declares (its kind, its routes) and what the
//! core asks of a mounted one. The core routes a request to the mount whose path prefixes it,
//! matches the rest against the engine's route table ([`crate::route`]), checks policy, and
//! hands the engine the route that matched with its parameters.

use std::sync::Arc;

use crate::barrier::View;
use crate::caller::Caller;
use crate::lease::{LeaseLimits, Leases, Passwords};
use crate::route::{Matched, Route};
use crate::{CoreError, Request, Response};

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

/// A mounted engine. Each request comes matched to one of its [`Engine::routes`]: the path
/// is parsed there, once, and the handler dispatches on the route and reads its parameters.
pub trait Engine: Send + Sync {
    /// Answers `req`, whose path below the mount matched `at`.
    fn handle(
        &self,
        req: &Request,
        at: &Matched<'_>,
        cx: &Context<'_>,
    ) -> Result<Response, CoreError>;

    /// Whether something exists where `at` points (a write to an existing path needs
    /// `update`, to a new one `create`).
    fn exists(&self, at: &Matched<'_>) -> Result<bool, CoreError>;

    /// Every route this mount serves: its kind's [`EngineKind::routes`].
    fn routes(&self) -> &'static [Route];

    /// The answer to an unauthenticated read of `at`, one of the routes marked
    /// [`Route::public`] (PKI's raw CA and CRL endpoints).
    fn public_read(&self, at: &Matched<'_>) -> Option<Result<PublicBody, CoreError>> {
        let _ = at;
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
