//! Channels (PROTOCOL.md §6): after one HPKE-sealed response, a caller's bodies and answers
//! are sealed with XChaCha20-Poly1305 under a key both sides exported from that response's HPKE
//! context, which saves the two X25519 operations each sealed response costs otherwise.
//!
//! A channel is never a credential: every request on it is still signed (or arrives over
//! mTLS), and a channel answers only the identity it was made for. Channels live in server
//! memory only, expire when idle and at an absolute age, are bounded per identity and in all,
//! and are dropped when the server seals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sigil_crypto::ChannelKey;

/// A channel unused this long is gone.
pub(crate) const IDLE: Duration = Duration::from_secs(300);
/// A channel older than this is gone, however busy.
pub(crate) const LIFETIME: Duration = Duration::from_secs(3600);
/// Channels one identity may hold (every instance of a service that shares a key holds one);
/// a new one replaces its oldest.
const PER_IDENTITY: usize = 1024;
/// Channels in all; beyond it no new channel is granted (answers stay HPKE-sealed).
const TOTAL: usize = 65_536;

struct Channel {
    key: Arc<ChannelKey>,
    keyid: String,
    created: Instant,
    used: Instant,
}

impl Channel {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.created) < LIFETIME && now.duration_since(self.used) < IDLE
    }
}

#[derive(Default)]
pub(crate) struct Channels {
    table: Mutex<HashMap<String, Channel>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    /// The key of channel `id` if it is live and belongs to `keyid`; marks it used.
    pub(crate) fn get(&self, id: &str, keyid: &str) -> Option<Arc<ChannelKey>> {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let channel = table.get_mut(id)?;
        if channel.keyid != keyid || !channel.live(now) {
            return None;
        }
        channel.used = now;
        Some(Arc::clone(&channel.key))
    }

    /// Registers a channel for `keyid`; returns its id and lifetime in seconds, or `None` when
    /// the table is full.
    pub(crate) fn insert(&self, keyid: &str, key: ChannelKey) -> Option<(String, u64)> {
        let id = sigil_crypto::b64url_encode(&sigil_crypto::random::bytes::<16>().ok()?);
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut mine = 0;
        let mut oldest: Option<(&String, Instant)> = None;
        for (id, c) in table.iter().filter(|(_, c)| c.keyid == keyid) {
            mine += 1;
            if oldest.is_none_or(|(_, at)| c.created < at) {
                oldest = Some((id, c.created));
            }
        }
        if mine >= PER_IDENTITY
            && let Some((oldest, _)) = oldest
        {
            let oldest = oldest.clone();
            table.remove(&oldest);
        }
        if table.len() >= TOTAL {
            table.retain(|_, c| c.live(now));
            if table.len() >= TOTAL {
                return None;
            }
        }
        table.insert(
            id.clone(),
            Channel {
                key: Arc::new(key),
                keyid: keyid.to_owned(),
                created: now,
                used: now,
            },
        );
        Some((id, LIFETIME.as_secs()))
    }

    /// Drops expired channels (the server's periodic sweep).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| c.live(now));
    }

    /// Drops every channel (when the server seals).
    pub(crate) fn clear(&self) {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_crypto::{EncryptionKey, SealInfo};

    fn key() -> ChannelKey {
        let a = EncryptionKey::generate().unwrap();
        let b = EncryptionKey::generate().unwrap();
        sigil_crypto::seal_to_exporting(&a, &b.public(), SealInfo::Response, b"n", b"")
            .unwrap()
            .1
    }

    #[test]
    fn channels_belong_to_one_identity_and_are_bounded() {
        let channels = Channels::default();
        let (id, ttl) = channels.insert("alice", key()).unwrap();
        assert_eq!(ttl, LIFETIME.as_secs());
        assert!(channels.get(&id, "alice").is_some());
        assert!(channels.get(&id, "bob").is_none(), "not bob's");
        assert!(channels.get("unknown", "alice").is_none());
        let ids: Vec<String> = (0..PER_IDENTITY)
            .map(|_| channels.insert("alice", key()).unwrap().0)
            .collect();
        assert!(channels.get(&id, "alice").is_none(), "the oldest made room");
        assert!(ids.iter().all(|i| channels.get(i, "alice").is_some()));
        channels.clear();
        assert!(channels.get(&ids[0], "alice").is_none());
    }
}
