//! The CONNECTION_ID() rewrite against a real MariaDB: a rewritten statement's columns have the
//! names, types, flags and lengths the original's have, and the value is the id given.
//!
//! Skipped (with a message) when mariadbd or the `mysql` OS user is absent.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use mysql_async::consts::ColumnFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, OptsBuilder, Row, Value};
use protocols::mysql::connection_id::rewrite;

/// torpor's ids have ten digits; a short one shows the zeros keep the column's length.
const IDS: [u32; 2] = [1_234_567_890, 42];

async fn connect(port: u16) -> Conn {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(Some("d"))
        .prefer_socket(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Conn::new(opts.clone()).await {
            Ok(c) => return c,
            Err(e) if e.to_string().contains("Unknown database") => {
                let mut root = Conn::new(opts.clone().db_name(None::<String>))
                    .await
                    .unwrap();
                root.query_drop("CREATE DATABASE d").await.unwrap();
                root.query_drop("CREATE TABLE d.t (a INT)").await.unwrap();
                root.query_drop("INSERT INTO d.t VALUES (1)").await.unwrap();
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "mariadbd did not start: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a client sees of a column, but for the value's own width (max_length is not sent).
fn shape(c: &Column) -> String {
    // A derived table's columns lose NOT NULL: compare what the server says, whatever it is.
    let flags = c.flags() & !ColumnFlags::PART_KEY_FLAG;
    format!(
        "{} {:?} {:?} len={} dec={} cs={}",
        c.name_str(),
        c.column_type(),
        flags,
        c.column_length(),
        c.decimals(),
        c.character_set()
    )
}

async fn text(c: &mut Conn, sql: &str) -> (Vec<String>, Vec<Row>) {
    let mut r = c
        .query_iter(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = r
        .columns()
        .map(|c| c.iter().map(shape).collect())
        .unwrap_or_default();
    let rows = r.collect::<Row>().await.unwrap();
    (columns, rows)
}

async fn binary(c: &mut Conn, sql: &str) -> (Vec<String>, Vec<Row>) {
    let st = c.prep(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = st.columns().iter().map(shape).collect();
    let rows: Vec<Row> = c.exec(&st, ()).await.unwrap();
    (columns, rows)
}

fn rewritten(sql: &str, id: u32) -> String {
    String::from_utf8(rewrite(sql.as_bytes(), id, true).unwrap_or_else(|| panic!("{sql}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_columns_match_the_originals() {
    let Some(server) = common::start_mariadb() else {
        return;
    };
    let mut c = connect(server.port).await;
    for id in IDS {
        same_columns(&mut c, id).await;
    }
    // Where the name can't be kept (see the module's doc): the rewritten text names it.
    for sql in [
        "SELECT CONNECTION_ID() + INTERVAL 1 DAY",
        "VALUES (CONNECTION_ID())",
    ] {
        let new = rewritten(sql, IDS[0]);
        let (original, _) = text(&mut c, sql).await;
        let (ours, _) = text(&mut c, &new).await;
        assert_ne!(original, ours, "{sql}");
    }
    c.disconnect().await.unwrap();
    drop(server);
}

async fn same_columns(c: &mut Conn, id: u32) {
    // (statement, the rewritten statement's first value)
    let same: &[(&str, Option<u64>)] = &[
        ("SELECT CONNECTION_ID()", Some(id.into())),
        ("select connection_id()", Some(id.into())),
        ("SELECT CONNECTION_ID(), 1", Some(id.into())),
        ("SELECT connection_id() AS id", Some(id.into())),
        ("SELECT CONNECTION_ID() id", Some(id.into())),
        ("SELECT 1 WHERE CONNECTION_ID() = 5", None),
        ("SELECT 1 WHERE CONNECTION_ID() > 0", Some(1)),
        ("SELECT CONNECTION_ID()+0", Some(id.into())),
        ("SELECT CONNECTION_ID()  +  0", Some(id.into())),
        ("SELECT -CONNECTION_ID() + 0", None),
        ("SELECT connection_id /* x */ ( )", Some(id.into())),
        (
            "SELECT CONNECTION_ID() -- c\n + 1 # d\n + 2, 3",
            Some(u64::from(id) + 3),
        ),
        ("SELECT (CONNECTION_ID())", Some(id.into())),
        ("SELECT CONNECTION_ID() IS NULL", Some(0)),
        ("SELECT CONNECTION_ID() = @nothing", None),
        ("SELECT CASE WHEN CONNECTION_ID() > 0 THEN 7 END", Some(7)),
        ("SELECT DISTINCT CONNECTION_ID() FROM t", Some(id.into())),
        (
            "SELECT a, CONNECTION_ID() FROM t ORDER BY CONNECTION_ID()",
            Some(1),
        ),
        ("SELECT * FROM (SELECT CONNECTION_ID()) x", Some(id.into())),
        ("SELECT (SELECT CONNECTION_ID())", Some(id.into())),
        ("SELECT CONNECTION_ID() UNION SELECT 7", Some(id.into())),
        ("SELECT /*! CONNECTION_ID() */ , 2", Some(id.into())),
        ("SELECT /*M!100100 CONNECTION_ID() */", Some(id.into())),
        ("SELECT /*! CONNECTION_ID() */ /*!+ 0 */", Some(id.into())),
        (
            "SELECT CONNECTION_ID() /*!100000 + 1 */",
            Some(u64::from(id) + 1),
        ),
        (
            "SELECT CONNECTION_ID() + `a` FROM t",
            Some(u64::from(id) + 1),
        ),
        ("SELECT CONCAT(CONNECTION_ID(), 'é')", None),
        (
            "INSERT INTO t VALUES (2) RETURNING CONNECTION_ID(), a",
            Some(id.into()),
        ),
    ];
    for &(sql, first) in same {
        let new = rewritten(sql, id);
        for (how, original, ours) in [
            ("text", text(c, sql).await, text(c, &new).await),
            ("binary", binary(c, sql).await, binary(c, &new).await),
        ] {
            if sql.starts_with("INSERT") && how == "binary" {
                continue;
            }
            assert_eq!(ours.0, original.0, "{how}: {sql}\n -> {new}");
            let value = ours.1.first().map(|r| r.as_ref(0).cloned());
            match first {
                Some(v) => assert_eq!(
                    value.flatten().map(mysql_async::from_value::<u64>),
                    Some(v),
                    "{how}: {new}"
                ),
                None => assert!(
                    !matches!(value, Some(Some(Value::UInt(v))) if v == u64::from(id)),
                    "{how}: {new}"
                ),
            }
        }
    }
}
