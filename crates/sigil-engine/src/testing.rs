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
