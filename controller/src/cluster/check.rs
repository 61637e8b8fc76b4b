//! A say from outside the lifecycle before every drain and freeze: work no session knows
//! about (the database's own, asked of the server by the proxy's `busy_query`) refuses it.
//!
//! The check runs after the busy-sessions check and before the cluster goes to `draining`, so a
//! refusal disturbs no session. Its reason stays listed (`Cluster::drain_check_blocker`) until
//! the next check finds nothing or the backend stops; while it refuses, the idle loop asks again
//! every few seconds (`CHECK_RETRY`), since no client activity will say when that work ends.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::Cluster;

/// What the proxy says about a drain the controller is about to start.
pub trait DrainCheck: Send + Sync {
    /// None: nothing against a drain. Some(reason): refused, the reason written for operators.
    /// Bounded in time by the implementation.
    fn check(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;
}

/// How often the idle loop asks again while a check refuses, at most.
pub(super) const CHECK_RETRY: Duration = Duration::from_secs(5);

impl Cluster {
    /// Asked before every drain and freeze from now on. Set once: a second call is ignored.
    pub fn set_drain_check(&self, check: Box<dyn DrainCheck>) {
        if self.drain_check.set(check).is_err() {
            tracing::warn!(cluster = %self.name, "a drain check was set twice; the first one stays");
        }
    }

    /// Why the last check refused a drain, until the next one finds nothing or the backend
    /// stops.
    pub fn drain_check_blocker(&self) -> Option<String> {
        self.lock().check_blocker.clone()
    }

    /// Runs the check, if there is one, and keeps its answer for operators. Logs when the answer
    /// changes, not at every refusal: the idle loop asks again every few seconds.
    pub(super) async fn run_drain_check(&self) -> Option<String> {
        let check = self.drain_check.get()?;
        let found = check.check().await;
        let before = {
            let mut inner = self.lock();
            std::mem::replace(&mut inner.check_blocker, found.clone())
        };
        match (&before, &found) {
            (_, Some(why)) if before.as_ref() != Some(why) => {
                tracing::info!(cluster = %self.name, blockers = ?[why], "drain refused");
            }
            (_, Some(why)) => {
                tracing::debug!(cluster = %self.name, blockers = ?[why], "drain refused again");
            }
            (Some(_), None) => {
                tracing::info!(cluster = %self.name, "the drain check finds nothing against a drain any more");
            }
            (None, None) => {}
        }
        found
    }

    /// How long the idle loop waits before it asks again after a check refused.
    pub(super) fn check_retry(&self) -> Duration {
        self.idle_timeout.clamp(Duration::from_secs(1), CHECK_RETRY)
    }
}
