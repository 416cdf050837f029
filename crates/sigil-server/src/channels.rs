//! Channels (docs/protocol.md §6): after one HPKE-sealed response, a caller's bodies and answers
//! are sealed with XChaCha20-Poly1305 under a key both sides exported from that response's HPKE
//! context, which saves the two X25519 operations each sealed response costs otherwise.
//!
//! A channel is never a credential: every request on it is still signed (or arrives over
//! mTLS), and a channel answers only the identity it was made for. Channels live in server
//! memory only, expire when idle and at an absolute age, are bounded per identity and in all,
//! and are dropped when the server seals.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sigil_core::Caller;
use sigil_crypto::ChannelKeys;

/// A channel unused this long is gone.
pub(crate) const IDLE: Duration = Duration::from_secs(300);
/// A channel older than this is gone, however busy.
pub(crate) const LIFETIME: Duration = Duration::from_secs(3600);
/// Channels one identity may hold (every instance of a service that shares a key holds one);
/// a new one replaces its oldest.
const PER_IDENTITY: usize = 1024;
/// Channels in all; beyond it no new channel is granted (answers stay HPKE-sealed) until the
/// periodic sweep makes room.
const TOTAL: usize = 65_536;

/// The identity a channel was made for, as it was then: any change to it (a new key, new
/// policies, disabled and enabled again) ends the channel.
#[derive(PartialEq, Eq)]
struct Holder {
    keyid: String,
    encryption_key: [u8; 32],
    updated: String,
}

impl Holder {
    fn of(caller: &Caller) -> Self {
        Holder {
            keyid: caller.identity.keyid.clone(),
            encryption_key: *caller.public.encryption_key(),
            updated: caller.identity.last_update_time.clone(),
        }
    }
}

struct Channel {
    keys: Arc<ChannelKeys>,
    holder: Holder,
    created: Instant,
    used: Instant,
}

impl Channel {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.created) < LIFETIME && now.duration_since(self.used) < IDLE
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Channel>,
    /// Each identity's channel ids, oldest first (ids already gone are skipped lazily).
    by_keyid: HashMap<String, VecDeque<String>>,
}

#[derive(Default)]
pub(crate) struct Channels {
    table: Mutex<Table>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    /// The keys of channel `id` if it is live and was made for `caller` as it is now; marks it
    /// used. A channel of an identity that changed since is dropped.
    pub(crate) fn get(&self, id: &str, caller: &Caller) -> Option<Arc<ChannelKeys>> {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let channel = table.by_id.get_mut(id)?;
        if channel.holder.keyid != caller.identity.keyid {
            return None;
        }
        if !channel.live(now) || channel.holder != Holder::of(caller) {
            table.by_id.remove(id);
            return None;
        }
        channel.used = now;
        Some(Arc::clone(&channel.keys))
    }

    /// Registers a channel for `caller`; returns its id and lifetime in seconds, or `None` when
    /// the table is full. Constant time: the identity's oldest channel is the front of its
    /// queue.
    pub(crate) fn insert(&self, caller: &Caller, keys: ChannelKeys) -> Option<(String, u64)> {
        let id = sigil_crypto::b64url_encode(&sigil_crypto::random::bytes::<16>().ok()?);
        let now = Instant::now();
        let holder = Holder::of(caller);
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *guard;
        let queue = table.by_keyid.entry(holder.keyid.clone()).or_default();
        while queue
            .front()
            .is_some_and(|old| !table.by_id.contains_key(old))
        {
            queue.pop_front();
        }
        if queue.len() >= PER_IDENTITY
            && let Some(oldest) = queue.pop_front()
        {
            table.by_id.remove(&oldest);
        }
        if table.by_id.len() >= TOTAL {
            return None;
        }
        queue.push_back(id.clone());
        table.by_id.insert(
            id.clone(),
            Channel {
                keys: Arc::new(keys),
                holder,
                created: now,
                used: now,
            },
        );
        Some((id, LIFETIME.as_secs()))
    }

    /// Drops expired channels (the server's periodic sweep).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut guard = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *guard;
        table.by_id.retain(|_, c| c.live(now));
        let by_id = &table.by_id;
        table.by_keyid.retain(|_, q| {
            q.retain(|id| by_id.contains_key(id));
            !q.is_empty()
        });
    }

    /// Drops every channel (when the server seals).
    pub(crate) fn clear(&self) {
        *self.table.lock().unwrap_or_else(|e| e.into_inner()) = Table::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_crypto::{EncryptionKey, SealInfo, SecretIdentity};

    fn keys() -> ChannelKeys {
        let a = EncryptionKey::generate().unwrap();
        let b = EncryptionKey::generate().unwrap();
        sigil_crypto::seal_to_exporting(&a, &b.public(), SealInfo::Response, b"n", Vec::new())
            .unwrap()
            .1
    }

    fn caller(name: &str) -> Caller {
        let key = SecretIdentity::generate().unwrap();
        let public = key.public();
        Caller {
            identity: sigil_core::Identity {
                id: name.into(),
                name: name.into(),
                public_key: public.to_string(),
                keyid: public.keyid().to_string(),
                policies: vec![],
                metadata: Default::default(),
                disabled: false,
                creation_time: "t0".into(),
                last_update_time: "t0".into(),
                certification: None,
            },
            public,
        }
    }

    #[test]
    fn channels_belong_to_one_identity_and_are_bounded() {
        let channels = Channels::default();
        let (alice, bob) = (caller("alice"), caller("bob"));
        let (id, ttl) = channels.insert(&alice, keys()).unwrap();
        assert_eq!(ttl, LIFETIME.as_secs());
        assert!(channels.get(&id, &alice).is_some());
        assert!(channels.get(&id, &bob).is_none(), "not bob's");
        assert!(
            channels.get(&id, &alice).is_some(),
            "asking as bob ends nothing"
        );
        assert!(channels.get("unknown", &alice).is_none());
        let ids: Vec<String> = (0..PER_IDENTITY)
            .map(|_| channels.insert(&alice, keys()).unwrap().0)
            .collect();
        assert!(channels.get(&id, &alice).is_none(), "the oldest made room");
        assert!(ids.iter().all(|i| channels.get(i, &alice).is_some()));
        channels.clear();
        assert!(channels.get(&ids[0], &alice).is_none());
    }

    /// Finding 6: a channel outlived a change of its identity's encryption key.
    #[test]
    fn a_change_to_the_identity_ends_its_channels() {
        let channels = Channels::default();
        let alice = caller("alice");
        let (id, _) = channels.insert(&alice, keys()).unwrap();
        let mut rekeyed = caller("alice");
        rekeyed.identity.keyid.clone_from(&alice.identity.keyid);
        assert!(
            channels.get(&id, &rekeyed).is_none(),
            "another encryption key"
        );
        assert!(channels.get(&id, &alice).is_none(), "and it is gone");
        let (id, _) = channels.insert(&alice, keys()).unwrap();
        let mut updated = caller("x");
        updated.identity.keyid.clone_from(&alice.identity.keyid);
        updated.public = alice.public.clone();
        updated.identity.last_update_time = "t1".into();
        assert!(channels.get(&id, &updated).is_none(), "updated since");
    }
}
