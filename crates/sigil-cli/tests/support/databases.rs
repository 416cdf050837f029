//! Throwaway PostgreSQL and MariaDB servers for the database engine's tests: each in its own
//! temp directory, on a free loopback port, stopped on drop. As root (CI), PostgreSQL runs as
//! the `postgres` user (initdb refuses root) and MariaDB with `--user=root`.
//!
//! When the binaries are missing the tests say so loudly, record the skip (`scripts/test`
//! counts and names it) and return — unless
//! `SIGIL_REQUIRE_DATABASES` is set (`.ci/run` sets it after installing them), which turns a
//! missing database into a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ROOT_PASSWORD: &str = "Root-Passw0rd-for-tests";

fn is_root() -> bool {
    // The effective uid as `id` prints it (no unsafe libc call in tests).
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Skips (or fails, when databases are required) with a loud message.
fn missing(what: &str) {
    let msg = format!(
        "\n!!!!! SKIPPED: {what} not found. Install it (apt-get install postgresql-15 mariadb-server) or run .ci/run. !!!!!\n"
    );
    if std::env::var_os("SIGIL_REQUIRE_DATABASES").is_some() {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    super::record_skip(&format!("{what} not found"));
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A running PostgreSQL with superuser `postgres` / [`ROOT_PASSWORD`].
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_postgres: bool,
    _tmp: tempfile::TempDir,
}

impl Postgres {
    fn bin_dir() -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts one, or `None` (after a loud message) when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = Self::bin_dir() else {
            missing("PostgreSQL (initdb, pg_ctl under /usr/lib/postgresql)");
            return None;
        };
        let tmp = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(tmp.path()),
            );
        }
        let pg = Postgres {
            port: super::ports::free_port(),
            bin,
            data: tmp.path().join("data"),
            log: tmp.path().join("postgres.log"),
            as_postgres,
            _tmp: tmp,
        };
        let pwfile = pg._tmp.path().join("pw");
        std::fs::write(&pwfile, ROOT_PASSWORD).unwrap();
        if as_postgres {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(pg._tmp.path()),
            );
        }
        run_ok(
            pg.command("initdb")
                .arg("-D")
                .arg(&pg.data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
        );
        pg.start_again();
        Some(pg)
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&self) {
        run_ok(
            self.command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self._tmp.path().display()
                ))
                .args(["-w", "-t", "30", "start"])
                .stdout(Stdio::null()),
        );
        wait_for_port(self.port, "PostgreSQL", &self.log);
    }

    /// Stops the server at once (its data stays).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Vault's connection URL for this server.
    /// The `sigil write` arguments that configure a database connection `database/config/pg`
    /// to this server as its superuser.
    pub fn config_args(&self) -> Vec<String> {
        vec![
            "write".into(),
            "database/config/pg".into(),
            "plugin_name=postgresql-database-plugin".into(),
            format!("connection_url={}", self.url()),
            "username=postgres".into(),
            format!("password={ROOT_PASSWORD}"),
            "allowed_roles=*".into(),
        ]
    }

    pub fn url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` through psql over TCP as `user`; the output (tuples only), or the error.
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname=postgres connect_timeout=5",
                self.port
            ))
            .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// As the superuser.
    pub fn admin(&self, sql: &str) -> String {
        self.psql("postgres", ROOT_PASSWORD, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn user_exists(&self, user: &str) -> bool {
        self.admin(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user}'"
        )) == "1"
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running MariaDB with an administrator `sigilroot`@`%` / [`ROOT_PASSWORD`].
pub struct MariaDb {
    pub port: u16,
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
    client: PathBuf,
    server: PathBuf,
    _tmp: tempfile::TempDir,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| {
        ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
            .iter()
            .map(|d| Path::new(d).join(n))
            .find(|p| p.exists())
    })
}

impl MariaDb {
    /// Starts one, or `None` (after a loud message) when MariaDB is not installed.
    pub fn start() -> Option<MariaDb> {
        let (Some(server), Some(install), Some(client)) = (
            which(&["mariadbd", "mysqld"]),
            which(&["mariadb-install-db", "mysql_install_db"]),
            which(&["mariadb", "mysql"]),
        ) else {
            missing("MariaDB (mariadbd, mariadb-install-db, mariadb)");
            return None;
        };
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut install = Command::new(install);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=root");
        }
        run_ok(install.stdout(Stdio::null()));
        let mut db = MariaDb {
            port: super::ports::free_port(),
            child: None,
            data,
            log: tmp.path().join("mariadb.log"),
            client,
            server,
            _tmp: tmp,
        };
        db.start_again();
        let socket = db.socket();
        run_ok(Command::new(&db.client).args(["--no-defaults", "-uroot"]).arg(format!("--socket={}", socket.display())).arg("-e").arg(format!(
            "CREATE USER 'sigilroot'@'%' IDENTIFIED BY '{ROOT_PASSWORD}'; GRANT ALL PRIVILEGES ON *.* TO 'sigilroot'@'%' WITH GRANT OPTION; CREATE DATABASE app; CREATE TABLE app.t (v INT); INSERT INTO app.t VALUES (42);"
        )));
        Some(db)
    }

    fn socket(&self) -> PathBuf {
        self._tmp.path().join("mariadb.sock")
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&mut self) {
        let mut cmd = Command::new(&self.server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self._tmp.path().join("pid").display()
            ))
            .arg(format!("--log-error={}", self.log.display()))
            .args(["--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            cmd.arg("--user=root");
        }
        self.child = Some(cmd.spawn().expect("start mariadbd"));
        wait_for_port(self.port, "MariaDB", &self.log);
    }

    /// Stops the server at once (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// Vault's connection URL (the Go driver's DSN).
    pub fn url(&self) -> String {
        format!(
            "{{{{username}}}}:{{{{password}}}}@tcp(127.0.0.1:{})/",
            self.port
        )
    }

    /// Runs `sql` over TCP as `user`; the output (batch mode, no headers), or the error.
    pub fn sql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.client)
            .args([
                "--no-defaults",
                "-h",
                "127.0.0.1",
                "--protocol=TCP",
                "-N",
                "-B",
            ])
            .arg(format!("-P{}", self.port))
            .arg(format!("-u{user}"))
            .arg(format!("-p{password}"))
            .args(["--connect-timeout=5", "-e", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn admin(&self, sql: &str) -> String {
        self.sql("sigilroot", ROOT_PASSWORD, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn user_exists(&self, user: &str) -> bool {
        self.admin(&format!(
            "SELECT count(*) FROM mysql.user WHERE User = '{user}'"
        )) != "0"
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
