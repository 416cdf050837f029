//! The database engine and leases against real PostgreSQL and MariaDB servers started by the
//! harness (tests/support/databases.rs), driven through the real `sigil` binary as a Vault
//! user would: `sigil secrets enable database`, `sigil write database/config/…`,
//! `sigil read database/creds/…`, `sigil lease …`.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::databases::{MariaDb, Postgres, ROOT_PASSWORD};
use support::{Server, eventually, ok, stderr, stdout};

fn json(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

/// `sigil read --format json PATH` as the admin.
fn read(s: &Server, path: &str) -> Value {
    json(s.sigil(&["read", "--format", "json", path]))
}

struct Creds {
    lease: String,
    user: String,
    password: String,
    duration: u64,
}

fn creds(v: &Value) -> Creds {
    Creds {
        lease: v["lease_id"].as_str().unwrap().to_owned(),
        user: v["data"]["username"].as_str().unwrap().to_owned(),
        password: v["data"]["password"].as_str().unwrap().to_owned(),
        duration: v["lease_duration"].as_u64().unwrap(),
    }
}

fn configure_postgres(s: &Server, pg: &Postgres) {
    ok(s.sigil(&["secrets", "enable", "database"]));
    let args = pg.config_args();
    ok(s.sigil(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    pg.admin("CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t VALUES (42)");
}

fn pg_role(s: &Server, name: &str, ttl: &str, max_ttl: &str) {
    ok(s.sigil(&[
        "write",
        &format!("database/roles/{name}"),
        "db_name=pg",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON t TO \"{{name}}\";",
        &format!("default_ttl={ttl}"),
        &format!("max_ttl={max_ttl}"),
    ]));
}

#[test]
fn postgres_creds_log_in_expire_renew_and_revoke() {
    let Some(pg) = Postgres::start() else { return };
    let s = Server::start();
    configure_postgres(&s, &pg);
    // The root password is stored, never shown.
    let config = read(&s, "database/config/pg");
    assert_eq!(config["data"]["connection_details"]["username"], "postgres");
    assert!(!config.to_string().contains(ROOT_PASSWORD), "{config}");

    pg_role(&s, "short", "6s", "1m");
    let table = ok(s.sigil(&["read", "database/creds/short"]));
    for key in [
        "lease_id",
        "lease_duration",
        "lease_renewable",
        "password",
        "username",
    ] {
        assert!(table.contains(key), "{table}");
    }
    let c = creds(&read(&s, "database/creds/short"));
    assert!(c.lease.starts_with("database/creds/short/"), "{}", c.lease);
    assert_eq!(c.duration, 6);
    // The user logs in and can do what the role grants, and nothing more.
    assert_eq!(
        pg.psql(&c.user, &c.password, "SELECT v FROM t").unwrap(),
        "42"
    );
    let denied = pg
        .psql(&c.user, &c.password, "INSERT INTO t VALUES (1)")
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    // After its TTL the lease is revoked: the login fails and the user is gone.
    eventually(20, || !pg.user_exists(&c.user));
    assert!(pg.psql(&c.user, &c.password, "SELECT 1").is_err());
    let gone = s.sigil(&["lease", "lookup", &c.lease]);
    assert!(stderr(&gone).contains("invalid lease"), "{}", stderr(&gone));

    // Renew extends up to max TTL and no further.
    pg_role(&s, "renewable", "10s", "20s");
    let c = creds(&read(&s, "database/creds/renewable"));
    let renewed = json(s.sigil(&[
        "lease",
        "renew",
        "--increment",
        "15s",
        "--format",
        "json",
        &c.lease,
    ]));
    assert_eq!(renewed["lease_id"], c.lease.as_str());
    let d = renewed["lease_duration"].as_u64().unwrap();
    assert!((14..=15).contains(&d), "{renewed}");
    let capped = s.sigil(&[
        "lease",
        "renew",
        "--increment",
        "1h",
        "--format",
        "json",
        &c.lease,
    ]);
    let capped_json: Value = serde_json::from_str(&ok_keep(&capped)).unwrap();
    assert!(
        capped_json["lease_duration"].as_u64().unwrap() <= 20,
        "{capped_json}"
    );
    assert!(stderr(&capped).contains("capped"), "{}", stderr(&capped));
    let lookup = json(s.sigil(&["lease", "lookup", "--format", "json", &c.lease]));
    assert!(lookup["data"]["ttl"].as_u64().unwrap() <= 20, "{lookup}");
    assert!(lookup["data"]["last_renewal"].is_string(), "{lookup}");
    // PostgreSQL's own expiry of the login follows the renewal (VALID UNTIL).
    let valid_until = pg.admin(&format!(
        "SELECT extract(epoch from rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{}'",
        c.user
    ));
    let lease_end = support::raw::now() + lookup["data"]["ttl"].as_i64().unwrap();
    assert!(
        (valid_until.parse::<i64>().unwrap() - lease_end).abs() <= 2,
        "{valid_until} vs {lease_end}"
    );
    // It still ends at the max TTL (the lookup above says at most 20 s from now; the wait is
    // a generous timeout, not the claim).
    eventually(60, || !pg.user_exists(&c.user));

    // Revoke and revoke-prefix work at once.
    pg_role(&s, "app", "1h", "2h");
    let a = creds(&read(&s, "database/creds/app"));
    let b = creds(&read(&s, "database/creds/app"));
    let other = creds(&read(&s, "database/creds/renewable"));
    assert_ne!(a.user, b.user);
    let listed = ok(s.sigil(&["lease", "list", "database/creds/app"]));
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(ok(s.sigil(&["lease", "revoke", &a.lease])).contains("Revoked lease"));
    assert!(!pg.user_exists(&a.user));
    assert!(pg.user_exists(&b.user));
    ok(s.sigil(&["lease", "revoke", "--prefix", "database/creds/app"]));
    assert!(!pg.user_exists(&b.user));
    assert!(pg.user_exists(&other.user), "a prefix stops at its path");
    // A revoked user's open session ends too.
    let c = creds(&read(&s, "database/creds/app"));
    let mut session = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "PGPASSWORD={} psql 'host=127.0.0.1 port={} user={} dbname=postgres' -X -tA -c 'SELECT pg_sleep(30)'",
            c.password, pg.port, c.user
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(10, || {
        pg.admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'",
            c.user
        )) == "1"
    });
    ok(s.sigil(&["lease", "revoke", &c.lease]));
    let end = Instant::now() + Duration::from_secs(30);
    while session.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        session.try_wait().unwrap().is_some(),
        "the revoked user's session still runs"
    );
    // Neither the root password nor a generated one is ever logged.
    let log = s.log_text();
    assert!(!log.contains(ROOT_PASSWORD) && !log.contains(&c.password));
}

/// `ok` that keeps stderr's warnings for the caller to check.
fn ok_keep(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
}

/// A static role's current password, read when its next rotation is at least 2 s away (so a
/// login right after does not race the rotation).
fn static_password(s: &Server, role: &str) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let v = read(s, &format!("database/static-creds/{role}"));
        if v["data"]["ttl"].as_u64().unwrap() >= 2 {
            return v["data"]["password"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("static role {role}: no password with 2 s to spare within 30 s");
}

#[test]
fn mariadb_creds_static_roles_and_root_rotation() {
    let Some(db) = MariaDb::start() else { return };
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "database"]));
    ok(s.sigil(&[
        "write",
        "database/config/maria",
        "plugin_name=mysql-database-plugin",
        &format!("connection_url={}", db.url()),
        "username=sigilroot",
        &format!("password={ROOT_PASSWORD}"),
        "allowed_roles=app,svc,svc2",
    ]));
    ok(s.sigil(&[
        "write",
        "database/roles/app",
        "db_name=maria",
        "creation_statements=CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON app.* TO '{{name}}'@'%';",
        "default_ttl=6s",
        "max_ttl=1m",
    ]));
    let c = creds(&read(&s, "database/creds/app"));
    assert!(c.user.len() <= 32, "{}", c.user);
    assert_eq!(
        db.sql(&c.user, &c.password, "SELECT v FROM app.t").unwrap(),
        "42"
    );
    let denied = db
        .sql(&c.user, &c.password, "INSERT INTO app.t VALUES (1)")
        .unwrap_err();
    assert!(denied.contains("denied"), "{denied}");
    eventually(15, || !db.user_exists(&c.user));
    assert!(db.sql(&c.user, &c.password, "SELECT 1").is_err());

    // A role the database does not allow gets nothing.
    ok(s.sigil(&[
        "write",
        "database/roles/other",
        "db_name=maria",
        "creation_statements=CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
    ]));
    let refused = s.sigil(&["read", "database/creds/other"]);
    assert!(
        stderr(&refused).contains("not an allowed role"),
        "{}",
        stderr(&refused)
    );

    // A static role: Sigil takes over an existing user's password and rotates it on schedule.
    db.admin(
        "CREATE USER 'svc'@'%' IDENTIFIED BY 'Initial-pw-123'; GRANT SELECT ON app.* TO 'svc'@'%'",
    );
    ok(s.sigil(&[
        "write",
        "database/static-roles/svc",
        "db_name=maria",
        "username=svc",
        "rotation_period=5s",
    ]));
    assert!(
        db.sql("svc", "Initial-pw-123", "SELECT 1").is_err(),
        "rotated at creation"
    );
    let first = static_password(&s, "svc");
    assert_eq!(db.sql("svc", &first, "SELECT v FROM app.t").unwrap(), "42");
    let table = ok(s.sigil(&["read", "database/static-creds/svc"]));
    assert!(
        table.contains("last_vault_rotation") && table.contains("rotation_period"),
        "{table}"
    );
    eventually(20, || static_password(&s, "svc") != first);
    let second = static_password(&s, "svc");
    assert_eq!(db.sql("svc", &second, "SELECT 1").unwrap(), "1");
    assert!(db.sql("svc", &first, "SELECT 1").is_err());
    ok(s.sigil(&["write", "-f", "database/rotate-role/svc"]));
    assert_ne!(static_password(&s, "svc"), second);
    let bad_user = s.sigil(&[
        "write",
        "database/static-roles/svc2",
        "db_name=maria",
        "username=svc'@'%' IDENTIFIED BY 'x",
        "rotation_period=1h",
    ]);
    assert!(
        stderr(&bad_user).contains("username must be"),
        "{}",
        stderr(&bad_user)
    );

    // rotate-root: the old root password stops working; Sigil keeps working.
    ok(s.sigil(&["write", "-f", "database/rotate-root/maria"]));
    assert!(db.sql("sigilroot", ROOT_PASSWORD, "SELECT 1").is_err());
    let c = creds(&read(&s, "database/creds/app"));
    assert_eq!(db.sql(&c.user, &c.password, "SELECT 1").unwrap(), "1");
    ok(s.sigil(&["lease", "revoke", &c.lease]));
    assert!(db.sql(&c.user, &c.password, "SELECT 1").is_err());
    assert!(
        !read(&s, "database/config/maria")
            .to_string()
            .contains(ROOT_PASSWORD)
    );
}

#[test]
fn postgres_root_rotation_and_no_injection_through_names() {
    let Some(pg) = Postgres::start() else { return };
    let s = Server::start();
    configure_postgres(&s, &pg);
    pg_role(&s, "app", "1h", "1h");
    // Names that try to break out of a quote are refused before they reach any statement.
    for evil in ["x'; DROP TABLE t; --", "x\"; DROP TABLE t; --", "a b"] {
        let out = s.sigil(&[
            "write",
            &format!("database/roles/{evil}"),
            "db_name=pg",
            "creation_statements=CREATE ROLE \"{{name}}\";",
        ]);
        assert!(!out.status.success(), "{evil}");
    }
    // An identity whose name is odd still gets a plain generated user name.
    let key = s.new_identity("ops.team_1-x", &["dbuser"]);
    std::fs::write(
        s.tmp.path().join("dbuser.hcl"),
        "path \"database/creds/app\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    ok(s.sigil(&[
        "policy",
        "write",
        "dbuser",
        s.tmp.path().join("dbuser.hcl").to_str().unwrap(),
    ]));
    let v: Value = serde_json::from_str(&ok(
        s.sigil_as(&key, &["read", "--format", "json", "database/creds/app"])
    ))
    .unwrap();
    let user = v["data"]["username"].as_str().unwrap();
    assert!(user.starts_with("v-opsteam1-app-"), "{user}");
    assert!(
        user.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{user}"
    );
    // A statement with an unknown placeholder is refused when the role is written.
    let bad = s.sigil(&[
        "write",
        "database/roles/bad",
        "db_name=pg",
        "creation_statements=CREATE ROLE \"{{name}}\" PASSWORD '{{secret}}';",
    ]);
    assert!(
        stderr(&bad).contains("unknown placeholder"),
        "{}",
        stderr(&bad)
    );
    // A statement the database refuses: a clear 400, no lease left behind, no user.
    pg_role_with(
        &s,
        "broken",
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON no_such_table TO \"{{name}}\";",
    );
    let failed = s.sigil(&["read", "database/creds/broken"]);
    let err = stderr(&failed);
    assert!(
        err.contains("400") && err.contains("no_such_table"),
        "{err}"
    );
    let left = s.sigil(&["lease", "list", "database/creds/broken"]);
    assert!(!left.status.success(), "{}", stdout(&left));
    assert_eq!(
        pg.admin("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%-broken-%'"),
        "0"
    );
    assert_eq!(
        pg.admin("SELECT v FROM t"),
        "42",
        "the table is still there"
    );

    // A password policy (Vault's HCL) shapes the generated passwords, symbols included.
    let policy = "length = 32\nrule \"charset\" {\n  charset = \"abcdefghijklmnopqrstuvwxyz\"\n  min-chars = 2\n}\nrule \"charset\" {\n  charset = \"!#%&*+-=?@^_~\"\n  min-chars = 4\n}\n";
    ok(s.sigil(&[
        "write",
        "sys/policies/password/sym",
        &format!("policy={policy}"),
    ]));
    let generated = read(&s, "sys/policies/password/sym/generate");
    assert_eq!(generated["data"]["password"].as_str().unwrap().len(), 32);
    let quote = s.sigil(&[
        "write",
        "sys/policies/password/quote",
        "policy=length = 20\nrule \"charset\" {\n  charset = \"ab'c\"\n}\n",
    ]);
    assert!(
        stderr(&quote).contains("invalid password policy"),
        "{}",
        stderr(&quote)
    );
    ok(s.sigil(&["write", "database/config/pg", "password_policy=sym"]));
    let c = creds(&read(&s, "database/creds/app"));
    assert_eq!(c.password.len(), 32);
    let symbols = c
        .password
        .bytes()
        .filter(|b| b"!#%&*+-=?@^_~".contains(b))
        .count();
    assert!(symbols >= 4, "{}", c.password);
    assert_eq!(
        pg.psql(&c.user, &c.password, "SELECT v FROM t").unwrap(),
        "42"
    );

    // rotate-root: the old root password stops working; Sigil keeps working.
    ok(s.sigil(&["write", "-f", "database/rotate-root/pg"]));
    assert!(pg.psql("postgres", ROOT_PASSWORD, "SELECT 1").is_err());
    let c = creds(&read(&s, "database/creds/app"));
    assert_eq!(
        pg.psql(&c.user, &c.password, "SELECT v FROM t").unwrap(),
        "42"
    );
    ok(s.sigil(&["lease", "revoke", &c.lease]));
    assert!(pg.psql(&c.user, &c.password, "SELECT 1").is_err());
}

fn pg_role_with(s: &Server, name: &str, creation: &str) {
    ok(s.sigil(&[
        "write",
        &format!("database/roles/{name}"),
        "db_name=pg",
        &format!("creation_statements={creation}"),
    ]));
}

#[test]
fn a_dead_database_fails_fast_and_revocations_wait_for_it() {
    let Some(pg) = Postgres::start() else { return };
    let s = Server::start();
    configure_postgres(&s, &pg);
    pg_role(&s, "short", "2s", "1m");
    let c = creds(&read(&s, "database/creds/short"));
    pg.stop();
    let started = Instant::now();
    let failed = s.sigil(&["read", "database/creds/short"]);
    let err = stderr(&failed);
    assert!(
        err.contains("502") && err.contains("database unavailable"),
        "{err}"
    );
    // No hang (a generous bound: the connect timeout is 5 s, and the connection is refused
    // at once).
    assert!(started.elapsed() < Duration::from_secs(60));
    // Other requests are not held up while revocations of the dead database fail: wait until
    // the lease has expired and a revocation has failed, then write.
    eventually(60, || {
        s.log_text()
            .lines()
            .any(|l| l.contains(&c.lease) && l.contains("will retry"))
    });
    ok(s.sigil(&["kv", "put", "secret/x", "a=1"]));
    let lookup = json(s.sigil(&["lease", "lookup", "--format", "json", &c.lease]));
    assert_eq!(
        lookup["data"]["ttl"], 0,
        "expired but not yet revoked: {lookup}"
    );
    pg.start_again();
    eventually(45, || !pg.user_exists(&c.user));
    let gone = s.sigil(&["lease", "lookup", &c.lease]);
    assert!(stderr(&gone).contains("invalid lease"), "{}", stderr(&gone));
    assert!(s.log_text().contains("will retry"));
}

#[test]
fn leases_survive_kill9_and_restart() {
    let Some(pg) = Postgres::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_data_dir(&data, false);
    let admin = s.new_key("admin");
    s.init_and_unseal(&admin);
    configure_postgres(&s, &pg);
    pg_role(&s, "short", "2s", "1m");
    pg_role(&s, "long", "30s", "1m");
    let a = creds(&read(&s, "database/creds/short"));
    let b = creds(&read(&s, "database/creds/long"));
    let lookup = json(s.sigil(&["lease", "lookup", "--format", "json", &a.lease]));
    let expires = support::raw::now() + lookup["data"]["ttl"].as_i64().unwrap();
    s.kill9();
    // Down until the short lease has expired.
    eventually(30, || support::raw::now() > expires);
    let mut s = Server::start_data_dir(&data, true);
    s.env
        .push(("SIGIL_KEY".into(), admin.to_str().unwrap().to_owned()));
    ok(s.sigil(&["operator", "unseal"]));
    // The lease that expired while Sigil was down is revoked at once; the live one on time.
    eventually(10, || !pg.user_exists(&a.user));
    assert!(pg.user_exists(&b.user));
    assert_eq!(
        pg.psql(&b.user, &b.password, "SELECT v FROM t").unwrap(),
        "42"
    );
    eventually(40, || !pg.user_exists(&b.user));
}

/// The response that hands out credentials records their lease id in the audit log, in clear
/// (it carries no authority), so that a revocation can be matched to it; the password does not
/// appear.
#[test]
fn the_audit_log_names_each_lease() {
    let Some(pg) = Postgres::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, log) = (tmp.path().join("state"), tmp.path().join("audit.log"));
    let s = Server::start_in(
        tmp,
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--audit-file",
            log.to_str().unwrap(),
        ],
        &[],
    );
    configure_postgres(&s, &pg);
    pg_role(&s, "app", "1h", "2h");
    let c = creds(&read(&s, "database/creds/app"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&c.password));
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let issued = entries
        .iter()
        .find(|e| e["type"] == "response" && e["path"] == "database/creds/app")
        .expect("the response entry");
    assert_eq!(issued["lease_id"], c.lease.as_str());
    assert!(
        entries
            .iter()
            .filter(|e| e["path"] != "database/creds/app")
            .all(|e| e.get("lease_id").is_none())
    );
}

/// A server with the role `app` on `pg` and two identities, alice and bob, whose policy `app`
/// (written from the returned file) lets them read its credentials.
fn alice_and_bob(pg: &Postgres) -> (Server, PathBuf, PathBuf, PathBuf) {
    let s = Server::start();
    configure_postgres(&s, pg);
    pg_role(&s, "app", "1h", "2h");
    let hcl = s.tmp.path().join("app.hcl");
    std::fs::write(
        &hcl,
        "path \"database/creds/app\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "app", hcl.to_str().unwrap()]));
    let alice = s.new_identity("alice", &["app"]);
    let bob = s.new_identity("bob", &["app"]);
    (s, hcl, alice, bob)
}

/// Deleting an identity ends its leases, as revoking a Vault token ends the token's: the
/// sweeper revokes its database users within seconds; another identity's lease lives on.
#[test]
fn deleting_an_identity_revokes_its_leases() {
    let Some(pg) = Postgres::start() else { return };
    let (s, _, alice, bob) = alice_and_bob(&pg);
    let get = |key| {
        creds(
            &serde_json::from_str(&ok(
                s.sigil_as(key, &["read", "--format", "json", "database/creds/app"])
            ))
            .unwrap(),
        )
    };
    let (a1, a2, b) = (get(&alice), get(&alice), get(&bob));
    for c in [&a1, &a2, &b] {
        assert!(pg.user_exists(&c.user));
    }
    ok(s.sigil(&["identity", "delete", "alice"]));
    eventually(20, || {
        !pg.user_exists(&a1.user) && !pg.user_exists(&a2.user)
    });
    for c in [&a1, &a2] {
        let out = s.sigil(&["lease", "lookup", &c.lease]);
        assert!(!out.status.success(), "{} is still a lease", c.lease);
    }
    assert!(pg.user_exists(&b.user), "bob's lease is not alice's");
    let left = json(s.sigil(&["lease", "lookup", "--format", "json", &b.lease]));
    assert!(left["data"]["ttl"].as_u64().unwrap() > 3500, "{left}");
}

/// Disabling an identity (docs/threat-model.md, "Compromised client key") refuses its key at
/// once and leaves its leases alone: the database users it holds keep working until their TTL
/// or a revocation; enabling it again restores it. (Deleting it ends them: the test above.)
#[test]
fn disabling_an_identity_refuses_its_key_and_keeps_its_leases() {
    let Some(pg) = Postgres::start() else { return };
    let (s, _, alice, _) = alice_and_bob(&pg);
    let got: Value = serde_json::from_str(&ok(
        s.sigil_as(&alice, &["read", "--format", "json", "database/creds/app"])
    ))
    .unwrap();
    let c = creds(&got);
    ok(s.sigil(&["write", "identity/entity/name/alice", "disabled=true"]));
    let identity = read(&s, "identity/entity/name/alice");
    assert_eq!(identity["data"]["disabled"], true, "{identity}");
    let refused = s.sigil_as(&alice, &["read", "database/creds/app"]);
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    // The lease and the user it holds are untouched.
    let lookup = json(s.sigil(&["lease", "lookup", "--format", "json", &c.lease]));
    assert!(lookup["data"]["ttl"].as_u64().unwrap() > 3500, "{lookup}");
    assert!(pg.user_exists(&c.user));
    assert_eq!(pg.psql(&c.user, &c.password, "SELECT 1").unwrap(), "1");
    ok(s.sigil(&["write", "identity/entity/name/alice", "disabled=false"]));
    ok(s.sigil_as(&alice, &["read", "database/creds/app"]));
}

#[test]
fn another_identity_needs_policy_for_a_lease() {
    let Some(pg) = Postgres::start() else { return };
    let (s, hcl, alice, bob) = alice_and_bob(&pg);
    let v: Value = serde_json::from_str(&ok(
        s.sigil_as(&alice, &["read", "--format", "json", "database/creds/app"])
    ))
    .unwrap();
    let lease = v["lease_id"].as_str().unwrap().to_owned();
    let user = v["data"]["username"].as_str().unwrap().to_owned();
    // Bob knows the id but holds no policy on it: every operation is refused, and he cannot
    // tell it from a lease that does not exist.
    for args in [
        vec!["lease", "lookup", lease.as_str()],
        vec!["lease", "renew", lease.as_str()],
        vec!["lease", "revoke", lease.as_str()],
        vec!["lease", "lookup", "database/creds/app/nonexistent"],
    ] {
        let out = s.sigil_as(&bob, &args);
        assert!(stderr(&out).contains("403"), "{args:?}: {}", stderr(&out));
    }
    assert!(pg.user_exists(&user));
    // Alice, the owner, needs no policy on sys/leases.
    ok(s.sigil_as(&alice, &["lease", "lookup", &lease]));
    // `vault lease renew` sends increment 0: the lease's own TTL, as Vault.
    let renewed: Value = serde_json::from_str(&ok(s.sigil_as(
        &alice,
        &[
            "lease",
            "renew",
            "--increment",
            "0",
            "--format",
            "json",
            &lease,
        ],
    )))
    .unwrap();
    let d = renewed["lease_duration"].as_u64().unwrap();
    assert!((3595..=3600).contains(&d), "{renewed}");
    // Prefix revocation and listing need sudo.
    let prefix = s.sigil_as(
        &alice,
        &["lease", "revoke", "--prefix", "database/creds/app"],
    );
    assert!(stderr(&prefix).contains("403"), "{}", stderr(&prefix));
    // With a policy on the lease, Bob may revoke it.
    std::fs::write(
        &hcl,
        "path \"database/creds/app\" { capabilities = [\"read\"] }\npath \"sys/leases/revoke/database/creds/app/*\" { capabilities = [\"update\"] }\n",
    )
    .unwrap();
    ok(s.sigil(&["policy", "write", "app", hcl.to_str().unwrap()]));
    ok(s.sigil_as(&bob, &["lease", "revoke", &lease]));
    assert!(!pg.user_exists(&user));
}

#[test]
fn revoke_force_forgets_leases_of_a_backend_that_is_gone() {
    let Some(pg) = Postgres::start() else { return };
    let s = Server::start();
    configure_postgres(&s, &pg);
    pg_role(&s, "app", "1h", "2h");
    // A static role on PostgreSQL too: rotated at creation and on demand.
    pg.admin("CREATE ROLE svc LOGIN PASSWORD 'Initial-pw-123'");
    ok(s.sigil(&[
        "write",
        "database/static-roles/svc",
        "db_name=pg",
        "username=svc",
        "rotation_period=1h",
    ]));
    assert!(pg.psql("svc", "Initial-pw-123", "SELECT 1").is_err());
    let first = static_password(&s, "svc");
    assert_eq!(pg.psql("svc", &first, "SELECT 1").unwrap(), "1");
    ok(s.sigil(&["write", "-f", "database/rotate-role/svc"]));
    let second = static_password(&s, "svc");
    assert_ne!(first, second);
    assert_eq!(pg.psql("svc", &second, "SELECT 1").unwrap(), "1");

    let c = creds(&read(&s, "database/creds/app"));
    let tidy = json(s.sigil(&["write", "-f", "--format", "json", "sys/leases/tidy"]));
    assert_eq!(tidy["data"]["dropped"], 0, "{tidy}");
    assert_eq!(tidy["data"]["leases"], 1, "{tidy}");
    // The connection is deleted: the lease can no longer be revoked...
    ok(s.sigil(&["delete", "database/config/pg"]));
    let refused = s.sigil(&["lease", "revoke", "-prefix", "database/creds/app"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no database configuration"),
        "{}",
        stderr(&refused)
    );
    // ...so it is forced away; the user it made is left for the operator to drop.
    let forced = ok(s.sigil(&["lease", "revoke", "-prefix", "-force", "database/creds/app"]));
    assert!(forced.contains("Force revoked"), "{forced}");
    let gone = s.sigil(&["lease", "lookup", &c.lease]);
    assert!(stderr(&gone).contains("invalid lease"), "{}", stderr(&gone));
    assert!(pg.user_exists(&c.user));
    assert!(s.log_text().contains("revoke-force"));
}
