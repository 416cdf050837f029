//! The findings of the security review (issue 17), each reproduced against the real binary
//! over TLS on loopback as the reviewer did, and refused.

mod support;

use support::{Server, ok, stderr};

fn policy(s: &Server, name: &str, hcl: &str) {
    let file = s.tmp.path().join(format!("{name}.hcl"));
    std::fs::write(&file, hcl).unwrap();
    ok(s.sigil(&["policy", "write", name, file.to_str().unwrap()]));
}

fn denied(out: std::process::Output, what: &str) {
    assert!(!out.status.success(), "{what}: succeeded");
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("permission denied"),
        "{what}: {err}"
    );
}

/// Finding 1: with `database/roles/*` and `secret/*` allowed but `database/roles/admin` and
/// `secret/config` denied, the same paths with a `/` appended were read and rewritten.
#[test]
fn a_trailing_slash_does_not_step_around_a_deny() {
    let s = Server::start();
    ok(s.sigil(&["secrets", "enable", "database"]));
    ok(s.sigil(&[
        "write",
        "database/config/main",
        "plugin_name=postgresql-database-plugin",
        "connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres",
        "username=postgres",
        "password=unused",
        "verify_connection=false",
        "allowed_roles=*",
    ]));
    ok(s.sigil(&[
        "write",
        "database/roles/admin",
        "db_name=main",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH SUPERUSER LOGIN PASSWORD '{{password}}'",
    ]));
    policy(
        &s,
        "almost",
        r#"
path "database/roles/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "database/roles/admin" { capabilities = ["deny"] }
path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "secret/config" { capabilities = ["deny"] }
"#,
    );
    let mallory = s.new_identity("mallory", &["almost"]);
    for path in ["database/roles/admin", "database/roles/admin/"] {
        denied(s.sigil_as(&mallory, &["read", path]), path);
        denied(
            s.sigil_as(
                &mallory,
                &[
                    "write",
                    path,
                    "db_name=main",
                    "creation_statements=SELECT 1",
                ],
            ),
            path,
        );
        denied(s.sigil_as(&mallory, &["delete", path]), path);
    }
    for path in ["secret/config", "secret/config/"] {
        denied(
            s.sigil_as(&mallory, &["write", path, "max_versions=1"]),
            path,
        );
        denied(s.sigil_as(&mallory, &["read", path]), path);
    }
    // The admin role is as it was; what the policy grants still works.
    let role = ok(s.sigil(&["read", "-field=creation_statements", "database/roles/admin"]));
    assert!(role.contains("SUPERUSER"), "{role}");
    ok(s.sigil_as(
        &mallory,
        &[
            "write",
            "database/roles/app/",
            "db_name=main",
            "creation_statements=SELECT 1",
        ],
    ));
    ok(s.sigil_as(&mallory, &["read", "database/roles/app"]));
}

/// Finding 2: an identity with only `create`/`update` on its team's group made itself a member
/// with `policies=["admin"]` and then held `sudo` everywhere.
#[test]
fn editing_a_group_does_not_make_anyone_admin() {
    let s = Server::start();
    policy(
        &s,
        "team-lead",
        r#"path "identity/group/name/team-a" { capabilities = ["create", "update", "read"] }"#,
    );
    let mallory = s.new_identity("mallory", &["team-lead"]);
    let out = s.sigil_as(
        &mallory,
        &[
            "group", "create", "team-a", "--policy", "admin", "--member", "mallory",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("only an admin may grant the admin policy"),
        "{err}"
    );
    // Still no admin: the sudo path stays closed to her, and the group holds nothing.
    denied(s.sigil_as(&mallory, &["policy", "list"]), "policy list");
    ok(s.sigil_as(
        &mallory,
        &[
            "group",
            "create",
            "team-a",
            "--policy",
            "team-lead",
            "--member",
            "mallory",
        ],
    ));
}

/// Finding 5: 4096 connections that finished the TLS handshake and then sent nothing filled
/// the connection table, and new clients were reset for as long as the attacker kept them.
/// Now one address holds at most its share, others are served at once, and silent
/// connections (before any request, after the HTTP/2 preface, idle after a request) close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_lock_clients_out() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let s = Server::start();
    let raw = support::raw::Raw::new(&s, &s.admin_key()).await;
    let attacker: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let started = std::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4200 {
        silent.extend(raw.connect_from(attacker, &[]).await);
    }
    // An HTTP/2 connection that sends its preface and then nothing, and an HTTP/1.1 one that
    // makes one request and then keeps the connection idle.
    let third: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let mut h2 = raw.connect_from(third, &[b"h2"]).await.expect("connected");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut idle = raw.connect_from(third, &[]).await.expect("connected");
    idle.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        silent.len() <= 256,
        "one address held {} connections",
        silent.len()
    );

    // Another address is served at once.
    let mut other = raw
        .connect_from("127.0.0.2".parse().unwrap(), &[])
        .await
        .expect("a client from another address is let in");
    other
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        other.read_to_end(&mut answer),
    )
    .await
    .expect("answered")
    .ok();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Every silent connection is closed by the server, well within 30 s of being made (the
    // idle one within 30 s of its answer plus a margin).
    let mut waiting = tokio::task::JoinSet::new();
    for mut c in silent.into_iter().chain([h2, idle]) {
        waiting.spawn(tokio::time::timeout(
            std::time::Duration::from_secs(50),
            async move {
                let mut buf = [0u8; 1024];
                // An HTTP/2 SETTINGS or GOAWAY frame may come first; then the end.
                while let Ok(1..) = c.read(&mut buf).await {}
            },
        ));
    }
    while let Some(r) = waiting.join_next().await {
        r.unwrap().expect("the server closed the connection");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
