//! The database and the disk failing under torpor: more waking sessions than the server has
//! connections, a `kill -9` of the server, and a full snapshot disk. No session loses its
//! state to any of them.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::process::Command;
use tokio::task::JoinSet;
use torpor_tests::binary::{self, torpor_bin};
use torpor_tests::faults;
use torpor_tests::harness::{
    Opts, PASSWORD, Pg, SLOW, TestConfig, TestEnv, USER, connect_to, describe, init_tracing,
    sqlstate,
};
use torpor_tests::mysql::{code, exec, text as my_text, try_connect_my};

const PG_STATE: &str = "SET application_name = 'kept'; \
    CREATE TEMP TABLE t AS SELECT g AS x FROM generate_series(1, 100) g";
const PG_CHECK: &str = "SELECT current_setting('application_name') || ':' || sum(x) FROM t";
const PG_EXPECTED: &str = "kept:5050";

/// Each session's own value, from its own temporary table.
const MINE: &str = "SELECT CAST(x AS CHAR) FROM mine";

/// What a session's query came to, and the session.
type Answer<C, E> = (usize, Result<Option<String>, E>, C);

/// `n` sessions, each with its own value in a temporary table, parked: never more than three
/// attached at once while they are set up.
async fn parked_sessions<C>(
    env: &TestEnv,
    n: usize,
    connect_and_set: impl AsyncFn(usize) -> C,
) -> Vec<C> {
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(connect_and_set(i).await);
        if i % 3 == 2 {
            env.sleep_ok().await;
        }
    }
    clients
}

/// All of them wake at once: those past the limit wait for a connection. Each that is answered
/// leaves, freeing its connection; one refused after wake_timeout (`kept`) asks again. Every
/// session must get its own value.
async fn wake_all_at_once<C, E, F>(clients: Vec<C>, ask: fn(usize, C) -> F, kept: fn(&E) -> bool)
where
    C: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Future<Output = Answer<C, E>> + Send + 'static,
{
    let n = clients.len();
    let mut asking = JoinSet::new();
    for (i, c) in clients.into_iter().enumerate() {
        asking.spawn(ask(i, c));
    }
    let mut answered = vec![false; n];
    let mut waited_out = 0;
    while let Some(joined) = asking.join_next().await {
        let (i, r, c) = joined.expect("a client task");
        match r {
            Ok(v) => {
                assert_eq!(v.as_deref(), Some(i.to_string().as_str()), "session {i}");
                answered[i] = true;
                drop(c);
            }
            Err(e) => {
                assert!(kept(&e), "session {i} was lost: {e}");
                waited_out += 1;
                assert!(waited_out <= 3 * n, "sessions keep waiting out");
                asking.spawn(ask(i, c));
            }
        }
    }
    assert!(answered.iter().all(|a| *a), "{answered:?}");
}

async fn pg_ask(i: usize, c: Pg) -> Answer<Pg, tokio_postgres::Error> {
    let r = tokio::time::timeout(SLOW, c.simple_query(MINE))
        .await
        .expect("the query was never answered")
        .map(|msgs| {
            msgs.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
        });
    (i, r, c)
}

async fn my_ask(i: usize, mut c: Conn) -> Answer<Conn, mysql_async::Error> {
    let r = tokio::time::timeout(SLOW, c.query_first::<String, _>(MINE))
        .await
        .expect("the query was never answered");
    (i, r, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_waking_sessions_than_connections_wait_for_one() {
    // Four connections, none kept for superusers.
    let settings = [
        ("max_connections", "4"),
        ("superuser_reserved_connections", "0"),
    ];
    let (env, _relay) = faults::start(Opts::default(), &settings).await;
    let clients = parked_sessions(&env, 9, async |i| {
        let c = env.connect().await;
        c.exec(&format!("CREATE TEMP TABLE mine AS SELECT {i} AS x"))
            .await;
        c
    })
    .await;
    assert_eq!(clients[0].text("SHOW max_connections").await, "4");
    env.sleep_ok().await;
    wake_all_at_once(clients, pg_ask, |e| sqlstate(e) == Some("57P03")).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_more_waking_sessions_than_connections_wait_for_one() {
    // MariaDB's fewest: ten, and one more for a superuser such as the test user.
    let (env, _relay) = faults::start(Opts::mysql(), &[("max_connections", "10")]).await;
    let mut clients = parked_sessions(&env, 15, async |i| {
        let mut c = env.my().await;
        exec(
            &mut c,
            &format!("CREATE TEMPORARY TABLE mine AS SELECT {i} AS x"),
        )
        .await;
        c
    })
    .await;
    assert_eq!(
        my_text(&mut clients[0], "SELECT @@max_connections").await,
        "10"
    );
    env.sleep_ok().await;
    wake_all_at_once(clients, my_ask, |e| code(e) == Some(9001)).await;
    env.shutdown().await;
}

/// Sends SIGKILL to `pid`.
fn kill_9(pid: u32) {
    // SAFETY: kill(2) on the server pid the admin API reported for this test's cluster.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_ends_attached_sessions_as_it_does_its_own() {
    let env = TestEnv::default().await;
    let parked = env.connect().await;
    parked.exec(PG_STATE).await;
    env.sleep_ok().await;
    // Another session wakes the server (SELECT 1 torpor would answer itself).
    let attached = env.connect().await;
    assert_eq!(attached.text("SELECT 2").await, "2");
    let direct = connect_to(env.backend_addr(), USER, PASSWORD)
        .await
        .expect("a direct connection to the server");
    assert_eq!(direct.text("SELECT 3").await, "3");

    kill_9(env.running_pid().await);
    // The parked session asks at once, likely before torpor has seen the server go: it
    // comes back on a new server, whole.
    let back = tokio::spawn(async move {
        let state = parked.text(PG_CHECK).await;
        (state, parked)
    });
    let theirs = direct.ended().await.expect_err("the server's own client");
    let ours = attached.ended().await.expect_err("the attached session");
    assert_eq!(describe(&ours), describe(&theirs));
    let (state, parked) = back.await.expect("the parked session's query");
    assert_eq!(state, PG_EXPECTED);
    env.shutdown_after(parked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_kill_9_of_the_server_ends_attached_sessions_as_it_does_its_own() {
    let (env, mut parked) = TestEnv::my_session(Opts::mysql()).await;
    let state = "CREATE TEMPORARY TABLE t AS SELECT 'kept' AS x";
    exec(&mut parked, state).await;
    env.sleep_ok().await;
    let mut attached = env.my().await;
    assert_eq!(my_text(&mut attached, "SELECT 2").await, "2");
    let mut direct = try_connect_my(env.backend_addr(), USER, PASSWORD, Some(&env.cluster))
        .await
        .expect("a direct connection to the server");
    assert_eq!(my_text(&mut direct, "SELECT 3").await, "3");

    kill_9(env.running_pid().await);
    // mariadbd says nothing as it dies: its own client and torpor's both find their
    // connection gone at their next command.
    let back = tokio::spawn(async move {
        let state = my_text(&mut parked, "SELECT x FROM t").await;
        (state, parked)
    });
    for (who, c) in [
        ("the server's own client", &mut direct),
        ("the attached session", &mut attached),
    ] {
        let e = c.query_drop("SELECT 4").await.expect_err(who);
        assert!(code(&e).is_none_or(|n| n == 2013), "{who}: {e}");
    }
    let (state, parked) = back.await.expect("the parked session's query");
    assert_eq!(state, "kept");
    env.shutdown_after(parked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_snapshot_disk_refuses_the_drain_and_loses_nothing() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    // The file store's directory is a 256 KiB tmpfs in torpor's own mount namespace: the
    // machine's mounts are not touched, and the mount goes when torpor does.
    let script = "mkdir -p \"$1\" && mount -t tmpfs -o size=256k,mode=0700 torpor-test \"$1\" \
                  && exec \"$2\" up --config \"$3\"";
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&cfg.state_dir)
    .arg(torpor_bin())
    .arg(&cfg.config_path);
    let mut torpor = binary::up_command(cmd, "info").await;

    let c = connect_to(cfg.listen, USER, PASSWORD)
        .await
        .expect("connect");
    // Rows that don't compress away: more than the disk holds.
    c.exec(
        "SET application_name = 'kept'; \
         CREATE TEMP TABLE big AS SELECT md5(g::text) || md5((g * 7)::text) AS v \
         FROM generate_series(1, 20000) g",
    )
    .await;
    let check = "SELECT current_setting('application_name') || ':' || count(DISTINCT v) FROM big";
    let http = |m: &'static str, path: String| {
        let admin = cfg.admin;
        async move {
            torpor_tests::http::request(admin, m, &path)
                .await
                .expect("admin API")
        }
    };
    let status = || http("GET", "/api/clusters".into());
    let pid = status().await.json()[0]["backend_pid"].clone();
    assert!(pid.is_u64(), "{pid}");

    let r = http("POST", format!("/api/clusters/{}/sleep", cfg.cluster)).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("snapshot put failed"), "{}", r.body);
    let after = status().await.json();
    assert_eq!(after[0]["state"], "running", "{after}");
    assert_eq!(after[0]["backend_pid"], pid, "the server must keep running");
    assert_eq!(c.text(check).await, "kept:20000");

    // With the table gone the snapshot fits, and the session comes back from it.
    c.exec("DROP TABLE big; CREATE TEMP TABLE t AS SELECT 1 AS x")
        .await;
    let r = http("POST", format!("/api/clusters/{}/sleep", cfg.cluster)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        c.text("SELECT current_setting('application_name') || ':' || x FROM t")
            .await,
        "kept:1"
    );
    drop(c);
    tokio::time::timeout(Duration::from_secs(90), torpor.stop())
        .await
        .expect("torpor stops");
}
