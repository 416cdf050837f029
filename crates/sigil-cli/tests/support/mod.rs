//! Test harness: starts the real `sigil` binary on loopback and drives it through its CLI or
//! raw HTTPS.
#![allow(dead_code, unreachable_pub)]

pub mod databases;
pub mod demo;
pub mod linearizability;
pub mod ports;
pub mod raw;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SIGIL: &str = env!("CARGO_BIN_EXE_sigil");

/// A TLS client trusting `ca_pem`, offering only `versions`.
pub fn tls_connector(
    ca_pem: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A running transient server, killed on drop.
pub struct Server {
    child: Child,
    pub tmp: tempfile::TempDir,
    /// `SIGIL_*` variables as printed by the server.
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

impl Server {
    /// A transient server with a generated admin key, state in a temp dir.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        Self::start_in(tmp, &["--dir", dir.to_str().unwrap()], &[])
    }

    /// Starts `sigil server --transient --listen 127.0.0.1:0 <extra>` with extra environment.
    pub fn start_in(tmp: tempfile::TempDir, extra: &[&str], envs: &[(&str, &Path)]) -> Server {
        let expected = if extra.contains(&"--admin") { 3 } else { 4 };
        let mut args = vec!["--transient"];
        args.extend_from_slice(extra);
        Self::spawn(tmp, &args, envs, expected)
    }

    /// Starts `sigil server --data-dir DATA` on a free port. An initialized server also prints
    /// its key.
    pub fn start_data_dir(data: &Path, initialized: bool) -> Server {
        Self::start_data_dir_with(data, initialized, &[])
    }

    /// As [`Server::start_data_dir`], with extra environment (e.g. `SIGIL_LOG`).
    pub fn start_data_dir_with(data: &Path, initialized: bool, envs: &[(&str, &Path)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        Self::spawn(
            tmp,
            &["--data-dir", data.to_str().unwrap()],
            envs,
            if initialized { 3 } else { 2 },
        )
    }

    /// Starts `sigil server --listen 127.0.0.1:0 <args>` (unless `args` has a `--listen`) and
    /// reads `expected` export lines.
    pub fn spawn(
        tmp: tempfile::TempDir,
        args: &[&str],
        envs: &[(&str, &Path)],
        expected: usize,
    ) -> Server {
        let log = tmp.path().join("server.log");
        let mut cmd = Command::new(SIGIL);
        cmd.arg("server");
        if !args.contains(&"-c") && !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env_remove("SIGIL_KEY")
            .env("SIGIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some((_, cwd)) = envs.iter().find(|(k, _)| *k == "CWD") {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().expect("spawn sigil server");
        let stdout = child.stdout.take().unwrap();
        let out_path = tmp.path().join("server.out");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut env = Vec::new();
            while env.len() < expected {
                let Some(Ok(line)) = lines.next() else { break };
                let (k, v) = line
                    .strip_prefix("export ")
                    .and_then(|l| l.split_once('='))
                    .unwrap_or_else(|| panic!("unexpected server output: {line}"));
                env.push((k.to_owned(), v.to_owned()));
            }
            tx.send(env).ok();
            // Keep everything else it prints (and never let it block on a full pipe).
            let mut out = std::fs::File::create(&out_path).unwrap();
            for line in lines.map_while(Result::ok) {
                use std::io::Write as _;
                writeln!(out, "{line}").ok();
            }
        });
        let env = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "server did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        assert_eq!(
            env.len(),
            expected,
            "server log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Server {
            child,
            tmp,
            env,
            log,
        }
    }

    pub fn var(&self, name: &str) -> &str {
        &self
            .env
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} not printed"))
            .1
    }

    pub fn admin_key(&self) -> PathBuf {
        PathBuf::from(self.var("SIGIL_KEY"))
    }

    /// Runs the CLI as the admin.
    pub fn sigil(&self, args: &[&str]) -> Output {
        self.sigil_as(&self.admin_key(), args)
    }

    /// Runs the CLI with another key.
    pub fn sigil_as(&self, key: &Path, args: &[&str]) -> Output {
        self.sigil_as_env(key, args, &[])
    }

    /// Runs the CLI with another key and extra environment.
    pub fn sigil_as_env(&self, key: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(SIGIL);
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("SIGIL_KEY", key);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run sigil")
    }

    /// Runs the CLI as the admin with `input` on its standard input.
    pub fn sigil_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut cmd = Command::new(SIGIL);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("SIGIL_KEY", self.admin_key());
        let mut child = cmd.spawn().expect("run sigil");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            // The CLI may stop reading (an error); a broken pipe is fine then.
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("run sigil");
        writer.join().unwrap();
        out
    }

    /// Initializes a new persistent server with one admin (threshold 1) and unseals it; from
    /// then on [`Server::sigil`] runs as that admin.
    pub fn init_and_unseal(&mut self, admin_key: &Path) {
        let out = self.sigil_env(
            &[
                "operator",
                "init",
                "--admin",
                admin_key.to_str().unwrap(),
                "--threshold",
                "1",
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let keyid = stdout(&out)
            .trim()
            .strip_prefix("export SIGIL_SERVER_KEY=")
            .expect("init prints the server key")
            .to_owned();
        self.env.push(("SIGIL_SERVER_KEY".into(), keyid));
        self.env
            .push(("SIGIL_KEY".into(), admin_key.to_str().unwrap().to_owned()));
        ok(self.sigil(&["operator", "unseal"]));
    }

    /// Generates a key file in the temp dir.
    pub fn new_key(&self, name: &str) -> PathBuf {
        let path = self.tmp.path().join(format!("{name}.key"));
        let out = run(&["key", "generate", "-o", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        path
    }

    /// Writes policy `name` (HCL) as the admin.
    pub fn write_policy(&self, name: &str, hcl: &str) {
        let file = self.tmp.path().join(format!("{name}.hcl"));
        std::fs::write(&file, hcl).unwrap();
        ok(self.sigil(&["policy", "write", name, file.to_str().unwrap()]));
    }

    /// Generates a key and registers it (as the admin) as identity `name` with `policies`.
    pub fn new_identity(&self, name: &str, policies: &[&str]) -> PathBuf {
        let key = self.new_key(name);
        let mut args = vec![
            "identity",
            "create",
            name,
            "--public-key",
            key.to_str().unwrap(),
        ];
        for p in policies {
            args.extend(["--policy", p]);
        }
        ok(self.sigil(&args));
        key
    }

    /// An SDK client for this server, signing with the key file at `key`.
    pub fn sdk(&self, key: &Path) -> sigil_client::Client {
        sigil_client::Client::new(sigil_client::ClientConfig {
            addr: self.var("SIGIL_ADDR").to_owned(),
            key: Some(
                sigil_crypto::SecretIdentity::from_key_file(&std::fs::read_to_string(key).unwrap())
                    .unwrap(),
            ),
            ca_pem: Some(std::fs::read(self.var("SIGIL_CACERT")).unwrap()),
            server_keyid: Some(self.var("SIGIL_SERVER_KEY").to_owned()),
        })
        .unwrap()
    }

    /// Everything the server wrote: standard error, and standard output after the export lines.
    pub fn log_text(&self) -> String {
        let err = std::fs::read_to_string(&self.log).unwrap_or_default();
        let out = std::fs::read_to_string(self.tmp.path().join("server.out")).unwrap_or_default();
        format!("{err}{out}")
    }

    /// The Prometheus text of the plain metrics listener (a server started with
    /// `--metrics-listen 127.0.0.1:0`; its port is read from the log).
    pub fn plain_metrics(&self) -> String {
        use std::io::{Read as _, Write as _};
        let log = self.log_text();
        let port: u16 = log
            .split("metrics at http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    }

    /// One sample of the plain metrics listener: the value on the line that starts with
    /// `series` (name and labels, as printed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.plain_metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// The address in `SIGIL_ADDR` (a name resolved, IPv4 first: the tests listen on
    /// 127.0.0.1).
    pub fn addr(&self) -> std::net::SocketAddr {
        use std::net::ToSocketAddrs as _;
        let authority = self.var("SIGIL_ADDR").trim_start_matches("https://");
        let all: Vec<_> = authority.to_socket_addrs().unwrap().collect();
        all.iter()
            .find(|a| a.is_ipv4())
            .or(all.first())
            .copied()
            .unwrap_or_else(|| panic!("{authority} resolves to nothing"))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        eventually(20, || self.child.try_wait().ok().flatten().is_some());
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI with this server's address and CA but the given `SIGIL_*` overrides.
    pub fn sigil_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(SIGIL);
        cmd.args(args)
            .stdin(Stdio::null())
            .env_remove("SIGIL_KEY")
            .env_remove("SIGIL_SERVER_KEY");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run sigil")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs the CLI without server configuration.
pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// Runs the CLI with extra environment.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(SIGIL);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sigil")
}

/// The public key (`sigil1…`) of the key file at `key`.
pub fn public_of(key: &Path) -> String {
    ok(run(&["key", "public", key.to_str().unwrap()]))
        .trim()
        .to_owned()
}

/// The wrap id `sigil wrap` or a `-wrap-to` read printed.
pub fn wrap_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("wrap_id"))
        .expect("a wrap id")
        .trim()
        .to_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Waits until `f` holds or panics after `secs`.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met in {secs} s");
}

/// The Python interpreter with the interop packages: `SIGIL_TEST_PYTHON` (set by
/// `scripts/test`), or `python3`.
pub fn python() -> String {
    std::env::var("SIGIL_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A script in `tests/interop/`.
pub fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop")
        .join(name)
}

/// Makes the independent Python client's key in `keydir` (created) and returns its `sigil1…`.
pub fn python_keygen(keydir: &Path) -> String {
    std::fs::create_dir(keydir).unwrap();
    let keygen = Command::new(python())
        .arg(interop_script("sigil_interop.py"))
        .args(["keygen", keydir.to_str().unwrap()])
        .output()
        .expect("run python3");
    assert!(
        keygen.status.success(),
        "python keygen failed (install tests/interop/requirements.txt, or run scripts/test): {}",
        stderr(&keygen)
    );
    let public = stdout(&keygen).trim().to_owned();
    assert!(public.starts_with("sigil1"), "{public}");
    public
}

/// Every file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Records that the running test skipped itself, so that `scripts/test` counts it as skipped
/// rather than passed and names it: one line, `<test name>: <why>`, appended to the file in
/// `SIGIL_TEST_SKIPS`. (libtest runs each test on a thread named after it.)
pub fn record_skip(why: &str) {
    use std::io::Write as _;
    let Some(file) = std::env::var_os("SIGIL_TEST_SKIPS") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .unwrap_or_else(|e| panic!("open SIGIL_TEST_SKIPS {file:?}: {e}"));
    writeln!(f, "{test}: {why}").unwrap();
}
