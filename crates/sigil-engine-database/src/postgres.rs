//! PostgreSQL through tokio-postgres: one cached root connection per configuration, statements
//! in a transaction, identifiers and literals escaped by `postgres-protocol`.

use std::str::FromStr;

use crate::driver::{Connection, DriverError};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use zeroize::Zeroizing;

use crate::op::{CONNECT_TIMEOUT, Op, redact, url_template};

pub(crate) struct Pool {
    pub(crate) generation: u64,
    config: Config,
    password: Zeroizing<String>,
    client: tokio::sync::Mutex<Option<Client>>,
}

fn invalid(e: impl std::fmt::Display) -> DriverError {
    DriverError::Invalid(e.to_string())
}

impl Pool {
    pub(crate) fn new(conn: &Connection) -> Result<Self, DriverError> {
        let url = url_template(conn);
        let mut config = Config::from_str(&url)
            .map_err(|e| invalid(format!("connection_url: {}", redact(e, &[&conn.password]))))?;
        // Without sslmode, libpq and Vault's driver try TLS first; this driver cannot, so it
        // asks to be told instead of silently sending passwords in the clear.
        if config.get_ssl_mode() != SslMode::Disable {
            return Err(invalid(
                "this build's PostgreSQL driver does not speak TLS yet: connection_url must say sslmode=disable (use it on a trusted network only)",
            ));
        }
        config
            .user(&conn.username)
            .password(conn.password.as_bytes())
            .ssl_mode(SslMode::Disable)
            .application_name("sigil")
            .connect_timeout(CONNECT_TIMEOUT);
        Ok(Pool {
            generation: conn.generation,
            config,
            password: conn.password.clone(),
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// A failed connection: a refused login (SQLSTATE class 28) or an unreachable server.
    fn connect_failed(&self, e: &tokio_postgres::Error) -> DriverError {
        let message = redact(e, &[self.password.as_str()]);
        match e.code().map(|c| c.code()) {
            Some(code) if code.starts_with("28") => DriverError::LoginRefused(message),
            _ => DriverError::Unavailable(message),
        }
    }

    fn failed(&self, e: &tokio_postgres::Error, extra: &[&str]) -> DriverError {
        let mut secrets = vec![self.password.as_str()];
        secrets.extend_from_slice(extra);
        match e.as_db_error() {
            Some(db) => DriverError::Rejected(redact(
                format!("{} ({})", db.message(), db.code().code()),
                &secrets,
            )),
            None => DriverError::Unavailable(redact(e, &secrets)),
        }
    }

    pub(crate) async fn run(&self, op: Op) -> Result<(), DriverError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| self.connect_failed(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            *slot = Some(client);
        }
        let client = slot.as_mut().expect("connected above");
        let outcome = self.apply(client, op).await;
        if client.is_closed() {
            *slot = None;
        }
        outcome
    }

    async fn exists(&self, client: &Client, username: &str) -> Result<bool, DriverError> {
        client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&username])
            .await
            .map(|row| row.is_some())
            .map_err(|e| self.failed(&e, &[]))
    }

    async fn in_transaction(
        &self,
        client: &mut Client,
        statements: &[impl AsRef<str>],
        secrets: &[&str],
    ) -> Result<(), DriverError> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.failed(&e, secrets))?;
        for s in statements {
            tx.batch_execute(s.as_ref())
                .await
                .map_err(|e| self.failed(&e, secrets))?;
        }
        tx.commit().await.map_err(|e| self.failed(&e, secrets))
    }

    async fn apply(&self, client: &mut Client, op: Op) -> Result<(), DriverError> {
        match op {
            Op::Verify => client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| self.failed(&e, &[])),
            Op::Create(statements, password) => {
                self.in_transaction(client, &statements, &[&password]).await
            }
            Op::Delete(statements, username) => {
                if !self.exists(client, &username).await? {
                    return Ok(());
                }
                let user = escape_identifier(&username);
                // Sessions of a revoked user end now, not when they disconnect; a root user
                // without the privilege to end them still drops the user.
                if let Err(e) = client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                        &[&username],
                    )
                    .await
                {
                    tracing::debug!(error = %e, "ending a revoked user's sessions failed");
                }
                if !statements.is_empty() {
                    return self.in_transaction(client, &statements, &[]).await;
                }
                let default = [
                    format!("REASSIGN OWNED BY {user} TO CURRENT_USER"),
                    format!("DROP OWNED BY {user}"),
                    format!("DROP ROLE IF EXISTS {user}"),
                ];
                self.in_transaction(client, &default, &[]).await
            }
            Op::Renew(statements, username, expiration) => {
                if !statements.is_empty() {
                    return self.in_transaction(client, &statements, &[]).await;
                }
                let default = [format!(
                    "ALTER ROLE {} VALID UNTIL {}",
                    escape_identifier(&username),
                    escape_literal(&expiration)
                )];
                self.in_transaction(client, &default, &[]).await
            }
            Op::SetPassword(statements, username, password) => {
                if !statements.is_empty() {
                    return self.in_transaction(client, &statements, &[&password]).await;
                }
                let literal = Zeroizing::new(escape_literal(&password));
                let default = [Zeroizing::new(format!(
                    "ALTER ROLE {} WITH PASSWORD {}",
                    escape_identifier(&username),
                    literal.as_str()
                ))];
                self.in_transaction(client, &default, &[&password]).await
            }
        }
    }
}
