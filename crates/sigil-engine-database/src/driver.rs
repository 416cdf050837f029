//! What the `database` engine asks of a database: Vault's database plugin interface (new user,
//! update user, delete user), behind a trait. The core decides names, passwords, TTLs and
//! statements; a driver (crate `sigil-engine-database`, given to the core by the server) speaks
//! the database's protocol, escapes what it builds itself, and keeps connections.

use std::fmt;

use zeroize::Zeroizing;

/// A database type, as Vault names its plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    /// `postgresql-database-plugin`.
    Postgres,
    /// `mysql-database-plugin` (MySQL and MariaDB).
    MySql,
}

impl Plugin {
    /// The plugin for Vault's `plugin_name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "postgresql-database-plugin" => Some(Plugin::Postgres),
            // Not the legacy, RDS or Aurora variants: their 16-character user names are too
            // short for Sigil's unique names.
            "mysql-database-plugin" => Some(Plugin::MySql),
            _ => None,
        }
    }

    /// Vault's `plugin_name`.
    pub fn name(self) -> &'static str {
        match self {
            Plugin::Postgres => "postgresql-database-plugin",
            Plugin::MySql => "mysql-database-plugin",
        }
    }

    /// The longest user name the database accepts (PostgreSQL's NAMEDATALEN − 1; MySQL 5.7+
    /// and MariaDB's 32 for portability).
    pub fn username_limit(self) -> usize {
        match self {
            Plugin::Postgres => 63,
            Plugin::MySql => 32,
        }
    }
}

/// How to reach one configured database as its root user. Its `Debug` omits the password.
#[derive(Clone)]
pub struct Connection {
    /// The `config/<name>` it comes from, with a generation that changes whenever the
    /// configuration or root password does (drivers key their connection cache on both).
    pub name: String,
    /// See `name`.
    pub generation: u64,
    /// The database type.
    pub plugin: Plugin,
    /// The connection URL as configured: `{{username}}`/`{{password}}` placeholders are not
    /// substituted into it; drivers take `username` and `password` from here instead.
    pub url: String,
    /// The root user.
    pub username: String,
    /// The root password.
    pub password: Zeroizing<String>,
    /// Connections the driver may keep open for this database.
    pub max_open_connections: u32,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a database operation failed. Messages never contain a password (drivers redact the
/// ones they were given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    /// The database could not be reached in time.
    Unavailable(String),
    /// The database refused the root login (wrong password or user).
    LoginRefused(String),
    /// The database ran but refused a statement (a bad role definition, a missing privilege).
    Rejected(String),
    /// The configuration cannot work (bad URL, unsupported option).
    Invalid(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            DriverError::LoginRefused(m) => write!(f, "the database refused the root login: {m}"),
            DriverError::Rejected(m) => write!(f, "database refused the statements: {m}"),
            DriverError::Invalid(m) => write!(f, "invalid database configuration: {m}"),
        }
    }
}

/// The statements of one operation. `statements` are already rendered (placeholders filled
/// with generated, charset-checked values); empty means the driver's default for the operation.
#[derive(Debug, Clone, Copy)]
pub struct Statements<'a> {
    /// What to run, in order, in one transaction where the database allows.
    pub statements: &'a [Zeroizing<String>],
}

/// A database driver (all plugins). Calls block the calling thread until done or timed out;
/// the core calls them from blocking threads only.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Connects as root (verify_connection).
    fn verify(&self, conn: &Connection) -> Result<(), DriverError>;
    /// Runs a new user's creation statements (never empty: a role must give them), which
    /// hold `password` (redacted from any message).
    fn create_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        password: &str,
    ) -> Result<(), DriverError>;
    /// Removes `username`: its revocation statements, or the driver's default (drop the user
    /// and what it owns), built with the database's own escaping.
    fn delete_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
    ) -> Result<(), DriverError>;
    /// Extends `username`'s validity to `expiration` (renew statements, or the default: none for
    /// MySQL, `VALID UNTIL` for PostgreSQL).
    fn renew_user(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
        expiration: &str,
    ) -> Result<(), DriverError>;
    /// Sets `username`'s password (rotation statements, or the default `ALTER …`).
    fn set_password(
        &self,
        conn: &Connection,
        run: Statements<'_>,
        username: &str,
        password: &str,
    ) -> Result<(), DriverError>;
    /// Forgets cached connections to `name` (its configuration was changed or deleted).
    fn forget(&self, name: &str);
}
