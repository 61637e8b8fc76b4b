//! More client sessions than backend connections (`max_backend_connections`): sessions are
//! parked to make room for each other and keep their state across every move, against a real
//! postgres and real clients.

use std::time::Duration;

use torpor_tests::harness::{Opts, Pg, TestEnv, describe, sqlstate};

/// Room for `n` sessions, and sessions that changed something may be parked after 100 ms.
fn room_for(n: usize) -> Opts {
    Opts::default()
        .cluster_setting(&format!("max_backend_connections = {n}"))
        .cluster_setting("park_idle_after = \"100ms\"")
        .proxy("wake_timeout = \"20s\"")
}

/// One client and what it set up: its application_name, a prepared statement, and for some a
/// temp table of 100 rows.
struct Client {
    i: usize,
    pg: Pg,
    temp: bool,
}

async fn set_up(env: &TestEnv, i: usize, temp: bool) -> Client {
    let pg = env.connect().await;
    pg.exec(&format!(
        "SET application_name = 'c{i}'; PREPARE q(int) AS SELECT $1 + {i}"
    ))
    .await;
    if temp {
        pg.exec(&format!(
            "CREATE TEMP TABLE t{i} AS SELECT g FROM generate_series(1, 100) g"
        ))
        .await;
    }
    Client { i, pg, temp }
}

impl Client {
    /// Every piece of state is still there, on whatever backend connection the session is now.
    async fn check(&self, round: usize) {
        let i = self.i;
        let what = format!("client {i}, round {round}");
        let q = |sql: String| async move {
            self.pg
                .client
                .simple_query(&sql)
                .await
                .map_err(|e| describe(&e))
        };
        let name = q("SHOW application_name".into()).await;
        let sum = q("EXECUTE q(1)".into()).await;
        let first = |r: Result<Vec<tokio_postgres::SimpleQueryMessage>, String>| match r {
            Ok(msgs) => msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            }),
            Err(e) => panic!("{what}: {e}"),
        };
        assert_eq!(
            first(name).as_deref(),
            Some(format!("c{i}").as_str()),
            "{what}"
        );
        assert_eq!(first(sum), Some((i + 1).to_string()), "{what}");
        if self.temp {
            let count = q(format!("SELECT count(*) FROM t{i}")).await;
            assert_eq!(first(count).as_deref(), Some("100"), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sessions_than_connections_keep_their_state_across_many_moves() {
    let env = TestEnv::start(room_for(2)).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(set_up(&env, i, i % 2 == 0).await);
    }
    for round in 0..4 {
        for c in &clients {
            c.check(round).await;
            let in_use = env.metric("torpor_backend_connections_max").await;
            assert_eq!(in_use, 2.0);
        }
    }
    // The server never had more than two of these sessions' connections at once.
    let text = env.metrics().await;
    let in_use = text
        .lines()
        .find(|l| l.starts_with("torpor_backend_connections{") && l.contains("in_use"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(in_use.is_some_and(|n| n <= 2.0), "{text}");
    let parks = env.metric("torpor_room_parks_total").await;
    assert!(parks >= 6.0, "sessions were parked for room {parks} times");
    let restores = env.metric("torpor_room_restores_total").await;
    assert!(restores >= 6.0, "{restores} restores");
    let backends = clients[0]
        .pg
        .text("SELECT count(*) FROM pg_stat_activity WHERE application_name ~ '^c[0-9]+$'")
        .await;
    assert!(
        backends.parse::<u32>().is_ok_and(|n| n <= 2),
        "{backends} client backends on the server"
    );
    // Operators see why a parked session is parked.
    let r = env
        .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
        .await;
    let sessions = r.json();
    let parked_for_room = sessions
        .as_array()
        .map(|a| a.iter().filter(|s| s["parked_for"] == "room").count())
        .unwrap_or_default();
    assert!(parked_for_room >= 3, "{sessions}");
    let c = env.cluster_status().await;
    assert_eq!(c["max_backend_connections"], 2, "{c}");
    assert_eq!(c["sessions"]["parked_for_room"], parked_for_room, "{c}");
    env.shutdown_after(clients).await;
}

/// Many clients at once, each checking its own state in a loop: the queue, the usher and the
/// handovers under contention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_few_connections_without_errors() {
    let env = TestEnv::start(room_for(3)).await;
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push(set_up(&env, i, i % 4 == 0).await);
    }
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                c.check(round).await;
                tokio::time::sleep(Duration::from_millis(20 * (c.i as u64 % 5))).await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("a client failed"));
    }
    assert!(env.metric("torpor_room_parks_total").await > 0.0);
    assert_eq!(env.metric("torpor_room_timeouts_total").await, 0.0);
    env.shutdown_after(clients).await;
}

/// Snapshots held in memory for sessions parked for room reach the store when the database
/// stops, and every session wakes with its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_parked_for_room_survive_a_stop() {
    let env = TestEnv::start(room_for(1)).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(set_up(&env, i, true).await);
    }
    for c in &clients {
        c.check(0).await;
    }
    assert!(env.metric("torpor_sessions_parked_for_room").await >= 1.0);
    env.sleep_ok().await;
    assert_eq!(env.metric("torpor_sessions_parked_for_room").await, 0.0);
    for c in clients.iter().rev() {
        c.check(1).await;
    }
    env.shutdown_after(clients).await;
}

/// A session with an open transaction, an advisory lock or a LISTEN is never moved: a session
/// that needs its connection waits until `wake_timeout`, gets an error and stays, and its next
/// request succeeds once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_hold_what_cannot_move_are_never_parked() {
    let opts = Opts::default()
        .cluster_setting("max_backend_connections = 1")
        .cluster_setting("park_idle_after = \"50ms\"")
        .proxy("wake_timeout = \"1500ms\"");
    let env = TestEnv::start(opts).await;
    let holder = env.connect().await;
    // "SELECT 1" would be a health probe, answered without the server.
    for (hold, release) in [
        ("BEGIN; CREATE TEMP TABLE x(i int)", "COMMIT"),
        (
            "SELECT pg_advisory_lock(42)",
            "SELECT pg_advisory_unlock(42)",
        ),
        ("LISTEN news", "UNLISTEN news"),
    ] {
        holder.exec(hold).await;
        let pid = holder.text("SELECT pg_backend_pid()").await;
        let other = env.connect().await;
        let err = other
            .client
            .simple_query("SELECT 41 + 1")
            .await
            .expect_err(&format!("got a connection while the holder held: {hold}"));
        assert_eq!(sqlstate(&err), Some("57P03"), "{hold}: {}", describe(&err));
        assert!(
            describe(&err).contains("no backend connection came free"),
            "{}",
            describe(&err)
        );
        // The holder was never moved.
        assert_eq!(holder.text("SELECT pg_backend_pid()").await, pid, "{hold}");
        holder.exec(release).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Now it may be parked, and the waiting session's next request gets its connection.
        let answer = other.client.simple_query("SELECT 41 + 1").await;
        assert!(
            answer.is_ok(),
            "after {release}: {:?}",
            answer.map_err(|e| describe(&e))
        );
        assert!(!other.is_closed());
        drop(other);
    }
    assert!(env.metric("torpor_room_timeouts_total").await >= 3.0);
    env.shutdown_after(holder).await;
}

/// A connection changes hands without a reconnect; the client's BackendKeyData still cancels
/// its query on whatever connection it is on; `pg_backend_pid()` is that connection's pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_change_hands_and_cancels_follow_the_session() {
    let env = TestEnv::start(room_for(1)).await;
    // 'static so the query can run in its own task while the test cancels it.
    let a: &'static Pg = Box::leak(Box::new(env.connect().await));
    a.exec("SET application_name = 'a'").await;
    let a_pid = a.text("SELECT pg_backend_pid()").await;
    let b = env.connect().await;
    let b_pid = b.text("SELECT pg_backend_pid()").await;
    assert_eq!(
        b_pid, a_pid,
        "the connection was handed over, not closed and opened again"
    );
    assert!(env.metric("torpor_room_handovers_total").await >= 1.0);
    // b changed nothing: it goes at once when a needs the connection back.
    let token = a.cancel_token();
    let running = tokio::spawn(async move { a.simple_query("SELECT pg_sleep(60)").await });
    // Until a is attached and its query sent, a cancel has nothing to reach.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = env
            .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
            .await;
        let sessions = r.json();
        let running = sessions.as_array().is_some_and(|all| {
            all.iter().any(|s| {
                s["application_name"] == "a" && s["state"] == "attached" && !s["blocker"].is_null()
            })
        });
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the query never ran: {sessions}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the cancelled query did not end")
        .unwrap();
    let err = result.expect_err("pg_sleep(60) finished instead of being cancelled");
    assert_eq!(sqlstate(&err), Some("57014"), "{}", describe(&err));
    assert_eq!(a.text("SHOW application_name").await, "a");
    env.shutdown_after(b).await;
}
