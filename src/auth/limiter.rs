//! Connection limits (global and per client IP) and the growing delay after
//! failed logins. Shared by all workers; touched once per connection or per
//! failed login, never per command.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyFromIp,
    ServerFull,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TooManyFromIp => "Too many connections from your IP",
            Refusal::ServerFull => "Server is at its connection limit, try again later",
        }
    }
}

pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: u32,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// Holds one connection slot; dropping it frees the slot. It travels with
/// the connection when it moves to another worker.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
    /// When the connection was accepted.
    since: std::time::Instant,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: u32) -> Arc<Self> {
        Arc::new(ConnLimiter { max_total, max_per_ip, total: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()) })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ServerFull);
        }
        let mut map = self.per_ip.lock().expect("limiter lock");
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyFromIp);
        }
        *n += 1;
        Ok(ConnGuard { limiter: self.clone(), ip, since: std::time::Instant::now() })
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl ConnGuard {
    /// When the connection was accepted (it keeps counting after a move
    /// to the user's worker).
    pub fn since(&self) -> std::time::Instant {
        self.since
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut map = self.limiter.per_ip.lock().expect("limiter lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Failed logins per IP: each failure doubles the delay before the answer,
/// from `base` up to `max`; an IP that stays quiet for `forget` starts over.
pub struct FailureDelay {
    base: Duration,
    max: Duration,
    forget: Duration,
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Entries kept before old ones are pruned, so a scan from many addresses
/// cannot grow the map without bound.
const FAILURE_MAP_MAX: usize = 100_000;

impl FailureDelay {
    pub fn new(base: Duration, max: Duration) -> Self {
        FailureDelay { base, max, forget: Duration::from_secs(600), map: Mutex::new(HashMap::new()) }
    }

    /// Records a failure and returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut map = self.map.lock().expect("failure lock");
        if map.len() >= FAILURE_MAP_MAX {
            let forget = self.forget;
            map.retain(|_, (_, t)| now.duration_since(*t) < forget);
        }
        let e = map.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.forget {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        let shift = (e.0 - 1).min(16);
        self.base.saturating_mul(1 << shift).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refusal::TooManyFromIp));
        let _g3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::ServerFull));
        drop(g1);
        assert!(l.try_acquire(a).is_ok());
    }

    #[test]
    fn delay_grows_and_resets() {
        let d = FailureDelay::new(Duration::from_millis(100), Duration::from_secs(1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert_eq!(d.failed(ip, t), Duration::from_millis(100));
        assert_eq!(d.failed(ip, t), Duration::from_millis(200));
        assert_eq!(d.failed(ip, t), Duration::from_millis(400));
        for _ in 0..10 {
            d.failed(ip, t);
        }
        assert_eq!(d.failed(ip, t), Duration::from_secs(1));
        assert_eq!(d.failed(ip, t + Duration::from_secs(700)), Duration::from_millis(100));
    }
}
