//! Leases (Vault's `sys/leases`): every dynamic secret is issued with one. A lease is stored
//! under the barrier (`sys/lease/<id>`) before the secret exists, so a crash never leaves a
//! secret without a lease; an in-memory expiry queue says which are due, and the server's
//! sweeper revokes them (with backoff when the backend fails). Lease ids carry no authority:
//! the owner, or a policy on `sys/leases/…/<id>`, decides who may renew or revoke.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::CoreError;
use crate::barrier::{Entry, View, ViewBatch};

/// Longest accepted lease id.
const MAX_ID: usize = 1024;
/// Longest wait between two revocation attempts of a failing lease.
const MAX_BACKOFF: i64 = 300;

/// A lease as stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Lease {
    /// `<path>/<random>`.
    pub(crate) id: String,
    /// The request path that issued it (`database/creds/app`): the mount that revokes it.
    pub(crate) path: String,
    /// The identity id that asked for it.
    pub(crate) owner: String,
    /// Unix seconds.
    pub(crate) issue_time: i64,
    /// Unix seconds.
    pub(crate) expire_time: i64,
    /// The TTL it was issued with: a renewal without an increment extends it by this much.
    pub(crate) ttl: u64,
    /// No renewal goes past this (unix seconds).
    pub(crate) max_expire_time: i64,
    /// Unix seconds of the last renewal.
    #[serde(default)]
    pub(crate) last_renewal: Option<i64>,
    pub(crate) renewable: bool,
    /// What the issuing engine needs to renew and revoke (never returned to a caller).
    pub(crate) secret: Value,
}

impl Lease {
    /// Vault's `sys/leases/lookup` answer.
    pub(crate) fn to_json(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "issue_time": rfc3339(self.issue_time),
            "expire_time": rfc3339(self.expire_time),
            "last_renewal": self.last_renewal.map(rfc3339),
            "renewable": self.renewable,
            "ttl": (self.expire_time - now).max(0),
        })
    }
}

pub(crate) use sigil_engine::timefmt::{rfc3339_of as rfc3339, unix_now as now};

/// Which leases are due when, and how often each has failed to revoke.
#[derive(Default)]
struct Queue {
    by_time: BTreeSet<(i64, String)>,
    due: HashMap<String, (i64, u32)>,
}

impl Queue {
    fn set(&mut self, id: &str, at: i64, failures: u32) {
        if let Some((old, _)) = self.due.insert(id.to_owned(), (at, failures)) {
            self.by_time.remove(&(old, id.to_owned()));
        }
        self.by_time.insert((at, id.to_owned()));
    }

    fn remove(&mut self, id: &str) {
        if let Some((at, _)) = self.due.remove(id) {
            self.by_time.remove(&(at, id.to_owned()));
        }
    }
}

/// The stored leases and their expiry queue.
pub(crate) struct LeaseStore {
    view: View,
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for LeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseStore").finish_non_exhaustive()
    }
}

/// Checks a lease id from a request: bounded, no empty or dot segments.
pub(crate) fn check_id(id: &str) -> Result<&str, CoreError> {
    let id = id.trim_matches('/');
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(id)
    } else {
        Err(CoreError::bad("invalid lease id"))
    }
}

impl LeaseStore {
    pub(crate) fn new(view: View) -> Self {
        LeaseStore {
            view,
            queue: Mutex::new(Queue::default()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every stored lease into the expiry queue (at unseal, and by tidy). Overdue ones
    /// are due at once; leases already queued keep their place and backoff. An entry that
    /// cannot be read is logged and skipped (tidy removes it), so it cannot block an unseal.
    /// Returns how many leases are queued.
    pub(crate) fn load_all(&self) -> Result<usize, CoreError> {
        let mut stored = HashMap::new();
        for id in self.view.list("")? {
            match self.get(&id) {
                Ok(Some((lease, _))) => {
                    stored.insert(id, lease.expire_time);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "an unreadable lease entry is skipped; sys/leases/tidy removes it")
                }
            }
        }
        let mut q = self.queue();
        let gone: Vec<String> = q
            .due
            .keys()
            .filter(|id| !stored.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            q.remove(&id);
        }
        for (id, expire) in stored {
            if !q.due.contains_key(&id) {
                q.set(&id, expire, 0);
            }
        }
        Ok(q.due.len())
    }

    /// A new lease id below `path`.
    fn new_id(path: &str) -> Result<String, CoreError> {
        let suffix = sigil_crypto::random::string_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            24,
        )
        .map_err(|_| CoreError::rng())?;
        Ok(format!(
            "{}/{}",
            path.trim_end_matches('/'),
            suffix.as_str()
        ))
    }

    /// Stores a new lease (before its secret is created) and queues it.
    fn create(&self, lease: &Lease) -> Result<(), CoreError> {
        self.write(lease, None)
    }

    /// The lease with this id, and its stored entry (for compare-and-set).
    pub(crate) fn get(&self, id: &str) -> Result<Option<(Lease, Entry)>, CoreError> {
        let Some(entry) = self.view.get(id)? else {
            return Ok(None);
        };
        let lease = serde_json::from_slice(&entry.plain).map_err(|_| CoreError::Integrity)?;
        Ok(Some((lease, entry)))
    }

    /// Replaces a lease read as `expected` (a renewal).
    pub(crate) fn update(&self, lease: &Lease, expected: &Entry) -> Result<(), CoreError> {
        self.write(lease, Some(expected))
    }

    fn write(&self, lease: &Lease, expected: Option<&Entry>) -> Result<(), CoreError> {
        let mut batch = ViewBatch::default();
        batch.expect(&lease.id, expected);
        batch.put(
            &lease.id,
            serde_json::to_vec(lease).expect("a lease serializes"),
        );
        self.view.apply(batch)?;
        self.queue().set(&lease.id, lease.expire_time, 0);
        Ok(())
    }

    /// Makes every lease that `owner` holds expire at `now` and end there (no renewal), stored
    /// and queued, so the sweeper revokes them within a second, retrying as it does for any
    /// lease. A lease that cannot be read or changed is logged and skipped: the others still
    /// end. Returns how many `owner` held; fails only if the leases cannot be listed.
    pub(crate) fn expire_owned_by(&self, owner: &str, now: i64) -> Result<usize, CoreError> {
        let mut held = 0;
        for id in self.view.list("")? {
            match self.expire_if_owned(&id, owner, now) {
                Ok(true) => held += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "a lease could not be checked or ended")
                }
            }
        }
        Ok(held)
    }

    /// Ends lease `id` at `now` if `owner` holds it; whether it does.
    fn expire_if_owned(&self, id: &str, owner: &str, now: i64) -> Result<bool, CoreError> {
        // A renewal racing this changes the entry under us: read it again.
        let mut attempts = 1;
        loop {
            let Some((mut lease, entry)) = self.get(id)? else {
                return Ok(false);
            };
            if lease.owner != owner {
                return Ok(false);
            }
            if lease.expire_time <= now && lease.max_expire_time <= now {
                return Ok(true);
            }
            lease.expire_time = lease.expire_time.min(now);
            lease.max_expire_time = lease.max_expire_time.min(now);
            match self.update(&lease, &entry) {
                Ok(()) => return Ok(true),
                Err(e) if attempts == 4 => return Err(e),
                Err(_) => attempts += 1,
            }
        }
    }

    /// Forgets a lease (its secret is revoked, or its creation failed).
    pub(crate) fn remove(&self, id: &str) -> Result<(), CoreError> {
        let mut batch = ViewBatch::default();
        batch.delete(id);
        self.view.apply(batch)?;
        self.queue().remove(id);
        Ok(())
    }

    /// The ids of stored leases whose id starts with `prefix`, sorted.
    /// The children of `prefix` among the lease ids (what `LIST sys/leases/lookup/…` answers).
    pub(crate) fn children_under(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        self.view.list_children(prefix)
    }

    pub(crate) fn ids_under(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        let mut ids = self.view.list(prefix)?;
        ids.sort();
        Ok(ids)
    }

    /// Drops `id` from the queue only (its entry is already gone).
    pub(crate) fn forget(&self, id: &str) {
        self.queue().remove(id);
    }

    /// Up to `max` leases due at `now`, earliest first.
    pub(crate) fn due(&self, now: i64, max: usize) -> Vec<String> {
        self.queue()
            .by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// A revocation of `id` failed: try again later, waiting twice as long each time (1 s to
    /// 5 min). Returns the number of failures so far.
    pub(crate) fn retry_later(&self, id: &str, now: i64) -> u32 {
        let mut q = self.queue();
        let failures = q.due.get(id).map_or(0, |(_, f)| *f).saturating_add(1);
        let wait = 1i64
            .checked_shl(failures.min(16))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF);
        q.set(id, now + wait, failures);
        failures
    }

    /// How many leases are queued.
    pub(crate) fn len(&self) -> usize {
        self.queue().due.len()
    }

    /// Drops stored entries that are not leases (unreadable), and re-reads the queue from
    /// storage. Returns how many entries were dropped.
    pub(crate) fn tidy(&self) -> Result<usize, CoreError> {
        let mut dropped = 0;
        for id in self.view.list("")? {
            let Some(entry) = self.view.get(&id).ok().flatten() else {
                continue;
            };
            if serde_json::from_slice::<Lease>(&entry.plain).is_ok_and(|l| l.id == id) {
                continue;
            }
            let mut batch = ViewBatch::default();
            batch.expect(&id, Some(&entry));
            batch.delete(&id);
            self.view.apply(batch)?;
            dropped += 1;
        }
        self.load_all()?;
        Ok(dropped)
    }
}

/// What the engines that issue leases (database) see of the store.
impl sigil_engine::Leases for LeaseStore {
    fn issue(&self, new: sigil_engine::NewLease) -> Result<String, CoreError> {
        let lease = Lease {
            id: LeaseStore::new_id(&new.path)?,
            path: new.path,
            owner: new.owner,
            issue_time: new.issue_time,
            expire_time: new.issue_time.saturating_add_unsigned(new.ttl),
            ttl: new.ttl,
            max_expire_time: new.issue_time.saturating_add_unsigned(new.max_ttl),
            last_renewal: None,
            renewable: new.renewable,
            secret: new.secret,
        };
        self.create(&lease)?;
        Ok(lease.id)
    }

    fn withdraw(&self, id: &str) -> Result<(), CoreError> {
        self.remove(id)
    }

    fn expire_at(&self, id: &str, now: i64) -> Result<(), CoreError> {
        if let Some((mut due, entry)) = self.get(id)? {
            due.expire_time = now;
            due.max_expire_time = now;
            self.update(&due, &entry)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sigil_crypto::{BarrierKey, KeyTerm};
    use sigil_storage::MemoryBackend;

    use super::*;
    use crate::barrier::Barrier;

    fn store() -> LeaseStore {
        let root = BarrierKey::generate(KeyTerm(0)).unwrap();
        let barrier = Arc::new(Barrier::initialize(Arc::new(MemoryBackend::new()), root).unwrap());
        LeaseStore::new(barrier.view("sys/lease/"))
    }

    fn lease(id: &str, expire: i64) -> Lease {
        Lease {
            id: id.into(),
            path: "db/creds/r".into(),
            owner: "o".into(),
            issue_time: 0,
            expire_time: expire,
            ttl: 10,
            max_expire_time: expire,
            last_renewal: None,
            renewable: true,
            secret: json!({}),
        }
    }

    /// An owner's leases become due at once and cannot be renewed past that; other owners'
    /// leases are untouched.
    #[test]
    fn an_owners_leases_expire_now_and_no_others() {
        let s = store();
        s.create(&lease("db/creds/r/a", 100)).unwrap();
        s.create(&lease("db/creds/r/b", 200)).unwrap();
        let mut other = lease("db/creds/r/c", 100);
        other.owner = "p".into();
        s.create(&other).unwrap();
        assert_eq!(s.due(50, 10), Vec::<String>::new());
        assert_eq!(s.expire_owned_by("o", 50).unwrap(), 2);
        assert_eq!(s.due(50, 10), ["db/creds/r/a", "db/creds/r/b"]);
        let (a, _) = s.get("db/creds/r/a").unwrap().unwrap();
        assert_eq!((a.expire_time, a.max_expire_time), (50, 50));
        let (c, _) = s.get("db/creds/r/c").unwrap().unwrap();
        assert_eq!((c.expire_time, c.max_expire_time), (100, 100));
        assert_eq!(s.expire_owned_by("nobody", 50).unwrap(), 0);
    }

    #[test]
    fn due_in_order_with_backoff_and_restored_from_storage() {
        let s = store();
        s.create(&lease("db/creds/r/b", 20)).unwrap();
        s.create(&lease("db/creds/r/a", 10)).unwrap();
        s.create(&lease("db/creds/r/c", 30)).unwrap();
        assert!(
            s.create(&lease("db/creds/r/c", 30)).is_err(),
            "ids are unique"
        );
        assert_eq!(s.due(5, 10), Vec::<String>::new());
        assert_eq!(s.due(20, 10), ["db/creds/r/a", "db/creds/r/b"]);
        assert_eq!(s.due(20, 1), ["db/creds/r/a"]);
        assert_eq!(s.retry_later("db/creds/r/a", 20), 1);
        assert_eq!(s.due(21, 10), ["db/creds/r/b"]);
        assert_eq!(s.retry_later("db/creds/r/a", 22), 2);
        assert_eq!(s.due(25, 10), ["db/creds/r/b"], "second failure waits 4 s");
        assert_eq!(s.due(26, 10), ["db/creds/r/b", "db/creds/r/a"]);
        s.remove("db/creds/r/b").unwrap();
        // A fresh store over the same view (an unseal) finds the same leases.
        let again = LeaseStore::new(s.view);
        assert_eq!(again.load_all().unwrap(), 2);
        assert_eq!(again.due(100, 10), ["db/creds/r/a", "db/creds/r/c"]);
        assert_eq!(again.ids_under("db/creds/").unwrap().len(), 2);
    }

    /// Issue 8 asks that ten thousand outstanding leases not make unseal slow: they are
    /// written to a real redb file, then read back into the expiry queue as an unseal does.
    /// The time is printed (`cargo test -p sigil-core ten_thousand -- --nocapture`); what is
    /// asserted is that every lease comes back, in expiry order.
    #[test]
    fn ten_thousand_leases_are_restored_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sigil.redb");
        let root = BarrierKey::generate(KeyTerm(0)).unwrap();
        let secret = *root.expose_secret();
        {
            let backend = Arc::new(sigil_storage::FileBackend::open(&path).unwrap());
            let barrier = Arc::new(Barrier::initialize(backend, root).unwrap());
            let view = barrier.view("sys/lease/");
            let mut batch = ViewBatch::default();
            for i in 0..10_000i64 {
                let mut l = lease(&format!("database/creds/app/{i:05}"), 1_000_000 - i);
                l.secret = json!({ "db_name": "pg", "username": format!("v-app-{i}") });
                batch.put(&l.id, serde_json::to_vec(&l).unwrap());
            }
            view.apply(batch).unwrap();
        }
        let started = std::time::Instant::now();
        let backend = Arc::new(sigil_storage::FileBackend::open(&path).unwrap());
        let key = BarrierKey::from_secret(KeyTerm(0), zeroize::Zeroizing::new(secret));
        let barrier = Arc::new(Barrier::open(backend, key).unwrap());
        let store = LeaseStore::new(barrier.view("sys/lease/"));
        assert_eq!(store.load_all().unwrap(), 10_000);
        eprintln!("10000 leases restored from redb in {:?}", started.elapsed());
        let due = store.due(1_000_000, 10_000);
        assert_eq!(due.len(), 10_000);
        assert_eq!(due[0], "database/creds/app/09999", "earliest expiry first");
    }

    #[test]
    fn lease_ids_are_checked() {
        for bad in ["", "/", "a//b", "a/../b", "./a", &"x".repeat(2000)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_id("/db/creds/r/x/").unwrap(), "db/creds/r/x");
        let id = LeaseStore::new_id("db/creds/r").unwrap();
        assert!(id.starts_with("db/creds/r/") && id.len() == "db/creds/r/".len() + 24);
    }
}
