//! When a session that changed state has been quiet for half the idle timeout, it saves its
//! snapshot ahead of the drain. The drain at the full timeout then finds it already saved and
//! only has to stop the server, instead of every session capturing and writing at that moment.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub struct Quiet {
    /// Armed lazily: it is only moved when it fires early, not on every query.
    sleep: Pin<Box<Sleep>>,
    /// Since when the session has had nothing in flight.
    pub since: Instant,
    after: Duration,
}

impl Quiet {
    pub fn new(idle_timeout: Duration) -> Quiet {
        let after = idle_timeout / 2;
        let now = Instant::now();
        Quiet {
            sleep: Box::pin(tokio::time::sleep_until(now + after)),
            since: now,
            after,
        }
    }

    /// Completes once the session has been quiet for half the idle timeout.
    pub async fn elapsed(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let due = self.since + self.after;
            if Instant::now() >= due {
                return;
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_quiet_since_the_last_activity() {
        let mut q = Quiet::new(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Activity: the wait counts from here, though the timer was armed earlier.
        q.since = Instant::now();
        q.elapsed().await;
        assert!(q.since.elapsed() >= Duration::from_millis(100));
        // Already quiet long enough: no second wait.
        let again = Instant::now();
        q.elapsed().await;
        assert!(again.elapsed() < Duration::from_millis(100));
    }
}
