//! LISTEN works across stops: a parked session that listens is attached again whenever the
//! database wakes, before the statement that woke it runs, so no notification is missed.

use std::time::Duration;

use torpor_tests::harness::{Opts, SLOW, TestEnv};

async fn next_notification(pg: &mut torpor_tests::harness::Pg) -> tokio_postgres::Notification {
    tokio::time::timeout(SLOW, pg.notifications.recv())
        .await
        .expect("no notification")
        .expect("connection ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_hear_the_notify_that_woke_the_database() {
    let env = TestEnv::default().await;
    let mut listeners = env.connect_each(5, |_| "LISTEN orders".into()).await;
    env.sleep_ok().await;
    assert_eq!(env.cluster_status().await["sessions"]["parked"], 5);

    // A new client connects while the database sleeps; its NOTIFY wakes it.
    let sender = env.connect().await;
    sender.exec("NOTIFY orders, 'first'").await;
    for l in &mut listeners {
        let n = next_notification(l).await;
        assert_eq!((n.channel(), n.payload()), ("orders", "first"));
    }
    // Later notifications reach them too, and they can still talk.
    sender.exec("SELECT pg_notify('orders', 'second')").await;
    for l in &mut listeners {
        assert_eq!(next_notification(l).await.payload(), "second");
        assert_eq!(l.text("SELECT 2").await, "2");
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_for_any_reason_attaches_the_listeners_at_once() {
    let (env, mut listener) = TestEnv::pg_session(Opts::default()).await;
    listener.exec("LISTEN jobs").await;
    let quiet = env.connect().await;
    quiet.exec("SET application_name = 'not listening'").await;
    env.sleep_ok().await;

    env.wake_ok().await;
    // The listener is attached without its client saying anything; the other is not.
    let c = env.cluster_status().await;
    assert_eq!(c["sessions"]["attached"], 1, "{c}");
    assert_eq!(c["sessions"]["parked"], 1, "{c}");

    // A NOTIFY from the parked session wakes nothing new and reaches the listener.
    quiet.exec("NOTIFY jobs, 'ready'").await;
    assert_eq!(next_notification(&mut listener).await.payload(), "ready");
    // UNLISTEN is state too: after the next stop the session no longer comes back by itself.
    listener.exec("UNLISTEN jobs").await;
    env.sleep_ok().await;
    env.wake().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.cluster_status().await["sessions"]["attached"], 0);
    env.shutdown().await;
}
