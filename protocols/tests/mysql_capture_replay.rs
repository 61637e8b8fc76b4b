//! Capture and replay against a real MariaDB: build session state on connection A, capture it,
//! round-trip the snapshot through rmp-serde, close A, replay into a fresh connection B,
//! recapture B and compare, and check that the state behaves the same.
//!
//! Skipped (with a message) when mariadbd or the `mysql` OS user is absent.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};
use protocols::mysql::capture::{Capture, ColumnInfo, QueryResult, ServerError, Step};
use protocols::mysql::replay::{self, Command};
use protocols::mysql::snapshot::{BinaryStatement, MySnapshot, UserValue};
use protocols::mysql::tracked::Tracked;

fn opts(port: u16, user: &str, pass: &str, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(db)
        .prefer_socket(false)
}

/// A MariaDB with the database, users and role the tests use.
async fn start_server() -> Option<Server> {
    let server = common::start_mariadb()?;
    let port = server.port;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut root = loop {
        if let Ok(c) = Conn::new(opts(port, "root", "", None)).await {
            break c;
        }
        assert!(Instant::now() < deadline, "mariadbd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for q in [
        "CREATE DATABASE shop",
        "CREATE USER app@'%' IDENTIFIED BY 'pw'",
        "GRANT ALL ON shop.* TO app@'%'",
        "CREATE ROLE reader",
        "GRANT SELECT ON mysql.* TO reader",
        "GRANT reader TO app@'%'",
        "CREATE TABLE shop.shadow (perm INT)",
        "CREATE TABLE shop.plain (a INT)",
    ] {
        root.query_drop(q).await.unwrap();
    }
    root.disconnect().await.unwrap();
    Some(server)
}

async fn app(port: u16, db: Option<&str>) -> Conn {
    Conn::new(opts(port, "app", "pw", db)).await.unwrap()
}

/// The server's refusal of `sql`, as the capture sees one; any other failure ends the test.
fn refusal(sql: &str, e: mysql_async::Error) -> ServerError {
    match e {
        mysql_async::Error::Server(e) => ServerError {
            code: e.code,
            sql_state: e.state,
            message: e.message,
        },
        e => panic!("{sql}: {e}"),
    }
}

/// Runs one text-protocol query the way the proxy would, converting its result.
async fn run(conn: &mut Conn, sql: &str) -> Result<QueryResult, ServerError> {
    let mut r = conn.query_iter(sql).await.map_err(|e| refusal(sql, e))?;
    let columns = r
        .columns()
        .map(|cols| {
            cols.iter()
                .map(|c| ColumnInfo {
                    name: c.name_str().into_owned(),
                    column_type: c.column_type() as u8,
                    charset: c.character_set(),
                    flags: c.flags().bits(),
                    decimals: c.decimals(),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Row> = r.collect().await.map_err(|e| refusal(sql, e))?;
    r.drop_result().await.unwrap();
    let rows = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::NULL => None,
                    Value::Bytes(b) => Some(b),
                    other => panic!("text protocol gave {other:?}"),
                })
                .collect()
        })
        .collect();
    Ok(QueryResult { columns, rows })
}

/// Runs a client statement on A and lets the tracker see it, as the proxy does.
async fn exec(conn: &mut Conn, tracked: &mut Tracked, sql: &str) {
    let r = conn.query_drop(sql).await;
    tracked.observe(sql, Some("shop"), r.is_ok());
    if let Err(e) = r {
        panic!("{sql}: {e}");
    }
}

/// [`exec`] of each statement in turn.
async fn exec_all(conn: &mut Conn, tracked: &mut Tracked, statements: &[&str]) {
    for sql in statements {
        exec(conn, tracked, sql).await;
    }
}

/// Runs every capture round on `conn`; `tamper` may change round 1's results.
async fn capture_with(
    conn: &mut Conn,
    tracked: &Tracked,
    tamper: impl Fn(&mut Vec<Result<QueryResult, ServerError>>),
) -> Result<MySnapshot, Vec<String>> {
    let mut cap = Capture::new(tracked);
    let mut queries = cap.first();
    let mut round = 0;
    loop {
        let mut results = Vec::new();
        for q in &queries {
            results.push(run(conn, q).await);
        }
        if round == 0 {
            tamper(&mut results);
        }
        round += 1;
        match cap.next(results).unwrap() {
            Step::Queries(q) => queries = q,
            Step::Done(snap) => return Ok(*snap),
            Step::Blocked(reasons) => return Err(reasons),
        }
    }
}

async fn capture(conn: &mut Conn, tracked: &Tracked) -> MySnapshot {
    capture_with(conn, tracked, |_| {})
        .await
        .expect("capture blocked")
}

/// Replays on `conn`; Err(label, message) at the first failing command.
async fn replay_on(
    conn: &mut Conn,
    snap: &MySnapshot,
) -> Result<Vec<(u32, mysql_async::Statement)>, (String, String)> {
    let mut stmts = Vec::new();
    for cmd in replay::build(snap).map_err(|e| ("replay".to_string(), e))? {
        let r = match &cmd {
            Command::Query { sql, .. } => conn.query_drop(sql.as_str()).await,
            Command::InitDb { schema, .. } => {
                conn.query_drop(format!("USE `{}`", schema.replace('`', "``")))
                    .await
            }
            Command::Prepare { id, sql, .. } => match conn.prep(sql.as_str()).await {
                Ok(s) => {
                    stmts.push((*id, s));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            return Err((cmd.label().to_string(), e.to_string()));
        }
    }
    Ok(stmts)
}

/// A closed connection's locks are released by the server shortly after COM_QUIT.
async fn wait_free(conn: &mut Conn, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for name in names {
        loop {
            let free: Option<i64> = conn
                .exec_first("SELECT IS_FREE_LOCK(?)", (name.as_str(),))
                .await
                .unwrap();
            if free == Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "lock {name} never freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn roundtrip(snap: &MySnapshot) -> MySnapshot {
    let bytes = rmp_serde::to_vec_named(snap).unwrap();
    rmp_serde::from_slice(&bytes).unwrap()
}

/// Text rows of a query, for before/after comparisons.
async fn rows(conn: &mut Conn, sql: &str) -> QueryResult {
    run(conn, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

const CART: &str = "CREATE TEMPORARY TABLE cart (
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    i8 TINYINT, u64 BIGINT UNSIGNED, s64 BIGINT, dec1 DECIMAL(30,10), f FLOAT, d DOUBLE,
    dt DATE, t TIME(3), dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
    c CHAR(5) CHARACTER SET latin1, vc VARCHAR(50) CHARACTER SET utf8mb4,
    tx TEXT CHARACTER SET latin1 COLLATE latin1_german1_ci,
    b BINARY(4), vb VARBINARY(10), bl BLOB, e ENUM('x','y','z'), st SET('a','b','c'),
    bt BIT(64), j JSON, u UUID, ip INET6,
    g_v INT AS (i8 * 2) VIRTUAL, g_p VARCHAR(60) CHARACTER SET utf8mb4 AS (CONCAT(vc, '!')) PERSISTENT,
    KEY (vc), UNIQUE KEY (s64)
) ENGINE=InnoDB";

const CART_ROWS: &str = "INSERT INTO cart (i8, u64, s64, dec1, f, d, dt, t, dtm, ts, y, c, vc, tx,
    b, vb, bl, e, st, bt, j, u, ip) VALUES
    (-128, 18446744073709551615, -9223372036854775808, -12345678901234567890.0123456789,
     1.0000001, 0.30000000000000004, '2024-02-29', '-838:59:59.999', '9999-12-31 23:59:59.999999',
     '2038-01-19 03:14:07.499999', 2155, _latin1 X'E9E8', _utf8mb4 X'68C3A96C6C6F20F09F9880',
     _latin1 X'DFE4', X'00FF0010', X'', X'000102FEFF', 'z', 'a,c', b'1000000000000000000000000000000000000000000000000000000000000001',
     '{\"k\": [1, 2.5, \"é\"]}', '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1'),
    (127, 0, 9223372036854775807, 0.0000000001, -3.4e38, 1.7976931348623157e308, '1000-01-01',
     '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901, '', 'plain', 'x',
     X'41424344', X'FFFFFFFF', X'', 'x', '', b'0', '[]', NULL, '::'),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (1, 1, 1, 1, 1, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_capture_replay() {
    let Some(server) = start_server().await else {
        return;
    };
    let port = server.port;
    fresh_session_round_trips(port).await;
    full_session_round_trips(port).await;
    lock_taken_meanwhile_fails_replay(port).await;
    blockers(port).await;
    globals_changed_after_connect(port).await;
}

/// SET GLOBAL after a session connected leaves that session with the old value, which then
/// differs from the global: a read-only session variable is not carried (it cannot be set),
/// and a privileged one is skipped for a user who may not set it.
async fn globals_changed_after_connect(port: u16) {
    let tracked = Tracked::default();
    let mut a = app(port, Some("shop")).await;
    let mut root = Conn::new(opts(port, "root", "", None)).await.unwrap();
    root.query_drop("SET GLOBAL binlog_format = 'ROW', max_allowed_packet = 8388608")
        .await
        .unwrap();
    let snap = capture(&mut a, &tracked).await;
    assert!(
        snap.variables
            .iter()
            .any(|(n, v)| n == "binlog_format" && v == "'MIXED'"),
        "{:?}",
        snap.variables
    );
    assert!(
        !snap
            .variables
            .iter()
            .any(|(n, _)| n == "max_allowed_packet")
    );
    a.disconnect().await.unwrap();
    let mut b = app(port, None).await;
    replay_on(&mut b, &snap).await.unwrap();
    assert_eq!(binlog_format(&mut b).await.as_deref(), Some("ROW"));
    // A user who may set it gets the session's value back.
    let mut r = Conn::new(opts(port, "root", "", None)).await.unwrap();
    replay_on(&mut r, &snap).await.unwrap();
    assert_eq!(binlog_format(&mut r).await.as_deref(), Some("MIXED"));
    root.query_drop("SET GLOBAL binlog_format = 'MIXED', max_allowed_packet = DEFAULT")
        .await
        .unwrap();
    for c in [b, r, root] {
        c.disconnect().await.unwrap();
    }
}

/// A session that changed nothing: its captured variables replay as a non-SUPER user and
/// recapture the same (this is what pins the exclusion list).
async fn fresh_session_round_trips(port: u16) {
    let tracked = Tracked::default();
    let mut a = app(port, Some("shop")).await;
    let snap = capture(&mut a, &tracked).await;
    let names: Vec<&str> = snap.variables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "character_set_client",
            "character_set_results",
            "character_set_connection",
            "collation_connection"
        ],
        "{:?}",
        snap.variables
    );
    assert_eq!(snap.schema.as_deref(), Some("shop"));
    a.disconnect().await.unwrap();
    let mut b = app(port, None).await;
    replay_on(&mut b, &roundtrip(&snap)).await.unwrap();
    assert_eq!(capture(&mut b, &tracked).await, snap);
    b.disconnect().await.unwrap();
}

const PROBES: &[&str] = &[
    "SELECT @i + 1, @u - 1, @d * 2, @dz, @dz * 2, @f, @f * 3, HEX(@b), CHARSET(@b), \
     HEX(@s_latin), COLLATION(@s_latin), HEX(@s_utf), COLLATION(@s_utf), @n IS NULL, \
     @`weird name`, @empty, LENGTH(@empty), @q",
    "SELECT LAST_INSERT_ID(), DATABASE(), CURRENT_ROLE(), @@sql_mode, @@time_zone, \
     @@character_set_client, @@character_set_connection, @@character_set_results, \
     @@collation_connection, @@autocommit, @@tx_isolation, @@tx_read_only, @@in_transaction, \
     @@group_concat_max_len, @@div_precision_increment, @@lc_time_names, \
     @@check_constraint_checks, @@sql_select_limit, @@max_join_size",
];

const SESSION_VARIABLES: &[&str] = &[
    "SET NAMES latin1",
    "SET time_zone = '+05:30', group_concat_max_len = 5000, div_precision_increment = 8",
    "SET lc_time_names = 'de_DE', check_constraint_checks = OFF, sql_select_limit = 1",
    "SET max_join_size = 1000000",
    "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET SESSION TRANSACTION READ ONLY",
    "SET sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES'",
    "SET autocommit = 0",
];

const TABLE_PROBES: &[&str] = &[
    "SELECT * FROM cart ORDER BY id LIMIT 100",
    "SELECT id, HEX(c), HEX(vc), HEX(tx), HEX(b), HEX(vb), HEX(bl), HEX(j), CAST(f AS DOUBLE), \
     UNIX_TIMESTAMP(ts), bt + 0, g_v, g_p FROM cart ORDER BY id LIMIT 100",
    "CHECKSUM TABLE cart EXTENDED",
    "SELECT * FROM shadow LIMIT 100",
    "SELECT * FROM logbook ORDER BY n LIMIT 100",
    "SHOW CREATE TABLE cart",
    "SHOW CREATE TABLE logbook",
    "CHECKSUM TABLE big EXTENDED",
    "SELECT COUNT(*), SUM(LENGTH(data)) FROM big",
    "SHOW CREATE TABLE seq",
    "SELECT * FROM seq",
];

async fn binlog_format(conn: &mut Conn) -> Option<String> {
    conn.query_first("SELECT @@session.binlog_format")
        .await
        .unwrap()
}

async fn probe(conn: &mut Conn, queries: &[&str]) -> Vec<QueryResult> {
    let mut out = Vec::new();
    for q in queries {
        out.push(rows(conn, q).await);
    }
    out
}

async fn full_session_round_trips(port: u16) {
    let mut t = Tracked::default();
    let mut a = app(port, Some("shop")).await;
    // User variables of every type, set while the connection is still utf8mb4.
    exec_all(
        &mut a,
        &mut t,
        &[
            "SET @i = CAST(-9223372036854775808 AS SIGNED), @u = 18446744073709551615",
            "SET @d = -12.50, @dz = CAST(5 AS DECIMAL(10,0)), @f = 0.1e0 + 0.2e0",
            "SET @b = _binary X'00FF10', @s_latin = _latin1 X'E9' COLLATE latin1_german1_ci",
            "SET @s_utf = _utf8mb4 'héllo 😀', @n = NULL, @`weird name` = 'it''s', @empty = ''",
            "SET @q = 'SELECT ? + 1 AS r'",
            "SELECT @never_set",
        ],
    )
    .await;
    // Temp tables: every column family; a shadowing temp table; a dropped one; a MyISAM one
    // whose counter is ahead of its rows.
    exec_all(
        &mut a,
        &mut t,
        &[
            CART,
            CART_ROWS,
            "DELETE FROM cart WHERE id = 4",
            "CREATE TEMPORARY TABLE shadow (tmp VARCHAR(3)); INSERT INTO shadow VALUES ('tmp')",
            "CREATE TEMPORARY TABLE plain (x INT); DROP TEMPORARY TABLE plain",
            "CREATE TEMPORARY TABLE gone (x INT)",
            "DROP TEMPORARY TABLE gone",
            "CREATE TEMPORARY TABLE logbook (n INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(10)) \
             ENGINE=MyISAM",
            "INSERT INTO logbook (msg) VALUES ('a'), ('b'), ('c'); DELETE FROM logbook WHERE n = 3",
            // A temporary sequence, and rows that need several INSERTs.
            "CREATE TEMPORARY SEQUENCE seq START WITH 10",
            "SELECT NEXTVAL(seq), NEXTVAL(seq)",
            "CREATE TEMPORARY TABLE big (id INT PRIMARY KEY, data LONGBLOB) ENGINE=Aria",
            "INSERT INTO big SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_1500",
            // Prepared statements, named locks, role, LAST_INSERT_ID.
            "PREPARE ps FROM 'SELECT ? * 2 AS doubled'",
            "PREPARE ps2 FROM @q",
            "PREPARE gone FROM 'SELECT 1'",
            "DEALLOCATE PREPARE gone",
            "SELECT GET_LOCK('job-1', 0), GET_LOCK('it''s locked', 0)",
            "SET ROLE reader",
            "SELECT LAST_INSERT_ID(777)",
        ],
    )
    .await;
    let before_tables = probe(&mut a, TABLE_PROBES).await;
    // Session variables last: autocommit=0 would otherwise open transactions above.
    exec_all(&mut a, &mut t, SESSION_VARIABLES).await;
    let before = probe(&mut a, PROBES).await;

    let snap = capture(&mut a, &t).await;
    // Capture left no transaction open and changed nothing visible.
    assert_eq!(probe(&mut a, PROBES).await, before);

    // What the snapshot holds.
    let var = |n: &str| {
        snap.variables
            .iter()
            .find(|(v, _)| v == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(var("autocommit").as_deref(), Some("'OFF'"));
    assert_eq!(var("time_zone").as_deref(), Some("'+05:30'"));
    assert_eq!(var("character_set_client").as_deref(), Some("'latin1'"));
    assert_eq!(var("sql_select_limit").as_deref(), Some("1"));
    assert_eq!(
        snap.variables.last().map(|(n, _)| n.as_str()),
        Some("sql_mode")
    );
    assert_eq!(snap.role.as_deref(), Some("reader"));
    assert_eq!(snap.last_insert_id, 777);
    assert_eq!(snap.named_locks, ["it's locked", "job-1"]);
    let tables: Vec<String> = snap
        .temp_tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    assert_eq!(
        tables,
        [
            "shop.cart",
            "shop.shadow",
            "shop.logbook",
            "shop.seq",
            "shop.big"
        ]
    );
    assert!(
        snap.temp_tables[4].inserts.len() >= 3,
        "3 MB of hex in ~1 MiB INSERTs"
    );
    let cart = &snap.temp_tables[0];
    assert_eq!(cart.rows, 3);
    assert!(!cart.columns.iter().any(|c| c.starts_with("g_")));
    let uv = |n: &str| {
        snap.user_vars
            .iter()
            .find(|v| v.name == n)
            .map(|v| v.value.clone())
            .unwrap()
    };
    assert_eq!(uv("i"), UserValue::Int(i64::MIN));
    assert_eq!(uv("u"), UserValue::UInt(u64::MAX));
    assert_eq!(uv("d"), UserValue::Decimal("-12.50".into()));
    assert_eq!(uv("f"), UserValue::Double(0.1 + 0.2));
    assert_eq!(uv("b"), UserValue::Binary(vec![0, 0xff, 0x10]));
    assert_eq!(
        uv("s_latin"),
        UserValue::Text {
            bytes: vec![0xe9],
            collation: "latin1_german1_ci".into()
        }
    );
    assert_eq!(uv("n"), UserValue::Null);
    let prepared: Vec<&str> = snap.sql_prepared.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(prepared, ["ps", "ps2"]);
    assert_eq!(snap.sql_prepared[1].sql, "SELECT ? + 1 AS r");

    // The proxy adds the binary statements it tracked.
    let mut snap = snap;
    snap.statements.push(BinaryStatement {
        id: 7,
        sql: "SELECT ? + 100".into(),
        schema: Some("shop".into()),
        num_params: 1,
        ..BinaryStatement::default()
    });
    let stored = roundtrip(&snap);
    assert_eq!(stored, snap);
    a.disconnect().await.unwrap();

    let mut b = app(port, None).await;
    wait_free(&mut b, &stored.named_locks).await;
    let stmts = replay_on(&mut b, &stored)
        .await
        .unwrap_or_else(|e| panic!("replay failed: {e:?}"));
    let mut again = capture(&mut b, &t).await;
    again.statements = snap.statements.clone();
    assert_eq!(again, snap);
    assert_eq!(probe(&mut b, PROBES).await, before);

    // Table contents, counters and definitions (outside the read-only, autocommit=0 setup).
    for q in [
        "SET SESSION TRANSACTION READ WRITE",
        "SET autocommit = 1",
        "SET sql_mode = DEFAULT",
        "SET NAMES utf8mb4",
        "SET sql_select_limit = DEFAULT",
    ] {
        b.query_drop(q).await.unwrap();
    }
    // the probes were taken on A under utf8mb4 and the default time_zone of A at the time.
    b.query_drop("SET time_zone = DEFAULT").await.unwrap();
    assert_eq!(probe(&mut b, TABLE_PROBES).await, before_tables);
    b.query_drop("INSERT INTO cart (i8) VALUES (5)")
        .await
        .unwrap();
    let id: Option<u64> = b.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(
        id,
        Some(5),
        "AUTO_INCREMENT continues after the deleted row 4"
    );
    b.query_drop("INSERT INTO logbook (msg) VALUES ('d')")
        .await
        .unwrap();
    let id: Option<u64> = b.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(id, Some(4), "MyISAM AUTO_INCREMENT continues");
    let next: Option<i64> = b.query_first("SELECT NEXTVAL(seq)").await.unwrap();
    assert!(next.is_some_and(|n| n > 11), "sequence continues: {next:?}");

    // Prepared statements run.
    b.query_drop("SET @p = 21").await.unwrap();
    let r: Option<i64> = b.query_first("EXECUTE ps USING @p").await.unwrap();
    assert_eq!(r, Some(42));
    let r: Option<i64> = b.query_first("EXECUTE ps2 USING @p").await.unwrap();
    assert_eq!(r, Some(22));
    let (id, stmt) = &stmts[0];
    assert_eq!(*id, 7);
    let r: Option<i64> = b.exec_first(stmt, (1,)).await.unwrap();
    assert_eq!(r, Some(101));
    // Named locks are B's.
    let held: Option<(i64, i64)> = b
        .query_first(
            "SELECT IS_USED_LOCK('job-1') = CONNECTION_ID(), \
             IS_USED_LOCK('it''s locked') = CONNECTION_ID()",
        )
        .await
        .unwrap();
    assert_eq!(held, Some((1, 1)));

    // Without METADATA_LOCK_INFO the tracked names are checked one by one.
    let fallback = capture_with(&mut b, &t, |results| {
        results[2] = Err(ServerError {
            code: 1109,
            sql_state: "42S02".into(),
            message: "Unknown table".into(),
        });
    })
    .await
    .unwrap();
    assert_eq!(fallback.named_locks, ["it's locked", "job-1"]);
    b.disconnect().await.unwrap();
}

async fn lock_taken_meanwhile_fails_replay(port: u16) {
    let mut t = Tracked::default();
    let mut a = app(port, Some("shop")).await;
    exec(&mut a, &mut t, "SELECT GET_LOCK('contested', 0)").await;
    let snap = capture(&mut a, &t).await;
    assert_eq!(snap.named_locks, ["contested"]);
    a.disconnect().await.unwrap();
    let mut c = app(port, Some("shop")).await;
    wait_free(&mut c, &snap.named_locks).await;
    let got: Option<i64> = c
        .query_first("SELECT GET_LOCK('contested', 0)")
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let mut b = app(port, None).await;
    let err = replay_on(&mut b, &snap).await.unwrap_err();
    assert_eq!(err.0, "named lock contested");
    assert!(err.1.contains("held by another session"), "{}", err.1);
    c.disconnect().await.unwrap();
    b.disconnect().await.unwrap();
}

async fn blockers(port: u16) {
    let mut t = Tracked::default();
    let mut a = app(port, Some("shop")).await;
    exec(&mut a, &mut t, "LOCK TABLES plain READ").await;
    assert!(t.table_locks());
    let reasons = capture_with(&mut a, &t, |_| {}).await.unwrap_err();
    assert!(
        reasons.iter().any(|r| r.contains("shop.plain")),
        "{reasons:?}"
    );
    exec(&mut a, &mut t, "UNLOCK TABLES").await;
    assert!(!t.table_locks());
    capture(&mut a, &t).await;
    a.disconnect().await.unwrap();
}
