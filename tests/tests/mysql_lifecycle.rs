//! The MySQL cluster lifecycle as clients and operators see it: repeated sleeps, blockers that
//! refuse a drain, KILL with the id a client was given, the admin API and metrics, and real
//! command-line clients (mariadb, mariadb-slap) across a forced sleep.

use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use torpor_tests::asleep::Cycles;
use torpor_tests::clients::output_text;
use torpor_tests::harness::{Opts, PASSWORD, SLOW, TestEnv, USER};
use torpor_tests::mysql::{code, connect_quiet, exec, exec_each, text, value};
use torpor_tests::mywire::com;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sleep_wake_cycles_without_client_errors() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(
        &mut c,
        "CREATE TEMPORARY TABLE log (i INT PRIMARY KEY, conn BIGINT)",
    )
    .await;
    exec(&mut c, "SET @tag = 'cycler'").await;
    exec(
        &mut c,
        "PREPARE bump FROM 'INSERT INTO log VALUES (?, CONNECTION_ID())'",
    )
    .await;
    let stmt = c
        .prep("SELECT COUNT(*), COALESCE(SUM(i), 0) FROM log")
        .await
        .unwrap();
    let mut cycles = Cycles::start(&env).await;
    for i in 0..10i64 {
        c.query_drop(format!("SET @i = {i}"))
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        c.query_drop("EXECUTE bump USING @i")
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        let row: Option<(i64, i64)> = c
            .exec_first(&stmt, ())
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        assert_eq!(row, Some((i + 1, i * (i + 1) / 2)), "cycle {i}");
        assert_eq!(text(&mut c, "SELECT @tag").await, "cycler", "cycle {i}");
        cycles.sleep(&env).await;
    }
    // Every cycle ran on its own mariadbd.
    assert_eq!(text(&mut c, "SELECT COUNT(*) FROM log").await, "10");
    cycles.check(&env, 10, 10.0).await;
    c.ping().await.unwrap();
    c.disconnect().await.unwrap();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_blocks_the_drain() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    let mut idle = env.my().await;
    exec(&mut idle, "SET @who = 'bystander'").await;
    exec_each(
        &mut c,
        &[
            "CREATE TABLE t (x INT) ENGINE=InnoDB",
            "BEGIN",
            "INSERT INTO t VALUES (1)",
        ],
    )
    .await;
    let pid = env.running_pid().await;
    env.expect_refused("open transaction", pid).await;
    // Nothing was lost: the transaction goes on and commits.
    exec(&mut c, "INSERT INTO t VALUES (2)").await;
    exec(&mut c, "COMMIT").await;
    assert_eq!(text(&mut idle, "SELECT @who").await, "bystander");
    env.expect_unblocked().await;
    assert_eq!(text(&mut c, "SELECT SUM(x) FROM t").await, "3");
    env.shutdown_after((c, idle)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_off_with_uncommitted_work_blocks_the_drain() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "CREATE TABLE t (x INT) ENGINE=InnoDB").await;
    exec(&mut c, "SET autocommit = 0").await;
    // No work yet: nothing to block.
    env.sleep_ok().await;
    assert_eq!(text(&mut c, "SELECT @@autocommit").await, "0");
    exec(&mut c, "INSERT INTO t VALUES (5)").await;
    let pid = env.running_pid().await;
    env.expect_refused("transaction", pid).await;
    exec(&mut c, "COMMIT").await;
    env.expect_unblocked().await;
    assert_eq!(text(&mut c, "SELECT @@autocommit").await, "0");
    let mut other = env.my().await;
    assert_eq!(text(&mut other, "SELECT SUM(x) FROM t").await, "5");
    env.shutdown_after((c, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_tables_blocks_the_drain() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "CREATE TABLE t (x INT)").await;
    exec(&mut c, "LOCK TABLES t WRITE").await;
    let pid = env.running_pid().await;
    env.expect_refused("LOCK TABLES", pid).await;
    exec(&mut c, "INSERT INTO t VALUES (1)").await;
    exec(&mut c, "UNLOCK TABLES").await;
    env.expect_unblocked().await;
    assert_eq!(text(&mut c, "SELECT COUNT(*) FROM t").await, "1");
    env.shutdown_after(c).await;
}

/// Waits until a statement containing `marker` is running, seen from another session.
async fn wait_running(watch: &mut Conn, marker: &str) {
    let deadline = Instant::now() + SLOW;
    let q = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' \
         AND ID <> @@pseudo_thread_id"
    );
    while text(watch, &q).await != "1" {
        assert!(Instant::now() < deadline, "{marker} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_query_blocks_the_drain() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    let mut watch = env.my().await;
    let pid = env.running_pid().await;
    let running = tokio::spawn(async move {
        let r: Option<i64> = c
            .query_first("SELECT SLEEP(4) /* blocker-q */")
            .await
            .unwrap();
        (r, c)
    });
    wait_running(&mut watch, "blocker-q").await;
    env.expect_refused("query in progress", pid).await;
    let (r, mut c) = tokio::time::timeout(SLOW, running).await.unwrap().unwrap();
    assert_eq!(r, Some(0));
    env.expect_unblocked().await;
    assert_eq!(text(&mut c, "SELECT 1").await, "1");
    env.shutdown_after((c, watch)).await;
}

/// A client that stops reading in the middle of a big result: the rest of the stream is still
/// the backend's to send, so the drain must wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_result_stream_blocks_the_drain() {
    let (env, mut raw) = TestEnv::my_raw_session().await;
    let pid = env.running_pid().await;
    let mut p = vec![com::QUERY];
    p.extend_from_slice(b"SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100000");
    raw.command(&p).await.unwrap();
    // Read the start of the result only.
    let (_, first) = raw.recv().await.unwrap().expect("a column count");
    assert_eq!(first, vec![2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.expect_refused("query in progress", pid).await;
    // Read the rest: 100000 rows, then the stream is done and the drain can happen.
    let mut rows = 0;
    let mut eofs = 0;
    while eofs < 2 {
        let (_, p) = raw.recv().await.unwrap().expect("the rest of the result");
        if p.first() == Some(&0xfe) && p.len() < 9 {
            eofs += 1;
        } else if eofs == 1 {
            rows += 1;
        }
    }
    assert_eq!(rows, 100000);
    env.expect_unblocked().await;
    assert_eq!(raw.value("SELECT 7").await.as_deref(), Some("7"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_with_the_handshake_id_after_a_wake() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    let id = c.id();
    exec(&mut c, "SET @keep = 'still here'").await;
    env.sleep_ok().await;
    let mut killer = env.my().await;
    assert_ne!(killer.id(), id);
    let started = Instant::now();
    let running = tokio::spawn(async move {
        let r = c.query_drop("SELECT SLEEP(30) /* kill-me */").await;
        (r, c)
    });
    wait_running(&mut killer, "kill-me").await;
    exec(&mut killer, &format!("KILL QUERY {id}")).await;
    let (r, mut c) = tokio::time::timeout(Duration::from_secs(25), running)
        .await
        .expect("the killed query did not end within 25 s")
        .unwrap();
    let err = r.expect_err("SLEEP(30) finished instead of being killed");
    assert_eq!(code(&err), Some(1317), "{err}");
    assert!(started.elapsed() < Duration::from_secs(25));
    // The session survives a KILL QUERY, with its state.
    assert_eq!(text(&mut c, "SELECT @keep").await, "still here");
    assert_eq!(c.id(), id);

    // KILL (CONNECTION) of a parked session ends it without waking anything.
    env.sleep_ok().await;
    exec(&mut killer, &format!("KILL {id}")).await;
    let r = c.query_drop("SELECT 1").await;
    assert!(r.is_err(), "the killed connection still answers");
    env.shutdown_after(killer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_metrics_cover_mysql_clusters() {
    let (env, mut a) = TestEnv::my_session(Opts::default()).await;
    let mut b = env.my().await;
    exec(&mut a, "SELECT 1").await;
    exec(&mut b, "SELECT 1").await;
    let c = env.cluster_status().await;
    assert_eq!(c["protocol"], "mysql", "{c}");
    assert_eq!(c["state"], "running", "{c}");
    let pid = c["backend_pid"].as_u64().expect("pid") as u32;
    assert_eq!(env.postmaster_pid(), Some(pid), "pid file vs admin API");
    assert_eq!(c["sessions"]["attached"], 2, "{c}");
    assert_eq!(c["sessions"]["parked"], 0, "{c}");
    assert_eq!(env.metric("torpor_cluster_up").await, 1.0);

    exec(&mut a, "BEGIN").await;
    let c = env.cluster_status().await;
    assert!(c["blockers"].to_string().contains("transaction"), "{c}");
    assert_eq!(env.metric("torpor_drain_blockers").await, 1.0);
    assert_eq!(env.metric("torpor_busy_sessions").await, 1.0);
    exec(&mut a, "COMMIT").await;
    assert_eq!(env.metric("torpor_drain_blockers").await, 0.0);

    env.sleep_ok().await;
    let c = env.cluster_status().await;
    assert_eq!(c["sessions"]["attached"], 0, "{c}");
    assert_eq!(c["sessions"]["parked"], 2, "{c}");
    assert_eq!(env.metric("torpor_cluster_up").await, 0.0);
    let m = env.metrics().await;
    assert!(
        m.contains("torpor_sessions{cluster=\"my\",attachment=\"parked\"} 2"),
        "{m}"
    );
    // Connecting while asleep doesn't wake; the first query does.
    let wakes0 = env.metric("torpor_wakes_total").await;
    let mut late = connect_quiet(env.listen, Some("my")).await;
    assert_eq!(env.cluster_status().await["state"], "standby");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes0);
    assert_eq!(text(&mut late, "SELECT CURRENT_USER()").await, "app@%");
    assert_eq!(env.metric("torpor_wakes_total").await, wakes0 + 1.0);
    let c = env.cluster_status().await;
    assert_eq!(c["sessions"]["attached"], 1, "{c}");
    assert_eq!(c["sessions"]["parked"], 2, "{c}");
    // A parked session attaches on its next query.
    assert_eq!(text(&mut a, "SELECT 2").await, "2");
    assert_eq!(env.cluster_status().await["sessions"]["attached"], 2);
    env.shutdown_after((a, b, late)).await;
}

fn mariadb_bin(names: &[&str]) -> String {
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let p = format!("{dir}/{n}");
            if std::path::Path::new(&p).exists() {
                return p;
            }
        }
    }
    panic!("none of {names:?} installed");
}

fn client_args(env: &TestEnv) -> Vec<String> {
    vec![
        "--protocol=TCP".into(),
        "-h127.0.0.1".into(),
        format!("-P{}", env.listen.port()),
        format!("-u{USER}"),
        format!("-p{PASSWORD}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_works_across_a_sleep() {
    let env = TestEnv::start(Opts::mysql()).await;
    let cli = mariadb_bin(&["mariadb", "mysql"]);
    // The CLI runs a script whose middle waits long enough for a forced sleep to happen
    // between two of its statements.
    let script = "CREATE TEMPORARY TABLE t (x INT);\n\
                  INSERT INTO t VALUES (1), (2);\n\
                  SET @before = @@pseudo_thread_id, @id = CONNECTION_ID();\n\
                  SELECT SLEEP(0);\n\
                  SELECT 'marker-a';\n\
                  DO SLEEP(3);\n\
                  SELECT CONCAT('sum=', SUM(x)) FROM t;\n\
                  SELECT CONCAT('changed=', @before <> @@pseudo_thread_id, \
                  ' same id=', @id = CONNECTION_ID());\n";
    let mut args = client_args(&env);
    args.extend(["--batch".into(), "--skip-column-names".into(), "my".into()]);
    let mut child = tokio::process::Command::new(&cli)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    // First half, then wait for the CLI to sit idle, sleep the cluster, then the rest.
    let (first, rest) = script.split_at(script.find("DO SLEEP").unwrap());
    stdin.write_all(first.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let deadline = Instant::now() + SLOW;
    loop {
        let c = env.cluster_status().await;
        if c["sessions"]["attached"] == 1 && c["blockers"] == serde_json::json!([]) {
            // Give the CLI time to have run every statement of the first half.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            break;
        }
        assert!(Instant::now() < deadline, "the CLI never connected: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.sleep_ok().await;
    stdin
        .write_all(rest.replace("DO SLEEP(3);\n", "").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(SLOW, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "mariadb failed: {stderr}\n{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec!["0", "marker-a", "sum=3", "changed=1 same id=1"],
        "stderr: {stderr}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_slap_works_across_a_sleep() {
    let env = TestEnv::start(Opts::mysql()).await;
    let slap = mariadb_bin(&["mariadb-slap", "mysqlslap"]);
    let mut args = client_args(&env);
    args.extend([
        "--concurrency=4".into(),
        "--iterations=3".into(),
        "--auto-generate-sql".into(),
        "--number-of-queries=2000".into(),
        "--create-schema=slap_db".into(),
    ]);
    let child = tokio::process::Command::new(&slap)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Force sleeps while it runs; a refusal (a query in flight) is fine, an error is not.
    let sleeper = async {
        let mut slept = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while slept < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (status, body) = env.sleep().await;
            match status {
                200 => slept += 1,
                409 => {}
                _ => panic!("sleep: {status} {body}"),
            }
        }
        slept
    };
    let (out, slept) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()),
        sleeper
    );
    let out = out.expect("mariadb-slap timed out").unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(
        out.status.success(),
        "mariadb-slap failed (slept {slept}x): {stderr}\n{stdout}"
    );
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(
        slept >= 1,
        "no forced sleep succeeded while mariadb-slap ran:\n{stdout}"
    );
    assert!(
        stdout.contains("Number of clients running queries: 4"),
        "{stdout}"
    );
    eprintln!("mariadb-slap with {slept} forced sleeps:\n{stdout}");
    // At a quiet moment a sleep always works.
    env.sleep_ok().await;
    let mut c = env.my().await;
    assert_eq!(value(&mut c, "SELECT 1").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

/// torpor reaches the mariadbd it runs over the server's Unix socket (cheaper per query than
/// loopback TCP), before and after a scale-to-zero; TCP clients of the server still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_reach_the_backend_over_its_unix_socket() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    // The host part of USER() is what the server saw: `localhost` for its socket.
    let user = "SELECT USER()";
    assert_eq!(text(&mut c, user).await, format!("{USER}@localhost"));
    env.sleep_ok().await;
    assert_eq!(text(&mut c, user).await, format!("{USER}@localhost"));
    let mut direct = env.my_direct().await;
    assert_eq!(text(&mut direct, user).await, format!("{USER}@127.0.0.1"));
    env.shutdown_after((c, direct)).await;
}

/// A session that changed state saves its snapshot once it has been quiet for half the idle
/// timeout, while the server still runs; the drain at the full timeout then recaptures only
/// what changed after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sessions_save_their_snapshot_ahead_of_the_drain() {
    let (env, mut c) = TestEnv::my_session(Opts::default().idle_after("10s")).await;
    exec_each(
        &mut c,
        &[
            "CREATE TEMPORARY TABLE t (x INT)",
            "INSERT INTO t VALUES (7)",
            "SET @v = 'early'",
        ],
    )
    .await;
    let pid = env.running_pid().await;
    env.wait_for_early_snapshot().await;
    assert_eq!(env.backend_pid().await, Some(pid));
    assert_eq!(env.stored_snapshots().len(), 1);

    // A change after the early snapshot is captured by the drain.
    exec(&mut c, "SET @v = 'later'").await;
    exec(&mut c, "INSERT INTO t VALUES (8)").await;
    env.wait_for_idle_stop(pid).await;
    assert_eq!(env.metric("torpor_drains_total").await, 1.0);
    assert_eq!(
        text(
            &mut c,
            "SELECT CONCAT(GROUP_CONCAT(x ORDER BY x), @v) FROM t"
        )
        .await,
        "7,8later"
    );
    env.shutdown_after(c).await;
}
