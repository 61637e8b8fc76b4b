//! More MySQL client sessions than backend connections (`max_backend_connections`): sessions
//! are parked to make room for each other and keep their state across every move, against a
//! real mariadbd and the mysql_async client.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mysql::{code, connect_quiet, exec, text};

fn room_for(n: usize, wake_timeout: &str) -> Opts {
    Opts::mysql()
        .cluster_setting(&format!("max_backend_connections = {n}"))
        .cluster_setting("park_idle_after = \"100ms\"")
        .proxy(&format!("wake_timeout = \"{wake_timeout}\""))
}

/// One connection, and no session parked unless it changed nothing since its last snapshot:
/// a session that needs the connection waits 5 s at most.
fn fast_path_only() -> Opts {
    Opts::mysql()
        .cluster_setting("max_backend_connections = 1")
        .cluster_setting("park_idle_after = \"1h\"")
        .proxy("wake_timeout = \"5s\"")
}

struct Client {
    i: i64,
    c: Conn,
    temp: bool,
    /// What the login's character set made of the connection.
    names: String,
}

async fn set_up(env: &TestEnv, i: i64, temp: bool) -> Client {
    let mut c = env.my().await;
    exec(&mut c, &format!("SET @v = {i}")).await;
    exec(&mut c, &format!("PREPARE q FROM 'SELECT ? + {i}'")).await;
    if temp {
        exec(
            &mut c,
            &format!("CREATE TEMPORARY TABLE t{i} AS SELECT seq FROM seq_1_to_100"),
        )
        .await;
    }
    let names = text(&mut c, NAMES).await;
    Client { i, c, temp, names }
}

/// The login's character set (mysql_async's utf8mb4, not the server's latin1 default), which a
/// reset connection handed to another session must be given again.
const NAMES: &str = "SELECT CONCAT_WS(' ', @@character_set_client, @@character_set_results, \
                     @@collation_connection)";

/// The first row's first column of `sql`, which must succeed.
async fn first(c: &mut Conn, sql: &str, what: &str) -> Option<i64> {
    c.query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{what}: {sql}: {e}"))
}

impl Client {
    /// Reads the session's state back. `reads_only`: with nothing that counts as a change (a
    /// literal EXECUTE argument, no binary statement); otherwise a SET and a binary-protocol
    /// statement too.
    async fn check(&mut self, round: usize, reads_only: bool) {
        let i = self.i;
        let what = format!("client {i}, round {round}");
        let c = &mut self.c;
        assert_eq!(first(c, "SELECT @v", &what).await, Some(i), "{what}");
        let execute = if reads_only {
            "EXECUTE q USING 1"
        } else {
            exec(c, "SET @one = 1").await;
            "EXECUTE q USING @one"
        };
        assert_eq!(first(c, execute, &what).await, Some(i + 1), "{what}");
        if !reads_only {
            // A binary-protocol statement, kept in mysql_async's statement cache.
            let bin: Option<i64> = c
                .exec_first("SELECT ? * 2", (i,))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(bin, Some(i * 2), "{what}: binary statement");
        }
        if !reads_only {
            assert_eq!(text(c, NAMES).await, self.names, "{what}");
        }
        if self.temp {
            let count = format!("SELECT COUNT(*) FROM t{i}");
            assert_eq!(first(c, &count, &what).await, Some(100), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sessions_than_connections_keep_their_state_across_many_moves() {
    let env = TestEnv::start(room_for(2, "20s")).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(set_up(&env, i, i % 2 == 0).await);
    }
    for round in 0..4 {
        for c in clients.iter_mut() {
            c.check(round, false).await;
        }
    }
    assert_eq!(env.metric("torpor_backend_connections_max").await, 2.0);
    let parks = env.metric("torpor_room_parks_total").await;
    assert!(parks >= 6.0, "sessions were parked for room {parks} times");
    // Reset and handed over, not closed and opened, though the clients' character set is not
    // the server's default.
    let handovers = env.metric("torpor_room_handovers_total").await;
    assert!(handovers >= 1.0, "{handovers} connections handed over");
    let backends = text(
        &mut clients[0].c,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon' AND USER = 'app'",
    )
    .await;
    assert!(
        backends.parse::<u32>().is_ok_and(|n| n <= 2),
        "{backends} connections of the app user on the server"
    );
    // Snapshots kept in memory reach the store when the database stops.
    env.sleep_ok().await;
    for c in clients.iter_mut() {
        c.check(9, false).await;
    }
    let all: Vec<Conn> = clients.into_iter().map(|c| c.c).collect();
    env.shutdown_after(all).await;
}

/// Sessions that only read since their last snapshot give their connection up at once, with
/// no capture: with `park_idle_after` an hour, three sessions share one connection through
/// reads alone. Were any of those reads taken for a change, the next session would wait for
/// the connection past `wake_timeout` and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_only_read_give_way_at_once() {
    let env = TestEnv::start(fast_path_only()).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(set_up(&env, i, true).await);
        // Each session's state reaches a snapshot before the next one needs the connection.
        env.sleep_ok().await;
    }
    for round in 0..3 {
        for c in clients.iter_mut() {
            c.check(round, true).await;
        }
    }
    let parks = env.metric("torpor_room_parks_total").await;
    assert!(parks >= 6.0, "sessions were parked for room {parks} times");
    let all: Vec<Conn> = clients.into_iter().map(|c| c.c).collect();
    env.shutdown_after(all).await;
}

/// Sessions with no state at all (never captured) move on the fast path, onto connections
/// reset for them: each keeps the character set it logged in with, though a reset leaves the
/// server's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_sessions_keep_their_character_set_on_reset_connections() {
    let env = TestEnv::start(fast_path_only()).await;
    let mut a = env.my().await;
    // The character sets' names come from the catalog, read once the server has started.
    env.wait_for_catalog().await;
    let mut b = env.my().await;
    let names = text(&mut a, NAMES).await;
    for round in 0..3 {
        assert_eq!(text(&mut b, NAMES).await, names, "b, round {round}");
        assert_eq!(text(&mut a, NAMES).await, names, "a, round {round}");
    }
    let handovers = env.metric("torpor_room_handovers_total").await;
    assert!(handovers >= 6.0, "{handovers} connections handed over");
    env.shutdown_after((a, b)).await;
}

/// A session that holds a named lock is never moved: the waiting session's request fails after
/// `wake_timeout`, the session stays, and once the lock is released it gets the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holding_a_named_lock_is_never_parked() {
    let env = TestEnv::start(room_for(1, "1500ms")).await;
    let mut holder = env.my().await;
    exec(&mut holder, "DO GET_LOCK('torpor_pool', 0)").await;
    let before = text(&mut holder, "SELECT CONNECTION_ID()").await;
    // mysql_async's own queries after login would wait for a connection too.
    let mut other = connect_quiet(env.listen, Some(&env.cluster)).await;
    let err = other
        .query_drop("SELECT 41 + 1")
        .await
        .expect_err("got a connection while the holder held its lock");
    assert_eq!(code(&err), Some(9001), "{err}");
    assert!(
        err.to_string().contains("no backend connection came free"),
        "{err}"
    );
    assert_eq!(text(&mut holder, "SELECT CONNECTION_ID()").await, before);
    assert_eq!(
        text(
            &mut holder,
            "SELECT IS_USED_LOCK('torpor_pool') IS NOT NULL"
        )
        .await,
        "1"
    );
    exec(&mut holder, "DO RELEASE_LOCK('torpor_pool')").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n: Option<i64> = other
        .query_first("SELECT 41 + 1")
        .await
        .unwrap_or_else(|e| panic!("after the release: {e}"));
    assert_eq!(n, Some(42));
    env.shutdown_after((holder, other)).await;
}

/// CONNECTION_ID() answers the handshake's id on every connection a session is moved to, and
/// KILL QUERY with that id reaches the session's query on the connection it is on now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_and_kill_follow_the_session_across_moves() {
    let env = TestEnv::start(room_for(2, "20s")).await;
    let mut a = env.my().await;
    let a_id = a.id();
    exec(&mut a, "SET @mine = 'a'").await;
    let mut b = env.my().await;
    let mut c = env.my().await;
    for round in 0..3 {
        // b and c take both connections; a's next query moves it onto one of them.
        exec(&mut b, "SET @b = 1").await;
        exec(&mut c, "SET @c = 1").await;
        let id: Option<u32> = a
            .query_first("SELECT CONNECTION_ID()")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(id, Some(a_id), "round {round}");
    }
    assert!(env.metric("torpor_room_parks_total").await >= 3.0);
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = a.query_first("SELECT SLEEP(30)").await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    exec(&mut b, &format!("KILL QUERY {a_id}")).await;
    let (mut a, r) = tokio::time::timeout(Duration::from_secs(20), sleeper)
        .await
        .expect("the killed query did not end")
        .expect("the sleeper panicked");
    // SLEEP() interrupted by KILL QUERY returns 1 (or the statement fails with 1317).
    match r {
        Ok(v) => assert_eq!(v, Some(1), "SLEEP(30) ran to its end"),
        Err(e) => assert_eq!(code(&e), Some(1317), "{e}"),
    }
    assert_eq!(text(&mut a, "SELECT @mine").await, "a");
    env.shutdown_after((a, b, c)).await;
}
