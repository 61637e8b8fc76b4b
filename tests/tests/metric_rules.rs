//! Idle and wake decided by metrics and by schedule: `idle_metric` keeps a database up while a
//! real exporter's value is above its threshold (or can't be read, or has no such series),
//! `wake_metric` wakes a standby database with no client connected, and `wake_at` wakes it at a
//! time of a clock the test sets. What each decided shows in `/api/clusters` blockers, the
//! metrics and the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use torpor::rules::Clock;
use torpor_tests::binary;
use torpor_tests::exporter::Exporter;
use torpor_tests::harness::{Opts, SLOW, TestConfig, TestEnv};
use torpor_tests::ports::free_port;

/// A rule's inline table: `kind = [{ url, name, above = 0, interval = "200ms", … }]`.
fn rule(kind: &str, url: &str, name: &str, more: &str) -> String {
    format!(
        r#"{kind} = [{{ url = "{url}", name = "{name}", above = 0, interval = "200ms"{more} }}]"#
    )
}

fn gauge(name: &str, value: &str) -> String {
    format!("# HELP {name} a test gauge\n# TYPE {name} gauge\n{name} {value}\n")
}

/// An exporter serving the gauge `name` at `value`, and a torpor (idle_timeout 300ms) with one
/// rule of `kind` on it.
async fn one_rule(kind: &str, name: &str, value: &str) -> (Exporter, TestEnv) {
    let exporter = Exporter::start(&gauge(name, value)).await;
    let opts =
        Opts::default()
            .idle_after("300ms")
            .cluster_setting(&rule(kind, &exporter.url(), name, ""));
    (exporter, TestEnv::start(opts).await)
}

/// The cluster's blockers as strings.
fn blockers(c: &Value) -> Vec<String> {
    c["blockers"]
        .as_array()
        .unwrap_or_else(|| panic!("no blockers in {c}"))
        .iter()
        .map(|b| b.as_str().unwrap_or_default().to_string())
        .collect()
}

fn has_blocker(c: &Value, start: &str) -> bool {
    blockers(c).iter().any(|b| b.starts_with(start))
}

/// The database runs `pid` for `how_long`, checked every 100 ms.
async fn stays_up(env: &TestEnv, pid: u32, how_long: Duration) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        let c = env.cluster_status().await;
        assert_eq!(c["state"], "running", "{c}");
        assert_eq!(c["backend_pid"].as_u64(), Some(u64::from(pid)), "{c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the backend to run, woken for `cause` (once, by the wake histogram): its pid.
async fn woken_by(env: &TestEnv, cause: &str) -> u32 {
    let c = env
        .wait_for(SLOW, &format!("a wake for {cause}"), |c| {
            c["backend_pid"].is_u64()
        })
        .await;
    let series = format!("torpor_wake_seconds_count{{cluster=\"pg\",cause=\"{cause}\"}}");
    metric_is(env, &series, 1.0).await;
    c["backend_pid"].as_u64().unwrap() as u32
}

/// `series` (name and labels as /metrics writes them) is in /metrics with `value`.
async fn metric_is(env: &TestEnv, series: &str, value: f64) {
    let text = env.metrics().await;
    let found = text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .parse::<f64>()
            .ok()
    });
    assert_eq!(found, Some(value), "{series} in:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_metric_above_its_threshold_keeps_the_database_up_both_ways() {
    let (exporter, env) = one_rule("idle_metric", "backup_running", "1").await;
    let s = env.connect().await;
    s.text("SELECT pg_backend_pid()").await;
    let pid = env.running_pid().await;

    // Many idle timeouts with a quiet client: the backup holds the database up.
    stays_up(&env, pid, Duration::from_secs(2)).await;
    let c = env.cluster_status().await;
    assert!(has_blocker(&c, "metric backup_running=1 > 0"), "{c}");
    assert_eq!(c["active"], true, "{c}");
    env.expect_refused("metric backup_running=1 > 0", pid).await;
    metric_is(&env, "torpor_cluster_active{cluster=\"pg\"}", 1.0).await;
    metric_is(
        &env,
        "torpor_drain_blocker_info{cluster=\"pg\",blocker=\"metric backup_running=1 > 0\"}",
        1.0,
    )
    .await;

    // Below: the database stops after idle_timeout.
    exporter.set(&gauge("backup_running", "0"));
    env.wait_for_idle_stop(pid).await;
    let c = env.cluster_status().await;
    assert_eq!(blockers(&c), Vec::<String>::new(), "{c}");
    assert_eq!(c["active"], false, "{c}");
    metric_is(&env, "torpor_cluster_active{cluster=\"pg\"}", 0.0).await;

    // Above again while the database runs: held again, with the new value.
    exporter.set(&gauge("backup_running", "2"));
    assert_eq!(s.text("SELECT 40 + 2").await, "42");
    let pid = env.running_pid().await;
    stays_up(&env, pid, Duration::from_secs(2)).await;
    assert!(
        has_blocker(&env.cluster_status().await, "metric backup_running=2 > 0"),
        "{}",
        env.cluster_status().await
    );
    exporter.set(&gauge("backup_running", "0"));
    env.wait_for_idle_stop(pid).await;
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_metric_that_cant_be_read_or_isnt_there_keeps_the_database_up() {
    let exporter = Exporter::start("backup_running{job=\"nightly\"} 0\n").await;
    let down = format!("http://127.0.0.1:{}/metrics", free_port());
    let opts = Opts::default()
        .idle_after("300ms")
        .cluster_setting(&rule("idle_metric", &down, "backup_running", "").replace(" }]", " },"))
        .cluster_setting(
            &rule(
                "idle_metric",
                &exporter.url(),
                "backup_running",
                r#", labels = { job = "hourly" }"#,
            )
            .replace("idle_metric = [", ""),
        );
    let env = TestEnv::start(opts).await;
    env.wake_ok().await;
    let pid = env.running_pid().await;
    let unreadable = format!("metric backup_running: cannot read {down}: ");
    let absent = format!(
        "metric backup_running{{job=\"hourly\"}}: no such series at {}",
        exporter.url()
    );
    env.wait_for(SLOW, "both rules read", |c| {
        has_blocker(c, &unreadable) && has_blocker(c, &absent)
    })
    .await;
    stays_up(&env, pid, Duration::from_secs(2)).await;
    env.expect_refused(&unreadable, pid).await;
    // The absent series' reason has quotes, which the JSON of the 409 escapes.
    let body = env.sleep_refused().await;
    assert!(has_blocker(&body, &absent), "{body}");
    let c = env.cluster_status().await;
    assert!(
        blockers(&c)
            .iter()
            .any(|b| b.starts_with(&unreadable) && b.to_lowercase().contains("refused")),
        "the error says why: {c}"
    );

    // The series with the label appears, below the threshold: only the unreadable one holds.
    exporter.set("backup_running{job=\"nightly\"} 0\nbackup_running{job=\"hourly\"} 0\n");
    let c = env
        .wait_for(SLOW, "the hourly series read", |c| !has_blocker(c, &absent))
        .await;
    assert_eq!(blockers(&c).len(), 1, "{c}");
    assert!(has_blocker(&c, &unreadable), "{c}");
    // The exporter goes down: its rule holds again, saying so.
    exporter.stop().await;
    let down_too = format!(
        "metric backup_running{{job=\"hourly\"}}: cannot read {}",
        exporter.url()
    );
    env.wait_for(SLOW, "the exporter down", |c| has_blocker(c, &down_too))
        .await;
    stays_up(&env, pid, Duration::from_secs(1)).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_metric_wakes_a_standby_database_with_no_client() {
    let (exporter, env) = one_rule("wake_metric", "queue_length", "0").await;
    // An empty queue wakes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "{c}");
    assert!(c["backend_pid"].is_null(), "{c}");

    exporter.set(&gauge("queue_length", "5"));
    let pid = woken_by(&env, "metric").await;
    metric_is(
        &env,
        "torpor_wake_seconds_count{cluster=\"pg\",cause=\"client\"}",
        0.0,
    )
    .await;
    // Held up while the queue is not empty, many idle timeouts long.
    stays_up(&env, pid, Duration::from_secs(2)).await;
    let c = env.cluster_status().await;
    assert!(has_blocker(&c, "wake metric queue_length=5 > 0"), "{c}");
    assert_eq!(c["active"], true, "{c}");

    exporter.set(&gauge("queue_length", "0"));
    env.wait_for_idle_stop(pid).await;
    assert_eq!(env.metric("torpor_wakes_total").await, 1.0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_at_wakes_the_database_when_the_clock_reaches_it() {
    // Monday 2030-01-07, one minute before 08:00 UTC.
    const EIGHT: u64 = 1_894_003_200;
    let now = Arc::new(AtomicU64::new(EIGHT - 60));
    let read = now.clone();
    let clock = Clock::from_fn(move || {
        SystemTime::UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst))
    });
    let opts = Opts::default()
        .idle_after("300ms")
        .cluster_setting(r#"wake_at = ["0 8 * * 1-5"]"#);
    let env = TestEnv::start_config_with(TestConfig::new(&opts).await, |c| c.clock = clock).await;

    // A minute ahead: nothing happens while the clock stands still.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "{c}");
    now.store(EIGHT - 1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.cluster_status().await["state"], "standby");

    now.store(EIGHT, Ordering::SeqCst);
    let pid = woken_by(&env, "schedule").await;
    // Up for idle_timeout, then down, and not woken again at the same time.
    env.wait_for_idle_stop(pid).await;
    now.store(EIGHT + 30, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.cluster_status().await["state"], "standby");
    assert_eq!(env.metric("torpor_wakes_total").await, 1.0);
    env.shutdown().await;
}

/// Lines of the log that contain `what`.
fn lines_with(log: &std::sync::Mutex<Vec<String>>, what: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(what))
        .count()
}

async fn wait_for_line(log: &std::sync::Mutex<Vec<String>>, what: &str) {
    let start = Instant::now();
    while lines_with(log, what) == 0 {
        assert!(start.elapsed() < SLOW, "no log line with {what:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tells_each_rules_transitions_once() {
    let queue = Exporter::start(&gauge("queue_length", "0")).await;
    let backup = Exporter::start(&gauge("backup_running", "1")).await;
    let opts = Opts::default()
        .idle_after("300ms")
        .cluster_setting(&rule("wake_metric", &queue.url(), "queue_length", ""))
        .cluster_setting(&rule("idle_metric", &backup.url(), "backup_running", ""));
    let cfg = TestConfig::new(&opts).await;
    let mut proc = binary::up(&cfg.config_path).await;
    let log = proc.log.clone();

    queue.set(&gauge("queue_length", "3"));
    wait_for_line(&log, "wake_metric wakes the cluster and holds it up").await;
    wait_for_line(&log, "idle_metric holds the cluster up").await;
    // Several readings later, each transition was told once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    queue.set(&gauge("queue_length", "0"));
    wait_for_line(&log, "wake_metric lets the cluster go").await;
    backup.set(&gauge("backup_running", "0"));
    wait_for_line(&log, "idle_metric lets the cluster go").await;
    wait_for_line(&log, "cluster in standby").await;
    for (line, detail) in [
        (
            "wake_metric wakes the cluster and holds it up",
            "wake metric queue_length=3 > 0",
        ),
        (
            "idle_metric holds the cluster up",
            "metric backup_running=1 > 0",
        ),
        ("wake_metric lets the cluster go", "queue_length"),
        ("idle_metric lets the cluster go", "backup_running"),
    ] {
        assert_eq!(
            lines_with(&log, line),
            1,
            "{line}: {:?}",
            log.lock().unwrap()
        );
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(line) && l.contains(detail)),
            "{line} without {detail}"
        );
    }
    proc.stop().await;
}
