//! The frozen tier: a cluster idle for `freeze_after` keeps its backend and every session
//! attached, but the backend's processes are frozen (a cgroup, a paused container) and use no
//! CPU. The next query thaws it in milliseconds instead of a server start. At `idle_timeout`
//! the usual drain follows, which thaws first.
//!
//! Before a freeze every session saves its snapshot, as in the first phase of a drain, and is
//! then told to go on (Abort): the drain at `idle_timeout` finds nothing left to capture, and
//! nothing has to thaw the backend to take an early snapshot.
//!
//! A session never sends to a frozen backend: it marks itself busy (or probing), then checks
//! `frozen` before it sends, and thaws first if set. The freeze sets `frozen`, then checks
//! that no session is busy or probing, and gives up if one is. Both sides use SeqCst, so at
//! least one of them sees the other.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Cluster, ClusterState, DrainCmd, SleepError};
use crate::driver::DriverError;

/// How long a freeze waits for health checks in flight to be answered.
const PROBE_WAIT: Duration = Duration::from_millis(10);
const PROBE_WAITS: usize = 100;

impl Cluster {
    /// Freezes the backend once the cluster has been idle this long (before `idle_timeout`);
    /// only if the driver can, which it is asked here once: torpor says why not at start.
    pub fn with_freeze_after(mut self, after: Option<Duration>) -> Self {
        self.freeze_after = after.and_then(|after| match self.driver.can_freeze() {
            Ok(()) => Some(after),
            Err(why) => {
                tracing::warn!(cluster = %self.name, %why, "freeze_after is set, but the backend can't be frozen here: idle backends are only stopped");
                None
            }
        });
        self
    }

    /// How long idle before the backend is frozen, if it ever is.
    pub fn freeze_after(&self) -> Option<Duration> {
        self.freeze_after
    }

    /// Whether the backend is frozen, or about to be: a session must [`Cluster::thaw`] before
    /// it sends anything to it.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// A session has a health-check probe in flight. Probes don't keep a database up, but a
    /// backend must not be frozen under one: it would not answer until the next thaw.
    pub fn probe_start(&self) {
        self.probing.fetch_add(1, Ordering::SeqCst);
    }

    pub fn probe_end(&self) {
        self.probing.fetch_sub(1, Ordering::SeqCst);
    }

    /// Lets a frozen backend run again, for a client that is about to use it: its idle clock
    /// starts again too. Ok at once when it is not frozen.
    pub async fn thaw(&self) -> Result<(), DriverError> {
        if !self.is_frozen() {
            return Ok(());
        }
        let _guard = self.lifecycle.lock().await;
        self.thaw_locked().await?;
        self.touch();
        Ok(())
    }

    /// [`Cluster::thaw`] with the lifecycle lock held, and without counting as activity (a
    /// drain thaws to stop the backend).
    pub(super) async fn thaw_locked(&self) -> Result<(), DriverError> {
        if !self.is_frozen() {
            return Ok(());
        }
        let started = Instant::now();
        if let Err(e) = self.driver.thaw().await {
            tracing::error!(cluster = %self.name, error = %e, "could not thaw the backend");
            return Err(e);
        }
        self.frozen.store(false, Ordering::SeqCst);
        self.stats.thaws.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        if inner.state == ClusterState::Frozen {
            self.set_state(&mut inner, ClusterState::Running);
        }
        drop(inner);
        tracing::debug!(cluster = %self.name, elapsed_us = started.elapsed().as_micros() as u64, "backend thawed");
        Ok(())
    }

    /// Every session saves its snapshot and stays attached, then the backend is frozen. Err
    /// says why not (a blocker, client activity, the driver); the cluster then runs on.
    pub(super) async fn freeze(&self) -> Result<(), SleepError> {
        let _guard = self.lifecycle.lock().await;
        // Probes are quick, and don't count as activity that would call for another try.
        for _ in 0..PROBE_WAITS {
            if self.probing.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(PROBE_WAIT).await;
        }
        if self.probing.load(Ordering::SeqCst) > 0 {
            return Err(SleepError::Blocked(vec![
                "a health check is in flight".into(),
            ]));
        }
        let Some(participants) = self.checkpoint_all(ClusterState::Frozen).await? else {
            return Ok(());
        };
        for (_, tx) in &participants {
            let _ = tx.send(DrainCmd::Abort);
        }
        if self.busy_sessions() > 0 || self.probing.load(Ordering::SeqCst) > 0 {
            // Someone started sending between the checkpoint and now.
            self.unfreeze();
            return Err(SleepError::Blocked(vec![
                "client activity before the freeze".into(),
            ]));
        }
        let started = Instant::now();
        if let Err(e) = self.driver.freeze().await {
            self.unfreeze();
            // The driver thaws whatever it froze before it fails.
            return Err(SleepError::Driver(e));
        }
        self.stats.freezes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(cluster = %self.name, sessions = participants.len(), elapsed_us = started.elapsed().as_micros() as u64, "backend frozen");
        Ok(())
    }

    /// A freeze that did not happen: back to running.
    fn unfreeze(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        let mut inner = self.lock();
        if inner.state == ClusterState::Frozen {
            self.set_state(&mut inner, ClusterState::Running);
        }
    }
}
