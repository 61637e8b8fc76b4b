//! Idle means idle, with real clients: while the database sleeps, each client's default connect
//! and its usual health check (pgjdbc's isValid and a HikariCP pool, psycopg2 with SQLAlchemy's
//! pool_pre_ping, psycopg 3 with psycopg_pool, asyncpg, node-pg and pg.Pool, tokio-postgres) are
//! answered by torpor without starting the server, with the answers the server gives, and pools
//! replacing connections (maxLifetime) don't wake it either. The next real query wakes it, and
//! what the client set while it slept is in effect on the server.
//!
//! The clients run as programs in `tests/clients/` that go through three phases: "awake" (the
//! server runs; the client connects once and checks its answers against a direct connection to
//! the backend), "asleep" (the test has put the database to sleep and watches it stay so while
//! the client connects and pings), and the wake.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio_postgres::{Client, SimpleQueryMessage};
use torpor_tests::asleep::Asleep;
use torpor_tests::clients::{client_file, pg_python, pg_url};
use torpor_tests::harness::{PASSWORD, Pg, TestEnv, USER, connect_to, describe};
use torpor_tests::script::Script;

/// Steps a client program through its phases (see the module doc) and checks the database
/// slept through the middle one and woke exactly once for the last.
async fn run_phases(env: &TestEnv, mut script: Script) {
    script.expect("awake").await;
    let asleep = Asleep::start(env).await;
    script.go().await;
    let ((), woke) = asleep.watch(env, script.expect("asleep")).await;
    asleep.check(env, woke, &script.output()).await;
    script.go().await;
    // Shown with --nocapture or when a later check fails: what the client counted.
    eprintln!("{}", script.finish().await);
    assert_eq!(
        env.metric("torpor_wakes_total").await,
        asleep.wakes + 1.0,
        "the real queries after the sleep wake the database once"
    );
}

// --- pgjdbc and HikariCP ----------------------------------------------------------------------

/// The Java program `class` (tests/clients/<class>.java) with `classpath`.
async fn jdbc(env: &TestEnv, class: &str, classpath: Vec<PathBuf>) -> Script {
    let source = client_file(&format!("{class}.java"));
    let mut cmd =
        tokio::task::spawn_blocking(move || torpor_tests::java::java_command(&source, &classpath))
            .await
            .unwrap();
    let jdbc_url = |a: SocketAddr| format!("jdbc:postgresql://{a}/{USER}");
    cmd.env("TORPOR_JDBC_URL", jdbc_url(env.listen))
        .env("DIRECT_JDBC_URL", jdbc_url(env.backend_addr()))
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD);
    Script::spawn(cmd)
}

/// pgjdbc's connect (SET extra_float_digits and application_name in the extended protocol),
/// isValid(5) seven times (S_1 from the sixth), a PreparedStatement SELECT 1 seven times
/// (binary from the sixth), on a parked connection and on new ones opened and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_connects_and_validates_without_waking() {
    let jar = torpor_tests::java::pgjdbc_jar();
    let env = TestEnv::default().await;
    let script = jdbc(&env, "PgIdleJdbc", vec![jar]).await;
    run_phases(&env, script).await;
    env.shutdown().await;
}

/// A real HikariCP pool validating every borrow with isValid and replacing its connections on
/// maxLifetime, all while the database sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hikaricp_validates_and_replaces_connections_without_waking() {
    let mut classpath = vec![torpor_tests::java::pgjdbc_jar()];
    classpath.extend(torpor_tests::java::hikaricp_jars());
    let env = TestEnv::default().await;
    let script = jdbc(&env, "PgIdleHikari", classpath).await;
    run_phases(&env, script).await;
    env.shutdown().await;
}

// --- Python: psycopg2 + SQLAlchemy, psycopg 3 + psycopg_pool, asyncpg ---------------------------

async fn python_client(client: &str) {
    let (env, mut cmd) = pg_python("pg_idle.py").await;
    cmd.arg(client)
        .env("DIRECT_URL", pg_url(env.backend_addr()));
    run_phases(&env, Script::spawn(cmd)).await;
    env.shutdown().await;
}

/// psycopg2 with autocommit off (BEGIN before each statement, then rollback or commit), the
/// ping SQLAlchemy's pool_pre_ping sends, a pool recycling its connections, and a transaction
/// begun while asleep that is still open on the server after the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_and_sqlalchemy_pre_ping_without_waking() {
    python_client("psycopg2").await;
}

/// psycopg 3: SELECT 1 in a transaction, psycopg_pool's connection check (the empty query), a
/// pool replacing connections on max_lifetime; a SET made while asleep holds after the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_and_its_pool_without_waking() {
    python_client("psycopg").await;
}

/// asyncpg: fetchval (a named statement: Parse + Describe + Flush, then Bind/Execute/Sync) and
/// execute (simple protocol); the statement prepared while asleep is the server's after the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_connects_and_pings_without_waking() {
    python_client("asyncpg").await;
}

// --- node-pg ----------------------------------------------------------------------------------

/// node-pg: query('SELECT 1'), query(''), query(';') on a Client and through a pg.Pool that
/// replaces its connections every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_client_and_pool_without_waking() {
    let modules = tokio::task::spawn_blocking(torpor_tests::node::client_modules)
        .await
        .unwrap();
    let env = TestEnv::default().await;
    let mut cmd = torpor_tests::node::node_command(&modules, &client_file("pg_idle.js"));
    cmd.env("TORPOR_URL", pg_url(env.listen))
        .env("DIRECT_URL", pg_url(env.backend_addr()));
    run_phases(&env, Script::spawn(cmd)).await;
    env.shutdown().await;
}

// --- tokio-postgres ---------------------------------------------------------------------------

/// What tokio-postgres code sees of its pings: simple_query("SELECT 1"), and query("SELECT 1")
/// (Parse of a named statement + Describe + Sync, Bind/Execute/Sync, then a Close of the
/// statement when it is dropped), also with a statement prepared once and run three times.
async fn tokio_check(c: &Client) -> Vec<String> {
    let mut seen = Vec::new();
    let run = |e: tokio_postgres::Error| describe(&e);
    for sql in ["SELECT 1", "", "SELECT version()"] {
        for m in c
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{}", run(e)))
        {
            match m {
                SimpleQueryMessage::Row(r) => seen.push(format!(
                    "simple {sql:?} row {} {:?}",
                    r.columns()[0].name(),
                    r.get(0)
                )),
                SimpleQueryMessage::CommandComplete(n) => {
                    seen.push(format!("simple {sql:?} complete {n}"))
                }
                _ => {}
            }
        }
    }
    for _ in 0..3 {
        let rows = c
            .query("SELECT 1", &[])
            .await
            .unwrap_or_else(|e| panic!("{}", run(e)));
        seen.push(rows_text(&rows));
    }
    let st = c
        .prepare("SELECT 1")
        .await
        .unwrap_or_else(|e| panic!("{}", run(e)));
    for _ in 0..3 {
        let rows = c
            .query(&st, &[])
            .await
            .unwrap_or_else(|e| panic!("{}", run(e)));
        seen.push(rows_text(&rows));
    }
    seen
}

fn rows_text(rows: &[tokio_postgres::Row]) -> String {
    let cols: Vec<_> = rows
        .first()
        .map(|r| {
            r.columns()
                .iter()
                .map(|c| format!("{} {}", c.name(), c.type_()))
                .collect()
        })
        .unwrap_or_default();
    let values: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    format!("query {cols:?} {values:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_pings_without_waking() {
    let env = TestEnv::default().await;
    // The first connection wakes the database.
    let early = env.connect().await;
    let direct = connect_to(env.backend_addr(), USER, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("direct: {}", describe(&e)));
    let want = tokio_check(&direct).await;
    drop(direct);
    assert_eq!(tokio_check(&early).await, want, "awake");

    let asleep = Asleep::start(&env).await;
    let (late, woke) = asleep
        .watch(&env, async {
            assert_eq!(tokio_check(&early).await, want, "parked connection");
            for i in 0..2 {
                // Dropping the client sends Terminate, as a pool closing a connection does.
                let c = env.connect().await;
                assert_eq!(tokio_check(&c).await, want, "new connection {i}");
            }
            let late: Pg = env.connect().await;
            // Kept past the wake: the server must have it then.
            let kept = late.prepare("SELECT 1").await.unwrap();
            (late, kept)
        })
        .await;
    asleep.check(&env, woke, "").await;

    let (late, kept) = late;
    // A real query wakes the database; the statement prepared while it slept is the server's.
    let version: i32 = late
        .text("SELECT current_setting('server_version_num')")
        .await
        .parse()
        .unwrap();
    assert!(version >= 150000, "{version}");
    let rows = late
        .query(&kept, &[])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(rows_text(&rows), want[want.len() - 1]);
    assert_eq!(env.metric("torpor_wakes_total").await, asleep.wakes + 1.0);
    env.shutdown_after(early).await;
}
