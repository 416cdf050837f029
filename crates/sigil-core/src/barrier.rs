//! The barrier: every value is encrypted with the keyring's AES-256-GCM key before it reaches
//! the backend, with its full storage key bound in as associated data.

use std::sync::Arc;

use sigil_crypto::{BarrierKey, KeyTerm};
use sigil_storage::{Backend, Batch};
use zeroize::Zeroizing;

use crate::CoreError;

/// Where the keyring, wrapped by the root key, is stored.
const KEYRING_KEY: &str = "core/keyring";

/// The encrypting layer over a [`Backend`]: a root key wraps the keyring; the keyring's data key
/// encrypts every entry.
pub struct Barrier {
    backend: Arc<dyn Backend>,
    /// Wraps the keyring. In transient mode it exists only in this process's memory; with
    /// persistent storage it is the secret the admins' shares reconstruct.
    root: BarrierKey,
    key: BarrierKey,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("backend", &self.backend.kind())
            .field("root_term", &self.root.term())
            .field("term", &self.key.term())
            .finish()
    }
}

/// A stored entry as read: its ciphertext (for compare-and-set) and its plaintext.
pub(crate) struct Entry {
    pub(crate) raw: Vec<u8>,
    pub(crate) plain: Zeroizing<Vec<u8>>,
}

impl Barrier {
    /// Initializes a barrier on an empty backend: a random root key (kept only in memory) and
    /// a keyring with one random data key, stored wrapped by the root key.
    pub fn initialize(backend: Arc<dyn Backend>) -> Result<Self, CoreError> {
        let rng = |_| CoreError::bad("random number generator failed");
        let root = BarrierKey::generate(KeyTerm(0)).map_err(rng)?;
        let key = BarrierKey::generate(KeyTerm(1)).map_err(rng)?;
        let mut entry = Zeroizing::new(Vec::with_capacity(36));
        entry.extend_from_slice(&key.term().0.to_be_bytes());
        entry.extend_from_slice(key.expose_secret());
        let wrapped = root
            .seal(KEYRING_KEY.as_bytes(), &entry)
            .map_err(|_| CoreError::Integrity)?;
        backend.apply(
            Batch::new()
                .expect(KEYRING_KEY, None)
                .put(KEYRING_KEY, wrapped),
        )?;
        Ok(Barrier { backend, root, key })
    }

    /// The backend's kind, for status output.
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
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
        let plain = self.key.open(key.as_bytes(), &raw).map_err(|_| {
            tracing::error!(
                storage_key = key,
                "barrier entry failed its integrity check"
            );
            CoreError::Integrity
        })?;
        Ok(Some(Entry { raw, plain }))
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, CoreError> {
        self.key
            .seal(key.as_bytes(), plain)
            .map_err(|_| CoreError::Integrity)
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
pub(crate) struct ViewBatch {
    expect: Vec<(String, Option<Vec<u8>>)>,
    writes: Vec<(String, Option<Zeroizing<Vec<u8>>>)>,
}

impl ViewBatch {
    /// Requires `key` to still hold `entry` (or to be absent).
    pub(crate) fn expect(&mut self, key: &str, entry: Option<&Entry>) {
        self.expect
            .push((key.to_owned(), entry.map(|e| e.raw.clone())));
    }

    /// Writes `plain` at `key` (held zeroizing until it is sealed).
    pub(crate) fn put(&mut self, key: &str, plain: Vec<u8>) {
        self.writes
            .push((key.to_owned(), Some(Zeroizing::new(plain))));
    }

    /// Deletes `key`.
    pub(crate) fn delete(&mut self, key: &str) {
        self.writes.push((key.to_owned(), None));
    }
}

impl View {
    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Entry>, CoreError> {
        self.barrier.get(&self.full(key))
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        let full = self.full(prefix);
        Ok(self
            .barrier
            .backend
            .list(&full)?
            .into_iter()
            .map(|k| k[self.prefix.len()..].to_owned())
            .collect())
    }

    pub(crate) fn apply(&self, batch: ViewBatch) -> Result<(), CoreError> {
        let mut out = Batch::new();
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
        Ok(self.barrier.backend.apply(out)?)
    }
}
