//! Health-check probes and connect-time SETs while the database sleeps: torpor answers them
//! itself, byte for byte as the server does, and they never wake the server or keep it awake.

use std::collections::HashMap;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use torpor_tests::harness::{OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestEnv, USER};
use torpor_tests::probes::Probers;
use torpor_tests::wire::{Hello, Raw, error_fields, first_value, tags};

/// Requests a pool or driver sends to check a connection, each as the bytes on the wire.
fn probes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for sql in [
        "SELECT 1",
        "select 1;",
        "/* ping */ SELECT 1",
        "-- ping\nSELECT 1",
        "",
        ";",
        " ; ; ",
        "SELECT version()",
        "SHOW server_version",
    ] {
        let mut b = BytesMut::new();
        frontend::query(sql, &mut b).unwrap();
        out.push((sql, b.to_vec()));
    }
    // pgjdbc's isValid: an unnamed statement of the empty query.
    out.push(("jdbc isValid", extended("", "", 0, b'P')));
    // Extended SELECT 1 with a Describe of the statement, text and binary results.
    out.push(("extended SELECT 1", extended("", "SELECT 1", 0, b'S')));
    out.push(("extended binary", extended("", "SELECT 1", 1, b'P')));
    out.push((
        "extended version",
        extended("", "SELECT version()", 0, b'P'),
    ));
    out.push((
        "extended SHOW",
        extended("", "SHOW server_version", 0, b'S'),
    ));
    out
}

/// Parse/Bind/Describe/Execute/Sync of `sql` as statement `name`, results in `format`.
fn extended(name: &str, sql: &str, format: i16, describe: u8) -> Vec<u8> {
    let mut b = BytesMut::new();
    frontend::parse(name, sql, std::iter::empty(), &mut b).unwrap();
    bind(name, &[format], &mut b);
    frontend::describe(describe, if describe == b'S' { name } else { "" }, &mut b).unwrap();
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    b.to_vec()
}

/// Bind/Execute/Sync of an existing named statement.
fn bind_execute(name: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    bind(name, &[], &mut b);
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    b.to_vec()
}

/// A Bind of statement `name` to the unnamed portal, without parameters.
fn bind(name: &str, result_formats: &[i16], b: &mut BytesMut) {
    frontend::bind(
        "",
        name,
        std::iter::empty::<i16>(),
        std::iter::empty::<i32>(),
        |_: i32,
         _: &mut BytesMut|
         -> Result<postgres_protocol::IsNull, Box<dyn std::error::Error + Sync + Send>> {
            Ok(postgres_protocol::IsNull::No)
        },
        result_formats.iter().copied(),
        b,
    )
    .map_err(|_| "bind")
    .unwrap();
}

fn simple(sql: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    frontend::query(sql, &mut b).unwrap();
    b.to_vec()
}

/// Sends a request and reads through its ReadyForQuery.
async fn exchange(raw: &mut Raw, request: &[u8]) -> Vec<(u8, BytesMut)> {
    raw.exchange(request).await.unwrap()
}

/// A session through torpor and a direct one to the server, both as `user`, once torpor knows
/// the server's settings (only then does it answer SETs itself); the first session's startup.
async fn through_and_direct(env: &TestEnv, user: &str, password: &str) -> (Raw, Hello, Raw) {
    let (through, hello) = Raw::login(env.listen, user, password).await.unwrap();
    let (direct, _) = Raw::login(env.backend_addr(), user, password)
        .await
        .unwrap();
    env.wait_for_catalog().await;
    (through, hello, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_answered_byte_for_byte_without_waking() {
    let env = TestEnv::default().await;
    let (mut through, _, mut direct) = through_and_direct(&env, USER, PASSWORD).await;

    let mut expected = Vec::new();
    for (what, req) in probes() {
        expected.push((what, req.clone(), exchange(&mut direct, &req).await));
    }
    // A named statement of the empty query, as pgjdbc makes one after five uses.
    let named = extended("S_1", "", 0, b'S');
    let named_first = exchange(&mut direct, &named).await;
    let named_again = exchange(&mut direct, &bind_execute("S_1")).await;
    drop(direct);

    let pid = env.running_pid().await;
    env.sleep_ok().await;
    for (what, req, want) in &expected {
        let got = exchange(&mut through, req).await;
        assert_eq!(
            &got, want,
            "{what}: torpor's answer differs from the server's"
        );
    }
    assert_eq!(exchange(&mut through, &named).await, named_first);
    assert_eq!(
        exchange(&mut through, &bind_execute("S_1")).await,
        named_again
    );
    // A session that connects while the database sleeps is answered too.
    let (mut fresh, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    for (what, req, want) in &expected {
        assert_eq!(
            &exchange(&mut fresh, req).await,
            want,
            "{what} (new session)"
        );
    }
    env.assert_asleep(pid).await;
    assert!(env.metric("torpor_local_answers_total").await >= 2.0 * expected.len() as f64);
    assert_eq!(env.metric("torpor_wakes_total").await, 1.0);

    // The statement prepared while asleep is the server's after the wake.
    let rows = through
        .query("SELECT statement FROM pg_prepared_statements WHERE name = 'S_1'")
        .await
        .unwrap();
    assert_eq!(tags(&rows), "TDCZ", "{rows:?}");
    assert_eq!(env.metric("torpor_wakes_total").await, 2.0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_time_sets_are_answered_and_carried_to_the_server() {
    let env = TestEnv::default().await;
    let (mut through, hello, mut direct) = through_and_direct(&env, USER, PASSWORD).await;
    let initial_app = hello
        .params
        .iter()
        .find(|(k, _)| k == "application_name")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();

    let sets = [
        simple("SET extra_float_digits = 3"),
        simple("SET application_name = 'PostgreSQL JDBC Driver'"),
        // The same value again: no ParameterStatus this time.
        simple("SET application_name = 'PostgreSQL JDBC Driver'"),
        simple("SET application_name = 'caf\u{e9}'"),
        simple("SET SESSION statement_timeout TO '5s'; SET intervalstyle = ISO_8601"),
        simple("RESET intervalstyle"),
        simple("SET app.tenant = 'acme'"),
        simple("RESET application_name"),
        simple("SET application_name = 'pool'"),
        extended("", "SET work_mem = '8MB'", 0, b'P'),
    ];
    let mut expected = Vec::new();
    for req in &sets {
        expected.push(exchange(&mut direct, req).await);
    }
    drop(direct);

    let pid = env.running_pid().await;
    env.sleep_ok().await;
    for (req, want) in sets.iter().zip(&expected) {
        assert_eq!(
            &exchange(&mut through, req).await,
            want,
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    env.assert_asleep(pid).await;
    assert_ne!(initial_app, "pool");

    // The next real query wakes the server, which holds every setting.
    assert_eq!(show(&mut through, "SHOW extra_float_digits").await, "3");
    assert_eq!(show(&mut through, "SHOW application_name").await, "pool");
    assert_eq!(show(&mut through, "SHOW statement_timeout").await, "5s");
    assert_eq!(show(&mut through, "SHOW intervalstyle").await, "postgres");
    assert_eq!(show(&mut through, "SHOW work_mem").await, "8MB");
    assert_eq!(
        show(&mut through, "SELECT current_setting('app.tenant')").await,
        "acme"
    );
    // And it keeps them across the next sleep, as state the session changed.
    env.sleep_ok().await;
    assert_eq!(show(&mut through, "SHOW application_name").await, "pool");
    assert_eq!(show(&mut through, "SHOW work_mem").await, "8MB");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_torpor_cannot_vouch_for_wake_the_server_and_get_its_error() {
    let env = TestEnv::default().await;
    let (mut viewer, _, mut direct) = through_and_direct(&env, OTHER_USER, OTHER_PASSWORD).await;
    for sql in [
        "SET extra_float_digits = 99",
        "SET no_such_setting = 1",
        "SET log_statement_stats = on",
        "SET shared_buffers = '1GB'",
    ] {
        let want_err = error_of(
            &exchange(&mut direct, &simple(sql)).await,
            sql,
            "the server",
        );

        env.sleep_ok().await;
        let wakes = env.metric("torpor_wakes_total").await;
        let got_err = error_of(&exchange(&mut viewer, &simple(sql)).await, sql, "torpor");
        assert_eq!(got_err.get(&'C'), want_err.get(&'C'), "{sql}");
        assert_eq!(got_err.get(&'M'), want_err.get(&'M'), "{sql}");
        assert_eq!(
            env.metric("torpor_wakes_total").await,
            wakes + 1.0,
            "{sql} must wake the server"
        );
        // The direct connection died with the server; log in again for the next case.
        direct = Raw::login(env.backend_addr(), OTHER_USER, OTHER_PASSWORD)
            .await
            .unwrap()
            .0;
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_do_not_keep_the_database_awake_or_call_drains_off() {
    let (env, pg) = TestEnv::pg_session(Opts::default().idle_after("1s")).await;
    pg.exec("SET application_name = 'busy once'").await;
    let pid = env.running_pid().await;

    // Twenty pooled connections, each probing every 100 ms.
    let mut probers = Probers::default();
    for _ in 0..20 {
        let (raw, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
        probers.spawn(raw, |mut raw| async move {
            let msgs = exchange(&mut raw, &simple("SELECT 1")).await;
            assert_eq!(tags(&msgs), "TDCZ", "{msgs:?}");
            raw
        });
    }
    probers
        .check_idle(&env, pid, async || {
            assert_eq!(
                pg.text("SELECT current_setting('application_name')").await,
                "busy once"
            );
        })
        .await;
    env.shutdown().await;
}

/// The fields of the ErrorResponse `who` answered `sql` with.
fn error_of(msgs: &[(u8, BytesMut)], sql: &str, who: &str) -> HashMap<char, String> {
    msgs.iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| error_fields(b))
        .unwrap_or_else(|| panic!("{sql}: {who} accepted it: {msgs:?}"))
}

/// The text of the first column of the first row `sql` returns.
async fn show(raw: &mut Raw, sql: &str) -> String {
    first_value(&exchange(raw, &simple(sql)).await)
}

/// What asyncpg's pool sends on every release, answered while asleep as the server answers
/// it, and its effect (no advisory lock, no LISTEN, every setting back) is the server's after
/// the wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_cleanup_is_answered_and_carried() {
    let env = TestEnv::default().await;
    let (mut through, hello, mut direct) = through_and_direct(&env, USER, PASSWORD).await;
    // Each its own lock: the second would wait for the first.
    for (raw, key) in [(&mut through, 77), (&mut direct, 78)] {
        let setup = simple(&format!(
            "SELECT pg_advisory_lock({key}); LISTEN pool_ch; SET application_name = 'leased'; \
             SET work_mem = '8MB'; SET DateStyle = 'SQL, DMY'"
        ));
        exchange(raw, &setup).await;
    }
    let cleanup = simple("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;");
    let want = exchange(&mut direct, &cleanup).await;
    assert!(
        want.iter().any(|(t, _)| *t == b'S'),
        "RESET ALL reports the settings it changes: {}",
        tags(&want)
    );
    drop(direct);

    let pid = env.running_pid().await;
    env.sleep_ok().await;
    assert_eq!(exchange(&mut through, &cleanup).await, want);
    env.assert_asleep(pid).await;

    // The wake gives the server the clean session: nothing held, every setting back.
    let initial = |name: &str| {
        hello
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        show(
            &mut through,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        )
        .await,
        "0"
    );
    assert_eq!(
        show(&mut through, "SELECT count(*) FROM pg_listening_channels()").await,
        "0"
    );
    assert_eq!(
        show(&mut through, "SHOW application_name").await,
        initial("application_name")
    );
    assert_eq!(
        show(&mut through, "SHOW DateStyle").await,
        initial("DateStyle")
    );
    assert_eq!(show(&mut through, "SHOW work_mem").await, "4MB");
    // No longer a listener: the next wake doesn't attach it by itself.
    env.sleep_ok().await;
    env.wake().await;
    assert_eq!(env.cluster_status().await["sessions"]["attached"], 0);
    env.shutdown().await;
}
