//! Custom settings (`app.x`) a session sets, which pg_settings doesn't list, are tracked from
//! the queries that pass: in bounded time (a query naming 100,000 in a comment passes at once
//! and tracks nothing) and number (past 1000 the session keeps working but blocks the drain).

use std::time::Duration;

use torpor_tests::harness::{Opts, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_settings_are_tracked_in_bounded_time_and_number() {
    let env = TestEnv::start(Opts::default()).await;
    let c = env.connect().await;
    let mut sql = String::from("SELECT 1 /* ");
    for i in 0..100_000 {
        sql.push_str(&format!("set_config('x.a{i}' "));
    }
    sql.push_str("*/");
    // It once took the proxy 46 s.
    tokio::time::timeout(Duration::from_secs(20), c.client.simple_query(&sql))
        .await
        .expect("a 2 MB query of comment took over 20 s")
        .expect("query");
    env.sleep_ok().await;

    let calls: Vec<String> = (0..1001)
        .map(|i| format!("set_config('x.b{i}', '1', false)"))
        .collect();
    c.exec(&format!("SELECT {}", calls.join(", "))).await;
    let pid = env.running_pid().await;
    env.expect_refused("torpor tracks per session (1000)", pid)
        .await;
    assert_eq!(
        c.value("SELECT current_setting('x.b1000')")
            .await
            .as_deref(),
        Some("1")
    );
    env.shutdown_after(c).await;
}
