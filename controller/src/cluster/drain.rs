//! The two-phase drain: every attached session checkpoints and stores its snapshot, and only
//! when all of them did, with no client bytes meanwhile, do they park and the backend stop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Cluster, ClusterState, Inner};
use crate::driver::DriverError;

/// Sent by the drain coordinator to each attached session.
#[derive(Debug)]
pub enum DrainCmd {
    /// Phase 1: at a safe point, capture state and put the snapshot durably, then reply.
    Checkpoint(oneshot::Sender<CheckpointReply>),
    /// Phase 2: every snapshot is durable; drop the backend connection and park.
    Commit,
    /// The drain was called off; keep the backend connection.
    Abort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointReply {
    /// Snapshot is durable; waiting for Commit or Abort.
    Ready,
    /// Non-transferable state; the text names it for operators.
    Blocked(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SleepError {
    #[error("drain refused: {}", .0.join("; "))]
    Blocked(Vec<String>),
    /// The drain check (the database's own work) refused it: no session was asked.
    #[error("drain refused: {0}")]
    DatabaseBusy(String),
    #[error("backend failed to stop: {0}")]
    Driver(#[from] DriverError),
}

/// A session's id and the channel its drain commands arrive on.
pub type Participant = (u64, mpsc::UnboundedSender<DrainCmd>);

/// What a session learns when client bytes arrive while its snapshot is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The drain was not committed yet and is now aborted: keep using the backend.
    Attached,
    /// The drain committed: the backend is going away; the session is parked.
    Parked,
}

/// How long a session may take to checkpoint (large temp tables take a while).
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long committed sessions get to drop their backend connections.
const PARK_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// An attached session joins drains until it parks or ends.
    pub fn register(&self, id: u64, tx: mpsc::UnboundedSender<DrainCmd>) {
        self.lock().participants.insert(id, tx);
    }

    pub fn unregister(&self, id: u64) {
        if self.lock().participants.remove(&id).is_some() {
            self.parked_tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub fn attached_count(&self) -> usize {
        self.lock().participants.len()
    }

    /// Client bytes arrived at an attached session: a drain in phase 1 is called off.
    pub fn client_activity(&self) {
        if self.draining.load(Ordering::SeqCst) {
            self.resume();
        }
    }

    /// A prepared session got client bytes: abort the drain if it isn't committed yet.
    pub fn resume(&self) -> Resume {
        let mut inner = self.lock();
        match inner.state {
            ClusterState::Draining => {
                inner.drain_aborted = true;
                Resume::Attached
            }
            ClusterState::Running | ClusterState::Frozen => Resume::Attached,
            _ => Resume::Parked,
        }
    }

    /// Drain every session and stop the backend. Ok once the cluster is in standby.
    pub async fn sleep(&self) -> Result<(), SleepError> {
        let _guard = self.lifecycle.lock().await;
        if self.state() == ClusterState::Frozen {
            // A frozen server would neither answer the checkpoints nor handle the stop.
            self.thaw_locked().await?;
        }
        let participants = match self.checkpoint_all(ClusterState::Stopping).await? {
            Some(p) => p,
            None => return Ok(()),
        };
        for (_, tx) in &participants {
            let _ = tx.send(DrainCmd::Commit);
        }

        // Every session drops its backend connection before the backend goes away, so none
        // of them sees the server's own shutdown message.
        let ids: Vec<u64> = participants.iter().map(|(id, _)| *id).collect();
        if tokio::time::timeout(PARK_TIMEOUT, self.all_parked(&ids))
            .await
            .is_err()
        {
            tracing::warn!(cluster = %self.name, "some sessions did not park in time; stopping anyway");
        }
        tracing::info!(cluster = %self.name, "drain: phase 2 (stop backend)");
        let result = self.driver.stop().await;
        // The sessions are parked with durable snapshots either way; the cluster stays up only
        // while the backend still runs, so that otherwise a wake starts a fresh one.
        let still_running = result.is_err() && self.driver.status().await.is_running();
        let mut inner = self.lock();
        match result {
            Ok(()) => {
                inner.backend = None;
                self.stats.drains.fetch_add(1, Ordering::Relaxed);
                self.set_state(&mut inner, ClusterState::Standby);
                tracing::info!(cluster = %self.name, "cluster in standby");
                Ok(())
            }
            Err(e) => {
                if still_running {
                    self.set_state(&mut inner, ClusterState::Running);
                } else {
                    inner.backend = None;
                    self.set_state(&mut inner, ClusterState::Standby);
                }
                Err(SleepError::Driver(e))
            }
        }
    }

    /// Phase 1, for a drain or a freeze: unless the drain check refuses (see `check`), every
    /// attached session captures its state and puts its snapshot durably. When all of them
    /// did, with no client bytes meanwhile, the cluster moves to `next` and the participants,
    /// all prepared, are returned to be sent Commit or Abort. Otherwise the cluster is running
    /// again, every participant was sent Abort, and the error says why. None: the cluster is in
    /// standby already.
    pub(super) async fn checkpoint_all(
        &self,
        next: ClusterState,
    ) -> Result<Option<Vec<Participant>>, SleepError> {
        let may = self.may_drain(&self.lock())?;
        if !may {
            return Ok(None);
        }
        // Outside the lock, and before any session is asked: a refusal disturbs nobody.
        if let Some(why) = self.run_drain_check().await {
            self.stats.drains_refused.fetch_add(1, Ordering::Relaxed);
            return Err(SleepError::DatabaseBusy(why));
        }
        let participants: Vec<Participant> = {
            let mut inner = self.lock();
            // Asked again: a session may have become busy, or the backend gone, meanwhile.
            if !self.may_drain(&inner)? {
                return Ok(None);
            }
            let holds = self.holds();
            if !holds.is_empty() {
                self.stats.drains_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cluster = %self.name, blockers = ?holds, "drain refused: held up");
                return Err(SleepError::Blocked(holds));
            }
            inner.drain_aborted = false;
            self.set_state(&mut inner, ClusterState::Draining);
            inner
                .participants
                .iter()
                .map(|(id, tx)| (*id, tx.clone()))
                .collect()
        };
        tracing::info!(cluster = %self.name, sessions = participants.len(), then = next.as_str(), "drain: phase 1 (checkpoint)");

        let mut waiting = Vec::with_capacity(participants.len());
        let mut blockers = Vec::new();
        for (id, tx) in &participants {
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send(DrainCmd::Checkpoint(reply_tx)).is_ok() {
                waiting.push((*id, reply_rx));
            }
            // A send error means the session just ended: nothing to carry over.
        }
        for (id, rx) in waiting {
            match tokio::time::timeout(CHECKPOINT_TIMEOUT, rx).await {
                Ok(Ok(CheckpointReply::Ready)) => {}
                Ok(Ok(CheckpointReply::Blocked(why))) => blockers.push(why),
                // The session ended while checkpointing; it holds nothing any more.
                Ok(Err(_)) => {}
                Err(_) => blockers.push(format!("session {id}: checkpoint timed out")),
            }
        }

        // A hold taken during phase 1 (a rule that just saw its metric rise) refuses the drain
        // with its own reason, not as client activity.
        blockers.extend(self.holds());
        {
            let mut inner = self.lock();
            let aborted = inner.drain_aborted || !blockers.is_empty();
            if !aborted {
                if next == ClusterState::Frozen {
                    // Before anyone can see the state: a session that sends after this
                    // thaws first (see `freeze`).
                    self.frozen.store(true, Ordering::SeqCst);
                }
                self.set_state(&mut inner, next);
                return Ok(Some(participants));
            }
            if blockers.is_empty() {
                self.stats.drains_aborted.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.drains_refused.fetch_add(1, Ordering::Relaxed);
            }
            self.set_state(&mut inner, ClusterState::Running);
        }
        for (_, tx) in &participants {
            let _ = tx.send(DrainCmd::Abort);
        }
        if blockers.is_empty() {
            tracing::info!(cluster = %self.name, "drain aborted: client activity");
            return Err(SleepError::Blocked(vec![
                "client activity during drain".into(),
            ]));
        }
        tracing::warn!(cluster = %self.name, blockers = ?blockers, "drain refused");
        Err(SleepError::Blocked(blockers))
    }

    /// Whether a drain may begin now: false when the cluster is in standby already, an error
    /// when it is in another drain or a wake, or a session is busy.
    fn may_drain(&self, inner: &Inner) -> Result<bool, SleepError> {
        match inner.state {
            ClusterState::Standby => return Ok(false),
            ClusterState::Running => {}
            other => {
                return Err(SleepError::Blocked(vec![format!(
                    "cluster is {}",
                    other.as_str()
                )]));
            }
        }
        let busy = self.busy_sessions();
        if busy > 0 {
            // A busy session can't checkpoint now, and one stuck writing to a client that
            // stopped reading would not even answer: refuse without asking.
            self.stats.drains_refused.fetch_add(1, Ordering::Relaxed);
            let why = format!("{busy} session(s) busy: a query, transaction or COPY in progress");
            tracing::warn!(cluster = %self.name, blockers = ?[&why], "drain refused");
            return Err(SleepError::Blocked(vec![why]));
        }
        Ok(true)
    }

    async fn all_parked(&self, ids: &[u64]) {
        let mut rx = self.parked_tx.subscribe();
        loop {
            {
                let inner = self.lock();
                if !ids.iter().any(|id| inner.participants.contains_key(id)) {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stop the backend without draining (torpor itself is shutting down).
    pub async fn shutdown(&self) -> Result<(), DriverError> {
        let _guard = self.lifecycle.lock().await;
        {
            let mut inner = self.lock();
            self.set_state(&mut inner, ClusterState::Stopping);
        }
        // The driver thaws a frozen backend before it stops it.
        let result = self.driver.stop().await;
        let mut inner = self.lock();
        inner.backend = None;
        self.frozen.store(false, Ordering::SeqCst);
        self.set_state(&mut inner, ClusterState::Standby);
        result
    }
}
