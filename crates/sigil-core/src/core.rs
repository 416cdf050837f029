//! The logical router: existence check, policy check, dispatch.

use std::sync::Arc;

use serde_json::json;
use sigil_crypto::PublicIdentity;
use sigil_storage::Backend;

use crate::barrier::Barrier;
use crate::identity::{Caller, IdentityStore};
use crate::kv::KvEngine;
use crate::policy::{ADMIN_POLICY, Capability};
use crate::policy_store::PolicyStore;
use crate::{CoreError, Operation, Request, Response};

const POLICIES: &str = "sys/policies/acl";
const IDENTITIES: &str = "identity/entity/name";
const KV_MOUNT: &str = "secret";

/// What the core needs at start.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The init admins: `(identity name, public key)`. They get the built-in admin policy.
    pub admins: Vec<(String, PublicIdentity)>,
}

/// The core of a running, unsealed server.
#[derive(Debug)]
pub struct Core {
    barrier: Arc<Barrier>,
    identities: IdentityStore,
    policies: PolicyStore,
    kv: KvEngine,
}

enum Route<'a> {
    Policies(&'a str),
    Identities(&'a str),
    Kv(&'a str),
    Unknown,
}

/// Splits `path` into a mount and the rest below it (`mount`, `mount/`, `mount/rest`).
fn below<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

fn route(path: &str) -> Route<'_> {
    if let Some(rest) = below(path, POLICIES) {
        Route::Policies(rest)
    } else if let Some(rest) = below(path, IDENTITIES) {
        Route::Identities(rest)
    } else if let Some(rest) = below(path, KV_MOUNT) {
        Route::Kv(rest)
    } else {
        Route::Unknown
    }
}

impl Core {
    /// Starts a core on `backend` with a fresh in-memory barrier key (transient mode) and
    /// registers the init admins.
    pub fn start_transient(
        backend: Arc<dyn Backend>,
        config: CoreConfig,
    ) -> Result<Self, CoreError> {
        let barrier = Arc::new(Barrier::generate(backend)?);
        let core = Core {
            identities: IdentityStore::new(barrier.view("sys/identity/")),
            policies: PolicyStore::new(barrier.view("sys/policy/")),
            kv: KvEngine::new(barrier.view("logical/secret/")),
            barrier,
        };
        for (name, public) in config.admins {
            core.identities.upsert(
                &name,
                json!({ "public_key": public.to_string(), "policies": [ADMIN_POLICY] }),
            )?;
        }
        Ok(core)
    }

    /// The storage backend's kind.
    pub fn storage_kind(&self) -> &'static str {
        self.barrier.backend_kind()
    }

    /// The enabled identity with this keyid, if any (the authenticator's lookup).
    pub fn caller(&self, keyid: &str) -> Option<Arc<Caller>> {
        self.identities.caller(keyid)
    }

    /// Handles an authenticated request: decides create vs update, checks the caller's
    /// policies, then dispatches.
    pub fn handle(&self, caller: &Caller, mut req: Request) -> Result<Response, CoreError> {
        let route = route(&req.path);
        if req.operation == Operation::Update && !self.exists(&route)? {
            req.operation = Operation::Create;
        }
        let cap = match req.operation {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Create => Capability::Create,
            Operation::Update => Capability::Update,
            Operation::Patch => Capability::Patch,
            Operation::Delete => Capability::Delete,
        };
        let acl = self.policies.acl_for(&caller.identity.policies);
        if !acl.allows(&req.path, cap) {
            return Err(CoreError::Forbidden);
        }
        match route {
            Route::Policies(rest) => self.policies.handle(&req, rest),
            Route::Identities(rest) => self.identities.handle(&req, rest),
            Route::Kv(rest) => self.kv.handle(&req, rest),
            Route::Unknown => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\"",
                req.path
            ))),
        }
    }

    fn exists(&self, route: &Route<'_>) -> Result<bool, CoreError> {
        match route {
            Route::Policies(rest) => Ok(self.policies.exists(rest)),
            Route::Identities(rest) if !rest.is_empty() => self.identities.exists(rest),
            Route::Kv(rest) => self.kv.exists(rest),
            _ => Ok(false),
        }
    }
}
