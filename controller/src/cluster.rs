//! One backend database and its lifecycle: standby → waking → running → draining → stopping.
//!
//! Sessions take part in a drain through a channel of [`DrainCmd`]s, so this module never needs
//! to know which wire protocol they speak.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{BackendInfo, Driver, DriverError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    Standby,
    Waking,
    Running,
    Draining,
    Stopping,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Standby => "standby",
            ClusterState::Waking => "waking",
            ClusterState::Running => "running",
            ClusterState::Draining => "draining",
            ClusterState::Stopping => "stopping",
        }
    }
}

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

struct Inner {
    state: ClusterState,
    backend: Option<BackendInfo>,
    /// Set when anything needs the backend while phase 1 of a drain is running.
    drain_aborted: bool,
    participants: HashMap<u64, mpsc::UnboundedSender<DrainCmd>>,
    /// Parked sessions that must be attached again whenever the backend starts, before
    /// anything else runs on it (a session that LISTENs would miss notifications).
    watchers: HashMap<u64, mpsc::UnboundedSender<Rejoin>>,
}

/// Sent to a watching session when the backend has started: attach to `backend`, join drains,
/// then drop or fire `done`. The wake that started the backend waits for every one of them.
#[derive(Debug)]
pub struct Rejoin {
    pub backend: BackendInfo,
    pub done: oneshot::Sender<()>,
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub wakes: AtomicU64,
    pub wake_failures: AtomicU64,
    pub drains: AtomicU64,
    pub drains_refused: AtomicU64,
    pub drains_aborted: AtomicU64,
}

pub struct Cluster {
    name: String,
    idle_timeout: Duration,
    driver: Box<dyn Driver>,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<ClusterState>,
    /// Sessions with a query in flight, an open transaction or a COPY.
    busy: AtomicUsize,
    last_activity: Mutex<Instant>,
    activity_tx: watch::Sender<u64>,
    /// Bumped whenever a participant leaves, for phase 2 to wait on.
    parked_tx: watch::Sender<u64>,
    /// Serialises drains and wakes' driver calls against each other.
    lifecycle: tokio::sync::Mutex<()>,
    /// Mirrors `state == Draining` for the per-message check on the hot path.
    draining: std::sync::atomic::AtomicBool,
    pub stats: ClusterStats,
}

/// How long a session may take to checkpoint (large temp tables take a while).
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a wake waits for watching sessions to attach before its own caller goes on.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long committed sessions get to drop their backend connections.
const PARK_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    pub fn new(name: impl Into<String>, idle_timeout: Duration, driver: Box<dyn Driver>) -> Self {
        let (state_tx, _) = watch::channel(ClusterState::Standby);
        let (activity_tx, _) = watch::channel(0);
        let (parked_tx, _) = watch::channel(0);
        Cluster {
            name: name.into(),
            idle_timeout,
            driver,
            inner: Mutex::new(Inner {
                state: ClusterState::Standby,
                backend: None,
                drain_aborted: false,
                participants: HashMap::new(),
                watchers: HashMap::new(),
            }),
            state_tx,
            busy: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            activity_tx,
            parked_tx,
            lifecycle: tokio::sync::Mutex::new(()),
            draining: std::sync::atomic::AtomicBool::new(false),
            stats: ClusterStats::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub fn state(&self) -> ClusterState {
        self.lock().state
    }

    /// Whether a drain is in its first phase: sessions are checkpointing.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Every lifecycle state change, for whoever must act on wakes.
    pub fn subscribe_state(&self) -> watch::Receiver<ClusterState> {
        self.state_tx.subscribe()
    }

    pub fn backend_pid(&self) -> Option<u32> {
        self.driver.pid()
    }

    /// The backend's address, if it is up and not going away.
    pub fn running_backend(&self) -> Option<BackendInfo> {
        let inner = self.lock();
        match inner.state {
            ClusterState::Running | ClusterState::Draining => inner.backend.clone(),
            _ => None,
        }
    }

    pub async fn prepare(&self) -> Result<(), DriverError> {
        self.driver.prepare().await
    }

    /// The backend to connect to, starting it if needed. Many callers at once cause one start.
    /// Calling this during phase 1 of a drain aborts the drain.
    ///
    /// `join` registers a drain participant in the same step, so no drain can stop the backend
    /// between this call returning and the caller's connection being set up.
    pub async fn wake(&self, mut join: Option<Participant>) -> Result<BackendInfo, DriverError> {
        let mut rx = self.state_tx.subscribe();
        loop {
            let start = {
                let mut inner = self.lock();
                if inner.state == ClusterState::Running && !self.driver.alive() {
                    tracing::error!(cluster = %self.name, pid = ?inner.backend.as_ref().and_then(|b| b.pid), "backend exited on its own; starting it again");
                    inner.backend = None;
                    self.set_state(&mut inner, ClusterState::Standby);
                }
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
                        false
                    }
                    ClusterState::Standby => {
                        self.set_state(&mut inner, ClusterState::Waking);
                        true
                    }
                    ClusterState::Waking | ClusterState::Stopping => false,
                }
            };
            if start {
                return self.start_backend(join.take()).await;
            }
            if rx.changed().await.is_err() {
                return Err(DriverError::Failed("cluster is shutting down".into()));
            }
        }
    }

    async fn start_backend(&self, join: Option<Participant>) -> Result<BackendInfo, DriverError> {
        let _guard = self.lifecycle.lock().await;
        let started = Instant::now();
        let result = self.driver.start().await;
        if let Ok(info) = &result {
            self.rejoin_watchers(info).await;
        }
        let mut inner = self.lock();
        match &result {
            Ok(info) => {
                inner.backend = Some(info.clone());
                if let Some((id, tx)) = join {
                    inner.participants.insert(id, tx);
                }
                self.stats.wakes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cluster = %self.name, pid = ?info.pid, elapsed_ms = started.elapsed().as_millis() as u64, "backend started");
                self.set_state(&mut inner, ClusterState::Running);
            }
            Err(e) => {
                self.stats.wake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(cluster = %self.name, error = %e, "backend failed to start");
                self.set_state(&mut inner, ClusterState::Standby);
            }
        }
        drop(inner);
        self.touch();
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
                .send(Rejoin {
                    backend: info.clone(),
                    done,
                })
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

    /// A parked session asks to be attached again as soon as the backend starts.
    pub fn watch(&self, id: u64, tx: mpsc::UnboundedSender<Rejoin>) {
        self.lock().watchers.insert(id, tx);
    }

    pub fn unwatch(&self, id: u64) {
        self.lock().watchers.remove(&id);
    }

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
            ClusterState::Running => Resume::Attached,
            _ => Resume::Parked,
        }
    }

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

    pub fn busy_sessions(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// How long no session has had anything in flight; None while one has.
    pub fn quiet_for(&self) -> Option<Duration> {
        (self.busy_sessions() == 0).then(|| self.idle_for())
    }

    fn touch(&self) {
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

    /// Drain every session and stop the backend. Ok once the cluster is in standby.
    pub async fn sleep(&self) -> Result<(), SleepError> {
        let _guard = self.lifecycle.lock().await;
        let participants: Vec<(u64, mpsc::UnboundedSender<DrainCmd>)> = {
            let mut inner = self.lock();
            match inner.state {
                ClusterState::Standby => return Ok(()),
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
                let why =
                    format!("{busy} session(s) busy: a query, transaction or COPY in progress");
                tracing::warn!(cluster = %self.name, blockers = ?[&why], "drain refused");
                return Err(SleepError::Blocked(vec![why]));
            }
            inner.drain_aborted = false;
            self.set_state(&mut inner, ClusterState::Draining);
            inner
                .participants
                .iter()
                .map(|(id, tx)| (*id, tx.clone()))
                .collect()
        };
        tracing::info!(cluster = %self.name, sessions = participants.len(), "drain: phase 1 (checkpoint)");

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

        let aborted = {
            let mut inner = self.lock();
            let aborted = inner.drain_aborted || !blockers.is_empty();
            if aborted {
                if blockers.is_empty() {
                    self.stats.drains_aborted.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.drains_refused.fetch_add(1, Ordering::Relaxed);
                }
                self.set_state(&mut inner, ClusterState::Running);
            } else {
                self.set_state(&mut inner, ClusterState::Stopping);
            }
            aborted
        };
        let cmd = || {
            if aborted {
                DrainCmd::Abort
            } else {
                DrainCmd::Commit
            }
        };
        for (_, tx) in &participants {
            let _ = tx.send(cmd());
        }
        if aborted {
            if blockers.is_empty() {
                tracing::info!(cluster = %self.name, "drain aborted: client activity");
                return Err(SleepError::Blocked(vec![
                    "client activity during drain".into(),
                ]));
            }
            tracing::warn!(cluster = %self.name, blockers = ?blockers, "drain refused");
            return Err(SleepError::Blocked(blockers));
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
                // The sessions are parked with durable snapshots either way; mark standby only
                // if the process is really gone so a wake starts a fresh one.
                if self.driver.pid().is_none() {
                    inner.backend = None;
                    self.set_state(&mut inner, ClusterState::Standby);
                } else {
                    self.set_state(&mut inner, ClusterState::Running);
                }
                Err(SleepError::Driver(e))
            }
        }
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
        let result = self.driver.stop().await;
        let mut inner = self.lock();
        inner.backend = None;
        self.set_state(&mut inner, ClusterState::Standby);
        result
    }

    /// Drains the cluster whenever it has been idle for idle_timeout. Runs until dropped.
    pub async fn idle_loop(&self) {
        let mut state_rx = self.state_tx.subscribe();
        let mut activity_rx = self.activity_tx.subscribe();
        loop {
            if *state_rx.borrow_and_update() != ClusterState::Running {
                if state_rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if self.busy_sessions() > 0 {
                // Wait for the next busy/idle transition.
                tokio::select! {
                    r = activity_rx.changed() => if r.is_err() { return },
                    r = state_rx.changed() => if r.is_err() { return },
                }
                continue;
            }
            let idle = self.idle_for();
            if idle < self.idle_timeout {
                tokio::select! {
                    _ = tokio::time::sleep(self.idle_timeout - idle) => {}
                    r = state_rx.changed() => if r.is_err() { return },
                }
                continue;
            }
            match self.sleep().await {
                Ok(()) => {}
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the state is still
        // the best we have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, inner: &mut Inner, state: ClusterState) {
        inner.state = state;
        self.draining
            .store(state == ClusterState::Draining, Ordering::SeqCst);
        self.state_tx.send_replace(state);
    }
}

/// Waits for every receiver; a dropped sender counts as done.
async fn all_done(rxs: Vec<oneshot::Receiver<()>>) {
    for rx in rxs {
        let _ = rx.await;
    }
}

#[cfg(test)]
mod tests {
    //! The lifecycle alone, with a driver that only counts: the real process driver has its
    //! own tests against real postgres.

    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    use async_trait::async_trait;

    use super::*;

    #[derive(Default)]
    struct Counting {
        starts: AtomicU32,
        stops: AtomicU32,
        running: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Driver for Arc<Counting> {
        async fn prepare(&self) -> Result<(), DriverError> {
            Ok(())
        }
        async fn start(&self) -> Result<BackendInfo, DriverError> {
            // Long enough that concurrent wakes overlap.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.starts.fetch_add(1, Ordering::SeqCst);
            self.running.store(true, Ordering::SeqCst);
            Ok(BackendInfo {
                addr: "127.0.0.1:1"
                    .parse()
                    .map_err(|_| DriverError::Failed("addr".into()))?,
                socket: None,
                pid: Some(1),
            })
        }
        async fn stop(&self) -> Result<(), DriverError> {
            self.stops.fetch_add(1, Ordering::SeqCst);
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn pid(&self) -> Option<u32> {
            self.running.load(Ordering::SeqCst).then_some(1)
        }
    }

    fn cluster(idle: Duration) -> (Arc<Cluster>, Arc<Counting>) {
        let d = Arc::new(Counting::default());
        (Arc::new(Cluster::new("t", idle, Box::new(d.clone()))), d)
    }

    /// A participant that answers every checkpoint with `reply` and reports what it got.
    fn participant(
        c: &Arc<Cluster>,
        id: u64,
        reply: CheckpointReply,
    ) -> mpsc::UnboundedReceiver<&'static str> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        c.register(id, tx);
        let c2 = c.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let name = match cmd {
                    DrainCmd::Checkpoint(r) => {
                        let _ = r.send(reply.clone());
                        "checkpoint"
                    }
                    DrainCmd::Commit => {
                        c2.unregister(id);
                        "commit"
                    }
                    DrainCmd::Abort => "abort",
                };
                let _ = seen_tx.send(name);
            }
        });
        seen_rx
    }

    #[tokio::test]
    async fn concurrent_wakes_start_once() {
        let (c, d) = cluster(Duration::from_secs(3600));
        let wakes: Vec<_> = (0..50)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.wake(None).await })
            })
            .collect();
        for w in wakes {
            assert!(w.await.unwrap().is_ok());
        }
        assert_eq!(d.starts.load(Ordering::SeqCst), 1);
        assert_eq!(c.state(), ClusterState::Running);
    }

    #[tokio::test]
    async fn drain_commits_when_every_participant_is_ready() {
        let (c, d) = cluster(Duration::from_secs(3600));
        c.wake(None).await.unwrap();
        let mut a = participant(&c, 1, CheckpointReply::Ready);
        let mut b = participant(&c, 2, CheckpointReply::Ready);
        c.sleep().await.unwrap();
        assert_eq!(c.state(), ClusterState::Standby);
        assert_eq!(d.stops.load(Ordering::SeqCst), 1);
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await, Some("checkpoint"));
            assert_eq!(rx.recv().await, Some("commit"));
        }
    }

    #[tokio::test]
    async fn a_blocker_refuses_the_drain_and_keeps_the_backend() {
        let (c, d) = cluster(Duration::from_secs(3600));
        c.wake(None).await.unwrap();
        let mut ready = participant(&c, 1, CheckpointReply::Ready);
        let _blocked = participant(&c, 2, CheckpointReply::Blocked("open transaction".into()));
        match c.sleep().await {
            Err(SleepError::Blocked(b)) => assert_eq!(b, vec!["open transaction".to_string()]),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(c.state(), ClusterState::Running);
        assert_eq!(d.stops.load(Ordering::SeqCst), 0);
        assert_eq!(ready.recv().await, Some("checkpoint"));
        assert_eq!(ready.recv().await, Some("abort"));
    }

    #[tokio::test]
    async fn activity_during_phase_one_aborts_the_drain() {
        let (c, d) = cluster(Duration::from_secs(3600));
        c.wake(None).await.unwrap();
        // This participant sees client bytes right after it checkpointed.
        let (tx, mut rx) = mpsc::unbounded_channel();
        c.register(1, tx);
        let c2 = c.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let DrainCmd::Checkpoint(r) = cmd {
                    assert_eq!(c2.resume(), Resume::Attached);
                    let _ = r.send(CheckpointReply::Ready);
                }
            }
        });
        assert!(matches!(c.sleep().await, Err(SleepError::Blocked(_))));
        assert_eq!(c.state(), ClusterState::Running);
        assert_eq!(d.stops.load(Ordering::SeqCst), 0);
        assert_eq!(c.stats.drains_aborted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_busy_session_refuses_the_drain_without_being_asked() {
        let (c, d) = cluster(Duration::from_secs(3600));
        c.wake(None).await.unwrap();
        // A participant that never answers: sleep must not wait for it while it is busy.
        let (tx, _rx) = mpsc::unbounded_channel();
        c.register(1, tx);
        c.busy_start();
        match tokio::time::timeout(Duration::from_secs(5), c.sleep()).await {
            Ok(Err(SleepError::Blocked(b))) => assert!(b[0].contains("busy"), "{b:?}"),
            other => panic!("expected an immediate refusal, got {other:?}"),
        }
        assert_eq!(c.state(), ClusterState::Running);
        assert_eq!(d.stops.load(Ordering::SeqCst), 0);
        assert_eq!(c.stats.drains_refused.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn idle_loop_drains_after_the_timeout_but_not_while_busy() {
        let (c, d) = cluster(Duration::from_millis(100));
        let looper = {
            let c = c.clone();
            tokio::spawn(async move { c.idle_loop().await })
        };
        c.wake(None).await.unwrap();
        c.busy_start();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            c.state(),
            ClusterState::Running,
            "a busy session keeps it up"
        );
        c.busy_end();
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.state() != ClusterState::Standby {
            assert!(Instant::now() < deadline, "never went idle");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(d.stops.load(Ordering::SeqCst), 1);
        looper.abort();
    }

    #[tokio::test]
    async fn a_wake_waits_for_watching_sessions_to_attach() {
        let (c, _) = cluster(Duration::from_secs(3600));
        let (tx, mut rx) = mpsc::unbounded_channel();
        c.watch(7, tx);
        let attached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = attached.clone();
        let c2 = c.clone();
        tokio::spawn(async move {
            let rj = rx.recv().await.unwrap();
            // Nobody else may use the backend while a watcher attaches.
            assert_eq!(c2.state(), ClusterState::Waking);
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen.store(true, Ordering::SeqCst);
            drop(rj.done);
        });
        c.wake(None).await.unwrap();
        assert!(attached.load(Ordering::SeqCst), "the wake returned first");
        // A watcher is sent one rejoin, not one per wake.
        c.sleep().await.unwrap();
        c.wake(None).await.unwrap();
    }

    #[tokio::test]
    async fn wake_during_phase_one_aborts_the_drain() {
        let (c, d) = cluster(Duration::from_secs(3600));
        c.wake(None).await.unwrap();
        // A participant slow to checkpoint keeps the drain in phase 1.
        let (tx, mut rx) = mpsc::unbounded_channel();
        c.register(1, tx);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let DrainCmd::Checkpoint(r) = cmd {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = r.send(CheckpointReply::Ready);
                }
            }
        });
        let sleeper = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep().await })
        };
        while c.state() != ClusterState::Draining {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(c.wake(None).await.is_ok());
        assert!(matches!(
            sleeper.await.unwrap(),
            Err(SleepError::Blocked(_))
        ));
        assert_eq!(c.state(), ClusterState::Running);
        assert_eq!(d.stops.load(Ordering::SeqCst), 0);
        assert_eq!(d.starts.load(Ordering::SeqCst), 1);
    }
}
