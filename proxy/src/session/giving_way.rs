//! A session's part in sharing backend connections: it parks to make room for a session that
//! waits for one, when it may (see `crate::room`).

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::protocol::{Capture, Protocol};
use super::{Error, Session};

impl<P: Protocol> Session<P> {
    /// Whether this session may be parked for room: `Some(true)` at once, `Some(false)` once
    /// quiet for `park_idle_after`, `None` not now.
    pub(super) fn room_rest(&self) -> Option<bool> {
        if self.seat.is_none() || self.room_held {
            return None;
        }
        let at_once = self.p.room_rest()?;
        match self.pinned {
            None => Some(at_once),
            // Only a capture can find the pin gone, and only after the client did something.
            Some(_) => (!at_once).then_some(false),
        }
    }

    /// `at_once`: only if it may go without waiting for `park_idle_after` (the usher has
    /// waited that long already when it asks).
    pub(super) fn may_park_for_room(&mut self, at_once: bool) -> bool {
        if self.member.prepared || self.front.cluster.is_draining() {
            return false;
        }
        if !self.p.conns().0.rbuf.is_empty() {
            // Part of the client's next request is here.
            return false;
        }
        match self.room_rest() {
            Some(now) => now || !at_once,
            None => false,
        }
    }

    /// Checkpoints to memory if anything changed, passes the backend connection to the first
    /// waiting session (reset; or closes it when that session needs another key) and parks.
    /// State that can't move (found by the capture) keeps the session attached.
    pub(super) async fn park_for_room(&mut self) -> Result<(), Error> {
        if self.p.changed() {
            let started = Instant::now();
            match P::capture(self).await {
                Ok(Capture::Snapshot(snap)) => {
                    self.front.metrics.checkpoint.record(started.elapsed());
                    self.pinned = P::pins(&snap);
                    self.member.reg.entry.set_holds(P::holds(&snap));
                    self.kept = Some(*snap);
                    self.p.saved();
                    if self.pinned.is_some() {
                        self.decline();
                        return Ok(());
                    }
                }
                Ok(Capture::Blocked(_)) => {
                    self.hold();
                    return Ok(());
                }
                Err(e) if e.is_disconnect() => return Err(e),
                Err(e) => {
                    tracing::debug!(cluster = %self.front.name, session = self.member.id(), error = %e, "no capture to park for room");
                    self.hold();
                    return Ok(());
                }
            }
        }
        let Some(seat) = self.seat.take() else {
            return Ok(());
        };
        let room = self.front.room.clone();
        let key = self.p.pool_key();
        let handed = if room.next_key() == Some(key) {
            P::hand_off(self).await
        } else {
            None
        };
        let seat = match handed {
            Some(conn) => match seat.pass(key, conn) {
                Ok(()) => None,
                Err((seat, conn)) => {
                    P::close(conn).await;
                    Some(seat)
                }
            },
            None => {
                self.p.goodbye().await;
                Some(seat)
            }
        };
        self.park();
        // Only now, with the connection closed, may the next waiter open one.
        drop(seat);
        room.stats.parks.fetch_add(1, Ordering::Relaxed);
        room.stats.parked.fetch_add(1, Ordering::Relaxed);
        self.parked_for_room = true;
        self.member.reg.entry.set_parked_for_room(true);
        if self.kept.is_some() {
            self.member.stay_for_drains();
        }
        tracing::debug!(cluster = %self.front.name, session = self.member.id(), "parked for room");
        Ok(())
    }

    /// Not parked after all: the usher asks someone else.
    fn decline(&mut self) {
        self.front.room.call.notify_one();
    }

    /// State that can't move was found: not asked again until the client acts.
    fn hold(&mut self) {
        self.room_held = true;
        self.quiet.busy();
        self.decline();
    }

    /// No longer parked for room (attached again, parked for a stop, or ended).
    pub(super) fn not_parked_for_room(&mut self, attached: bool) {
        if std::mem::take(&mut self.parked_for_room) {
            let stats = &self.front.room.stats;
            stats.parked.fetch_sub(1, Ordering::Relaxed);
            if attached {
                stats.restores.fetch_add(1, Ordering::Relaxed);
            }
            self.member.reg.entry.set_parked_for_room(false);
        }
    }
}
