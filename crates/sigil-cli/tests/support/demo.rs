//! A demo cluster for the cluster tests: `scripts/cluster-demo` run as a user would, with
//! helpers to reach, kill, restart and add nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::{SIGIL, eventually, ok, stderr, stdout};

/// A running demo cluster; every node is killed on drop.
pub struct Demo {
    dir: tempfile::TempDir,
    pub base: u16,
    pub env: Vec<(String, String)>,
    pids: Vec<u32>,
    /// Nodes this test restarted itself (the others are the script's children).
    restarted: Vec<std::process::Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the nodes said, for the failure's report (openraft's lines too with
            // SIGIL_TEST_ALL_LOGS set).
            let all = std::env::var_os("SIGIL_TEST_ALL_LOGS").is_some();
            for i in 1..=self.pids.len() {
                for name in ["log", "restart.log", "rejoin.log"].map(|l| format!("sigil-{i}.{l}")) {
                    let text =
                        std::fs::read_to_string(self.dir.path().join(&name)).unwrap_or_default();
                    let lines: Vec<&str> = text
                        .lines()
                        .filter(|l| all || !l.contains("openraft"))
                        .collect();
                    eprintln!("--- {name}, last lines:");
                    for l in &lines[lines.len().saturating_sub(15)..] {
                        eprintln!("{l}");
                    }
                }
            }
        }
        for pid in &self.pids {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        for child in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base port with the ten ports above it free (room for five nodes).
pub fn free_base() -> u16 {
    super::ports::free_ports(10)
}

impl Demo {
    pub fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-demo");
        let out = Command::new("sh")
            .arg(&script)
            .arg(dir.path())
            .arg(base.to_string())
            .env("SIGIL", SIGIL)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let pids: Vec<u32> = std::fs::read_to_string(dir.path().join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let mut demo = Demo {
            dir,
            base,
            env: Vec::new(),
            pids,
            restarted: Vec::new(),
        };
        assert!(
            out.status.success(),
            "cluster-demo failed\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("A three-node cluster is running"));
        let env = std::fs::read_to_string(demo.dir.path().join("env")).unwrap();
        demo.env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(demo.pids.len(), 3, "three nodes");
        demo
    }

    /// Starts node `node` asking to join through node `via`: a new node (4, 5, …), or one
    /// removed earlier whose directory was wiped. It waits unless [`Demo::approve`] lets it in.
    pub fn ask_to_join(&mut self, node: u16, via: u16) {
        let log = if usize::from(node) <= self.pids.len() {
            "rejoin.log"
        } else {
            assert_eq!(
                usize::from(node) - 1,
                self.pids.len(),
                "nodes are added in order"
            );
            self.pids.push(0);
            "log"
        };
        self.spawn(node, &["--join", &self.api(via)], log);
        let log = self.join_log(node);
        eventually(60, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("asking to join"))
        });
    }

    /// The log of node `node`'s latest join.
    fn join_log(&self, node: u16) -> PathBuf {
        let rejoin = self.path().join(format!("sigil-{node}.rejoin.log"));
        match rejoin.exists() {
            true => rejoin,
            false => self.path().join(format!("sigil-{node}.log")),
        }
    }

    /// An admin approves node `node` (through node `via`) with the fingerprint it logged;
    /// waits until it serves.
    pub fn approve(&self, node: u16, via: u16) {
        let log = self.join_log(node);
        let text = std::fs::read_to_string(&log).unwrap();
        let fingerprint = text
            .split("cert_sha256=")
            .nth(1)
            .map(|rest| rest.chars().take(64).collect::<String>())
            .expect("the joining node logs its fingerprint");
        ok(self.sigil(
            via,
            &[
                "operator",
                "raft",
                "approve",
                &format!("sigil-{node}"),
                "--fingerprint",
                &fingerprint,
            ],
        ));
        eventually(60, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("server ready"))
        });
    }

    /// An SDK client of node `node`, as the admin.
    pub fn sdk(&self, node: u16) -> sigil_client::Client {
        self.sdk_as(node, Path::new(&self.var("SIGIL_KEY")))
    }

    /// An SDK client of node `node` with the key in `key`.
    pub fn sdk_as(&self, node: u16, key: &Path) -> sigil_client::Client {
        let var = |k: &str| self.var(k);
        sigil_client::Client::new(sigil_client::ClientConfig {
            addr: self.api(node),
            key: Some(
                sigil_crypto::SecretIdentity::from_key_file(&std::fs::read_to_string(key).unwrap())
                    .unwrap(),
            ),
            ca_pem: Some(std::fs::read(var("SIGIL_CACERT")).unwrap()),
            server_keyid: Some(var("SIGIL_SERVER_KEY")),
        })
        .unwrap()
    }

    /// The number of node `name` (`sigil-N`).
    pub fn number(name: &str) -> u16 {
        name.strip_prefix("sigil-").unwrap().parse().unwrap()
    }

    pub fn api(&self, node: u16) -> String {
        format!("https://127.0.0.1:{}", self.base + 2 * (node - 1))
    }

    /// Runs the CLI against node `node` as the admin.
    pub fn sigil(&self, node: u16, args: &[&str]) -> Output {
        let mut cmd = self.sigil_command(node);
        cmd.args(args);
        cmd.output().unwrap()
    }

    /// `sigil` set up as the demo's admin against node `node`, for the caller's arguments.
    pub fn sigil_command(&self, node: u16) -> Command {
        let mut cmd = Command::new(SIGIL);
        cmd.stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("SIGIL_ADDR", self.api(node));
        cmd
    }

    pub fn peers(&self, node: u16) -> Vec<Value> {
        let out = ok(self.sigil(
            node,
            &["operator", "raft", "list-peers", "--format", "json"],
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        v["config"]["servers"].as_array().unwrap().clone()
    }

    /// The leader as node `node` sees it; empty while no node answers as the leader (during an
    /// election, or while a leader that stepped down is still pausing).
    pub fn leader(&self, node: u16) -> String {
        let out = self.sigil(
            node,
            &["operator", "raft", "list-peers", "--format", "json"],
        );
        if !out.status.success() {
            return String::new();
        }
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["config"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["leader"] == true)
            .map(|p| p["node_id"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn var(&self, name: &str) -> String {
        self.env.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn kill9(&mut self, node: u16) {
        let pid = self.pids[usize::from(node - 1)];
        assert!(
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        // Reaped by the shell that started it; wait until it is gone.
        eventually(10, || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to node `node`.
    pub fn signal(&self, node: u16, signal: &str) {
        let pid = self.pids[usize::from(node - 1)].to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Starts node `node` again from its data directory.
    pub fn restart(&mut self, node: u16) {
        self.spawn(node, &[], "restart.log");
    }

    /// Stops node `node` (SIGTERM, waits for it) and starts it again with `extra` flags; it
    /// comes back sealed.
    pub fn restart_with(&mut self, node: u16, extra: &[&str]) {
        self.signal(node, "TERM");
        let pid = self.pids[usize::from(node - 1)];
        eventually(20, || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        self.spawn(node, extra, "restart.log");
    }

    /// Runs node `node` from its data directory with `extra` flags, logging to
    /// `sigil-N.<log>`.
    fn spawn(&mut self, node: u16, extra: &[&str], log: &str) {
        let i = node.to_string();
        let log = std::fs::File::create(self.path().join(format!("sigil-{i}.{log}"))).unwrap();
        let child = Command::new(SIGIL)
            .args(["server", "--data-dir"])
            .arg(self.path().join(format!("sigil-{i}")))
            .args(["--node-id", &format!("sigil-{i}")])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.base + 2 * (node - 1)),
            ])
            .args([
                "--cluster-listen",
                &format!("127.0.0.1:{}", self.base + 2 * (node - 1) + 1),
            ])
            .args(extra)
            // What a joining node checks the node it asks with (the cluster's CA).
            .env("SIGIL_CACERT", self.var("SIGIL_CACERT"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pids[usize::from(node - 1)] = child.id();
        self.restarted.push(child);
    }
}
