//! `/metrics` after a real lifecycle: the histograms of wakes (by cause), checkpoints, snapshot
//! puts and gets and replays count what happened, the probes answered while asleep are counted
//! by protocol, and the older series keep their names, types and labels.

use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mysql::{exec, text};

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

/// What every cluster shows, whatever its protocol, after: a wake by a client, a state change,
/// a drain that saved it, a probe answered while asleep, a wake by a client that restored it,
/// a second drain and a wake by the admin API.
fn check_lifecycle(text: &str, cluster: &str, protocol: &str) {
    let c = format!("cluster=\"{cluster}\"");
    for kind in [
        "torpor_wake_seconds histogram",
        "torpor_checkpoint_seconds histogram",
        "torpor_snapshot_put_seconds histogram",
        "torpor_snapshot_get_seconds histogram",
        "torpor_snapshot_bytes histogram",
        "torpor_replay_seconds histogram",
        "torpor_probes_answered_total counter",
        "torpor_cluster_up gauge",
        "torpor_cluster_state gauge",
        "torpor_cluster_active gauge",
        "torpor_sessions gauge",
        "torpor_busy_sessions gauge",
        "torpor_drain_blockers gauge",
        "torpor_wakes_total counter",
        "torpor_wake_failures_total counter",
        "torpor_drains_total counter",
        "torpor_drains_refused_total counter",
        "torpor_drains_aborted_total counter",
        "torpor_local_answers_total counter",
        "torpor_idle_timeout_seconds gauge",
    ] {
        let line = format!("# TYPE {kind}");
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    assert_eq!(
        must(
            text,
            &format!("torpor_wake_seconds_count{{{c},cause=\"client\"}}")
        ),
        2.0
    );
    assert_eq!(
        must(
            text,
            &format!("torpor_wake_seconds_count{{{c},cause=\"admin\"}}")
        ),
        1.0
    );
    // Every wake took some time, and less than the slowest bucket but one.
    let sum = must(
        text,
        &format!("torpor_wake_seconds_sum{{{c},cause=\"client\"}}"),
    );
    assert!(sum > 0.0 && sum < 20.0, "{sum}");
    assert_eq!(
        must(
            text,
            &format!("torpor_wake_seconds_bucket{{{c},cause=\"client\",le=\"+Inf\"}}")
        ),
        2.0
    );
    for name in [
        "torpor_checkpoint_seconds",
        "torpor_snapshot_put_seconds",
        "torpor_snapshot_bytes",
        "torpor_snapshot_get_seconds",
        "torpor_replay_seconds",
    ] {
        let n = must(text, &format!("{name}_count{{{c}}}"));
        assert!(n >= 1.0, "{name}_count {n}");
        let sum = must(text, &format!("{name}_sum{{{c}}}"));
        assert!(sum > 0.0, "{name}_sum {sum}");
    }
    // An envelope alone is more than this; a session's settings are far less than a megabyte.
    let bytes = must(text, &format!("torpor_snapshot_bytes_sum{{{c}}}"))
        / must(text, &format!("torpor_snapshot_bytes_count{{{c}}}"));
    assert!((16.0..1_048_576.0).contains(&bytes), "{bytes}");
    assert!(
        must(
            text,
            &format!("torpor_probes_answered_total{{{c},protocol=\"{protocol}\"}}")
        ) >= 1.0
    );

    // The older series, under their old names and labels.
    assert_eq!(must(text, &format!("torpor_wakes_total{{{c}}}")), 3.0);
    assert_eq!(
        must(text, &format!("torpor_wake_failures_total{{{c}}}")),
        0.0
    );
    assert_eq!(must(text, &format!("torpor_drains_total{{{c}}}")), 2.0);
    assert_eq!(
        must(text, &format!("torpor_drains_refused_total{{{c}}}")),
        0.0
    );
    assert!(must(text, &format!("torpor_local_answers_total{{{c}}}")) >= 1.0);
    assert_eq!(must(text, &format!("torpor_cluster_up{{{c}}}")), 1.0);
    assert_eq!(
        must(
            text,
            &format!("torpor_cluster_state{{{c},state=\"running\"}}")
        ),
        1.0
    );
    assert_eq!(
        must(
            text,
            &format!("torpor_cluster_state{{{c},state=\"standby\"}}")
        ),
        0.0
    );
    assert_eq!(
        must(
            text,
            &format!("torpor_sessions{{{c},attachment=\"parked\"}}")
        ),
        1.0
    );
    assert_eq!(
        must(
            text,
            &format!("torpor_sessions{{{c},attachment=\"attached\"}}")
        ),
        0.0
    );
    assert_eq!(must(text, &format!("torpor_busy_sessions{{{c}}}")), 0.0);
    assert_eq!(must(text, &format!("torpor_drain_blockers{{{c}}}")), 0.0);
    assert_eq!(
        must(text, &format!("torpor_idle_timeout_seconds{{{c}}}")),
        3600.0
    );
}

/// The first drain, once torpor knows the catalog (so it answers probes itself); the wake
/// count after it.
async fn first_drain(env: &TestEnv) -> f64 {
    env.wait_for_catalog().await;
    env.sleep_ok().await;
    env.metric("torpor_wakes_total").await
}

/// The second drain and the admin wake, then what /metrics shows of it all; `catalog` is the
/// gauge of the protocol's settings catalog.
async fn finish(env: TestEnv, protocol: &str, catalog: &str) {
    env.sleep_ok().await;
    env.wake_ok().await;
    let text = env.metrics().await;
    check_lifecycle(&text, &env.cluster, protocol);
    assert!(env.metric(catalog).await > 100.0, "{text}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lifecycle_shows_in_the_histograms() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    s.exec("SET myapp.who = 'metrics'").await;
    let wakes = first_drain(&env).await;
    assert_eq!(s.text("SELECT 1").await, "1");
    assert_eq!(
        env.metric("torpor_wakes_total").await,
        wakes,
        "a probe woke it"
    );
    assert_eq!(
        s.text("SELECT current_setting('myapp.who')").await,
        "metrics"
    );
    finish(env, "postgres", "torpor_pg_catalog_settings").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lifecycle_shows_in_the_histograms() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "SET @who = 'metrics'").await;
    let wakes = first_drain(&env).await;
    c.ping().await.unwrap();
    assert_eq!(
        env.metric("torpor_wakes_total").await,
        wakes,
        "a ping woke it"
    );
    assert_eq!(text(&mut c, "SELECT @who").await, "metrics");
    finish(env, "mysql", "torpor_mysql_catalog_variables").await;
}
