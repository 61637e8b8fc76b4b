//! The snapshot store failing under torpor: an S3 API server that is down (connections
//! closed) or hangs (connections never answered), through a relay. A drain is refused and the
//! database keeps running; a wake makes the client wait, then fails only its request, keeps
//! the session parked with its snapshot, and the next request after the store is back finds
//! the session whole.

use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use torpor_tests::faults;
use torpor_tests::harness::{Opts, Pg, TestEnv, describe, sqlstate};
use torpor_tests::mysql::{exec_each, exec_err, text as my_text};
use torpor_tests::relay::{Mode, Relay};

/// The session state every PostgreSQL test checks: a setting and a temporary table.
const PG_STATE: &str = "SET application_name = 'kept'; \
    CREATE TEMP TABLE t AS SELECT g AS x FROM generate_series(1, 100) g";
const PG_CHECK: &str = "SELECT current_setting('application_name') || ':' || sum(x) FROM t";
const PG_EXPECTED: &str = "kept:5050";

async fn pg_with_state() -> (TestEnv, Relay, Pg) {
    let (env, relay) = faults::start(Opts::default(), &[]).await;
    let c = env.connect().await;
    c.exec(PG_STATE).await;
    (env, relay, c)
}

/// Sessions parked, as the admin API counts them.
async fn parked(env: &TestEnv) -> u64 {
    let c = env.cluster_status().await;
    c["sessions"]["parked"]
        .as_u64()
        .unwrap_or_else(|| panic!("{c}"))
}

/// Objects the S3 server holds (files under its bucket, snapshots and nothing else).
fn objects(env: &TestEnv) -> usize {
    let s3 = env.s3.as_ref().expect("an S3 store");
    let mut n = 0;
    let mut todo = vec![s3.root.join(&s3.bucket)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else if !is_staging(&e.path()) {
                n += 1;
            }
        }
    }
    n
}

/// s3s-fs writes an object beside its final name first.
fn is_staging(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with('.') || p.components().any(|c| c.as_os_str() == ".upload")
}

async fn drain_is_refused(mode: Mode) {
    let (env, relay, c) = pg_with_state().await;
    let pid = env.running_pid().await;
    relay.set(mode);
    let started = Instant::now();
    let body = env.sleep_refused().await;
    // Within a few store timeouts (2 s), not the minutes a client's own retries would take.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        body.to_string().contains("snapshot put failed"),
        "the refusal should name the store: {body}"
    );
    assert_eq!(
        env.running_pid().await,
        pid,
        "the backend must keep running"
    );
    assert_eq!(c.text(PG_CHECK).await, PG_EXPECTED);
    // Once the store is back, a drain goes through and the state comes back from it.
    relay.set(Mode::Pass);
    env.sleep_ok().await;
    assert_eq!(c.text(PG_CHECK).await, PG_EXPECTED);
    env.shutdown_after(c).await;
}

/// A test for each way the store fails: down, then hanging.
macro_rules! down_and_hanging {
    ($run:ident: $down:ident, $hanging:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $down() {
            $run(Mode::Refuse).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $hanging() {
            $run(Mode::Hang).await;
        }
    };
}

down_and_hanging!(drain_is_refused: s3_down_during_a_drain_refuses_it, s3_hanging_during_a_drain_refuses_it);

/// The client's request during the outage: it waits for the wake's retries, then gets 57P03.
async fn pg_fails_kept(c: &Pg, sql: &str) {
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(60), c.simple_query(sql))
        .await
        .expect("the request was never answered")
        .expect_err("the request should fail while the store is out");
    assert_eq!(sqlstate(&e), Some("57P03"), "{}", describe(&e));
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.severity(), "ERROR", "{}", describe(&e));
    assert!(db.message().contains("snapshot"), "{}", describe(&e));
    // It waited for the wake to try again up to wake_timeout (5 s).
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!c.is_closed(), "the session must be kept");
}

/// The same through the extended protocol (Parse, Bind, Execute, Sync): torpor drops the
/// request through its Sync, and the client and the session stay in step.
async fn pg_extended_fails_kept(c: &Pg) {
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        c.query_one("SELECT $1::int", &[&7]),
    )
    .await
    .expect("the request was never answered")
    .expect_err("the request should fail while the store is out");
    assert_eq!(sqlstate(&e), Some("57P03"), "{}", describe(&e));
}

async fn wake_fails_then_works(mode: Mode) {
    let (env, relay, c) = pg_with_state().await;
    env.sleep_ok().await;
    let stored = objects(&env);
    assert_eq!(stored, 1, "one snapshot");
    relay.set(mode);
    pg_fails_kept(&c, PG_CHECK).await;
    pg_extended_fails_kept(&c).await;
    // Still parked, and its snapshot is still there.
    assert_eq!(parked(&env).await, 1);
    assert_eq!(objects(&env), stored);
    relay.set(Mode::Pass);
    assert_eq!(c.text(PG_CHECK).await, PG_EXPECTED);
    let row = c
        .query_one("SELECT $1::int + 1", &[&7])
        .await
        .expect("extended query");
    assert_eq!(row.get::<_, i32>(0), 8);
    env.shutdown_after(c).await;
}

down_and_hanging!(wake_fails_then_works: s3_down_during_a_wake_keeps_the_session, s3_hanging_during_a_wake_keeps_the_session);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_transaction_fails_with_the_wake_and_torpor_rolls_it_back() {
    let (env, relay, c) = pg_with_state().await;
    c.exec("BEGIN; SELECT count(*) FROM t").await;
    env.sleep_ok().await;
    relay.set(Mode::Refuse);
    pg_fails_kept(&c, PG_CHECK).await;
    // The block failed: anything but its end is refused, and the session stays parked.
    let e = c
        .simple_query("SELECT 1")
        .await
        .expect_err("in a failed transaction block");
    assert_eq!(sqlstate(&e), Some("25P02"), "{}", describe(&e));
    c.exec("ROLLBACK").await;
    assert_eq!(parked(&env).await, 1);
    relay.set(Mode::Pass);
    assert_eq!(c.text(PG_CHECK).await, PG_EXPECTED);
    assert_eq!(c.text("SELECT 1").await, "1");
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_s3_down_during_a_wake_keeps_the_session() {
    let (env, relay) = faults::start(Opts::mysql(), &[]).await;
    let mut c: Conn = env.my().await;
    exec_each(
        &mut c,
        &[
            "SET @kept = 'kept'",
            "CREATE TEMPORARY TABLE t AS SELECT 7 AS x",
        ],
    )
    .await;
    let check = "SELECT CONCAT(@kept, ':', x) FROM t";
    env.sleep_ok().await;
    relay.set(Mode::Refuse);
    let started = Instant::now();
    let (code, message) = exec_err(&mut c, check).await;
    assert_eq!(code, 9001, "{message}");
    assert!(message.contains("snapshot"), "{message}");
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(parked(&env).await, 1);
    relay.set(Mode::Pass);
    assert_eq!(my_text(&mut c, check).await, "kept:7");
    env.shutdown_after(c).await;
}

/// A store that isn't up when torpor starts (as in a compose file that starts both) is waited
/// for: torpor tries again until it answers, then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torpor_waits_at_start_for_a_store_that_is_not_up_yet() {
    let (cfg, relay) = faults::config(Opts::default(), &[]).await;
    relay.set(Mode::Refuse);
    let starting = tokio::spawn(TestEnv::start_config(cfg));
    // A first try and a retry, both refused.
    let deadline = Instant::now() + Duration::from_secs(90);
    while relay.accepted() < 2 {
        assert!(
            Instant::now() < deadline,
            "torpor never tried the store again"
        );
        assert!(!starting.is_finished(), "torpor gave up on the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.set(Mode::Pass);
    let env = tokio::time::timeout(Duration::from_secs(90), starting)
        .await
        .expect("started once the store was up")
        .expect("start");
    let c = env.connect().await;
    c.exec(PG_STATE).await;
    env.sleep_ok().await;
    assert_eq!(c.value(PG_CHECK).await.as_deref(), Some(PG_EXPECTED));
    env.shutdown_after(c).await;
}
