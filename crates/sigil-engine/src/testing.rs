//! Helpers for engines' own tests (the `testing` feature: dev-dependencies only, never in the
//! binary): a mount without a core, a lease store and password policies in memory. The
//! end-to-end tests run the real ones in a real server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::CoreError;
use crate::barrier::View;
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

/// What a test mount borrows from its "core".
pub struct Lent {
    /// The leases the engine issued.
    pub leases: Arc<MemoryLeases>,
    leases_dyn: Arc<dyn Leases>,
    passwords: Arc<dyn Passwords>,
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent").finish_non_exhaustive()
    }
}

impl Default for Lent {
    fn default() -> Self {
        let leases = Arc::new(MemoryLeases::default());
        Lent {
            leases_dyn: leases.clone(),
            leases,
            passwords: Arc::new(NoPasswordPolicies),
        }
    }
}

impl Lent {
    /// `kind` mounted at `path` (ending in `/`, also its uuid) with its data in `view`.
    pub fn mount(&self, kind: &dyn EngineKind, view: View, path: &str) -> Box<dyn Engine> {
        kind.mount(MountPoint {
            view,
            path,
            uuid: path.trim_end_matches('/'),
            leases: &self.leases_dyn,
            passwords: &self.passwords,
        })
    }
}

/// `kind` mounted at `path` with its data in `view`, lending a throw-away lease store.
pub fn mount(kind: &dyn EngineKind, view: View, path: &str) -> Box<dyn Engine> {
    Lent::default().mount(kind, view, path)
}

/// One engine mounted over a fresh barrier on a memory backend, with a caller: what an
/// engine's own tests drive, the way the core's router would (a write to what does not exist
/// yet is a create).
pub struct Harness {
    /// The mounted engine.
    pub engine: Box<dyn Engine>,
    /// Who calls (an identity named `admin`; policy is the core's business, not checked here).
    pub caller: crate::Caller,
    /// What the mount borrowed: the leases it issued.
    pub lent: Lent,
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
        let lent = Lent::default();
        let engine = lent.mount(kind, barrier.view(&format!("logical/{mount}")), mount);
        Harness {
            engine,
            caller,
            lent,
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
        let rest = path
            .strip_prefix(self.mount.as_str())
            .expect("a path below the mount");
        let mut req = crate::Request {
            operation: op,
            path: path.into(),
            data: if body.is_null() { None } else { Some(body) },
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        if req.operation == crate::Operation::Update && !self.engine.exists(rest)? {
            req.operation = crate::Operation::Create;
        }
        let cx = crate::Context {
            caller: &self.caller,
            limits: Default::default(),
        };
        self.engine.handle(&req, rest, &cx)
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
