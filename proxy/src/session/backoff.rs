//! Waiting between the tries of a wake (reading the store, connecting to a full backend),
//! longer each time, never past the wake's deadline.

use std::time::Duration;

use tokio::time::Instant;

const FIRST: Duration = Duration::from_millis(50);
const MOST: Duration = Duration::from_secs(1);

/// How long a connect keeps trying a server that refuses connections before the wake looks
/// again: the server may have exited since the wake handed it out, and the next wake starts
/// another.
const NOT_READY: Duration = Duration::from_secs(2);

/// Until when a connect tries a server that refuses connections (see [`NOT_READY`]).
pub(crate) fn ready_by(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + NOT_READY)
}

pub(crate) struct Backoff {
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(crate) fn until(deadline: Instant) -> Backoff {
        Backoff {
            next: FIRST,
            deadline,
        }
    }

    /// Sleeps before the next try; false once the deadline has passed, when there is none.
    pub(crate) async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep_until((now + self.next).min(self.deadline)).await;
        self.next = (self.next * 2).min(MOST);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_longer_each_time_and_stops_at_the_deadline() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let mut b = Backoff::until(deadline);
        let mut tries = 0;
        while b.wait().await {
            tries += 1;
        }
        // 50, 100 and 200 ms would pass the deadline: the last wait ends at it.
        assert!((1..=3).contains(&tries), "{tries}");
        assert!(Instant::now() >= deadline);
    }
}
