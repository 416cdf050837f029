//! The `database` engine at Vault's paths: dynamic PostgreSQL and MySQL/MariaDB users with
//! leases, static roles whose password Sigil rotates, and root credential rotation.
//!
//! `config/<name>` (LIST, read without the password, write, delete), `reset/<name>`,
//! `rotate-root/<name>`, `roles/<name>`, `creds/<role>`, `static-roles/<name>`,
//! `static-creds/<name>`, `rotate-role/<name>`. SQL runs through a [`Driver`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::driver::{Connection, Driver, DriverError, Plugin, Statements};
use crate::statements;
use sigil_engine::barrier::{View, ViewBatch};
use sigil_engine::fields::{body_of, flag, list_of, number, only, text, ttl};
use sigil_engine::lease::{Leases, NewLease, Passwords, lease_ttls};
use sigil_engine::path::check_name;
use sigil_engine::request::{LeaseInfo, list_response};
use sigil_engine::timefmt::{rfc3339_of, unix_now};
use sigil_engine::{
    Caller, Context, CoreError, Engine, LeaseLimits, Matched, Operation, Request, Response, Route,
    Writes,
};

/// Shortest static role rotation period (Vault's).
const MIN_ROTATION: u64 = 5;

/// Bumped after every change of any connection's configuration or root password, in any
/// mount: drivers key their cached connections on it, so none outlives the settings it was
/// made with. Readers load it before they read a configuration.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// `config/<name>` as stored (under the barrier). Zeroized when dropped.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct DbConfig {
    plugin_name: String,
    connection_url: String,
    username: String,
    password: String,
    /// A root password being rotated in: set before the database is told, cleared after.
    #[serde(default)]
    pending_password: Option<String>,
    allowed_roles: Vec<String>,
    verify_connection: bool,
    root_rotation_statements: Vec<String>,
    max_open_connections: u32,
    /// A `sys/policies/password` policy for generated passwords (empty: 24 letters and digits).
    #[serde(default)]
    password_policy: String,
}

impl DbConfig {
    fn plugin(&self) -> Result<Plugin, CoreError> {
        Plugin::parse(&self.plugin_name).ok_or(CoreError::Integrity)
    }

    fn allows(&self, role: &str) -> bool {
        self.allowed_roles.iter().any(|r| r == "*" || r == role)
    }

    fn to_json(&self) -> Value {
        json!({
            "plugin_name": self.plugin_name,
            "plugin_version": "",
            "connection_details": {
                "connection_url": mask_url(&self.connection_url),
                "username": self.username,
                "max_open_connections": self.max_open_connections,
            },
            "allowed_roles": self.allowed_roles,
            "root_credentials_rotate_statements": self.root_rotation_statements,
            "password_policy": self.password_policy,
            "verify_connection": self.verify_connection,
        })
    }
}

/// A connection URL as shown: a password written into it (rather than the `{{password}}`
/// placeholder) is replaced by `*****`, as Vault shows it.
fn mask_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[start..].rfind('@').map(|i| i + start) else {
        return url.to_owned();
    };
    match url[start..at].find(':').map(|i| i + start) {
        Some(colon) if &url[colon + 1..at] != "{{password}}" => {
            format!("{}*****{}", &url[..=colon], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// `roles/<name>`.
#[derive(Clone, Serialize, Deserialize)]
struct Role {
    db_name: String,
    default_ttl: u64,
    max_ttl: u64,
    creation_statements: Vec<String>,
    revocation_statements: Vec<String>,
    rollback_statements: Vec<String>,
    renew_statements: Vec<String>,
}

impl Role {
    fn to_json(&self) -> Value {
        json!({
            "db_name": self.db_name,
            "default_ttl": self.default_ttl,
            "max_ttl": self.max_ttl,
            "creation_statements": self.creation_statements,
            "revocation_statements": self.revocation_statements,
            "rollback_statements": self.rollback_statements,
            "renew_statements": self.renew_statements,
            "credential_type": "password",
        })
    }
}

/// `static-roles/<name>`, with the current password. Zeroized when dropped.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct StaticRole {
    db_name: String,
    username: String,
    rotation_period: u64,
    rotation_statements: Vec<String>,
    password: String,
    /// Set before a rotation reaches the database, cleared after; a role left with one (a
    /// crash mid-rotation) is rotated again at once.
    #[serde(default)]
    pending: bool,
    /// Unix seconds of the last rotation.
    last_rotation: i64,
}

/// What a lease of this engine remembers to renew and revoke its user. The statements are
/// the role's at issue time, so deleting or changing the role strands no user.
#[derive(Serialize, Deserialize)]
struct LeaseSecret {
    db_name: String,
    username: String,
    revocation_statements: Vec<String>,
    renew_statements: Vec<String>,
}

pub(crate) struct DatabaseEngine {
    view: View,
    driver: Option<Arc<dyn Driver>>,
    leases: Arc<dyn Leases>,
    passwords: Arc<dyn Passwords>,
    /// Serializes changes to configurations and static roles (rotations included).
    writes: Mutex<()>,
    /// The mount's uuid: with a configuration's name, the drivers' cache key.
    mount_id: String,
    /// Static roles whose scheduled rotation failed, and when to try again (unix seconds).
    retry_at: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for DatabaseEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseEngine").finish_non_exhaustive()
    }
}

fn driver_error(e: DriverError) -> CoreError {
    match e {
        DriverError::Unavailable(_) | DriverError::LoginRefused(_) => {
            CoreError::Unavailable(e.to_string())
        }
        DriverError::Rejected(_) | DriverError::Invalid(_) => CoreError::bad(e.to_string()),
    }
}

fn run(statements: &[Zeroizing<String>]) -> Statements<'_> {
    Statements { statements }
}

impl DatabaseEngine {
    pub(crate) fn new(
        view: View,
        driver: Option<Arc<dyn Driver>>,
        leases: Arc<dyn Leases>,
        passwords: Arc<dyn Passwords>,
        mount_id: String,
    ) -> Self {
        DatabaseEngine {
            view,
            driver,
            leases,
            passwords,
            writes: Mutex::new(()),
            mount_id,
            retry_at: Mutex::new(HashMap::new()),
        }
    }

    fn driver(&self) -> Result<&dyn Driver, CoreError> {
        self.driver
            .as_deref()
            .ok_or_else(|| CoreError::bad("this server was built without database drivers"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CoreError> {
        match self.view.get(key)? {
            None => Ok(None),
            Some(e) => Ok(Some(
                serde_json::from_slice(&e.plain).map_err(|_| CoreError::Integrity)?,
            )),
        }
    }

    fn store<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CoreError> {
        let mut batch = ViewBatch::default();
        batch.put(key, serde_json::to_vec(value).expect("a record serializes"));
        self.view.apply(batch)
    }

    fn delete(&self, key: &str) -> Result<(), CoreError> {
        let mut batch = ViewBatch::default();
        batch.delete(key);
        self.view.apply(batch)
    }

    fn names(&self, prefix: &str) -> Result<Response, CoreError> {
        list_response(self.view.list_children(prefix)?)
    }

    fn config(&self, name: &str) -> Result<DbConfig, CoreError> {
        self.load(&format!("config/{name}"))?
            .ok_or_else(|| CoreError::bad(format!("no database configuration named {name:?}")))
    }

    fn connection(
        &self,
        name: &str,
        config: &DbConfig,
        password: &str,
        generation: u64,
    ) -> Result<Connection, CoreError> {
        Ok(Connection {
            name: format!("{}/{name}", self.mount_id),
            generation,
            plugin: config.plugin()?,
            url: config.connection_url.clone(),
            username: config.username.clone(),
            password: Zeroizing::new(password.to_owned()),
            max_open_connections: config.max_open_connections,
        })
    }

    /// Drops the drivers' cached connections to `config/<name>` (after it changed).
    fn invalidate(&self, name: &str) {
        GENERATION.fetch_add(1, Ordering::AcqRel);
        if let Some(d) = &self.driver {
            d.forget(&format!("{}/{name}", self.mount_id));
        }
    }

    /// Forgets the cached connections of every configuration (the mount is going away).
    fn close_all(&self) {
        for key in self.view.list("config/").unwrap_or_default() {
            self.invalidate(&key["config/".len()..]);
        }
    }

    /// The connection for `config/<name>`, with its configuration.
    fn connect(&self, name: &str) -> Result<(DbConfig, Connection), CoreError> {
        let generation = GENERATION.load(Ordering::Acquire);
        let config = self.config(name)?;
        if let Some(pending) = config.pending_password.clone() {
            self.settle(name, &config, Zeroizing::new(pending))?;
            return self.connect(name);
        }
        let conn = self.connection(name, &config, &config.password, generation)?;
        Ok((config, conn))
    }

    /// A root rotation was cut short (a crash, or no answer from the database): both passwords
    /// are stored. The pending one is tried first, then the current one; the one the database
    /// accepts is kept. When neither can be confirmed (the database is down), both stay.
    fn settle(
        &self,
        name: &str,
        config: &DbConfig,
        pending: Zeroizing<String>,
    ) -> Result<(), CoreError> {
        let driver = self.driver()?;
        let attempt = |password: &str| -> Result<Result<(), DriverError>, CoreError> {
            self.invalidate(name);
            let conn =
                self.connection(name, config, password, GENERATION.load(Ordering::Acquire))?;
            Ok(driver.verify(&conn))
        };
        let keep = match attempt(&pending)? {
            Ok(()) => Some(pending.to_string()),
            Err(DriverError::LoginRefused(_)) => match attempt(&config.password)? {
                Ok(()) => Some(config.password.clone()),
                Err(e) => {
                    self.invalidate(name);
                    return Err(CoreError::Unavailable(format!(
                        "neither root password of an interrupted rotation is accepted: {e}"
                    )));
                }
            },
            Err(e) => {
                self.invalidate(name);
                return Err(driver_error(e));
            }
        };
        let _guard = self.lock();
        let mut stored = self.config(name)?;
        if stored.pending_password.as_deref() == Some(pending.as_str()) {
            if let Some(password) = keep {
                stored.password = password;
            }
            stored.pending_password = None;
            self.store(&format!("config/{name}"), &stored)?;
            tracing::info!(name, "an interrupted root rotation was settled");
        }
        self.invalidate(name);
        Ok(())
    }

    /// A password for a user of `config`'s database: from its password policy, if it names
    /// one.
    fn new_password(&self, config: &DbConfig) -> Result<Zeroizing<String>, CoreError> {
        if config.password_policy.is_empty() {
            statements::password()
        } else {
            self.passwords.generate(&config.password_policy)
        }
    }

    fn object_exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        let name = at.param("name");
        Ok(match at.route.path {
            CONFIG => self.view.get(&format!("config/{name}"))?.is_some(),
            ROLE => self.view.get(&format!("role/{name}"))?.is_some(),
            STATIC_ROLE => self.view.get(&format!("static-role/{name}"))?.is_some(),
            // Actions: a write is an update.
            ROTATE_ROOT | ROTATE_ROLE | RESET => true,
            _ => false,
        })
    }

    fn handle_request(
        &self,
        req: &Request,
        at: &Matched<'_>,
        caller: &Caller,
        limits: LeaseLimits,
    ) -> Result<Response, CoreError> {
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let name = at.param("name");
        if !name.is_empty() {
            check_name("database object", name)?;
        }
        let resp = match (at.route.path, req.operation) {
            (CONFIGS, Operation::List) => self.names("config/"),
            (CONFIG, Operation::Read) => Ok(Response::data(self.config(name)?.to_json())),
            (CONFIG, _) if write => self.write_config(name, &body_of(req)?),
            (CONFIG, Operation::Delete) => {
                let _guard = self.lock();
                self.delete(&format!("config/{name}"))?;
                self.invalidate(name);
                Ok(Response::no_content())
            }
            (RESET, _) if write => {
                self.config(name)?;
                self.driver()?;
                self.invalidate(name);
                Ok(Response::no_content())
            }
            (ROTATE_ROOT, _) if write => self.rotate_root(name),
            (ROLES, Operation::List) => self.names("role/"),
            (ROLE, Operation::Read) => self
                .load::<Role>(&format!("role/{name}"))?
                .map(|r| Response::data(r.to_json()))
                .ok_or_else(|| CoreError::NotFound(String::new())),
            (ROLE, _) if write => self.write_role(name, &body_of(req)?),
            (ROLE, Operation::Delete) => {
                self.delete(&format!("role/{name}"))?;
                Ok(Response::no_content())
            }
            (CREDS, Operation::Read) => self.creds(req, name, caller, limits),
            (STATIC_ROLES, Operation::List) => self.names("static-role/"),
            (STATIC_ROLE, Operation::Read) => self
                .load::<StaticRole>(&format!("static-role/{name}"))?
                .map(|r| Response::data(static_role_json(&r, false)))
                .ok_or_else(|| CoreError::NotFound(String::new())),
            (STATIC_ROLE, _) if write => self.write_static_role(name, &body_of(req)?),
            (STATIC_ROLE, Operation::Delete) => {
                let _guard = self.lock();
                self.delete(&format!("static-role/{name}"))?;
                Ok(Response::no_content())
            }
            (STATIC_CREDS, Operation::Read) => self
                .load::<StaticRole>(&format!("static-role/{name}"))?
                .map(|r| Response::data(static_role_json(&r, true)))
                .ok_or_else(|| CoreError::NotFound(String::new())),
            (ROTATE_ROLE, _) if write => {
                self.rotate_static(name)?;
                Ok(Response::no_content())
            }
            _ => Err(CoreError::UnsupportedOperation),
        }?;
        Ok(resp.with_mount_type("database"))
    }

    fn write_config(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(
            body,
            &[
                "plugin_name",
                "plugin_version",
                "connection_url",
                "username",
                "password",
                "allowed_roles",
                "verify_connection",
                "root_rotation_statements",
                "max_open_connections",
                "password_policy",
                // Accepted and ignored (Terraform sends them): the pool keeps at most
                // max_open_connections and replaces closed connections.
                "max_idle_connections",
                "max_connection_lifetime",
            ],
        )?;
        let driver = self.driver()?;
        let _guard = self.lock();
        let existing: Option<DbConfig> = self.load(&format!("config/{name}"))?;
        let plugin_name = text(
            body,
            "plugin_name",
            existing.as_ref().map_or("", |c| &c.plugin_name),
        )?;
        let plugin = Plugin::parse(plugin_name).ok_or_else(|| {
            CoreError::bad(
                "plugin_name must be postgresql-database-plugin or mysql-database-plugin",
            )
        })?;
        let keep = |f: fn(&DbConfig) -> &str| existing.as_ref().map_or("", f);
        let url = text(body, "connection_url", keep(|c| &c.connection_url))?;
        if url.is_empty() {
            return Err(CoreError::bad("connection_url is required"));
        }
        let config = DbConfig {
            plugin_name: plugin.name().to_owned(),
            connection_url: url.to_owned(),
            username: text(body, "username", keep(|c| &c.username))?.to_owned(),
            password: text(body, "password", keep(|c| &c.password))?.to_owned(),
            // A new password replaces an unsettled rotation; otherwise it stays to be settled.
            pending_password: match body.get("password") {
                Some(_) => None,
                None => existing.as_ref().and_then(|c| c.pending_password.clone()),
            },
            allowed_roles: match body.get("allowed_roles") {
                Some(v) => list_of(Some(v))?,
                None => existing
                    .as_ref()
                    .map_or_else(Vec::new, |c| c.allowed_roles.clone()),
            },
            verify_connection: flag(body, "verify_connection", true)?,
            root_rotation_statements: match body.get("root_rotation_statements") {
                Some(v) => statements::parse(v, "root_rotation_statements")?,
                None => existing
                    .as_ref()
                    .map_or_else(Vec::new, |c| c.root_rotation_statements.clone()),
            },
            password_policy: text(body, "password_policy", keep(|c| &c.password_policy))?
                .to_owned(),
            max_open_connections: match number(body, "max_open_connections")? {
                0 => existing.as_ref().map_or(4, |c| c.max_open_connections),
                n => u32::try_from(n.min(64)).unwrap_or(64),
            },
        };
        if config.username.is_empty() {
            return Err(CoreError::bad(
                "username (the root user Sigil connects as) is required",
            ));
        }
        if !config.password_policy.is_empty() {
            self.passwords.check(&config.password_policy)?;
        }
        statements::check(&config.root_rotation_statements, &["name", "password"])?;
        if config.verify_connection {
            self.invalidate(name);
            let conn = self.connection(
                name,
                &config,
                &config.password,
                GENERATION.load(Ordering::Acquire),
            )?;
            let verified = driver.verify(&conn);
            // The connection just made used settings that may not be stored: never reuse it.
            self.invalidate(name);
            verified.map_err(|e| CoreError::bad(format!("error creating database object: {e}")))?;
        }
        self.store(&format!("config/{name}"), &config)?;
        self.invalidate(name);
        tracing::info!(name, plugin = plugin.name(), "database configured");
        Ok(Response::no_content())
    }

    fn rotate_root(&self, name: &str) -> Result<Response, CoreError> {
        let driver = self.driver()?;
        // Settles an earlier interrupted rotation first.
        self.connect(name)?;
        let _guard = self.lock();
        let generation = GENERATION.load(Ordering::Acquire);
        let mut config = self.config(name)?;
        if config.pending_password.is_some() {
            return Err(CoreError::Conflict(
                "another root rotation of this connection is under way; retry".into(),
            ));
        }
        let conn = self.connection(name, &config, &config.password, generation)?;
        let new = self.new_password(&config)?;
        // The new password is stored before the database learns it: a crash or a lost answer
        // leaves both, and the next connection keeps the one the database accepts.
        config.pending_password = Some(new.to_string());
        self.store(&format!("config/{name}"), &config)?;
        let rendered = statements::render(
            &config.root_rotation_statements,
            &[("name", &config.username), ("password", &new)],
        )?;
        let outcome = driver.set_password(&conn, run(&rendered), &config.username, &new);
        match &outcome {
            Ok(()) => {
                config.password = new.to_string();
                config.pending_password = None;
            }
            // Nothing ran.
            Err(DriverError::Invalid(_)) => config.pending_password = None,
            // Some statements may have run (MySQL commits each one): settled on next use.
            Err(_) => {}
        }
        self.store(&format!("config/{name}"), &config)?;
        self.invalidate(name);
        outcome.map_err(driver_error)?;
        tracing::info!(name, "database root credentials rotated");
        Ok(Response::no_content())
    }

    fn write_role(&self, name: &str, body: &Map<String, Value>) -> Result<Response, CoreError> {
        only(
            body,
            &[
                "db_name",
                "default_ttl",
                "max_ttl",
                "creation_statements",
                "revocation_statements",
                "rollback_statements",
                "renew_statements",
                "credential_type",
            ],
        )?;
        if text(body, "credential_type", "password")? != "password" {
            return Err(CoreError::bad(
                "credential_type: Sigil issues passwords only",
            ));
        }
        let existing: Option<Role> = self.load(&format!("role/{name}"))?;
        let list = |field: &str, old: fn(&Role) -> &Vec<String>| match body.get(field) {
            Some(v) => statements::parse(v, field),
            None => Ok(existing.as_ref().map_or_else(Vec::new, |r| old(r).clone())),
        };
        let seconds = |field: &str, old: fn(&Role) -> u64| match body.get(field) {
            Some(_) => ttl(body, field),
            None => Ok(existing.as_ref().map_or(0, old)),
        };
        let role = Role {
            db_name: text(
                body,
                "db_name",
                existing.as_ref().map_or("", |r| &r.db_name),
            )?
            .to_owned(),
            default_ttl: seconds("default_ttl", |r| r.default_ttl)?,
            max_ttl: seconds("max_ttl", |r| r.max_ttl)?,
            creation_statements: list("creation_statements", |r| &r.creation_statements)?,
            revocation_statements: list("revocation_statements", |r| &r.revocation_statements)?,
            rollback_statements: list("rollback_statements", |r| &r.rollback_statements)?,
            renew_statements: list("renew_statements", |r| &r.renew_statements)?,
        };
        if role.db_name.is_empty() {
            return Err(CoreError::bad("db_name is required"));
        }
        self.config(&role.db_name)?;
        if role.creation_statements.is_empty() {
            return Err(CoreError::bad("creation_statements are required"));
        }
        if role.max_ttl != 0 && role.default_ttl > role.max_ttl {
            return Err(CoreError::bad("default_ttl cannot be longer than max_ttl"));
        }
        // Each list may use only what it is given when it runs.
        let all = ["name", "password", "expiration"];
        statements::check(&role.creation_statements, &all)?;
        statements::check(&role.rollback_statements, &all)?;
        statements::check(&role.revocation_statements, &["name"])?;
        statements::check(&role.renew_statements, &["name", "expiration"])?;
        self.store(&format!("role/{name}"), &role)?;
        Ok(Response::no_content())
    }

    /// A new user for `role_name`, leased to the caller.
    fn creds(
        &self,
        req: &Request,
        role_name: &str,
        caller: &Caller,
        limits: LeaseLimits,
    ) -> Result<Response, CoreError> {
        let role: Role = self
            .load(&format!("role/{role_name}"))?
            .ok_or_else(|| CoreError::bad(format!("unknown role: {role_name}")))?;
        let driver = self.driver()?;
        let (config, conn) = self.connect(&role.db_name)?;
        if !config.allows(role_name) {
            return Err(CoreError::bad(format!(
                "{role_name:?} is not an allowed role of database {:?}",
                role.db_name
            )));
        }
        let (ttl, max_ttl) = lease_ttls(role.default_ttl, role.max_ttl, limits);
        let now = unix_now();
        let username = statements::username(config.plugin()?, &caller.identity.name, role_name)?;
        let password = self.new_password(&config)?;
        let expiration = statements::expiration(now + ttl as i64);
        let values = [
            ("name", username.as_str()),
            ("password", password.as_str()),
            ("expiration", expiration.as_str()),
        ];
        let creation = statements::render(&role.creation_statements, &values)?;
        let lease = NewLease {
            path: req.path.clone(),
            owner: caller.identity.id.clone(),
            issue_time: now,
            ttl,
            max_ttl,
            renewable: true,
            secret: serde_json::to_value(LeaseSecret {
                db_name: role.db_name.clone(),
                username: username.clone(),
                revocation_statements: role.revocation_statements.clone(),
                renew_statements: role.renew_statements.clone(),
            })
            .expect("a lease secret serializes"),
        };
        // The lease first: if Sigil dies after the user exists, the lease still revokes it.
        let lease_id = self.leases.issue(lease)?;
        if let Err(e) = driver.create_user(&conn, run(&creation), &password) {
            // Undo what part of the creation happened (MySQL commits each DDL statement): the
            // role's rollback statements, or the default drop. When the database did not
            // answer, the creation may still complete after the undo: the lease then stays,
            // due now, and the sweeper drops the user (again) until that succeeds.
            let undo =
                statements::render(&role.rollback_statements, &values).and_then(|rollback| {
                    driver
                        .delete_user(&conn, run(&rollback), &username)
                        .map_err(driver_error)
                });
            if undo.is_ok() && !matches!(e, DriverError::Unavailable(_)) {
                self.leases.withdraw(&lease_id)?;
            } else {
                if let Err(r) = &undo {
                    tracing::warn!(role = role_name, error = %r, "rolling back a failed creation failed");
                }
                self.leases.expire_at(&lease_id, now)?;
            }
            return Err(driver_error(e));
        }
        tracing::info!(role = role_name, lease = %lease_id, "database credentials issued");
        let mut resp = Response::data(json!({
            "username": username,
            "password": password.as_str(),
        }));
        resp.lease = Some(LeaseInfo {
            id: lease_id,
            duration: ttl,
            renewable: true,
        });
        Ok(resp)
    }

    /// Revokes a lease's user (its revocation statements, or the driver's default).
    fn revoke_user(&self, secret: &Value) -> Result<(), CoreError> {
        let secret: LeaseSecret =
            serde_json::from_value(secret.clone()).map_err(|_| CoreError::Integrity)?;
        let driver = self.driver()?;
        let (_, conn) = self.connect(&secret.db_name)?;
        let rendered =
            statements::render(&secret.revocation_statements, &[("name", &secret.username)])?;
        driver
            .delete_user(&conn, run(&rendered), &secret.username)
            .map_err(driver_error)
    }

    /// Extends a lease's user to `expire` (unix seconds).
    fn renew_user(&self, secret: &Value, expire: i64) -> Result<(), CoreError> {
        let secret: LeaseSecret =
            serde_json::from_value(secret.clone()).map_err(|_| CoreError::Integrity)?;
        let driver = self.driver()?;
        let (_, conn) = self.connect(&secret.db_name)?;
        let expiration = statements::expiration(expire);
        let rendered = statements::render(
            &secret.renew_statements,
            &[("name", &secret.username), ("expiration", &expiration)],
        )?;
        driver
            .renew_user(&conn, run(&rendered), &secret.username, &expiration)
            .map_err(driver_error)
    }

    fn write_static_role(
        &self,
        name: &str,
        body: &Map<String, Value>,
    ) -> Result<Response, CoreError> {
        only(
            body,
            &[
                "db_name",
                "username",
                "rotation_period",
                "rotation_statements",
                "credential_type",
            ],
        )?;
        if text(body, "credential_type", "password")? != "password" {
            return Err(CoreError::bad(
                "credential_type: Sigil rotates passwords only",
            ));
        }
        let existing: Option<StaticRole> = self.load(&format!("static-role/{name}"))?;
        let db_name = text(
            body,
            "db_name",
            existing.as_ref().map_or("", |r| &r.db_name),
        )?
        .to_owned();
        let username = text(
            body,
            "username",
            existing.as_ref().map_or("", |r| &r.username),
        )?
        .to_owned();
        if let Some(old) = &existing
            && (old.username != username || old.db_name != db_name)
        {
            return Err(CoreError::bad(
                "a static role's db_name and username cannot change",
            ));
        }
        let config = self.config(&db_name)?;
        if !config.allows(name) {
            return Err(CoreError::bad(format!(
                "{name:?} is not an allowed role of database {db_name:?}"
            )));
        }
        if !statements::valid_username(config.plugin()?, &username) {
            return Err(CoreError::bad(
                "username must be an existing user's name of letters, digits, '-', '_' and '.' within the database's length limit",
            ));
        }
        let rotation_period = match body.get("rotation_period") {
            Some(_) => ttl(body, "rotation_period")?,
            None => existing.as_ref().map_or(0, |r| r.rotation_period),
        };
        if rotation_period < MIN_ROTATION {
            return Err(CoreError::bad(
                "rotation_period is required and at least 5 seconds",
            ));
        }
        let rotation_statements = match body.get("rotation_statements") {
            Some(v) => statements::parse(v, "rotation_statements")?,
            None => existing
                .as_ref()
                .map_or_else(Vec::new, |r| r.rotation_statements.clone()),
        };
        statements::check(&rotation_statements, &["name", "password"])?;
        let created = existing.is_none();
        {
            let _guard = self.lock();
            let role = StaticRole {
                db_name,
                username,
                rotation_period,
                rotation_statements,
                password: existing
                    .as_ref()
                    .map_or_else(String::new, |r| r.password.clone()),
                pending: false,
                last_rotation: existing.as_ref().map_or(0, |r| r.last_rotation),
            };
            self.store(&format!("static-role/{name}"), &role)?;
        }
        // As Vault: a new static role's password is rotated at once, so Sigil knows it.
        if created && let Err(e) = self.rotate_static(name) {
            self.delete(&format!("static-role/{name}"))?;
            return Err(e);
        }
        Ok(Response::no_content())
    }

    /// Gives a static role's user a new password.
    fn rotate_static(&self, name: &str) -> Result<(), CoreError> {
        let driver = self.driver()?;
        let key = format!("static-role/{name}");
        let role: StaticRole = self
            .load(&key)?
            .ok_or_else(|| CoreError::bad(format!("no static role named {name:?}")))?;
        let (_, conn) = self.connect(&role.db_name)?;
        let _guard = self.lock();
        let mut role: StaticRole = self.load(&key)?.ok_or(CoreError::Integrity)?;
        let new = self.new_password(&self.config(&role.db_name)?)?;
        role.pending = true;
        self.store(&key, &role)?;
        let rendered = statements::render(
            &role.rotation_statements,
            &[("name", &role.username), ("password", &new)],
        )?;
        let outcome = driver.set_password(&conn, run(&rendered), &role.username, &new);
        if outcome.is_ok() {
            role.password = new.to_string();
            role.pending = false;
            role.last_rotation = unix_now();
            self.store(&key, &role)?;
            tracing::info!(role = name, "static role password rotated");
        }
        outcome.map_err(driver_error)
    }

    /// Rotates the static roles whose period has passed (or whose last rotation was cut short).
    /// Returns how many rotated; failures are logged and retried at the next sweep.
    fn rotate_due(&self, now: i64) -> Result<usize, CoreError> {
        let mut rotated = 0;
        // Once a database fails this sweep, its other roles wait (30 s) instead of each
        // waiting on the same dead database.
        let mut failed: Vec<String> = Vec::new();
        for key in self.view.list("static-role/")? {
            let Some(role) = self.load::<StaticRole>(&key)? else {
                continue;
            };
            if !role.pending && role.last_rotation + role.rotation_period as i64 > now {
                continue;
            }
            let name = &key["static-role/".len()..];
            let mut retry = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
            if retry.get(name).is_some_and(|at| *at > now) {
                continue;
            }
            if failed.contains(&role.db_name) {
                retry.insert(name.to_owned(), now + 30);
                continue;
            }
            drop(retry);
            match self.rotate_static(name) {
                Ok(()) => {
                    rotated += 1;
                    retry = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
                    retry.remove(name);
                }
                Err(e) => {
                    tracing::warn!(role = name, error = %e, "static role rotation failed; retrying in 30 s");
                    retry = self.retry_at.lock().unwrap_or_else(PoisonError::into_inner);
                    retry.insert(name.to_owned(), now + 30);
                    failed.push(role.db_name.clone());
                }
            }
        }
        Ok(rotated)
    }
}

const CONFIGS: &str = "{mount}/config";
const ROLES: &str = "{mount}/roles";
const ROLE: &str = "{mount}/roles/{name}";
const CONFIG: &str = "{mount}/config/{name}";
const RESET: &str = "{mount}/reset/{name}";
const ROTATE_ROOT: &str = "{mount}/rotate-root/{name}";
const CREDS: &str = "{mount}/creds/{name}";
const STATIC_ROLES: &str = "{mount}/static-roles";
const STATIC_ROLE: &str = "{mount}/static-roles/{name}";
const STATIC_CREDS: &str = "{mount}/static-creds/{name}";
const ROTATE_ROLE: &str = "{mount}/rotate-role/{name}";

/// Every route of a database mount: all of them may wait on a database.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(CONFIGS, &["LIST"], "Database: list connections").writing(Writes::Always),
    Route::new(ROLES, &["LIST"], "Database: list roles").writing(Writes::Always),
    Route::new(
        ROLE,
        &["GET", "POST", "PUT", "DELETE"],
        "Database: a role (db_name, creation_statements, revocation_statements, rollback_statements, renew_statements, default_ttl, max_ttl, credential_type)",
    ).writing(Writes::Always),
    Route::new(
        CONFIG,
        &["GET", "POST", "PUT", "DELETE"],
        "Database: a connection (root password never returned)",
    ).writing(Writes::Always),
    Route::new(
        RESET,
        &["POST", "PUT"],
        "Database: close its connections",
    ).writing(Writes::Always),
    Route::new(
        ROTATE_ROOT,
        &["POST", "PUT"],
        "Database: rotate the root password",
    ).writing(Writes::Always),
    Route::new(
        CREDS,
        &["GET"],
        "Database: a new user and password, with a lease",
    ).writing(Writes::Always),
    Route::new(
        STATIC_ROLES,
        &["LIST"],
        "Database: list static roles",
    ).writing(Writes::Always),
    Route::new(
        STATIC_ROLE,
        &["GET", "POST", "PUT", "DELETE"],
        "Database: a static role (an existing user whose password Sigil rotates)",
    ).writing(Writes::Always),
    Route::new(
        STATIC_CREDS,
        &["GET"],
        "Database: a static role's current password",
    ).writing(Writes::Always),
    Route::new(
        ROTATE_ROLE,
        &["POST", "PUT"],
        "Database: rotate a static role's password now",
    ).writing(Writes::Always),
];

impl Engine for DatabaseEngine {
    fn handle(
        &self,
        req: &Request,
        at: &Matched<'_>,
        cx: &Context<'_>,
    ) -> Result<Response, CoreError> {
        self.handle_request(req, at, cx.caller, cx.limits)
    }

    fn exists(&self, at: &Matched<'_>) -> Result<bool, CoreError> {
        self.object_exists(at)
    }

    /// Everything may wait on a database: every route says [`sigil_engine::Writes::Always`],
    /// so nothing runs on the async workers.
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn periodic(&self, now: time::OffsetDateTime) -> Result<usize, CoreError> {
        self.rotate_due(now.unix_timestamp())
    }

    fn revoke(&self, secret: &Value) -> Result<(), CoreError> {
        self.revoke_user(secret)
    }

    fn renew(&self, secret: &Value, expire: i64) -> Result<(), CoreError> {
        self.renew_user(secret, expire)
    }

    fn unmount(&self) {
        self.close_all();
    }
}

fn static_role_json(role: &StaticRole, with_password: bool) -> Value {
    let next = role.last_rotation + role.rotation_period as i64;
    let mut out = json!({
        "db_name": role.db_name,
        "username": role.username,
        "rotation_period": role.rotation_period,
        "rotation_statements": role.rotation_statements,
        "last_vault_rotation": rfc3339_of(role.last_rotation),
        "ttl": (next - unix_now()).max(0),
        "credential_type": "password",
    });
    if with_password {
        out["password"] = json!(role.password);
        if let Some(o) = out.as_object_mut() {
            o.remove("rotation_statements");
            o.remove("credential_type");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use sigil_crypto::{BarrierKey, KeyTerm};
    use sigil_storage::MemoryBackend;

    use super::*;
    use sigil_engine::Barrier;
    use sigil_engine::testing::{MemoryLeases, NoPasswordPolicies};

    /// A database in memory: which root passwords it accepts, whether it is reachable, and
    /// whether it applies a password change but loses the answer.
    #[derive(Debug, Default)]
    struct Fake {
        accepts: Mutex<Vec<String>>,
        down: AtomicBool,
        lose_answer: AtomicBool,
        seen: Mutex<Vec<String>>,
    }

    impl Fake {
        fn login(&self, conn: &Connection) -> Result<(), DriverError> {
            self.seen.lock().unwrap().push(conn.name.clone());
            if self.down.load(Ordering::SeqCst) {
                return Err(DriverError::Unavailable("down".into()));
            }
            if self.accepts.lock().unwrap().contains(&*conn.password) {
                Ok(())
            } else {
                Err(DriverError::LoginRefused("password".into()))
            }
        }
    }

    impl Driver for Fake {
        fn verify(&self, conn: &Connection) -> Result<(), DriverError> {
            self.login(conn)
        }
        fn create_user(
            &self,
            conn: &Connection,
            _: Statements<'_>,
            _: &str,
        ) -> Result<(), DriverError> {
            self.login(conn)
        }
        fn delete_user(
            &self,
            conn: &Connection,
            _: Statements<'_>,
            _: &str,
        ) -> Result<(), DriverError> {
            self.login(conn)
        }
        fn renew_user(
            &self,
            conn: &Connection,
            _: Statements<'_>,
            _: &str,
            _: &str,
        ) -> Result<(), DriverError> {
            self.login(conn)
        }
        fn set_password(
            &self,
            conn: &Connection,
            _: Statements<'_>,
            _: &str,
            password: &str,
        ) -> Result<(), DriverError> {
            self.login(conn)?;
            *self.accepts.lock().unwrap() = vec![password.to_owned()];
            if self.lose_answer.load(Ordering::SeqCst) {
                return Err(DriverError::Unavailable("no answer".into()));
            }
            Ok(())
        }
        fn forget(&self, _: &str) {}
    }

    fn engines(fake: &Arc<Fake>, mounts: &[&str]) -> Vec<DatabaseEngine> {
        let root = BarrierKey::generate(KeyTerm(0)).unwrap();
        let barrier = Arc::new(Barrier::initialize(Arc::new(MemoryBackend::new()), root).unwrap());
        let leases: Arc<dyn Leases> = Arc::new(MemoryLeases::default());
        let passwords: Arc<dyn Passwords> = Arc::new(NoPasswordPolicies);
        mounts
            .iter()
            .map(|m| {
                let driver: Arc<dyn Driver> = fake.clone();
                DatabaseEngine::new(
                    barrier.view(&format!("logical/{m}/")),
                    Some(driver),
                    Arc::clone(&leases),
                    Arc::clone(&passwords),
                    (*m).to_owned(),
                )
            })
            .collect()
    }

    fn configure(e: &DatabaseEngine) {
        let body = json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": "postgresql://{{username}}:{{password}}@db/x?sslmode=disable",
            "username": "root",
            "password": "first-root-pw",
            "allowed_roles": "*",
        });
        e.write_config("pg", body.as_object().unwrap()).unwrap();
    }

    #[test]
    fn an_interrupted_root_rotation_keeps_the_password_the_database_accepts() {
        let fake = Arc::new(Fake::default());
        fake.accepts.lock().unwrap().push("first-root-pw".into());
        let e = engines(&fake, &["m1"]).pop().unwrap();
        configure(&e);

        // The change was applied but its answer lost: the new password is kept.
        fake.lose_answer.store(true, Ordering::SeqCst);
        assert!(e.rotate_root("pg").is_err());
        fake.lose_answer.store(false, Ordering::SeqCst);
        let applied = fake.accepts.lock().unwrap()[0].clone();
        assert!(e.config("pg").unwrap().pending_password.is_some());
        let (config, conn) = e.connect("pg").unwrap();
        assert_eq!(
            (config.password.as_str(), config.pending_password.as_deref()),
            (applied.as_str(), None)
        );
        assert_eq!(*conn.password, applied);

        // The database was down: nothing changed, and while it stays down both passwords are
        // kept; once it is back, the old one is confirmed.
        fake.down.store(true, Ordering::SeqCst);
        assert!(e.rotate_root("pg").is_err());
        assert!(e.connect("pg").is_err());
        assert!(
            e.config("pg").unwrap().pending_password.is_some(),
            "kept while unconfirmed"
        );
        fake.down.store(false, Ordering::SeqCst);
        let (config, _) = e.connect("pg").unwrap();
        assert_eq!(
            (config.password.as_str(), config.pending_password.as_deref()),
            (applied.as_str(), None)
        );

        // A clean rotation.
        e.rotate_root("pg").unwrap();
        let config = e.config("pg").unwrap();
        assert_ne!(config.password, applied);
        assert_eq!(fake.accepts.lock().unwrap()[0], config.password);
    }

    #[test]
    fn two_mounts_with_the_same_connection_name_use_different_connections() {
        let fake = Arc::new(Fake::default());
        fake.accepts.lock().unwrap().push("first-root-pw".into());
        let mut both = engines(&fake, &["uuid-a", "uuid-b"]);
        for e in &both {
            configure(e);
        }
        let b = both.pop().unwrap();
        let a = both.pop().unwrap();
        assert_eq!(a.connect("pg").unwrap().1.name, "uuid-a/pg");
        assert_eq!(b.connect("pg").unwrap().1.name, "uuid-b/pg");
        let seen = fake.seen.lock().unwrap();
        assert!(seen.contains(&"uuid-a/pg".to_owned()) && seen.contains(&"uuid-b/pg".to_owned()));
    }

    #[test]
    fn statements_may_use_only_what_they_get() {
        let fake = Arc::new(Fake::default());
        fake.accepts.lock().unwrap().push("first-root-pw".into());
        let e = engines(&fake, &["m"]).pop().unwrap();
        configure(&e);
        let role = |extra: Value| {
            let mut body = json!({ "db_name": "pg", "creation_statements": "CREATE ROLE \"{{name}}\" PASSWORD '{{password}}'" });
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e.write_role("r", body.as_object().unwrap())
        };
        assert!(role(json!({})).is_ok());
        // Revocation gets only the name: a password there could never be filled in.
        assert!(role(json!({ "revocation_statements": "ALTER ROLE \"{{name}}\" PASSWORD '{{password}}'" })).is_err());
        assert!(role(json!({ "renew_statements": "ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'" })).is_ok());
        assert!(role(json!({ "renew_statements": "{{password}}" })).is_err());
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        for (url, shown) in [
            (
                "postgresql://{{username}}:{{password}}@h:5432/db",
                "postgresql://{{username}}:{{password}}@h:5432/db",
            ),
            (
                "postgresql://root:hunter2@h:5432/db",
                "postgresql://root:*****@h:5432/db",
            ),
            ("root:hunter2@tcp(h:3306)/", "root:*****@tcp(h:3306)/"),
            (
                "{{username}}:{{password}}@tcp(h:3306)/",
                "{{username}}:{{password}}@tcp(h:3306)/",
            ),
            ("host=h user=u", "host=h user=u"),
        ] {
            assert_eq!(mask_url(url), shown);
        }
    }
}
