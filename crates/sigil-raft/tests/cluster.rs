//! Real clusters on loopback: nodes with their own redb files, talking over mutual TLS 1.3.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sigil_raft::{ClusterNode, NodeConfig, NodeIdentity, ServerState, Timing};
use sigil_storage::testing::{Store, run_conformance};
use sigil_storage::{Backend, Batch, StorageError};

/// Fast elections: loopback answers in microseconds.
const FAST: Timing = Timing {
    heartbeat: Duration::from_millis(50),
    election_min: Duration::from_millis(200),
    election_max: Duration::from_millis(400),
    snapshot_every: 10_000,
    keep_after_snapshot: 1_000,
    write_timeout: Duration::from_secs(30),
};

fn start(name: &str, dir: &Path) -> ClusterNode {
    start_at(name, dir, "127.0.0.1:0")
}

/// A node whose identity is kept in `dir` (as a restarted node finds it).
fn start_at(name: &str, dir: &Path, listen: &str) -> ClusterNode {
    start_timed(name, dir, listen, FAST)
}

fn start_timed(name: &str, dir: &Path, listen: &str, timing: Timing) -> ClusterNode {
    ClusterNode::start(NodeConfig {
        name: name.into(),
        dir: dir.to_owned(),
        listen: listen.parse().unwrap(),
        cluster_addr: String::new(),
        api_addr: format!("https://{name}.invalid:8200"),
        identity: NodeIdentity::load_or_create(dir, name).unwrap(),
        timing,
        cache_bytes: sigil_storage::DEFAULT_PAGE_CACHE_BYTES,
        max_entry_bytes: sigil_raft::DEFAULT_MAX_ENTRY_BYTES,
    })
    .expect("the node starts")
}

/// A single-node cluster in `dir`, leading.
fn single(dir: &Path) -> ClusterNode {
    let node = start("solo", dir);
    node.initialize().unwrap();
    node.wait_for_leader(Duration::from_secs(10)).unwrap();
    // The leader's first entry (blank) must be applied before it answers linearizably.
    wait_until(|| node.status().state == ServerState::Leader);
    wait_until(|| node.holds_lease());
    node
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_single_node_raft_store_passes_the_storage_conformance_suite() {
    let ran = run_conformance(|| {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let node = single(dir.path());
        let dir = Arc::clone(&dir);
        Store::durable(node, move || single(dir.path()))
    });
    assert!(ran >= 25, "only {ran} checks ran");
}

/// Three nodes: `a` leads, `b` and `c` joined as voters.
fn three(root: &Path) -> Vec<ClusterNode> {
    three_timed(root, FAST)
}

fn three_timed(root: &Path, timing: Timing) -> Vec<ClusterNode> {
    let start = |name: &str, dir: &Path| start_timed(name, dir, "127.0.0.1:0", timing);
    let a = start("a", &root.join("a"));
    a.initialize().unwrap();
    a.wait_for_leader(Duration::from_secs(10)).unwrap();
    let b = start("b", &root.join("b"));
    let c = start("c", &root.join("c"));
    // What a join hands a new node: the certificates of the members it is joining.
    b.trust().expect([a.me().cert_sha256.clone()]);
    c.trust().expect([a.me().cert_sha256.clone()]);
    a.add_voter(b.me().clone()).unwrap();
    a.add_voter(c.me().clone()).unwrap();
    vec![a, b, c]
}

fn leader_of(nodes: &[&ClusterNode]) -> usize {
    let mut found = None;
    wait_until(|| {
        found = nodes
            .iter()
            .position(|n| n.status().state == ServerState::Leader);
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn writes_replicate_and_survive_the_loss_of_the_leader() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    let status = nodes[0].status();
    assert_eq!(status.peers.len(), 3);
    wait_until(|| nodes[0].holds_lease());
    assert!(!nodes[1].holds_lease() && !nodes[2].holds_lease());
    assert!(status.peers.iter().all(|p| p.voter), "{:?}", status.peers);

    for i in 0..20 {
        nodes[0]
            .put(&format!("k/{i:02}"), format!("v{i}").as_bytes())
            .unwrap();
    }
    // A write is applied on the leader when acknowledged; the followers apply it soon after.
    // (The leader's metrics may lag its acknowledgements: wait for the data itself.)
    for n in &nodes[1..] {
        wait_until(|| n.list("k/").unwrap().len() == 20);
        assert_eq!(n.get("k/07").unwrap().as_deref(), Some(&b"v7"[..]));
    }
    // A follower takes no writes and says who leads.
    match nodes[1].put("x", b"y") {
        Err(StorageError::Unavailable { reason }) => {
            assert!(
                reason.contains("not the leader") && reason.contains("(the leader is a)"),
                "{reason}"
            )
        }
        other => panic!("a follower took a write: {other:?}"),
    }
    // A compare-and-set conflict is decided by the log, on every node alike.
    let conflict = nodes[0].apply(
        Batch::new()
            .expect("k/00", None)
            .put("k/00", b"no".to_vec()),
    );
    assert!(
        matches!(conflict, Err(StorageError::Conflict { .. })),
        "{conflict:?}"
    );

    // The leader dies (its listener and Raft stop; its file stays).
    let dead = nodes.remove(0);
    let dead_addr = dead.me().cluster_addr.clone();
    drop(dead);
    let rest: Vec<&ClusterNode> = nodes.iter().collect();
    let started = std::time::Instant::now();
    let l = leader_of(&rest);
    eprintln!("new leader after {:?}", started.elapsed());
    let leader = rest[l];
    for i in 20..30 {
        leader.put(&format!("k/{i:02}"), b"after").unwrap();
    }
    assert_eq!(leader.list("k/").unwrap().len(), 30);
    assert_eq!(leader.get("k/00").unwrap().as_deref(), Some(&b"v0"[..]));

    // The old leader comes back from its file at its address, as a follower, and catches up.
    let back = start_at("a", &root.path().join("a"), &dead_addr);
    wait_until(|| back.list("k/").unwrap().len() == 30);
    assert_eq!(back.get("k/29").unwrap().as_deref(), Some(&b"after"[..]));
}

/// Group commit: writers that arrive together share a Raft entry, and so its durable log
/// append (one fsync) on every node.
#[test]
fn concurrent_writers_share_log_appends() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three(root.path());
    let leader = &nodes[0];
    let (appends_before, entries_before) = leader.log_appends();
    let writers = 16;
    let each = 40;
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || {
                for i in 0..each {
                    leader.put(&format!("w{w}/{i}"), b"v").unwrap();
                }
            });
        }
    });
    let took = started.elapsed();
    let (appends, entries) = leader.log_appends();
    let (appends, entries) = (appends - appends_before, entries - entries_before);
    let writes = (writers * each) as u64;
    eprintln!(
        "{writes} writes from {writers} threads in {took:?}: {entries} entries in {appends} durable appends on the leader"
    );
    // Each durable append is one fsync; writers that arrived together share one.
    assert!(
        appends * 2 <= writes,
        "writers did not share appends: {appends} appends for {writes} writes"
    );
    assert_eq!(leader.list("w").unwrap().len() as u64, writes);
}

/// A node that joins after the log was compacted is sent the leader's snapshot (in chunks),
/// installs it, and goes on from the log.
#[test]
fn a_late_member_catches_up_from_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let small = Timing {
        snapshot_every: 50,
        keep_after_snapshot: 5,
        ..FAST
    };
    let a = start_timed("a", &root.path().join("a"), "127.0.0.1:0", small);
    a.initialize().unwrap();
    wait_until(|| a.holds_lease());
    for i in 0..300 {
        a.put(&format!("k/{i:03}"), &[i as u8; 64]).unwrap();
    }
    // The leader compacted its log: what a new member needs is no longer all in it.
    wait_until(|| a.status().purged_index.is_some_and(|p| p >= 200));
    let late = start_timed("late", &root.path().join("late"), "127.0.0.1:0", small);
    late.trust().expect([a.me().cert_sha256.clone()]);
    a.add_voter(late.me().clone()).unwrap();
    wait_until(|| late.list("k/").unwrap().len() == 300);
    assert_eq!(late.get("k/299").unwrap(), Some(vec![43u8; 64]));
    assert!(
        late.status().snapshot_index.is_some_and(|i| i >= 200),
        "the late member installed a snapshot: {:?}",
        late.status().snapshot_index
    );
    // And the log goes on after the snapshot.
    a.put("after", b"x").unwrap();
    wait_until(|| late.get("after").unwrap().as_deref() == Some(&b"x"[..]));
}

/// A snapshot larger than one chunk of openraft's snapshot transport, and than what the
/// cluster listener took in one body before (2 MB): a late member still installs it, and a
/// member that fell behind by entries near the largest an entry may be catches up from the log.
#[test]
fn a_late_member_catches_up_from_a_snapshot_of_many_chunks_and_large_entries() {
    let root = tempfile::tempdir().unwrap();
    let small = Timing {
        snapshot_every: 20,
        keep_after_snapshot: 5,
        ..FAST
    };
    let a = start_timed("a", &root.path().join("a"), "127.0.0.1:0", small);
    a.initialize().unwrap();
    wait_until(|| a.holds_lease());
    // 8 MB of values: the snapshot is several chunks.
    for i in 0..80u8 {
        a.put(&format!("big/{i:03}"), &vec![i; 100_000]).unwrap();
    }
    wait_until(|| a.status().purged_index.is_some_and(|p| p >= 60));
    let late = start_timed("late", &root.path().join("late"), "127.0.0.1:0", small);
    late.trust().expect([a.me().cert_sha256.clone()]);
    a.add_voter(late.me().clone()).unwrap();
    wait_until(|| late.get("big/079").unwrap().is_some());
    assert_eq!(late.list("big/").unwrap().len(), 80);
    assert_eq!(late.get("big/042").unwrap(), Some(vec![42u8; 100_000]));
    // Entries close to the largest one (1 MiB by default), one after another.
    for i in 0..12u8 {
        a.put(&format!("near/{i:02}"), &vec![i; 1000 * 1000])
            .unwrap();
    }
    wait_until(|| late.get("near/11").unwrap().is_some());
    assert_eq!(late.get("near/05").unwrap(), Some(vec![5u8; 1000 * 1000]));
}

/// A write larger than one entry may carry is refused whole, before it reaches the log;
/// one at the limit goes, and so do writers whose changes together exceed it (in several
/// entries).
#[test]
fn a_write_larger_than_max_entry_size_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = single(dir.path());
    let max = sigil_raft::DEFAULT_MAX_ENTRY_BYTES;
    let before = node.status().applied;
    let key = "too/large";
    let refused = node.apply(
        Batch::new()
            .put("small", b"1".to_vec())
            .put(key, vec![1; max]),
    );
    match refused {
        Err(StorageError::TooLarge { bytes, max: m }) => {
            assert_eq!((bytes, m), (max + key.len() + "small".len() + 1, max));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.get("small").unwrap(), None);
    assert_eq!(node.status().applied, before, "nothing reached the log");
    let at_limit = vec![2; max - key.len()];
    node.put(key, &at_limit).unwrap();
    assert_eq!(node.get(key).unwrap(), Some(at_limit));
    let node = Arc::new(node);
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let node = Arc::clone(&node);
            std::thread::spawn(move || node.put(&format!("w/{i}"), &vec![i; max / 2]))
        })
        .collect();
    for w in writers {
        w.join().unwrap().unwrap();
    }
    for i in 0..4u8 {
        assert_eq!(node.get(&format!("w/{i}")).unwrap(), Some(vec![i; max / 2]));
    }
}

/// A leader left without its majority does not keep a writer waiting for ever: the write
/// gives up after `write_timeout` with an error that says what to check (and the node then
/// stops at once when dropped).
#[test]
fn a_write_without_a_majority_gives_up_after_the_write_timeout() {
    let root = tempfile::tempdir().unwrap();
    let timing = Timing {
        write_timeout: Duration::from_secs(2),
        ..FAST
    };
    let mut nodes = three_timed(root.path(), timing);
    nodes[0].put("before", b"1").unwrap();
    let a = nodes.remove(0);
    drop(nodes);
    let started = std::time::Instant::now();
    let refused = a.put("after", b"2");
    let waited = started.elapsed();
    match refused {
        Err(StorageError::Unavailable { reason }) => assert!(
            reason.contains("not committed within 2 s") && reason.contains("majority"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let stopping = std::time::Instant::now();
    drop(a);
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

/// Every file under `dir` (raft.redb and the snapshot files) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A shredding batch (`Batch::shred`: KV destroy, metadata delete, a mount disabled) leaves
/// the removed bytes in no file of any node: not in the log entries that wrote them, not in a
/// snapshot taken before, not in redb's freed pages. The node that takes the write answers
/// once its own files are clean; the others follow as they apply the entry.
#[test]
fn a_shredding_batch_removes_the_old_bytes_from_every_nodes_files() {
    let root = tempfile::tempdir().unwrap();
    // Snapshots every 30 entries, the log kept behind them: the bytes are in both.
    let timing = Timing {
        snapshot_every: 30,
        ..FAST
    };
    let nodes = three_timed(root.path(), timing);
    let leader = &nodes[leader_of(&nodes.iter().collect::<Vec<_>>())];
    let value = |i: usize| format!("shred-me-{i:03}-").repeat(40).into_bytes();
    let kept = |i: usize| format!("keep-me-{i:03}--").repeat(40).into_bytes();
    for i in 0..20 {
        leader.put(&format!("gone/{i}"), &value(i)).unwrap();
        leader.put(&format!("kept/{i}"), &kept(i)).unwrap();
    }
    // Overwritten values are old bytes too.
    leader.put("kept/0", &value(99)).unwrap();
    leader.put("kept/0", &kept(0)).unwrap();
    let dirs = ["a", "b", "c"].map(|n| root.path().join(n));
    wait_until(|| {
        dirs.iter()
            .all(|d| !files_holding(d, &value(19)).is_empty())
    });
    let snapshots = root.path().join(&leader.me().name).join("snapshots");
    wait_until(|| !files_holding(&snapshots, &value(0)).is_empty());
    let mut batch = Batch::new();
    for i in 0..20 {
        batch = batch.delete(format!("gone/{i}"));
    }
    leader.apply(batch.shred()).unwrap();
    assert!(leader.list("gone/").unwrap().is_empty());

    let leader_dir = root.path().join(&leader.me().name);
    for i in [0, 7, 19, 99] {
        assert_eq!(
            files_holding(&leader_dir, &value(i)),
            Vec::<String>::new(),
            "the leader answered before its files were clean of value {i}"
        );
    }
    // The followers shred as they apply the entry.
    wait_until(|| {
        dirs.iter().all(|d| {
            [0, 7, 19, 99]
                .iter()
                .all(|&i| files_holding(d, &value(i)).is_empty())
        })
    });
    // What was not removed is still there, in every node's files and through the API.
    for d in &dirs {
        assert!(!files_holding(d, &kept(5)).is_empty(), "{}", d.display());
    }
    for node in &nodes {
        wait_until(|| node.get("kept/0").unwrap() == Some(kept(0)));
        assert_eq!(node.list("kept/").unwrap().len(), 20);
    }
    // The cluster goes on: writes after the purged log replicate.
    leader.put("after", b"x").unwrap();
    for node in &nodes {
        wait_until(|| node.get("after").unwrap().as_deref() == Some(&b"x"[..]));
    }
}
