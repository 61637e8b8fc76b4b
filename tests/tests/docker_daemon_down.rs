//! `driver = "docker"` with its daemon down: the waking client gets a clear error once
//! `[proxy] wake_timeout` has passed (torpor retries meanwhile, since a daemon comes back), the
//! session stays parked, and its next query wakes the database once the daemon is back. It
//! stops its daemon, so it has one of its own.

use std::time::Instant;

use torpor_tests::docker::{self, Backend};
use torpor_tests::harness::{Opts, SLOW, TestConfig, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_is_down_reaches_the_client_and_the_session_waits_for_it() {
    let daemon = docker::own_daemon().await;
    let mut cfg = TestConfig::new(&Opts::default().proxy("wake_timeout = \"3s\"")).await;
    let backend = Backend::new(&daemon, &cfg).await;
    backend.configure(&daemon, &mut cfg);
    let env = TestEnv::start_config(cfg).await;
    let s = env.connect().await;
    s.exec("SET application_name = 'outlives the daemon'").await;
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(daemon.running(&backend.container).await, Some(false));

    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.stop()).await.unwrap();
    let asked = Instant::now();
    let e = tokio::time::timeout(SLOW, s.simple_query("SHOW application_name"))
        .await
        .expect("an answer in time")
        .expect_err("no daemon, no wake");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"));
    eprintln!("error after {:?}: {msg}", asked.elapsed());
    assert!(
        msg.contains(&format!(
            "the Docker daemon at {} does not answer",
            daemon.host
        )),
        "{msg}"
    );
    assert!(msg.contains("the session is kept"), "{msg}");

    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.restart())
        .await
        .unwrap();
    assert_eq!(
        s.text("SHOW application_name").await,
        "outlives the daemon",
        "the same session, woken once the daemon is back"
    );
    assert_eq!(daemon.running(&backend.container).await, Some(true));
    env.shutdown_after(s).await;
}
