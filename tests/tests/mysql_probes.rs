//! Idle means idle, for MySQL/MariaDB sessions: health-check probes and connect-time SETs are
//! answered by torpor while the database sleeps, byte for byte as the server answers them, and
//! they never wake the server or keep it awake. What the client set reaches the server with the
//! next real query.

use std::net::SocketAddr;

use torpor_tests::harness::{OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestEnv, USER};
use torpor_tests::mysql::{exec, value};
use torpor_tests::mywire::{Hello, MyRaw, caps};
use torpor_tests::probes::Probers;

const PING: &[u8] = &[0x0e];

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

fn hex(packets: &[Vec<u8>]) -> String {
    packets
        .iter()
        .map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn label(request: &[u8]) -> String {
    if request == PING {
        "COM_PING".into()
    } else {
        format!("{:?}", String::from_utf8_lossy(&request[1..]))
    }
}

async fn login(addr: SocketAddr, env: &TestEnv, user: &str, password: &str, hello: Hello) -> MyRaw {
    MyRaw::login_as(addr, user, password, Some(&env.cluster), hello)
        .await
        .unwrap_or_else(|e| panic!("login to {addr} as {user}: {e:#}"))
}

async fn exchange(raw: &mut MyRaw, request: &[u8]) -> Vec<Vec<u8>> {
    raw.exchange(request)
        .await
        .unwrap_or_else(|e| panic!("{}: {e:#}", label(request)))
}

/// What a pool or driver sends to check a connection and set it up, each with the server's
/// answer as the direct connection got it. Multi-statement texts only for clients that may.
fn requests(multi: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut q = |sql: &str| out.push(query(sql));
    for sql in [
        "SELECT 1",
        "select 1;",
        "/* ping */ SELECT 1",
        "SELECT 1 -- x",
        "DO 1",
        "",
        ";",
        "SET NAMES utf8mb4",
        "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
        "SET autocommit=0",
        "SELECT 1",
        "DO 1",
        "SET @@session.autocommit = OFF",
        "SET AUTOCOMMIT = 1",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
        "SET character_set_results = NULL",
        "SET time_zone = '+00:00'",
        "SET time_zone = '-0:30'",
        "SET NAMES latin1",
        "SET autocommit=1, wait_timeout=600, character_set_results=utf8mb4",
        "SET sql_mode='ANSI_QUOTES,NO_BACKSLASH_ESCAPES'",
        "SELECT 1",
        "SET sql_mode=''",
        "SET SESSION TRANSACTION READ ONLY",
        "SET SESSION TRANSACTION READ WRITE, ISOLATION LEVEL SERIALIZABLE",
    ] {
        q(sql);
    }
    if multi {
        q("SET NAMES utf8mb4; SET autocommit=0");
        q("SELECT 1; DO 1;");
        q("SET autocommit=1; SELECT 1");
    }
    out.insert(7, PING.to_vec());
    out.insert(13, PING.to_vec());
    out.push(PING.to_vec());
    out
}

/// What the session holds, as the server answers it after the wake.
const STATE: &str = "SELECT @@autocommit, @@character_set_client, @@character_set_connection, \
    @@character_set_results, @@collation_connection, @@sql_mode, @@time_zone, @@tx_isolation, \
    @@tx_read_only, @@wait_timeout";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_sets_are_answered_byte_for_byte_without_waking() {
    let env = TestEnv::start(Opts::mysql()).await;
    let base = caps::DEFAULT;
    let variants = [
        (
            "classic EOF",
            Hello {
                caps: base | caps::MULTI_STATEMENTS,
                ..Hello::default()
            },
        ),
        (
            "session tracking, no EOF",
            Hello {
                caps: base | caps::MULTI_STATEMENTS | caps::SESSION_TRACK | caps::DEPRECATE_EOF,
                ..Hello::default()
            },
        ),
        (
            "session tracking, one statement",
            Hello {
                caps: base | caps::SESSION_TRACK,
                charset: 8, // latin1_swedish_ci
                ..Hello::default()
            },
        ),
    ];
    // Sessions through torpor, made while the server runs (the first login of a user and
    // schema goes to the server).
    let mut through = Vec::new();
    for (_, hello) in &variants {
        through.push(login(env.listen, &env, USER, PASSWORD, *hello).await);
    }
    // mysql2 leaves CLIENT_MYSQL clear and asks MariaDB for extended column metadata; torpor's
    // greeting offers none, and its backend connections don't ask for it: its answers while
    // asleep must be what the same client gets through torpor from the running server.
    let mysql2 = Hello {
        caps: (base & !caps::LONG_PASSWORD) | caps::SESSION_TRACK,
        mariadb_caps: 8,
        ..Hello::default()
    };
    let mut mysql2_parked = login(env.listen, &env, USER, PASSWORD, mysql2).await;
    let mut mysql2_reference = login(env.listen, &env, USER, PASSWORD, mysql2).await;
    env.wait_for_catalog().await;

    let mut expected = Vec::new();
    for (_, hello) in &variants {
        let multi = hello.caps & caps::MULTI_STATEMENTS != 0;
        let mut direct = login(env.backend_addr(), &env, USER, PASSWORD, *hello).await;
        let mut answers = Vec::new();
        for r in requests(multi) {
            let a = exchange(&mut direct, &r).await;
            answers.push((r, a));
        }
        let state = exchange(&mut direct, &query(STATE)).await;
        expected.push((answers, state));
    }
    let mut mysql2_answers = Vec::new();
    for r in requests(false) {
        let a = exchange(&mut mysql2_reference, &r).await;
        mysql2_answers.push((r, a));
    }
    let mysql2_state = exchange(&mut mysql2_reference, &query(STATE)).await;

    let pid = env.running_pid().await;
    env.sleep_ok().await;
    let wakes = env.metric("torpor_wakes_total").await;
    let answered = env.metric("torpor_local_answers_total").await;
    let mut count = 0;
    for (((what, _), raw), (answers, _)) in variants.iter().zip(&mut through).zip(&expected) {
        for (request, want) in answers {
            let got = exchange(raw, request).await;
            assert_eq!(
                hex(&got),
                hex(want),
                "{what}: {}: torpor's answer differs from the server's",
                label(request)
            );
            count += 1;
        }
    }
    for (request, want) in &mysql2_answers {
        let got = exchange(&mut mysql2_parked, request).await;
        assert_eq!(hex(&got), hex(want), "mysql2-like: {}", label(request));
        count += 1;
    }
    env.assert_asleep(pid).await;
    assert_eq!(env.metric("torpor_wakes_total").await, wakes);
    assert_eq!(
        env.metric("torpor_local_answers_total").await,
        answered + count as f64
    );

    // The next real query wakes the server, which holds what each session set.
    for (((what, _), raw), (_, state)) in variants.iter().zip(&mut through).zip(&expected) {
        assert_eq!(
            hex(&exchange(raw, &query(STATE)).await),
            hex(state),
            "{what}: the session after the wake"
        );
    }
    assert_eq!(
        hex(&exchange(&mut mysql2_parked, &query(STATE)).await),
        hex(&mysql2_state)
    );
    assert_eq!(env.metric("torpor_wakes_total").await, wakes + 1.0);
    // And keeps it across the next sleep, as state the session changed.
    env.sleep_ok().await;
    for (((what, _), raw), (_, state)) in variants.iter().zip(&mut through).zip(&expected) {
        assert_eq!(
            hex(&exchange(raw, &query(STATE)).await),
            hex(state),
            "{what}: the session after a second wake"
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_torpor_cannot_vouch_for_wake_the_server_and_get_its_error() {
    let env = TestEnv::start(Opts::mysql()).await;
    let hello = Hello {
        caps: caps::DEFAULT | caps::SESSION_TRACK,
        ..Hello::default()
    };
    let mut viewer = login(env.listen, &env, OTHER_USER, OTHER_PASSWORD, hello).await;
    env.wait_for_catalog().await;
    let cases = [
        // A value the variable does not take.
        "SET autocommit=2",
        "SET wait_timeout=0",
        // No such variable.
        "SET no_such_variable=1",
        // Needs SUPER (or BINLOG ADMIN).
        "SET sql_log_bin=0",
        // Global scope.
        "SET GLOBAL wait_timeout=100",
        // Read-only, for the session or altogether.
        "SET max_allowed_packet=1024",
        "SET version='x'",
        // Needs the server's time zone tables.
        "SET time_zone='Mars/Olympus_Mons'",
        // Only for the next transaction.
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    ];
    let mut direct = login(env.backend_addr(), &env, OTHER_USER, OTHER_PASSWORD, hello).await;
    let mut expected = Vec::new();
    for sql in cases {
        expected.push(exchange(&mut direct, &query(sql)).await);
    }
    let check = query("SELECT @@wait_timeout, @@autocommit, @@tx_isolation");
    let expected_state = exchange(&mut direct, &check).await;
    drop(direct);
    for (sql, want) in cases.iter().zip(&expected) {
        env.sleep_ok().await;
        let wakes = env.metric("torpor_wakes_total").await;
        let got = exchange(&mut viewer, &query(sql)).await;
        assert_eq!(hex(&got), hex(want), "{sql}");
        assert_eq!(
            env.metric("torpor_wakes_total").await,
            wakes + 1.0,
            "{sql} must wake the server"
        );
    }
    // What failed changed nothing; what the server took with a warning is the server's.
    assert_eq!(
        hex(&exchange(&mut viewer, &check).await),
        hex(&expected_state)
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_do_not_keep_the_database_awake_or_call_drains_off() {
    let (env, mut my) = TestEnv::my_session(Opts::default().idle_after("1s")).await;
    exec(&mut my, "SET @busy = 'once'").await;
    let pid = env.running_pid().await;

    // Pooled connections, each probing every 100 ms in its own way.
    let mut probers = Probers::default();
    let probes: [&[u8]; 4] = [
        PING,
        b"\x03SELECT 1",
        b"\x03/* ping */ SELECT 1",
        b"\x03DO 1",
    ];
    for i in 0..12 {
        let hello = Hello {
            caps: if i % 2 == 0 {
                caps::DEFAULT
            } else {
                caps::DEFAULT | caps::SESSION_TRACK | caps::DEPRECATE_EOF
            },
            ..Hello::default()
        };
        let raw = login(env.listen, &env, USER, PASSWORD, hello).await;
        let probe = probes[i % probes.len()];
        probers.spawn(raw, move |mut raw| async move {
            let reply = raw.exchange(probe).await.expect("probe answered");
            let first = reply.first().and_then(|p| p.get(4)).copied();
            assert!(matches!(first, Some(0x00 | 0x01)), "{reply:?}");
            raw
        });
    }
    probers
        .check_idle(&env, pid, async || {
            assert_eq!(
                value(&mut my, "SELECT @busy").await.as_deref(),
                Some("once")
            );
        })
        .await;
    assert!(env.metric("torpor_local_answers_total").await > 0.0);
    env.shutdown().await;
}
