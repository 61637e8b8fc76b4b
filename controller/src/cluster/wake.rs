//! Starting the backend: many callers at once cause one start, and sessions that watch for it
//! (a parked LISTEN) attach before any other session runs on the new server.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Cluster, ClusterState, Participant};
use crate::driver::{BackendInfo, DriverError};

/// Sent to a watching session when the backend has started: attach to `backend`, join drains,
/// then drop or fire `done`. The wake that started the backend waits for every one of them.
#[derive(Debug)]
pub struct Rejoin {
    pub backend: BackendInfo,
    pub done: oneshot::Sender<()>,
}

/// How long a wake waits for watching sessions to attach before its own caller goes on.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first and longest pauses between the starts of a wake with a deadline.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// What a wake does next.
#[derive(PartialEq, Eq)]
enum Step {
    Start,
    Thaw,
    /// For someone else's start or stop to finish.
    Wait,
}

/// Who asked for the backend: wake latency is reported per cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeCause {
    /// A client's request (a query, or a connection that needs the server's greeting).
    Client,
    /// `POST /api/clusters/{name}/wake`.
    Admin,
    /// A `wake_metric` rule: a metric above its threshold.
    Metric,
    /// A `wake_at` rule: one of its times came.
    Schedule,
}

impl WakeCause {
    pub const ALL: [WakeCause; 4] = [
        WakeCause::Client,
        WakeCause::Admin,
        WakeCause::Metric,
        WakeCause::Schedule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WakeCause::Client => "client",
            WakeCause::Admin => "admin",
            WakeCause::Metric => "metric",
            WakeCause::Schedule => "schedule",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Cluster {
    /// The backend to connect to, starting it if needed. Many callers at once cause one start.
    /// Calling this during phase 1 of a drain aborts the drain.
    ///
    /// `join` registers a drain participant in the same step, so no drain can stop the backend
    /// between this call returning and the caller's connection being set up.
    pub async fn wake(&self, join: Option<Participant>) -> Result<BackendInfo, DriverError> {
        self.wake_for(WakeCause::Client, join).await
    }

    /// [`Cluster::wake`] on behalf of `cause`; a wake that starts the backend records its latency
    /// under that cause.
    pub async fn wake_for(
        &self,
        cause: WakeCause,
        join: Option<Participant>,
    ) -> Result<BackendInfo, DriverError> {
        self.wake_by(cause, join, None, false).await
    }

    /// [`Cluster::wake`] for a client that waits until `deadline` at most: a start that fails
    /// in a way that may pass ([`DriverError::is_retryable`]) is tried again, longer apart each time, and a wait for someone else's start or stop
    /// gives up at the deadline. A start under way is never cut short: the deadline passes
    /// for the next try only.
    pub async fn wake_until(
        &self,
        deadline: tokio::time::Instant,
        join: Option<Participant>,
    ) -> Result<BackendInfo, DriverError> {
        self.wake_by(WakeCause::Client, join, Some(deadline), false)
            .await
    }

    /// [`Cluster::wake_until`] that takes a running backend's word for it at first: asking the
    /// driver whether the server still runs is an API request for some drivers, too much for
    /// every transaction of a session that shares connections, and the exit watcher notices
    /// an exit within a second anyway. Only a wait that goes round again asks.
    pub async fn wake_trusting(
        &self,
        deadline: tokio::time::Instant,
        join: Option<Participant>,
    ) -> Result<BackendInfo, DriverError> {
        self.wake_by(WakeCause::Client, join, Some(deadline), true)
            .await
    }

    async fn wake_by(
        &self,
        cause: WakeCause,
        mut join: Option<Participant>,
        deadline: Option<tokio::time::Instant>,
        mut trusting: bool,
    ) -> Result<BackendInfo, DriverError> {
        let requested = Instant::now();
        let mut rx = self.state_tx.subscribe();
        let mut backoff = FIRST_RETRY;
        loop {
            if !std::mem::take(&mut trusting) {
                self.forget_exited_backend().await;
            }
            let step = {
                let mut inner = self.lock();
                match inner.state {
                    ClusterState::Running | ClusterState::Draining => {
                        if inner.state == ClusterState::Draining {
                            inner.drain_aborted = true;
                        }
                        if let Some(b) = inner.backend.clone() {
                            if let Some((id, tx)) = join.take() {
                                inner.participants.insert(id, tx);
                            }
                            return Ok(b);
                        }
                        Step::Wait
                    }
                    ClusterState::Frozen => Step::Thaw,
                    ClusterState::Standby => {
                        self.set_state(&mut inner, ClusterState::Waking);
                        Step::Start
                    }
                    ClusterState::Waking | ClusterState::Stopping => Step::Wait,
                }
            };
            if step == Step::Thaw {
                if let Err(e) = self.thaw().await {
                    let Some(deadline) = deadline.filter(|d| *d > now()) else {
                        return Err(e);
                    };
                    tokio::time::sleep_until((now() + backoff).min(deadline)).await;
                    backoff = (backoff * 2).min(LAST_RETRY);
                }
                continue;
            }
            if step == Step::Start {
                let result = self.start_backend(join.clone(), cause, requested).await;
                // A start that fails the same way until someone changes something (a refused
                // config, a missing image) is not tried again.
                let again = result.as_ref().is_err_and(DriverError::is_retryable);
                let Some(deadline) = deadline.filter(|d| again && *d > now()) else {
                    return result;
                };
                tokio::time::sleep_until((now() + backoff).min(deadline)).await;
                backoff = (backoff * 2).min(LAST_RETRY);
                continue;
            }
            let changed = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.changed())
                    .await
                    .map_err(|_| {
                        DriverError::Timeout("the database did not start in time".into())
                    })?,
                None => rx.changed().await,
            };
            if changed.is_err() {
                return Err(DriverError::Failed("cluster is shutting down".into()));
            }
        }
    }

    /// A backend that ended on its own is not handed out: the cluster goes back to standby,
    /// and the wake that noticed starts a new one.
    async fn forget_exited_backend(&self) {
        let generation = {
            let inner = self.lock();
            if inner.state != ClusterState::Running {
                return;
            }
            inner.generation
        };
        let status = self.driver.status().await;
        if status.is_running() {
            return;
        }
        // Another wake may have noticed first, or a drain and the next start come between.
        self.backend_exited(
            generation,
            format!("the backend exited on its own ({})", status.details),
        );
    }

    async fn start_backend(
        &self,
        join: Option<Participant>,
        cause: WakeCause,
        requested: Instant,
    ) -> Result<BackendInfo, DriverError> {
        let _guard = self.lifecycle.lock().await;
        let started = Instant::now();
        let result = self.driver.start().await;
        if let Ok(info) = &result {
            // Ready: the sessions attaching next are the caller's business, not the wake's.
            self.wake_seconds[cause.index()].record(requested.elapsed());
            self.rejoin_watchers(info).await;
        }
        // The idle clock starts now, before anyone can see the cluster running: the idle loop
        // would otherwise measure from before the last stop and drain at once.
        self.touch();
        let mut inner = self.lock();
        match &result {
            Ok(info) => {
                inner.backend = Some(info.clone());
                inner.generation += 1;
                inner.last_error = None;
                if let Some((id, tx)) = join {
                    inner.participants.insert(id, tx);
                }
                self.stats.wakes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cluster = %self.name, addr = %info.addr, elapsed_ms = started.elapsed().as_millis() as u64, "backend started");
                self.set_state(&mut inner, ClusterState::Running);
            }
            Err(e) => {
                self.stats.wake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(cluster = %self.name, error = %e, retryable = e.is_retryable(), "backend failed to start");
                inner.last_error = Some(format!("the backend failed to start: {e}"));
                self.set_state(&mut inner, ClusterState::Standby);
            }
        }
        drop(inner);
        result
    }

    /// While the cluster is still `waking`, so no other session can run anything yet, every
    /// watching session attaches to the new backend. A session that fails or takes longer than
    /// [`REJOIN_TIMEOUT`] is not waited for: it stays parked and attaches when its client
    /// speaks.
    async fn rejoin_watchers(&self, info: &BackendInfo) {
        let watchers: Vec<_> = self.lock().watchers.drain().collect();
        if watchers.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut waiting = Vec::with_capacity(watchers.len());
        for (_, tx) in watchers {
            let (done, rx) = oneshot::channel();
            if tx
                .send(Box::new(Rejoin {
                    backend: info.clone(),
                    done,
                }))
                .is_ok()
            {
                waiting.push(rx);
            }
        }
        let n = waiting.len();
        let all = all_done(waiting);
        if tokio::time::timeout(REJOIN_TIMEOUT, all).await.is_err() {
            tracing::warn!(cluster = %self.name, sessions = n, "some watching sessions did not attach in time");
        }
        tracing::debug!(cluster = %self.name, sessions = n, elapsed_ms = started.elapsed().as_millis() as u64, "watching sessions attached");
    }

    /// A parked session asks to be attached again as soon as the backend starts. Boxed: each
    /// session's channel holds a block of slots from the start, and a rejoin is rare.
    pub fn watch(&self, id: u64, tx: mpsc::UnboundedSender<Box<Rejoin>>) {
        self.lock().watchers.insert(id, tx);
    }

    pub fn unwatch(&self, id: u64) {
        self.lock().watchers.remove(&id);
    }
}

/// Waits for every receiver; a dropped sender counts as done.
async fn all_done(rxs: Vec<oneshot::Receiver<()>>) {
    for rx in rxs {
        let _ = rx.await;
    }
}
