//! The conformance suite every [`Backend`] must pass. Call it from the backend's tests with a
//! fresh, empty backend.

use std::sync::Arc;

use crate::{Backend, Batch, StorageError};

/// Runs every conformance check against an empty `backend`; panics on the first failure.
pub fn run_conformance<B: Backend>(backend: &B) {
    get_put_delete(backend);
    list_is_sorted_and_prefix_exact(backend);
    batch_is_atomic(backend);
    snapshot_is_every_key_and_value(backend);
}

fn snapshot_is_every_key_and_value<B: Backend>(b: &B) {
    assert!(b.snapshot().unwrap().is_empty());
    b.put("b", b"2").unwrap();
    b.put("a", b"1").unwrap();
    b.put("c", b"3").unwrap();
    b.delete("c").unwrap();
    assert_eq!(
        b.snapshot().unwrap(),
        [
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec())
        ]
    );
    b.apply(Batch::new().delete("a").delete("b")).unwrap();
    assert!(b.snapshot().unwrap().is_empty());
}

fn get_put_delete<B: Backend>(b: &B) {
    assert_eq!(b.get("a").unwrap(), None);
    b.put("a", b"1").unwrap();
    assert_eq!(b.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    b.put("a", b"2").unwrap();
    assert_eq!(b.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    b.put("empty", b"").unwrap();
    assert_eq!(b.get("empty").unwrap().as_deref(), Some(&b""[..]));
    b.delete("a").unwrap();
    b.delete("empty").unwrap();
    b.delete("never-existed").unwrap();
    assert_eq!(b.get("a").unwrap(), None);
}

fn list_is_sorted_and_prefix_exact<B: Backend>(b: &B) {
    for k in ["p/b", "p/a/x", "p/a", "p0", "q/a", "p/c/d/e"] {
        b.put(k, k.as_bytes()).unwrap();
    }
    assert_eq!(
        b.list("p/").unwrap(),
        vec!["p/a", "p/a/x", "p/b", "p/c/d/e"]
    );
    assert_eq!(b.list("p/a").unwrap(), vec!["p/a", "p/a/x"]);
    assert!(b.list("zz").unwrap().is_empty());
    for k in b.list("").unwrap() {
        b.delete(&k).unwrap();
    }
    assert!(b.list("").unwrap().is_empty());
}

fn batch_is_atomic<B: Backend>(b: &B) {
    b.apply(
        Batch::new()
            .expect("x", None)
            .put("x", b"1".to_vec())
            .put("y", b"2".to_vec()),
    )
    .unwrap();
    // A failed condition writes nothing.
    let err = b
        .apply(
            Batch::new()
                .expect("x", None)
                .put("z", b"3".to_vec())
                .delete("y"),
        )
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict { ref key } if key == "x"));
    assert_eq!(b.get("z").unwrap(), None);
    assert_eq!(b.get("y").unwrap().as_deref(), Some(&b"2"[..]));
    b.apply(
        Batch::new()
            .expect("x", Some(b"1".to_vec()))
            .delete("x")
            .delete("y"),
    )
    .unwrap();
    assert!(b.list("").unwrap().is_empty());
}

/// Many threads compare-and-set the same key: exactly one wins each round.
pub fn run_concurrency<B: Backend>(backend: Arc<B>) {
    let winners: usize = (0..8)
        .map(|i| {
            let b = Arc::clone(&backend);
            std::thread::spawn(move || {
                b.apply(Batch::new().expect("race", None).put("race", vec![i]))
                    .is_ok() as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(winners, 1);
    backend.delete("race").unwrap();
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_concurrency() {
        super::run_concurrency(std::sync::Arc::new(crate::MemoryBackend::new()));
    }
}
