//! A network partition of a three-node cluster: each node of the real `sigil` binary in its own
//! network namespace, on a bridge; the leader's link is cut and restored. Needs root (CI runs
//! as root) and iproute2; elsewhere the test records itself as skipped.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use support::{SIGIL, eventually, ok, record_skip, stderr, stdout};

/// Namespaces, a bridge and the nodes in them; all removed on drop.
struct Net {
    tag: String,
    subnet: u8,
    dir: tempfile::TempDir,
    nodes: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), stderr(&out)))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(keep) = std::env::var("SIGIL_TEST_KEEP_LOGS") {
                for i in 1..=3 {
                    let _ = std::fs::write(format!("{keep}/n{i}.log"), self.log(i));
                }
            }
            for i in 1..=3 {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- n{i}'s log, last lines:");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=3 {
            let _ = ip(&["link", "del", &self.veth(i)]);
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Net {
    /// Three namespaces on a bridge in a /24 of 10.77–10.99 (the host side is .254).
    fn new() -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("{:05}", pid % 100_000),
            subnet: 77 + (pid % 23) as u8,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            nodes: Vec::new(),
        };
        let (bridge, host) = (net.bridge(), format!("10.{}.0.254/24", net.subnet));
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &host, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=3 {
            let (ns, veth) = (net.ns(i), net.veth(i));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("sgb{}", self.tag)
    }

    fn ns(&self, i: u8) -> String {
        format!("sigil-part-{}-{i}", self.tag)
    }

    fn veth(&self, i: u8) -> String {
        format!("sgv{}{i}", self.tag)
    }

    fn addr(&self, i: u8) -> String {
        format!("10.{}.0.{i}", self.subnet)
    }

    fn api(&self, i: u8) -> String {
        format!("https://{}:8200", self.addr(i))
    }

    fn data(&self, i: u8) -> PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    fn ca(&self) -> PathBuf {
        self.data(1).join("tls/ca.pem")
    }

    fn admin(&self) -> PathBuf {
        self.dir.path().join("admin.key")
    }

    /// Starts node `i` in its namespace.
    fn start(&mut self, i: u8, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("n{i}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), SIGIL, "server", "--data-dir"])
            .arg(self.data(i))
            .args(["--node-id", &format!("n{i}")])
            .args(["--listen", &format!("{}:8200", self.addr(i))])
            .args(["--cluster-listen", &format!("{}:8201", self.addr(i))])
            .args(extra)
            .env("SIGIL_CACERT", self.ca())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.push(child);
    }

    fn log(&self, i: u8) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))).unwrap_or_default()
    }

    /// The CLI against node `i`, from the host (or from inside node `inside`'s namespace).
    fn sigil(&self, i: u8, inside: Option<u8>, server_key: &str, args: &[&str]) -> Output {
        let mut cmd = match inside {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.ns(n), SIGIL]);
                c
            }
            None => Command::new(SIGIL),
        };
        cmd.args(args)
            .env("SIGIL_ADDR", self.api(i))
            .env("SIGIL_CACERT", self.ca())
            .env("SIGIL_KEY", self.admin())
            .env_remove("SIGIL_SERVER_KEY")
            .stdin(Stdio::null());
        if !server_key.is_empty() {
            cmd.env("SIGIL_SERVER_KEY", server_key);
        }
        cmd.output().unwrap()
    }

    fn cut(&self, i: u8) {
        ip(&["link", "set", &self.veth(i), "down"]).unwrap();
    }

    fn heal(&self, i: u8) {
        ip(&["link", "set", &self.veth(i), "up"]).unwrap();
    }
}

#[test]
fn a_partitioned_leader_stops_answering_the_majority_elects_another_and_it_rejoins() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0");
    if !is_root {
        record_skip("needs root for network namespaces");
        return;
    }
    let mut net = match Net::new() {
        Ok(net) => net,
        Err(e) => {
            record_skip(&format!("cannot make network namespaces: {e}"));
            return;
        }
    };
    ok(Command::new(SIGIL)
        .args(["key", "generate", "-o"])
        .arg(net.admin())
        .output()
        .unwrap());
    // The first node's generated certificate is shared with the others: it names them all.
    let (a2, a3) = (net.addr(2), net.addr(3));
    eprintln!("stage: starting n1");
    net.start(1, &["--tls-san", &a2, "--tls-san", &a3]);
    eventually(30, || net.log(1).contains("server ready"));
    let init = ok(net.sigil(
        1,
        None,
        "",
        &["operator", "init", "--admin", net.admin().to_str().unwrap()],
    ));
    let server_key = init
        .trim()
        .strip_prefix("export SIGIL_SERVER_KEY=")
        .unwrap()
        .to_owned();
    ok(net.sigil(1, None, &server_key, &["operator", "unseal"]));
    for i in [2, 3] {
        let join = net.api(1);
        eprintln!("stage: n{i} joins");
        net.start(i, &["--join", &join]);
        eventually(30, || net.log(i).contains("asking to join"));
        ok(net.sigil(
            1,
            None,
            &server_key,
            &["operator", "raft", "approve", &format!("n{i}")],
        ));
        eventually(30, || net.log(i).contains("server ready"));
    }
    ok(net.sigil(2, None, &server_key, &["kv", "put", "secret/before", "v=1"]));

    // The leader's link is cut: the other two elect a leader and take writes.
    eprintln!("stage: cut");
    net.cut(1);
    let cut = Instant::now();
    eventually(30, || {
        net.sigil(2, None, &server_key, &["kv", "put", "secret/during", "v=2"])
            .status
            .success()
    });
    eprintln!(
        "writes through the majority again {:?} after the cut",
        cut.elapsed()
    );
    eprintln!("stage: the old leader refuses");
    // The old leader, alone, answers nothing — not even a read of what it holds.
    eventually(10, || {
        let out = net.sigil(
            1,
            Some(1),
            &server_key,
            &["kv", "get", "-field=v", "secret/before"],
        );
        !out.status.success()
    });
    let out = net.sigil(
        1,
        Some(1),
        &server_key,
        &["kv", "get", "-field=v", "secret/before"],
    );
    assert!(
        stderr(&out).contains("majority") || stderr(&out).contains("leader"),
        "{}",
        stderr(&out)
    );
    assert!(
        !net.sigil(
            1,
            Some(1),
            &server_key,
            &["kv", "put", "secret/lost", "v=3"]
        )
        .status
        .success(),
        "a write to the cut-off leader was acknowledged"
    );

    // Healed: it follows the new leader and serves what was written meanwhile.
    eprintln!("stage: heal");
    net.heal(1);
    eventually(30, || {
        let out = net.sigil(
            1,
            None,
            &server_key,
            &["kv", "get", "-field=v", "secret/during"],
        );
        out.status.success() && stdout(&out).trim() == "2"
    });
    let peers = ok(net.sigil(
        1,
        None,
        &server_key,
        &["operator", "raft", "list-peers", "--format", "json"],
    ));
    let peers: serde_json::Value = serde_json::from_str(&peers).unwrap();
    let servers = peers["config"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert!(
        servers
            .iter()
            .any(|s| s["leader"] == true && s["node_id"] != "n1"),
        "{servers:?}"
    );
    assert!(
        !net.sigil(1, None, &server_key, &["kv", "get", "secret/lost"])
            .status
            .success(),
        "the write refused during the partition is not there"
    );
}
