//! Sigil's `database` engine: dynamic PostgreSQL and MySQL/MariaDB users with leases, static
//! roles whose password Sigil rotates, and root credential rotation, at Vault's paths — and
//! the drivers it reaches the databases through.
//!
//! The engine ([`Database`]) is on the engine contract (`sigil-engine`): it keeps its
//! configuration in its mount's view, issues leases through the core's lease store, and the
//! core calls its `revoke`/`renew` hooks when a lease ends or is renewed. SQL runs through a
//! [`Driver`]; [`Databases`] is the real one (tokio-postgres, mysql_async).

mod databases;
pub mod driver;
mod engine;
mod mysql;
mod op;
mod postgres;
mod statements;

use std::sync::Arc;

use sigil_engine::{Engine, EngineKind, MountPoint, Route};

pub use databases::Databases;
pub use driver::Driver;
use engine::{DatabaseEngine, ROUTES};

/// The `database` engine kind, with the driver its mounts use (none: they refuse to configure
/// databases).
#[derive(Clone, Default)]
pub struct Database {
    driver: Option<Arc<dyn Driver>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("driver", &self.driver.is_some())
            .finish()
    }
}

impl Database {
    /// Mounts reach databases through `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Database {
            driver: Some(driver),
        }
    }

    /// Mounts that refuse to configure databases (a build or a test without drivers).
    pub fn without_drivers() -> Self {
        Database { driver: None }
    }
}

impl EngineKind for Database {
    fn name(&self) -> &'static str {
        "database"
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn mount(&self, at: MountPoint<'_>) -> Box<dyn Engine> {
        Box::new(DatabaseEngine::new(
            at.view,
            self.driver.clone(),
            Arc::clone(at.leases),
            Arc::clone(at.passwords),
            at.uuid.to_owned(),
        ))
    }
}
