//! The conformance suite every [`Backend`] must pass: what a backend promises, one check per
//! promise, each on a fresh, empty store. A backend's tests call [`run_conformance`] with a
//! way to make a fresh store (and, for durable backends, to open the same store again).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Backend, Batch, StorageError};

/// A fresh, empty store of one backend, and how to open it again.
pub struct Store<B> {
    backend: Option<Arc<B>>,
    /// Opens the same store again once it is closed and dropped: `None` for a backend that
    /// keeps nothing across instances (memory).
    reopen: Option<Box<dyn Fn() -> B>>,
}

impl<B> std::fmt::Debug for Store<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durable", &self.reopen.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Store<B> {
    /// A store that cannot be reopened.
    pub fn transient(backend: B) -> Self {
        Store {
            backend: Some(Arc::new(backend)),
            reopen: None,
        }
    }

    /// A store that `reopen` opens again (it may own what the store lives in, a directory).
    pub fn durable(backend: B, reopen: impl Fn() -> B + 'static) -> Self {
        Store {
            backend: Some(Arc::new(backend)),
            reopen: Some(Box::new(reopen)),
        }
    }

    /// The backend.
    fn b(&self) -> &Arc<B> {
        self.backend.as_ref().expect("the store is open")
    }

    /// Closes the store and opens it again (`false`: the backend is not durable).
    fn reopened(&mut self) -> bool {
        let Some(reopen) = &self.reopen else {
            return false;
        };
        let old = self.backend.take().expect("the store is open");
        old.close();
        // The checks hold no other handle across this call: the old instance is gone here.
        drop(old);
        self.backend = Some(Arc::new(reopen()));
        true
    }
}

type Check<B> = (&'static str, fn(&mut Store<B>));

/// Runs every conformance check, each against a store from `fresh`; panics naming the first
/// check that fails. Returns how many checks ran (the durable ones only when `reopen` is set).
pub fn run_conformance<B: Backend + 'static>(fresh: impl Fn() -> Store<B>) -> usize {
    let checks: &[Check<B>] = &[
        ("a missing key reads as none", missing_is_none),
        ("a put is read back", put_then_get),
        ("a put replaces the value", put_replaces),
        ("an empty value is kept, not missing", empty_value_is_kept),
        (
            "a large value round-trips; one over the limit is refused",
            large_value,
        ),
        ("every byte value round-trips", every_byte),
        ("keys with unicode, spaces and slashes", odd_keys),
        ("a delete removes the key", delete_removes),
        ("deleting a missing key is not an error", delete_missing),
        ("a deleted key can be written again", delete_then_put),
        ("list is sorted", list_is_sorted),
        ("list matches the prefix exactly", list_prefix_is_exact),
        ("list of the empty prefix is everything", list_everything),
        ("children fold folders, once each", children_fold_folders),
        (
            "children skip what was deleted, before and after reopening",
            children_after_deletes,
        ),
        (
            "a folder of many keys is one child",
            children_of_a_big_folder,
        ),
        ("list of an unused prefix is empty", list_unused_prefix),
        ("list forgets deleted keys", list_after_deletes),
        ("a batch applies every write", batch_applies_all),
        (
            "a batch with a key that must not exist, and does, writes nothing",
            batch_expect_absent,
        ),
        (
            "a batch whose expected value differs writes nothing",
            batch_expect_value,
        ),
        (
            "a batch expecting a value of a missing key writes nothing",
            batch_expect_missing,
        ),
        ("a batch may delete what is missing", batch_delete_missing),
        ("an empty batch succeeds and changes nothing", empty_batch),
        ("a shredding batch deletes and keeps the rest", shred),
        (
            "concurrent compare-and-set: exactly one wins",
            concurrent_cas_one_winner,
        ),
        (
            "concurrent compare-and-set loops lose no increment",
            concurrent_cas_counter,
        ),
        (
            "concurrent batches on disjoint keys all land",
            concurrent_disjoint_batches,
        ),
        ("a snapshot of an empty store is empty", snapshot_empty),
        (
            "a snapshot is every key and value, sorted",
            snapshot_is_everything,
        ),
        ("a snapshot sees a batch whole", snapshot_sees_batches_whole),
        (
            "after reopening, acknowledged writes are there",
            reopen_keeps_writes,
        ),
        (
            "after reopening, deletes stay deleted",
            reopen_keeps_deletes,
        ),
        (
            "after reopening, a failed batch left nothing",
            reopen_after_failed_batch,
        ),
    ];
    let mut ran = 0;
    for (name, check) in checks {
        let mut store = fresh();
        assert!(
            store.b().list("").unwrap().is_empty(),
            "{name}: the store is not empty"
        );
        let durable_only = name.starts_with("after reopening");
        if durable_only && store.reopen.is_none() {
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut store)));
        if let Err(e) = outcome {
            eprintln!("conformance check failed: {name}");
            std::panic::resume_unwind(e);
        }
        ran += 1;
    }
    ran
}

fn get<B: Backend>(b: &B, key: &str) -> Option<Vec<u8>> {
    b.get(key).unwrap()
}

fn missing_is_none<B: Backend>(s: &mut Store<B>) {
    assert_eq!(get(&**s.b(), "nothing"), None);
}

fn put_then_get<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    assert_eq!(get(&**s.b(), "a").as_deref(), Some(&b"1"[..]));
}

fn put_replaces<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    s.b().put("a", b"two").unwrap();
    assert_eq!(get(&**s.b(), "a").as_deref(), Some(&b"two"[..]));
    assert_eq!(s.b().list("").unwrap(), ["a"]);
}

fn empty_value_is_kept<B: Backend>(s: &mut Store<B>) {
    s.b().put("empty", b"").unwrap();
    assert_eq!(get(&**s.b(), "empty").as_deref(), Some(&b""[..]));
    assert_eq!(s.b().list("").unwrap(), ["empty"]);
}

/// A 4 MiB value, or the largest the backend takes in one write ([`Backend::max_batch_bytes`]),
/// round-trips; one byte more than that limit is refused and writes nothing.
fn large_value<B: Backend>(s: &mut Store<B>) {
    let max = s.b().max_batch_bytes();
    let len = (4 << 20).min(max - "large".len());
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    s.b().put("large", &value).unwrap();
    assert_eq!(get(&**s.b(), "large"), Some(value));
    if max < usize::MAX {
        let over = vec![7u8; max + 1 - "other".len()];
        let refused = s.b().put("other", &over);
        assert!(
            matches!(refused, Err(StorageError::TooLarge { bytes, max: m }) if bytes == max + 1 && m == max),
            "{refused:?}"
        );
        assert_eq!(get(&**s.b(), "other"), None);
    }
}

fn every_byte<B: Backend>(s: &mut Store<B>) {
    let value: Vec<u8> = (0..=255u8).collect();
    s.b().put("bytes", &value).unwrap();
    assert_eq!(get(&**s.b(), "bytes"), Some(value));
}

fn odd_keys<B: Backend>(s: &mut Store<B>) {
    let keys = ["a b", "a/ü/b", "x//y", "z/", "日本"];
    for k in keys {
        s.b().put(k, k.as_bytes()).unwrap();
    }
    for k in keys {
        assert_eq!(get(&**s.b(), k).as_deref(), Some(k.as_bytes()), "{k}");
    }
    let mut sorted = keys.map(str::to_owned).to_vec();
    sorted.sort();
    assert_eq!(s.b().list("").unwrap(), sorted);
}

fn delete_removes<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    s.b().put("b", b"2").unwrap();
    s.b().delete("a").unwrap();
    assert_eq!(get(&**s.b(), "a"), None);
    assert_eq!(get(&**s.b(), "b").as_deref(), Some(&b"2"[..]));
}

fn delete_missing<B: Backend>(s: &mut Store<B>) {
    s.b().delete("never-existed").unwrap();
    assert!(s.b().list("").unwrap().is_empty());
}

fn delete_then_put<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    s.b().delete("a").unwrap();
    s.b().put("a", b"again").unwrap();
    assert_eq!(get(&**s.b(), "a").as_deref(), Some(&b"again"[..]));
}

fn list_is_sorted<B: Backend>(s: &mut Store<B>) {
    for k in ["m", "b", "z", "a", "ba", "b/"] {
        s.b().put(k, b"").unwrap();
    }
    assert_eq!(s.b().list("").unwrap(), ["a", "b", "b/", "ba", "m", "z"]);
}

fn list_prefix_is_exact<B: Backend>(s: &mut Store<B>) {
    for k in ["p/b", "p/a/x", "p/a", "p0", "q/a", "p/c/d/e", "p"] {
        s.b().put(k, k.as_bytes()).unwrap();
    }
    assert_eq!(
        s.b().list("p/").unwrap(),
        ["p/a", "p/a/x", "p/b", "p/c/d/e"]
    );
    assert_eq!(s.b().list("p/a").unwrap(), ["p/a", "p/a/x"]);
}

fn list_everything<B: Backend>(s: &mut Store<B>) {
    for k in ["x", "y/z"] {
        s.b().put(k, b"").unwrap();
    }
    assert_eq!(s.b().list("").unwrap(), ["x", "y/z"]);
}

fn list_unused_prefix<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"").unwrap();
    assert!(s.b().list("zz").unwrap().is_empty());
    assert!(s.b().list("a/").unwrap().is_empty());
}

fn list_after_deletes<B: Backend>(s: &mut Store<B>) {
    for k in ["d/1", "d/2", "d/3"] {
        s.b().put(k, b"").unwrap();
    }
    s.b().delete("d/2").unwrap();
    s.b().apply(Batch::new().delete("d/3")).unwrap();
    assert_eq!(s.b().list("d/").unwrap(), ["d/1"]);
}

fn children_fold_folders<B: Backend>(s: &mut Store<B>) {
    for k in [
        "p/b/c", "p/a/x", "p/a", "p0", "q/a", "p/c/d/e", "p", "p/b/d", "p/", "p/é",
    ] {
        s.b().put(k, k.as_bytes()).unwrap();
    }
    let children = s.b().list_children("p/").unwrap();
    assert_eq!(children, ["a", "a/", "b/", "c/", "é"]);
    let all = s.b().list("p/").unwrap();
    let folded = crate::children::fold_children("p/", all.iter().map(String::as_str));
    assert_eq!(children, folded, "the same as folding `list`");
    assert_eq!(s.b().list_children("").unwrap(), ["p", "p/", "p0", "q/"]);
    assert!(s.b().list_children("nothing/").unwrap().is_empty());
}

fn children_after_deletes<B: Backend>(s: &mut Store<B>) {
    for k in ["f/gone/1", "f/gone/2", "f/kept/1", "f/kept/2", "f/leaf"] {
        s.b().put(k, b"").unwrap();
    }
    let check = |s: &Store<B>, want: &[&str]| assert_eq!(s.b().list_children("f/").unwrap(), want);
    s.b()
        .apply(
            Batch::new()
                .delete("f/gone/1")
                .delete("f/gone/2")
                .delete("f/kept/1"),
        )
        .unwrap();
    check(s, &["kept/", "leaf"]);
    if s.reopened() {
        check(s, &["kept/", "leaf"]);
        s.b().delete("f/kept/2").unwrap();
        s.b().put("f/new/1", b"").unwrap();
        check(s, &["leaf", "new/"]);
    }
}

fn children_of_a_big_folder<B: Backend>(s: &mut Store<B>) {
    let mut batch = Batch::new();
    for i in 0..3000 {
        batch = batch.put(format!("m/big/{i:05}"), Vec::new());
    }
    s.b().apply(batch.put("m/leaf", Vec::new())).unwrap();
    s.reopened();
    assert_eq!(s.b().list_children("m/").unwrap(), ["big/", "leaf"]);
    assert_eq!(s.b().list_children("m/big/").unwrap().len(), 3000);
}

fn batch_applies_all<B: Backend>(s: &mut Store<B>) {
    s.b().put("gone", b"x").unwrap();
    s.b()
        .apply(
            Batch::new()
                .expect("x", None)
                .put("x", b"1".to_vec())
                .put("y", b"2".to_vec())
                .delete("gone"),
        )
        .unwrap();
    assert_eq!(s.b().list("").unwrap(), ["x", "y"]);
}

/// The store holds `x = 1`, `y = 2`; `batch` must fail on `key` and change nothing.
fn refused<B: Backend>(s: &Store<B>, batch: Batch, key: &str) {
    let err = s.b().apply(batch).unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict { key: ref k } if k == key),
        "{err}"
    );
    assert_eq!(
        s.b().snapshot().unwrap(),
        [
            ("x".to_owned(), b"1".to_vec()),
            ("y".to_owned(), b"2".to_vec())
        ]
    );
}

fn x1_y2<B: Backend>(s: &Store<B>) {
    s.b().put("x", b"1").unwrap();
    s.b().put("y", b"2").unwrap();
}

fn batch_expect_absent<B: Backend>(s: &mut Store<B>) {
    x1_y2(s);
    let batch = Batch::new()
        .expect("x", None)
        .put("z", b"3".to_vec())
        .delete("y");
    refused(s, batch, "x");
}

fn batch_expect_value<B: Backend>(s: &mut Store<B>) {
    x1_y2(s);
    let batch = Batch::new()
        .expect("y", Some(b"2".to_vec()))
        .expect("x", Some(b"other".to_vec()))
        .put("x", b"new".to_vec())
        .delete("y");
    refused(s, batch, "x");
}

fn batch_expect_missing<B: Backend>(s: &mut Store<B>) {
    x1_y2(s);
    let batch = Batch::new()
        .expect("w", Some(b"1".to_vec()))
        .put("x", b"new".to_vec());
    refused(s, batch, "w");
}

fn batch_delete_missing<B: Backend>(s: &mut Store<B>) {
    s.b()
        .apply(Batch::new().delete("missing").put("a", b"1".to_vec()))
        .unwrap();
    assert_eq!(s.b().list("").unwrap(), ["a"]);
}

fn empty_batch<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    s.b().apply(Batch::new()).unwrap();
    assert_eq!(s.b().snapshot().unwrap(), [("a".to_owned(), b"1".to_vec())]);
}

fn shred<B: Backend>(s: &mut Store<B>) {
    for i in 0..50 {
        s.b()
            .put(
                &format!("s/{i:02}"),
                format!("secret-{i}").repeat(20).as_bytes(),
            )
            .unwrap();
    }
    s.b().put("keep", b"kept").unwrap();
    let mut batch = Batch::new();
    for i in 0..50 {
        batch = batch.delete(format!("s/{i:02}"));
    }
    s.b().apply(batch.shred()).unwrap();
    assert!(s.b().list("s/").unwrap().is_empty());
    assert_eq!(get(&**s.b(), "keep").as_deref(), Some(&b"kept"[..]));
}

fn concurrent_cas_one_winner<B: Backend + 'static>(s: &mut Store<B>) {
    let winners: usize = (0..8)
        .map(|i| {
            let b = Arc::clone(s.b());
            std::thread::spawn(move || {
                usize::from(
                    b.apply(Batch::new().expect("race", None).put("race", vec![i]))
                        .is_ok(),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(winners, 1);
}

fn concurrent_cas_counter<B: Backend + 'static>(s: &mut Store<B>) {
    const THREADS: u64 = 4;
    const EACH: u64 = 25;
    s.b().put("n", &0u64.to_be_bytes()).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let b = Arc::clone(s.b());
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    loop {
                        let old = b.get("n").unwrap().unwrap();
                        let n = u64::from_be_bytes(old.clone().try_into().unwrap());
                        let next = Batch::new()
                            .expect("n", Some(old))
                            .put("n", (n + 1).to_be_bytes().to_vec());
                        match b.apply(next) {
                            Ok(()) => break,
                            Err(StorageError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = u64::from_be_bytes(get(&**s.b(), "n").unwrap().try_into().unwrap());
    assert_eq!(n, THREADS * EACH);
}

fn concurrent_disjoint_batches<B: Backend + 'static>(s: &mut Store<B>) {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let b = Arc::clone(s.b());
            std::thread::spawn(move || {
                for i in 0..20 {
                    let key = format!("t{t}/{i:02}");
                    b.apply(Batch::new().expect(&key, None).put(&key, vec![t, i]))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.b().list("").unwrap().len(), 80);
    assert_eq!(get(&**s.b(), "t3/19").as_deref(), Some(&[3u8, 19][..]));
}

fn snapshot_empty<B: Backend>(s: &mut Store<B>) {
    assert!(s.b().snapshot().unwrap().is_empty());
}

fn snapshot_is_everything<B: Backend>(s: &mut Store<B>) {
    s.b().put("b", b"2").unwrap();
    s.b().put("a", b"1").unwrap();
    s.b().put("c", b"3").unwrap();
    s.b().delete("c").unwrap();
    s.b().put("e", b"").unwrap();
    assert_eq!(
        s.b().snapshot().unwrap(),
        [
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
            ("e".to_owned(), Vec::new()),
        ]
    );
}

fn snapshot_sees_batches_whole<B: Backend + 'static>(s: &mut Store<B>) {
    // A writer moves a value between two keys in batches; every snapshot holds exactly one.
    s.b().put("left", b"token").unwrap();
    let b = Arc::clone(s.b());
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            let (from, to) = if i % 2 == 0 {
                ("left", "right")
            } else {
                ("right", "left")
            };
            b.apply(
                Batch::new()
                    .expect(from, Some(b"token".to_vec()))
                    .delete(from)
                    .put(to, b"token".to_vec()),
            )
            .unwrap();
        }
    });
    for _ in 0..50 {
        let snapshot: BTreeMap<String, Vec<u8>> = s.b().snapshot().unwrap().into_iter().collect();
        assert_eq!(snapshot.len(), 1, "{snapshot:?}");
    }
    writer.join().unwrap();
    assert_eq!(s.b().list("").unwrap(), ["left"]);
}

fn reopen_keeps_writes<B: Backend>(s: &mut Store<B>) {
    for i in 0..100 {
        s.b()
            .put(&format!("k/{i:03}"), &i.to_string().into_bytes())
            .unwrap();
    }
    s.b()
        .apply(
            Batch::new()
                .put("batch/a", b"1".to_vec())
                .put("batch/b", Vec::new()),
        )
        .unwrap();
    assert!(s.reopened());
    assert_eq!(s.b().list("k/").unwrap().len(), 100);
    assert_eq!(get(&**s.b(), "k/042").as_deref(), Some(&b"42"[..]));
    assert_eq!(get(&**s.b(), "batch/b").as_deref(), Some(&b""[..]));
}

fn reopen_keeps_deletes<B: Backend>(s: &mut Store<B>) {
    s.b().put("a", b"1").unwrap();
    s.b().put("b", b"2").unwrap();
    assert!(s.reopened());
    s.b().delete("a").unwrap();
    s.b().apply(Batch::new().delete("b").shred()).unwrap();
    assert!(s.reopened());
    assert!(s.b().list("").unwrap().is_empty());
}

fn reopen_after_failed_batch<B: Backend>(s: &mut Store<B>) {
    x1_y2(s);
    let batch = Batch::new().expect("x", None).put("z", b"3".to_vec());
    assert!(s.b().apply(batch).is_err());
    assert!(s.reopened());
    assert_eq!(s.b().list("").unwrap(), ["x", "y"]);
}
