//! `CONNECTION_ID()` answers the id the client saw in torpor's greeting, on every backend
//! connection the session is moved to: before a sleep, and after the server was stopped and a
//! new one started. information_schema.PROCESSLIST still lists the backend's own thread id.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mysql::{rows, text};

/// Every way of asking, each with `id` as the answer; `before` is a statement prepared earlier
/// (after a wake, prepared again by the replay).
async fn check(c: &mut Conn, before: &mysql_async::Statement, id: u32, when: &str) {
    let mut r = c.query_iter("SELECT CONNECTION_ID()").await.unwrap();
    let names: Vec<String> = r
        .columns()
        .map(|cs| cs.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let got: Vec<u32> = r.collect().await.unwrap();
    assert_eq!(got, [id], "{when}: text protocol");
    assert_eq!(names, ["CONNECTION_ID()"], "{when}: the column's name");

    let got: Option<u32> = c.exec_first(before, ()).await.unwrap();
    assert_eq!(got, Some(id), "{when}: a statement prepared before");
    let fresh = c.prep("SELECT connection_id() AS mine, 7").await.unwrap();
    let names: Vec<String> = fresh
        .columns()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    assert_eq!(names, ["mine", "7"], "{when}: binary protocol column names");
    let got: Option<(u32, u32)> = c.exec_first(&fresh, ()).await.unwrap();
    assert_eq!(got, Some((id, 7)), "{when}: binary protocol");
    c.close(fresh).await.unwrap();

    let sql = format!("SELECT 'mine' FROM DUAL WHERE CONNECTION_ID() = {id}");
    assert_eq!(text(c, &sql).await, "mine", "{when}: in a WHERE clause");

    // The server's process list knows only the backend's thread id: nothing matches torpor's.
    assert_eq!(
        rows(
            c,
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
        )
        .await,
        Vec::<String>::new(),
        "{when}: PROCESSLIST"
    );
    let thread = text(c, "SELECT @@pseudo_thread_id").await;
    assert_ne!(
        thread,
        id.to_string(),
        "{when}: the backend's own id differs"
    );
    assert_eq!(
        rows(
            c,
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = @@pseudo_thread_id"
        )
        .await,
        [format!("{thread:?}")],
        "{when}: PROCESSLIST lists the backend's thread id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_is_the_greeting_id_before_and_after_a_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::mysql()).await;
    // The id of torpor's handshake, as the client library read it.
    let id = c.id();
    let before = c.prep("SELECT CONNECTION_ID()").await.unwrap();
    check(&mut c, &before, id, "before the sleep").await;
    let thread = text(&mut c, "SELECT @@pseudo_thread_id").await;

    let pid = env.backend_pid().await.expect("a running server");
    env.sleep_ok().await;
    env.assert_asleep(pid).await;

    check(&mut c, &before, id, "after the wake").await;
    let now = env.backend_pid().await.expect("woken");
    assert_ne!(now, pid, "a new server process");
    eprintln!(
        "connection id {id}; backend thread {thread} before the sleep, {} after",
        text(&mut c, "SELECT @@pseudo_thread_id").await
    );
    env.shutdown_after(c).await;
}
