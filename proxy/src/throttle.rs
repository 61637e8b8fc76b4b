//! Failed logins per client address. After [`FREE`] failures that follow each other within
//! [`WINDOW`], every further attempt from that address waits before it is answered: a quarter
//! of a second, twice as long for each failure after that, up to [`MAX_DELAY`]. The wait
//! comes before the password is checked, so it slows right and wrong guesses alike and their
//! timing says nothing. A quiet [`WINDOW`] forgets the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Counter;

/// Failures an address may have before its attempts are slowed.
pub const FREE: u32 = 5;
/// How long an address's failures are remembered after its last one.
pub const WINDOW: Duration = Duration::from_secs(60);
const FIRST_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// Addresses remembered at most: past it the expired go, then the longest quiet.
const MAX_ADDRESSES: usize = 10_000;

struct Failures {
    count: u32,
    last: Instant,
}

/// Where failed and slowed logins are counted.
#[derive(Clone)]
pub struct LoginMetrics {
    pub pg_failures: Counter,
    pub my_failures: Counter,
    pub throttled: Counter,
}

impl Default for LoginMetrics {
    fn default() -> Self {
        LoginMetrics {
            pg_failures: Counter::noop(),
            my_failures: Counter::noop(),
            throttled: Counter::noop(),
        }
    }
}

#[derive(Default)]
pub struct Logins {
    failures: Mutex<HashMap<IpAddr, Failures>>,
    metrics: LoginMetrics,
}

/// Which protocol a failed login spoke, for its metric.
#[derive(Clone, Copy)]
pub enum Via {
    Postgres,
    Mysql,
}

impl Logins {
    pub fn new(metrics: LoginMetrics) -> Logins {
        Logins {
            failures: Mutex::default(),
            metrics,
        }
    }

    /// How long an attempt from `ip` waits now before it is answered.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some(f) if f.last.elapsed() < WINDOW && f.count >= FREE => {
                let doublings = (f.count - FREE).min(16);
                (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Waits as long as [`Logins::delay`] says; an attempt with no address (not TCP) never
    /// waits.
    pub async fn wait(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let delay = self.delay(ip);
        if !delay.is_zero() {
            self.metrics.throttled.increment(1);
            tracing::debug!(client = %ip, delay_ms = delay.as_millis() as u64, "slowing a login after repeated failures");
            tokio::time::sleep(delay).await;
        }
    }

    /// A login from `ip` failed: wrong password or unknown user.
    pub fn failed(&self, ip: Option<IpAddr>, via: Via) {
        match via {
            Via::Postgres => self.metrics.pg_failures.increment(1),
            Via::Mysql => self.metrics.my_failures.increment(1),
        }
        let Some(ip) = ip else { return };
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&ip) && map.len() >= MAX_ADDRESSES {
            make_room(&mut map, now);
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(f.last) >= WINDOW {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
    }
}

/// Forgets the expired addresses, or if none has expired the one quiet the longest.
fn make_room(map: &mut HashMap<IpAddr, Failures>, now: Instant) {
    map.retain(|_, f| now.duration_since(f.last) < WINDOW);
    if map.len() >= MAX_ADDRESSES
        && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(ip, _)| *ip)
    {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn slows_after_the_free_failures_and_doubles_up_to_the_cap() {
        let logins = Logins::default();
        let a = ip(1);
        for _ in 0..FREE {
            assert_eq!(logins.delay(a), Duration::ZERO);
            logins.failed(Some(a), Via::Postgres);
        }
        assert_eq!(logins.delay(a), FIRST_DELAY);
        logins.failed(Some(a), Via::Mysql);
        assert_eq!(logins.delay(a), FIRST_DELAY * 2);
        for _ in 0..40 {
            logins.failed(Some(a), Via::Mysql);
        }
        assert_eq!(logins.delay(a), MAX_DELAY);
        // Another address is not slowed for it.
        assert_eq!(logins.delay(ip(2)), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let logins = Logins::default();
        for n in 0..(MAX_ADDRESSES as u32 + 50) {
            logins.failed(Some(ip(n)), Via::Postgres);
        }
        let map = logins.failures.lock().unwrap();
        assert_eq!(map.len(), MAX_ADDRESSES);
        // The newest stay.
        assert!(map.contains_key(&ip(MAX_ADDRESSES as u32 + 49)));
    }
}
