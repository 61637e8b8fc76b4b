//! A session's place in its cluster's lifecycle, the same for both protocols: whether it
//! counts as busy, how it joins and leaves drains, and the snapshot that holds it while parked.

use std::sync::Arc;

use controller::{BackendInfo, CheckpointReply, DrainCmd, DriverError, Rejoin, Resume};
use serde::de::DeserializeOwned;
use state_store::{SnapshotKey, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::backoff::Backoff;
use super::early::EarlySnapshot;
use crate::cluster_front::ClusterFront;
use crate::registry::{Holds, Registration};

pub(crate) struct Membership {
    front: Arc<ClusterFront>,
    pub reg: Registration,
    pub key: SnapshotKey,
    cmd_tx: mpsc::UnboundedSender<DrainCmd>,
    pub cmd_rx: mpsc::UnboundedReceiver<DrainCmd>,
    /// Snapshot is durable and we wait for the drain's Commit or Abort.
    pub prepared: bool,
    /// A snapshot of this session exists in the store.
    pub saved: bool,
    /// Whether the cluster currently counts this session as busy.
    busy: bool,
    /// Whether the cluster currently counts this session as probing.
    probing: bool,
    pub early: EarlySnapshot,
    /// An early snapshot was refused or failed: don't retry until the client acts again.
    early_held: bool,
    rejoin_tx: mpsc::UnboundedSender<Box<Rejoin>>,
    /// While parked and watching: the backend started, attach now.
    pub rejoin_rx: mpsc::UnboundedReceiver<Box<Rejoin>>,
    /// Dropped once attached after a rejoin: the wake that sent it waits for that.
    rejoined: Option<oneshot::Sender<()>>,
}

impl Membership {
    /// `user` and `database` are who the session logged in as: its snapshot opens only for
    /// them.
    pub(crate) fn new(
        front: Arc<ClusterFront>,
        reg: Registration,
        user: &str,
        database: Option<&str>,
    ) -> Membership {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (rejoin_tx, rejoin_rx) = mpsc::unbounded_channel();
        let key = SnapshotKey {
            cluster: front.name.clone(),
            session: Uuid::new_v4(),
            user: user.to_string(),
            database: database.unwrap_or_default().to_string(),
        };
        let early = EarlySnapshot::new(front.cluster.idle_timeout());
        Membership {
            front,
            reg,
            key,
            cmd_tx,
            cmd_rx,
            prepared: false,
            saved: false,
            busy: false,
            probing: false,
            early,
            early_held: false,
            rejoin_tx,
            rejoin_rx,
            rejoined: None,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.reg.entry.id
    }

    /// How operators see this session named, for blocker reasons and logs.
    pub(crate) fn label(&self) -> String {
        self.reg.entry.label()
    }

    /// Shows what keeps this session from being parked now, and tells the cluster when the
    /// session turns busy or idle.
    /// A session whose only work in flight is health-check probes (`probing`) shows its
    /// blocker but does not count as busy: probes must not keep a database awake.
    pub(crate) fn publish(&mut self, blocker: Option<&'static str>, probing: bool) {
        self.reg.entry.set_blocker(blocker);
        let busy = blocker.is_some() && !probing;
        let probing = blocker.is_some() && probing;
        if probing != self.probing {
            // Not busy, but a backend must not be frozen under a probe.
            self.probing = probing;
            if probing {
                self.front.cluster.probe_start();
            } else {
                self.front.cluster.probe_end();
            }
        }
        if busy != self.busy {
            self.busy = busy;
            if busy {
                self.front.cluster.busy_start();
            } else {
                self.early.since = tokio::time::Instant::now();
                self.front.cluster.busy_end();
            }
        }
    }

    /// Whether a session attached to a backend, whose state changed since its last snapshot,
    /// should save one ahead of the drain once it has been quiet long enough.
    pub(crate) fn wants_early_snapshot(&self, attached: bool, changed: bool) -> bool {
        attached && changed && !self.busy && !self.prepared && !self.early_held
    }

    /// What an early snapshot came to. The drain asks again anyway; a refusal or failure only
    /// stops further early attempts until the client acts.
    pub(crate) fn early_result(&mut self, answer: Result<CheckpointReply, String>) {
        let why = match answer {
            Ok(CheckpointReply::Ready) => {
                self.reg.entry.set_found_blocker(None);
                return;
            }
            Ok(CheckpointReply::Blocked(why)) | Err(why) => why,
        };
        self.early_held = true;
        tracing::debug!(cluster = %self.front.name, session = self.id(), %why, "no early snapshot");
    }

    /// Wakes the cluster if needed and joins its drains; while the server starts, reads this
    /// session's snapshot if it has one, so the read is off the path from wake to first query.
    /// A watching session that is sent a rejoin meanwhile attaches through it instead, and the
    /// wake that sent it waits until [`Membership::attached`]. Both the start and the read are
    /// tried again until `deadline`.
    /// `from_store`: false when the session's latest snapshot is in memory. `trusting`: a
    /// running backend is taken to run without asking the driver (see
    /// [`controller::Cluster::wake_trusting`]): not after an attempt that failed.
    pub(crate) async fn wake_and_load<T: DeserializeOwned + Send + 'static>(
        &mut self,
        from_store: bool,
        trusting: bool,
        deadline: Instant,
    ) -> (
        Result<BackendInfo, DriverError>,
        Option<Result<T, StoreError>>,
    ) {
        let Membership {
            front,
            reg,
            key,
            cmd_tx,
            rejoin_rx,
            saved,
            rejoined,
            ..
        } = self;
        let id = reg.entry.id;
        front.cluster.unwatch(id);
        let wake = async {
            let join = Some((id, cmd_tx.clone()));
            let woke = async {
                if trusting {
                    front.cluster.wake_trusting(deadline, join).await
                } else {
                    front.cluster.wake_until(deadline, join).await
                }
            };
            tokio::pin!(woke);
            tokio::select! {
                r = &mut woke => r,
                Some(rj) = rejoin_rx.recv() => {
                    front.cluster.register(id, cmd_tx.clone());
                    *rejoined = Some(rj.done);
                    Ok(rj.backend)
                }
            }
        };
        let load = async {
            if *saved && from_store {
                Some(load(front, key, deadline).await)
            } else {
                None
            }
        };
        tokio::join!(wake, load)
    }

    /// The attach that followed a wake or a rejoin is done, or failed: a wake waiting for this
    /// session goes on.
    pub(crate) fn attached(&mut self) {
        self.rejoined = None;
    }

    /// Reads this session's snapshot, if it has one, to attach to a backend that started
    /// without our asking (see [`Membership::watch`]), and joins its drains. The wake waits until
    /// [`Membership::attached`].
    pub(crate) async fn rejoin<T: DeserializeOwned + Send + 'static>(
        &mut self,
        rj: Box<Rejoin>,
        from_store: bool,
        deadline: Instant,
    ) -> (BackendInfo, Option<Result<T, StoreError>>) {
        self.rejoined = Some(rj.done);
        self.front.cluster.register(self.id(), self.cmd_tx.clone());
        let snap = if self.saved && from_store {
            Some(load(&self.front, &self.key, deadline).await)
        } else {
            None
        };
        (rj.backend, snap)
    }

    /// While parked, asks to be attached as soon as the backend starts, whoever wakes it
    /// (a session that LISTENs would miss notifications sent after the wake otherwise).
    pub(crate) fn watch(&self) {
        self.front.cluster.watch(self.id(), self.rejoin_tx.clone());
    }

    /// Parked with its snapshot only in memory: a drain must still ask this session, so the
    /// snapshot reaches the store before the server stops.
    pub(crate) fn stay_for_drains(&self) {
        self.front.cluster.register(self.id(), self.cmd_tx.clone());
    }

    pub(crate) fn unwatch(&self) {
        self.front.cluster.unwatch(self.id());
    }

    /// The backend connection is gone (parked, or it failed): drains no longer ask us.
    pub(crate) fn leave(&mut self) {
        self.prepared = false;
        self.front.cluster.unregister(self.id());
        self.reg.entry.set_backend(None);
    }

    /// Client bytes arrived. A drain in its first phase is called off; once our snapshot is
    /// durable it may be too late, and then the session must park and wake again.
    pub(crate) fn activity(&mut self) -> Resume {
        self.reg.entry.client_activity();
        self.early_held = false;
        if std::mem::take(&mut self.prepared) {
            self.front.cluster.resume()
        } else {
            self.front.cluster.client_activity();
            Resume::Attached
        }
    }

    /// Gives the drain this session's checkpoint answer; a failed capture blocks the drain
    /// with its reason.
    pub(crate) fn answer(
        &mut self,
        reply: oneshot::Sender<CheckpointReply>,
        answer: Result<CheckpointReply, String>,
    ) {
        let answer = answer.unwrap_or_else(|e| {
            let why = format!("{}: {e}", self.label());
            self.reg.entry.set_found_blocker(Some(why.clone()));
            CheckpointReply::Blocked(why)
        });
        self.prepared = answer == CheckpointReply::Ready;
        if self.prepared {
            // What an earlier checkpoint found (a failed put, say) is behind us now.
            self.reg.entry.set_found_blocker(None);
        }
        let _ = reply.send(answer);
    }

    /// Deletes the stored snapshot, if there is one (the session ended or was reset).
    pub(crate) async fn forget_snapshot(&mut self) {
        self.reg.entry.set_holds(Holds::default());
        if std::mem::take(&mut self.saved)
            && let Err(e) = self.front.store.delete(&self.key).await
        {
            tracing::warn!(cluster = %self.front.name, error = %e, "could not delete the snapshot of a closed session");
        }
    }
}

/// Reads a session's snapshot, timing the reads that succeed. A store that fails or is slow
/// is tried again until `deadline`; a snapshot that can't load is not.
async fn load<T: DeserializeOwned + Send + 'static>(
    front: &ClusterFront,
    key: &SnapshotKey,
    deadline: Instant,
) -> Result<T, StoreError> {
    let mut backoff = Backoff::until(deadline);
    loop {
        let started = Instant::now();
        let snap = match tokio::time::timeout_at(deadline, front.store.get::<T>(key)).await {
            Ok(snap) => snap,
            Err(_) => Err(StoreError::Timeout(format!("get {key}: no answer in time"))),
        };
        match &snap {
            Ok(_) => front.metrics.snapshot_get.record(started.elapsed()),
            Err(e) if e.is_retryable() => {
                tracing::info!(cluster = %front.name, error = %e, "could not read a snapshot; trying again");
                if backoff.wait().await {
                    continue;
                }
            }
            Err(_) => {}
        }
        return snap;
    }
}
