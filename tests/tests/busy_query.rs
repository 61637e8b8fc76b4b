//! `busy_query`: the database's own work, which no session of torpor's knows about, holds off
//! a drain and a freeze. A connection straight to the backend port running a query, a
//! walsender reading a logical slot, a MariaDB thread at work, the operator's own statement,
//! and one that fails; and the check's own connection is no client of torpor's.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;
use torpor_tests::harness::{
    Opts, PASSWORD, Pg, SLOW, TestConfig, TestEnv, USER, assert_pid_gone, client_config,
    connect_from, describe,
};
use torpor_tests::mysql::text;

/// A client connected straight to the server, as `application_name`.
async fn direct(env: &TestEnv, application_name: &str) -> Pg {
    let mut config = client_config(env.backend_addr(), USER, PASSWORD);
    config.application_name(application_name);
    let (pg, _) = connect_from(env.backend_addr(), &config)
        .await
        .unwrap_or_else(|e| panic!("direct: {}", describe(&e)));
    pg
}

type Job = tokio::task::JoinHandle<(Pg, Result<(), tokio_postgres::Error>)>;

/// Runs `sql` in the background on a connection straight to the server, as
/// `application_name`, and waits until the server shows it running (asked through torpor's
/// `client`: client activity, which keeps the idle timer off meanwhile). The task gives the
/// connection back with the outcome.
async fn job(env: &TestEnv, client: &Pg, application_name: &str, sql: &'static str) -> Job {
    let pg = direct(env, application_name).await;
    let job = tokio::spawn(async move {
        let r = pg.client.batch_execute(sql).await;
        (pg, r)
    });
    let deadline = Instant::now() + SLOW;
    let ask = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '{}'",
        sql.replace('\'', "''")
    );
    while client.text(&ask).await != "1" {
        assert!(Instant::now() < deadline, "{sql} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job
}

/// A forced sleep refused for a reason that contains `reason`: the 409 names it, and so do
/// /api/clusters and the blocker metric; the server still runs.
async fn refused_for(env: &TestEnv, reason: &str, pid: u32) -> String {
    let refused0 = env.metric("torpor_drains_refused_total").await;
    let body = env.sleep_refused().await;
    let found = body["blockers"][0].as_str().unwrap_or_default().to_string();
    assert!(found.contains(reason), "expected {reason:?} in {body}");
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    assert_eq!(c["blockers"][0], found.as_str(), "{c}");
    assert_eq!(env.backend_pid().await, Some(pid));
    assert!(env.metric("torpor_drains_refused_total").await > refused0);
    let metrics = env.metrics().await;
    // Quotes are escaped in a label's value.
    let label = reason.replace('"', "\\\"");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("torpor_drain_blocker_info") && l.contains(&label)),
        "no blocker_info for {reason:?} in:\n{metrics}"
    );
    found
}

/// A pg_cron-like job: a session connected straight to the backend port runs a query. A
/// forced sleep is refused naming it, and the idle loop stops the server only once it ended
/// (the query itself succeeds: a stop under it would have ended it with 57P01).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_a_direct_connection_holds_off_the_stop_until_it_ends() {
    let (env, client) = TestEnv::pg_session(Opts::default().idle_after("2s")).await;
    let pid = env.running_pid().await;
    let sql = "SELECT pg_sleep(5)";
    let running = job(&env, &client, "nightly-export", sql).await;
    let job_pid = client
        .text("SELECT pid FROM pg_stat_activity WHERE application_name = 'nightly-export'")
        .await;

    let why = refused_for(&env, "busy_query: 1 other connection(s) at work", pid).await;
    assert_eq!(
        why,
        format!(
            "busy_query: 1 other connection(s) at work: pid {job_pid} (nightly-export, active: {sql})"
        )
    );

    let (job, outcome) = running.await.unwrap();
    outcome.unwrap_or_else(|e| panic!("the job was cut short: {}", describe(&e)));
    assert_eq!(env.metric("torpor_drains_total").await, 0.0);
    assert_eq!(env.backend_pid().await, Some(pid));
    // No client acts from here on: the idle loop asks again on its own.
    env.wait_for_idle_stop(pid).await;
    let c = env.cluster_status().await;
    assert_eq!(c["blockers"], serde_json::json!([]), "{c}");
    env.shutdown_after((client, job)).await;
}

/// torpor's own sessions are not the database's own work, even one that carries a read-only
/// transaction ("idle in transaction" on the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_carrying_a_read_transaction_is_not_the_database_at_work() {
    let (env, client) = TestEnv::pg_session(Opts::default()).await;
    client.exec("BEGIN").await;
    assert_eq!(
        client
            .text("SELECT count(*) FROM pg_class WHERE relname = 'pg_class'")
            .await,
        "1"
    );
    let watch = direct(&env, "watch").await;
    assert_eq!(
        watch
            .text("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'")
            .await,
        "1"
    );
    env.sleep_ok().await;
    assert_eq!(client.text("SELECT 1").await, "1");
    env.shutdown_after(client).await;
}

/// `pg_recvlogical` reading a logical slot: its walsender keeps the cluster up, whatever
/// state it is in; once it is stopped, the cluster stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walsender_keeps_the_cluster_up_until_it_goes() {
    let mut cfg = TestConfig::new(&Opts::default().idle_after("2s")).await;
    cfg.toml = cfg.toml.replace(
        r#"settings = { fsync = "off" }"#,
        r#"settings = { fsync = "off", wal_level = "logical" }"#,
    );
    let env = TestEnv::start_config(cfg).await;
    let client = env.connect().await;
    client
        .exec("SELECT pg_create_logical_replication_slot('torpor_busy', 'test_decoding')")
        .await;
    let pid = env.running_pid().await;
    let mut reader = Reader(
        Command::new("/usr/lib/postgresql/15/bin/pg_recvlogical")
            .args([
                "--start",
                "--slot",
                "torpor_busy",
                "--file",
                "-",
                "--no-loop",
            ])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &env.backend_port.to_string(),
            ])
            .args(["--username", USER, "--dbname", USER])
            .env("PGPASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run pg_recvlogical"),
    );
    // Asked through torpor: client activity, which keeps the idle timer off meanwhile.
    let deadline = Instant::now() + SLOW;
    while client
        .text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'")
        .await
        != "1"
    {
        assert!(Instant::now() < deadline, "no walsender");
        assert!(
            reader.0.try_wait().unwrap().is_none(),
            "pg_recvlogical ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Three idle timeouts: the idle loop was refused, more than once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    assert!(
        c["blockers"][0]
            .as_str()
            .is_some_and(|b| b.contains("(walsender pg_recvlogical")),
        "{c}"
    );
    assert!(env.metric("torpor_drains_refused_total").await >= 2.0);
    refused_for(&env, "walsender pg_recvlogical", pid).await;

    reader.stop();
    env.wait_for_idle_stop(pid).await;
    env.shutdown_after(client).await;
}

/// A child process the test stops by its pid, also when the test fails.
struct Reader(Child);

impl Reader {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// MariaDB: a thread connected straight to the server running `SELECT SLEEP(5)` refuses the
/// drain the same way, named by its thread id; once it ended, the drain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_thread_at_work_refuses_the_drain() {
    let (env, client) = TestEnv::my_session(Opts::default()).await;
    let pid = env.running_pid().await;
    let mut job = env.my_direct().await;
    let thread = text(&mut job, "SELECT CONNECTION_ID()").await;
    let running = tokio::spawn(async move {
        let r = job.query_drop("SELECT SLEEP(5)").await;
        (job, r)
    });
    let mut watch = env.my_direct().await;
    let deadline = Instant::now() + SLOW;
    let ask = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread} AND INFO = 'SELECT SLEEP(5)'"
    );
    while text(&mut watch, &ask).await != "1" {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watch);

    let why = refused_for(&env, "busy_query: 1 other connection(s) at work", pid).await;
    assert_eq!(
        why,
        format!(
            "busy_query: 1 other connection(s) at work: thread {thread} ({USER}, Query: SELECT SLEEP(5))"
        )
    );
    let (job, outcome) = running.await.unwrap();
    outcome.expect("the job was cut short");
    env.sleep_ok().await;
    env.shutdown_after((client, job)).await;
}

fn with_query(sql: &str) -> Opts {
    Opts::default().cluster_setting(&format!("busy_query = {}", toml_string(sql)))
}

fn toml_string(s: &str) -> String {
    Value::String(s.into()).to_string()
}

/// The operator's own statement: true or non-zero refuses, false lets the drain go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_busy_query_refuses_and_then_allows() {
    let (env, client) =
        TestEnv::pg_session(with_query("SELECT count(*) > 0 FROM busy_jobs;")).await;
    client
        .exec("CREATE TABLE busy_jobs(id int); INSERT INTO busy_jobs VALUES (1)")
        .await;
    let pid = env.running_pid().await;
    let why = refused_for(
        &env,
        "busy_query \"SELECT count(*) > 0 FROM busy_jobs\"",
        pid,
    )
    .await;
    assert_eq!(
        why,
        "busy_query \"SELECT count(*) > 0 FROM busy_jobs\" returned t"
    );
    // A direct connection at work is none of this query's business.
    let running = job(&env, &client, "job", "SELECT pg_sleep(30)").await;
    client.exec("DELETE FROM busy_jobs").await;
    env.sleep_ok().await;
    let (job, outcome) = running.await.unwrap();
    assert!(outcome.is_err(), "the stop ended the job");
    assert_eq!(client.text("SELECT count(*) FROM busy_jobs").await, "0");
    env.shutdown_after((client, job)).await;
}

/// A busy query that fails refuses the drain with its error: nothing is stopped on a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_busy_query_refuses_with_its_error() {
    let (env, client) =
        TestEnv::pg_session(with_query("SELECT count(*) > 0 FROM no_such_table")).await;
    let pid = env.running_pid().await;
    let why = refused_for(&env, "failed", pid).await;
    assert_eq!(
        why,
        "busy_query \"SELECT count(*) > 0 FROM no_such_table\" failed: relation \"no_such_table\" does not exist"
    );
    env.shutdown_after(client).await;

    let (env, client) = TestEnv::pg_session(with_query("SELEC 1")).await;
    let pid = env.running_pid().await;
    let why = refused_for(&env, "failed", pid).await;
    assert_eq!(
        why,
        "busy_query \"SELEC 1\" failed: syntax error at or near \"SELEC\""
    );
    env.shutdown_after(client).await;
}

/// One that never answers is given up on after 10 s, and refuses too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_query_that_hangs_is_given_up_on() {
    let (env, client) =
        TestEnv::pg_session(with_query("SELECT count(*) = 0 FROM pg_sleep(60)")).await;
    let pid = env.running_pid().await;
    let started = Instant::now();
    refused_for(&env, "failed", pid).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "{took:?}"
    );
    env.shutdown_after(client).await;
}

/// `busy_query = ""`: nothing is asked, and work on a direct connection is stopped with the
/// server, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_busy_query_turns_the_check_off() {
    let (env, client) = TestEnv::pg_session(with_query("")).await;
    let running = job(&env, &client, "job", "SELECT pg_sleep(30)").await;
    env.sleep_ok().await;
    let (job, outcome) = running.await.unwrap();
    assert!(outcome.is_err(), "the stop ended the job");
    env.shutdown_after((client, job)).await;
}

/// The check's connection is torpor's own: while it runs (slowly, here) the cluster has the
/// same sessions, none busy, and the drain it came before is neither aborted nor refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_is_no_client_of_torpor() {
    let (env, client) =
        TestEnv::pg_session(with_query("SELECT count(*) = 0 FROM pg_sleep(2)")).await;
    let pid = env.running_pid().await;
    let watch = direct(&env, "watch").await;
    let sessions = env.cluster_status().await["sessions"].clone();
    let listed = env
        .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
        .await
        .json();
    let sleep = {
        let admin = env.admin;
        let token = env.admin_token();
        let path = format!("/api/clusters/{}/sleep", env.cluster);
        tokio::spawn(async move {
            torpor_tests::http::request_as(admin, "POST", &path, token.as_deref())
                .await
                .map(|r| r.status)
        })
    };
    let deadline = Instant::now() + SLOW;
    while watch
        .text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'torpor' \
             AND state = 'active' AND query LIKE '%pg_sleep(2)%'",
        )
        .await
        != "1"
    {
        assert!(Instant::now() < deadline, "the check never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "running", "{c}");
    assert_eq!(c["sessions"], sessions, "{c}");
    let now = env
        .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
        .await
        .json();
    assert_eq!(
        now.as_array().map(Vec::len),
        listed.as_array().map(Vec::len)
    );
    assert_eq!(env.metric("torpor_busy_sessions").await, 0.0);

    assert_eq!(sleep.await.unwrap().unwrap(), 200);
    assert_eq!(env.metric("torpor_drains_aborted_total").await, 0.0);
    assert_eq!(env.metric("torpor_drains_refused_total").await, 0.0);
    assert_pid_gone(pid);
    env.shutdown_after((client, watch)).await;
}

/// A frozen database can't finish its own work either: the check holds off the freeze too,
/// and once the work ended the idle loop freezes the server on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_at_work_is_not_frozen() {
    let (env, client) =
        TestEnv::pg_session(Opts::default().cluster_setting("freeze_after = \"300ms\"")).await;
    let sql = "SELECT pg_sleep(4)";
    let running = job(&env, &client, "job", sql).await;
    // Freezes would have been tried every 300 ms meanwhile.
    let seen_running_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < seen_running_until {
        let c = env.cluster_status().await;
        assert_eq!(c["state"], "running", "{c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.metric("torpor_freezes_total").await, 0.0);
    let (job, outcome) = running.await.unwrap();
    outcome.unwrap_or_else(|e| panic!("the job was cut short: {}", describe(&e)));
    env.wait_for(SLOW, "frozen", |c| c["state"] == "frozen")
        .await;
    env.shutdown_after((client, job)).await;
}

/// With only a `password_hash`, torpor logs in for the check with the key a live session of
/// the first user lends. With no such session it can't log in: the drain goes on as without a
/// busy_query, rather than keeping the server up until that user comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_a_password_hash_the_check_borrows_a_sessions_key() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    for pw in [PASSWORD, torpor_tests::harness::OTHER_PASSWORD] {
        let line = format!("password = \"{pw}\"");
        let hash = torpor::hash_password::hash(torpor::config::Protocol::Postgres, pw).unwrap();
        cfg.toml = cfg
            .toml
            .replace(&line, &format!("password_hash = \"{hash}\""));
    }
    assert!(!cfg.toml.contains(PASSWORD), "{}", cfg.toml);
    let env = TestEnv::start_config(cfg).await;
    let client = env.connect().await;
    let pid = env.running_pid().await;
    let sql = "SELECT pg_sleep(30)";
    let running = job(&env, &client, "job", sql).await;
    refused_for(&env, "(job, active: SELECT pg_sleep(30))", pid).await;

    drop(client);
    env.wait_for(SLOW, "the client gone", |c| {
        c["sessions"]["attached"] == 0 && c["sessions"]["parked"] == 0
    })
    .await;
    env.sleep_ok().await;
    let (job, outcome) = running.await.unwrap();
    assert!(outcome.is_err(), "the stop ended the job");
    env.shutdown_after(job).await;
}
