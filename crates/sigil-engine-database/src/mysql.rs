//! MySQL and MariaDB through mysql_async: a small pool per configuration. The connection URL
//! is Vault's (the Go driver's DSN, `{{username}}:{{password}}@tcp(host:port)/db?tls=true`) or
//! a `mysql://` URL. MySQL's DDL commits implicitly, so statements run one after another.

use crate::driver::{Connection, DriverError};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};
use zeroize::Zeroizing;

use crate::op::{CONNECT_TIMEOUT, Op, redact, url_template};

pub(crate) struct Pool {
    pub(crate) generation: u64,
    pool: mysql_async::Pool,
    password: Zeroizing<String>,
}

fn invalid(e: impl std::fmt::Display) -> DriverError {
    DriverError::Invalid(e.to_string())
}

/// A MySQL string literal. Values quoted here are generated names and passwords, user names
/// a static role was checked to have, and host names from `mysql.user`; a backslash or
/// control character is refused rather than escaped, so the result means the same with or
/// without `NO_BACKSLASH_ESCAPES`.
fn quote(value: &str) -> Result<String, DriverError> {
    if value.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(invalid("a value holds a backslash or control character"));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// The options for a Go-style DSN: `[user[:pass]@][tcp(host:port)|unix(path)]/[db][?params]`.
/// Only `tls` is read among the parameters (the Go driver's others mean nothing here).
fn from_dsn(dsn: &str) -> Result<OptsBuilder, DriverError> {
    let slash = dsn.rfind('/').ok_or_else(|| {
        invalid("connection_url: expected user:pass@tcp(host:port)/ or mysql://…")
    })?;
    let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
    let net = head.rsplit_once('@').map_or(head, |(_, net)| net);
    let (db, params) = tail.split_once('?').unwrap_or((tail, ""));
    let mut opts = OptsBuilder::default();
    if !db.is_empty() {
        opts = opts.db_name(Some(db));
    }
    opts = if let Some(addr) = net.strip_prefix("tcp(").and_then(|a| a.strip_suffix(')')) {
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse().map_err(|_| invalid("connection_url: bad port"))?,
            ),
            None => (addr, 3306),
        };
        opts.ip_or_hostname(host.trim_matches(['[', ']']))
            .tcp_port(port)
    } else if let Some(path) = net.strip_prefix("unix(").and_then(|a| a.strip_suffix(')')) {
        opts.socket(Some(path))
    } else if net.is_empty() {
        opts
    } else {
        return Err(invalid(
            "connection_url: the address is tcp(host:port) or unix(path)",
        ));
    };
    for (key, value) in params.split('&').filter_map(|p| p.split_once('=')) {
        if key == "tls" {
            opts = match value {
                "true" => opts.ssl_opts(Some(SslOpts::default())),
                "false" => opts.ssl_opts(None::<SslOpts>),
                _ => return Err(invalid("connection_url: tls is true or false")),
            };
        }
    }
    Ok(opts)
}

impl Pool {
    /// Needs a tokio runtime entered (the pool spawns its housekeeping).
    pub(crate) fn new(conn: &Connection) -> Result<Self, DriverError> {
        let url = url_template(conn);
        let builder = if url.starts_with("mysql://") {
            OptsBuilder::from_opts(
                Opts::from_url(&url).map_err(|e| invalid(format!("connection_url: {e}")))?,
            )
        } else {
            from_dsn(&url)?
        };
        let max = usize::try_from(conn.max_open_connections.max(1)).unwrap_or(4);
        let constraints =
            PoolConstraints::new(0, max).ok_or_else(|| invalid("max_open_connections"))?;
        let builder = builder
            .user(Some(conn.username.as_str()))
            .pass(Some(conn.password.as_str()))
            .prefer_socket(false)
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Ok(Pool {
            generation: conn.generation,
            pool: mysql_async::Pool::new(builder),
            password: conn.password.clone(),
        })
    }

    pub(crate) async fn close(&self) {
        let _ = self.pool.clone().disconnect().await;
    }

    fn failed(&self, e: mysql_async::Error, extra: &[&str]) -> DriverError {
        let mut secrets = vec![self.password.as_str()];
        secrets.extend_from_slice(extra);
        match e {
            mysql_async::Error::Server(s) => {
                DriverError::Rejected(redact(format!("{} ({})", s.message, s.code), &secrets))
            }
            other => DriverError::Unavailable(redact(other, &secrets)),
        }
    }

    async fn hosts(&self, conn: &mut Conn, username: &str) -> Result<Vec<String>, DriverError> {
        conn.exec("SELECT Host FROM mysql.user WHERE User = ?", (username,))
            .await
            .map_err(|e| self.failed(e, &[]))
    }

    async fn each(
        &self,
        conn: &mut Conn,
        statements: &[impl AsRef<str>],
        secrets: &[&str],
    ) -> Result<(), DriverError> {
        for s in statements {
            conn.query_drop(s.as_ref())
                .await
                .map_err(|e| self.failed(e, secrets))?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, op: Op) -> Result<(), DriverError> {
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(c) => c.map_err(|e| match e {
                // ER_ACCESS_DENIED_ERROR: the root login was refused.
                mysql_async::Error::Server(ref s) if s.code == 1045 => {
                    DriverError::LoginRefused(redact(&s.message, &[&self.password]))
                }
                // Anything else while connecting means the database is not usable now.
                e => match self.failed(e, &[]) {
                    DriverError::Rejected(m) => DriverError::Unavailable(m),
                    other => other,
                },
            })?,
            Err(_) => {
                return Err(DriverError::Unavailable(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        match op {
            Op::Verify => conn
                .query_drop("SELECT 1")
                .await
                .map_err(|e| self.failed(e, &[])),
            Op::Create(statements, password) => {
                self.each(&mut conn, &statements, &[&password]).await
            }
            Op::Delete(statements, username) => {
                let hosts = self.hosts(&mut conn, &username).await?;
                if hosts.is_empty() {
                    return Ok(());
                }
                // End the user's sessions too (ids are numbers; failures are not fatal).
                let sessions: Vec<u64> = conn
                    .exec(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                        (&username,),
                    )
                    .await
                    .unwrap_or_default();
                for id in sessions {
                    if let Err(e) = conn.query_drop(format!("KILL {id}")).await {
                        tracing::debug!(error = %e, "ending a revoked user's session failed");
                    }
                }
                if !statements.is_empty() {
                    return self.each(&mut conn, &statements, &[]).await;
                }
                let user = quote(&username)?;
                let mut drops = Vec::new();
                for host in hosts {
                    drops.push(format!("DROP USER IF EXISTS {user}@{}", quote(&host)?));
                }
                self.each(&mut conn, &drops, &[]).await
            }
            // MySQL users do not expire: renewal runs only the role's own statements.
            Op::Renew(statements, _, _) => self.each(&mut conn, &statements, &[]).await,
            Op::SetPassword(statements, username, password) => {
                if !statements.is_empty() {
                    return self.each(&mut conn, &statements, &[&password]).await;
                }
                let user = quote(&username)?;
                let secret = Zeroizing::new(quote(&password)?);
                let hosts = self.hosts(&mut conn, &username).await?;
                if hosts.is_empty() {
                    return Err(DriverError::Rejected(format!(
                        "no user named {username} exists"
                    )));
                }
                let mut alters = Vec::new();
                for host in hosts {
                    alters.push(Zeroizing::new(format!(
                        "ALTER USER {user}@{} IDENTIFIED BY {}",
                        quote(&host)?,
                        secret.as_str()
                    )));
                }
                self.each(&mut conn, &alters, &[&password]).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_refuses_what_it_cannot_make_safe() {
        assert_eq!(quote("v-a-b").unwrap(), "'v-a-b'");
        assert_eq!(quote("o'brien").unwrap(), "'o''brien'");
        for bad in ["a\\' OR 1=1 -- ", "a\0b", "a\nb"] {
            assert!(quote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vault_dsns() {
        let o: Opts =
            from_dsn("{{username}}:{{password}}@tcp(127.0.0.1:3307)/app?tls=false&parseTime=true")
                .unwrap()
                .into();
        assert_eq!(
            (o.ip_or_hostname(), o.tcp_port(), o.db_name()),
            ("127.0.0.1", 3307, Some("app"))
        );
        let o: Opts = from_dsn("u:p@tcp(db.example)/").unwrap().into();
        assert_eq!(
            (o.ip_or_hostname(), o.tcp_port(), o.db_name()),
            ("db.example", 3306, None)
        );
        let o: Opts = from_dsn("u:p@unix(/run/mysqld.sock)/").unwrap().into();
        assert_eq!(o.socket(), Some("/run/mysqld.sock"));
        for bad in [
            "nothing",
            "u:p@udp(x)/",
            "u:p@tcp(h:port)/",
            "u:p@tcp(h)/?tls=maybe",
        ] {
            assert!(from_dsn(bad).is_err(), "{bad}");
        }
    }
}
