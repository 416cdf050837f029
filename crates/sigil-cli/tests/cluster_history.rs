//! Clusters under failure, checked from what clients saw: a recorded history of concurrent
//! reads, writes and compare-and-sets against every node across `kill -9` of the leader must be
//! linearizable, every acknowledged write must read back on every node, and five nodes keep
//! serving through two failures.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::demo::Demo;
use support::linearizability::{Model, Recorded, check};
use support::{eventually, ok, stderr, stdout};

/// A KV v2 secret as a register: its current version and value.
struct Register;

/// What a compare-and-set (`options.cas`) answered.
#[derive(Debug, Clone, Copy)]
enum Cas {
    Done(u64),
    Mismatch,
    Unknown,
}

#[derive(Debug, Clone)]
enum KvOp {
    /// A write and the version it made (`None`: outcome unknown).
    Write { value: String, made: Option<u64> },
    /// A write if the current version is `expect`.
    Cas {
        expect: u64,
        value: String,
        outcome: Cas,
    },
    /// A read and what it returned (version 0: no such secret).
    Read { version: u64, value: Option<String> },
}

impl Model for Register {
    type State = (u64, Option<String>);
    type Op = KvOp;

    fn init(&self) -> Self::State {
        (0, None)
    }

    fn step(&self, (version, current): &Self::State, op: &KvOp) -> Option<Self::State> {
        let next = |value: &String| (version + 1, Some(value.clone()));
        match op {
            KvOp::Write { value, made } => match made {
                Some(made) => (*made == version + 1).then(|| next(value)),
                None => Some(next(value)),
            },
            KvOp::Cas {
                expect,
                value,
                outcome,
            } => match (expect == version, outcome) {
                (true, Cas::Done(made)) => (*made == version + 1).then(|| next(value)),
                (true, Cas::Unknown) => Some(next(value)),
                (false, Cas::Mismatch | Cas::Unknown) => Some((*version, current.clone())),
                _ => None,
            },
            KvOp::Read {
                version: seen,
                value,
            } => (seen == version && value == current).then(|| (*version, current.clone())),
        }
    }
}

fn write(call: u64, ret: Option<u64>, value: &str, made: Option<u64>) -> Recorded<KvOp> {
    Recorded {
        call,
        ret,
        op: KvOp::Write {
            value: value.into(),
            made,
        },
    }
}

fn read(call: u64, ret: u64, version: u64, value: Option<&str>) -> Recorded<KvOp> {
    Recorded {
        call,
        ret: Some(ret),
        op: KvOp::Read {
            version,
            value: value.map(Into::into),
        },
    }
}

fn cas(call: u64, ret: u64, expect: u64, value: &str, outcome: Cas) -> Recorded<KvOp> {
    Recorded {
        call,
        ret: Some(ret),
        op: KvOp::Cas {
            expect,
            value: value.into(),
            outcome,
        },
    }
}

#[test]
fn the_checker_accepts_linearizable_histories() {
    // Sequential.
    let h = [
        write(0, Some(1), "a", Some(1)),
        read(2, 3, 1, Some("a")),
        cas(4, 5, 1, "b", Cas::Done(2)),
        cas(6, 7, 1, "c", Cas::Mismatch),
        read(8, 9, 2, Some("b")),
    ];
    check(&Register, &h).unwrap();
    // Overlapping: the read may see either side of the write.
    for seen in [(0, None), (1, Some("a"))] {
        let h = [write(0, Some(10), "a", Some(1)), read(1, 2, seen.0, seen.1)];
        check(&Register, &h).unwrap();
    }
    // Recorded out of order; an unknown write seen later, and one never seen.
    let h = [
        read(20, 21, 1, Some("x")),
        write(0, None, "x", None),
        write(30, None, "y", None),
        read(25, 26, 1, Some("x")),
    ];
    check(&Register, &h).unwrap();
    // Two concurrent compare-and-sets of one version: one wins.
    let h = [
        write(0, Some(1), "a", Some(1)),
        cas(2, 6, 1, "b", Cas::Mismatch),
        cas(3, 5, 1, "c", Cas::Done(2)),
        read(7, 8, 2, Some("c")),
    ];
    check(&Register, &h).unwrap();
}

#[test]
fn the_checker_refuses_stale_reads_lost_writes_and_double_wins() {
    let stale = [
        write(0, Some(1), "a", Some(1)),
        write(2, Some(3), "b", Some(2)),
        read(4, 5, 1, Some("a")),
    ];
    let lost = [write(0, Some(1), "a", Some(1)), read(2, 3, 0, None)];
    let double = [
        write(0, Some(1), "a", Some(1)),
        cas(2, 6, 1, "b", Cas::Done(2)),
        cas(3, 5, 1, "c", Cas::Done(2)),
    ];
    // A read that saw a write which had not been called yet.
    let future = [read(0, 1, 1, Some("a")), write(2, Some(3), "a", Some(1))];
    for (name, h) in [
        ("stale", &stale[..]),
        ("lost", &lost[..]),
        ("double", &double[..]),
        ("future", &future[..]),
    ] {
        let refused = check(&Register, h).unwrap_err();
        assert!(refused.contains("not linearizable"), "{name}: {refused}");
    }
}

const KEYS: usize = 8;
const CLIENTS: usize = 16;

/// One client: operations on random keys through one node, moving to the next node when one
/// fails to answer. After an unknown outcome it only reads until a read succeeds (so few
/// operations are left open).
fn run_client(
    id: usize,
    sdks: Vec<sigil_client::Client>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<(usize, Recorded<KvOp>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (id as u64 + 1);
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut node = id % sdks.len();
    let mut seen = [0u64; KEYS];
    let mut careful = false;
    let mut history = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = (random() % KEYS as u64) as usize;
        let path = format!("secret/data/h{key}");
        let value = format!("c{id}-{n}");
        let kind = if careful { 0 } else { random() % 10 };
        let call = now();
        let send = |method, body: Option<serde_json::Value>| {
            let sdk = &sdks[node];
            let path = path.clone();
            rt.block_on(async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    sdk.request(method, &path, body.as_ref()),
                )
                .await
                .unwrap_or_else(|_| Err(sigil_client::ClientError::Transport("timed out".into())))
            })
        };
        let (op, known) = match kind {
            0..4 => match send("GET", None) {
                Ok(r) => {
                    let version = r.data()["metadata"]["version"].as_u64().unwrap();
                    let value = r.data()["data"]["v"].as_str().map(str::to_owned);
                    seen[key] = version;
                    (Some(KvOp::Read { version, value }), true)
                }
                Err(e) if e.status() == Some(404) => (
                    Some(KvOp::Read {
                        version: 0,
                        value: None,
                    }),
                    true,
                ),
                // An unanswered read constrains nothing: left out.
                Err(_) => (None, false),
            },
            4..7 => match send("POST", Some(json!({ "data": { "v": value } }))) {
                Ok(r) => {
                    let made = r.data()["version"].as_u64().unwrap();
                    seen[key] = made;
                    (
                        Some(KvOp::Write {
                            value,
                            made: Some(made),
                        }),
                        true,
                    )
                }
                // Lost to a concurrent writer after the server's retries: nothing was written.
                Err(e) if e.status() == Some(409) => (None, true),
                Err(_) => (Some(KvOp::Write { value, made: None }), false),
            },
            _ => {
                let expect = seen[key];
                let body = json!({ "options": { "cas": expect }, "data": { "v": value } });
                match send("POST", Some(body)) {
                    Ok(r) => {
                        let made = r.data()["version"].as_u64().unwrap();
                        seen[key] = made;
                        let outcome = Cas::Done(made);
                        (
                            Some(KvOp::Cas {
                                expect,
                                value,
                                outcome,
                            }),
                            true,
                        )
                    }
                    Err(e) if e.status() == Some(409) => {
                        let outcome = Cas::Mismatch;
                        (
                            Some(KvOp::Cas {
                                expect,
                                value,
                                outcome,
                            }),
                            true,
                        )
                    }
                    Err(_) => {
                        let outcome = Cas::Unknown;
                        (
                            Some(KvOp::Cas {
                                expect,
                                value,
                                outcome,
                            }),
                            false,
                        )
                    }
                }
            }
        };
        let ret = known.then(now);
        if let Some(op) = op {
            history.push((key, Recorded { call, ret, op }));
        }
        if known {
            careful = false;
        } else {
            careful = true;
            node = (node + 1) % sdks.len();
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    history
}

#[test]
fn a_history_across_kill_9_of_the_leader_is_linearizable_and_every_acknowledged_write_reads_back() {
    let mut demo = Demo::start();
    ok(demo.sigil(1, &["write", "secret/config", "max_versions=100000"]));
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let sdks = (1..=3).map(|node| demo.sdk(node)).collect();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || run_client(id, sdks, epoch, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let victim = Demo::number(&demo.leader(1));
    let killed_at = epoch.elapsed().as_nanos() as u64;
    demo.kill9(victim);
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let mut history: Vec<(usize, Recorded<KvOp>)> = Vec::new();
    for c in clients {
        history.extend(c.join().unwrap());
    }

    // Enough happened on both sides of the kill, and writes resumed within seconds.
    let acked_write = |r: &Recorded<KvOp>| {
        matches!(
            r.op,
            KvOp::Write { made: Some(_), .. }
                | KvOp::Cas {
                    outcome: Cas::Done(_),
                    ..
                }
        )
    };
    let before = history
        .iter()
        .filter(|(_, r)| acked_write(r) && r.ret.unwrap() < killed_at)
        .count();
    let after: Vec<u64> = history
        .iter()
        .filter(|(_, r)| acked_write(r) && r.call > killed_at)
        .map(|(_, r)| r.ret.unwrap())
        .collect();
    let unknown = history.iter().filter(|(_, r)| r.ret.is_none()).count();
    let resumed = Duration::from_nanos(after.iter().min().copied().unwrap_or(u64::MAX) - killed_at);
    eprintln!(
        "{} operations ({before} writes acknowledged before the kill, {} after, {unknown} \
         unknown); first write acknowledged {resumed:?} after kill -9 of sigil-{victim}",
        history.len(),
        after.len()
    );
    assert!(before >= 20, "only {before} writes before the kill");
    assert!(
        after.len() >= 20,
        "only {} writes after the kill",
        after.len()
    );
    assert!(resumed < Duration::from_secs(8), "{resumed:?}");

    // Linearizable, key by key.
    for key in 0..KEYS {
        let ops: Vec<Recorded<KvOp>> = history
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, r)| r.clone())
            .collect();
        if let Err(e) = check(&Register, &ops) {
            panic!("key h{key} ({} operations): {e}", ops.len());
        }
    }

    // The killed node comes back, is unsealed through another, and every acknowledged write
    // reads back through every node.
    demo.restart(victim);
    let other = if victim == 1 { 2 } else { 1 };
    eventually(30, || {
        stdout(&demo.sigil(victim, &["operator", "status", "--format", "json"]))
            .contains("\"sealed\": true")
    });
    ok(demo.sigil(other, &["operator", "unseal"]));
    eventually(30, || {
        demo.sigil(victim, &["kv", "get", "secret/h0"])
            .status
            .success()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    for node in 1..=3 {
        let sdk = demo.sdk(node);
        for (key, r) in &history {
            let (value, made) = match &r.op {
                KvOp::Write {
                    value,
                    made: Some(made),
                } => (value, made),
                KvOp::Cas {
                    value,
                    outcome: Cas::Done(made),
                    ..
                } => (value, made),
                _ => continue,
            };
            let path = format!("secret/data/h{key}?version={made}");
            // A node that just came back may start an election before it hears the leader:
            // a 503 for that moment is retried.
            let mut tries = 0;
            let got = loop {
                match rt.block_on(sdk.request("GET", &path, None)) {
                    Err(e) if e.status() == Some(503) && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    got => break got.unwrap(),
                }
            };
            if tries > 0 {
                eprintln!("sigil-{node}: no leader for {} ms", tries * 100);
            }
            assert_eq!(
                got.data()["data"]["v"].as_str(),
                Some(value.as_str()),
                "sigil-{node}: h{key} version {made}"
            );
        }
    }
}

#[test]
fn five_nodes_survive_two_failures_an_unapproved_node_gets_nothing_and_a_removed_peer_rejoins() {
    let mut demo = Demo::start();
    ok(demo.sigil(1, &["kv", "put", "secret/five", "n=0"]));

    // A node nobody approved waits outside the membership with nothing of the cluster: it
    // does not even open its API until the package with the keyring arrives.
    demo.ask_to_join(4, 1);
    std::thread::sleep(Duration::from_secs(1));
    assert!(demo.peers(1).iter().all(|p| p["node_id"] != "sigil-4"));
    for args in [
        &["operator", "status"][..],
        &["kv", "get", "secret/five"][..],
    ] {
        let out = demo.sigil(4, args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
    }

    demo.approve(4, 1);
    demo.ask_to_join(5, 2);
    demo.approve(5, 2);
    eventually(30, || {
        let peers = demo.peers(1);
        peers.len() == 5 && peers.iter().all(|p| p["voter"] == true)
    });
    assert_eq!(
        ok(demo.sigil(5, &["kv", "get", "-field=n", "secret/five"])).trim(),
        "0"
    );

    // Two failures at once, the leader among them: the other three carry on.
    let leader = Demo::number(&demo.leader(1));
    let follower = (1..=5).find(|n| *n != leader).unwrap();
    demo.kill9(leader);
    demo.kill9(follower);
    let alive: Vec<u16> = (1..=5)
        .filter(|n| ![leader, follower].contains(n))
        .collect();
    let started = Instant::now();
    eventually(30, || {
        demo.sigil(alive[0], &["kv", "put", "secret/five", "n=1"])
            .status
            .success()
    });
    eprintln!(
        "five nodes, two killed: first write after {:?}",
        started.elapsed()
    );
    for node in &alive {
        assert_eq!(
            ok(demo.sigil(*node, &["kv", "get", "-field=n", "secret/five"])).trim(),
            "1"
        );
    }

    // A removed peer comes back as a new node: its directory wiped, joining and approved again
    // (as in Vault, a removed node does not rejoin with its old state).
    let survivor = alive[0];
    ok(demo.sigil(
        survivor,
        &[
            "operator",
            "raft",
            "remove-peer",
            &format!("sigil-{follower}"),
        ],
    ));
    eventually(10, || demo.peers(survivor).len() == 4);
    std::fs::remove_dir_all(demo.path().join(format!("sigil-{follower}"))).unwrap();
    demo.ask_to_join(follower, survivor);
    demo.approve(follower, survivor);
    eventually(30, || {
        demo.peers(survivor)
            .iter()
            .any(|p| p["node_id"] == format!("sigil-{follower}") && p["voter"] == true)
    });
    ok(demo.sigil(follower, &["kv", "put", "secret/five", "n=2"]));
    assert_eq!(
        ok(demo.sigil(survivor, &["kv", "get", "-field=n", "secret/five"])).trim(),
        "2"
    );
}

#[test]
fn a_follower_answers_a_stale_read_itself_only_for_reads_and_not_for_long_to_a_deleted_identity() {
    let demo = Demo::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leader = Demo::number(&demo.leader(1));
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let sdk = demo.sdk(follower);
    let stale_get = |sdk: &sigil_client::Client| {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                sdk.request("GET", "secret/data/s?stale=true", None),
            )
            .await
        })
        .unwrap_or_else(|_| panic!("a stale read timed out"))
    };
    ok(demo.sigil(leader, &["kv", "put", "secret/s", "v=1"]));
    eventually(10, || {
        stale_get(&sdk).is_ok_and(|r| r.data()["data"]["v"] == "1")
    });

    // The follower answers it from its own storage: with the leader stopped, at once (long
    // before the others would elect a new leader).
    demo.signal(leader, "STOP");
    let asked = Instant::now();
    let answer = stale_get(&sdk);
    let took = asked.elapsed();
    // The CLI asks for one with -stale (a new process: its own channel to the follower).
    let mut cli = demo
        .sigil_command(follower)
        .args(["kv", "get", "-stale", "-field=v", "secret/s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cli_started = Instant::now();
    while cli.try_wait().unwrap().is_none() && cli_started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = cli.kill();
    let cli_out = cli.wait_with_output().unwrap();
    demo.signal(leader, "CONT");
    assert_eq!(answer.unwrap().data()["data"]["v"], "1");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        cli_out.status.success(),
        "sigil kv get -stale through a follower while the leader is stopped: {cli_out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&cli_out.stdout).trim(), "1");

    // What writes may not ask for it.
    let body = json!({ "data": { "v": "2" } });
    let refused = rt
        .block_on(sdk.request("POST", "secret/data/s?stale=true", Some(&body)))
        .unwrap_err();
    assert_eq!(refused.status(), Some(400), "{refused}");

    // An identity deleted on the leader keeps no stale access for longer than a second or so:
    // the follower starts its core again from what it applied.
    let policy = demo.path().join("reader.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    ok(demo.sigil(
        leader,
        &["policy", "write", "reader", policy.to_str().unwrap()],
    ));
    let key = demo.path().join("reader.key");
    ok(std::process::Command::new(support::SIGIL)
        .args(["key", "generate", "-o"])
        .arg(&key)
        .output()
        .unwrap());
    ok(demo.sigil(
        leader,
        &[
            "identity",
            "create",
            "reader",
            "--public-key",
            key.to_str().unwrap(),
            "--policy",
            "reader",
        ],
    ));
    let reader = demo.sdk_as(follower, &key);
    eventually(10, || stale_get(&reader).is_ok());
    ok(demo.sigil(leader, &["identity", "delete", "reader"]));
    std::thread::sleep(STALE_CORE + Duration::from_millis(500));
    let gone = stale_get(&reader).unwrap_err();
    assert!(
        matches!(gone.status(), Some(401 | 403)),
        "a deleted identity still reads: {gone}"
    );
}

/// The server's bound on a follower core's age for stale reads (cluster/mod.rs `STALE_CORE`).
const STALE_CORE: Duration = Duration::from_secs(1);
