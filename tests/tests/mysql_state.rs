//! Each kind of MySQL session state survives a forced scale-to-zero: set it up through torpor
//! with mysql_async, sleep the cluster (the mariadbd pid must be gone), then use the state on
//! the new backend.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, TestEnv, USER};
use torpor_tests::mysql::{exec, exec_each, exec_err, rows, text, value};
use torpor_tests::mywire::{Resp, binary_string_cell};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_variables_survive_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec_each(
        &mut c,
        &[
            "SET SESSION sql_mode = 'PIPES_AS_CONCAT,ANSI_QUOTES,STRICT_ALL_TABLES'",
            "SET time_zone = '+05:30'",
            "SET NAMES latin1 COLLATE latin1_german2_ci",
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET SESSION TRANSACTION READ ONLY",
            "SET div_precision_increment = 9",
            "SET max_statement_time = 12.5",
            "SET group_concat_max_len = 7",
            "SET sql_select_limit = 3",
            "SET wait_timeout = 1234",
        ],
    )
    .await;
    let probe = "SELECT CONCAT_WS(' ', @@sql_mode, @@time_zone, @@character_set_client, \
                 @@character_set_connection, @@character_set_results, @@collation_connection, \
                 @@tx_isolation, @@tx_read_only, @@div_precision_increment, @@max_statement_time, \
                 @@group_concat_max_len, @@sql_select_limit, @@wait_timeout, @@autocommit)";
    let before = text(&mut c, probe).await;
    assert_eq!(
        before,
        "PIPES_AS_CONCAT,ANSI_QUOTES,STRICT_ALL_TABLES +05:30 latin1 latin1 latin1 \
         latin1_german2_ci SERIALIZABLE ON 9 12.500000 7 3 1234 ON"
    );

    // autocommit=0 with no uncommitted work, in a second session: must not block the drain.
    let mut ac = env.my().await;
    exec_each(
        &mut ac,
        &[
            "CREATE TABLE IF NOT EXISTS ac_probe (x INT)",
            "SET autocommit = 0",
        ],
    )
    .await;
    assert_eq!(text(&mut ac, "SELECT @@autocommit").await, "0");

    env.across_a_sleep(async || {
        assert_eq!(text(&mut c, probe).await, before);
    })
    .await;
    // Each one is really in effect, not just displayed.
    assert_eq!(
        text(&mut c, "SELECT 'a' || 'b'").await,
        "ab",
        "PIPES_AS_CONCAT"
    );
    let (code, msg) = exec_err(&mut c, "SELECT \"no_such_column\"").await;
    assert_eq!(code, 1054, "ANSI_QUOTES: {msg}");
    assert_eq!(
        text(&mut c, "SELECT FROM_UNIXTIME(0)").await,
        "1970-01-01 05:30:00"
    );
    // latin1 connection: the client's UTF-8 'é' (2 bytes) is two latin1 characters.
    assert_eq!(
        text(&mut c, "SELECT HEX(CONVERT('é' USING utf8mb4))").await,
        "C383C2A9"
    );
    assert_eq!(text(&mut c, "SELECT 1/3").await, "0.333333333");
    assert_eq!(
        text(&mut c, "SELECT GROUP_CONCAT(seq) FROM seq_1_to_9").await,
        "1,2,3,4"
    );
    assert_eq!(
        rows(&mut c, "SELECT seq FROM seq_1_to_10").await.len(),
        3,
        "sql_select_limit"
    );
    let (code, msg) = exec_err(&mut c, "INSERT INTO ac_probe VALUES (1)").await;
    assert_eq!(code, 1792, "READ ONLY transactions: {msg}");

    // autocommit=0 came back, and it works: the insert stays invisible until COMMIT.
    assert_eq!(text(&mut ac, "SELECT @@autocommit").await, "0");
    exec(&mut ac, "INSERT INTO ac_probe VALUES (7)").await;
    let mut other = env.my().await;
    assert_eq!(
        text(&mut other, "SELECT COUNT(*) FROM ac_probe WHERE x = 7").await,
        "0"
    );
    exec(&mut ac, "COMMIT").await;
    assert_eq!(
        text(&mut other, "SELECT COUNT(*) FROM ac_probe WHERE x = 7").await,
        "1"
    );

    env.shutdown_after((c, ac, other)).await;
}

/// SET NAMES utf8mb4 with a non-default collation, separately from the latin1 case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_names_utf8mb4_collation_survives_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "SET NAMES utf8mb4 COLLATE utf8mb4_bin").await;
    let probe = "SELECT CONCAT_WS(' ', @@character_set_client, @@character_set_connection, \
                 @@character_set_results, @@collation_connection, 'a' = 'A')";
    let before = text(&mut c, probe).await;
    assert_eq!(before, "utf8mb4 utf8mb4 utf8mb4 utf8mb4_bin 0");
    env.across_a_sleep(async || {
        assert_eq!(text(&mut c, probe).await, before);
    })
    .await;
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_keep_value_and_type() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(
        &mut c,
        "SET @i = -5, @u = 18446744073709551615, @d = 1.50, @f = 1e-3, \
         @s = 'héllo 🎉', @l = CONVERT(_utf8mb4'café' USING latin1), \
         @b = X'00FF10', @n = NULL, @big = REPEAT('x', 70000)",
    )
    .await;
    exec(&mut c, "SET @l2 = _latin1 X'636166E9'").await;
    let values = "SELECT @i, @u, @d * 2, @f, @s, CHARSET(@s), COLLATION(@s), HEX(@l), \
                  CHARSET(@l), COLLATION(@l), HEX(@l2), COLLATION(@l2), HEX(@b), CHARSET(@b), \
                  @n IS NULL, LENGTH(@big), @i + 1, @u - 1, @f * 3";
    let before = rows(&mut c, values).await;
    // The values, as the server reports them.
    let vals_text = text(
        &mut c,
        "SELECT CONCAT_WS('|', @i, @u, @d * 2, @f, HEX(@b), CHARSET(@b), HEX(@l), CHARSET(@l))",
    )
    .await;
    assert!(
        vals_text.starts_with("-5|18446744073709551615|3.00"),
        "{vals_text}"
    );
    assert!(
        vals_text.ends_with("|0.001|00FF10|binary|636166E9|latin1"),
        "{vals_text}"
    );
    // The exact decimal scale is the server's business: the same as on a direct connection.
    let mut direct = env.my_direct().await;
    exec(&mut direct, "SET @d = 1.50").await;
    assert_eq!(
        text(&mut direct, "SELECT @d * 2").await,
        vals_text.split('|').nth(2).unwrap()
    );
    drop(direct);
    // The types: a table created from the variables shows what the server thinks they are.
    let types = "CREATE TEMPORARY TABLE vt AS SELECT @i AS i, @u AS u, @d AS d, @f AS f, \
                 @s AS s, @l AS l, @b AS b, @n AS n";
    exec(&mut c, types).await;
    let types_before = rows(&mut c, "SHOW CREATE TABLE vt").await;
    exec(&mut c, "DROP TEMPORARY TABLE vt").await;

    env.across_a_sleep(async || {
        assert_eq!(rows(&mut c, values).await, before);
    })
    .await;
    exec(&mut c, types).await;
    assert_eq!(rows(&mut c, "SHOW CREATE TABLE vt").await, types_before);
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_role_and_last_insert_id_survive_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec_each(
        &mut c,
        &[
            "CREATE TABLE ai_log (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
            "INSERT INTO ai_log (v) VALUES (1), (2), (3)",
            "INSERT INTO ai_log (v) VALUES (4)",
        ],
    )
    .await;
    assert_eq!(text(&mut c, "SELECT LAST_INSERT_ID()").await, "4");
    exec(&mut c, "USE information_schema").await;

    // Another database, and a role, in a second session (app is a superuser).
    let mut r = env.my().await;
    exec_each(
        &mut r,
        &[
            "CREATE DATABASE IF NOT EXISTS other_db",
            "CREATE TABLE other_db.here (x INT)",
            "CREATE ROLE IF NOT EXISTS reporter",
            "GRANT SELECT ON my.* TO reporter",
            &format!("GRANT reporter TO {USER}"),
            "USE other_db",
            "SET ROLE reporter",
            "SELECT LAST_INSERT_ID(777)",
        ],
    )
    .await;
    assert_eq!(text(&mut r, "SELECT CURRENT_ROLE()").await, "reporter");

    env.across_a_sleep(async || {
        assert_eq!(
            text(&mut c, "SELECT DATABASE()").await,
            "information_schema"
        );
    })
    .await;
    assert_eq!(text(&mut c, "SELECT LAST_INSERT_ID()").await, "4");
    // Unqualified names resolve in the restored schema.
    assert_eq!(
        text(
            &mut c,
            "SELECT COUNT(*) FROM TABLES WHERE TABLE_NAME = 'ai_log'"
        )
        .await,
        "1"
    );
    assert_eq!(text(&mut r, "SELECT DATABASE()").await, "other_db");
    assert_eq!(text(&mut r, "SELECT COUNT(*) FROM here").await, "0");
    assert_eq!(text(&mut r, "SELECT LAST_INSERT_ID()").await, "777");
    assert_eq!(
        value(&mut r, "SELECT CURRENT_ROLE()").await.as_deref(),
        Some("reporter")
    );
    env.shutdown_after((c, r)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prepared_statements_survive_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    let double = c.prep("SELECT ? * 2").await.unwrap();
    let join = c.prep("SELECT CONCAT(?, '-', ?)").await.unwrap();
    let gone = c.prep("SELECT ? + 100").await.unwrap();
    let none = c.prep("SELECT 'no params'").await.unwrap();
    let r: Option<i64> = c.exec_first(&double, (21,)).await.unwrap();
    assert_eq!(r, Some(42));
    let r: Option<String> = c.exec_first(&join, ("a", "b")).await.unwrap();
    assert_eq!(r.as_deref(), Some("a-b"));
    let ids_before = [double.id(), join.id(), none.id()];
    c.close(gone).await.unwrap();

    env.across_a_sleep(async || {
        let r: Option<i64> = c.exec_first(&double, (50,)).await.unwrap();
        assert_eq!(r, Some(100));
    })
    .await;
    let r: Option<String> = c.exec_first(&join, ("x", "y")).await.unwrap();
    assert_eq!(r.as_deref(), Some("x-y"));
    let r: Option<String> = c.exec_first(&none, ()).await.unwrap();
    assert_eq!(r.as_deref(), Some("no params"));
    assert_eq!([double.id(), join.id(), none.id()], ids_before);
    // A new statement gets an id none of the old ones has, the closed one included.
    let fresh = c.prep("SELECT ? - 1").await.unwrap();
    assert!(
        !ids_before.contains(&fresh.id()),
        "{} reused: {ids_before:?}",
        fresh.id()
    );
    let r: Option<i64> = c.exec_first(&fresh, (1,)).await.unwrap();
    assert_eq!(r, Some(0));
    // Twice more through a second cycle.
    env.sleep_from_running().await;
    let r: Option<i64> = c.exec_first(&double, (-4,)).await.unwrap();
    assert_eq!(r, Some(-8));
    let r: Option<i64> = c.exec_first(&fresh, (10,)).await.unwrap();
    assert_eq!(r, Some(9));
    env.shutdown_after(c).await;
}

/// What mysql_async never does: execute relying on types bound by an earlier execute, long
/// data sent before the sleep, and a statement closed before the sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_statement_types_long_data_and_closed_ids_survive_sleep() {
    let (env, mut raw) = TestEnv::my_raw_session().await;
    let (wrap, n) = raw.prepared("SELECT CONCAT('<', ?, '>')").await;
    assert_eq!(n, 1);
    let r = raw.execute(wrap, &[Some(b"x")], true).await.unwrap();
    assert_eq!(first_string(&r), Some("<x>".into()));
    // Without types: the server uses the ones bound by the previous execute.
    let r = raw.execute(wrap, &[Some(b"y")], false).await.unwrap();
    assert_eq!(first_string(&r), Some("<y>".into()));

    let (glue, _) = raw.prepared("SELECT CONCAT(?, ?)").await;
    raw.long_data(glue, 0, b"abc").await.unwrap();
    raw.long_data(glue, 0, b"def").await.unwrap();

    let (closed, _) = raw.prepared("SELECT 1").await;
    raw.close_stmt(closed).await.unwrap();
    assert_eq!(raw.value("SELECT 5").await.as_deref(), Some("5"));

    env.across_a_sleep(async || {
        // new_params_bound = 0 after the wake: the types bound before the sleep still apply.
        let r = raw.execute(wrap, &[Some(b"z")], false).await.unwrap();
        assert_eq!(first_string(&r), Some("<z>".into()), "{r:?}");
    })
    .await;
    // The long data sent before the sleep is param 0; param 1 is sent inline.
    let r = raw.execute(glue, &[None, Some(b"!")], true).await.unwrap();
    assert_eq!(first_string(&r), Some("abcdef!".into()), "{r:?}");
    // Closed before the sleep, still closed.
    let r = raw.execute(closed, &[], false).await.unwrap();
    let e = r
        .err()
        .unwrap_or_else(|| panic!("closed statement ran: {r:?}"));
    assert_eq!(e.code, 1243, "{e:?}");
    env.shutdown().await;
}

fn first_string(r: &Resp) -> Option<String> {
    match r {
        Resp::Rows(rows) => rows
            .first()
            .and_then(|row| binary_string_cell(row, 1))
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_survives_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec_each(
        &mut c,
        &[
            "PREPARE s FROM 'SELECT ? * 2'",
            "SET @q = 'SELECT CONCAT(?, ''!'')'",
            "PREPARE from_var FROM @q",
            "PREPARE dropped FROM 'SELECT 1'",
            "DEALLOCATE PREPARE dropped",
            // Replaced: the second text wins.
            "PREPARE again FROM 'SELECT 1'",
            "PREPARE again FROM 'SELECT 2'",
        ],
    )
    .await;

    env.across_a_sleep(async || {
        exec(&mut c, "SET @a = 21").await;
    })
    .await;
    assert_eq!(text(&mut c, "EXECUTE s USING @a").await, "42");
    assert_eq!(text(&mut c, "EXECUTE from_var USING 'hey'").await, "hey!");
    assert_eq!(text(&mut c, "EXECUTE again").await, "2");
    let (code, msg) = exec_err(&mut c, "EXECUTE dropped").await;
    assert_eq!(code, 1243, "{msg}");
    env.shutdown_after(c).await;
}

/// SHOW INDEX without the cardinality estimate, which a rebuilt table may estimate differently.
async fn index_shape(c: &mut Conn, table: &str) -> Vec<String> {
    let sql = format!("SHOW INDEX FROM {table}");
    let rows: Vec<mysql_async::Row> = c.query(&sql).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let v = r.unwrap();
            let keep: Vec<_> = v
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 6)
                .map(|(_, x)| x.as_sql(true))
                .collect();
            keep.join(" ")
        })
        .collect()
}

fn all_bytes_hex() -> String {
    (0u8..=255).map(|b| format!("{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_tables_survive_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec(&mut c, "SET time_zone = '+03:00'").await;
    exec(
        &mut c,
        "CREATE TEMPORARY TABLE kinds (
           id INT AUTO_INCREMENT PRIMARY KEY,
           ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
           mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
           bi BIGINT, bu BIGINT UNSIGNED,
           dc DECIMAL(30,10), fl FLOAT, db DOUBLE,
           d DATE, dt DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL, tm TIME, tm3 TIME(3), y YEAR,
           c CHAR(5) CHARACTER SET utf8mb4, vc VARCHAR(50) CHARACTER SET utf8mb4,
           tx TEXT CHARACTER SET utf8mb4, l1 VARCHAR(20) CHARACTER SET latin1,
           bn BINARY(4), vb VARBINARY(300), bl BLOB,
           e ENUM('a','b','c'), st SET('x','y','z'), bt BIT(10), js JSON,
           code VARCHAR(10) NOT NULL,
           gv INT AS (i + 1) VIRTUAL, gp VARCHAR(60) AS (CONCAT(code, ':', vc)) PERSISTENT,
           UNIQUE KEY uk_code (code), KEY k_dt (dt), KEY k_multi (si, vc(10))
         ) ENGINE=InnoDB",
    )
    .await;
    let blob = all_bytes_hex();
    exec(
        &mut c,
        &format!(
            "INSERT INTO kinds (ti, tu, si, su, mi, mu, i, iu, bi, bu, dc, fl, db, d, dt, ts, tm, tm3, y,
               c, vc, tx, l1, bn, vb, bl, e, st, bt, js, code) VALUES
             (-128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
              -9223372036854775808, 18446744073709551615,
              '-12345678901234567890.0123456789', 3.40282e38, 1.7976931348623157e308,
              '1000-01-01', '2024-02-29 23:59:59.999999', '2024-06-01 12:00:00', '-838:59:59',
              '12:34:56.789', 1901,
              '🎉é', 'héllo wörld', REPEAT('ü', 1000), CONVERT(_utf8mb4'café' USING latin1),
              X'00FF0010', UNHEX('{blob}'), UNHEX('{blob}'), 'b', 'x,z', b'1010101011',
              '{{\"k\": [1, \"two\", null], \"u\": \"\\\\u00e9\"}}', 'first'),
             (127, 0, 32767, 0, 8388607, 0, 2147483647, 0,
              9223372036854775807, 0,
              '0.0000000001', -1.17549e-38, 2.2250738585072014e-308,
              '9999-12-31', '1970-01-01 00:00:00.000001', '1970-01-02 03:00:00', '838:59:59',
              '-00:00:00.001', 2155,
              '', '', '', '', X'', X'', X'', 'c', '', b'0', '[]', 'second'),
             (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
              NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
              NULL, NULL, NULL, NULL, 'nulls'),
             (0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0.1, 0.1, '2000-01-01', '2000-01-01', NULL,
              '00:00:00', '00:00:00', 0, 'x', 'y', 'z', 'w', X'01', X'02', X'03', 'a', 'y',
              b'1', 'null', 'last')"
        ),
    )
    .await;
    // The last row goes: AUTO_INCREMENT must not go back to 4 after the wake.
    exec(&mut c, "DELETE FROM kinds WHERE code = 'last'").await;
    let dump = "SELECT *, HEX(bl), HEX(vb), HEX(bn), HEX(l1), UNIX_TIMESTAMP(ts), BIN(bt), \
                CHARSET(l1), CHARSET(tx) FROM kinds ORDER BY id";
    let before = rows(&mut c, dump).await;
    assert_eq!(before.len(), 3);
    assert!(before[0].contains(&format!("x{blob}")), "{}", before[0]);
    let create_before = rows(&mut c, "SHOW CREATE TABLE kinds").await;
    let index_before = index_shape(&mut c, "kinds").await;

    exec(
        &mut c,
        "CREATE TEMPORARY TABLE big (id INT PRIMARY KEY, h CHAR(32), n DOUBLE, t VARCHAR(40)) \
         ENGINE=InnoDB",
    )
    .await;
    exec(
        &mut c,
        "INSERT INTO big SELECT seq, MD5(seq), seq / 7, REPEAT(CHAR(65 + seq % 26), seq % 40) \
         FROM seq_1_to_12000",
    )
    .await;
    let sum = "SELECT CONCAT(COUNT(*), ':', SUM(CRC32(CONCAT_WS('|', id, h, n, t)))) FROM big";
    let big_before = text(&mut c, sum).await;
    assert!(big_before.starts_with("12000:"), "{big_before}");
    let checksum_before = rows(&mut c, "CHECKSUM TABLE big").await;
    // A MEMORY and a MyISAM temp table, too.
    exec_each(
        &mut c,
        &[
            "CREATE TEMPORARY TABLE mem (k INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MEMORY",
            "INSERT INTO mem VALUES (1, 'm1'), (2, 'm2')",
            "CREATE TEMPORARY TABLE isam (k INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM",
            "INSERT INTO isam VALUES (1, 'i1')",
        ],
    )
    .await;

    env.across_a_sleep(async || {
        assert_eq!(rows(&mut c, dump).await, before);
    })
    .await;
    assert_eq!(rows(&mut c, "SHOW CREATE TABLE kinds").await, create_before);
    assert_eq!(index_shape(&mut c, "kinds").await, index_before);
    assert_eq!(text(&mut c, sum).await, big_before);
    assert_eq!(rows(&mut c, "CHECKSUM TABLE big").await, checksum_before);
    assert_eq!(
        text(&mut c, "SELECT GROUP_CONCAT(v ORDER BY k) FROM mem").await,
        "m1,m2"
    );
    assert!(rows(&mut c, "SHOW CREATE TABLE mem").await[0].contains("MEMORY"));
    assert_eq!(text(&mut c, "SELECT v FROM isam").await, "i1");

    // AUTO_INCREMENT continues after the deleted row.
    exec(
        &mut c,
        "INSERT INTO kinds (code, i, vc) VALUES ('after', 41, 'v')",
    )
    .await;
    assert_eq!(
        text(
            &mut c,
            "SELECT CONCAT(id, ',', gv, ',', gp) FROM kinds WHERE code = 'after'"
        )
        .await,
        "5,42,after:v"
    );
    // The unique key and the primary key are enforced.
    let (code, msg) = exec_err(&mut c, "INSERT INTO kinds (code) VALUES ('first')").await;
    assert_eq!(code, 1062, "{msg}");
    let (code, msg) = exec_err(&mut c, "INSERT INTO kinds (id, code) VALUES (1, 'zz')").await;
    assert_eq!(code, 1062, "{msg}");
    // Still a temporary table of this session only.
    let mut other = env.my().await;
    let (code, msg) = exec_err(&mut other, "SELECT * FROM kinds").await;
    assert_eq!(code, 1146, "{msg}");
    env.shutdown_after((c, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_locks_survive_sleep() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    assert_eq!(text(&mut c, "SELECT GET_LOCK('x', 0)").await, "1");
    assert_eq!(text(&mut c, "SELECT GET_LOCK('other lock', 0)").await, "1");

    env.across_a_sleep(async || {
        assert_eq!(
            text(&mut c, "SELECT IS_USED_LOCK('x') = @@pseudo_thread_id").await,
            "1"
        );
    })
    .await;
    let mut other = env.my().await;
    assert_eq!(text(&mut other, "SELECT GET_LOCK('x', 0)").await, "0");
    assert_eq!(
        text(&mut other, "SELECT GET_LOCK('other lock', 0)").await,
        "0"
    );
    assert_eq!(text(&mut c, "SELECT RELEASE_LOCK('x')").await, "1");
    assert_eq!(text(&mut other, "SELECT GET_LOCK('x', 0)").await, "1");
    assert_eq!(
        value(&mut c, "SELECT RELEASE_LOCK('x')").await.as_deref(),
        Some("0")
    );
    env.shutdown_after((c, other)).await;
}

/// Several kinds at once in one session, over three cycles: they all come back every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_state_over_three_cycles() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    exec_each(
        &mut c,
        &[
            "SET @n = 0, time_zone = '-02:00'",
            "CREATE TEMPORARY TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, at_n INT)",
            "PREPARE bump FROM 'INSERT INTO t (at_n) VALUES (?)'",
        ],
    )
    .await;
    let count = c.prep("SELECT COUNT(*) FROM t").await.unwrap();
    for cycle in 0..3 {
        exec_each(&mut c, &["SET @n = @n + 1", "EXECUTE bump USING @n"]).await;
        let n: Option<i64> = c.exec_first(&count, ()).await.unwrap();
        assert_eq!(n, Some(cycle + 1), "cycle {cycle}");
        env.sleep_from_running().await;
    }
    assert_eq!(
        text(&mut c, "SELECT CONCAT(@n, @@time_zone, SUM(at_n)) FROM t").await,
        "3-02:006"
    );
    env.shutdown_after(c).await;
}

/// A session that only read since its last snapshot keeps that snapshot (the next drain puts
/// nothing new) and still has everything after the next wake; one that never changed anything
/// needs no snapshot at all; a change is captured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_only_read_keep_their_snapshot() {
    let (env, mut c) = TestEnv::my_session(Opts::default()).await;
    let mut reader = env.my().await;
    exec_each(
        &mut c,
        &[
            "CREATE TEMPORARY TABLE k (id INT PRIMARY KEY, v TEXT)",
            "INSERT INTO k VALUES (1, 'a'), (2, 'b')",
            "SET time_zone = '+05:00'",
        ],
    )
    .await;
    exec(&mut reader, "SELECT 1").await;
    env.sleep_ok().await;
    let first = env.stored_snapshots();
    assert_eq!(
        first.len(),
        1,
        "only the session with state has a snapshot: {first:?}"
    );

    assert_eq!(text(&mut c, "SELECT v FROM k WHERE id = 2").await, "b");
    exec(&mut reader, "SELECT 2").await;
    env.sleep_ok().await;
    assert_eq!(
        env.stored_snapshots(),
        first,
        "a reads-only drain rewrote the snapshot"
    );
    assert_eq!(text(&mut c, "SELECT v FROM k WHERE id = 1").await, "a");
    assert_eq!(text(&mut c, "SELECT @@time_zone").await, "+05:00");
    assert_eq!(text(&mut reader, "SELECT 3").await, "3");

    exec(&mut c, "INSERT INTO k VALUES (3, 'c')").await;
    env.sleep_ok().await;
    assert_ne!(env.stored_snapshots(), first, "a change must be captured");
    assert_eq!(
        text(&mut c, "SELECT GROUP_CONCAT(v ORDER BY id) FROM k").await,
        "a,b,c"
    );
    env.shutdown().await;
}
