//! Statements far larger than usual pass with their effects tracked, and the work of scanning
//! them (up to ~200 ns a byte) runs on the blocking pool rather than the async runtime, where
//! one client's multi-megabyte query would stall every session on its worker thread. Large
//! snapshots are sealed and opened there too. Each test proves the server gone before the
//! client's next query, then that the state survived.

use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mywire::{Resp, binary_string_cell};

/// A comment of `n` bytes, to make a statement large without changing what it does.
fn padding(n: usize) -> String {
    format!("/* {} */", "x".repeat(n))
}

const OFFLOADED: &str = "torpor_offloaded_bytes_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_large_statements_are_tracked_off_the_runtime() {
    let env = TestEnv::start(Opts::default()).await;
    let c = env.connect().await;
    assert_eq!(env.metric(OFFLOADED).await, 0.0);
    c.exec(&format!(
        "SELECT set_config('app.big', 'yes', false) {}",
        padding(1 << 20)
    ))
    .await;
    // A snapshot well over the size opened in place: 2,000 rows of about 1 kB.
    c.exec("CREATE TEMP TABLE big AS SELECT repeat('x', 1000) || g AS v FROM generate_series(1, 2000) g")
        .await;
    assert!(env.metric(OFFLOADED).await >= (1 << 20) as f64);
    env.sleep_ok().await;
    assert_eq!(
        c.value("SHOW app.big").await.as_deref(),
        Some("yes"),
        "the setting made by a 1 MiB statement"
    );
    assert_eq!(
        c.value("SELECT count(*) || ':' || sum(length(v)) FROM big")
            .await
            .as_deref(),
        Some("2000:2006893")
    );
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_large_statements_are_tracked_off_the_runtime() {
    let env = TestEnv::start(Opts::mysql()).await;
    let mut raw = env.my_raw().await;
    assert_eq!(env.metric(OFFLOADED).await, 0.0);
    let set = raw
        .query(&format!("SET @after_big = 42 {}", padding(1 << 20)))
        .await
        .expect("SET");
    assert!(set.err().is_none(), "{:?}", set.err());
    // A statement prepared from a large text keeps its id across the sleep.
    let (id, params) = raw
        .prepared(&format!(
            "SELECT CONCAT('<', ?, '>') {}",
            padding(256 << 10)
        ))
        .await;
    assert_eq!(params, 1);
    assert!(env.metric(OFFLOADED).await >= ((1 << 20) + (256 << 10)) as f64);
    env.sleep_ok().await;
    assert_eq!(raw.value("SELECT @after_big").await.as_deref(), Some("42"));
    let rows = raw
        .execute(id, &[Some(b"x".as_slice())], true)
        .await
        .expect("execute");
    let first = match &rows {
        Resp::Rows(rows) => rows.first().and_then(|r| binary_string_cell(r, 1)),
        _ => None,
    };
    assert_eq!(first, Some(b"<x>".as_slice()), "{rows:?}");
    env.shutdown().await;
}
