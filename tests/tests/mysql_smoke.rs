//! The MySQL path end to end at its simplest: connect through torpor with mysql_async, sleep,
//! and carry on.

use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mysql::{exec, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sleep_query() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    assert_eq!(text(&mut c, "SELECT 1 + 1").await, "2");
    exec(&mut c, "SET @x = 41").await;
    exec(
        &mut c,
        "CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
    )
    .await;
    exec(&mut c, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let pid = env.backend_pid().await.expect("backend running");
    env.sleep_ok().await;
    torpor_tests::harness::assert_pid_gone(pid);
    assert_eq!(text(&mut c, "SELECT @x + 1").await, "42");
    assert_eq!(
        text(&mut c, "SELECT GROUP_CONCAT(v ORDER BY id) FROM t").await,
        "a,b"
    );
    let stmt = c.prep("SELECT ? + 1").await.unwrap();
    let r: Option<i64> = c.exec_first(&stmt, (1,)).await.unwrap();
    assert_eq!(r, Some(2));
    env.sleep_ok().await;
    let r: Option<i64> = c.exec_first(&stmt, (5,)).await.unwrap();
    assert_eq!(r, Some(6));
    c.disconnect().await.unwrap();
    env.shutdown().await;
}
