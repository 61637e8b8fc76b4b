//! The lifecycle alone, with a driver that only counts: the real process driver has its
//! own tests against real postgres.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::driver::{BackendState, DriverStatus};

#[derive(Default)]
struct Counting {
    starts: AtomicU32,
    stops: AtomicU32,
    running: AtomicBool,
    /// The backend ended on its own (the test says so).
    exited: AtomicBool,
    /// `stop` fails, leaving the backend as it is.
    stop_fails: AtomicBool,
    /// This many of the next starts fail.
    starts_failing: AtomicU32,
    frozen: AtomicBool,
    freezes: AtomicU32,
    thaws: AtomicU32,
    /// `thaw` fails, leaving the backend frozen.
    thaw_fails: AtomicBool,
    /// `can_freeze` says no.
    no_freezer: AtomicBool,
}

#[async_trait]
impl Driver for Arc<Counting> {
    async fn prepare(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn start(&self) -> Result<BackendInfo, DriverError> {
        // Long enough that concurrent wakes overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let failing = self.starts_failing.load(Ordering::SeqCst);
        if failing > 0 {
            self.starts_failing.store(failing - 1, Ordering::SeqCst);
            return Err(DriverError::Timeout("not ready".into()));
        }
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        self.exited.store(false, Ordering::SeqCst);
        Ok(BackendInfo {
            addr: "127.0.0.1:1"
                .parse()
                .map_err(|_| DriverError::Failed("addr".into()))?,
            socket: None,
        })
    }
    fn can_freeze(&self) -> Result<(), String> {
        if self.no_freezer.load(Ordering::SeqCst) {
            return Err("no freezer here".into());
        }
        Ok(())
    }
    async fn freeze(&self) -> Result<(), DriverError> {
        assert!(
            self.running.load(Ordering::SeqCst),
            "froze a stopped backend"
        );
        self.freezes.fetch_add(1, Ordering::SeqCst);
        self.frozen.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn thaw(&self) -> Result<(), DriverError> {
        if self.thaw_fails.load(Ordering::SeqCst) {
            return Err(DriverError::Failed("thaw refused".into()));
        }
        if self.frozen.swap(false, Ordering::SeqCst) {
            self.thaws.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    async fn stop(&self) -> Result<(), DriverError> {
        assert!(
            !self.frozen.load(Ordering::SeqCst),
            "stopped a frozen backend"
        );
        if self.stop_fails.load(Ordering::SeqCst) {
            return Err(DriverError::Failed("stop refused".into()));
        }
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }
    async fn status(&self) -> DriverStatus {
        let state = match (
            self.running.load(Ordering::SeqCst),
            self.exited.load(Ordering::SeqCst),
        ) {
            (false, _) => BackendState::Stopped,
            (true, false) => BackendState::Running,
            (true, true) => BackendState::Exited,
        };
        DriverStatus {
            state,
            details: serde_json::json!({ "starts": self.starts.load(Ordering::SeqCst) }),
        }
    }
    async fn exited(&self) -> String {
        while !(self.running.load(Ordering::SeqCst) && self.exited.load(Ordering::SeqCst)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        "killed".into()
    }
}

fn cluster(idle: Duration) -> (Arc<Cluster>, Arc<Counting>) {
    let d = Arc::new(Counting::default());
    (Arc::new(Cluster::new("t", idle, Box::new(d.clone()))), d)
}

/// A cluster with no idle timeout to speak of, its backend started.
async fn running() -> (Arc<Cluster>, Arc<Counting>) {
    let (c, d) = cluster(Duration::from_secs(3600));
    c.wake(None).await.unwrap();
    (c, d)
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
    let (c, d) = running().await;
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
    let (c, d) = running().await;
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
    let (c, d) = running().await;
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
    let (c, d) = running().await;
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

/// Starts a drain and returns once it is in phase 1, where a participant slow to checkpoint
/// keeps it for 200 ms; the drain's result comes from the returned task.
async fn drain_in_phase_one(c: &Arc<Cluster>) -> tokio::task::JoinHandle<Result<(), SleepError>> {
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
    sleeper
}

#[tokio::test]
async fn wake_during_phase_one_aborts_the_drain() {
    let (c, d) = running().await;
    let sleeper = drain_in_phase_one(&c).await;
    assert!(c.wake(None).await.is_ok());
    assert!(matches!(
        sleeper.await.unwrap(),
        Err(SleepError::Blocked(_))
    ));
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.stops.load(Ordering::SeqCst), 0);
    assert_eq!(d.starts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_backend_that_exited_is_started_again_at_the_next_wake() {
    let (c, d) = running().await;
    c.wake(None).await.unwrap();
    assert_eq!(
        d.starts.load(Ordering::SeqCst),
        1,
        "a running backend is handed out"
    );
    assert!(c.backend_status().await.is_running());

    d.exited.store(true, Ordering::SeqCst);
    let status = c.backend_status().await;
    assert_eq!(status.state, BackendState::Exited);
    assert_eq!(status.details["starts"], 1);
    c.wake(None).await.unwrap();
    assert_eq!(d.starts.load(Ordering::SeqCst), 2);
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(c.stats.wakes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_backend_that_exits_sends_the_cluster_to_standby_at_once() {
    let (c, d) = running().await;
    let watcher = tokio::spawn({
        let c = c.clone();
        async move { c.watch_backend().await }
    });
    // A stop asked for is no exit.
    c.sleep().await.unwrap();
    assert_eq!(c.last_error(), None);
    c.wake(None).await.unwrap();
    d.exited.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.state() != ClusterState::Standby {
        assert!(Instant::now() < deadline, "still {:?}", c.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.last_error().as_deref(), Some("killed"));
    assert!(c.running_backend().is_none());
    // The next start clears it.
    c.wake(None).await.unwrap();
    assert_eq!(c.last_error(), None);
    watcher.abort();
}

#[tokio::test]
async fn a_failed_stop_keeps_the_cluster_up_only_while_the_backend_runs() {
    let (c, d) = running().await;
    d.stop_fails.store(true, Ordering::SeqCst);
    assert!(matches!(c.sleep().await, Err(SleepError::Driver(_))));
    assert_eq!(c.state(), ClusterState::Running);
    assert!(c.running_backend().is_some());

    // Gone anyway: standby, and the next wake starts a fresh one.
    d.exited.store(true, Ordering::SeqCst);
    assert!(matches!(c.sleep().await, Err(SleepError::Driver(_))));
    assert_eq!(c.state(), ClusterState::Standby);
    assert!(c.running_backend().is_none());
    d.stop_fails.store(false, Ordering::SeqCst);
    c.wake(None).await.unwrap();
    assert_eq!(d.starts.load(Ordering::SeqCst), 2);
}

/// A histogram that keeps every value it is given.
#[derive(Default)]
struct Samples(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl Samples {
    fn values(&self) -> Vec<f64> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_wake_that_starts_the_backend_records_its_latency_under_its_cause() {
    let d = Arc::new(Counting::default());
    let client = Arc::new(Samples::default());
    let admin = Arc::new(Samples::default());
    let (c_hist, a_hist) = (client.clone(), admin.clone());
    let c = Cluster::new("t", Duration::from_secs(3600), Box::new(d.clone())).with_wake_histograms(
        move |cause| match cause {
            WakeCause::Client => metrics::Histogram::from_arc(c_hist.clone()),
            WakeCause::Admin => metrics::Histogram::from_arc(a_hist.clone()),
            WakeCause::Metric | WakeCause::Schedule => metrics::Histogram::noop(),
        },
    );
    c.wake_for(WakeCause::Admin, None).await.unwrap();
    // Already running: nothing started, nothing to record.
    c.wake(None).await.unwrap();
    let a = admin.values();
    assert_eq!(a.len(), 1, "{a:?}");
    // The counting driver takes 50 ms to start.
    assert!((0.05..5.0).contains(&a[0]), "{a:?}");
    assert!(client.values().is_empty(), "{:?}", client.values());

    c.sleep().await.unwrap();
    c.wake(None).await.unwrap();
    let cl = client.values();
    assert_eq!(cl.len(), 1, "{cl:?}");
    assert!((0.05..5.0).contains(&cl[0]), "{cl:?}");
    assert_eq!(admin.values().len(), 1);
}

#[tokio::test]
async fn a_wake_with_a_deadline_tries_a_failed_start_again_until_then() {
    let (c, d) = cluster(Duration::from_secs(3600));
    d.starts_failing.store(2, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    c.wake_until(deadline, None).await.unwrap();
    assert_eq!(d.starts.load(Ordering::SeqCst), 1);
    assert_eq!(c.state(), ClusterState::Running);

    c.sleep().await.unwrap();
    d.starts_failing.store(u32::MAX, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let e = c.wake_until(deadline, None).await.unwrap_err();
    assert!(matches!(e, DriverError::Timeout(_)), "{e}");
    assert!(tokio::time::Instant::now() >= deadline);
    assert_eq!(c.state(), ClusterState::Standby);
    // A wake without a deadline tries once, as before.
    assert!(c.wake(None).await.is_err());
}

/// A cluster that freezes after `freeze` idle and drains after `idle`, its idle loop running.
fn freezing(
    freeze: Duration,
    idle: Duration,
) -> (Arc<Cluster>, Arc<Counting>, tokio::task::JoinHandle<()>) {
    let d = Arc::new(Counting::default());
    let c = Arc::new(Cluster::new("t", idle, Box::new(d.clone())).with_freeze_after(Some(freeze)));
    let looper = {
        let c = c.clone();
        tokio::spawn(async move { c.idle_loop().await })
    };
    (c, d, looper)
}

/// The cluster shows `frozen` from the moment a freeze is decided; the driver has frozen the
/// backend once the freeze is counted.
async fn wait_frozen(c: &Cluster) {
    let before = c.stats.freezes.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(c.state() == ClusterState::Frozen && c.stats.freezes.load(Ordering::SeqCst) > before) {
        assert!(Instant::now() < deadline, "never frozen: {:?}", c.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for_state(c: &Cluster, want: ClusterState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.state() != want {
        assert!(Instant::now() < deadline, "never {want:?}: {:?}", c.state());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_idle_cluster_freezes_with_its_sessions_checkpointed_and_attached() {
    let (c, d, looper) = freezing(Duration::from_millis(100), Duration::from_secs(3600));
    c.wake(None).await.unwrap();
    let mut seen = participant(&c, 1, CheckpointReply::Ready);
    wait_frozen(&c).await;
    assert!(c.is_frozen());
    assert_eq!(d.freezes.load(Ordering::SeqCst), 1);
    assert_eq!(seen.recv().await, Some("checkpoint"));
    assert_eq!(
        seen.recv().await,
        Some("abort"),
        "the session stays attached"
    );
    assert_eq!(c.attached_count(), 1);
    assert_eq!(
        c.running_backend(),
        None,
        "nobody connects to a frozen backend"
    );

    // A wake thaws instead of starting.
    c.wake(None).await.unwrap();
    assert_eq!(c.state(), ClusterState::Running);
    assert!(!c.is_frozen());
    assert_eq!(d.thaws.load(Ordering::SeqCst), 1);
    assert_eq!(d.starts.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats.freezes.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats.thaws.load(Ordering::SeqCst), 1);

    // Idle again: frozen again, and a session's own thaw works as well.
    wait_frozen(&c).await;
    c.thaw().await.unwrap();
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.thaws.load(Ordering::SeqCst), 2);
    looper.abort();
}

#[tokio::test]
async fn a_frozen_cluster_is_thawed_then_drained_at_the_idle_timeout() {
    let (c, d, looper) = freezing(Duration::from_millis(50), Duration::from_millis(600));
    c.wake(None).await.unwrap();
    let mut seen = participant(&c, 1, CheckpointReply::Ready);
    wait_frozen(&c).await;
    wait_for_state(&c, ClusterState::Standby).await;
    // The Counting driver refuses to stop a frozen backend.
    assert_eq!(d.thaws.load(Ordering::SeqCst), 1);
    assert_eq!(d.stops.load(Ordering::SeqCst), 1);
    assert!(!c.is_frozen());
    let got: Vec<_> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    assert_eq!(got, ["checkpoint", "abort", "checkpoint", "commit"]);
    looper.abort();
}

#[tokio::test]
async fn nothing_in_flight_is_frozen() {
    let (c, d, looper) = freezing(Duration::from_millis(50), Duration::from_secs(3600));
    c.wake(None).await.unwrap();
    c.busy_start();
    c.probe_start();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.state(),
        ClusterState::Running,
        "a busy session keeps it thawed"
    );
    c.busy_end();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.state(),
        ClusterState::Running,
        "so does a probe in flight"
    );
    assert_eq!(d.freezes.load(Ordering::SeqCst), 0);
    c.probe_end();
    wait_frozen(&c).await;
    // A blocker refuses the freeze's checkpoint: not frozen, and not tried again until
    // something happens.
    c.thaw().await.unwrap();
    let _seen = participant(&c, 1, CheckpointReply::Blocked("a WITH HOLD cursor".into()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.freezes.load(Ordering::SeqCst), 1);
    looper.abort();
}

#[tokio::test]
async fn a_thaw_that_fails_keeps_the_cluster_frozen_and_says_so() {
    let (c, d, looper) = freezing(Duration::from_millis(50), Duration::from_secs(3600));
    c.wake(None).await.unwrap();
    wait_frozen(&c).await;
    d.thaw_fails.store(true, Ordering::SeqCst);
    let e = c.wake(None).await.unwrap_err();
    assert!(e.to_string().contains("thaw refused"), "{e}");
    assert_eq!(c.state(), ClusterState::Frozen);
    assert!(c.is_frozen());
    // A client that waits gets it once the thaw works.
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.wake_until(tokio::time::Instant::now() + Duration::from_secs(30), None)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.thaw_fails.store(false, Ordering::SeqCst);
    waiter.await.unwrap().unwrap();
    assert_eq!(d.starts.load(Ordering::SeqCst), 1);
    looper.abort();
}

#[tokio::test]
async fn a_driver_that_cant_freeze_only_stops() {
    let d = Arc::new(Counting::default());
    d.no_freezer.store(true, Ordering::SeqCst);
    let c = Arc::new(
        Cluster::new("t", Duration::from_millis(300), Box::new(d.clone()))
            .with_freeze_after(Some(Duration::from_millis(20))),
    );
    assert_eq!(c.freeze_after(), None);
    let looper = {
        let c = c.clone();
        tokio::spawn(async move { c.idle_loop().await })
    };
    c.wake(None).await.unwrap();
    wait_for_state(&c, ClusterState::Standby).await;
    assert_eq!(d.freezes.load(Ordering::SeqCst), 0);
    assert_eq!(d.stops.load(Ordering::SeqCst), 1);
    looper.abort();
}

#[tokio::test]
async fn a_hold_refuses_a_drain_with_its_reason_until_released() {
    let (c, d) = running().await;
    let hold = c.hold("metric backup_running=1 > 0");
    match c.sleep().await {
        Err(SleepError::Blocked(b)) => assert_eq!(b, ["metric backup_running=1 > 0"]),
        other => panic!("expected a refusal, got {other:?}"),
    }
    hold.set_reason("metric backup_running=2 > 0");
    assert_eq!(c.holds(), ["metric backup_running=2 > 0"]);
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.stops.load(Ordering::SeqCst), 0);
    drop(hold);
    assert!(c.holds().is_empty());
    c.sleep().await.unwrap();
    assert_eq!(d.stops.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_idle_loop_waits_for_a_hold_then_idle_timeout_more() {
    let idle = Duration::from_millis(800);
    let (c, d) = cluster(idle);
    let looper = {
        let c = c.clone();
        tokio::spawn(async move { c.idle_loop().await })
    };
    c.wake(None).await.unwrap();
    let hold = c.hold("wake metric queue=3 > 0");
    tokio::time::sleep(idle * 3).await;
    assert_eq!(c.state(), ClusterState::Running, "the hold keeps it up");
    assert!(c.is_active());
    let released = Instant::now();
    drop(hold);
    let deadline = released + Duration::from_secs(30);
    while c.state() != ClusterState::Standby {
        assert!(Instant::now() < deadline, "never went idle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released.elapsed() >= idle,
        "stopped {:?} after the release, before idle_timeout",
        released.elapsed()
    );
    assert_eq!(d.stops.load(Ordering::SeqCst), 1);
    assert!(!c.is_active());
    looper.abort();
}

#[tokio::test]
async fn a_hold_taken_during_phase_one_refuses_the_drain() {
    let (c, d) = running().await;
    let sleeper = drain_in_phase_one(&c).await;
    let _hold = c.hold("metric export_running=1 > 0");
    match sleeper.await.unwrap() {
        Err(SleepError::Blocked(b)) => assert_eq!(b, ["metric export_running=1 > 0"]),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.stops.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn active_means_up_and_not_yet_idle_for_idle_timeout() {
    let (c, _) = cluster(Duration::from_millis(300));
    assert!(!c.is_active(), "standby");
    c.wake(None).await.unwrap();
    assert!(c.is_active(), "just woken");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!c.is_active(), "idle for idle_timeout");
    c.busy_start();
    assert!(c.is_active(), "a busy session");
    c.busy_end();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let hold = c.hold("wake_at");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.is_active(), "held");
    drop(hold);
    assert!(c.is_active(), "just released");
}

mod check;
