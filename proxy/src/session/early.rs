//! A session that changed state saves its snapshot ahead of the drain, once it has been quiet
//! for half the idle timeout and no other session is working. The drain at the full timeout
//! then finds it already saved and only has to stop the server, instead of every session
//! capturing and writing at that moment.

use std::pin::Pin;
use std::time::Duration;

use controller::Cluster;
use tokio::time::{Instant, Sleep};

pub(crate) struct EarlySnapshot {
    /// Armed lazily: it is only moved when it fires too early, not on every query.
    sleep: Pin<Box<Sleep>>,
    /// Since when this session has had nothing in flight.
    pub since: Instant,
    after: Duration,
}

impl EarlySnapshot {
    pub(crate) fn new(idle_timeout: Duration) -> EarlySnapshot {
        let after = idle_timeout / 2;
        let now = Instant::now();
        EarlySnapshot {
            sleep: Box::pin(tokio::time::sleep_until(now + after)),
            since: now,
            after,
        }
    }

    /// Completes once this session has been quiet for half the idle timeout while no session
    /// of the cluster has anything in flight. While another session works no drain can come:
    /// look again later, still before the drain could. A frozen backend holds every session's
    /// snapshot already (the freeze saved them), and a capture would have to thaw it.
    pub(crate) async fn elapsed(&mut self, cluster: &Cluster) {
        loop {
            self.sleep.as_mut().await;
            let now = Instant::now();
            let due = self.since + self.after;
            let next = if now < due {
                due
            } else if cluster.quiet_for().is_some() && !cluster.is_frozen() {
                return;
            } else {
                now + self.after
            };
            self.sleep.as_mut().reset(next);
        }
    }
}
