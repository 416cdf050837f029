//! The real [`Driver`]: PostgreSQL (tokio-postgres) and MySQL/MariaDB (mysql_async).
//!
//! The drivers run on their own small tokio runtime, so the core's synchronous engine can call
//! them from any thread; every call is bounded by a timeout, so a dead database fails a request
//! instead of hanging it. Connections are cached per configuration and generation. What the
//! drivers build themselves (default revocation, renewal and rotation statements) uses the
//! database's own escaping; messages they return have the passwords they know redacted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::driver::{Connection, Driver, DriverError, Plugin, Statements};
use crate::op::Op;
use crate::{mysql, postgres};

/// How long one operation (connect included) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// PostgreSQL and MySQL/MariaDB.
pub struct Databases {
    runtime: OnceLock<tokio::runtime::Runtime>,
    postgres: Mutex<HashMap<String, Arc<postgres::Pool>>>,
    mysql: Mutex<HashMap<String, Arc<mysql::Pool>>>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases").finish_non_exhaustive()
    }
}

impl Default for Databases {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's worker.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Databases {
    /// Drivers with no connections yet (the runtime starts at first use).
    pub fn new() -> Self {
        Databases {
            runtime: OnceLock::new(),
            postgres: Mutex::new(HashMap::new()),
            mysql: Mutex::new(HashMap::new()),
        }
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, DriverError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sigil-db")
            .enable_all()
            .build()
            .map_err(|e| {
                DriverError::Unavailable(format!("cannot start the driver runtime: {e}"))
            })?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// Runs `fut` on the drivers' runtime and waits for it, at most [`OPERATION_TIMEOUT`].
    /// Works from any thread, an async worker's included (it does not enter a runtime).
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, DriverError>> + Send + 'static,
    ) -> Result<T, DriverError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime()?.spawn(async move {
            let out = match tokio::time::timeout(OPERATION_TIMEOUT, fut).await {
                Ok(out) => out,
                Err(_) => Err(DriverError::Unavailable(format!(
                    "no answer within {} s",
                    OPERATION_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(out);
        });
        rx.recv_timeout(OPERATION_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(DriverError::Unavailable("the driver did not answer".into())))
    }

    fn pool<P>(
        map: &Mutex<HashMap<String, Arc<P>>>,
        conn: &Connection,
        generation: impl Fn(&P) -> u64,
        make: impl FnOnce() -> Result<P, DriverError>,
    ) -> Result<Arc<P>, DriverError> {
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = map
            .get(&conn.name)
            .filter(|p| generation(p) == conn.generation)
        {
            return Ok(Arc::clone(p));
        }
        let pool = Arc::new(make()?);
        map.insert(conn.name.clone(), Arc::clone(&pool));
        Ok(pool)
    }

    fn run(&self, conn: &Connection, op: Op) -> Result<(), DriverError> {
        match conn.plugin {
            Plugin::Postgres => {
                let pool = Self::pool(
                    &self.postgres,
                    conn,
                    |p| p.generation,
                    || postgres::Pool::new(conn),
                )?;
                self.block(async move { pool.run(op).await })
            }
            Plugin::MySql => {
                let runtime = self.runtime()?;
                let _enter = runtime.enter();
                let pool = Self::pool(
                    &self.mysql,
                    conn,
                    |p| p.generation,
                    || mysql::Pool::new(conn),
                )?;
                drop(_enter);
                self.block(async move { pool.run(op).await })
            }
        }
    }
}

impl Driver for Databases {
    fn verify(&self, conn: &Connection) -> Result<(), DriverError> {
        self.run(conn, Op::Verify)
    }

    fn create_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        password: &str,
    ) -> Result<(), DriverError> {
        self.run(
            conn,
            Op::Create(
                run.statements.to_vec(),
                zeroize::Zeroizing::new(password.to_owned()),
            ),
        )
    }

    fn delete_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
    ) -> Result<(), DriverError> {
        self.run(
            conn,
            Op::Delete(run.statements.to_vec(), username.to_owned()),
        )
    }

    fn renew_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
        expiration: &str,
    ) -> Result<(), DriverError> {
        self.run(
            conn,
            Op::Renew(
                run.statements.to_vec(),
                username.to_owned(),
                expiration.to_owned(),
            ),
        )
    }

    fn set_password(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
        password: &str,
    ) -> Result<(), DriverError> {
        self.run(
            conn,
            Op::SetPassword(
                run.statements.to_vec(),
                username.to_owned(),
                zeroize::Zeroizing::new(password.to_owned()),
            ),
        )
    }

    fn forget(&self, name: &str) {
        self.postgres
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let mysql = self
            .mysql
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let (Some(pool), Ok(rt)) = (mysql, self.runtime()) {
            rt.spawn(async move { pool.close().await });
        }
    }
}
