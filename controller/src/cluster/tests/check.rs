//! The drain check: what it refuses, when it is asked, and that the idle loop asks again on its
//! own.

use std::sync::Mutex;

use super::*;
use crate::cluster::DrainCheck;

/// A check that answers what the test says, and counts how often it was asked.
#[derive(Default)]
struct Scripted {
    answer: Mutex<Option<String>>,
    asked: AtomicU32,
}

impl Scripted {
    fn say(&self, answer: Option<&str>) {
        *self.answer.lock().unwrap() = answer.map(str::to_string);
    }

    fn asked(&self) -> u32 {
        self.asked.load(Ordering::SeqCst)
    }
}

struct Shared(Arc<Scripted>);

impl DrainCheck for Shared {
    fn check(&self) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            self.0.asked.fetch_add(1, Ordering::SeqCst);
            self.0.answer.lock().unwrap().clone()
        })
    }
}

fn checked(c: &Cluster, answer: Option<&str>) -> Arc<Scripted> {
    let s = Arc::new(Scripted::default());
    s.say(answer);
    c.set_drain_check(Box::new(Shared(s.clone())));
    s
}

#[tokio::test]
async fn a_refusing_check_stops_the_drain_before_any_session_is_asked() {
    let (c, d) = running().await;
    let check = checked(&c, Some("busy_query returned 1"));
    let mut seen = participant(&c, 1, CheckpointReply::Ready);
    match c.sleep().await {
        Err(SleepError::DatabaseBusy(why)) => assert_eq!(why, "busy_query returned 1"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.stops.load(Ordering::SeqCst), 0);
    assert_eq!(c.stats.drains_refused.load(Ordering::SeqCst), 1);
    assert!(seen.try_recv().is_err(), "a session was asked");
    assert_eq!(
        c.drain_check_blocker().as_deref(),
        Some("busy_query returned 1")
    );

    check.say(None);
    c.sleep().await.unwrap();
    assert_eq!(c.state(), ClusterState::Standby);
    assert_eq!(c.drain_check_blocker(), None);
    assert_eq!(seen.recv().await, Some("checkpoint"));
    assert_eq!(check.asked(), 2);
}

#[tokio::test]
async fn the_check_is_not_asked_while_a_session_is_busy_or_in_standby() {
    let (c, _) = running().await;
    let check = checked(&c, Some("at work"));
    c.busy_start();
    assert!(matches!(c.sleep().await, Err(SleepError::Blocked(_))));
    c.busy_end();
    assert_eq!(check.asked(), 0);
    check.say(None);
    c.sleep().await.unwrap();
    c.sleep().await.unwrap();
    assert_eq!(check.asked(), 1, "asked in standby");
}

#[tokio::test]
async fn a_stop_forgets_the_reason() {
    let (c, d) = running().await;
    let _check = checked(&c, Some("at work"));
    assert!(c.sleep().await.is_err());
    assert!(c.drain_check_blocker().is_some());
    let watcher = {
        let c = c.clone();
        tokio::spawn(async move { c.watch_backend().await })
    };
    d.exited.store(true, Ordering::SeqCst);
    wait_for_state(&c, ClusterState::Standby).await;
    assert_eq!(c.drain_check_blocker(), None);
    watcher.abort();
}

/// No client activity tells the idle loop when the database's own work ends: it asks again on
/// its own, and stops the backend once the check finds nothing.
#[tokio::test]
async fn the_idle_loop_asks_again_until_the_check_lets_it_drain() {
    let (c, d) = cluster(Duration::from_millis(100));
    let check = checked(&c, Some("at work"));
    let looper = {
        let c = c.clone();
        tokio::spawn(async move { c.idle_loop().await })
    };
    c.wake(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while check.asked() < 2 {
        assert!(Instant::now() < deadline, "asked {} times", check.asked());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.state(), ClusterState::Running);
    assert_eq!(d.stops.load(Ordering::SeqCst), 0);
    check.say(None);
    wait_for_state(&c, ClusterState::Standby).await;
    assert_eq!(d.stops.load(Ordering::SeqCst), 1);
    looper.abort();
}

/// A frozen database can't finish its own work either: the check refuses a freeze too, and the
/// idle loop tries the freeze again once it finds nothing.
#[tokio::test]
async fn a_refusing_check_holds_off_a_freeze_too() {
    let (c, d, looper) = freezing(Duration::from_millis(50), Duration::from_secs(3600));
    let check = checked(&c, Some("at work"));
    c.wake(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while check.asked() < 2 {
        assert!(Instant::now() < deadline, "asked {} times", check.asked());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.freezes.load(Ordering::SeqCst), 0);
    assert_eq!(c.state(), ClusterState::Running);
    check.say(None);
    wait_frozen(&c).await;
    looper.abort();
}

/// However long `idle_timeout` is, a refused cluster is asked again within seconds: the stop
/// follows the end of the database's own work closely.
#[test]
fn the_check_is_asked_again_within_seconds_of_any_idle_timeout() {
    for (idle, retry) in [(100, 1000), (3000, 3000), (3_600_000, 5000)] {
        let (c, _) = cluster(Duration::from_millis(idle));
        assert_eq!(c.check_retry(), Duration::from_millis(retry), "{idle} ms");
    }
}
