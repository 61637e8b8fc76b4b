//! What keeps a cluster awake: sessions with something in flight, holds (`hold`), and the time
//! since the last of them ended. The idle loop drains the cluster once that time reaches
//! idle_timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Cluster, ClusterState, SleepError};

impl Cluster {
    /// A session became busy (query in flight, transaction, COPY). This runs twice per query,
    /// so only the transitions of the whole cluster between busy and idle touch anything shared
    /// beyond the counter: the idle clock starts when the last busy session ends.
    pub fn busy_start(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    pub fn busy_end(&self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.touch();
        }
    }

    /// Counts as a busy session until the guard is dropped: for work on the backend that no
    /// drain command can reach yet (a login, a restore, reading the greeting).
    pub fn busy_while(self: &Arc<Self>) -> BusyGuard {
        self.busy_start();
        BusyGuard(self.clone())
    }

    pub fn busy_sessions(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// How long no session has had anything in flight; None while one has.
    pub fn quiet_for(&self) -> Option<Duration> {
        (self.busy_sessions() == 0).then(|| self.idle_for())
    }

    /// Whether torpor wants the database up now, for others to read (`torpor_cluster_active`):
    /// it is waking, running or frozen, and a session has something in flight, a hold keeps it
    /// up, or the last of those ended less than idle_timeout ago. False in standby, while
    /// draining or stopping, and once idle for idle_timeout even if a blocker still keeps the
    /// backend running.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state(),
            ClusterState::Waking | ClusterState::Running | ClusterState::Frozen
        ) && (self.busy_sessions() > 0 || self.is_held() || self.idle_for() < self.idle_timeout)
    }

    pub(super) fn touch(&self) {
        if let Ok(mut t) = self.last_activity.lock() {
            *t = Instant::now();
        }
        self.activity_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    /// Freezes the backend once the cluster has been idle for freeze_after, and drains the
    /// cluster once it has been idle for idle_timeout. Runs until dropped.
    pub async fn idle_loop(&self) {
        let mut state_rx = self.state_tx.subscribe();
        let mut activity_rx = self.activity_tx.subscribe();
        // A freeze that was refused or failed is not tried again until a client acts.
        let mut freeze_held = false;
        loop {
            let state = *state_rx.borrow_and_update();
            if !matches!(state, ClusterState::Running | ClusterState::Frozen) {
                if state_rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if self.busy_sessions() > 0 || self.is_held() {
                freeze_held = false;
                // Wait for the next busy/idle transition (a hold's too).
                tokio::select! {
                    r = activity_rx.changed() => if r.is_err() { return },
                    r = state_rx.changed() => if r.is_err() { return },
                }
                continue;
            }
            if activity_rx.has_changed().unwrap_or(false) {
                activity_rx.borrow_and_update();
                freeze_held = false;
            }
            let idle = self.idle_for();
            let freeze_at = self.freeze_after.filter(|f| {
                state == ClusterState::Running && !freeze_held && *f < self.idle_timeout
            });
            if idle < self.idle_timeout {
                let next = match freeze_at {
                    Some(f) if idle >= f => {
                        match self.freeze().await {
                            Ok(()) => {}
                            Err(SleepError::DatabaseBusy(_)) => {
                                // Tried again on its own: no client says when that work ends.
                                if !self.pause_for_check(&mut state_rx, &mut activity_rx).await {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::debug!(cluster = %self.name, error = %e, "not frozen");
                                freeze_held = true;
                            }
                        }
                        continue;
                    }
                    Some(f) => f,
                    None => self.idle_timeout,
                };
                tokio::select! {
                    _ = tokio::time::sleep(next - idle) => {}
                    r = state_rx.changed() => if r.is_err() { return },
                    r = activity_rx.changed(), if freeze_held => {
                        if r.is_err() { return }
                        freeze_held = false;
                    }
                }
                continue;
            }
            match self.sleep().await {
                Ok(()) => {}
                Err(SleepError::DatabaseBusy(_)) => {
                    if !self.pause_for_check(&mut state_rx, &mut activity_rx).await {
                        return;
                    }
                }
                Err(SleepError::Blocked(_)) => {
                    // Don't spin on a blocker (e.g. a WITH HOLD cursor): wait for activity or a while.
                    let pause = self.idle_timeout.max(Duration::from_secs(1));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        r = activity_rx.changed() => if r.is_err() { return },
                    }
                }
                Err(SleepError::Driver(e)) => {
                    tracing::error!(cluster = %self.name, error = %e, "stop failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// After the drain check refused: waits a little (`check_retry`), less if a client acts or
    /// the state changes. False once the cluster is gone.
    async fn pause_for_check(
        &self,
        state_rx: &mut watch::Receiver<ClusterState>,
        activity_rx: &mut watch::Receiver<u64>,
    ) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.check_retry()) => true,
            r = state_rx.changed() => r.is_ok(),
            r = activity_rx.changed() => r.is_ok(),
        }
    }
}

/// See [`Cluster::busy_while`].
pub struct BusyGuard(Arc<Cluster>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy_end();
    }
}
