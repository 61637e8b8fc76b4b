//! MySQL KILL reaches only the session that owns the id, and is refused as the server refuses
//! it: a thread id from before a wake reaches the session that had it, never one that has the
//! same number on the new server (ambiguous: 1094); another user's session is not the killer's
//! to end (1095).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use torpor_tests::harness::{OTHER_PASSWORD, OTHER_USER, Opts, TestEnv};
use torpor_tests::mysql::{code, exec, text, try_connect_my};

async fn viewer(env: &TestEnv) -> Conn {
    try_connect_my(env.listen, OTHER_USER, OTHER_PASSWORD, Some("my"))
        .await
        .unwrap_or_else(|e| panic!("connect as {OTHER_USER}: {e}"))
}

async fn refused(c: &mut Conn, sql: &str) -> u16 {
    let err = c.query_drop(sql).await.expect_err(sql);
    code(&err).unwrap_or_else(|| panic!("{sql}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_id_from_before_a_wake_reaches_only_its_own_session() {
    let (env, mut k) = TestEnv::my_session(Opts::mysql()).await;
    // The backend connection's own thread id (CONNECTION_ID() answers torpor's id).
    let stale = text(&mut k, "SELECT @@pseudo_thread_id").await;
    env.sleep_ok().await;
    exec(&mut k, "SELECT 1").await;
    assert_ne!(text(&mut k, "SELECT @@pseudo_thread_id").await, stale);
    // The new server hands out its thread ids from 1 again: with these the stale number is
    // most likely someone's on it now.
    let mut others = Vec::new();
    for _ in 0..6 {
        let mut c = env.my().await;
        exec(&mut c, "SELECT 1").await;
        others.push(c);
    }
    let mut bystander = env.my().await;
    exec(&mut bystander, "SELECT 1").await;
    let sleeping: Vec<_> = others
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let r: Option<i64> = c.query_first("SELECT SLEEP(2)").await.expect("sleep");
                (r, c)
            })
        })
        .collect();
    // From the session that had it, the id is its own: its KILL QUERY interrupts itself, as
    // the server answers a KILL QUERY of one's own thread.
    assert_eq!(refused(&mut k, &format!("KILL QUERY {stale}")).await, 1317);
    // From anyone else it names k's old connection or whoever has the number now: torpor
    // can't tell which, so it reaches neither; when nobody has it now, it reaches k, idle.
    match bystander.query_drop(format!("KILL QUERY {stale}")).await {
        Ok(()) => {}
        Err(e) => assert_eq!(code(&e), Some(1094), "{e}"),
    }
    let mut others = Vec::new();
    for s in sleeping {
        let (r, c) = s.await.expect("join");
        assert_eq!(r, Some(0), "a sleep was interrupted");
        others.push(c);
    }
    assert_eq!(text(&mut k, "SELECT 7").await, "7");
    env.shutdown_after((k, bystander, others)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_a_parked_session_checks_its_owner() {
    let (env, mut app) = TestEnv::my_session(Opts::mysql()).await;
    let mut mine = viewer(&env).await;
    let mut killer = viewer(&env).await;
    let app_id = app.id();
    let mine_id = mine.id();
    exec(&mut app, "SET @keep = 'here'").await;
    env.sleep_ok().await;

    assert_eq!(refused(&mut killer, &format!("KILL {app_id}")).await, 1095);
    assert_eq!(text(&mut app, "SELECT @keep").await, "here");

    env.sleep_ok().await;
    exec(&mut killer, &format!("KILL {mine_id}")).await;
    assert!(
        mine.query_drop("SELECT 1").await.is_err(),
        "the killed connection still answers"
    );
    env.shutdown_after((app, killer)).await;
}
