//! Who may hold a connection, and for how long. Every connection counts against a global cap
//! and against its source address (IPv6 by /64, as the rate limits); the last slots of the
//! global cap are kept for addresses that hold none, so one address cannot fill the table.
//! A connection must deliver its first complete request head within [`FIRST_REQUEST`] of
//! being accepted (TLS handshake included, on every protocol, before HTTP/1 or HTTP/2 is even
//! known), and is closed once it has had nothing in flight for [`IDLE`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::address_key;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Of [`MAX_CONNECTIONS`], how many only an address that holds no connection may take.
pub(crate) const RESERVED: usize = 256;
/// From accept to the first complete request head.
pub(crate) const FIRST_REQUEST: Duration = Duration::from_secs(10);
/// With no request in flight, a connection is closed after this long.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The table is full (or only reserved room is left, and this address holds some).
    Full,
    /// This address holds as many connections as one address may.
    Address,
}

#[derive(Debug)]
pub(crate) struct Connections {
    per_address: AtomicUsize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_address: HashMap<String, usize>,
}

impl Connections {
    pub(crate) fn new(per_address: usize) -> Arc<Self> {
        Arc::new(Connections {
            per_address: AtomicUsize::new(per_address.max(1)),
            held: Mutex::new(Held::default()),
        })
    }

    /// Changes how many connections one address may hold (a reload); connections already
    /// held above a lowered cap are not closed.
    pub(crate) fn set_per_address(&self, n: usize) {
        self.per_address.store(n.max(1), Ordering::Relaxed);
    }

    /// A slot for a connection from `ip`, released when the slot is dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let key = address_key(Some(ip));
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.by_address.get(&key).copied().unwrap_or(0);
        if mine >= self.per_address.load(Ordering::Relaxed) {
            return Err(Refused::Address);
        }
        let room = if mine == 0 {
            MAX_CONNECTIONS
        } else {
            MAX_CONNECTIONS - RESERVED
        };
        if held.total >= room {
            return Err(Refused::Full);
        }
        held.total += 1;
        *held.by_address.entry(key.clone()).or_insert(0) += 1;
        Ok(Slot {
            table: Arc::clone(self),
            key,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One admitted connection.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<Connections>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .table
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total -= 1;
        if let Some(n) = held.by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.by_address.remove(&self.key);
            }
        }
    }
}

/// What a connection has been doing, for its deadline.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` when the last request ended; `u64::MAX` before the first
    /// request head arrived.
    last_done: AtomicU64,
}

/// Marks a request in flight until dropped (when its answer is ready, or it was abandoned).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(u64::MAX),
        })
    }

    /// A request head arrived.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Not before the first request: a request in flight keeps the connection either way.
        let _ = self.last_done.compare_exchange(
            u64::MAX,
            self.millis(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        InFlight(Arc::clone(self))
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// When the connection is to be closed, as things stand; `None` while a request is in
    /// flight (look again after [`IDLE`]).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.last_done.load(Ordering::Acquire) {
            u64::MAX => self.accepted + FIRST_REQUEST,
            done => self.accepted + Duration::from_millis(done) + IDLE,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done.store(self.0.millis(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_fill_the_table() {
        let table = Connections::new(MAX_CONNECTIONS);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mut slots = Vec::new();
        while let Ok(s) = table.admit(a) {
            slots.push(s);
        }
        assert_eq!(slots.len(), MAX_CONNECTIONS - RESERVED);
        // Another address still gets in, on the reserved room, once.
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let b1 = table.admit(b).unwrap();
        assert_eq!(table.admit(b).unwrap_err(), Refused::Full);
        drop(b1);
        drop(slots);
        assert_eq!(table.open(), 0);
    }

    #[test]
    fn per_address_cap_groups_ipv6_by_64() {
        let table = Connections::new(2);
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _a = table.admit(one).unwrap();
        let _b = table.admit(same64).unwrap();
        assert_eq!(table.admit(one).unwrap_err(), Refused::Address);
        let _c = table.admit(other).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_move_with_requests() {
        let act = Activity::new();
        let start = Instant::now();
        assert_eq!(act.deadline(), Some(start + FIRST_REQUEST));
        tokio::time::advance(Duration::from_secs(2)).await;
        let req = act.begin();
        assert_eq!(act.deadline(), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(req);
        assert_eq!(act.deadline(), Some(start + Duration::from_secs(5) + IDLE));
    }
}
