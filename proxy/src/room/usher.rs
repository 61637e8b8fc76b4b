//! The task that finds room for waiting sessions: while any wait, it asks as many parkable
//! sessions to park as there are waiters without an ask outstanding, quiet the longest first.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Room;
use super::quiet;

/// How often the usher looks again while sessions wait and nobody can be asked: a session may
/// come to rest without telling it.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

pub(crate) async fn usher(room: Arc<Room>) {
    loop {
        if room.waiting.load(Ordering::Relaxed) == 0 {
            room.call.notified().await;
            continue;
        }
        let (asked, next) = {
            let inner = room.lock();
            let outstanding = inner
                .queue
                .len()
                .saturating_sub(quiet::asks(&inner.sessions));
            if outstanding == 0 {
                (Vec::new(), None)
            } else {
                quiet::choose(&inner.sessions, outstanding, room.park_idle_after)
            }
        };
        for q in &asked {
            q.ask.notify_one();
        }
        let wake = next.map_or(Instant::now() + LOOK_AGAIN, |n| {
            n.min(Instant::now() + LOOK_AGAIN)
        });
        tokio::select! {
            _ = room.call.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
