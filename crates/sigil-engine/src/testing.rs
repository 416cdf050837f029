//! Helpers for engines' own tests (the `testing` feature: dev-dependencies only, never in the
//! binary): a mount without a core, a lease store and password policies in memory. The
//! end-to-end tests run the real ones in a real server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::CoreError;
use crate::engine::{Engine, EngineKind, MountPoint};
use crate::lease::{Leases, NewLease, Passwords};

/// Leases kept in memory: what an engine issued, withdrew and made due.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    /// By id: the lease and whether it was made due.
    pub issued: Mutex<HashMap<String, (NewLease, bool)>>,
}

impl Leases for MemoryLeases {
    fn issue(&self, lease: NewLease) -> Result<String, CoreError> {
        let id = format!("{}/{}", lease.path, crate::id::random_id()?);
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.insert(id.clone(), (lease, false));
        Ok(id)
    }

    fn withdraw(&self, id: &str) -> Result<(), CoreError> {
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.remove(id);
        Ok(())
    }

    fn expire_at(&self, id: &str, _now: i64) -> Result<(), CoreError> {
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, due)) = issued.get_mut(id) {
            *due = true;
        }
        Ok(())
    }
}

/// No password policies: naming one is an error, as on a server that has none.
#[derive(Debug, Default)]
pub struct NoPasswordPolicies;

impl Passwords for NoPasswordPolicies {
    fn check(&self, name: &str) -> Result<(), CoreError> {
        Err(CoreError::bad(format!("no password policy named {name:?}")))
    }

    fn generate(&self, name: &str) -> Result<Zeroizing<String>, CoreError> {
        Err(CoreError::bad(format!("no password policy named {name:?}")))
    }
}

/// One engine mounted over a fresh barrier on a memory backend, with a caller: what an
/// engine's own tests drive, the way the core's router would (a write to what does not exist
/// yet is a create).
pub struct Harness {
    /// The mounted engine.
    pub engine: Box<dyn Engine>,
    /// Who calls (an identity named `admin`; policy is the core's business, not checked here).
    pub caller: crate::Caller,
    /// The barrier the mount's data is under.
    pub barrier: Arc<crate::Barrier>,
    mount: String,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// `kind` mounted at `mount` (`transit/`) over a fresh memory backend.
    pub fn new(kind: &dyn EngineKind, mount: &str) -> Harness {
        let root =
            sigil_crypto::BarrierKey::generate(sigil_crypto::KeyTerm(1)).expect("a barrier key");
        let backend = Arc::new(sigil_storage::MemoryBackend::new());
        let barrier = Arc::new(crate::Barrier::initialize(backend, root).expect("a barrier"));
        let key = sigil_crypto::SecretIdentity::generate().expect("an identity");
        let caller = crate::Caller {
            identity: crate::Identity {
                id: "id".into(),
                name: "admin".into(),
                public_key: key.public().to_string(),
                keyid: key.public().keyid().to_string(),
                policies: vec!["admin".into()],
                metadata: Default::default(),
                disabled: false,
                creation_time: String::new(),
                last_update_time: String::new(),
                certification: None,
            },
            public: key.public(),
        };
        let leases: Arc<dyn Leases> = Arc::new(MemoryLeases::default());
        let passwords: Arc<dyn Passwords> = Arc::new(NoPasswordPolicies);
        let engine = kind.mount(MountPoint {
            view: barrier.view(&format!("logical/{mount}")),
            path: mount,
            uuid: mount.trim_end_matches('/'),
            leases: &leases,
            passwords: &passwords,
        });
        Harness {
            engine,
            caller,
            barrier,
            mount: mount.to_owned(),
        }
    }

    /// `op` on `path` (with the mount) with `body` and `query`, as the router hands it over.
    pub fn request(
        &self,
        op: crate::Operation,
        path: &str,
        body: serde_json::Value,
        query: &[(&str, &str)],
    ) -> Result<crate::Response, CoreError> {
        let path = crate::path::for_operation(path.to_owned(), op);
        let at = self
            .matched(&path)
            .ok_or_else(|| crate::route::no_route(&path))?;
        let mut req = crate::Request {
            operation: op,
            path: path.clone(),
            data: if body.is_null() { None } else { Some(body) },
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        if req.operation == crate::Operation::Update && !self.engine.exists(&at)? {
            req.operation = crate::Operation::Create;
        }
        let cx = crate::Context {
            caller: &self.caller,
            limits: Default::default(),
        };
        self.engine.handle(&req, &at, &cx)
    }

    /// The engine's route `path` (with the mount) falls under, as the core finds it.
    fn matched<'p>(&self, path: &'p str) -> Option<crate::route::Matched<'p>> {
        let rest = path
            .strip_prefix(self.mount.as_str())
            .expect("a path below the mount");
        crate::route::find(self.engine.routes(), rest)
    }

    /// The route `path` (with the mount, canonical for `op`) matches, as the core finds it.
    pub fn route(&self, op: crate::Operation, path: &str) -> Option<&'static str> {
        let path = crate::path::for_operation(path.to_owned(), op);
        self.matched(&path).map(|m| m.route.path)
    }

    /// The unauthenticated read of `path` (with the mount), as the server serves it: `None`
    /// when no public route matches it.
    pub fn public_read(&self, path: &str) -> Option<Result<crate::PublicBody, CoreError>> {
        let at = self.matched(path).filter(|at| at.route.public)?;
        self.engine.public_read(&at)
    }

    /// The engine's existence check on `path` (with the mount).
    pub fn exists(&self, path: &str) -> Result<bool, CoreError> {
        match self.matched(path) {
            Some(at) => self.engine.exists(&at),
            None => Ok(false),
        }
    }

    /// [`Harness::request`] without a query; the response's data (`null` when none).
    pub fn call(
        &self,
        op: crate::Operation,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CoreError> {
        self.request(op, path, body, &[])
            .map(|r| r.data.unwrap_or(serde_json::Value::Null))
    }
}
