//! The barrier: every value is encrypted with a keyring key (AES-256-GCM) before it reaches
//! the backend, with its full storage key bound in as associated data. The keyring itself is
//! stored wrapped by the root key.

use std::sync::{Arc, RwLock};

use sigil_crypto::{BarrierKey, KeyTerm};
use sigil_storage::{Backend, Batch};
use zeroize::Zeroizing;

use crate::CoreError;
use crate::key_usage::{self, KeyUsage, USAGE_KEY};

/// Where the keyring, wrapped by the root key, is stored.
pub const KEYRING_KEY: &str = "core/keyring";
/// Storage keys the barrier does not encrypt with the keyring (they are read while sealed or
/// are the keyring itself).
/// Where the seal configuration (admins, threshold, the root key's sealed shares) is stored,
/// outside the barrier: it is what unsealing reads.
pub const SEAL_CONFIG_KEY: &str = "core/seal-config";

/// The entries stored outside the barrier (written by the seal, not encrypted by a view).
pub const OUTSIDE_BARRIER: &[&str] = &[KEYRING_KEY, SEAL_CONFIG_KEY, USAGE_KEY];

/// The encrypting layer over a [`Backend`]: a root key wraps the keyring; the newest keyring key
/// encrypts new entries, every older one still decrypts.
pub struct Barrier {
    backend: Arc<dyn Backend>,
    /// Wraps the keyring. Kept while unsealed so the keyring can be rotated and the root key
    /// replaced (rekey).
    root: RwLock<BarrierKey>,
    /// Every term, oldest first; the last encrypts.
    keyring: RwLock<Vec<Arc<BarrierKey>>>,
    /// Encryptions under the newest term (key_usage.rs).
    usage: KeyUsage,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("backend", &self.backend.kind())
            .field("terms", &self.terms())
            .finish_non_exhaustive()
    }
}

/// A stored entry as read: its ciphertext (for compare-and-set) and its plaintext.
#[allow(missing_debug_implementations)] // holds plaintext: never printed
pub struct Entry {
    /// As stored: the ciphertext, which a batch may expect unchanged.
    pub raw: Vec<u8>,
    /// Decrypted.
    pub plain: Zeroizing<Vec<u8>>,
}

fn rng(_: sigil_crypto::CryptoError) -> CoreError {
    CoreError::rng()
}

/// `term(4, BE) ‖ key(32)` per keyring entry.
fn encode_keyring(keys: &[Arc<BarrierKey>]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(keys.len() * 36));
    for k in keys {
        out.extend_from_slice(&k.term().0.to_be_bytes());
        out.extend_from_slice(k.expose_secret());
    }
    out
}

fn decode_keyring(bytes: &[u8]) -> Result<Vec<Arc<BarrierKey>>, CoreError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(36) {
        return Err(CoreError::Integrity);
    }
    Ok(bytes
        .chunks(36)
        .map(|c| {
            let term = KeyTerm(u32::from_be_bytes(c[..4].try_into().expect("4 bytes")));
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&c[4..]);
            Arc::new(BarrierKey::from_secret(term, key))
        })
        .collect())
}

impl Barrier {
    /// Initializes a barrier on an empty backend with `root` and a keyring of one random key.
    pub fn initialize(backend: Arc<dyn Backend>, root: BarrierKey) -> Result<Self, CoreError> {
        let key = Arc::new(BarrierKey::generate(KeyTerm(1)).map_err(rng)?);
        let wrapped = root
            .seal(
                KEYRING_KEY.as_bytes(),
                &encode_keyring(std::slice::from_ref(&key)),
            )
            .map_err(|_| CoreError::Integrity)?;
        backend.apply(
            Batch::new()
                .expect(KEYRING_KEY, None)
                .put(KEYRING_KEY, wrapped),
        )?;
        Ok(Barrier {
            backend,
            root: RwLock::new(root),
            keyring: RwLock::new(vec![key]),
            usage: KeyUsage::new(None, 1),
        })
    }

    /// Opens the stored keyring with `root`. A keyring that is missing, does not decrypt with
    /// `root` (a wrong root key, or damaged shares or storage) or does not decode fails with
    /// [`CoreError::Keyring`], which reveals nothing of the keys.
    pub fn open(backend: Arc<dyn Backend>, root: BarrierKey) -> Result<Self, CoreError> {
        let wrapped = backend
            .get(KEYRING_KEY)?
            .ok_or(CoreError::Keyring("the storage holds no keyring"))?;
        let plain = root.open(KEYRING_KEY.as_bytes(), &wrapped).map_err(|_| {
            CoreError::Keyring(
                "the stored keyring does not decrypt with the root key the shares give (damaged shares or storage)",
            )
        })?;
        let keyring = decode_keyring(&plain)
            .map_err(|_| CoreError::Keyring("the stored keyring does not decode"))?;
        let newest = keyring
            .last()
            .ok_or(CoreError::Keyring("the stored keyring is empty"))?;
        let stored = match backend.get(USAGE_KEY)? {
            None => None,
            Some(raw) => {
                let plain = newest
                    .open(USAGE_KEY.as_bytes(), &raw)
                    .ok()
                    .and_then(|p| key_usage::decode(&p));
                // Sealed under an older term: its count is of that term.
                if plain.is_none() && BarrierKey::term_of(&raw).ok() == Some(newest.term()) {
                    return Err(CoreError::Integrity);
                }
                plain
            }
        };
        let usage = KeyUsage::new(stored, newest.term().0);
        Ok(Barrier {
            backend,
            root: RwLock::new(root),
            keyring: RwLock::new(keyring),
            usage,
        })
    }

    /// Encryptions under the newest keyring term so far, and that term.
    pub fn encryptions(&self) -> (u32, u64) {
        self.usage.used()
    }

    /// Whether the newest term has encrypted as much as it safely may: the server then rotates
    /// (key_usage.rs).
    pub fn rotation_due(&self) -> bool {
        self.usage.due()
    }

    /// Lowers the rotation threshold (tests of the rotation; the `testing` feature, which only
    /// dev-dependencies turn on).
    #[cfg(any(test, feature = "testing"))]
    pub fn set_rotation_limit(&self, encryptions: u64) {
        self.usage.set_limit(encryptions);
    }

    /// The backend's kind, for status output.
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Every stored entry, as stored (ciphertext), at one instant, handed to `visit` one at a
    /// time in key order ([`Backend::snapshot_each`]).
    pub fn raw_snapshot_each(&self, visit: &mut sigil_storage::Visit<'_>) -> Result<(), CoreError> {
        self.backend
            .snapshot_each(visit)
            .map_err(CoreError::Storage)
    }

    /// The keyring's terms, oldest first.
    pub fn terms(&self) -> Vec<u32> {
        self.keys().iter().map(|k| k.term().0).collect()
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<BarrierKey>>> {
        self.keyring.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the root key, to seal to a node an admin admitted to the cluster (which
    /// then opens the same keyring). Never stored, never logged.
    pub fn root_copy(&self) -> BarrierKey {
        let root = self.root.read().unwrap_or_else(|e| e.into_inner());
        BarrierKey::from_secret(root.term(), zeroize::Zeroizing::new(*root.expose_secret()))
    }

    /// Takes `root` as the root key if it opens the stored keyring (a cluster member adopting
    /// the key a rekey on the leader made); the keyring in memory is unchanged.
    pub fn adopt_root(&self, root: BarrierKey) -> Result<(), CoreError> {
        let wrapped = self
            .backend
            .get(KEYRING_KEY)?
            .ok_or(CoreError::Keyring("the keyring is missing"))?;
        root.open(KEYRING_KEY.as_bytes(), &wrapped).map_err(|_| {
            CoreError::Keyring("the offered root key does not open the stored keyring")
        })?;
        *self.root.write().unwrap_or_else(|e| e.into_inner()) = root;
        Ok(())
    }

    /// Adds a new keyring term; new writes use it, older terms keep decrypting.
    pub fn rotate(&self) -> Result<u32, CoreError> {
        let mut keys = self.keyring.write().unwrap_or_else(|e| e.into_inner());
        let next = KeyTerm(keys.last().map_or(1, |k| k.term().0 + 1));
        let mut updated = keys.clone();
        updated.push(Arc::new(BarrierKey::generate(next).map_err(rng)?));
        let old = self.backend.get(KEYRING_KEY)?;
        let wrapped = self
            .root
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .seal(KEYRING_KEY.as_bytes(), &encode_keyring(&updated))
            .map_err(|_| CoreError::Integrity)?;
        let newest = Arc::clone(updated.last().expect("a key was just added"));
        self.commit(
            Batch::new()
                .expect(KEYRING_KEY, old)
                .put(KEYRING_KEY, wrapped),
            &newest,
        )?;
        *keys = updated;
        self.usage.start(next.0);
        Ok(next.0)
    }

    /// Replaces the root key: the keyring is re-wrapped under `new_root` and stored in one atomic
    /// batch with `with` (the new seal configuration). The old root key then opens nothing
    /// current.
    pub fn replace_root(&self, new_root: BarrierKey, with: Batch) -> Result<(), CoreError> {
        let keys = self.keyring.write().unwrap_or_else(|e| e.into_inner());
        let mut root = self.root.write().unwrap_or_else(|e| e.into_inner());
        let old = self.backend.get(KEYRING_KEY)?;
        let wrapped = new_root
            .seal(KEYRING_KEY.as_bytes(), &encode_keyring(&keys))
            .map_err(|_| CoreError::Integrity)?;
        let mut batch = with;
        batch.expect.push((KEYRING_KEY.to_owned(), old));
        batch.writes.push((KEYRING_KEY.to_owned(), Some(wrapped)));
        let newest = keys.last().cloned().ok_or(CoreError::Integrity)?;
        self.commit(batch, &newest)?;
        *root = new_root;
        Ok(())
    }

    /// Re-encrypts every entry written under an older term with the newest one. Entries
    /// changed concurrently are left to their writer (already on the newest term). Returns the
    /// number of entries rewritten.
    pub fn rewrap(&self) -> Result<usize, CoreError> {
        let newest = self
            .keys()
            .last()
            .map(|k| k.term())
            .ok_or(CoreError::Integrity)?;
        let mut count = 0;
        for key in self.backend.list("")? {
            if OUTSIDE_BARRIER.contains(&key.as_str()) {
                continue;
            }
            let Some(entry) = self.get(&key)? else {
                continue;
            };
            if BarrierKey::term_of(&entry.raw).map_err(|_| CoreError::Integrity)? == newest {
                continue;
            }
            let sealed = self.seal(&key, &entry.plain)?;
            match self.backend.apply(
                Batch::new()
                    .expect(key.as_str(), Some(entry.raw))
                    .put(key.as_str(), sealed),
            ) {
                Ok(()) => count += 1,
                Err(sigil_storage::StorageError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }

    /// How many stored entries each term encrypts (for status and tests).
    pub fn term_usage(&self) -> Result<Vec<(u32, usize)>, CoreError> {
        let mut usage: Vec<(u32, usize)> = self.terms().into_iter().map(|t| (t, 0)).collect();
        for key in self.backend.list("")? {
            if OUTSIDE_BARRIER.contains(&key.as_str()) {
                continue;
            }
            if let Some(raw) = self.backend.get(&key)? {
                let term = BarrierKey::term_of(&raw)
                    .map_err(|_| CoreError::Integrity)?
                    .0;
                if let Some(slot) = usage.iter_mut().find(|(t, _)| *t == term) {
                    slot.1 += 1;
                }
            }
        }
        Ok(usage)
    }

    /// A view confined to `prefix`.
    pub fn view(self: &Arc<Self>, prefix: &str) -> View {
        View {
            barrier: Arc::clone(self),
            prefix: prefix.to_owned(),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, CoreError> {
        let Some(raw) = self.backend.get(key)? else {
            return Ok(None);
        };
        let integrity = || {
            tracing::error!(
                storage_key = key,
                "barrier entry failed its integrity check"
            );
            CoreError::Integrity
        };
        let term = BarrierKey::term_of(&raw).map_err(|_| integrity())?;
        let key_for_term = self
            .keys()
            .iter()
            .find(|k| k.term() == term)
            .cloned()
            .ok_or_else(integrity)?;
        let plain = key_for_term
            .open(key.as_bytes(), &raw)
            .map_err(|_| integrity())?;
        Ok(Some(Entry { raw, plain }))
    }

    /// Applies `batch` to the backend. The first batch committed while a request's replay
    /// mark is pending on this thread carries the mark, sealed with `newest` (replay.rs).
    fn commit(&self, mut batch: Batch, newest: &BarrierKey) -> Result<(), CoreError> {
        let mark = crate::replay::pending();
        let mut mark_key = None;
        if let Some(mark) = &mark {
            let key = format!("{}{}", crate::replay::PREFIX, mark.key());
            let sealed = self.seal_with(newest, &key, &mark.until.to_be_bytes())?;
            // A mark is written once: a request carried out already (by another node of a
            // cluster, before this one loaded the marks) is refused when its batch applies.
            batch = batch.expect(key.clone(), None).put(key.clone(), sealed);
            mark_key = Some(key);
        }
        match self.backend.apply(batch) {
            Err(sigil_storage::StorageError::Conflict { key })
                if Some(&key) == mark_key.as_ref() =>
            {
                return Err(CoreError::Conflict(
                    "replayed request: this nonce was already used".into(),
                ));
            }
            other => other?,
        }
        if mark.is_some() {
            crate::replay::committed();
        }
        Ok(())
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, CoreError> {
        let newest = self.keys().last().cloned().ok_or(CoreError::Integrity)?;
        self.seal_with(&newest, key, plain)
    }

    /// Encrypts under `with` and counts it; stores a new reservation when one is due, before
    /// the ciphertext can be used (key_usage.rs).
    fn seal_with(&self, with: &BarrierKey, key: &str, plain: &[u8]) -> Result<Vec<u8>, CoreError> {
        let sealed = with
            .seal(key.as_bytes(), plain)
            .map_err(|_| CoreError::Integrity)?;
        if let Some(reserved) = self.usage.count(with.term().0) {
            let value = with
                .seal(
                    USAGE_KEY.as_bytes(),
                    &key_usage::encode(with.term().0, reserved),
                )
                .map_err(|_| CoreError::Integrity)?;
            self.backend.put(USAGE_KEY, &value)?;
        }
        Ok(sealed)
    }
}

/// An engine's window onto the barrier: keys are relative to the view's prefix, and nothing
/// outside it can be reached.
#[derive(Clone)]
pub struct View {
    barrier: Arc<Barrier>,
    prefix: String,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A set of writes to apply atomically through a [`View`], guarded by compare-and-set on
/// entries previously read.
#[derive(Default)]
#[allow(missing_debug_implementations)] // holds plaintext: never printed
pub struct ViewBatch {
    expect: Vec<(String, Option<Vec<u8>>)>,
    writes: Vec<(String, Option<Zeroizing<Vec<u8>>>)>,
    shred: bool,
}

impl ViewBatch {
    /// What this batch deletes or replaces must leave the storage files (destroy, delete all
    /// versions, disable a mount), not only become unreachable.
    pub fn shred(&mut self) {
        self.shred = true;
    }

    /// Requires `key` to still hold `entry` (or to be absent).
    pub fn expect(&mut self, key: &str, entry: Option<&Entry>) {
        self.expect
            .push((key.to_owned(), entry.map(|e| e.raw.clone())));
    }

    /// Writes `plain` at `key` (held zeroizing until it is sealed).
    pub fn put(&mut self, key: &str, plain: Vec<u8>) {
        self.writes
            .push((key.to_owned(), Some(Zeroizing::new(plain))));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) {
        self.writes.push((key.to_owned(), None));
    }
}

impl View {
    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Reads and decrypts `key` of this view.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, CoreError> {
        self.barrier.get(&self.full(key))
    }

    /// The keys of this view starting with `prefix`, sorted (relative to the view).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        let full = self.full(prefix);
        Ok(self
            .barrier
            .backend
            .list(&full)?
            .into_iter()
            .map(|k| k[self.prefix.len()..].to_owned())
            .collect())
    }

    /// The children of `prefix` in this view: the next path segment of each key below it,
    /// folders with their trailing `/`, sorted, each once (what a LIST answers). Costs in
    /// proportion to the children, not to every key below them.
    pub fn list_children(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        Ok(self.barrier.backend.list_children(&self.full(prefix))?)
    }

    /// Deletes `keys` of this view in batches that each fit one write of the backend (one
    /// Raft entry: `max_entry_size`; [`sigil_storage::delete_chunks`]), so not atomically: for
    /// deletes that may be repeated after an interruption (sweeps, purges). With `shred`, the
    /// last batch shreds, which covers what the earlier ones deleted (a backend shreds its
    /// whole files).
    pub fn delete_all(&self, keys: &[String], shred: bool) -> Result<(), CoreError> {
        let max = self.barrier.backend.max_batch_bytes();
        let chunks = sigil_storage::delete_chunks(keys, self.prefix.len(), max);
        for (i, chunk) in chunks.iter().enumerate() {
            let mut batch = ViewBatch::default();
            for key in *chunk {
                batch.delete(key);
            }
            if shred && i + 1 == chunks.len() {
                batch.shred();
            }
            self.apply(batch)?;
        }
        Ok(())
    }

    /// Commits `batch` atomically (see [`Barrier::commit`]).
    pub fn apply(&self, batch: ViewBatch) -> Result<(), CoreError> {
        let mut out = Batch::new();
        if batch.shred {
            out = out.shred();
        }

        for (k, v) in batch.expect {
            out = out.expect(self.full(&k), v);
        }
        for (k, v) in batch.writes {
            let full = self.full(&k);
            out = match v {
                Some(plain) => {
                    let sealed = self.barrier.seal(&full, &plain)?;
                    out.put(full, sealed)
                }
                None => out.delete(full),
            };
        }
        let newest = self
            .barrier
            .keys()
            .last()
            .cloned()
            .ok_or(CoreError::Integrity)?;
        self.barrier.commit(out, &newest)
    }
}

#[cfg(test)]
mod tests {
    use sigil_storage::MemoryBackend;

    use super::*;

    fn root() -> (BarrierKey, Zeroizing<[u8; 32]>) {
        let key = BarrierKey::generate(KeyTerm(0)).unwrap();
        let kept = Zeroizing::new(*key.expose_secret());
        (key, kept)
    }

    fn again(kept: &Zeroizing<[u8; 32]>) -> BarrierKey {
        BarrierKey::from_secret(KeyTerm(0), Zeroizing::new(**kept))
    }

    /// What a view writes is stored encrypted, with its key bound in: the backend never holds
    /// the plaintext, a value moved to another key does not open, and the right root key opens
    /// it again after a restart while a wrong one opens nothing.
    #[test]
    fn values_are_encrypted_bound_to_their_key_and_need_the_root_key() {
        let backend = Arc::new(MemoryBackend::new());
        let (key, kept) = root();
        let barrier = Arc::new(Barrier::initialize(backend.clone(), key).unwrap());
        let view = barrier.view("logical/a/");
        let mut batch = ViewBatch::default();
        batch.put("secret", b"hunter2".to_vec());
        view.apply(batch).unwrap();
        let raw = backend.get("logical/a/secret").unwrap().unwrap();
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&*view.get("secret").unwrap().unwrap().plain, b"hunter2");
        // The same ciphertext under another key: refused, not misread.
        backend.put("logical/a/other", &raw).unwrap();
        assert!(matches!(view.get("other"), Err(CoreError::Integrity)));
        // Views see only their prefix.
        assert!(barrier.view("logical/b/").get("secret").unwrap().is_none());
        assert_eq!(view.list("").unwrap(), ["other", "secret"]);
        drop(barrier);
        let reopened = Arc::new(Barrier::open(backend.clone(), again(&kept)).unwrap());
        let value = reopened.view("logical/a/").get("secret").unwrap().unwrap();
        assert_eq!(&*value.plain, b"hunter2");
        let (wrong, _) = root();
        assert!(matches!(
            Barrier::open(backend, wrong),
            Err(CoreError::Keyring(_))
        ));
    }

    /// A memory backend that takes batches of at most `max` bytes, as Raft does, and
    /// records each batch's size and whether it shreds.
    struct Bounded {
        inner: MemoryBackend,
        max: usize,
        batches: std::sync::Mutex<Vec<(usize, bool)>>,
    }

    impl Backend for Bounded {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, sigil_storage::StorageError> {
            self.inner.get(key)
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), sigil_storage::StorageError> {
            self.inner.put(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), sigil_storage::StorageError> {
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, sigil_storage::StorageError> {
            self.inner.list(prefix)
        }
        fn apply(&self, batch: Batch) -> Result<(), sigil_storage::StorageError> {
            let pair =
                |(k, v): &(String, Option<Vec<u8>>)| k.len() + v.as_ref().map_or(0, Vec::len);
            let bytes = batch.expect.iter().chain(&batch.writes).map(pair).sum();
            if bytes > self.max {
                return Err(sigil_storage::StorageError::TooLarge {
                    bytes,
                    max: self.max,
                });
            }
            self.batches.lock().unwrap().push((bytes, batch.shred));
            self.inner.apply(batch)
        }
        fn snapshot_each(
            &self,
            visit: &mut sigil_storage::Visit<'_>,
        ) -> Result<(), sigil_storage::StorageError> {
            self.inner.snapshot_each(visit)
        }
        fn kind(&self) -> &'static str {
            "bounded"
        }
        fn max_batch_bytes(&self) -> usize {
            self.max
        }
    }

    /// Deleting more keys than one batch may carry goes in batches that fit, only the last
    /// one shredding; every key is gone. (A replay-mark bucket of a busy minute, deleted in
    /// one batch, once made a Raft entry no follower would take.)
    #[test]
    fn delete_all_goes_in_batches_that_fit_and_shreds_with_the_last() {
        let (key, _) = root();
        let backend = Arc::new(Bounded {
            inner: MemoryBackend::new(),
            max: 64 * 1024,
            batches: Default::default(),
        });
        let barrier = Arc::new(Barrier::initialize(backend.clone(), key).unwrap());
        let view = barrier.view("sys/replay/");
        let keys: Vec<String> = (0..3 * sigil_storage::DELETE_CHUNK + 7)
            .map(|i| format!("000000000060/{i:0>43}"))
            .collect();
        for chunk in keys.chunks(100) {
            let mut batch = ViewBatch::default();
            for k in chunk {
                batch.put(k, Vec::new());
            }
            view.apply(batch).unwrap();
        }
        // In one batch, the deletes are refused.
        let mut whole = ViewBatch::default();
        for k in &keys {
            whole.delete(k);
        }
        assert!(matches!(
            view.apply(whole),
            Err(CoreError::TooLarge(m)) if m.contains("max_entry_size")
        ));
        backend.batches.lock().unwrap().clear();
        view.delete_all(&keys, true).unwrap();
        assert!(view.list("").unwrap().is_empty());
        let batches = backend.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 4, "{batches:?}");
        let shredding: Vec<bool> = batches.iter().map(|(_, shred)| *shred).collect();
        assert_eq!(shredding, [false, false, false, true]);
        view.delete_all(&[], true).unwrap();
    }

    /// A batch whose expectation no longer holds changes nothing.
    #[test]
    fn a_batch_with_a_stale_expectation_changes_nothing() {
        let (key, _) = root();
        let barrier = Arc::new(Barrier::initialize(Arc::new(MemoryBackend::new()), key).unwrap());
        let view = barrier.view("v/");
        let mut first = ViewBatch::default();
        first.put("k", b"1".to_vec());
        view.apply(first).unwrap();
        let read = view.get("k").unwrap();
        let mut winner = ViewBatch::default();
        winner.expect("k", read.as_ref());
        winner.put("k", b"2".to_vec());
        view.apply(winner).unwrap();
        let mut loser = ViewBatch::default();
        loser.expect("k", read.as_ref());
        loser.put("k", b"3".to_vec());
        loser.put("other", b"x".to_vec());
        assert!(view.apply(loser).is_err());
        assert_eq!(&*view.get("k").unwrap().unwrap().plain, b"2");
        assert!(view.get("other").unwrap().is_none());
    }

    /// Rotation adds a term that new writes use while older ones still decrypt; rewrap moves
    /// every entry to the newest term; both survive a reopen.
    #[test]
    fn rotation_and_rewrap_keep_everything_readable() {
        let backend = Arc::new(MemoryBackend::new());
        let (key, kept) = root();
        let barrier = Arc::new(Barrier::initialize(backend.clone(), key).unwrap());
        let view = barrier.view("v/");
        let mut batch = ViewBatch::default();
        batch.put("old", b"one".to_vec());
        view.apply(batch).unwrap();
        assert_eq!(barrier.rotate().unwrap(), 2);
        let mut batch = ViewBatch::default();
        batch.put("new", b"two".to_vec());
        view.apply(batch).unwrap();
        assert_eq!(barrier.terms(), [1, 2]);
        let usage = barrier.term_usage().unwrap();
        assert_eq!(usage, [(1, 1), (2, 1)]);
        assert_eq!(barrier.rewrap().unwrap(), 1);
        assert_eq!(barrier.term_usage().unwrap(), [(1, 0), (2, 2)]);
        drop(barrier);
        let reopened = Arc::new(Barrier::open(backend, again(&kept)).unwrap());
        let view = reopened.view("v/");
        assert_eq!(&*view.get("old").unwrap().unwrap().plain, b"one");
        assert_eq!(&*view.get("new").unwrap().unwrap().plain, b"two");
        assert_eq!(reopened.terms(), [1, 2]);
    }
}
