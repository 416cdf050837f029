//! Rate limits: token buckets per identity, per source address, stricter ones for the
//! unauthenticated endpoints, and a budget of failed authentications per address. Over a limit
//! a request gets 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A rate: `per_second` tokens refill a bucket that holds at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

impl Rate {
    /// `per_second` with a burst of twice that (at least 1).
    pub fn per_second(per_second: f64) -> Self {
        Rate {
            per_second,
            burst: (per_second * 2.0).max(1.0),
        }
    }
}

/// All the limits of a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Per authenticated identity (keyid).
    pub identity: Rate,
    /// Per source address, every request.
    pub address: Rate,
    /// Per source address, unauthenticated endpoints (health, seal status, init, unseal…).
    pub unauthenticated: Rate,
    /// Per source address, failed authentications; past it every request from that address is
    /// refused until the bucket refills.
    pub auth_failures: Rate,
    /// Connections one source address (IPv6: one /64) may hold at once.
    pub connections_per_address: usize,
    /// The largest request body an authenticated caller may send, as sent (sealed: about
    /// three quarters of it is the caller's data). Vault's default, 32 MiB.
    pub max_request_bytes: usize,
}

/// Vault's default request size limit.
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            identity: Rate::per_second(1000.0),
            address: Rate::per_second(5000.0),
            unauthenticated: Rate::per_second(50.0),
            auth_failures: Rate::per_second(10.0),
            connections_per_address: 256,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets above which idle ones are dropped.
const SWEEP_ABOVE: usize = 10_000;

/// A rate and its buckets, under one lock: a reload changes the rate for every bucket at once.
#[derive(Debug)]
struct Buckets {
    rate: Rate,
    by_key: HashMap<String, Bucket>,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    buckets: Mutex<Buckets>,
}

impl Rate {
    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        // A thread that read the clock before another took the lock passes an older `now`:
        // never move the bucket's time back, or the next refill would count that span twice.
        b.at = b.at.max(now);
    }

    fn retry_after(&self, tokens: f64) -> Duration {
        let missing = (1.0 - tokens).max(0.0);
        Duration::from_secs_f64((missing / self.per_second.max(f64::MIN_POSITIVE)).max(0.001))
    }
}

impl Limiter {
    pub(crate) fn new(rate: Rate) -> Self {
        Limiter {
            buckets: Mutex::new(Buckets {
                rate,
                by_key: HashMap::new(),
            }),
        }
    }

    /// Changes the rate (a reload). Buckets keep their tokens, capped at the new burst.
    pub(crate) fn set_rate(&self, rate: Rate) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.rate = rate;
        for b in buckets.by_key.values_mut() {
            b.tokens = b.tokens.min(rate.burst);
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub(crate) fn take(&self, key: &str) -> Result<(), Duration> {
        self.with(key, true, Instant::now())
    }

    /// Whether `key` has a token, without taking it.
    pub(crate) fn peek(&self, key: &str) -> Result<(), Duration> {
        self.with(key, false, Instant::now())
    }

    /// Takes (or with `take` false, only checks for) a token for `key` at time `now`.
    fn with(&self, key: &str, take: bool, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets { rate, by_key } = &mut *buckets;
        if by_key.len() > SWEEP_ABOVE {
            by_key.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate.per_second
                    < rate.burst
            });
        }
        let b = by_key.entry(key.to_owned()).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        rate.refill(b, now);
        if b.tokens >= 1.0 {
            if take {
                b.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(rate.retry_after(b.tokens))
        }
    }
}

/// The limiters of a running server.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) identity: Limiter,
    pub(crate) address: Limiter,
    pub(crate) unauthenticated: Limiter,
    pub(crate) auth_failures: Limiter,
    /// [`RateLimits::max_request_bytes`].
    max_request_bytes: AtomicUsize,
    /// As configured, to tell what a reload changed.
    current: Mutex<RateLimits>,
}

impl Limits {
    pub(crate) fn new(l: RateLimits) -> Self {
        Limits {
            identity: Limiter::new(l.identity),
            address: Limiter::new(l.address),
            unauthenticated: Limiter::new(l.unauthenticated),
            auth_failures: Limiter::new(l.auth_failures),
            max_request_bytes: AtomicUsize::new(l.max_request_bytes),
            current: Mutex::new(l),
        }
    }

    pub(crate) fn max_request_bytes(&self) -> usize {
        self.max_request_bytes.load(Ordering::Relaxed)
    }

    /// Applies new limits (a reload); returns whether anything changed. Connections per
    /// address are the connection table's ([`crate::connections::Connections::set_per_address`]).
    pub(crate) fn set(&self, l: RateLimits) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if *current == l {
            return false;
        }
        self.identity.set_rate(l.identity);
        self.address.set_rate(l.address);
        self.unauthenticated.set_rate(l.unauthenticated);
        self.auth_failures.set_rate(l.auth_failures);
        self.max_request_bytes
            .store(l.max_request_bytes, Ordering::Relaxed);
        *current = l;
        true
    }
}

/// The key of a source address: the address for IPv4, its /64 for IPv6 (one host usually
/// holds a whole /64, so per-address keys would be free to multiply).
pub(crate) fn address_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(IpAddr::V4(v4)) => v4.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        // The clock is passed in: no sleeps, no assumption about the machine's speed.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let l = Limiter::new(Rate {
            per_second: 100.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            l.with("a", true, at(0)).unwrap();
        }
        let wait = l.with("a", true, at(0)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(10), "one token at 100/s");
        // Another key is not affected.
        l.with("b", true, at(0)).unwrap();
        // 5 ms refill half a token: still refused, and the wait is what is missing.
        let wait = l.with("a", true, at(5)).unwrap_err();
        assert!(
            wait > Duration::from_millis(4) && wait < Duration::from_millis(6),
            "{wait:?}"
        );
        l.with("a", true, at(10)).unwrap();
        // A long pause refills to the burst, no further.
        for _ in 0..3 {
            l.with("a", true, at(60_000)).unwrap();
        }
        assert!(l.with("a", true, at(60_000)).is_err());
        // Peeking takes nothing.
        let p = Limiter::new(Rate {
            per_second: 1.0,
            burst: 1.0,
        });
        p.with("x", false, at(0)).unwrap();
        p.with("x", false, at(0)).unwrap();
        p.with("x", true, at(0)).unwrap();
        assert!(p.with("x", false, at(0)).is_err());
        assert!(p.with("x", false, at(999)).is_err());
        p.with("x", false, at(1000)).unwrap();
        // An older time than the bucket's (a thread that read the clock before another took
        // the lock) refills nothing, and does not move the bucket's time back.
        p.with("x", true, at(1000)).unwrap();
        assert!(p.with("x", true, at(0)).is_err());
        assert!(
            p.with("x", true, at(1999)).is_err(),
            "the span 0..1000 counted twice"
        );
        p.with("x", true, at(2000)).unwrap();
    }

    /// Rate limits key IPv6 sources by their /64 (one host usually holds a whole /64, so a
    /// key per address would let it multiply its budget); IPv4 (and IPv4-mapped IPv6) by the
    /// address.
    #[test]
    fn addresses_key_ipv6_by_64_and_ipv4_by_address() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        // One /64 shares one bucket.
        let l = Limiter::new(Rate {
            per_second: 0.001,
            burst: 1.0,
        });
        let now = Instant::now();
        l.with(&key("2001:db8::1"), true, now).unwrap();
        assert!(l.with(&key("2001:db8::2"), true, now).is_err());
        l.with(&key("2001:db8:0:1::1"), true, now).unwrap();
    }
}
