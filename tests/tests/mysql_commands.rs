//! The less common MySQL commands through torpor, each across a forced sleep: multi-statement
//! queries and multi-result procedures, COM_RESET_CONNECTION, COM_FIELD_LIST, a cursor with
//! COM_STMT_FETCH (an open cursor blocks the drain), COM_SET_OPTION and COM_STATISTICS.

use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::mysql::{exec, value};
use torpor_tests::mywire::{Resp, com};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statements_and_multi_results() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(
        &mut c,
        "CREATE PROCEDURE two() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END",
    )
    .await;
    for round in 0..2 {
        let mut sets = Vec::new();
        let mut r = c
            .query_iter("SELECT 'x'; DO 1; SELECT 4, 5; CALL two()")
            .await
            .unwrap();
        while !r.is_empty() {
            let rows: Vec<mysql_async::Row> = r.collect().await.unwrap();
            sets.push(rows.len());
        }
        drop(r);
        // 'x'; DO (no rows); 4,5; the procedure's two selects; the CALL's own status.
        assert!(sets.len() >= 5, "round {round}: result sets {sets:?}");
        assert_eq!(&sets[..5], &[1, 0, 1, 1, 1], "round {round}");
        let v: Option<i64> = c.query_first("SELECT 6").await.unwrap();
        assert_eq!(v, Some(6));
        env.sleep_ok().await;
    }
    c.disconnect().await.unwrap();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connection_forgets_state_also_after_a_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "SET @x = 1, time_zone = '+04:00'").await;
    exec(&mut c, "CREATE TEMPORARY TABLE gone (id INT)").await;
    env.sleep_ok().await;
    assert_eq!(value(&mut c, "SELECT @x").await.as_deref(), Some("1"));
    c.reset().await.unwrap();
    assert_eq!(value(&mut c, "SELECT @x").await, None);
    env.sleep_ok().await;
    // The snapshot taken after the reset holds the reset session, not the old one.
    assert_eq!(value(&mut c, "SELECT @x").await, None);
    assert_ne!(
        value(&mut c, "SELECT @@time_zone").await.as_deref(),
        Some("+04:00")
    );
    let e = c.query_drop("SELECT * FROM gone").await.unwrap_err();
    assert_eq!(torpor_tests::mysql::code(&e), Some(1146), "{e}");
    c.disconnect().await.unwrap();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_list_statistics_and_set_option() {
    let (env, mut r) = TestEnv::my_raw_session().await;
    assert!(matches!(
        r.query("CREATE TABLE f (id INT, name VARCHAR(9))")
            .await
            .unwrap(),
        Resp::Ok
    ));
    env.sleep_ok().await;
    // COM_FIELD_LIST: column definitions up to an EOF, on a woken backend.
    r.command(&[&[com::FIELD_LIST][..], b"f\0"].concat())
        .await
        .unwrap();
    let mut defs = 0;
    loop {
        let (_, p) = r.recv().await.unwrap().expect("answer");
        if p.first() == Some(&0xfe) && p.len() < 9 {
            break;
        }
        assert_ne!(p.first(), Some(&0xff), "{p:?}");
        defs += 1;
    }
    assert_eq!(defs, 2);
    // COM_STATISTICS: one text packet.
    r.command(&[com::STATISTICS]).await.unwrap();
    let (_, stats) = r.recv().await.unwrap().expect("answer");
    assert!(
        String::from_utf8_lossy(&stats).contains("Uptime"),
        "{stats:?}"
    );
    // COM_SET_OPTION on: this client never asked for multi-statements at login.
    let multi = "SELECT 1; SELECT 2";
    match r.query(multi).await.unwrap() {
        Resp::Err(e) => assert_eq!(e.code, 1064, "{e:?}"),
        other => panic!("multi-statement without the option: {other:?}"),
    }
    r.command(&[com::SET_OPTION, 0, 0]).await.unwrap();
    let (_, ok) = r.recv().await.unwrap().expect("answer");
    assert_ne!(ok.first(), Some(&0xff), "{ok:?}");
    env.sleep_ok().await;
    // Still on after the wake: the first statement's rows, then the second's.
    match r.query(multi).await.unwrap() {
        Resp::Rows(rows) => assert_eq!(rows.len(), 1),
        other => panic!("multi-statement after the wake: {other:?}"),
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_cursor_blocks_the_drain_until_fetched_to_the_end() {
    let (env, mut r) = TestEnv::my_raw_session().await;
    let (id, _) = r.prepared("SELECT seq FROM seq_1_to_5").await;
    // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: metadata only, the rows wait for FETCH.
    let mut exec = vec![com::STMT_EXECUTE];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.push(1);
    exec.extend_from_slice(&1u32.to_le_bytes());
    r.command(&exec).await.unwrap();
    // Column definitions, then an EOF whose status says a cursor exists.
    let status = loop {
        let (_, p) = r.recv().await.unwrap().expect("answer");
        assert_ne!(p.first(), Some(&0xff), "{p:?}");
        if p.first() == Some(&0xfe) && p.len() < 9 {
            break u16::from_le_bytes([p[3], p[4]]);
        }
    };
    assert_ne!(status & 0x40, 0, "no cursor opened");
    let body = env.sleep_refused().await;
    assert!(body.to_string().contains("open cursor"), "{body}");
    // Fetch everything: 5 rows, then an EOF saying the last row was sent.
    let mut fetch = vec![com::STMT_FETCH];
    fetch.extend_from_slice(&id.to_le_bytes());
    fetch.extend_from_slice(&100u32.to_le_bytes());
    r.command(&fetch).await.unwrap();
    let mut rows = 0;
    loop {
        let (_, p) = r.recv().await.unwrap().expect("answer");
        assert_ne!(p.first(), Some(&0xff), "{p:?}");
        if p.first() == Some(&0xfe) && p.len() < 9 {
            assert_ne!(
                u16::from_le_bytes([p[3], p[4]]) & 0x80,
                0,
                "last row not sent"
            );
            break;
        }
        rows += 1;
    }
    assert_eq!(rows, 5);
    env.sleep_ok().await;
    assert_eq!(r.value("SELECT 7").await.as_deref(), Some("7"));
    env.shutdown().await;
}

/// COM_INIT_DB switches the schema, which a wake keeps; a client that didn't ask for session
/// tracking gets plain OK packets although torpor always asks the backend for tracking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_db_and_oks_without_session_tracking() {
    let (env, mut r) = TestEnv::my_raw_session().await;
    let ok_of = |what: &str, p: Vec<u8>| {
        assert_eq!(p.first(), Some(&0x00), "{what}: {p:?}");
        // header, affected rows, insert id, status (2), warnings (2): nothing after that, and
        // no SESSION_STATE_CHANGED flag.
        assert_eq!(p.len(), 7, "{what}: {p:?}");
        assert_eq!(
            u16::from_le_bytes([p[3], p[4]]) & 0x4000,
            0,
            "{what}: {p:?}"
        );
    };
    r.command(&[&[com::INIT_DB][..], b"information_schema"].concat())
        .await
        .unwrap();
    let (_, p) = r.recv().await.unwrap().expect("answer");
    ok_of("COM_INIT_DB", p);
    for sql in [
        "SET SESSION sql_mode = 'ANSI'",
        "SET @x = 1",
        "USE information_schema",
    ] {
        let mut q = vec![com::QUERY];
        q.extend_from_slice(sql.as_bytes());
        r.command(&q).await.unwrap();
        let (_, p) = r.recv().await.unwrap().expect("answer");
        ok_of(sql, p);
    }
    env.sleep_ok().await;
    assert_eq!(
        r.value("SELECT DATABASE()").await.as_deref(),
        Some("information_schema")
    );
    assert_eq!(
        r.value("SELECT @@sql_mode").await.as_deref(),
        Some("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI")
    );
    env.shutdown().await;
}
