//! Backend connections as a bounded resource, so a cluster can serve more sessions than its
//! server has connection slots.
//!
//! Every attached session holds a [`Seat`]. When a session needs one and none is free, it waits
//! in a fair queue ([`Room::acquire`]) while the usher (`usher.rs`) asks the attached session
//! that has been quiet the longest, among those that may be parked (`quiet.rs`), to park for
//! room. That session checkpoints to memory, resets its connection and passes it, seat and all,
//! to the first waiter ([`Seat::pass`]): a connection changes hands, it is not closed and opened
//! again. The parked session comes back on its client's next request, like any parked one.

mod quiet;
mod scrape;
mod usher;

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

pub(crate) use quiet::Quiet;
pub(crate) use usher::usher;

/// A backend connection on its way from one session to another: each protocol downcasts it to
/// its own connection type.
pub(crate) type Handed = Box<dyn Any + Send>;

/// The protocol's own connection in `handed`, if any.
pub(crate) fn unwrap<B: Any>(handed: Option<Handed>) -> Option<B> {
    handed.and_then(|h| h.downcast::<B>().ok()).map(|b| *b)
}

/// Which sessions can take over each other's backend connection after a reset: the same user,
/// database and startup parameters.
pub(crate) type PoolKey = u64;

/// What a waiting session is given: a seat, and the connection another session of the same
/// key gave up, reset, if there is one (none: open a connection).
pub(crate) struct Grant {
    pub seat: Seat,
    pub handed: Option<Handed>,
}

/// Counters for operators.
#[derive(Debug, Default)]
pub struct RoomStats {
    /// Sessions parked to make room for another.
    pub parks: AtomicU64,
    /// Sessions parked for room that attached again.
    pub restores: AtomicU64,
    /// Connections passed from one session to another without a reconnect.
    pub handovers: AtomicU64,
    /// Requests that waited past `wake_timeout` for a connection.
    pub timeouts: AtomicU64,
    /// Sessions parked for room right now.
    pub parked: AtomicUsize,
}

pub struct Room {
    /// 0 while unknown: then nobody waits.
    cap: AtomicUsize,
    /// Set by `[cluster] max_backend_connections`: what the server says is not used.
    configured: bool,
    /// How long a session that changed something since its last snapshot must be quiet
    /// before it may be parked for room.
    pub(crate) park_idle_after: Duration,
    /// Mirrors the queue's length, for the check at every ReadyForQuery.
    waiting: AtomicUsize,
    inner: Mutex<Inner>,
    /// Wakes the usher: a session joined the queue, or one that was asked declined.
    pub(crate) call: Notify,
    pub stats: RoomStats,
    /// Time spent in the queue, by the sessions that got a connection.
    pub(crate) wait_seconds: metrics::Histogram,
}

struct Inner {
    /// Seats taken: sessions attached or connecting.
    used: usize,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
    /// Attached sessions, for the usher to choose from.
    sessions: std::collections::HashMap<u64, Arc<Quiet>>,
}

struct Waiter {
    ticket: u64,
    key: PoolKey,
    tx: oneshot::Sender<Grant>,
}

/// Why a session got no connection in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "no backend connection came free within the wake timeout: all {0} are held by sessions that can't be parked now"
)]
pub(crate) struct NoRoom(pub usize);

impl Room {
    /// `configured`: `[cluster] max_backend_connections`; otherwise learned from the server.
    pub(crate) fn new(configured: Option<usize>, park_idle_after: Duration) -> Arc<Room> {
        Arc::new(Room {
            cap: AtomicUsize::new(configured.unwrap_or(0)),
            configured: configured.is_some(),
            park_idle_after,
            waiting: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                used: 0,
                queue: VecDeque::new(),
                next_ticket: 0,
                sessions: Default::default(),
            }),
            call: Notify::new(),
            stats: RoomStats::default(),
            wait_seconds: metrics::Histogram::noop(),
        })
    }

    pub(crate) fn with_wait_histogram(mut self: Arc<Self>, h: metrics::Histogram) -> Arc<Self> {
        if let Some(room) = Arc::get_mut(&mut self) {
            room.wait_seconds = h;
        }
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's own limit, less the slots it keeps for superusers and one for torpor's own
    /// connection, as read after a start. Ignored when the config sets one.
    pub(crate) fn learned(&self, slots: usize) {
        if !self.configured && slots > 0 {
            self.cap.store(slots, Ordering::Relaxed);
            tracing::debug!(slots, "backend connections learned");
        }
    }

    /// How many connections sessions may hold, 0 while unknown.
    pub fn capacity(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    pub fn in_use(&self) -> usize {
        self.lock().used
    }

    /// Every seat is taken, or sessions wait for one.
    pub(crate) fn full(&self) -> bool {
        let cap = self.capacity();
        cap > 0 && (self.wanted() || self.lock().used >= cap)
    }

    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether sessions wait for a connection: a session at rest then gives its own up.
    pub(crate) fn wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// A seat for a session about to attach: one is free, or a session of the same key passes
    /// its connection, or the wait runs past `deadline`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: PoolKey,
        deadline: Instant,
    ) -> Result<Grant, NoRoom> {
        let (ticket, rx, first) = {
            let mut inner = self.lock();
            let cap = self.capacity();
            if cap == 0 || (inner.used < cap && inner.queue.is_empty()) {
                inner.used += 1;
                return Ok(self.fresh());
            }
            let (tx, rx) = oneshot::channel();
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.queue.push_back(Waiter { ticket, key, tx });
            self.waiting.store(inner.queue.len(), Ordering::Relaxed);
            (ticket, rx, inner.queue.len() == 1)
        };
        let started = Instant::now();
        if first {
            // While sessions wait the usher looks again on its own (LOOK_AGAIN), and sessions
            // that may go at once go by themselves: waking it for every waiter would cost a
            // task switch and a scan per pooled transaction.
            self.call.notify_one();
        }
        tokio::pin!(rx);
        let grant = match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(Ok(grant)) => Some(grant),
            // The room went away with torpor.
            Ok(Err(_)) => None,
            Err(_) => {
                let mut inner = self.lock();
                inner.queue.retain(|w| w.ticket != ticket);
                self.waiting.store(inner.queue.len(), Ordering::Relaxed);
                drop(inner);
                // Granted between the timeout and taking the ticket back.
                rx.try_recv().ok()
            }
        };
        match grant {
            Some(grant) => {
                self.wait_seconds.record(started.elapsed());
                Ok(grant)
            }
            None => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(NoRoom(self.capacity()))
            }
        }
    }

    fn fresh(self: &Arc<Self>) -> Grant {
        Grant {
            seat: Seat {
                room: Some(self.clone()),
            },
            handed: None,
        }
    }

    /// The first waiter's key, if anyone waits.
    pub(crate) fn next_key(&self) -> Option<PoolKey> {
        self.lock().queue.front().map(|w| w.key)
    }

    /// A seat is given up: the first waiter gets it, or it is free.
    fn free(self: &Arc<Self>) {
        let mut inner = self.lock();
        let mut grant = self.fresh();
        while let Some(w) = inner.queue.pop_front() {
            match w.tx.send(grant) {
                Ok(()) => {
                    self.waiting.store(inner.queue.len(), Ordering::Relaxed);
                    return;
                }
                // That waiter gave up: the next one.
                Err(back) => grant = back,
            }
        }
        self.waiting.store(0, Ordering::Relaxed);
        // The seat made above goes nowhere: don't let its drop free it again.
        grant.seat.room = None;
        inner.used = inner.used.saturating_sub(1);
    }

    /// An attached session the usher may ask to park for room.
    pub(crate) fn enter(&self, id: u64, quiet: Arc<Quiet>) {
        self.lock().sessions.insert(id, quiet);
    }

    pub(crate) fn leave(&self, id: u64) {
        self.lock().sessions.remove(&id);
    }
}

/// One backend connection slot, held while attached. Dropped, it goes to the first waiter or
/// is free again.
pub(crate) struct Seat {
    room: Option<Arc<Room>>,
}

impl Seat {
    /// Gives the connection, reset, to the first waiter if it is of the same `key`. Otherwise
    /// both come back: the caller closes the connection first and then drops the seat, which
    /// goes to that waiter, so the server never holds one connection more than the cap.
    pub(crate) fn pass(mut self, key: PoolKey, conn: Handed) -> Result<(), (Seat, Handed)> {
        let Some(room) = self.room.clone() else {
            return Err((self, conn));
        };
        let mut inner = room.lock();
        let mut grant = Grant {
            seat: Seat {
                room: self.room.take(),
            },
            handed: Some(conn),
        };
        while inner.queue.front().is_some_and(|w| w.key == key) {
            let Some(w) = inner.queue.pop_front() else {
                break;
            };
            match w.tx.send(grant) {
                Ok(()) => {
                    room.waiting.store(inner.queue.len(), Ordering::Relaxed);
                    room.stats.handovers.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                // That waiter gave up: the next one.
                Err(back) => grant = back,
            }
        }
        room.waiting.store(inner.queue.len(), Ordering::Relaxed);
        drop(inner);
        self.room = grant.seat.room.take();
        match grant.handed {
            Some(conn) => Err((self, conn)),
            // A send that fails gives back what it was given: the connection is still here.
            None => Ok(()),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(room) = self.room.take() {
            room.free();
        }
    }
}

#[cfg(test)]
mod tests;
