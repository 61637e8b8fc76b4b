//! Whether an attached session may be parked for room, and since when: published by the
//! session at every safe point with one atomic store, read by the usher only while sessions
//! wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The low bit of `since`: nothing changed since the session's last snapshot (or it never
/// changed anything), so it may go at once.
const AT_ONCE: u64 = 1;

#[derive(Default)]
pub(crate) struct Quiet {
    /// 0: not to be parked now; otherwise micros since [`base`] when the session came to rest,
    /// shifted left once, with [`AT_ONCE`].
    since: AtomicU64,
    /// The usher asked this session to park and it hasn't answered yet.
    asked: AtomicBool,
    /// Where the ask arrives. In an Arc so that a session waits on it with one future for its
    /// whole life, not one registered and dropped at every step.
    pub(crate) ask: Arc<Notify>,
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Quiet {
    /// The session is at rest and may be parked for room: at once, or only once it has been
    /// quiet for `park_idle_after`.
    pub(crate) fn rest(&self, at_once: bool) {
        if self.since.load(Ordering::Relaxed) & AT_ONCE == u64::from(at_once)
            && self.since.load(Ordering::Relaxed) != 0
        {
            // Still at rest since then: keep the earlier time.
            return;
        }
        let micros = base().elapsed().as_micros() as u64 + 1;
        self.since
            .store(micros << 1 | u64::from(at_once), Ordering::Relaxed);
    }

    /// The session is working, or holds what must not be parked. True when an ask was
    /// outstanding: the usher must choose someone else.
    pub(crate) fn busy(&self) -> bool {
        self.since.store(0, Ordering::Relaxed);
        self.asked.swap(false, Ordering::Relaxed)
    }

    /// The session answered an ask (parked or declined).
    pub(crate) fn answered(&self) {
        self.asked.store(false, Ordering::Relaxed);
    }

    fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }

    /// Since when it is at rest, and when it may be parked, if at all.
    fn eligible(&self, park_idle_after: Duration) -> Option<(Instant, Instant)> {
        let v = self.since.load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let rested = base() + Duration::from_micros((v >> 1).saturating_sub(1));
        let at = if v & AT_ONCE != 0 {
            rested
        } else {
            rested + park_idle_after
        };
        Some((rested, at))
    }
}

/// Up to `n` sessions to ask, quiet the longest first, and when the next one could be asked.
pub(super) fn choose(
    sessions: &HashMap<u64, Arc<Quiet>>,
    n: usize,
    park_idle_after: Duration,
) -> (Vec<Arc<Quiet>>, Option<Instant>) {
    let now = Instant::now();
    let mut ready: Vec<(Instant, &Arc<Quiet>)> = Vec::new();
    let mut next: Option<Instant> = None;
    for q in sessions.values() {
        if q.asked() {
            continue;
        }
        match q.eligible(park_idle_after) {
            Some((rested, at)) if at <= now => ready.push((rested, q)),
            Some((_, at)) => next = Some(next.map_or(at, |n| n.min(at))),
            None => {}
        }
    }
    ready.sort_by_key(|(at, _)| *at);
    let chosen: Vec<Arc<Quiet>> = ready
        .into_iter()
        .take(n)
        .map(|(_, q)| {
            q.asked.store(true, Ordering::Relaxed);
            q.clone()
        })
        .collect();
    (chosen, next)
}

/// Asks outstanding among `sessions`.
pub(super) fn asks(sessions: &HashMap<u64, Arc<Quiet>>) -> usize {
    sessions.values().filter(|q| q.asked()).count()
}
