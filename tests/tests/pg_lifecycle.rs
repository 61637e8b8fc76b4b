//! The cluster lifecycle as clients and operators see it: repeated sleeps, blockers, cancels,
//! connecting during standby, many sessions waking at once, the idle timer, shutdown.

use std::pin::pin;
use std::time::{Duration, Instant};

use torpor_tests::asleep::Cycles;
use torpor_tests::harness::{
    Opts, PASSWORD, Pg, SLOW, TestEnv, USER, assert_pid_gone, connect_to, describe, sqlstate,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sleep_wake_cycles_without_client_errors() {
    let (env, s) = TestEnv::pg_session_with("CREATE TEMP TABLE log(i int PRIMARY KEY, at_pid int); SET application_name = 'cycler'; PREPARE bump(int) AS INSERT INTO log VALUES ($1, pg_backend_pid())").await;
    let stmt = s
        .prepare("SELECT count(*)::int4, coalesce(sum(i), 0)::int4 FROM log")
        .await
        .unwrap();
    let mut cycles = Cycles::start(&env).await;
    for i in 0..10 {
        s.exec(&format!("EXECUTE bump({i})")).await;
        let row = s
            .query_one(&stmt, &[])
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {}", describe(&e)));
        assert_eq!(row.get::<_, i32>(0), i + 1, "cycle {i}");
        assert_eq!(row.get::<_, i32>(1), i * (i + 1) / 2, "cycle {i}");
        assert_eq!(s.text("SHOW application_name").await, "cycler", "cycle {i}");
        cycles.sleep(&env).await;
    }
    // Every cycle ran on its own backend process.
    assert_eq!(s.text("SELECT count(DISTINCT at_pid) FROM log").await, "10");
    // Nine wakes inside the loop (cycle 0 ran on the backend started at connect) + one for count.
    cycles.check(&env, 10, 10.0).await;
    assert!(!s.is_closed());
    assert!(!s.done.is_finished(), "the client connection ended");
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_blocks_the_drain() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    let idle = env.connect_with("SET application_name = 'bystander'").await;
    s.exec("CREATE TEMP TABLE t(x int); BEGIN; INSERT INTO t VALUES (1)")
        .await;
    let pid = env.running_pid().await;
    env.expect_refused("open transaction", pid).await;

    // Nothing was lost: the transaction goes on and commits.
    s.exec("INSERT INTO t VALUES (2)").await;
    assert_eq!(s.text("SELECT count(*) FROM t").await, "2");
    s.exec("COMMIT").await;
    assert_eq!(idle.text("SHOW application_name").await, "bystander");

    env.sleep_ok().await;
    assert_eq!(s.text("SELECT sum(x) FROM t").await, "3");
    env.shutdown_after((s, idle)).await;
}

/// `blockers` in /api/clusters names why a drain would be refused *now*: once the transaction
/// that blocked a drain ends, it is no longer listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blockers_list_clears_when_the_blocker_ends() {
    let (env, s) = TestEnv::pg_session_with("BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    env.sleep_refused().await;
    s.exec("COMMIT").await;
    let c = env.cluster_status().await;
    assert_eq!(
        c["blockers"],
        serde_json::json!([]),
        "stale blocker after COMMIT: {c}"
    );
    assert_eq!(env.metric("torpor_drain_blockers").await, 0.0);
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hold_cursor_blocks_the_drain() {
    let (env, s) = TestEnv::pg_session_with(
        "DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 5) g",
    )
    .await;
    assert_eq!(s.text("FETCH 1 FROM c").await, "1");
    let pid = env.running_pid().await;

    let body = env.sleep_refused().await;
    assert!(
        body["blockers"]
            .to_string()
            .to_lowercase()
            .contains("cursor"),
        "{body}"
    );
    assert_eq!(env.backend_pid().await, Some(pid));
    assert!(
        env.cluster_status().await["blockers"]
            .to_string()
            .contains("cursor")
    );

    // The cursor is where it was.
    assert_eq!(s.text("FETCH 1 FROM c").await, "2");
    s.exec("CLOSE c").await;
    env.sleep_ok().await;
    assert_eq!(s.text("SELECT 1").await, "1");
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_copy_blocks_the_drain() {
    let (env, s) = TestEnv::pg_session_with("CREATE TEMP TABLE t(x int)").await;
    let pid = env.running_pid().await;
    let sink = s
        .copy_in::<_, bytes::Bytes>("COPY t FROM STDIN")
        .await
        .unwrap();
    let mut sink = pin!(sink);

    let body = env.sleep_refused().await;
    assert!(body["blockers"].to_string().contains("COPY"), "{body}");
    assert_eq!(env.backend_pid().await, Some(pid));

    let n = sink.as_mut().finish().await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(s.text("SELECT count(*) FROM t").await, "0");
    // The COPY is over, so it no longer blocks.
    env.sleep_ok().await;
    assert_eq!(s.text("SELECT count(*) FROM t").await, "0");
    env.shutdown_after(s).await;
}

/// Waits until a `pg_sleep` from `s` is running, seen from another session.
async fn wait_running(watch: &Pg, marker: &str) {
    let deadline = Instant::now() + SLOW;
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    while watch.text(&q).await != "1" {
        assert!(
            Instant::now() < deadline,
            "the query marked {marker} never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cancel_once(
    env: &TestEnv,
    s: &'static Pg,
    token: &tokio_postgres::CancelToken,
    marker: &str,
) {
    let sql = format!("SELECT pg_sleep(60) /* {marker} */");
    let started = Instant::now();
    let running = tokio::spawn(async move { s.simple_query(&sql).await.map(|_| ()) });
    let watch = env.connect().await;
    wait_running(&watch, marker).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("cancelled query did not end within 30 s")
        .unwrap();
    let err = result.expect_err("pg_sleep(60) finished instead of being cancelled");
    assert_eq!(sqlstate(&err), Some("57014"), "{}", describe(&err));
    assert!(started.elapsed() < Duration::from_secs(45));
    drop(watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_current_backend() {
    let env = TestEnv::default().await;
    // 'static so the query can run in its own task while the test cancels it.
    let s: &'static Pg = Box::leak(Box::new(env.connect().await));
    let token = s.cancel_token();
    s.exec("SET application_name = 'cancel-me'").await;

    cancel_once(&env, s, &token, "first-backend").await;
    assert_eq!(s.text("SELECT 1").await, "1", "session usable after cancel");

    env.sleep_ok().await;
    // Parked: nothing runs, the cancel is a no-op and the session is unharmed.
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    assert_eq!(s.text("SHOW application_name").await, "cancel-me");

    // The same (virtual) key cancels the query on the new backend.
    cancel_once(&env, s, &token, "second-backend").await;
    assert_eq!(s.text("SHOW application_name").await, "cancel-me");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_during_standby_does_not_wake() {
    let (env, first) = TestEnv::pg_session(Opts::default()).await;
    assert_eq!(first.text("SELECT 1").await, "1");
    env.sleep_ok().await;
    let wakes0 = env.metric("torpor_wakes_total").await;

    let late = env.connect().await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "connect woke the cluster: {c}");
    assert!(c["backend_pid"].is_null(), "{c}");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes0);
    // What the late client was told matches what the first one was told by a real backend.
    let (a, b) = (first.reported(), late.reported());
    for k in [
        "server_version",
        "TimeZone",
        "DateStyle",
        "client_encoding",
        "integer_datetimes",
        "session_authorization",
    ] {
        assert_eq!(a.get(k), b.get(k), "ParameterStatus {k}");
        assert!(b.contains_key(k), "{k} not reported to the late client");
    }

    // Its first query wakes the cluster and runs.
    assert_eq!(late.text("SELECT current_user").await, "app");
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    assert!(c["backend_pid"].is_u64(), "{c}");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes0 + 1.0);
    // The session that connected during standby parks and restores like any other.
    late.exec("SET application_name = 'late'").await;
    env.sleep_ok().await;
    assert_eq!(late.text("SHOW application_name").await, "late");
    env.shutdown_after((first, late)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parked_sessions_wake_with_one_backend_start() {
    let env = TestEnv::default().await;
    let mut sessions = env
        .connect_each(20, |i| {
            format!("SET myapp.n = '{i}'; CREATE TEMP TABLE mine AS SELECT {i} AS n")
        })
        .await;
    env.sleep_ok().await;
    let c = env.cluster_status().await;
    let ended: Vec<usize> = sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.done.is_finished() || s.is_closed())
        .map(|(i, _)| i)
        .collect();
    if let Some(&i) = ended.first() {
        let s = sessions.swap_remove(i);
        let how = s.ended().await;
        panic!("sessions {ended:?} were closed by the sleep, e.g. {i}: {how:?}; {c}");
    }
    assert_eq!(c["sessions"]["parked"], 20, "{c}");
    assert_eq!(c["sessions"]["attached"], 0, "{c}");
    let wakes0 = env.metric("torpor_wakes_total").await;

    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::spawn(async move {
                let r = s
                    .simple_query("SELECT current_setting('myapp.n') || ':' || n FROM mine")
                    .await;
                (i, r, s)
            })
        })
        .collect();
    let mut keep = Vec::new();
    for t in tasks {
        let (i, r, s) = tokio::time::timeout(SLOW, t)
            .await
            .expect("wake timed out")
            .unwrap();
        let msgs = r.unwrap_or_else(|e| panic!("session {i}: {}", describe(&e)));
        let v = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(v, Some(format!("{i}:{i}")));
        keep.push(s);
    }
    assert_eq!(env.metric("torpor_wakes_total").await, wakes0 + 1.0);
    let c = env.cluster_status().await;
    assert_eq!(c["sessions"]["attached"], 20, "{c}");
    env.shutdown_after(keep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_wake_starts_the_backend() {
    let (env, s) = TestEnv::pg_session_with("SET application_name = 'woken'").await;
    env.sleep_ok().await;
    env.wake_ok().await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    let pid = c["backend_pid"].as_u64().expect("pid after wake") as u32;
    assert_eq!(s.text("SHOW application_name").await, "woken");
    assert_eq!(
        env.backend_pid().await,
        Some(pid),
        "the query should use the woken backend"
    );
    // Unknown cluster names are a 404.
    let r = env.admin("POST", "/api/clusters/nope/sleep").await;
    assert_eq!(r.status, 404, "{}", r.body);
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timer_parks_quiet_clients() {
    let (env, s) = TestEnv::pg_session(Opts::default().idle_after("300ms")).await;
    s.exec("CREATE TEMP TABLE t AS SELECT 7 AS x; SET application_name = 'quiet'")
        .await;
    // The quiet, connected client does not keep the cluster up.
    let c = env
        .wait_for(SLOW, "standby by the idle timer", |c| {
            c["state"] == "standby" && c["backend_pid"].is_null()
        })
        .await;
    assert_eq!(c["sessions"]["parked"], 1, "{c}");
    assert_eq!(s.text("SELECT x || application_name FROM t, (SELECT current_setting('application_name') AS application_name) a").await, "7quiet");
    // And again: the timer keeps working after a wake.
    let pid = env.running_pid().await;
    env.wait_for_standby("second idle standby").await;
    assert_pid_gone(pid);
    assert_eq!(s.text("SELECT x FROM t").await, "7");
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timer_waits_for_an_open_transaction() {
    let (env, s) = TestEnv::pg_session(Opts::default().idle_after("200ms")).await;
    s.exec("BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    let pid = env.running_pid().await;
    // Ten idle timeouts later the transaction still holds the backend.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    assert_eq!(env.backend_pid().await, Some(pid));
    s.exec("COMMIT").await;
    env.wait_for_standby("standby after COMMIT").await;
    assert_pid_gone(pid);
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_57p01() {
    let (env, attached) = TestEnv::pg_session(Opts::default()).await;
    assert_eq!(attached.text("SELECT 1 + 0").await, "1");
    let parked = env.connect_with("SET application_name = 'parked'").await;
    env.sleep_ok().await;
    assert_eq!(attached.text("SELECT 2").await, "2");
    env.shutdown().await;
    for (what, s) in [("attached", attached), ("parked", parked)] {
        let err = s
            .ended()
            .await
            .expect_err("connection ended without an error");
        assert_eq!(sqlstate(&err), Some("57P01"), "{what}: {}", describe(&err));
    }
}

/// Phase 2 of a drain must not let the dying backend's goodbye reach a client: 20 sessions,
/// five sleep/wake cycles, and no session may be closed or see an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_many_cycles_lose_nothing() {
    let env = TestEnv::default().await;
    let mut sessions = env
        .connect_each(20, |i| format!("SET myapp.n = '{i}'"))
        .await;
    for cycle in 0..5 {
        env.sleep_ok().await;
        if let Some(i) = sessions
            .iter()
            .position(|s| s.done.is_finished() || s.is_closed())
        {
            let how = sessions.swap_remove(i).ended().await;
            panic!("cycle {cycle}: session {i} was closed by the drain: {how:?}");
        }
        for (i, s) in sessions.iter().enumerate() {
            let v = s.simple_query("SELECT current_setting('myapp.n')").await;
            let v = v.unwrap_or_else(|e| panic!("cycle {cycle}: session {i}: {}", describe(&e)));
            assert_eq!(
                v.len(),
                3,
                "cycle {cycle}: session {i}: row, RowDescription, CommandComplete"
            );
        }
    }
    env.shutdown_after(sessions).await;
}

/// The postmaster dies under torpor (kill -9). A session attached to it loses its connection
/// (its state died with the backend), but the cluster is not left pointing at a dead server:
/// the next wake starts a new one, parked sessions restore onto it, new clients connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_is_started_again() {
    let (env, parked) =
        TestEnv::pg_session_with("CREATE TEMP TABLE keep(x int); INSERT INTO keep VALUES (7)")
            .await;
    env.sleep_ok().await;

    let attached = env.connect().await;
    assert_eq!(attached.text("SELECT 1 + 0").await, "1");
    let pid = env.running_pid().await;
    // SAFETY: kill(2) on the postmaster this test's torpor started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    // Gone, or a zombie nobody has reaped yet.
    let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.contains(") Z"),
        Err(_) => true,
    };
    let deadline = Instant::now() + SLOW;
    while !dead() {
        assert!(
            Instant::now() < deadline,
            "postmaster {pid} survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(parked.text("SELECT sum(x) FROM keep").await, "7");
    let new = env.backend_pid().await.expect("running again");
    assert_ne!(new, pid);
    // The backend process the attached session used outlived its postmaster; it was ended
    // so the new server could start, and that session's state is gone with it.
    let err = attached
        .simple_query("SELECT 2")
        .await
        .expect_err("a query on the dead server's backend succeeded");
    assert!(
        matches!(sqlstate(&err), Some("57P01") | None),
        "{}",
        describe(&err)
    );
    let fresh = env.connect().await;
    assert_eq!(fresh.text("SELECT 3").await, "3");
    env.shutdown_after((parked, attached, fresh)).await;
}

/// torpor reaches the server it runs over the server's Unix socket (cheaper per query than
/// loopback TCP), before and after a scale-to-zero; TCP clients of the server still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_reach_the_backend_over_its_unix_socket() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    let how = "SELECT coalesce(host(inet_server_addr()), 'unix socket')";
    assert_eq!(s.text(how).await, "unix socket");
    env.sleep_ok().await;
    assert_eq!(s.text(how).await, "unix socket");
    let direct = connect_to(env.backend_addr(), USER, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("direct: {}", describe(&e)));
    assert_eq!(direct.text(how).await, "127.0.0.1");
    env.shutdown_after((s, direct)).await;
}

/// A session that changed state saves its snapshot once it has been quiet for half the idle
/// timeout, while the server still runs; the drain at the full timeout then recaptures only
/// what changed after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sessions_save_their_snapshot_ahead_of_the_drain() {
    let (env, s) = TestEnv::pg_session(Opts::default().idle_after("10s")).await;
    s.exec("CREATE TEMP TABLE t AS SELECT 7 AS x; SET application_name = 'early'")
        .await;
    let pid = env.running_pid().await;
    env.wait_for_early_snapshot().await;
    assert_eq!(env.backend_pid().await, Some(pid));
    let early = env.stored_snapshots();
    assert_eq!(early.len(), 1, "{early:?}");

    // A change after the early snapshot is captured by the drain.
    s.exec("SET application_name = 'later'; INSERT INTO t VALUES (8)")
        .await;
    env.wait_for_idle_stop(pid).await;
    assert_eq!(env.metric("torpor_drains_total").await, 1.0);
    assert_eq!(
        s.text("SELECT string_agg(x::text, ',' ORDER BY x) || current_setting('application_name') FROM t")
            .await,
        "7,8later"
    );
    env.shutdown_after(s).await;
}

/// Early snapshots wait for the whole cluster to be quiet: while another session holds a
/// transaction open no drain can come, so none is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_holds_off_early_snapshots() {
    let (env, quiet) = TestEnv::pg_session(Opts::default().idle_after("6s")).await;
    quiet.exec("SET application_name = 'quiet'").await;
    let busy = env
        .connect_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await;
    // Past half the idle timeout: no snapshot, the transaction keeps the cluster busy.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        env.stored_snapshots().is_empty(),
        "{:?}",
        env.stored_snapshots()
    );
    busy.exec("COMMIT").await;
    env.wait_for_early_snapshot().await;
    assert_eq!(quiet.text("SHOW application_name").await, "quiet");
    env.shutdown_after((quiet, busy)).await;
}
