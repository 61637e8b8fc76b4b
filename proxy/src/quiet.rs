//! Once the whole cluster has been quiet for half its idle timeout, a drain is likely, and a
//! session that changed state saves its snapshot ahead of it. The drain at the full timeout
//! then finds it already saved and only has to stop the server, instead of every session
//! capturing and writing at that moment.

use std::pin::Pin;
use std::time::Duration;

use controller::Cluster;
use tokio::time::{Instant, Sleep};

pub struct Quiet {
    /// Armed lazily: it is only moved when it fires too early, not on every query.
    sleep: Pin<Box<Sleep>>,
    after: Duration,
}

impl Quiet {
    pub fn new(idle_timeout: Duration) -> Quiet {
        let after = idle_timeout / 2;
        Quiet {
            sleep: Box::pin(tokio::time::sleep(after)),
            after,
        }
    }

    /// Completes once no session of the cluster has had anything in flight for half the idle
    /// timeout.
    pub async fn elapsed(&mut self, cluster: &Cluster) {
        loop {
            self.sleep.as_mut().await;
            let wait = match cluster.quiet_for() {
                Some(quiet) if quiet >= self.after => return,
                Some(quiet) => self.after - quiet,
                None => self.after,
            };
            self.sleep.as_mut().reset(Instant::now() + wait);
        }
    }
}
